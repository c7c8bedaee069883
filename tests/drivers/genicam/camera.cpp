// The aravis glue against aravis's in-process Fake camera (Fake_1): real aravis, real
// stream thread, no network.

#include "drivers/genicam/camera.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

using namespace fabrik::genicam;
using namespace std::chrono_literals;

namespace {

camera_options fake(int width = 64, int height = 48) {
  camera_options o;
  o.id = "Fake_1";
  o.fake_interface = true;
  o.width = width;
  o.height = height;
  o.frame_rate = 200;
  return o;
}

/// Takes frames until `n` arrived or 5 s passed.
std::vector<frame> collect(camera& c, size_t n) {
  std::vector<frame> got;
  auto until = std::chrono::steady_clock::now() + 5s;
  while (got.size() < n && std::chrono::steady_clock::now() < until) {
    for (auto& f : c.take(n - got.size()))
      got.push_back(std::move(f));
    std::this_thread::sleep_for(5ms);
  }
  return got;
}

bool wait_for(const std::function<bool()>& pred) {
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::unique_ptr<camera> started(const camera_options& o) {
  auto c = camera::open(o);
  REQUIRE(c);
  REQUIRE((*c)->configure().empty());
  REQUIRE((*c)->start({}, {}));
  return std::move(*c);
}

} // namespace

TEST_CASE("genicam camera: frames of the configured size arrive with rising frame ids",
          "[genicam]") {
  auto c = started(fake(64, 48));
  CHECK(c->id() == "Fake_1");
  CHECK(c->geometry() == "64x48 Mono8");
  auto frames = collect(*c, 10);
  REQUIRE(frames.size() == 10);
  for (size_t i = 0; i < frames.size(); ++i) {
    CHECK(frames[i].width == 64);
    CHECK(frames[i].height == 48);
    CHECK(frames[i].pixel_format == "Mono8");
    CHECK(frames[i].data.size() == 64 * 48);
    CHECK(frames[i].system_time > 0);
    if (i > 0)
      CHECK(frames[i].frame_id > frames[i - 1].frame_id);
  }
}

TEST_CASE("genicam camera: a wider pixel format gives two bytes per pixel", "[genicam]") {
  auto o = fake(32, 16);
  o.pixel_format = "Mono16";
  auto c = started(o);
  auto frames = collect(*c, 2);
  REQUIRE(frames.size() == 2);
  CHECK(frames[0].pixel_format == "Mono16");
  CHECK(frames[0].data.size() == 32 * 16 * 2);
}

TEST_CASE("genicam camera: unknown features and bad values are reported, the rest is set",
          "[genicam]") {
  auto o = fake(40, 30);
  o.features = {{"NoSuchFeature", "1"}, {"PixelFormat", "Banana"}, {"GainRaw", "2"}};
  o.pixel_format = "NotAFormat";
  auto c = camera::open(o);
  REQUIRE(c);
  auto problems = (*c)->configure();
  for (auto& p : problems)
    UNSCOPED_INFO(p);
  REQUIRE(problems.size() == 3);
  CHECK(problems[0].find("pixel_format 'NotAFormat'") == 0);
  CHECK(problems[1] == "feature 'NoSuchFeature': no such feature on this camera");
  CHECK(problems[2].find("feature 'PixelFormat' = 'Banana'") == 0);
  REQUIRE((*c)->start({}, {}));
  auto frames = collect(**c, 1);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].data.size() == 40 * 30); // width and height were set all the same
}

TEST_CASE("genicam camera: without an id, the first camera found is opened", "[genicam]") {
  auto ids = list_devices(true);
  REQUIRE(std::find(ids.begin(), ids.end(), "Fake_1") != ids.end());
  auto o = fake();
  o.id.clear();
  auto c = camera::open(o);
  REQUIRE(c);
  CHECK((*c)->id() == ids.front());
}

TEST_CASE("genicam camera: a missing camera is not_found, naming it", "[genicam]") {
  auto o = fake();
  o.id = "No-Such-Camera-42";
  auto c = camera::open(o);
  REQUIRE(!c);
  CHECK(c.err().code == fabrik::ec::not_found);
  CHECK(c.err().message.find("camera 'No-Such-Camera-42' not found") == 0);
}

TEST_CASE("genicam camera: a full queue drops the oldest frames and keeps the newest",
          "[genicam]") {
  auto o = fake();
  o.queue = 3;
  std::atomic<int> wakes{0};
  auto c = camera::open(o);
  REQUIRE(c);
  (*c)->configure();
  REQUIRE((*c)->start([&] { ++wakes; }, {}));
  // Nobody takes frames for a while: the camera goes on, the ring keeps the last three.
  REQUIRE(wait_for([&] { return (*c)->counters().dropped >= 5; }));
  auto before = (*c)->counters();
  auto frames = (*c)->take(100);
  CHECK(wakes > 0);
  REQUIRE(frames.size() == 3);
  CHECK(frames[1].frame_id > frames[0].frame_id);
  CHECK(frames[2].frame_id > frames[1].frame_id);
  // The ones kept are the newest: everything received before them was dropped.
  CHECK(frames[0].frame_id >= before.dropped);
  CHECK(before.underruns == 0);
}

TEST_CASE("genicam camera: decimation keeps one frame in N", "[genicam]") {
  auto o = fake();
  o.decimation = 3;
  auto c = started(o);
  auto frames = collect(*c, 4);
  REQUIRE(frames.size() == 4);
  for (size_t i = 1; i < frames.size(); ++i)
    CHECK(frames[i].frame_id - frames[i - 1].frame_id == 3);
  auto n = c->counters();
  CHECK(n.decimated >= 6);
}
