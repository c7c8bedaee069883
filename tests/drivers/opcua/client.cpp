// The pure parts of the OPC UA client: text forms (node ids, browse paths, endpoint URLs,
// status names), values into record fields, data changes into records, and the password
// encryption (checked by decrypting with the private key).

#include "drivers/opcua/client.hpp"
#include "drivers/opcua/identity.hpp"
#include "drivers/opcua/names.hpp"
#include "drivers/opcua/subscriber.hpp"

#include <catch2/catch.hpp>

#include <map>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

using namespace fabrik;
using namespace fabrik::opcua;

TEST_CASE("node ids round-trip through their text form", "[opcua]") {
  for (std::string text :
       {"i=85", "ns=1;s=Temperature", "ns=65535;i=4294967295",
        "ns=2;g=09087E75-8E5E-499B-954F-F2A9603DB28A", "ns=3;b=AAEC/w==", "ns=1;s=a;b=c"}) {
    INFO(text);
    auto id = parse_node_id(text);
    REQUIRE(id);
    CHECK(to_string(*id) == text);
  }
  auto id = parse_node_id("ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a");
  REQUIRE(id);
  auto& g = std::get<guid>(id->identifier);
  CHECK(g.data1 == 0x09087e75);
  CHECK(g.data4[0] == 0x95);
  CHECK(g.data4[7] == 0x8a);
  CHECK(std::get<byte_string>(parse_node_id("b=AAEC/w==")->identifier).bytes
        == std::string{"\x00\x01\x02\xff", 4});
  CHECK(std::get<std::string>(parse_node_id("ns=1;s=a;b=c")->identifier) == "a;b=c");
}

TEST_CASE("malformed node ids are refused naming what is wrong", "[opcua]") {
  auto why = [](std::string_view t) {
    auto id = parse_node_id(t);
    REQUIRE_FALSE(id);
    return id.err().message;
  };
  CHECK_THAT(why("Temperature"), Catch::Contains("expected i=, s=, g= or b="));
  CHECK_THAT(why("ns=1"), Catch::Contains("must be followed by ';'"));
  CHECK_THAT(why("ns=70000;i=1"), Catch::Contains("namespace index"));
  CHECK_THAT(why("ns=x;i=1"), Catch::Contains("namespace index"));
  CHECK_THAT(why("i=-1"), Catch::Contains("i= needs a number"));
  CHECK_THAT(why("i=4294967296"), Catch::Contains("i= needs a number"));
  CHECK_THAT(why("s="), Catch::Contains("s= needs a string"));
  CHECK_THAT(why("g=1234"), Catch::Contains("GUID"));
  CHECK_THAT(why("b=!!!!"), Catch::Contains("base64"));
  CHECK_THAT(why("b=AAE"), Catch::Contains("base64"));
  CHECK_THAT(why("x=1"), Catch::Contains("\"x=1\""));
}

TEST_CASE("browse paths split into qualified names", "[opcua]") {
  auto p = parse_browse_path("Plant/2:Line 1/Temp", 1);
  REQUIRE(p);
  REQUIRE(p->size() == 3);
  CHECK((*p)[0] == qualified_name{1, "Plant"});
  CHECK((*p)[1] == qualified_name{2, "Line 1"});
  CHECK((*p)[2] == qualified_name{1, "Temp"});
  auto escaped = parse_browse_path("a&/b/c&:d", 0);
  REQUIRE(escaped);
  REQUIRE(escaped->size() == 2);
  CHECK((*escaped)[0].name == "a/b");
  CHECK((*escaped)[1].name == "c:d");
  auto colon = parse_browse_path("1:a:b", 0); // a second ':' is part of the name
  REQUIRE(colon);
  CHECK((*colon)[0] == qualified_name{1, "a:b"});
  for (auto bad : {"", "/a", "a/", "a//b", "x:a", "a&", "70000:a"}) {
    INFO(bad);
    CHECK_FALSE(parse_browse_path(bad, 1));
  }
}

TEST_CASE("endpoint URLs give host and port", "[opcua]") {
  auto a = parse_endpoint_url("opc.tcp://plc.local:4841/path/x");
  REQUIRE(a);
  CHECK(a->host == "plc.local");
  CHECK(a->port == 4841);
  CHECK(parse_endpoint_url("opc.tcp://10.0.0.1")->port == 4840);
  auto v6 = parse_endpoint_url("opc.tcp://[::1]:4840/");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  for (auto bad : {"http://x:1", "opc.tcp://", "opc.tcp://x:0", "opc.tcp://x:65536",
                   "opc.tcp://x:port", "opc.tcp://[::1"}) {
    INFO(bad);
    CHECK_FALSE(parse_endpoint_url(bad));
  }
}

TEST_CASE("status codes are named and mapped to quality", "[opcua]") {
  CHECK(status_name({0}) == "Good");
  CHECK(status_name({0x80340000}) == "BadNodeIdUnknown");
  CHECK(status_name({0x801F0000}) == "BadUserAccessDenied");
  CHECK(status_name({0x40900000}) == "UncertainLastUsableValue");
  CHECK(status_name({0x80340400}) == "BadNodeIdUnknown (0x80340400)"); // info bits
  CHECK(status_name({0x80FF0000}) == "0x80FF0000");
  CHECK(quality_of({0}) == quality::good);
  CHECK(quality_of({0x00960000}) == quality::good);
  CHECK(quality_of({0x40900000}) == quality::uncertain);
  CHECK(quality_of({0x80000000}) == quality::bad);
  CHECK(quality_of({0xC0000000}) == quality::bad); // reserved severity: not good
}

TEST_CASE("OPC UA values become record fields of fabrik's types", "[opcua]") {
  std::vector<field> f;
  auto add = [&](const std::string& name, scalar s) { append_fields(name, variant{s, {}, {}}, f); };
  add("b", true);
  add("i8", int8_t{-5});
  add("u32", uint32_t{4000000000u});
  add("i64", int64_t{-7});
  add("u64", uint64_t{42});
  add("huge", uint64_t{UINT64_MAX});
  add("f", 1.5f);
  add("d", 2.25);
  add("s", std::string{"x"});
  add("t", date_time{unix_epoch_ticks + 15});
  add("bs", byte_string{"\x01\x02"});
  add("id", node_id{1, std::string{"X"}});
  add("q", qualified_name{2, "N"});
  add("lt", localized_text{"en", "hello"});
  add("sc", status_code{0x80340000});
  add("eo", extension_object{node_id{0, 1u}, extension_object::binary, "body"});
  add("null", std::monostate{});
  std::map<std::string, value> got;
  for (auto& x : f)
    got[x.name] = x.v;
  CHECK(got.size() == 16); // null adds nothing
  CHECK(got["b"] == value{true});
  CHECK(got["i8"] == value{int64_t{-5}});
  CHECK(got["u32"] == value{int64_t{4000000000}});
  CHECK(got["i64"] == value{int64_t{-7}});
  CHECK(got["u64"] == value{int64_t{42}});
  CHECK(got["huge"] == value{double(UINT64_MAX)});
  CHECK(got["f"] == value{1.5});
  CHECK(got["d"] == value{2.25});
  CHECK(got["s"] == value{std::string{"x"}});
  CHECK(got["t"] == value{int64_t{1500}});
  CHECK(got["bs"] == value{bytes{"\x01\x02"}});
  CHECK(got["id"] == value{std::string{"ns=1;s=X"}});
  CHECK(got["q"] == value{std::string{"2:N"}});
  CHECK(got["lt"] == value{std::string{"hello"}});
  CHECK(got["sc"] == value{int64_t{0x80340000}});
  CHECK(got["eo"] == value{bytes{"body"}});

  std::vector<field> arr;
  variant v;
  v.values = std::vector<int16_t>{3, 4};
  append_fields("a", v, arr);
  REQUIRE(arr.size() == 2);
  CHECK(arr[0] == field{"a[0]", int64_t{3}});
  CHECK(arr[1] == field{"a[1]", int64_t{4}});
}

TEST_CASE("a data change becomes one record per source time and quality", "[opcua]") {
  std::vector<monitored_variable> names{{"x", {}}, {"y", {}}, {"z", {}}};
  auto dv = [](double v, std::optional<int64_t> source_ns, uint32_t status = 0,
               std::optional<int64_t> server_ns = std::nullopt) {
    data_value d;
    d.value = variant{v, {}, {}};
    if (status)
      d.status = status_code{status};
    if (source_ns)
      d.source_timestamp = from_unix_ns(*source_ns);
    if (server_ns)
      d.server_timestamp = from_unix_ns(*server_ns);
    return d;
  };
  data_change_notification n;
  n.monitored_items = {
    {0, dv(1, 1000)}, // x at t=1000
    {1, dv(2, 1000)}, // y at the same time: the same record
    {2, dv(3, 1000, 0x80000000)}, // z bad at that time: its own record
    {0, dv(4, 2000)}, // x again, later
    {1, dv(5, std::nullopt, 0, 3000)}, // no source time: the server's
    {2, dv(6, std::nullopt)}, // no time at all: ingest time, flagged
    {7, dv(7, 1000)}, // a handle we never gave out: skipped
    {0, dv(8, 1000)}, // x again at t=1000: a second record at that time
    {0, dv(10, 1000)}, // and a third (a server listing changes item by item)
    {1, dv(9, 1000)}, // y's second value joins the second record
  };
  data_value empty; // a status without a value: nothing to record
  empty.status = status_code{0x80310000};
  n.monitored_items.push_back({0, empty});
  uint64_t seq = 10;
  record_grouper g{names, "plc/values"};
  auto rs = g.add(n, 9000, seq);
  // The newest time's record (the ingest time, 9000) is held: a later publish may add to it.
  REQUIRE(rs.size() == 6);
  CHECK(g.holding());
  CHECK(rs[0].time == 1000);
  CHECK(rs[0].fields == std::vector<field>{{"x", 1.0}, {"y", 2.0}});
  CHECK(rs[0].quality == quality::good);
  CHECK(rs[0].stream == "plc/values");
  CHECK(rs[0].ingest_time == 9000);
  CHECK(rs[1].fields == std::vector<field>{{"z", 3.0}});
  CHECK(rs[1].quality == quality::bad);
  CHECK(rs[2].time == 2000);
  CHECK(rs[3].time == 3000);
  CHECK_FALSE(rs[3].quality & quality::time_replaced);
  CHECK(rs[4].time == 1000);
  CHECK(rs[4].fields == std::vector<field>{{"x", 8.0}, {"y", 9.0}});
  CHECK(rs[5].fields == std::vector<field>{{"x", 10.0}});
  CHECK(rs[0].seq == 10);
  auto held = g.flush();
  REQUIRE(held.size() == 1);
  CHECK(held[0].time == 9000);
  CHECK(held[0].quality == (quality::good | quality::time_replaced));
  CHECK(held[0].fields == std::vector<field>{{"z", 6.0}});
  CHECK(held[0].seq == 14);
  CHECK(seq == 17);
  CHECK_FALSE(g.holding());
}

TEST_CASE("a write a server spreads over two publishes becomes one record", "[opcua]") {
  std::vector<monitored_variable> names{{"x", {}}, {"y", {}}, {"z", {}}, {"w", {}}};
  auto at = [](double v, int64_t t) {
    data_value d;
    d.value = variant{v, {}, {}};
    d.source_timestamp = from_unix_ns(t);
    return d;
  };
  record_grouper g{names, "s"};
  uint64_t seq = 1;
  data_change_notification first;
  first.monitored_items = {{3, at(0, 4000)}, {0, at(1, 5000)}, {1, at(2, 5000)}};
  auto a = g.add(first, 9000, seq);
  REQUIRE(a.size() == 1); // w at 4000; x and y at 5000 wait
  CHECK(a[0].fields == std::vector<field>{{"w", 0.0}});
  data_change_notification second;
  second.monitored_items = {{2, at(3, 5000)}, {0, at(4, 6000)}};
  auto b = g.add(second, 9100, seq);
  REQUIRE(b.size() == 1);
  CHECK(b[0].time == 5000);
  CHECK(b[0].fields == std::vector<field>{{"x", 1.0}, {"y", 2.0}, {"z", 3.0}});
  auto c = g.flush();
  REQUIRE(c.size() == 1);
  CHECK(c[0].fields == std::vector<field>{{"x", 4.0}});

  // A backlog split item by item: x's values, then (more to come) y's.
  data_change_notification xs, ys;
  xs.monitored_items = {{0, at(10, 7000)}, {0, at(11, 8000)}};
  ys.monitored_items = {{1, at(20, 7000)}, {1, at(21, 8000)}};
  CHECK(g.add(xs, 9200, seq, true).empty()); // the server said more follow
  auto d = g.add(ys, 9300, seq);
  REQUIRE(d.size() == 1);
  CHECK(d[0].fields == std::vector<field>{{"x", 10.0}, {"y", 20.0}});
  auto e = g.flush();
  REQUIRE(e.size() == 1);
  CHECK(e[0].fields == std::vector<field>{{"x", 11.0}, {"y", 21.0}});
}

namespace {

/// A throwaway RSA key and self-signed certificate, as a server would have.
struct test_key {
  EVP_PKEY* key = nullptr;
  std::string der;
  explicit test_key(int bits) {
    key = EVP_RSA_gen(static_cast<unsigned>(bits));
    REQUIRE(key);
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    unsigned char* out = nullptr;
    int len = i2d_X509(x, &out);
    der.assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
    OPENSSL_free(out);
    X509_free(x);
  }
  ~test_key() { EVP_PKEY_free(key); }

  std::string decrypt(const std::string& secret, int padding, const EVP_MD* md = nullptr) {
    std::string out;
    auto block = static_cast<size_t>(EVP_PKEY_get_size(key));
    REQUIRE(secret.size() % block == 0);
    for (size_t at = 0; at < secret.size(); at += block) {
      EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(key, nullptr);
      REQUIRE(EVP_PKEY_decrypt_init(ctx) > 0);
      REQUIRE(EVP_PKEY_CTX_set_rsa_padding(ctx, padding) > 0);
      if (md) {
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md);
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md);
      }
      std::string plain(block, '\0');
      size_t len = block;
      REQUIRE(EVP_PKEY_decrypt(ctx, reinterpret_cast<unsigned char*>(plain.data()), &len,
                               reinterpret_cast<const unsigned char*>(secret.data() + at), block)
              > 0);
      out += plain.substr(0, len);
      EVP_PKEY_CTX_free(ctx);
    }
    return out;
  }
};

endpoint_description none_endpoint(std::vector<user_token_policy> tokens, std::string cert = {}) {
  endpoint_description e;
  e.mode = security_mode::none;
  e.security_policy_uri = std::string{security_policy_none};
  e.user_identity_tokens = std::move(tokens);
  e.server_certificate.bytes = std::move(cert);
  return e;
}

} // namespace

TEST_CASE("a password is encrypted with the server certificate as its policy asks", "[opcua]") {
  test_key k{2048};
  std::string password = "secret";
  std::string nonce(32, 'n');
  auto endpoints =
    std::vector{none_endpoint({{"anon", user_token_type::anonymous, "", "", ""},
                               {"user256", user_token_type::user_name, "", "",
                                "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"}},
                              k.der)};
  auto token = make_identity(endpoints, {"operator", password}, {}, {nonce});
  REQUIRE(token);
  auto& u = std::get<user_name_identity_token>(*token);
  CHECK(u.policy_id == "user256");
  CHECK(u.user_name == "operator");
  CHECK(u.encryption_algorithm == rsa_oaep_uri);
  CHECK(u.password.bytes.size() == 256); // one RSA-2048 block
  auto plain = k.decrypt(u.password.bytes, RSA_PKCS1_OAEP_PADDING);
  // Length (UInt32, little-endian) of password and nonce, the password, the nonce.
  CHECK(plain == std::string{"\x26\x00\x00\x00", 4} + password + nonce);

  auto anon = make_identity(endpoints, {}, {}, {});
  REQUIRE(anon);
  CHECK(std::get<anonymous_identity_token>(*anon).policy_id == "anon");
}

TEST_CASE("plain, PKCS#1 v1.5 and OAEP-SHA-256 passwords, and long ones in several blocks",
          "[opcua]") {
  test_key k{1024};
  auto plain_policy =
    std::vector{none_endpoint({{"enc", user_token_type::user_name, "", "",
                                "http://opcfoundation.org/UA/SecurityPolicy#Basic256"},
                               {"plain", user_token_type::user_name, "", "", ""}})};
  auto t = make_identity(plain_policy, {"u", "pw"}, {}, {"nonce"});
  REQUIRE(t);
  auto& u = std::get<user_name_identity_token>(*t);
  CHECK(u.policy_id == "plain"); // a policy without encryption is preferred
  CHECK(u.password.bytes == "pw");
  CHECK(u.encryption_algorithm.empty());

  auto rsa15 =
    std::vector{none_endpoint({{"rsa15", user_token_type::user_name, "", "",
                                "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15"}},
                              k.der)};
  auto t15 = make_identity(rsa15, {"u", "pw"}, {}, {"N"});
  REQUIRE(t15);
  auto& u15 = std::get<user_name_identity_token>(*t15);
  CHECK(u15.encryption_algorithm == rsa_15_uri);
  CHECK(k.decrypt(u15.password.bytes, RSA_PKCS1_PADDING) == std::string{"\x03\0\0\0", 4} + "pwN");

  std::string long_text(300, 'x'); // more than one 1024-bit block holds
  auto secret = rsa_encrypt(k.der, rsa_oaep_sha256_uri, long_text);
  REQUIRE(secret);
  CHECK(secret->size() == 128 * 5); // 62 bytes per block with OAEP-SHA-256
  CHECK(k.decrypt(*secret, RSA_PKCS1_OAEP_PADDING, EVP_sha256()) == long_text);
}

TEST_CASE("a login the server cannot take is refused with a reason", "[opcua]") {
  auto only_anon = std::vector{none_endpoint({{"anon", user_token_type::anonymous, "", "", ""}})};
  auto t = make_identity(only_anon, {"u", "p"}, {}, {});
  REQUIRE_FALSE(t);
  CHECK_THAT(t.err().message, Catch::Contains("does not accept user names"));
  auto only_user = std::vector{none_endpoint({{"u", user_token_type::user_name, "", "", ""}})};
  auto a = make_identity(only_user, {}, {}, {});
  REQUIRE_FALSE(a);
  CHECK_THAT(a.err().message, Catch::Contains("does not allow anonymous logins"));
  auto exotic = std::vector{
    none_endpoint({{"x", user_token_type::user_name, "", "", "http://example.com/Policy#Future"}})};
  auto e = make_identity(exotic, {"u", "p"}, {}, {});
  REQUIRE_FALSE(e);
  CHECK_THAT(e.err().message, Catch::Contains("Policy#Future, which fabrik does not support"));
  auto no_cert =
    std::vector{none_endpoint({{"x", user_token_type::user_name, "", "",
                                "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"}})};
  auto nc = make_identity(no_cert, {"u", "p"}, {}, {});
  REQUIRE_FALSE(nc);
  CHECK_THAT(nc.err().message, Catch::Contains("sent no certificate"));
  auto no_none = std::vector<endpoint_description>{};
  CHECK_FALSE(make_identity(no_none, {}, {}, {}));
  CHECK_FALSE(rsa_encrypt("not a certificate", rsa_oaep_uri, "x"));
}
