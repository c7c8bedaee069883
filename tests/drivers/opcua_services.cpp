// OPC UA services (drivers/opcua/services): round trips of every request and response,
// byte-exact ReadRequest and ActivateSessionRequest (UserName token) worked out by hand from
// the Part 4 / Part 6 layouts, a hand-built BrowseResponse, ServiceFault recognized by every
// response decoder, and every truncation of every valid response refused.

#include "drivers/opcua/services.hpp"

#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <functional>

using namespace fabrik;
using namespace fabrik::opcua;
using fabrik::test_support::hex;
using fabrik::test_support::to_hex;

namespace {

/// Bytes from a hex string such as "01 05 01 04".

/// Authentication token ns=1;i=1000, handle 7, timeout hint 10000 ms.
request_header sample_request_header() {
  request_header h;
  h.authentication_token = node_id{1, uint32_t{1000}};
  h.request_handle = 7;
  h.timeout_hint = 10000;
  return h;
}
// 01 01 e8 03 (four-byte NodeId ns=1 i=1000), timestamp 0, handle 7, return diagnostics 0,
// audit entry id "" (length 0), timeout hint 10000, additional header: null ExtensionObject.
const char* sample_request_header_hex =
  "01 01 e8 03  00 00 00 00 00 00 00 00  07 00 00 00  00 00 00 00  00 00 00 00  10 27 00 00"
  "  00 00 00";

response_header sample_response_header() {
  response_header h;
  h.timestamp = date_time{0x01d9'0000'0000'0002};
  h.request_handle = 7;
  return h;
}

application_description sample_application(application_type type) {
  application_description d;
  d.application_uri = "urn:fabrik:test";
  d.product_uri = "https://fabrik.example";
  d.application_name = localized_text{"en", "fabrik"};
  d.type = type;
  d.discovery_urls = {"opc.tcp://localhost:4840"};
  return d;
}

create_session_request sample_create_session_request() {
  create_session_request m;
  m.header = sample_request_header();
  m.client_description = sample_application(application_type::client);
  m.endpoint_url = "opc.tcp://localhost:4840/UA/Server";
  m.session_name = "fabrik session";
  m.client_nonce = byte_string{std::string(32, '\x5a')};
  m.requested_session_timeout = 120000.5;
  m.max_response_message_size = 16 << 20;
  return m;
}

create_session_response sample_create_session_response() {
  create_session_response m;
  m.header = sample_response_header();
  m.session_id = node_id{1, std::string{"session-1"}};
  m.authentication_token = node_id{1, byte_string{"\x01\x02\x03\x04"}};
  m.revised_session_timeout = 60000;
  m.server_nonce = byte_string{std::string(32, '\x11')};
  m.server_certificate = byte_string{"CERT"};
  endpoint_description e;
  e.endpoint_url = "opc.tcp://localhost:4840/UA/Server";
  e.server = sample_application(application_type::server);
  e.mode = security_mode::none;
  e.security_policy_uri = std::string{security_policy_none};
  e.user_identity_tokens = {
    user_token_policy{"anonymous", user_token_type::anonymous, "", "", ""},
    user_token_policy{"username_basic256", user_token_type::user_name, "", "",
                      "http://opcfoundation.org/UA/SecurityPolicy#Basic256"}};
  e.transport_profile_uri = "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary";
  e.security_level = 1;
  m.server_endpoints = {e, e};
  m.server_endpoints[1].security_level = 3;
  m.server_software_certificates = {signed_software_certificate{byte_string{"data"}, byte_string{"sig"}}};
  m.server_signature = signature_data{"http://www.w3.org/2000/09/xmldsig#rsa-sha1", byte_string{"s"}};
  m.max_request_message_size = 1 << 20;
  return m;
}

activate_session_request sample_activate_session_request() {
  activate_session_request m;
  m.header = sample_request_header();
  m.locale_ids = {"en"};
  m.identity = user_name_identity_token{"user", "bob", byte_string{"pw"}, ""};
  return m;
}

activate_session_response sample_activate_session_response() {
  activate_session_response m;
  m.header = sample_response_header();
  m.server_nonce = byte_string{std::string(32, '\x22')};
  m.results = {status_code{0}, status_code{0x80000000}};
  return m;
}

read_request sample_read_request() {
  read_request m;
  m.header = sample_request_header();
  m.max_age = 0;
  m.timestamps = timestamps_to_return::both;
  m.nodes_to_read = {read_value_id{node_id{2, std::string{"temp"}}, attribute_value, "", {}}};
  return m;
}

read_response sample_read_response() {
  read_response m;
  m.header = sample_response_header();
  data_value a;
  a.value = variant{scalar{21.5}, {}, {}};
  a.status = status_code{0};
  a.source_timestamp = date_time{0x01d9'0000'0000'0010};
  a.server_timestamp = date_time{0x01d9'0000'0000'0011};
  data_value b;
  b.status = status_code{0x80340000}; // BadNodeIdUnknown
  data_value c;
  c.value = variant{{}, array{std::vector<int32_t>{1, 2, 3}}, {}};
  m.results = {a, b, c};
  return m;
}

browse_request sample_browse_request() {
  browse_request m;
  m.header = sample_request_header();
  m.requested_max_references_per_node = 100;
  browse_description d;
  d.node = node_id{0, uint32_t{85}}; // Objects folder
  d.direction = browse_direction::forward;
  d.node_class_mask = node_class_object | node_class_variable;
  browse_description e = d;
  e.node = node_id{2, std::string{"Plant/Line1"}};
  e.direction = browse_direction::both;
  e.include_subtypes = false;
  m.nodes_to_browse = {d, e};
  return m;
}

browse_response sample_browse_response() {
  browse_response m;
  m.header = sample_response_header();
  browse_result r;
  r.continuation_point = byte_string{"cp"};
  reference_description a;
  a.reference_type_id = node_id{0, uint32_t{has_component_type}};
  a.node = expanded_node_id{node_id{2, std::string{"temp"}}, "", 0};
  a.browse_name = qualified_name{2, "temp"};
  a.display_name = localized_text{std::nullopt, "Temp"};
  a.node_class = node_class_variable;
  a.type_definition = expanded_node_id{node_id{0, uint32_t{63}}, "", 0};
  reference_description b = a;
  b.is_forward = false;
  b.node = expanded_node_id{node_id{0, uint32_t{85}}, "urn:other", 1};
  b.node_class = node_class_object;
  r.references = {a, b};
  browse_result empty;
  empty.status = status_code{0x80340000};
  m.results = {r, empty};
  return m;
}

translate_browse_paths_request sample_translate_request() {
  translate_browse_paths_request m;
  m.header = sample_request_header();
  browse_path p;
  p.starting_node = node_id{0, uint32_t{85}};
  p.elements = {relative_path_element{node_id{0, uint32_t{organizes_type}}, false, true,
                                      qualified_name{2, "Plant"}},
                relative_path_element{node_id{0, uint32_t{hierarchical_references_type}}, false,
                                      true, qualified_name{2, "temp"}}};
  m.browse_paths = {p, browse_path{node_id{0, uint32_t{84}}, {}}};
  return m;
}

translate_browse_paths_response sample_translate_response() {
  translate_browse_paths_response m;
  m.header = sample_response_header();
  m.results = {browse_path_result{status_code{0},
                                  {browse_path_target{expanded_node_id{node_id{2, std::string{"temp"}}, "", 0},
                                                      0xffffffffu}}},
               browse_path_result{status_code{0x806f0000}, {}}}; // BadNoMatch
  return m;
}

close_session_response sample_close_session_response() {
  close_session_response m;
  m.header = sample_response_header();
  return m;
}

/// Every proper prefix of body is refused without a crash.
template <class Decode>
void check_truncations(const std::string& body, Decode decode) {
  for (size_t n = 0; n < body.size(); ++n) {
    auto r = decode(std::string_view{body}.substr(0, n));
    INFO("prefix of " << n << " of " << body.size() << " bytes");
    REQUIRE_FALSE(r);
    CHECK(r.err().code == ec::parse_error);
  }
  REQUIRE(decode(body)); // the whole body is fine
  auto longer = decode(body + std::string(1, '\0'));
  REQUIRE_FALSE(longer);
  CHECK_THAT(longer.err().message, Catch::Contains("trailing"));
}

template <class Decode>
void check_fault(Decode decode, const char* name) {
  service_fault f;
  f.header = sample_response_header();
  f.header.service_result = status_code{0x80260000}; // BadSessionIdInvalid... any Bad code
  auto r = decode(encode(f));
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::parse_error);
  CHECK_THAT(r.err().message, Catch::Contains("ServiceFault 0x80260000"));
  CHECK_THAT(r.err().message, Catch::Contains(name));
}

} // namespace

TEST_CASE("OPC UA ReadRequest byte layout", "[opcua]") {
  std::string body = encode(sample_read_request());
  std::string expected = hex(std::string{"01 00 77 02 "} + // four-byte NodeId i=631
                             sample_request_header_hex +
                             " 00 00 00 00 00 00 00 00" // max age 0.0
                             " 02 00 00 00"             // timestamps to return: Both
                             " 01 00 00 00"             // one ReadValueId
                             " 03 02 00 04 00 00 00 74 65 6d 70" // ns=2;s=temp
                             " 0d 00 00 00"             // attribute Value (13)
                             " ff ff ff ff"             // index range null
                             " 00 00 ff ff ff ff");     // data encoding: null QualifiedName
  CHECK(to_hex(body) == to_hex(expected));
  auto back = decode_read_request(body);
  REQUIRE(back);
  CHECK(*back == sample_read_request());
}

TEST_CASE("OPC UA ActivateSessionRequest with a UserName token byte layout", "[opcua]") {
  std::string body = encode(sample_activate_session_request());
  std::string expected = hex(std::string{"01 00 d3 01 "} + // four-byte NodeId i=467
                             sample_request_header_hex +
                             " ff ff ff ff ff ff ff ff" // client signature: null algorithm, null signature
                             " 00 00 00 00"             // no client software certificates
                             " 01 00 00 00 02 00 00 00 65 6e" // locale ids ["en"]
                             " 01 00 44 01"             // ExtensionObject type i=324
                             " 01"                      // binary body
                             " 19 00 00 00"             // of 25 bytes:
                             " 04 00 00 00 75 73 65 72" //   policy id "user"
                             " 03 00 00 00 62 6f 62"    //   user name "bob"
                             " 02 00 00 00 70 77"       //   password "pw"
                             " ff ff ff ff"             //   encryption algorithm null
                             " ff ff ff ff ff ff ff ff"); // user token signature null
  CHECK(to_hex(body) == to_hex(expected));
  auto back = decode_activate_session_request(body);
  REQUIRE(back);
  CHECK(*back == sample_activate_session_request());
}

TEST_CASE("OPC UA anonymous identity token", "[opcua]") {
  activate_session_request m = sample_activate_session_request();
  m.identity = anonymous_identity_token{"anonymous"};
  extension_object e = to_extension_object(m.identity);
  CHECK(e.type_id == node_id{0, uint32_t{anonymous_identity_token_id}});
  CHECK(to_hex(e.body) == to_hex(hex("09 00 00 00 61 6e 6f 6e 79 6d 6f 75 73")));
  auto back = decode_activate_session_request(encode(m));
  REQUIRE(back);
  CHECK(*back == m);

  extension_object other = e;
  other.type_id = node_id{0, uint32_t{327}}; // X509IdentityToken
  auto refused = from_extension_object(other);
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.err().message, Catch::Contains("unsupported"));
  extension_object trailing = e;
  trailing.body += "x";
  CHECK_FALSE(from_extension_object(trailing));
}

TEST_CASE("OPC UA hand-built BrowseResponse with two references", "[opcua]") {
  std::string body = hex(
    "01 00 12 02"                                  // four-byte NodeId i=530
    " 00 00 00 00 00 00 00 00  05 00 00 00"        // ResponseHeader: timestamp 0, handle 5,
    " 00 00 00 00  00  00 00 00 00  00 00 00"      //   Good, no diagnostics, no strings, null ext
    " 01 00 00 00"                                 // one BrowseResult
    " 00 00 00 00  ff ff ff ff"                    //   Good, null continuation point
    " 02 00 00 00"                                 //   two references:
    " 00 2f  01"                                   //   HasComponent (i=47), forward
    " 03 02 00 04 00 00 00 74 65 6d 70"            //   ns=2;s=temp
    " 02 00 04 00 00 00 74 65 6d 70"               //   browse name 2:temp
    " 02 04 00 00 00 54 65 6d 70"                  //   display name text "Temp"
    " 02 00 00 00  00 3f"                          //   Variable, BaseDataVariableType (i=63)
    " 00 23  01"                                   //   Organizes (i=35), forward
    " 01 01 88 13"                                 //   ns=1;i=5000
    " 01 00 03 00 00 00 44 69 72"                  //   browse name 1:Dir
    " 03 02 00 00 00 65 6e 03 00 00 00 44 69 72"   //   display name "en" "Dir"
    " 01 00 00 00  00 3d"                          //   Object, FolderType (i=61)
    " ff ff ff ff");                               // diagnostic infos null
  auto m = decode_browse_response(body);
  REQUIRE(m);
  CHECK(m->header.request_handle == 5);
  REQUIRE(m->results.size() == 1);
  const auto& r = m->results[0];
  CHECK(r.status.code == 0);
  CHECK(r.continuation_point.bytes.empty());
  REQUIRE(r.references.size() == 2);
  CHECK(r.references[0].reference_type_id == node_id{0, uint32_t{has_component_type}});
  CHECK(r.references[0].is_forward);
  CHECK(r.references[0].node == expanded_node_id{node_id{2, std::string{"temp"}}, "", 0});
  CHECK(r.references[0].browse_name == qualified_name{2, "temp"});
  CHECK(r.references[0].display_name == localized_text{std::nullopt, "Temp"});
  CHECK(r.references[0].node_class == node_class_variable);
  CHECK(r.references[0].type_definition.node == node_id{0, uint32_t{63}});
  CHECK(r.references[1].reference_type_id == node_id{0, uint32_t{organizes_type}});
  CHECK(r.references[1].node.node == node_id{1, uint32_t{5000}});
  CHECK(r.references[1].browse_name == qualified_name{1, "Dir"});
  CHECK(r.references[1].display_name == localized_text{"en", "Dir"});
  CHECK(r.references[1].node_class == node_class_object);
  CHECK(r.references[1].type_definition.node == node_id{0, uint32_t{61}});
  check_truncations(body, decode_browse_response);

  SECTION("an array length larger than the bytes left is refused before allocating") {
    std::string bad = body;
    bad[4 + 24] = '\x7f'; // results length 0xff7f: under the cap, over the bytes left
    bad[4 + 24 + 1] = '\xff';
    auto r2 = decode_browse_response(bad);
    REQUIRE_FALSE(r2);
    CHECK_THAT(r2.err().message, Catch::Contains("BrowseResponse results"));
  }
  SECTION("a non-empty DiagnosticInfo is refused") {
    std::string bad = body.substr(0, body.size() - 4) + hex("01 00 00 00 01 00 00 00 00");
    auto r2 = decode_browse_response(bad);
    REQUIRE_FALSE(r2);
    CHECK_THAT(r2.err().message, Catch::Contains("DiagnosticInfo"));
  }
}

TEST_CASE("OPC UA session service requests round-trip", "[opcua]") {
  {
    auto m = sample_create_session_request();
    auto back = decode_create_session_request(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_activate_session_request();
    auto back = decode_activate_session_request(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    close_session_request m;
    m.header = sample_request_header();
    m.delete_subscriptions = true;
    std::string body = encode(m);
    // i=473 (01 00 d9 01), header, delete subscriptions true
    CHECK(to_hex(body) == to_hex(hex(std::string{"01 00 d9 01 "} + sample_request_header_hex + " 01")));
    auto back = decode_close_session_request(body);
    REQUIRE(back);
    CHECK(*back == m);
  }
}

TEST_CASE("OPC UA view and attribute service requests round-trip", "[opcua]") {
  {
    auto m = sample_read_request();
    m.max_age = 500;
    m.timestamps = timestamps_to_return::source;
    m.nodes_to_read.push_back(read_value_id{node_id{0, uint32_t{2258}}, attribute_value, "1:2",
                                            qualified_name{0, "Default Binary"}});
    auto back = decode_read_request(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_browse_request();
    auto back = decode_browse_request(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_translate_request();
    auto back = decode_translate_browse_paths_request(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
}

TEST_CASE("OPC UA responses round-trip", "[opcua]") {
  {
    auto m = sample_create_session_response();
    auto back = decode_create_session_response(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_activate_session_response();
    auto back = decode_activate_session_response(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_close_session_response();
    auto back = decode_close_session_response(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_read_response();
    auto back = decode_read_response(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_browse_response();
    auto back = decode_browse_response(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
  {
    auto m = sample_translate_response();
    auto back = decode_translate_browse_paths_response(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  }
}

TEST_CASE("OPC UA every response decoder names a ServiceFault's status code", "[opcua]") {
  check_fault(decode_create_session_response, "CreateSessionResponse");
  check_fault(decode_activate_session_response, "ActivateSessionResponse");
  check_fault(decode_close_session_response, "CloseSessionResponse");
  check_fault(decode_read_response, "ReadResponse");
  check_fault(decode_browse_response, "BrowseResponse");
  check_fault(decode_translate_browse_paths_response, "TranslateBrowsePathsToNodeIdsResponse");
}

TEST_CASE("OPC UA decoders refuse another message type", "[opcua]") {
  auto r = decode_read_response(encode(sample_browse_response()));
  REQUIRE_FALSE(r);
  CHECK_THAT(r.err().message, Catch::Contains("expected ReadResponse"));
  CHECK_THAT(r.err().message, Catch::Contains("BrowseResponse"));
  auto q = decode_create_session_request(encode(sample_read_request()));
  REQUIRE_FALSE(q);
  CHECK_THAT(q.err().message, Catch::Contains("expected CreateSessionRequest"));
}

TEST_CASE("OPC UA every truncation of every valid response is refused", "[opcua]") {
  check_truncations(encode(sample_create_session_response()), decode_create_session_response);
  check_truncations(encode(sample_activate_session_response()), decode_activate_session_response);
  check_truncations(encode(sample_close_session_response()), decode_close_session_response);
  check_truncations(encode(sample_read_response()), decode_read_response);
  check_truncations(encode(sample_browse_response()), decode_browse_response);
  check_truncations(encode(sample_translate_response()), decode_translate_browse_paths_response);
}

TEST_CASE("OPC UA every truncation of every valid request is refused", "[opcua]") {
  check_truncations(encode(sample_create_session_request()), decode_create_session_request);
  check_truncations(encode(sample_activate_session_request()), decode_activate_session_request);
  close_session_request c;
  check_truncations(encode(c), decode_close_session_request);
  check_truncations(encode(sample_read_request()), decode_read_request);
  check_truncations(encode(sample_browse_request()), decode_browse_request);
  check_truncations(encode(sample_translate_request()), decode_translate_browse_paths_request);
}

TEST_CASE("OPC UA requests refuse unknown enumeration values", "[opcua]") {
  std::string body = encode(sample_read_request());
  // timestamps to return follows the 4-byte type id, the 31-byte header and max age.
  size_t at = 4 + 31 + 8;
  REQUIRE(body[at] == '\x02');
  body[at] = '\x07';
  auto r = decode_read_request(body);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.err().message, Catch::Contains("timestamps to return 7 is unknown"));
}
