// End to end: aravis's fake GigE Vision camera (a real process on loopback) -> fabrik (a
// real process) -> LMDB, read back through the store.

#include "tests/integration/fixture.hpp"

#include "core/store.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <csignal>
#include <map>
#include <set>

using namespace fabrik;
using namespace fabrik::test;

namespace {

const std::string stream = std::string{"cam/"} + fake_camera::id;

/// A flow of camera `cam` -> storage `store`; `camera` holds more settings lines of cam.
std::string camera_flow(const std::string& camera) {
  return "name: genicam-test\n"
         "actors:\n"
         "  cam:\n"
         "    kind: genicam.source\n"
         "    camera: "
         + std::string{fake_camera::id} + "\n" + camera
         + "  store:\n"
           "    kind: storage\n"
           "wires:\n"
           "  - cam -> store\n";
}

struct running_flow {
  temp_dir& dir;
  process proc;
  explicit running_flow(temp_dir& d) : dir(d) {
    proc = process({fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
                    (dir / "data").string(), "--status-interval", "1s"},
                   dir / "fabrik.log");
  }
  std::filesystem::path store_dir() const { return dir / "data" / "storage" / "store"; }
  void stop() {
    proc.signal(SIGTERM);
    REQUIRE(proc.wait() == 0);
  }
};

std::vector<record> stored(const std::filesystem::path& dir) {
  store_options o;
  o.dir = dir;
  o.read_only = true;
  auto db = store::open(o);
  REQUIRE(db);
  std::vector<record> out;
  REQUIRE(db->scan({.stream = stream}, [&](record&& r) {
    out.push_back(std::move(r));
    return true;
  }));
  return out;
}

int64_t int_field(const record& r, const char* name) {
  auto* v = r.find(name);
  REQUIRE(v);
  REQUIRE(std::holds_alternative<int64_t>(*v));
  return std::get<int64_t>(*v);
}

} // namespace

TEST_CASE("frames of the fake GigE Vision camera are stored with the size set in the flow "
          "and rising frame ids",
          "[e2e][genicam]") {
  temp_dir dir;
  fake_camera camera{dir.path()};
  write_file(dir / "flow.yaml", camera_flow("    width: 320\n"
                                            "    height: 240\n"
                                            "    pixel_format: Mono16\n"
                                            "    frame_rate: 20\n"));
  running_flow fabrik{dir};
  INFO(fabrik.proc.log());
  REQUIRE(wait_until([&] { return stored_count(fabrik.store_dir(), stream) >= 20; },
                     std::chrono::seconds{30}));
  fabrik.stop();
  auto records = stored(fabrik.store_dir());
  REQUIRE(records.size() >= 20);
  int64_t last_id = -1;
  for (auto& r : records) {
    auto* image = r.find("image");
    REQUIRE(image);
    REQUIRE(std::holds_alternative<bytes>(*image));
    CHECK(std::get<bytes>(*image).data.size() == 320 * 240 * 2);
    CHECK(int_field(r, "width") == 320);
    CHECK(int_field(r, "height") == 240);
    CHECK(std::get<std::string>(*r.find("pixel_format")) == "Mono16");
    auto id = int_field(r, "frame_id");
    CHECK(id > last_id); // records sort by time; frames arrive in order
    last_id = id;
  }
  CHECK(fabrik.proc.log().find("streaming from Aravis-Fake-GV01 (320x240 Mono16)")
        != std::string::npos);
}

TEST_CASE("a feature the camera does not have and a value it refuses are reported once and "
          "counted, and the camera streams with the features it has",
          "[e2e][genicam]") {
  temp_dir dir;
  fake_camera camera{dir.path()};
  write_file(dir / "flow.yaml", camera_flow("    frame_rate: 20\n"
                                            "    pixel_format: Banana\n"
                                            "    features: [Width=128, NoSuchFeature=3, "
                                            "Height=96]\n"));
  running_flow fabrik{dir};
  INFO(fabrik.proc.log());
  REQUIRE(wait_until([&] { return stored_count(fabrik.store_dir(), stream) >= 5; },
                     std::chrono::seconds{30}));
  REQUIRE(wait_until([&] { return status_value(fabrik.proc.log(), "cam", "feature_errors") == 2; },
                     std::chrono::seconds{10}));
  fabrik.stop();
  auto log = fabrik.proc.log();
  CHECK(log.find("cam: camera Aravis-Fake-GV01: pixel_format 'Banana': ") != std::string::npos);
  CHECK(log.find("cam: camera Aravis-Fake-GV01: feature 'NoSuchFeature': no such feature on "
                 "this camera")
        != std::string::npos);
  auto records = stored(fabrik.store_dir());
  REQUIRE(!records.empty());
  CHECK(std::get<bytes>(*records.back().find("image")).data.size() == 128 * 96);
}

TEST_CASE("the camera process stopped and started again: the source reconnects and frames "
          "flow again",
          "[e2e][genicam]") {
  temp_dir dir;
  fake_camera camera{dir.path()};
  write_file(dir / "flow.yaml", camera_flow("    width: 64\n"
                                            "    height: 64\n"
                                            "    frame_rate: 20\n"));
  running_flow fabrik{dir};
  INFO(fabrik.proc.log());
  REQUIRE(wait_until([&] { return stored_count(fabrik.store_dir(), stream) >= 10; },
                     std::chrono::seconds{30}));
  camera.stop();
  // aravis's heartbeat notices within a few seconds; the source then retries with backoff.
  REQUIRE(wait_until([&] { return status_value(fabrik.proc.log(), "cam", "reconnects") >= 1; },
                     std::chrono::seconds{20}));
  auto before = stored_count(fabrik.store_dir(), stream);
  camera.start();
  REQUIRE(wait_until([&] { return stored_count(fabrik.store_dir(), stream) >= before + 10; },
                     std::chrono::seconds{60}));
  fabrik.stop();
  CHECK(fabrik.proc.log().find("stopped answering; reconnecting") != std::string::npos);
}

TEST_CASE("a camera that is not there is reported with its id and retried, and the rest of "
          "the flow runs",
          "[e2e][genicam]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml",
             "name: genicam-missing\n"
             "brokers:\n"
             "  local: {url: \""
               + b.url()
               + "\"}\n"
                 "actors:\n"
                 "  cam: {kind: genicam.source, camera: No-Such-Camera-42}\n"
                 "  line_in: {kind: mqtt.source, broker: local, topics: [t], format: json}\n"
                 "  store: {kind: storage}\n"
                 "wires:\n"
                 "  - cam -> store\n"
                 "  - line_in -> store\n");
  running_flow fabrik{dir};
  INFO(fabrik.proc.log());
  REQUIRE(wait_until([&] { return status_value(fabrik.proc.log(), "cam", "errors") >= 2; },
                     std::chrono::seconds{30}));
  auto log = fabrik.proc.log();
  CHECK(log.find("cam: camera 'No-Such-Camera-42' not found") != std::string::npos);
  CHECK(log.find("status cam (genicam.source) degraded") != std::string::npos);
  // The engine goes on: MQTT records still reach the storage.
  publish_lines(b.port(), "t", {R"({"x": 1})", R"({"x": 2})"});
  REQUIRE(wait_until([&] { return stored_count(fabrik.store_dir(), "line_in/t") == 2; },
                     std::chrono::seconds{30}));
  fabrik.stop();
}

TEST_CASE("the frame-check workflow gets the camera's frames and its verdicts go out on MQTT",
          "[e2e][genicam][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  fake_camera camera{dir.path()};
  package("frame-check", dir / "frame-check.zip");
  write_file(dir / "flow.yaml",
             "name: genicam-workflow-test\n"
             "brokers:\n"
             "  local: {url: \""
               + b.url()
               + "\"}\n"
                 "actors:\n"
                 "  cam:\n"
                 "    kind: genicam.source\n"
                 "    camera: "
               + std::string{fake_camera::id}
               + "\n"
                 "    width: 320\n"
                 "    height: 240\n"
                 "    pixel_format: Mono8\n"
                 "    frame_rate: 10\n"
                 "  store: {kind: storage, max_age: 1d}\n"
                 "  check: {kind: workflow, package: frame-check.zip}\n"
                 "  out: {kind: mqtt.sink, broker: local, topic: \"verdicts/{stream}\"}\n"
                 "wires:\n"
                 "  - cam -> store\n"
                 "  - cam -> check\n"
                 "  - check -> out\n");
  subscriber verdicts{b, {"verdicts/#"}};
  running_flow fabrik{dir};
  INFO(fabrik.proc.log());
  REQUIRE(wait_until([&] { return verdicts.count() >= 10; }, std::chrono::seconds{90}));
  fabrik.stop();
  // Each verdict answers one stored frame (same seq): the workflow saw a uint8 array of
  // 240 x 320 and its brightness is that frame's mean.
  std::map<uint64_t, record> frames;
  for (auto& r : stored(fabrik.store_dir()))
    frames[r.seq] = r;
  auto msgs = verdicts.messages();
  CHECK(msgs.front().first == "verdicts/check/" + stream);
  size_t checked = 0;
  for (auto& [topic, payload] : msgs) {
    auto j = nlohmann::json::parse(payload);
    CHECK(j.at("workflow") == "frame-check");
    CHECK(j.at("dtype") == "uint8");
    CHECK(j.at("shape") == "240x320");
    CHECK(std::set<std::string>{"dark", "ok", "bright"}.count(j.at("verdict").get<std::string>()));
    auto it = frames.find(j.at("seq").get<uint64_t>());
    if (it == frames.end())
      continue; // answered, but its store commit raced the shutdown
    auto& img = std::get<bytes>(*it->second.find("image")).data;
    double sum = 0;
    for (unsigned char c : img)
      sum += c;
    CHECK(j.at("brightness").get<double>() == Approx(sum / img.size() / 255).margin(1e-5));
    ++checked;
  }
  CHECK(checked >= 5);
}
