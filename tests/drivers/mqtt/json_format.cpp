// Plain JSON and raw payloads (drivers/mqtt/json_format.hpp).

#include "drivers/mqtt/json_format.hpp"

#include "core/time.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

using namespace fabrik;
using namespace fabrik::mqtt;

namespace {

constexpr int64_t ms = 1'000'000;
constexpr int64_t t0 = 1'714'557'600'000 * ms; // 2024-05-01T10:00:00Z
constexpr int64_t ingest = t0 + 5'000 * ms;

decoded decode(std::string_view payload, uint64_t arrival = 11) {
  message_info m{"sensors", "in/hall1", ingest, arrival};
  return decode_json(m, payload);
}

const value* find(const record& r, std::string_view name) {
  for (auto& f : r.fields)
    if (f.name == name)
      return &f.v;
  return nullptr;
}

template <class T>
T get(const record& r, std::string_view name) {
  auto* v = find(r, name);
  INFO("field " << name);
  REQUIRE(v);
  REQUIRE(std::holds_alternative<T>(*v));
  return std::get<T>(*v);
}

record one(std::string_view payload) {
  auto d = decode(payload);
  INFO(payload << ": " << d.error);
  REQUIRE(d.error.empty());
  REQUIRE(d.records.size() == 1);
  return d.records[0];
}

} // namespace

TEST_CASE("a JSON object becomes one record of typed fields in payload order", "[json]") {
  auto r = one(R"({"ts":"2024-05-01T10:00:00.123Z","temp":20.5,"n":3,"ok":true,)"
               R"("label":"h\u00e9","big":18446744073709551615,"neg":-4,"whole":20.0})");
  CHECK(r.stream == "sensors/in/hall1");
  CHECK(r.time == t0 + 123 * ms);
  CHECK(r.ingest_time == ingest);
  CHECK(r.seq == 11);
  CHECK(r.quality == quality::good);
  REQUIRE(r.fields.size() == 7);
  CHECK(r.fields[0] == field{"temp", 20.5});
  CHECK(r.fields[1] == field{"n", int64_t{3}});
  CHECK(r.fields[2] == field{"ok", true});
  CHECK(r.fields[3] == field{"label", std::string{"h\xc3\xa9"}});
  CHECK(r.fields[4] == field{"big", 18446744073709551615.0}); // beyond int64: double
  CHECK(r.fields[5] == field{"neg", int64_t{-4}});
  CHECK(r.fields[6] == field{"whole", 20.0});
}

TEST_CASE("nested objects are flattened, arrays kept as JSON text, null skipped", "[json]") {
  auto r = one(R"({"axis":{"x":1.5,"y":{"z":-2}},"list":[1, "a", {"b": null}],"gone":null,)"
               R"("empty":{},"after":1})");
  REQUIRE(r.fields.size() == 4);
  CHECK(r.fields[0] == field{"axis.x", 1.5});
  CHECK(r.fields[1] == field{"axis.y.z", int64_t{-2}});
  CHECK(r.fields[2] == field{"list", std::string{R"([1,"a",{"b":null}])"}});
  CHECK(r.fields[3] == field{"after", int64_t{1}});
  CHECK(find(r, "gone") == nullptr);
  // A nested "ts" or "seq" is an ordinary field.
  r = one(R"({"a":{"ts":5,"seq":"x"}})");
  CHECK(get<int64_t>(r, "a.ts") == 5);
  CHECK(get<std::string>(r, "a.seq") == "x");
}

TEST_CASE("an array of objects becomes one record per element", "[json]") {
  auto d = decode(R"([{"ts":"2024-05-01T10:00:00Z","v":1},{"ts":"2024-05-01T10:00:01Z","v":2},)"
                  R"({"v":3,"seq":42}])");
  INFO(d.error);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 3);
  CHECK(get<int64_t>(d.records[0], "v") == 1);
  CHECK(d.records[0].time == t0);
  CHECK(d.records[1].time == t0 + 1000 * ms);
  CHECK(d.records[2].seq == 42);
  CHECK(d.records[2].time == ingest);
  CHECK(d.records[2].quality == (quality::good | quality::time_replaced));
  // Elements that are not objects are errors; the others still decode.
  d = decode(R"([1,{"v":1},"x",{"v":2}])");
  CHECK(d.records.size() == 2);
  CHECK(d.error.find("element 0: not an object") != std::string::npos);
  CHECK(d.error.find("and 1 more") != std::string::npos);
  // An empty array is nothing, and no error.
  d = decode("[]");
  CHECK(d.records.empty());
  CHECK(d.error.empty());
}

TEST_CASE("ts is RFC 3339 with 0 to 7 fraction digits or epoch milliseconds", "[json]") {
  for (auto& [ts, expected] : std::vector<std::pair<std::string, int64_t>>{
         {R"("2024-05-01T10:00:00Z")", t0},
         {R"("2024-05-01T10:00:00.1Z")", t0 + 100 * ms},
         {R"("2024-05-01T10:00:00.12Z")", t0 + 120 * ms},
         {R"("2024-05-01T10:00:00.123Z")", t0 + 123 * ms},
         {R"("2024-05-01T10:00:00.1234Z")", t0 + 123'400'000},
         {R"("2024-05-01T10:00:00.12345Z")", t0 + 123'450'000},
         {R"("2024-05-01T10:00:00.123456Z")", t0 + 123'456'000},
         {R"("2024-05-01T10:00:00.1234567Z")", t0 + 123'456'700},
         {R"("2024-05-01T12:00:00+02:00")", t0},
         {"1714557600123", t0 + 123 * ms},
         {"1714557600123.5", t0 + 123'500'000},
       }) {
    auto r = one(R"({"ts":)" + ts + R"(,"v":1})");
    INFO(ts);
    CHECK(r.time == expected);
    CHECK(r.quality == quality::good);
  }
}

TEST_CASE("a missing, null, implausible or unreadable ts becomes the ingest time", "[json]") {
  for (auto payload :
       {R"({"v":1})", R"({"ts":null,"v":1})", R"({"ts":0,"v":1})",
        R"({"ts":"1999-12-31T23:59:59Z","v":1})", R"({"ts":"2030-01-01T00:00:00Z","v":1})"}) {
    auto r = one(payload);
    INFO(payload);
    CHECK(r.time == ingest);
    CHECK(r.quality == (quality::good | quality::time_replaced));
  }
  for (auto payload : {R"({"ts":"garbage","v":1})", R"({"ts":true,"v":1})",
                       R"({"ts":{"a":1},"v":1})", R"({"ts":99999999999999999,"v":1})"}) {
    auto d = decode(payload);
    INFO(payload << ": " << d.error);
    CHECK(d.error.find("ts") != std::string::npos);
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].time == ingest);
    CHECK(d.records[0].quality == (quality::good | quality::time_replaced));
    CHECK(get<int64_t>(d.records[0], "v") == 1);
  }
}

TEST_CASE("seq comes from the payload, else the arrival counter, a bad seq is an error", "[json]") {
  CHECK(one(R"({"seq":7,"v":1})").seq == 7);
  CHECK(one(R"({"v":1})").seq == 11);
  CHECK(one(R"({"seq":18446744073709551615,"v":1})").seq == 18446744073709551615u);
  for (auto payload : {R"({"seq":-1,"v":1})", R"({"seq":"7","v":1})", R"({"seq":1.5,"v":1})"}) {
    auto d = decode(payload);
    INFO(payload);
    CHECK(d.records.empty());
    CHECK(d.error.find("seq is not a non-negative integer") != std::string::npos);
  }
}

TEST_CASE("an object without fields yields no record", "[json]") {
  for (auto payload : {"{}", R"({"ts":"2024-05-01T10:00:00Z"})", R"({"a":null,"b":{}})"}) {
    auto d = decode(payload);
    INFO(payload);
    CHECK(d.records.empty());
    CHECK(d.error.empty());
  }
}

TEST_CASE("malformed JSON payloads are errors, never crashes", "[json]") {
  std::string garbage(1 << 20, '\0');
  for (size_t i = 0; i < garbage.size(); ++i)
    garbage[i] = static_cast<char>((i * 2654435761u) >> 11);
  std::vector<std::pair<std::string, std::string>> cases{
    {"", "not JSON"},
    {"not json", "not JSON"},
    {R"({"a":1)", "not JSON"},
    {R"({"a":1} {"b":2})", "not JSON"},
    {"42", "not a JSON object or an array of objects"},
    {R"("text")", "not a JSON object or an array of objects"},
    {"null", "not a JSON object or an array of objects"},
    {"{\"a\":\"\xff\"}", "not JSON"},
    {"{\"a\":\"\xed\xa0\x80\"}", "not JSON"},
    {R"({"a":1e999})", "not JSON"},
    {garbage, "not JSON"},
    {std::string(1 << 20, '['), "not JSON"},
    {std::string(1 << 20, '{'), "not JSON"},
    {std::string(100000, '[') + std::string(100000, ']'), "nested deeper than"},
    {R"({"a":)" + std::string(100, '[') + std::string(100, ']') + "}", "nested deeper than"},
  };
  for (auto& [payload, reason] : cases) {
    auto d = decode(payload);
    INFO(payload.substr(0, 40) << " -> " << d.error);
    CHECK(d.records.empty());
    CHECK(d.error.find(reason) != std::string::npos);
    CHECK(d.error.find('\n') == std::string::npos);
    CHECK(d.error.size() < 300);
    // The message is valid UTF-8 (it ends up in JSON status replies).
    CHECK_NOTHROW(nlohmann::json(d.error).dump());
  }
  // Brackets inside strings do not count as nesting.
  auto r = one(R"({"s":")" + std::string(1000, '[') + R"("})");
  CHECK(get<std::string>(r, "s").size() == 1000);
}

TEST_CASE("decode_raw keeps the payload as bytes with the ingest time", "[json]") {
  message_info m{"cam", "images/1", ingest, 5};
  std::string payload{"\x00\xff{not json", 11};
  auto d = decode_raw(m, payload);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 1);
  auto& r = d.records[0];
  CHECK(r.stream == "cam/images/1");
  CHECK(r.time == ingest);
  CHECK(r.ingest_time == ingest);
  CHECK(r.seq == 5);
  CHECK(r.quality == quality::good);
  REQUIRE(r.fields.size() == 1);
  CHECK(r.fields[0] == field{"payload", bytes{payload}});
}

TEST_CASE("encode_json output decodes back to the same fields", "[json]") {
  record r;
  r.stream = "sensors/in/hall1";
  r.seq = 1234;
  r.fields = {{"temp", 20.5},
              {"whole", 20.0},
              {"tiny", 1e-300},
              {"huge", -1.7976931348623157e308},
              {"third", 0.1 + 0.2},
              {"n", int64_t{-9'223'372'036'854'775'807 - 1}},
              {"ok", false},
              {"text", std::string{"quote \" backslash \\ newline \n tab \t nul \x01 "
                                   "\xc3\xa9 \xe2\x82\xac"}},
              {"axis.x", 3.0},
              {"image", bytes{std::string{"\x00\x01\x02\xff", 4}}}};
  for (int64_t time : {t0, t0 + 123 * ms, t0 + 123'456'000, t0 + 123'456'789}) {
    r.time = time;
    auto text = encode_json(r);
    INFO(text);
    message_info m{"x", "t", time + 1000 * ms, 0};
    auto d = decode_json(m, text);
    CHECK(d.error.empty());
    REQUIRE(d.records.size() == 1);
    auto& back = d.records[0];
    CHECK(back.time == time);
    CHECK(back.seq == 1234);
    REQUIRE(back.fields.size() == r.fields.size());
    for (size_t i = 0; i + 1 < r.fields.size(); ++i)
      CHECK(back.fields[i] == r.fields[i]);
    // bytes have no JSON type: they come back as their base64 text.
    CHECK(back.fields.back() == field{"image", std::string{"AAEC/w=="}});
  }
}

TEST_CASE("encode_json writes ts with 3, 6 or 9 digits and renames colliding fields", "[json]") {
  record r;
  r.seq = 1;
  r.fields = {{"v", int64_t{1}}};
  r.time = t0 + 100 * ms;
  CHECK(nlohmann::json::parse(encode_json(r)).at("ts") == "2024-05-01T10:00:00.100Z");
  r.time = t0 + 100'001'000;
  CHECK(nlohmann::json::parse(encode_json(r)).at("ts") == "2024-05-01T10:00:00.100001Z");
  r.time = t0 + 100'000'001;
  CHECK(nlohmann::json::parse(encode_json(r)).at("ts") == "2024-05-01T10:00:00.100000001Z");
  r.time = t0;
  r.fields = {{"ts", std::string{"mine"}}, {"seq", int64_t{9}}};
  auto j = nlohmann::json::parse(encode_json(r));
  CHECK(j.at("ts") == "2024-05-01T10:00:00.000Z");
  CHECK(j.at("seq") == 1);
  CHECK(j.at("ts_") == "mine");
  CHECK(j.at("seq_") == 9);
}

TEST_CASE("encode_json always produces valid JSON", "[json]") {
  record r;
  r.time = t0;
  r.fields = {{"bad utf8 \xff", std::string{"a\xff\xfe"
                                            "b\xc3"}},
              {"nan", std::numeric_limits<double>::quiet_NaN()},
              {"inf", std::numeric_limits<double>::infinity()}};
  auto text = encode_json(r);
  INFO(text);
  nlohmann::json j;
  REQUIRE_NOTHROW(j = nlohmann::json::parse(text));
  CHECK(j.at("bad utf8 \xef\xbf\xbd")
        == "a\xef\xbf\xbd\xef\xbf\xbd"
           "b\xef\xbf\xbd");
  CHECK(j.at("nan").is_null());
  CHECK(j.at("inf").is_null());
}

TEST_CASE("JSON text helpers: strings, doubles, base64, printable", "[json]") {
  auto str = [](std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  };
  CHECK(str("plain") == R"("plain")");
  CHECK(str("a\"b\\c\n\x1f") == R"("a\"b\\c\n\u001f")");
  CHECK(str("\xe2\x82\xac") == "\"\xe2\x82\xac\"");
  CHECK(str("\xc0\xaf") == "\"\xef\xbf\xbd\xef\xbf\xbd\""); // overlong '/'
  CHECK(str("\xed\xa0\x80") == "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); // a surrogate
  CHECK(str("\xf4\x90\x80\x80").find("\xef\xbf\xbd") != std::string::npos); // > U+10FFFF
  CHECK(str("\xf0\x9f\x98\x80") == "\"\xf0\x9f\x98\x80\""); // an emoji is fine

  auto dbl = [](double d) {
    std::string out;
    append_json_double(out, d);
    return out;
  };
  CHECK(dbl(20.0) == "20.0");
  CHECK(dbl(-0.0) == "-0.0");
  CHECK(dbl(0.1) == "0.1");
  CHECK(dbl(1e300) == "1e+300");
  CHECK(dbl(std::nan("")) == "null");
  for (double d : {0.1 + 0.2, 1.0 / 3, 5e-324, 1.7976931348623157e308, 123456789.125})
    CHECK(nlohmann::json::parse(dbl(d)).get<double>() == d);

  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");

  CHECK(printable("ok") == "ok");
  CHECK(printable("a\nb\xff") == "a?b?");
  CHECK(printable(std::string(100, 'x'), 10) == "xxxxxxxxxx...");
  CHECK(printable("\xc3\xa9\xc3\xa9", 3) == "\xc3\xa9..."); // never cuts a character
}
