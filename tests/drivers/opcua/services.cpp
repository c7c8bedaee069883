// OPC UA services (drivers/opcua/services): round trips of every request and response,
// byte-exact ReadRequest and ActivateSessionRequest (UserName token) worked out by hand from
// the Part 4 / Part 6 layouts, a hand-built BrowseResponse, ServiceFault recognized by every
// response decoder, and every truncation of every valid response refused. Subscription
// services: byte-exact CreateSubscriptionRequest and CreateMonitoredItemsRequest, a
// hand-built PublishResponse with a DataChangeNotification, NotificationData types, hostile
// array lengths.

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
  m.server_software_certificates = {
    signed_software_certificate{byte_string{"data"}, byte_string{"sig"}}};
  m.server_signature =
    signature_data{"http://www.w3.org/2000/09/xmldsig#rsa-sha1", byte_string{"s"}};
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
  m.results = {
    browse_path_result{
      status_code{0},
      {browse_path_target{expanded_node_id{node_id{2, std::string{"temp"}}, "", 0}, 0xffffffffu}}},
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
  CHECK_THAT(r.err().message, Catch::Contains("ServiceFault BadSessionClosed"));
  CHECK_THAT(r.err().message, Catch::Contains(name));
}

} // namespace

TEST_CASE("OPC UA ReadRequest byte layout", "[opcua]") {
  std::string body = encode(sample_read_request());
  std::string expected = hex(std::string{"01 00 77 02 "} + // four-byte NodeId i=631
                             sample_request_header_hex
                             + " 00 00 00 00 00 00 00 00" // max age 0.0
                               " 02 00 00 00" // timestamps to return: Both
                               " 01 00 00 00" // one ReadValueId
                               " 03 02 00 04 00 00 00 74 65 6d 70" // ns=2;s=temp
                               " 0d 00 00 00" // attribute Value (13)
                               " ff ff ff ff" // index range null
                               " 00 00 ff ff ff ff"); // data encoding: null QualifiedName
  CHECK(to_hex(body) == to_hex(expected));
  auto back = decode_read_request(body);
  REQUIRE(back);
  CHECK(*back == sample_read_request());
}

TEST_CASE("OPC UA ActivateSessionRequest with a UserName token byte layout", "[opcua]") {
  std::string body = encode(sample_activate_session_request());
  std::string expected =
    hex(std::string{"01 00 d3 01 "} + // four-byte NodeId i=467
        sample_request_header_hex
        + " ff ff ff ff ff ff ff ff" // client signature: null algorithm, null signature
          " 00 00 00 00" // no client software certificates
          " 01 00 00 00 02 00 00 00 65 6e" // locale ids ["en"]
          " 01 00 44 01" // ExtensionObject type i=324
          " 01" // binary body
          " 19 00 00 00" // of 25 bytes:
          " 04 00 00 00 75 73 65 72" //   policy id "user"
          " 03 00 00 00 62 6f 62" //   user name "bob"
          " 02 00 00 00 70 77" //   password "pw"
          " ff ff ff ff" //   encryption algorithm null
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
  std::string body =
    hex("01 00 12 02" // four-byte NodeId i=530
        " 00 00 00 00 00 00 00 00  05 00 00 00" // ResponseHeader: timestamp 0, handle 5,
        " 00 00 00 00  00  00 00 00 00  00 00 00" //   Good, no diagnostics, no strings, null ext
        " 01 00 00 00" // one BrowseResult
        " 00 00 00 00  ff ff ff ff" //   Good, null continuation point
        " 02 00 00 00" //   two references:
        " 00 2f  01" //   HasComponent (i=47), forward
        " 03 02 00 04 00 00 00 74 65 6d 70" //   ns=2;s=temp
        " 02 00 04 00 00 00 74 65 6d 70" //   browse name 2:temp
        " 02 04 00 00 00 54 65 6d 70" //   display name text "Temp"
        " 02 00 00 00  00 3f" //   Variable, BaseDataVariableType (i=63)
        " 00 23  01" //   Organizes (i=35), forward
        " 01 01 88 13" //   ns=1;i=5000
        " 01 00 03 00 00 00 44 69 72" //   browse name 1:Dir
        " 03 02 00 00 00 65 6e 03 00 00 00 44 69 72" //   display name "en" "Dir"
        " 01 00 00 00  00 3d" //   Object, FolderType (i=61)
        " ff ff ff ff"); // diagnostic infos null
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
    CHECK(to_hex(body)
          == to_hex(hex(std::string{"01 00 d9 01 "} + sample_request_header_hex + " 01")));
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

// ---- Subscription services --------------------------------------------------------------

namespace {

create_subscription_request sample_create_subscription_request() {
  create_subscription_request m;
  m.header = sample_request_header();
  m.requested_publishing_interval = 500;
  m.requested_lifetime_count = 60;
  m.requested_max_keep_alive_count = 10;
  m.max_notifications_per_publish = 0;
  m.publishing_enabled = true;
  m.priority = 5;
  return m;
}

create_subscription_response sample_create_subscription_response() {
  create_subscription_response m;
  m.header = sample_response_header();
  m.subscription_id = 42;
  m.revised_publishing_interval = 1000;
  m.revised_lifetime_count = 3000;
  m.revised_max_keep_alive_count = 100;
  return m;
}

create_monitored_items_request sample_create_monitored_items_request() {
  create_monitored_items_request m;
  m.header = sample_request_header();
  m.subscription_id = 1;
  m.timestamps = timestamps_to_return::source;
  monitored_item_create_request i;
  i.item_to_monitor = read_value_id{node_id{2, std::string{"temp"}}, attribute_value, "", {}};
  i.mode = monitoring_mode::reporting;
  i.requested_parameters = monitoring_parameters{7, 250, {}, 1, true};
  m.items_to_create = {i};
  return m;
}

create_monitored_items_response sample_create_monitored_items_response() {
  create_monitored_items_response m;
  m.header = sample_response_header();
  monitored_item_create_result a{status_code{0}, 100, 250, 1, {}};
  monitored_item_create_result b{status_code{0x80340000}, 0, 0, 0, {}}; // BadNodeIdUnknown
  b.filter_result = extension_object{node_id{0, uint32_t{731}}, extension_object::binary, "xyz"};
  m.results = {a, b};
  return m;
}

publish_request sample_publish_request() {
  publish_request m;
  m.header = sample_request_header();
  m.subscription_acknowledgements = {subscription_acknowledgement{42, 1},
                                     subscription_acknowledgement{42, 2}};
  return m;
}

data_value sample_change(scalar v, int64_t ticks) {
  data_value d;
  d.value = variant{std::move(v), {}, {}};
  d.source_timestamp = date_time{ticks};
  return d;
}

publish_response sample_publish_response() {
  publish_response m;
  m.header = sample_response_header();
  m.subscription_id = 42;
  m.available_sequence_numbers = {3, 4};
  m.more_notifications = true;
  m.message.sequence_number = 4;
  m.message.publish_time = date_time{0x01da'0000'0000'0001};
  data_change_notification d;
  d.monitored_items = {
    monitored_item_notification{1, sample_change(scalar{21.5}, 0x01da'0000'0000'0010)},
    monitored_item_notification{2, sample_change(scalar{int32_t{-7}}, 0x01da'0000'0000'0020)}};
  d.monitored_items[1].value.status = status_code{0x40000000}; // Uncertain
  m.message.notifications = {
    d, status_change_notification{status_code{0x80270000}}, event_notification_list{"\x01\x02"},
    extension_object{node_id{2, uint32_t{5555}}, extension_object::binary, "raw"}};
  m.results = {status_code{0}, status_code{0x80790000}};
  return m;
}

delete_subscriptions_request sample_delete_subscriptions_request() {
  delete_subscriptions_request m;
  m.header = sample_request_header();
  m.subscription_ids = {42, 43};
  return m;
}

delete_subscriptions_response sample_delete_subscriptions_response() {
  delete_subscriptions_response m;
  m.header = sample_response_header();
  m.results = {status_code{0}, status_code{0x80280000}};
  return m;
}

// A PublishResponse with one DataChangeNotification of two items, worked out by hand.
const char* hand_publish_response_hex =
  "01 00 3d 03" // four-byte NodeId i=829
  " 00 00 00 00 00 00 00 00  09 00 00 00" // ResponseHeader: timestamp 0, handle 9,
  " 00 00 00 00  00  00 00 00 00  00 00 00" //   Good, no diagnostics, no strings, null ext
  " 2a 00 00 00" // subscription id 42
  " 01 00 00 00  05 00 00 00" // available sequence numbers [5]
  " 00" // more notifications false
  " 05 00 00 00" // NotificationMessage sequence number 5
  " 00 00 00 00 00 00 da 01" //   publish time
  " 01 00 00 00" //   one NotificationData:
  " 01 00 2b 03  01  30 00 00 00" //   ExtensionObject i=811, binary, 48 bytes:
  " 02 00 00 00" //     two MonitoredItemNotifications
  " 01 00 00 00  05" //     handle 1, DataValue: value + source ts
  " 0b 00 00 00 00 00 80 35 40" //       Double 21.5
  " 10 00 00 00 00 00 da 01" //       source timestamp
  " 02 00 00 00  05" //     handle 2, DataValue: value + source ts
  " 06 2a 00 00 00" //       Int32 42
  " 20 00 00 00 00 00 da 01" //       source timestamp
  " 00 00 00 00" //     no diagnostic infos
  " 00 00 00 00" // no results
  " 00 00 00 00"; // no diagnostic infos

// Offsets into hand_publish_response_hex.
constexpr size_t hand_available_at = 4 + 24 + 4;
constexpr size_t hand_notifications_at = hand_available_at + 8 + 1 + 4 + 8;
constexpr size_t hand_items_at = hand_notifications_at + 4 + 4 + 1 + 4;

} // namespace

TEST_CASE("OPC UA CreateSubscriptionRequest byte layout", "[opcua]") {
  std::string body = encode(sample_create_subscription_request());
  std::string expected = hex(std::string{"01 00 13 03 "} + // four-byte NodeId i=787
                             sample_request_header_hex
                             + " 00 00 00 00 00 40 7f 40" // requested publishing interval 500.0
                               " 3c 00 00 00" // requested lifetime count 60
                               " 0a 00 00 00" // requested max keep-alive count 10
                               " 00 00 00 00" // max notifications per publish 0
                               " 01" // publishing enabled
                               " 05"); // priority 5
  CHECK(to_hex(body) == to_hex(expected));
  auto back = decode_create_subscription_request(body);
  REQUIRE(back);
  CHECK(*back == sample_create_subscription_request());
}

TEST_CASE("OPC UA CreateMonitoredItemsRequest byte layout", "[opcua]") {
  std::string body = encode(sample_create_monitored_items_request());
  std::string expected = hex(std::string{"01 00 ef 02 "} + // four-byte NodeId i=751
                             sample_request_header_hex
                             + " 01 00 00 00" // subscription id 1
                               " 00 00 00 00" // timestamps to return: Source
                               " 01 00 00 00" // one MonitoredItemCreateRequest
                               " 03 02 00 04 00 00 00 74 65 6d 70" // ns=2;s=temp
                               " 0d 00 00 00" // attribute Value (13)
                               " ff ff ff ff" // index range null
                               " 00 00 ff ff ff ff" // data encoding: null QualifiedName
                               " 02 00 00 00" // monitoring mode Reporting
                               " 07 00 00 00" // client handle 7
                               " 00 00 00 00 00 40 6f 40" // sampling interval 250.0
                               " 00 00 00" // filter: null ExtensionObject
                               " 01 00 00 00" // queue size 1
                               " 01"); // discard oldest
  CHECK(to_hex(body) == to_hex(expected));
  auto back = decode_create_monitored_items_request(body);
  REQUIRE(back);
  CHECK(*back == sample_create_monitored_items_request());
}

TEST_CASE("OPC UA hand-built PublishResponse with a DataChangeNotification", "[opcua]") {
  std::string body = hex(hand_publish_response_hex);
  auto m = decode_publish_response(body);
  REQUIRE(m);
  CHECK(m->header.request_handle == 9);
  CHECK(m->subscription_id == 42);
  CHECK(m->available_sequence_numbers == std::vector<uint32_t>{5});
  CHECK_FALSE(m->more_notifications);
  CHECK(m->message.sequence_number == 5);
  CHECK(m->message.publish_time == date_time{0x01da'0000'0000'0000});
  REQUIRE(m->message.notifications.size() == 1);
  const auto* d = std::get_if<data_change_notification>(&m->message.notifications[0]);
  REQUIRE(d);
  REQUIRE(d->monitored_items.size() == 2);
  CHECK(d->monitored_items[0].client_handle == 1);
  CHECK(d->monitored_items[0].value == sample_change(scalar{21.5}, 0x01da'0000'0000'0010));
  CHECK(d->monitored_items[1].client_handle == 2);
  CHECK(d->monitored_items[1].value == sample_change(scalar{int32_t{42}}, 0x01da'0000'0000'0020));
  CHECK_FALSE(d->monitored_items[1].value.status);
  CHECK(m->results.empty());
  // Encoding the decoded message gives the same bytes back.
  CHECK(to_hex(encode(*m)) == to_hex(body));
  check_truncations(body, decode_publish_response);

  SECTION("hostile array lengths are refused before allocating") {
    struct hostile {
      size_t at;
      const char* length;
      const char* names;
    };
    for (auto h : {hostile{hand_available_at, "ff ff ff 7f", "available sequence numbers"},
                   hostile{hand_available_at, "40 42 0f 00", "available sequence numbers"},
                   hostile{hand_available_at, "fe ff ff ff", "negative length -2"},
                   hostile{hand_notifications_at, "ff ff 00 00", "notification data"},
                   hostile{hand_notifications_at, "00 00 00 80", "notification data"},
                   hostile{hand_items_at, "ff ff ff 7f", "monitored items"},
                   hostile{hand_items_at, "00 01 00 00", "monitored items"}}) {
      std::string bad = body;
      bad.replace(h.at, 4, hex(h.length));
      auto r = decode_publish_response(bad);
      INFO(h.length << " at " << h.at);
      REQUIRE_FALSE(r);
      CHECK(r.err().code == ec::parse_error);
      CHECK_THAT(r.err().message, Catch::Contains(h.names));
    }
  }
  SECTION("a non-empty DiagnosticInfo in the DataChangeNotification is refused") {
    std::string bad = body;
    size_t diag = hand_items_at + 4 + 22 + 18;
    bad.replace(diag, 4, hex("01 00 00 00 01")); // one DiagnosticInfo with mask 1
    bad[hand_items_at - 4] = '\x31'; // the ExtensionObject body is now 49 bytes
    auto r = decode_publish_response(bad);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.err().message, Catch::Contains("DataChangeNotification diagnostic infos[0]"));
    CHECK_THAT(r.err().message, Catch::Contains("non-empty DiagnosticInfo"));
  }
  SECTION("an ExtensionObject body longer than the notification is refused as trailing") {
    std::string bad = body;
    size_t len_at = hand_notifications_at + 4 + 4 + 1;
    bad[len_at] = '\x34'; // 52 bytes: the notification plus results
    bad.erase(bad.size() - 8, 4); // drop the response's own diagnostic infos...
    auto r = decode_publish_response(bad); // ...so results go into the ExtensionObject
    REQUIRE_FALSE(r);
    CHECK(r.err().code == ec::parse_error);
    CHECK_THAT(r.err().message, Catch::Contains("trailing bytes after DataChangeNotification"));
  }
}

TEST_CASE("OPC UA NotificationData types", "[opcua]") {
  SECTION("StatusChangeNotification") {
    notification_data n = status_change_notification{status_code{0x80270000}};
    extension_object e = to_extension_object(n);
    CHECK(e.type_id == node_id{0, uint32_t{status_change_notification_id}});
    CHECK(e.encoding == extension_object::binary);
    CHECK(to_hex(e.body) == to_hex(hex("00 00 27 80 00"))); // status, empty DiagnosticInfo
    auto back = to_notification_data(e);
    REQUIRE(back);
    CHECK(*back == n);
    e.body.back() = '\x01';
    auto bad = to_notification_data(e);
    REQUIRE_FALSE(bad);
    CHECK_THAT(bad.err().message, Catch::Contains("DiagnosticInfo"));
  }
  SECTION("EventNotificationList is kept as bytes") {
    extension_object e{node_id{0, uint32_t{event_notification_list_id}}, extension_object::binary,
                       "\x01\x00\x00\x00 anything"};
    auto back = to_notification_data(e);
    REQUIRE(back);
    const auto* l = std::get_if<event_notification_list>(&*back);
    REQUIRE(l);
    CHECK(l->body == e.body);
    CHECK(to_extension_object(*back) == e);
  }
  SECTION("unknown types and non-binary bodies are kept raw") {
    for (const auto& e :
         {extension_object{node_id{0, uint32_t{9999}}, extension_object::binary, "abc"},
          extension_object{node_id{1, uint32_t{data_change_notification_id}},
                           extension_object::binary, "abc"},
          extension_object{node_id{0, uint32_t{data_change_notification_id}}, extension_object::xml,
                           "<x/>"},
          extension_object{}}) {
      auto back = to_notification_data(e);
      REQUIRE(back);
      const auto* raw = std::get_if<extension_object>(&*back);
      REQUIRE(raw);
      CHECK(*raw == e);
    }
  }
  SECTION("a malformed DataChangeNotification body is refused") {
    extension_object e = to_extension_object(notification_data{
      data_change_notification{{monitored_item_notification{1, sample_change(scalar{1.0}, 1)}}}});
    for (size_t n = 0; n < e.body.size(); ++n) {
      extension_object cut = e;
      cut.body.resize(n);
      CHECK_FALSE(to_notification_data(cut));
    }
    e.body += "x";
    auto r = to_notification_data(e);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.err().message, Catch::Contains("trailing"));
  }
}

TEST_CASE("OPC UA subscription services round-trip", "[opcua]") {
  auto round_trip = [](const auto& m, auto decode) {
    auto back = decode(encode(m));
    REQUIRE(back);
    CHECK(*back == m);
  };
  round_trip(sample_create_subscription_request(), decode_create_subscription_request);
  round_trip(sample_create_subscription_response(), decode_create_subscription_response);
  round_trip(sample_create_monitored_items_request(), decode_create_monitored_items_request);
  round_trip(sample_create_monitored_items_response(), decode_create_monitored_items_response);
  round_trip(sample_publish_request(), decode_publish_request);
  round_trip(sample_publish_response(), decode_publish_response);
  round_trip(sample_delete_subscriptions_request(), decode_delete_subscriptions_request);
  round_trip(sample_delete_subscriptions_response(), decode_delete_subscriptions_response);
  round_trip(publish_request{}, decode_publish_request);
  round_trip(publish_response{}, decode_publish_response); // keep-alive: no notifications

  auto m = sample_create_monitored_items_request();
  m.timestamps = timestamps_to_return::both;
  m.items_to_create.push_back(m.items_to_create[0]);
  m.items_to_create[1].item_to_monitor = read_value_id{node_id{0, uint32_t{2258}}, attribute_value,
                                                       "1:2", qualified_name{0, "Default Binary"}};
  m.items_to_create[1].mode = monitoring_mode::sampling;
  m.items_to_create[1].requested_parameters =
    monitoring_parameters{8, -1, extension_object{node_id{0, uint32_t{724}}, 1, "f"}, 10, false};
  round_trip(m, decode_create_monitored_items_request);
}

TEST_CASE("OPC UA subscription response decoders name a ServiceFault's status code", "[opcua]") {
  check_fault(decode_create_subscription_response, "CreateSubscriptionResponse");
  check_fault(decode_create_monitored_items_response, "CreateMonitoredItemsResponse");
  check_fault(decode_publish_response, "PublishResponse");
  check_fault(decode_delete_subscriptions_response, "DeleteSubscriptionsResponse");
  auto r = decode_publish_response(encode(sample_read_response()));
  REQUIRE_FALSE(r);
  CHECK_THAT(r.err().message, Catch::Contains("expected PublishResponse"));
}

TEST_CASE("OPC UA every truncation of every subscription message is refused", "[opcua]") {
  check_truncations(encode(sample_create_subscription_request()),
                    decode_create_subscription_request);
  check_truncations(encode(sample_create_subscription_response()),
                    decode_create_subscription_response);
  check_truncations(encode(sample_create_monitored_items_request()),
                    decode_create_monitored_items_request);
  check_truncations(encode(sample_create_monitored_items_response()),
                    decode_create_monitored_items_response);
  check_truncations(encode(sample_publish_request()), decode_publish_request);
  check_truncations(encode(sample_publish_response()), decode_publish_response);
  check_truncations(encode(sample_delete_subscriptions_request()),
                    decode_delete_subscriptions_request);
  check_truncations(encode(sample_delete_subscriptions_response()),
                    decode_delete_subscriptions_response);
}

TEST_CASE("OPC UA subscription requests refuse hostile lengths and unknown enumerations",
          "[opcua]") {
  {
    std::string body = encode(sample_create_monitored_items_request());
    size_t at = 4 + 31 + 4 + 4; // items to create length
    body.replace(at, 4, hex("02 00 00 00")); // two items, bytes for one
    auto r = decode_create_monitored_items_request(body);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.err().message, Catch::Contains("items to create claims 2 elements"));
  }
  {
    std::string body = encode(sample_create_monitored_items_request());
    size_t at = 4 + 31 + 4 + 4 + 4 + 11 + 4 + 4 + 6; // monitoring mode
    REQUIRE(body[at] == '\x02');
    body[at] = '\x03';
    auto r = decode_create_monitored_items_request(body);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.err().message, Catch::Contains("monitoring mode 3 is unknown"));
  }
  for (const char* length : {"ff ff ff 7f", "41 42 0f 00", "03 00 00 00", "fe ff ff ff"}) {
    std::string body = encode(sample_delete_subscriptions_request());
    body.replace(4 + 31, 4, hex(length));
    auto r = decode_delete_subscriptions_request(body);
    INFO(length);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.err().message, Catch::Contains("subscription ids"));
  }
  {
    std::string body = encode(sample_publish_request());
    body.replace(4 + 31, 4, hex("00 00 10 00")); // 1,048,576: over max_array_length
    auto r = decode_publish_request(body);
    REQUIRE_FALSE(r);
    CHECK_THAT(r.err().message, Catch::Contains("over the limit"));
  }
}
