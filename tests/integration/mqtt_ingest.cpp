// End to end: mosquitto -> fabrik (a real process) -> LMDB, read back through the store.

#include "tests/integration/fixture.hpp"

#include "core/store.hpp"
#include "core/time.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <thread>

using namespace fabrik;
using namespace fabrik::test;

namespace {

constexpr const char* metadata_topic = "ie/m/j/simatic/v1/plc1/dp";
constexpr const char* data_topic = "ie/d/j/simatic/v1/plc1/dp/r/Line1/default";
const std::string stream = "line_in/Line1/default";

std::string metadata() {
  return R"({"seq":1,"hashVersion":42,"applicationName":"test PLC",)"
         R"("statustopic":"ie/s/j/simatic/v1/plc1/status","connections":[{"name":"Line1",)"
         R"("type":"simulated","dataPoints":[{"name":"default","topic":")"
         + std::string{data_topic}
         + R"(","publishType":"bulk","dataPointDefinitions":[)"
           R"({"name":"height","id":"1","dataType":"LReal"},)"
           R"({"name":"count","id":"2","dataType":"DInt"},)"
           R"({"name":"ok","id":"3","dataType":"Bool"},)"
           R"({"name":"label","id":"4","dataType":"String"}]}]}]})";
}

/// Board i: values derived from i so every record can be checked.
std::string board(int i) {
  // 2024-01-01T00:00:00Z plus i milliseconds.
  auto ts = format_time(1704067200'000'000'000 + int64_t{i} * 1'000'000, 3);
  return R"({"seq":)" + std::to_string(i) + R"(,"vals":[)" + R"({"id":"1","val":)"
         + std::to_string(i * 0.5) + R"(,"ts":")" + ts + R"(","qc":3},)" + R"({"id":"2","val":)"
         + std::to_string(i) + R"(,"ts":")" + ts + R"(","qc":3},)" + R"({"id":"3","val":)"
         + (i % 2 ? "true" : "false") + R"(,"ts":")" + ts + R"(","qc":3},)"
         + R"({"id":"4","val":"b)" + std::to_string(i) + R"(","ts":")" + ts + R"(","qc":3}]})";
}

std::vector<std::string> boards(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i)
    out.push_back(board(i));
  return out;
}

std::string flow_text(const broker& b, const std::string& extra_actor = "") {
  return "name: ingest-test\n"
         "brokers:\n"
         "  local: {url: \""
         + b.url()
         + "\"}\n"
           "actors:\n"
           "  line_in:\n"
           "    kind: mqtt.source\n"
           "    broker: local\n"
           "    topics: [\"ie/m/j/simatic/v1/+/dp\", \"ie/d/j/simatic/v1/+/dp/r/#\"]\n"
           "    format: simatic-v1\n"
           "    qos: 1\n"
           "  store:\n"
           "    kind: storage\n"
         + extra_actor
         + "wires:\n"
           "  - line_in -> store\n";
}

struct running_flow {
  temp_dir& dir;
  process proc;

  running_flow(temp_dir& d, const std::string& log = "fabrik.log") : dir(d) {
    proc = process({fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
                    (dir / "data").string(), "--status-interval", "1s"},
                   dir / log);
  }
  std::filesystem::path store_dir() const { return dir / "data" / "storage" / "store"; }
  uint64_t count() const { return stored_count(store_dir(), stream); }
};

std::vector<record> read_all(const std::filesystem::path& dir) {
  store_options opts;
  opts.dir = dir;
  opts.read_only = true;
  auto db = store::open(opts);
  REQUIRE(db);
  std::vector<record> out;
  auto n = db->scan({stream}, [&](record&& r) {
    out.push_back(std::move(r));
    return true;
  });
  REQUIRE(n);
  return out;
}

/// Every board 0..n-1 is stored exactly once with its values and source time.
void check_boards(const std::vector<record>& records, int n) {
  REQUIRE(records.size() == static_cast<size_t>(n));
  std::vector<int> seen(n, 0);
  for (auto& r : records) {
    auto* count = r.find("count");
    REQUIRE(count);
    auto i = static_cast<int>(std::get<int64_t>(*count));
    REQUIRE(i >= 0);
    REQUIRE(i < n);
    ++seen[i];
    CHECK(std::get<double>(*r.find("height")) == Approx(i * 0.5));
    CHECK(std::get<bool>(*r.find("ok")) == (i % 2 == 1));
    CHECK(std::get<std::string>(*r.find("label")) == "b" + std::to_string(i));
    CHECK(r.time == 1704067200'000'000'000 + int64_t{i} * 1'000'000);
  }
  for (int i = 0; i < n; ++i)
    if (seen[i] != 1)
      FAIL("board " << i << " stored " << seen[i] << " times");
}

} // namespace

TEST_CASE("10,000 QoS1 simatic-v1 messages become exactly 10,000 records", "[e2e][mqtt]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b));
  publish_lines(b.port(), metadata_topic, {metadata()}, 1, true);
  running_flow fabrik{dir};
  // The source subscribes, then the boards arrive.
  REQUIRE(wait_until([&] { return fabrik.proc.log().find("connected to") != std::string::npos; }));
  publish_lines(b.port(), data_topic, boards(0, 10000));
  REQUIRE(wait_until([&] { return fabrik.count() >= 10000; }, std::chrono::seconds{120}));
  fabrik.proc.signal(SIGTERM);
  REQUIRE(fabrik.proc.wait() == 0);
  check_boards(read_all(fabrik.store_dir()), 10000);
}

TEST_CASE("QoS1 messages published while fabrik is down arrive after a restart", "[e2e][mqtt]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b));
  publish_lines(b.port(), metadata_topic, {metadata()}, 1, true);
  {
    running_flow first{dir, "first.log"};
    REQUIRE(wait_until([&] { return first.proc.log().find("connected to") != std::string::npos; }));
    first.proc.signal(SIGTERM);
    REQUIRE(first.proc.wait() == 0);
  }
  publish_lines(b.port(), data_topic, boards(0, 2000));
  running_flow second{dir, "second.log"};
  REQUIRE(wait_until([&] { return second.count() >= 2000; }));
  second.proc.signal(SIGTERM);
  REQUIRE(second.proc.wait() == 0);
  check_boards(read_all(second.store_dir()), 2000);
}

TEST_CASE("a broker restart mid-stream loses nothing", "[e2e][mqtt]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b));
  publish_lines(b.port(), metadata_topic, {metadata()}, 1, true);
  running_flow fabrik{dir};
  REQUIRE(wait_until([&] { return fabrik.proc.log().find("connected to") != std::string::npos; }));
  publish_lines(b.port(), data_topic, boards(0, 3000));
  b.stop();
  b.start();
  publish_lines(b.port(), data_topic, boards(3000, 6000));
  REQUIRE(wait_until([&] { return fabrik.count() >= 6000; }, std::chrono::seconds{120}));
  fabrik.proc.signal(SIGTERM);
  REQUIRE(fabrik.proc.wait() == 0);
  check_boards(read_all(fabrik.store_dir()), 6000);
}

TEST_CASE("fabrik SIGKILLed mid-stream loses nothing and stores nothing twice", "[e2e][mqtt]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b));
  publish_lines(b.port(), metadata_topic, {metadata()}, 1, true);
  {
    running_flow first{dir, "first.log"};
    REQUIRE(wait_until([&] { return first.proc.log().find("connected to") != std::string::npos; }));
    std::thread publisher{[&] { publish_lines(b.port(), data_topic, boards(0, 20000)); }};
    REQUIRE(wait_until([&] { return first.count() >= 2000; }, std::chrono::seconds{120}));
    first.proc.signal(SIGKILL);
    first.proc.wait();
    publisher.join();
    INFO("stored before the kill: " << first.count());
    CHECK(first.count() < 20000); // the kill really happened mid-stream
  }
  running_flow second{dir, "second.log"};
  REQUIRE(wait_until([&] { return second.count() >= 20000; }, std::chrono::seconds{180}));
  second.proc.signal(SIGTERM);
  REQUIRE(second.proc.wait() == 0);
  check_boards(read_all(second.store_dir()), 20000);
}

TEST_CASE("malformed payloads are counted and logged while good ones are stored", "[e2e][mqtt]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b));
  publish_lines(b.port(), metadata_topic, {metadata()}, 1, true);
  running_flow fabrik{dir};
  REQUIRE(wait_until([&] { return fabrik.proc.log().find("connected to") != std::string::npos; }));
  publish_lines(b.port(), data_topic, boards(0, 100));
  publish_bytes(b.port(), data_topic, "this is not JSON");
  publish_bytes(b.port(), data_topic,
                R"({"seq":1,"vals":[{"id":"1","val":"abc","ts":"2024-01-01T00:00:00Z"}]})");
  std::string garbage(1 << 20, '\0');
  for (size_t i = 0; i < garbage.size(); ++i)
    garbage[i] = static_cast<char>((i * 7919) % 251);
  publish_bytes(b.port(), data_topic, garbage);
  publish_bytes(b.port(), data_topic, "{\"seq\":1,\"vals\":[{\"id\":\"4\",\"val\":\"\xff\xfe\"}]}");
  publish_lines(b.port(), data_topic, boards(100, 200));
  auto boards_stored = [&] {
    size_t n = 0;
    for (auto& r : read_all(fabrik.store_dir()))
      if (r.find("count"))
        ++n;
    return n;
  };
  REQUIRE(wait_until([&] { return boards_stored() >= 200; }));
  REQUIRE(wait_until([&] { return status_value(fabrik.proc.log(), "line_in", "malformed") >= 4; },
                     std::chrono::seconds{20}));
  CHECK(status_value(fabrik.proc.log(), "line_in", "errors") >= 4);
  fabrik.proc.signal(SIGTERM);
  REQUIRE(fabrik.proc.wait() == 0);
  auto log = fabrik.proc.log();
  CHECK(log.find("malformed message on " + std::string{data_topic}) != std::string::npos);
  CHECK(boards_stored() == 200);
}
