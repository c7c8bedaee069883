// simatic-v1 (Industrial Edge common databus): decoder and encoder.

#include "drivers/mqtt/simatic.hpp"

#include "core/time.hpp"
#include "drivers/mqtt/json_format.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <sstream>
#include <tuple>

using namespace fabrik;
using namespace fabrik::mqtt;

namespace {

// The example messages of payload-format.md, verbatim.
const std::string example_metadata =
  R"({"seq":1,"hashVersion":123456789,"applicationName":"Custom Connector V1.0",
 "statustopic":"ie/s/j/simatic/v1/custom1/status",
 "connections":[{"name":"Connection_1","type":"simulated","dataPoints":[
   {"name":"Collection_1",
    "topic":"ie/d/j/simatic/v1/custom1/dp/r/Connection_1/Collection_1",
    "pubTopic":"ie/d/j/simatic/v1/custom1/dp/w/Connection_1/Collection_1",
    "publishType":"bulk",
    "dataPointDefinitions":[{"name":"Datapoint_Bool","id":"101","dataType":"Bool"},
                            {"name":"Datapoint_Real","id":"103","dataType":"Real"}]}]}]})";
const std::string example_data =
  R"({"seq":1,"vals":[{"id":"101","val":false,"ts":"2022-07-21T13:01:50.159Z","qc":3},
                 {"id":"103","val":4.123,"ts":"2022-07-21T13:01:50.159Z","qc":3,"qx":0}]})";
const std::string example_status =
  R"({"seq":1,"ts":"2022-07-21T13:01:50.159Z","connector":{"status":"good"},
 "connections":[{"name":"Connection_1","status":"good"}]})";

constexpr const char* meta_topic = "ie/m/j/simatic/v1/custom1/dp";
constexpr const char* read_topic = "ie/d/j/simatic/v1/custom1/dp/r/Connection_1/Collection_1";
constexpr const char* write_topic = "ie/d/j/simatic/v1/custom1/dp/w/Connection_1/Collection_1";

constexpr int64_t ms = 1'000'000;
constexpr int64_t example_ts = 1'658'408'510'159 * ms; // 2022-07-21T13:01:50.159Z
constexpr int64_t ingest = example_ts + 2'000 * ms;

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

decoded decode(simatic_decoder& dec, std::string_view topic, std::string_view payload,
               uint64_t arrival = 7) {
  message_info m{"src", topic, ingest, arrival};
  return dec.decode(m, payload);
}

void load(simatic_decoder& dec, const std::string& metadata, const char* topic = meta_topic) {
  auto d = decode(dec, topic, metadata);
  INFO(d.error);
  REQUIRE(d.metadata);
  REQUIRE(d.error.empty());
  REQUIRE(d.records.empty());
}

/// A metadata message of one collection on connector "plc", connection "Line1", collection
/// "c", with (name, id, dataType) definitions.
std::string metadata_of(std::vector<std::array<std::string, 3>> defs) {
  nlohmann::json d = nlohmann::json::array();
  for (auto& [name, id, type] : defs)
    d.push_back({{"name", name}, {"id", id}, {"dataType", type}});
  nlohmann::json m = {{"seq", 1},
                      {"connections",
                       {{{"name", "Line1"},
                         {"type", "simulated"},
                         {"dataPoints",
                          {{{"name", "c"},
                            {"topic", "ie/d/j/simatic/v1/plc/dp/r/Line1/c"},
                            {"pubTopic", "ie/d/j/simatic/v1/plc/dp/w/Line1/c"},
                            {"dataPointDefinitions", d}}}}}}}};
  return m.dump();
}
constexpr const char* plc_meta = "ie/m/j/simatic/v1/plc/dp";
constexpr const char* plc_data = "ie/d/j/simatic/v1/plc/dp/r/Line1/c";

/// {"vals":[{"id":ID,"val":VAL},...]} with VAL given as JSON text.
std::string vals_of(std::vector<std::pair<std::string, std::string>> vals,
                    const std::string& ts = "2022-07-21T13:01:50.159Z") {
  std::string out = R"({"seq":5,"vals":[)";
  for (size_t i = 0; i < vals.size(); ++i) {
    if (i)
      out += ',';
    out += R"({"id":")" + vals[i].first + R"(","val":)" + vals[i].second + R"(,"ts":")" + ts
           + R"(","qc":3})";
  }
  return out + "]}";
}

} // namespace

TEST_CASE("is_metadata_topic recognises ie/m/j/simatic/v1/{app}/dp only", "[simatic]") {
  CHECK(simatic_decoder::is_metadata_topic(meta_topic));
  CHECK(simatic_decoder::is_metadata_topic("ie/m/j/simatic/v1/x/dp"));
  CHECK_FALSE(simatic_decoder::is_metadata_topic("ie/m/j/simatic/v1//dp"));
  CHECK_FALSE(simatic_decoder::is_metadata_topic("ie/m/j/simatic/v1/custom1/dp/extra"));
  CHECK_FALSE(simatic_decoder::is_metadata_topic("ie/m/j/simatic/v1/custom1"));
  CHECK_FALSE(simatic_decoder::is_metadata_topic(read_topic));
  CHECK_FALSE(simatic_decoder::is_metadata_topic("ie/s/j/simatic/v1/custom1/status"));
  CHECK_FALSE(simatic_decoder::is_metadata_topic(""));
}

TEST_CASE("the example metadata and data messages decode to one named record", "[simatic]") {
  simatic_decoder dec;
  load(dec, example_metadata);
  CHECK(dec.collections() == 1);

  auto* c = dec.find_collection(read_topic);
  REQUIRE(c);
  CHECK(dec.find_collection(write_topic) == c); // pubTopic maps to the same collection
  CHECK(dec.find_collection("ie/d/j/simatic/v1/custom1/dp/r/Connection_1/Other") == nullptr);
  CHECK(c->app == "custom1");
  CHECK(c->connection == "Connection_1");
  CHECK(c->name == "Collection_1");
  CHECK(c->topic == read_topic);
  CHECK(c->pub_topic == write_topic);
  REQUIRE(c->points.size() == 2);
  CHECK(c->find_id("101")->name == "Datapoint_Bool");
  CHECK(c->find_id("103")->data_type == "Real");
  CHECK(c->find_id("103")->kind == data_kind::real);
  CHECK(c->find_name("Datapoint_Bool")->id == "101");
  CHECK(c->find_name("nope") == nullptr);

  auto d = decode(dec, read_topic, example_data);
  INFO(d.error);
  CHECK(d.error.empty());
  CHECK_FALSE(d.parked);
  CHECK_FALSE(d.metadata);
  REQUIRE(d.records.size() == 1);
  auto& r = d.records[0];
  CHECK(r.stream == "src/Connection_1/Collection_1");
  REQUIRE(r.fields.size() == 2);
  CHECK(r.fields[0] == field{"Datapoint_Bool", false});
  CHECK(r.fields[1] == field{"Datapoint_Real", 4.123});
  CHECK(r.time == example_ts);
  CHECK(r.ingest_time == ingest);
  CHECK(r.seq == 1);
  CHECK(r.quality == quality::good);
}

TEST_CASE("values are converted to their declared dataType", "[simatic]") {
  simatic_decoder dec;
  load(dec,
       metadata_of({{"b", "1", "Bool"},
                    {"by", "2", "Byte"},
                    {"w", "3", "Word"},
                    {"dw", "4", "DWord"},
                    {"lw", "5", "LWord"},
                    {"si", "6", "SInt"},
                    {"usi", "7", "USInt"},
                    {"i", "8", "Int"},
                    {"ui", "9", "UInt"},
                    {"di", "10", "DInt"},
                    {"udi", "11", "UDInt"},
                    {"li", "12", "LInt"},
                    {"uli", "13", "ULInt"},
                    {"r", "14", "Real"},
                    {"lr", "15", "LReal"},
                    {"ch", "16", "Char"},
                    {"s", "17", "String"},
                    {"t", "18", "Time"},
                    {"lt", "19", "LTime"},
                    {"dt", "20", "DateTime"},
                    {"d", "21", "Date"},
                    {"tod", "22", "Time_Of_Day"},
                    {"ltod", "23", "LTime_Of_Day"},
                    {"x", "24", "SomethingNew"}}),
       plc_meta);
  auto d = decode(dec, plc_data,
                  vals_of({{"1", "true"},
                           {"2", "255"},
                           {"3", "65535"},
                           {"4", "4294967295"},
                           {"5", "9223372036854775807"},
                           {"6", "-128"},
                           {"7", "200"},
                           {"8", "-32768"},
                           {"9", "65535"},
                           {"10", "-2147483648"},
                           {"11", "4294967295"},
                           {"12", "-9223372036854775808"},
                           {"13", "42"},
                           {"14", "1.5"},
                           {"15", "-2.25e100"},
                           {"16", R"("A")"},
                           {"17", R"("h\u00e9llo \"w\"")"},
                           {"18", "1500"},
                           {"19", R"("T#1s")"},
                           {"20", R"("2022-07-21T13:01:50.159Z")"},
                           {"21", R"("2022-07-21")"},
                           {"22", "3.5"},
                           {"23", "36000000000000"},
                           {"24", "false"}}));
  INFO(d.error);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 1);
  auto& r = d.records[0];
  REQUIRE(r.fields.size() == 24);
  CHECK(get<bool>(r, "b") == true);
  CHECK(get<int64_t>(r, "by") == 255);
  CHECK(get<int64_t>(r, "w") == 65535);
  CHECK(get<int64_t>(r, "dw") == 4294967295);
  CHECK(get<int64_t>(r, "lw") == 9223372036854775807);
  CHECK(get<int64_t>(r, "si") == -128);
  CHECK(get<int64_t>(r, "usi") == 200);
  CHECK(get<int64_t>(r, "i") == -32768);
  CHECK(get<int64_t>(r, "ui") == 65535);
  CHECK(get<int64_t>(r, "di") == -2147483648);
  CHECK(get<int64_t>(r, "udi") == 4294967295);
  CHECK(get<int64_t>(r, "li") == std::numeric_limits<int64_t>::min());
  CHECK(get<int64_t>(r, "uli") == 42);
  CHECK(get<double>(r, "r") == 1.5);
  CHECK(get<double>(r, "lr") == -2.25e100);
  CHECK(get<std::string>(r, "ch") == "A");
  CHECK(get<std::string>(r, "s") == "h\xc3\xa9llo \"w\"");
  CHECK(get<int64_t>(r, "t") == 1500);
  CHECK(get<std::string>(r, "lt") == "T#1s");
  CHECK(get<std::string>(r, "dt") == "2022-07-21T13:01:50.159Z");
  CHECK(get<std::string>(r, "d") == "2022-07-21");
  CHECK(get<double>(r, "tod") == 3.5);
  CHECK(get<int64_t>(r, "ltod") == 36000000000000);
  CHECK(get<bool>(r, "x") == false);
  // Fields keep the order of vals.
  CHECK(r.fields.front().name == "b");
  CHECK(r.fields.back().name == "x");
  CHECK(r.quality == quality::good);
}

TEST_CASE("lenient conversions: integral floats, numeric strings, 0/1 for Bool", "[simatic]") {
  simatic_decoder dec;
  load(dec,
       metadata_of({{"i", "1", "Int"},
                    {"r", "2", "LReal"},
                    {"b", "3", "Bool"},
                    {"li", "4", "LInt"},
                    {"r2", "5", "Real"},
                    {"b2", "6", "BOOL"}}),
       plc_meta);
  auto d = decode(dec, plc_data,
                  vals_of({{"1", "3.0"},
                           {"2", "7"},
                           {"3", "1"},
                           {"4", R"("-12")"},
                           {"5", R"("4.5")"},
                           {"6", R"("false")"}}));
  INFO(d.error);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 1);
  auto& r = d.records[0];
  CHECK(get<int64_t>(r, "i") == 3);
  CHECK(get<double>(r, "r") == 7.0);
  CHECK(get<bool>(r, "b") == true);
  CHECK(get<int64_t>(r, "li") == -12);
  CHECK(get<double>(r, "r2") == 4.5);
  CHECK(get<bool>(r, "b2") == false);
}

TEST_CASE("a value that does not fit its dataType is reported, the others are emitted",
          "[simatic]") {
  simatic_decoder dec;
  load(dec,
       metadata_of({{"ok", "1", "LReal"},
                    {"real", "2", "Real"},
                    {"int", "3", "Int"},
                    {"byte", "4", "Byte"},
                    {"bool", "5", "Bool"},
                    {"str", "6", "String"},
                    {"usint", "7", "USInt"},
                    {"ulint", "8", "ULInt"},
                    {"null", "9", "LReal"}}),
       plc_meta);
  struct bad_case {
    std::string id, val, reason;
  };
  for (auto& [id, val, reason] : std::vector<bad_case>{
         {"2", R"("abc")", "\"abc\" is not a number (Real)"},
         {"2", "1e300", "out of range for Real"},
         {"3", "3.5", "3.5 is not an integer (Int)"},
         {"3", "40000", "40000 is out of range for Int"},
         {"4", "256", "256 is out of range for Byte"},
         {"5", R"("yes")", "is not a Bool"},
         {"5", "2", "2 is not a Bool"},
         {"6", "12", "12 is not a string (String)"},
         {"7", "-1", "-1 is out of range for USInt"},
         {"8", "18446744073709551615", "out of range for ULInt"},
         {"9", "null", "val is null"},
       }) {
    auto d = decode(dec, plc_data, vals_of({{"1", "2.5"}, {id, val}}));
    INFO(id << " = " << val << ": " << d.error);
    CHECK_FALSE(d.parked);
    CHECK(d.error.find("vals[1] (id " + id + ")") != std::string::npos);
    CHECK(d.error.find(reason) != std::string::npos);
    REQUIRE(d.records.size() == 1);
    auto& r = d.records[0];
    REQUIRE(r.fields.size() == 1);
    CHECK(get<double>(r, "ok") == 2.5);
    CHECK(quality::code(r.quality) == quality::uncertain);
  }
  // A missing val is the same kind of problem.
  auto d = decode(dec, plc_data, R"({"vals":[{"id":"1","val":1.5},{"id":"2"}]})");
  CHECK(d.error.find("no val") != std::string::npos);
  REQUIRE(d.records.size() == 1);
  CHECK(d.records[0].fields.size() == 1);
  // When nothing fits there is no record, only the error.
  d = decode(dec, plc_data, vals_of({{"3", "0.5"}}));
  CHECK_FALSE(d.error.empty());
  CHECK(d.records.empty());
  // Several failures: the first is named, the rest counted.
  d = decode(dec, plc_data, vals_of({{"3", "0.5"}, {"4", "-3"}, {"5", "7"}}));
  CHECK(d.error.find("vals[0]") != std::string::npos);
  CHECK(d.error.find("and 2 more") != std::string::npos);
}

TEST_CASE("ts with 0 to 7 fractional digits gives the record time", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"v", "1", "LReal"}}), plc_meta);
  const int64_t base = 1'658'408'510 * int64_t{1'000'000'000}; // 2022-07-21T13:01:50Z
  const std::vector<std::pair<std::string, int64_t>> cases{
    {"2022-07-21T13:01:50Z", base},
    {"2022-07-21T13:01:50.1Z", base + 100'000'000},
    {"2022-07-21T13:01:50.12Z", base + 120'000'000},
    {"2022-07-21T13:01:50.123Z", base + 123'000'000},
    {"2022-07-21T13:01:50.1234Z", base + 123'400'000},
    {"2022-07-21T13:01:50.12345Z", base + 123'450'000},
    {"2022-07-21T13:01:50.123456Z", base + 123'456'000},
    {"2022-07-21T13:01:50.1234567Z", base + 123'456'700},
  };
  for (auto& [ts, expected] : cases) {
    auto d = decode(dec, plc_data, vals_of({{"1", "1.0"}}, ts));
    INFO(ts << ": " << d.error);
    CHECK(d.error.empty());
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].time == expected);
    CHECK(d.records[0].quality == quality::good);
  }
}

TEST_CASE("record time is the newest plausible ts, else the ingest time flagged", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"a", "1", "LReal"}, {"b", "2", "LReal"}, {"c", "3", "LReal"}}), plc_meta);
  SECTION("newest of several") {
    auto d = decode(dec, plc_data,
                    R"({"vals":[{"id":"1","val":1,"ts":"2022-07-21T13:01:50.100Z"},)"
                    R"({"id":"2","val":2,"ts":"2022-07-21T13:01:50.159Z"},)"
                    R"({"id":"3","val":3,"ts":"2022-07-21T13:01:49.000Z"}]})");
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].time == example_ts);
    CHECK(d.records[0].quality == quality::good);
  }
  SECTION("an implausible ts among plausible ones is ignored") {
    auto d = decode(dec, plc_data,
                    R"({"vals":[{"id":"1","val":1,"ts":"2099-01-01T00:00:00Z"},)"
                    R"({"id":"2","val":2,"ts":"2022-07-21T13:01:50.159Z"}]})");
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].time == example_ts);
    CHECK(d.records[0].quality == quality::good);
  }
  SECTION("missing ts") {
    auto d = decode(dec, plc_data, R"({"vals":[{"id":"1","val":1}]})");
    REQUIRE(d.records.size() == 1);
    CHECK(d.error.empty());
    CHECK(d.records[0].time == ingest);
    CHECK(d.records[0].quality == (quality::good | quality::time_replaced));
  }
  for (auto ts : {"1970-01-01T00:00:01Z", "1999-12-31T23:59:59Z", "2030-01-01T00:00:00Z"}) {
    SECTION(std::string{"implausible ts "} + ts) {
      auto d = decode(dec, plc_data, vals_of({{"1", "1"}}, ts));
      REQUIRE(d.records.size() == 1);
      CHECK(d.error.empty());
      CHECK(d.records[0].time == ingest);
      CHECK(d.records[0].quality == (quality::good | quality::time_replaced));
    }
  }
  SECTION("a ts one hour ahead of ingest is still plausible") {
    auto d = decode(dec, plc_data, vals_of({{"1", "1"}}, format_time(ingest + 3600'000 * ms)));
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].time == ingest + 3600'000 * ms);
  }
  SECTION("an unparseable ts is replaced and reported") {
    auto d = decode(dec, plc_data, vals_of({{"1", "1"}}, "yesterday noon"));
    REQUIRE(d.records.size() == 1);
    CHECK(d.error.find("yesterday noon") != std::string::npos);
    CHECK(d.records[0].time == ingest);
    CHECK(d.records[0].quality == (quality::good | quality::time_replaced));
    CHECK(get<double>(d.records[0], "a") == 1.0);
  }
}

TEST_CASE("record quality is the smallest qc, 3 when absent", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"a", "1", "LReal"}, {"b", "2", "LReal"}}), plc_meta);
  auto q = [&](const std::string& payload) {
    auto d = decode(dec, plc_data, payload);
    INFO(payload << ": " << d.error);
    REQUIRE(d.records.size() == 1);
    return d.records[0].quality & 0xff;
  };
  CHECK(q(R"({"vals":[{"id":"1","val":1,"qc":3},{"id":"2","val":2,"qc":2}]})") == 2);
  CHECK(q(R"({"vals":[{"id":"1","val":1,"qc":1},{"id":"2","val":2,"qc":3}]})") == 1);
  CHECK(q(R"({"vals":[{"id":"1","val":1,"qc":0},{"id":"2","val":2}]})") == 0);
  CHECK(q(R"({"vals":[{"id":"1","val":1},{"id":"2","val":2}]})") == 3);
  CHECK(q(R"({"vals":[{"id":"1","val":1,"qc":2,"qx":17}]})") == 2);
  // A qc outside 0..3 is reported and read as uncertain; the value is kept.
  auto d = decode(dec, plc_data, R"({"vals":[{"id":"1","val":1,"qc":9}]})");
  CHECK(d.error.find("qc") != std::string::npos);
  REQUIRE(d.records.size() == 1);
  CHECK(quality::code(d.records[0].quality) == quality::uncertain);
  CHECK(get<double>(d.records[0], "a") == 1.0);
}

TEST_CASE("seq comes from the message, else from the arrival counter", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"a", "1", "LReal"}}), plc_meta);
  auto d = decode(dec, plc_data, R"({"seq":123456789012,"vals":[{"id":"1","val":1}]})", 9);
  REQUIRE(d.records.size() == 1);
  CHECK(d.records[0].seq == 123456789012);
  d = decode(dec, plc_data, R"({"vals":[{"id":"1","val":1}]})", 9);
  REQUIRE(d.records.size() == 1);
  CHECK(d.records[0].seq == 9);
}

TEST_CASE("unknown ids park the message until metadata names them", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"a", "1", "LReal"}}), plc_meta);
  const auto payload = vals_of({{"1", "1.5"}, {"2", "2"}, {"3", "true"}});
  auto d = decode(dec, plc_data, payload);
  CHECK(d.parked);
  CHECK(d.unknown_ids == 2);
  CHECK(d.records.empty());
  CHECK(d.error.empty());

  // The connector is reconfigured: its metadata now names all three.
  load(dec, metadata_of({{"a", "1", "LReal"}, {"b", "2", "DInt"}, {"c", "3", "Bool"}}), plc_meta);
  d = decode(dec, plc_data, payload);
  CHECK_FALSE(d.parked);
  CHECK(d.unknown_ids == 0);
  REQUIRE(d.records.size() == 1);
  CHECK(get<double>(d.records[0], "a") == 1.5);
  CHECK(get<int64_t>(d.records[0], "b") == 2);
  CHECK(get<bool>(d.records[0], "c") == true);
}

TEST_CASE("data arriving before any metadata is parked, then decoded", "[simatic]") {
  simatic_decoder dec;
  auto d = decode(dec, read_topic, example_data);
  CHECK(d.parked);
  CHECK(d.unknown_ids == 2);
  CHECK(d.records.empty());
  CHECK(d.error.empty());
  CHECK(dec.find_collection(read_topic) == nullptr);
  // Malformed data is an error even without metadata: it is not parked forever.
  d = decode(dec, read_topic, "{oops");
  CHECK_FALSE(d.parked);
  CHECK_FALSE(d.error.empty());

  load(dec, example_metadata);
  d = decode(dec, read_topic, example_data);
  CHECK_FALSE(d.parked);
  REQUIRE(d.records.size() == 1);
  CHECK(d.records[0].fields.size() == 2);
}

TEST_CASE("new metadata replaces what the same connector declared before", "[simatic]") {
  simatic_decoder dec;
  load(dec, example_metadata);
  // Reconfigured: the collection moved to another connection, ids changed.
  auto moved = example_metadata;
  for (auto [from, to] : {std::pair{"Connection_1", "Connection_2"}, std::pair{"101", "201"}})
    for (size_t p; (p = moved.find(from)) != std::string::npos;)
      moved.replace(p, std::string{from}.size(), to);
  load(dec, moved);
  CHECK(dec.find_collection(read_topic) == nullptr);
  CHECK(dec.find_collection(write_topic) == nullptr);
  auto* c = dec.find_collection("ie/d/j/simatic/v1/custom1/dp/r/Connection_2/Collection_1");
  REQUIRE(c);
  CHECK(c->find_id("201"));
  CHECK_FALSE(c->find_id("101"));
  CHECK(dec.collections() == 1);
  // Another connector's metadata adds to, not replaces, the first.
  load(dec, metadata_of({{"a", "1", "LReal"}}), plc_meta);
  CHECK(dec.collections() == 2);
  CHECK(dec.find_collection("ie/d/j/simatic/v1/custom1/dp/r/Connection_2/Collection_1"));
}

TEST_CASE("metadata problems are reported, unusable metadata changes nothing", "[simatic]") {
  simatic_decoder dec;
  load(dec, example_metadata);
  for (auto bad : {"", "not json", "[1,2]", R"({"seq":1})", R"({"connections":{}})",
                   R"({"connections":[{"name":"x"}]})",
                   R"({"connections":[{"name":"x","dataPoints":[{"name":"c"}]}]})"}) {
    auto d = decode(dec, meta_topic, bad);
    INFO(bad << ": " << d.error);
    CHECK_FALSE(d.metadata);
    CHECK_FALSE(d.error.empty());
    CHECK(dec.find_collection(read_topic) != nullptr);
  }
  // Partly usable: the good collection is taken, the bad definition named.
  auto d = decode(dec, plc_meta,
                  R"({"connections":[{"name":"Line1","dataPoints":[{"name":"c",)"
                  R"("topic":"ie/d/j/simatic/v1/plc/dp/r/Line1/c","dataPointDefinitions":[)"
                  R"({"name":"a","id":"1","dataType":"LReal"},{"name":"b","id":2}]}]}]})");
  CHECK(d.metadata);
  CHECK(d.error.find("dataPointDefinitions[1]") != std::string::npos);
  auto* c = dec.find_collection(plc_data);
  REQUIRE(c);
  CHECK(c->points.size() == 1);
  CHECK(c->pub_topic.empty());
  // An empty connections list is valid: the connector has nothing configured.
  d = decode(dec, plc_meta, R"({"connections":[]})");
  CHECK(d.metadata);
  CHECK(d.error.empty());
  CHECK(dec.find_collection(plc_data) == nullptr);
}

TEST_CASE("malformed data messages are errors, never crashes", "[simatic]") {
  simatic_decoder dec;
  load(dec, example_metadata);
  std::string garbage(1 << 20, '\0');
  for (size_t i = 0; i < garbage.size(); ++i)
    garbage[i] = static_cast<char>((i * 2654435761u) >> 13);
  std::vector<std::pair<std::string, std::string>> cases{
    {"", "not JSON"},
    {"not json", "not JSON"},
    {R"({"vals":[)", "not JSON"},
    {"[1,2,3]", "not a JSON object"},
    {"42", "not a JSON object"},
    {R"("vals")", "not a JSON object"},
    {R"({"seq":1})", "no vals"},
    {R"({"vals":{}})", "vals is not an array"},
    {R"({"vals":"x"})", "vals is not an array"},
    {R"({"vals":[1]})", "vals[0] is not an object"},
    {R"({"vals":[{"id":"101","val":true},[]]})", "vals[1] is not an object"},
    {R"({"vals":[{"id":101,"val":true}]})", "vals[0].id is not a string"},
    {R"({"vals":[{"id":{"x":1},"val":true}]})", "vals[0].id is not a string"},
    {R"({"vals":[{"val":true}]})", "vals[0] has no id"},
    {R"({"seq":"1","vals":[]})", "seq is not a non-negative integer"},
    {R"({"seq":-1,"vals":[]})", "seq is not a non-negative integer"},
    {R"({"vals":[{"id":"101","val":1e999}]})", "not JSON"},
    {"{\"vals\":[{\"id\":\"101\",\"val\":\"\xff\xfe\"}]}", "not JSON"},
    {"{\"vals\":[{\"id\":\"10\xc0\xaf\",\"val\":1}]}", "not JSON"},
    {R"({"vals":[]} trailing)", "not JSON"},
    {garbage, "not JSON"},
    {std::string(1 << 20, '['), "not a JSON object"},
    {R"({"vals":)" + std::string(1 << 20, '['), "vals[0] is not an object"},
    {R"({"x":)" + std::string(1 << 20, '['), "not JSON"},
  };
  for (auto& [payload, reason] : cases) {
    auto d = decode(dec, read_topic, payload);
    INFO(payload.substr(0, 60) << " -> " << d.error);
    CHECK_FALSE(d.parked);
    CHECK(d.records.empty());
    CHECK(d.error.find(reason) != std::string::npos);
    CHECK(d.error.find('\n') == std::string::npos);
    CHECK(d.error.size() < 300);
  }
  // Deeply nested but valid: an array value is kept as its JSON text, without recursion.
  auto deep = std::string(100000, '[') + std::string(100000, ']');
  auto d = decode(dec, read_topic, R"({"vals":[{"id":"101","val":)" + deep + "}]}");
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 1);
  CHECK(get<std::string>(d.records[0], "Datapoint_Bool") == deep);
  // The decoder still works afterwards.
  d = decode(dec, read_topic, example_data);
  CHECK(d.records.size() == 1);
}

TEST_CASE("unknown keys are skipped and array values kept as JSON text", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"arr", "1", "Array[0..2] of Real"}, {"v", "2", "LReal"}}), plc_meta);
  auto d = decode(dec, plc_data,
                  R"({"extra":{"deep":[1,{"x":[2]}]},"seq":3,"vals":[)"
                  R"({"id":"1","val":[1.5, -2, {"k": "v\n"}, [], null, true],"meta":[1,2]},)"
                  R"({"id":"2","val":0.5,"qx":{"a":[1]},"ts":"2022-07-21T13:01:50.159Z"}],)"
                  R"("more":[[],{}]})");
  INFO(d.error);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 1);
  auto& r = d.records[0];
  CHECK(get<std::string>(r, "arr") == R"([1.5,-2,{"k":"v\n"},[],null,true])");
  CHECK(get<double>(r, "v") == 0.5);
  CHECK(r.seq == 3);
  CHECK(r.time == example_ts);
}

TEST_CASE("an id repeated in one message (timeseries) splits it into records", "[simatic]") {
  simatic_decoder dec;
  load(dec, metadata_of({{"a", "1", "LReal"}, {"b", "2", "LReal"}}), plc_meta);
  auto d = decode(dec, plc_data,
                  R"({"seq":4,"vals":[)"
                  R"({"id":"1","val":1,"ts":"2022-07-21T13:01:50.000Z","qc":3},)"
                  R"({"id":"2","val":2,"ts":"2022-07-21T13:01:50.000Z","qc":2},)"
                  R"({"id":"1","val":3,"ts":"2022-07-21T13:01:50.100Z","qc":3},)"
                  R"({"id":"1","val":4,"ts":"2022-07-21T13:01:50.159Z","qc":3}]})");
  INFO(d.error);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 3);
  CHECK(d.records[0].fields.size() == 2);
  CHECK(get<double>(d.records[0], "a") == 1);
  CHECK(get<double>(d.records[0], "b") == 2);
  CHECK(quality::code(d.records[0].quality) == 2);
  CHECK(get<double>(d.records[1], "a") == 3);
  CHECK(d.records[1].time == example_ts - 59 * ms);
  CHECK(quality::code(d.records[1].quality) == 3);
  CHECK(get<double>(d.records[2], "a") == 4);
  CHECK(d.records[2].time == example_ts);
  for (auto& r : d.records) {
    CHECK(r.seq == 4);
    CHECK(r.stream == "src/Line1/c");
  }
}

TEST_CASE("the encoder's data and metadata decode back to the same record", "[simatic]") {
  simatic_encoder enc{"fab1", "fabrik test"};
  record r;
  r.stream = "press";
  r.time = example_ts + 123'400; // needs 7 digits
  r.seq = 99;
  r.quality = quality::good_non_cascade;
  r.fields = {{"force", 12.5},
              {"count", int64_t{-7}},
              {"ok", true},
              {"label", std::string{"a \"quoted\" \xc3\xa9 label"}},
              {"image", bytes{"\x01\x02"}},
              {"whole", 20.0}};
  auto data = enc.data(r, "out", "press.line1");
  CHECK(enc.skipped() == 1); // the bytes field
  REQUIRE(enc.metadata_changed());
  auto meta = enc.metadata();
  CHECK_FALSE(enc.metadata_changed());

  auto m = nlohmann::json::parse(meta);
  CHECK(m.at("applicationName") == "fabrik test");
  CHECK(m.at("statustopic") == "ie/s/j/simatic/v1/fab1/status");
  CHECK(m.at("hashVersion").is_number_unsigned());
  auto& dp = m.at("connections").at(0).at("dataPoints").at(0);
  CHECK(m.at("connections").at(0).at("name") == "out");
  CHECK(dp.at("name") == "press.line1");
  CHECK(dp.at("topic") == "ie/d/j/simatic/v1/fab1/dp/r/out/press.line1");
  CHECK(dp.at("pubTopic") == "ie/d/j/simatic/v1/fab1/dp/w/out/press.line1");
  auto& defs = dp.at("dataPointDefinitions");
  REQUIRE(defs.size() == 5);
  CHECK(defs[0] == nlohmann::json{{"name", "force"}, {"id", "1"}, {"dataType", "LReal"}});
  CHECK(defs[1] == nlohmann::json{{"name", "count"}, {"id", "2"}, {"dataType", "LInt"}});
  CHECK(defs[2] == nlohmann::json{{"name", "ok"}, {"id", "3"}, {"dataType", "Bool"}});
  CHECK(defs[3] == nlohmann::json{{"name", "label"}, {"id", "4"}, {"dataType", "String"}});
  CHECK(defs[4] == nlohmann::json{{"name", "whole"}, {"id", "5"}, {"dataType", "LReal"}});

  auto j = nlohmann::json::parse(data);
  CHECK(j.at("seq") == 1);
  CHECK(j.at("vals").at(0).at("ts") == "2022-07-21T13:01:50.1591234Z");
  CHECK(j.at("vals").at(0).at("qc") == 2);

  simatic_decoder dec;
  load(dec, meta, simatic_encoder::metadata_topic("fab1").c_str());
  auto d = decode(dec, simatic_encoder::read_topic("fab1", "out", "press.line1"), data);
  INFO(data << "\n" << d.error);
  CHECK(d.error.empty());
  REQUIRE(d.records.size() == 1);
  auto& back = d.records[0];
  CHECK(back.stream == "src/out/press.line1");
  CHECK(back.time == r.time);
  CHECK(back.quality == r.quality);
  CHECK(back.seq == 1);
  REQUIRE(back.fields.size() == 5);
  CHECK(back.fields[0] == r.fields[0]);
  CHECK(back.fields[1] == r.fields[1]);
  CHECK(back.fields[2] == r.fields[2]);
  CHECK(back.fields[3] == r.fields[3]);
  CHECK(back.fields[4] == r.fields[5]);
}

TEST_CASE("the encoder's metadata changes only when datapoints do", "[simatic]") {
  simatic_encoder enc{"fab1"};
  record r;
  r.time = example_ts;
  r.fields = {{"n", int64_t{1}}};
  (void)enc.data(r, "out", "a");
  CHECK(enc.metadata_changed());
  auto first = enc.metadata();
  (void)enc.data(r, "out", "a");
  CHECK_FALSE(enc.metadata_changed());

  // An int datapoint that receives a double becomes LReal, keeping its id.
  r.fields = {{"n", 1.5}};
  auto data = enc.data(r, "out", "a");
  CHECK(enc.metadata_changed());
  auto meta = nlohmann::json::parse(enc.metadata());
  auto& def = meta.at("connections")[0].at("dataPoints")[0].at("dataPointDefinitions")[0];
  CHECK(def.at("dataType") == "LReal");
  CHECK(def.at("id") == "1");
  CHECK(meta.at("hashVersion") != nlohmann::json::parse(first).at("hashVersion"));
  CHECK(meta.at("seq") == 2);
  CHECK(nlohmann::json::parse(data).at("vals")[0].at("val") == 1.5);

  // A value of another type cannot be written to it: skipped and counted.
  r.fields = {{"n", std::string{"x"}}, {"m", false}};
  auto before = enc.skipped();
  data = enc.data(r, "out", "a");
  CHECK(enc.skipped() == before + 1);
  auto vals = nlohmann::json::parse(data).at("vals");
  REQUIRE(vals.size() == 1);
  CHECK(vals[0].at("id") == "2");
  CHECK(vals[0].at("val") == false);
  // NaN has no JSON form.
  r.fields = {{"n", std::numeric_limits<double>::quiet_NaN()}};
  data = enc.data(r, "out", "a");
  CHECK(nlohmann::json::parse(data).at("vals").empty());
  CHECK(enc.skipped() == before + 2);
}

TEST_CASE("encoder ids are unique within a connection and per connection", "[simatic]") {
  simatic_encoder enc{"fab1"};
  record r;
  r.time = example_ts;
  r.fields = {{"x", 1.0}, {"y", 2.0}};
  (void)enc.data(r, "conn1", "a");
  (void)enc.data(r, "conn1", "b");
  (void)enc.data(r, "conn2", "a");
  auto m = nlohmann::json::parse(enc.metadata());
  auto ids = [&](size_t conn, size_t coll) {
    std::vector<std::string> out;
    for (auto& d : m.at("connections")[conn].at("dataPoints")[coll].at("dataPointDefinitions"))
      out.push_back(d.at("id"));
    return out;
  };
  CHECK(ids(0, 0) == std::vector<std::string>{"1", "2"});
  CHECK(ids(0, 1) == std::vector<std::string>{"3", "4"});
  CHECK(ids(1, 0) == std::vector<std::string>{"1", "2"});

  // Each collection decodes on its own topic.
  simatic_decoder dec;
  load(dec, enc.metadata(), simatic_encoder::metadata_topic("fab1").c_str());
  CHECK(dec.collections() == 3);
  auto d =
    decode(dec, simatic_encoder::read_topic("fab1", "conn1", "b"), enc.data(r, "conn1", "b"));
  REQUIRE(d.records.size() == 1);
  CHECK(d.records[0].stream == "src/conn1/b");
  CHECK(get<double>(d.records[0], "y") == 2.0);
}

TEST_CASE("writing to another connector uses its ids and dataTypes", "[simatic]") {
  simatic_decoder targets;
  load(targets, example_metadata);
  auto* target = targets.find_collection(
    simatic_encoder::write_topic("custom1", "Connection_1", "Collection_1"));
  REQUIRE(target);

  simatic_encoder enc{"fab1"};
  record r;
  r.time = example_ts;
  r.fields = {{"Datapoint_Real", 1.25}, {"unknown", 3.0}, {"Datapoint_Bool", true}};
  auto data = enc.data(r, "ignored", "ignored", target);
  CHECK(enc.skipped() == 1);
  CHECK_FALSE(enc.metadata_changed()); // nothing of its own was declared
  auto j = nlohmann::json::parse(data);
  REQUIRE(j.at("vals").size() == 2);
  CHECK(j.at("vals")[0].at("id") == "103");
  CHECK(j.at("vals")[0].at("val") == 1.25);
  CHECK(j.at("vals")[1].at("id") == "101");
  CHECK(j.at("vals")[1].at("val") == true);
  CHECK(j.at("vals")[0].at("ts") == "2022-07-21T13:01:50.159Z");

  // What the connector receives on its write topic decodes with its own names.
  auto d = decode(targets, write_topic, data);
  REQUIRE(d.records.size() == 1);
  CHECK(get<double>(d.records[0], "Datapoint_Real") == 1.25);
  CHECK(get<bool>(d.records[0], "Datapoint_Bool") == true);

  // A value that does not fit the target's dataType is not written.
  r.fields = {{"Datapoint_Bool", std::string{"maybe"}}, {"Datapoint_Real", int64_t{2}}};
  j = nlohmann::json::parse(enc.data(r, "", "", target));
  CHECK(enc.skipped() == 2);
  REQUIRE(j.at("vals").size() == 1);
  CHECK(j.at("vals")[0].at("id") == "103");
  CHECK(j.at("vals")[0].at("val") == 2);
}

TEST_CASE("an integer datapoint of a target gets integral values in range only", "[simatic]") {
  simatic_decoder targets;
  load(targets, metadata_of({{"n", "1", "Int"}}), plc_meta);
  auto* target = targets.find_collection(plc_data);
  REQUIRE(target);
  simatic_encoder enc{"fab1"};
  record r;
  r.time = example_ts;
  r.fields = {{"n", 3.0}};
  auto j = nlohmann::json::parse(enc.data(r, "", "", target));
  REQUIRE(j.at("vals").size() == 1);
  CHECK(j.at("vals")[0].at("val").is_number_integer());
  CHECK(j.at("vals")[0].at("val") == 3);
  for (auto v : {value{3.5}, value{int64_t{40000}}, value{true}}) {
    r.fields = {{"n", v}};
    j = nlohmann::json::parse(enc.data(r, "", "", target));
    CHECK(j.at("vals").empty());
  }
  CHECK(enc.skipped() == 3);
}

TEST_CASE("status messages and topic helpers follow the databus layout", "[simatic]") {
  CHECK(simatic_encoder::metadata_topic("app1") == "ie/m/j/simatic/v1/app1/dp");
  CHECK(simatic_encoder::read_topic("app1", "c", "k") == "ie/d/j/simatic/v1/app1/dp/r/c/k");
  CHECK(simatic_encoder::write_topic("app1", "c", "k") == "ie/d/j/simatic/v1/app1/dp/w/c/k");
  CHECK(simatic_encoder::status_topic("app1") == "ie/s/j/simatic/v1/app1/status");
  CHECK(simatic_decoder::is_metadata_topic(simatic_encoder::metadata_topic("app1")));
  for (auto s : {"available", "unavailable", "good", "bad"}) {
    auto j = nlohmann::json::parse(simatic_encoder::status(s));
    CHECK(j.at("connector").at("status") == s);
    CHECK(j.at("seq").is_number_unsigned());
    CHECK(parse_time(j.at("ts").get<std::string>()));
  }
  auto a = nlohmann::json::parse(simatic_encoder::status("good")).at("seq").get<uint64_t>();
  auto b = nlohmann::json::parse(simatic_encoder::status("good")).at("seq").get<uint64_t>();
  CHECK(b == a + 1);
  // The example status message is valid JSON of the same shape.
  CHECK(nlohmann::json::parse(example_status).at("connector").at("status") == "good");
}

TEST_CASE("a moved decoder keeps its metadata", "[simatic]") {
  simatic_decoder dec;
  load(dec, example_metadata);
  simatic_decoder other = std::move(dec);
  auto d = decode(other, read_topic, example_data);
  CHECK(d.records.size() == 1);
}

// -- the fast path agrees with nlohmann ------------------------------------------
//
// Data messages of the common shape are read by a hand-written scanner, everything else by
// nlohmann's SAX parser. These tests decode many generated messages with both (one decoder
// with the fast path, one without) and require identical results: records (doubles bit
// for bit), errors, parked and unknown_ids.

namespace {

/// A collection with a datapoint of every dataType; ids "1".."24".
std::string all_types_metadata() {
  return metadata_of({{"b", "1", "Bool"},
                      {"by", "2", "Byte"},
                      {"w", "3", "Word"},
                      {"dw", "4", "DWord"},
                      {"lw", "5", "LWord"},
                      {"si", "6", "SInt"},
                      {"usi", "7", "USInt"},
                      {"i", "8", "Int"},
                      {"ui", "9", "UInt"},
                      {"di", "10", "DInt"},
                      {"udi", "11", "UDInt"},
                      {"li", "12", "LInt"},
                      {"uli", "13", "ULInt"},
                      {"r", "14", "Real"},
                      {"lr", "15", "LReal"},
                      {"ch", "16", "Char"},
                      {"s", "17", "String"},
                      {"t", "18", "Time"},
                      {"lt", "19", "LTime"},
                      {"dt", "20", "DateTime"},
                      {"d", "21", "Date"},
                      {"tod", "22", "Time_Of_Day"},
                      {"ltod", "23", "LTime_Of_Day"},
                      {"x", "24", "SomethingNew"}});
}

bool same_value(const value& a, const value& b) {
  if (a.index() != b.index())
    return false;
  if (auto* x = std::get_if<double>(&a))
    return std::bit_cast<uint64_t>(*x) == std::bit_cast<uint64_t>(std::get<double>(b));
  return a == b;
}

/// What differs between two results; empty when they are the same.
std::string difference(const decoded& a, const decoded& b) {
  std::ostringstream out;
  if (a.error != b.error)
    out << "error '" << a.error << "' vs '" << b.error << "'; ";
  if (a.metadata != b.metadata || a.parked != b.parked || a.unknown_ids != b.unknown_ids)
    out << "metadata/parked/unknown_ids " << a.metadata << a.parked << a.unknown_ids << " vs "
        << b.metadata << b.parked << b.unknown_ids << "; ";
  if (a.records.size() != b.records.size()) {
    out << a.records.size() << " vs " << b.records.size() << " records";
    return out.str();
  }
  for (size_t i = 0; i < a.records.size(); ++i) {
    auto& x = a.records[i];
    auto& y = b.records[i];
    if (x.stream != y.stream || x.time != y.time || x.ingest_time != y.ingest_time || x.seq != y.seq
        || x.quality != y.quality || x.fields.size() != y.fields.size()) {
      out << "record " << i << " differs in stream, time, seq, quality or field count";
      continue;
    }
    for (size_t f = 0; f < x.fields.size(); ++f)
      if (x.fields[f].name != y.fields[f].name || !same_value(x.fields[f].v, y.fields[f].v))
        out << "record " << i << " field " << x.fields[f].name << " differs; ";
  }
  return out.str();
}

/// Two decoders with the same metadata: the reference (nlohmann only) and the default.
struct both_paths {
  simatic_decoder slow;
  simatic_decoder fast;
  size_t mismatches = 0;

  explicit both_paths(const std::string& metadata) {
    slow.set_fast_path(false);
    load(slow, metadata, plc_meta);
    load(fast, metadata, plc_meta);
  }

  /// Decodes `payload` with both and checks they agree; true when the fast path read it.
  bool check(std::string_view payload, std::string_view topic = plc_data) {
    auto before = fast.paths().fast;
    auto a = decode(slow, topic, payload);
    auto b = decode(fast, topic, payload);
    auto diff = difference(a, b);
    if (!diff.empty() && ++mismatches <= 10) { // a few are enough to debug
      INFO("payload: " << printable(payload, 2000));
      FAIL_CHECK(diff);
    }
    return fast.paths().fast != before;
  }
};

/// Random data messages: `plain` ones only use what the fast path reads; the others also
/// contain shapes it leaves to nlohmann.
struct message_generator {
  std::mt19937_64 rng{20261125};
  bool spaced = false; // JSON whitespace between tokens
  std::string shared_ts = "2022-07-21T13:01:50.159Z";

  size_t pick(size_t n) { return static_cast<size_t>(rng() % n); }
  bool chance(int percent) { return pick(100) < static_cast<size_t>(percent); }

  std::string ws() {
    static const char* const space[] = {" ", "\n", "\t", "\r\n", "  ", " \n\t "};
    return spaced && chance(30) ? space[pick(6)] : "";
  }

  std::string integer() {
    static const char* const edges[] = {"0",
                                        "1",
                                        "-1",
                                        "-0",
                                        "2",
                                        "3",
                                        "4",
                                        "127",
                                        "128",
                                        "-128",
                                        "-129",
                                        "255",
                                        "256",
                                        "32767",
                                        "32768",
                                        "-32768",
                                        "-32769",
                                        "65535",
                                        "65536",
                                        "2147483647",
                                        "2147483648",
                                        "-2147483648",
                                        "-2147483649",
                                        "4294967295",
                                        "4294967296",
                                        "9223372036854775807",
                                        "9223372036854775808",
                                        "-9223372036854775808",
                                        "18446744073709551615"};
    switch (pick(3)) {
      case 0:
        return edges[pick(std::size(edges))];
      case 1:
        return std::to_string(static_cast<int64_t>(rng()) >> pick(64));
      default:
        return std::to_string(rng() >> pick(64));
    }
  }

  std::string floating() {
    char buf[64];
    switch (pick(7)) {
      case 0: { // any finite double, shortest-exact or longer
        double d;
        do {
          d = std::bit_cast<double>(rng());
        } while (!std::isfinite(d));
        std::snprintf(buf, sizeof buf, chance(50) ? "%.17g" : "%.16g", d);
        break;
      }
      case 1: { // as connectors print measurements: fixed decimals
        std::normal_distribution<double> g{0, std::pow(10.0, static_cast<double>(pick(8)))};
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(pick(8)), g(rng));
        break;
      }
      case 2: { // exponents in every spelling
        int e = static_cast<int>(pick(600)) - 300;
        std::snprintf(buf, sizeof buf, "%s%llu.%llu%s%s%d", chance(30) ? "-" : "",
                      static_cast<unsigned long long>(pick(1000)),
                      static_cast<unsigned long long>(rng() >> pick(64)), chance(50) ? "e" : "E",
                      e < 0        ? "-"
                      : chance(30) ? "+"
                                   : "",
                      std::abs(e));
        break;
      }
      case 3: { // long mantissas, near halfway cases
        std::string digits = std::to_string(rng()) + std::to_string(rng());
        auto cut = 1 + pick(digits.size() - 1);
        return (chance(20) ? "-" : "") + digits.substr(0, cut) + "." + digits.substr(cut);
      }
      case 4: { // integral floats
        static const char* const integral[] = {"0.0",
                                               "-0.0",
                                               "1.0",
                                               "3.0",
                                               "1e2",
                                               "1E+2",
                                               "255.0",
                                               "256.0",
                                               "-128.0",
                                               "9.2233720368547758e18",
                                               "-9.2233720368547758e18",
                                               "1e19",
                                               "0e0",
                                               "2.5e1"};
        return integral[pick(std::size(integral))];
      }
      case 5: { // around the ranges of float and double, and subnormals
        static const char* const edges[] = {"3.4028234663852886e38",
                                            "3.4028235677973366e38",
                                            "3.4028236e38",
                                            "-3.4028234663852886e38",
                                            "1.7976931348623157e308",
                                            "2.2250738585072014e-308",
                                            "2.2250738585072011e-308",
                                            "4.9406564584124654e-324",
                                            "2.4703282292062328e-324",
                                            "1e-320",
                                            "0.1",
                                            "0.2",
                                            "0.3",
                                            "1.5",
                                            "4.123"};
        return edges[pick(std::size(edges))];
      }
      default: { // a random double printed with few digits
        std::uniform_real_distribution<double> u{-1e6, 1e6};
        std::snprintf(buf, sizeof buf, "%.*g", 1 + static_cast<int>(pick(17)), u(rng));
      }
    }
    return buf;
  }

  std::string plain_text() {
    static const char* const texts[] = {"",
                                        "OK",
                                        "error",
                                        "pseudo-error",
                                        "true",
                                        "false",
                                        "1",
                                        "0",
                                        "-1",
                                        "+5",
                                        "4.5",
                                        " 3",
                                        "1e3",
                                        "255",
                                        "256",
                                        "T#1s",
                                        "2022-07-21T13:01:50.159Z",
                                        "2022-07-21",
                                        "with spaces and / slashes",
                                        "~\x7f",
                                        "9223372036854775808",
                                        "nan",
                                        "inf"};
    if (chance(80))
      return std::string{"\""} + texts[pick(std::size(texts))] + "\"";
    std::string s = "\"";
    for (size_t i = pick(40); i > 0; --i) {
      char c = static_cast<char>(0x20 + pick(0x60));
      if (c != '"' && c != '\\')
        s += c;
    }
    return s + "\"";
  }

  /// A val the fast path reads.
  std::string plain_val() {
    switch (pick(6)) {
      case 0:
        return integer();
      case 1:
      case 2:
        return floating();
      case 3:
        return plain_text();
      case 4:
        return chance(50) ? "true" : "false";
      default:
        return chance(80) ? "null" : integer();
    }
  }

  std::string ts() {
    static const char* const odd[] = {"\"2022-07-21T13:01:50Z\"",
                                      "\"2022-07-21T13:01:50.1234567Z\"",
                                      "\"2022-07-21 13:01:50.159+02:00\"",
                                      "\"1999-12-31T23:59:59Z\"",
                                      "\"2030-01-01T00:00:00Z\"",
                                      "\"yesterday\"",
                                      "\"\"",
                                      "\"2022-13-01T00:00:00Z\"",
                                      "null",
                                      "1658408510159",
                                      "true"};
    if (chance(85))
      return "\"" + shared_ts + "\"";
    return odd[pick(std::size(odd))];
  }

  std::string qc() {
    static const char* const qcs[] = {"0",  "1",    "2",     "3",   "3",    "3",          "4",
                                      "-1", "null", "\"3\"", "3.0", "true", "99999999999"};
    return qcs[pick(std::size(qcs))];
  }

  /// One element of vals, keys shuffled; `odd` adds a shape left to nlohmann.
  std::string element(bool odd, size_t ids) {
    std::vector<std::string> keys;
    std::string id = chance(95) ? std::to_string(1 + pick(ids)) : "999";
    keys.push_back("\"id\"" + ws() + ":" + ws() + "\"" + id + "\"");
    if (chance(95))
      keys.push_back("\"val\":" + ws() + plain_val());
    if (chance(90))
      keys.push_back("\"ts\":" + ts());
    if (chance(80))
      keys.push_back("\"qc\":" + ws() + qc());
    if (chance(20))
      keys.push_back("\"qx\":" + (chance(50) ? integer() : plain_val()));
    if (odd) {
      static const char* const extra[] = {R"("val":"esc\"aped")",
                                          R"("val":"tab\tnew\nline")",
                                          R"("val":"\u00e9t\u00e9")",
                                          "\"val\":\"\xc3\xa9t\xc3\xa9\"",
                                          "\"val\":\"bad \xff utf-8\"",
                                          "\"val\":\"overlong \xc0\xaf\"",
                                          "\"val\":\"ctl \x01 byte\"",
                                          R"("val":[1,2.50,"x"])",
                                          R"("val":{"a":[true,null]})",
                                          R"("val":[])",
                                          R"("unknown":1)",
                                          R"("qx":{"a":1})",
                                          R"("qx":[0])",
                                          R"("ts":["x"])",
                                          R"("qc":{})",
                                          R"("id":"dup")",
                                          R"("id":7)",
                                          R"("val":1e999)",
                                          R"("val":-1e400)",
                                          R"("val":1e-400)",
                                          R"("val":01)",
                                          R"("val":1.)",
                                          R"("val":.5)",
                                          R"("val":+1)",
                                          R"("val":tru)",
                                          R"("val":nul)",
                                          R"("val":99999999999999999999)",
                                          R"("val":-9223372036854775809)",
                                          R"("i\u0064":"1")",
                                          "\"val\":\"\x7f\"",
                                          R"("val":"\/")"};
      keys.push_back(extra[pick(std::size(extra))]);
    }
    std::shuffle(keys.begin(), keys.end(), rng);
    std::string out = "{" + ws();
    for (size_t i = 0; i < keys.size(); ++i)
      out += (i ? "," + ws() : "") + keys[i] + ws();
    return out + "}";
  }

  std::string message(bool odd, size_t ids = 24) {
    std::vector<std::string> top;
    if (chance(80))
      top.push_back("\"seq\":" + ws()
                    + (chance(90)   ? std::to_string(rng() >> pick(64))
                       : chance(50) ? integer() // may be negative: an error
                                    : "\"1\""));
    size_t n = pick(20);
    size_t odd_at = odd ? pick(n + 3) : n + 99; // past the end: at the top level
    std::string vals = "\"vals\":" + ws() + "[" + ws();
    for (size_t i = 0; i < n; ++i)
      vals += (i ? "," + ws() : "") + element(i == odd_at, ids) + ws();
    top.push_back(vals + "]");
    if (odd && odd_at >= n) {
      static const char* const extra[] = {R"("x":1)",   R"("meta":{"a":[1]})", R"("vals":[])",
                                          R"("seq":2)", R"("seq":-1)",         R"("vals":{})"};
      top.push_back(extra[pick(std::size(extra))]);
    }
    std::shuffle(top.begin(), top.end(), rng);
    std::string out = ws() + "{" + ws();
    for (size_t i = 0; i < top.size(); ++i)
      out += (i ? "," + ws() : "") + top[i] + ws();
    return out + "}" + ws();
  }
};

} // namespace

TEST_CASE("the fast path decodes generated messages exactly as nlohmann does", "[simatic]") {
  both_paths p{all_types_metadata()};
  message_generator gen;
  size_t fast = 0, plain = 0;
  for (int i = 0; i < 6000; ++i) {
    gen.spaced = i % 3 == 0;
    if (i % 50 == 0) // a new ts now and then, as from a connector
      gen.shared_ts = "2022-07-21T13:01:" + std::to_string(10 + i % 50) + ".159Z";
    bool odd = i % 4 == 3;
    auto m = gen.message(odd);
    bool took_fast = p.check(m);
    if (!odd) {
      ++plain;
      fast += took_fast;
    }
  }
  CHECK(p.mismatches == 0);
  // Plain messages with well-formed vals go the fast way; those an error or an odd number
  // sends back to nlohmann are few.
  INFO(fast << " of " << plain << " plain messages took the fast path");
  CHECK(fast * 10 > plain * 9);
  // Unknown topic: everything parked, on both paths.
  for (int i = 0; i < 200; ++i)
    p.check(gen.message(i % 2 == 0), "ie/d/j/simatic/v1/plc/dp/r/Line1/other");
  CHECK(p.mismatches == 0);
}

TEST_CASE("the fast path takes the connectors' shape and leaves the rest to nlohmann",
          "[simatic]") {
  both_paths p{all_types_metadata()};
  const std::vector<std::string> fast{
    R"({"seq":1,"vals":[{"id":"1","val":true,"ts":"2022-07-21T13:01:50.159Z","qc":3}]})",
    R"({"vals":[]})",
    R"({})",
    R"({"seq":7})",
    " \r\n\t{ \"vals\" : [ { \"qc\" : 3 , \"id\" : \"15\" , \"val\" : -1.5e-3 } ] } \n",
    R"({"vals":[{"id":"14","val":"4.5","qx":0},{"id":"14","val":null},{"id":"3"}]})",
    R"({"vals":[{"id":"999","val":1}],"seq":3})",
    "{\"vals\":[{\"id\":\"17\",\"val\":\"~\x7f\"}]}",
  };
  for (auto& m : fast) {
    INFO(m);
    CHECK(p.check(m));
  }
  const std::vector<std::string> slow{
    R"({"vals":[{"id":"17","val":"~\u007f"}]})",
    R"({"vals":[{"id":"17","val":"a\"b"}]})",
    "{\"vals\":[{\"id\":\"17\",\"val\":\"\xc3\xa9\"}]}",
    "{\"vals\":[{\"id\":\"17\",\"val\":\"\xff\"}]}",
    "\xef\xbb\xbf{\"vals\":[]}",
    R"({"vals":[{"id":"1","val":[true]}]})",
    R"({"vals":[{"id":"1","val":{}}]})",
    R"({"vals":[{"id":"1","val":true,"other":1}]})",
    R"({"vals":[{"id":"1","val":true,"qx":[]}]})",
    R"({"vals":[{"id":"1","val":true,"val":false}]})",
    R"({"vals":[{"id":"1","val":true}],"vals":[]})",
    R"({"seq":1,"seq":2,"vals":[]})",
    R"({"vals":[],"x":1})",
    R"({"seq":-1,"vals":[]})",
    R"({"seq":1.5,"vals":[]})",
    R"({"vals":[{"id":1,"val":true}]})",
    R"({"vals":[{"val":true}]})",
    R"({"vals":[1]})",
    R"({"vals":{}})",
    R"({"vals":[{"id":"15","val":1e999}]})",
    R"({"vals":[{"id":"15","val":1e-999}]})",
    R"({"vals":[{"id":"15","val":18446744073709551616}]})",
    R"({"vals":[{"id":"15","val":-9223372036854775809}]})",
    R"({"vals":[{"id":"15","val":01}]})",
    R"({"vals":[{"id":"15","val":1.}]})",
    R"({"vals":[{"id":"15","val":-}]})",
    R"({"vals":[{"id":"15","val":1}]} x)",
    R"({"vals":[{"id":"15","val":1},]})",
    R"({"vals":[{"id":"15","val":1,}]})",
    "{\"vals\":[{\"id\":\"15\",\"val\":1}]}\f",
    "[]",
    "",
  };
  for (auto& m : slow) {
    INFO(m);
    CHECK_FALSE(p.check(m));
  }
  CHECK(p.mismatches == 0);
}

TEST_CASE("numbers read by the fast path are bit-identical to nlohmann's", "[simatic]") {
  both_paths p{metadata_of({{"a", "1", "LReal"},
                            {"b", "2", "LInt"},
                            {"c", "3", "Time"},
                            {"d", "4", "Real"},
                            {"e", "5", "SomethingNew"}})};
  message_generator gen;
  size_t fast = 0;
  const int messages = 2000;
  for (int i = 0; i < messages; ++i) {
    std::string m = R"({"vals":[)";
    for (int k = 0; k < 20; ++k) {
      auto id = std::to_string(1 + k % 5);
      m += (k ? "," : "") + (R"({"id":")" + id + R"(","val":)")
           + (k % 5 == 1 ? gen.integer() : gen.floating()) + "}"; // ids repeat: 4 records
    }
    m += "]}";
    fast += p.check(m);
  }
  CHECK(p.mismatches == 0);
  CHECK(fast * 10 > messages * 9);
}

TEST_CASE("the fast path agrees on every truncation of a message", "[simatic]") {
  both_paths p{all_types_metadata()};
  message_generator gen;
  for (int i = 0; i < 20; ++i) {
    gen.spaced = i % 2 == 1;
    auto m = gen.message(i % 5 == 4);
    for (size_t cut = 0; cut <= m.size(); ++cut)
      p.check(std::string_view{m}.substr(0, cut));
    // and every single byte changed to one that matters to the scanner
    for (size_t at = 0; at < m.size(); at += 3) {
      auto changed = m;
      changed[at] = "\"\\{}[],: 0-.e\x80"[at % 14];
      p.check(changed);
    }
  }
  CHECK(p.mismatches == 0);
}

TEST_CASE("a ts equal to the previous one reuses its time, any other is parsed", "[simatic]") {
  both_paths p{metadata_of({{"a", "1", "LReal"}, {"b", "2", "LReal"}})};
  auto two = [](const std::string& ts1, const std::string& ts2) {
    return R"({"vals":[{"id":"1","val":1,"ts":")" + ts1 + R"("},{"id":"2","val":2,"ts":")" + ts2
           + R"("}]})";
  };
  const std::string t = "2022-07-21T13:01:50.159Z";
  const std::vector<std::tuple<std::string, std::string, int64_t>> cases{
    {t, t, example_ts},
    {t, "2022-07-21T13:01:50.160Z", example_ts + ms},
    {"2022-07-21T13:01:50.160Z", t, example_ts + ms},
    {t, "2022-07-21T13:01:50.158Z", example_ts},
    {t, t + " ", example_ts},
    {"2022-07-21T13:01:50.159+00:00", t, example_ts},
    {"garbage", t, example_ts},
    {t, "garbage", example_ts},
    {"garbage", "garbage", ingest},
  };
  for (auto& [ts1, ts2, time] : cases) {
    auto m = two(ts1, ts2);
    INFO(m);
    CHECK(p.check(m));
    auto d = decode(p.fast, plc_data, m);
    REQUIRE(d.records.size() == 1);
    CHECK(d.records[0].time == time);
  }
  // A bad ts is reported for every value, whether its result came from the cache or not.
  auto d = decode(p.fast, plc_data, two("garbage", "garbage"));
  CHECK(d.error == "vals[0] (id 1): ts 'garbage' is not a time (and 1 more)");
  CHECK(p.mismatches == 0);
}
