// The workflow kind end to end: labelled PCB boards through a real mosquitto into storage,
// a model trained by the pcb-classifier package in a real Python worker, and predictions
// for new boards received on MQTT.

#include "tests/integration/fixture.hpp"

#include "actors/store.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <map>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// Runs a virtual asset of bench/assets: `count` messages as fast as the broker takes them.
void publish_asset(const std::string& script, int port, int count, int seed, int start_seq) {
  std::string out;
  int rc = run_command({"/usr/bin/python3", (source_dir() / "bench" / "assets" / script).string(),
                        "--port", std::to_string(port), "--count", std::to_string(count),
                        "--rate", "0", "-q", "--seed", std::to_string(seed), "--start-seq",
                        std::to_string(start_seq)},
                       &out);
  INFO(out);
  REQUIRE(rc == 0);
}

void publish_boards(int port, int count, int seed, int start_seq) {
  publish_asset("pcb_publisher.py", port, count, seed, start_seq);
}

/// A flow of source -> storage, source -> workflow -> JSON sink on `predictions/{stream}`.
std::string flow_text(const broker& b, const std::string& workflow) {
  return "name: workflow-test\n"
         "brokers:\n"
         "  local: {url: \"" + b.url() + "\"}\n"
         "actors:\n"
         "  src:\n"
         "    kind: mqtt.source\n"
         "    broker: local\n"
         "    topics: [\"ie/m/j/simatic/v1/+/dp\", \"ie/d/j/simatic/v1/+/dp/r/#\"]\n"
         "    format: simatic-v1\n"
         "  store: {kind: storage}\n"
         "  model:\n"
         "    kind: workflow\n" + workflow +
         "  out: {kind: mqtt.sink, broker: local, topic: \"predictions/{stream}\"}\n"
         "wires:\n"
         "  - src -> store\n"
         "  - src -> model\n"
         "  - model -> out\n";
}

process run_flow(temp_dir& dir) {
  process p{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
             (dir / "data").string(), "--status-interval", "2s"},
            dir / "fabrik.log"};
  REQUIRE(wait_until([&] { return p.log().find("src: connected") != std::string::npos; }));
  return p;
}

void package(const std::string& example, const std::filesystem::path& zip) {
  std::string out;
  int rc = run_command({fabrik_binary(), "package", (source_dir() / "examples" / example).string(),
                        "-o", zip.string()},
                       &out);
  INFO(out);
  REQUIRE(rc == 0);
}

/// The stored records of `stream` with seq >= first, by seq.
std::map<int64_t, record> stored_by_seq(temp_dir& dir, const std::string& stream, int64_t first) {
  std::map<int64_t, record> out;
  store_options opts;
  opts.dir = dir / "data" / "storage" / "store";
  opts.read_only = true;
  auto db = store::open(opts);
  REQUIRE(db);
  REQUIRE(db->scan({stream}, [&](record&& r) {
    if (r.seq >= static_cast<uint64_t>(first))
      out.emplace(static_cast<int64_t>(r.seq), std::move(r));
    return true;
  }));
  return out;
}

/// Predictions received, by the seq of the record they answer: field `key`'s value.
std::map<int64_t, std::string> predictions_by_seq(subscriber& sub, const std::string& key,
                                                  int64_t first) {
  std::map<int64_t, std::string> out;
  for (auto& [topic, payload] : sub.messages()) {
    auto j = nlohmann::json::parse(payload);
    if (auto seq = j.at("seq").get<int64_t>(); seq >= first)
      out[seq] = j.at(key).get<std::string>();
  }
  return out;
}

} // namespace

TEST_CASE("a PCB workflow trains on stored boards and predicts new ones on MQTT with "
          "accuracy above 0.8", "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  write_file(dir / "flow.yaml",
             flow_text(b, "    package: pcb.zip\n"
                          "    train: {storage: store, stream: src/Line1/default}\n"));
  auto fabrik = run_flow(dir);
  // History with labels; the workflow trains once it finds enough stored records.
  publish_boards(b.port(), 3000, 1, 1);
  REQUIRE(wait_until([&] { return fabrik.log().find("model: trained model") != std::string::npos; },
                     std::chrono::seconds{90}));
  subscriber predictions{b, {"predictions/#"}};
  // New boards: their labels are stored (for the test to check), not used by the model.
  const int first = 100001, n = 500;
  publish_boards(b.port(), n, 7, first);
  REQUIRE(wait_until([&] { return predictions_by_seq(predictions, "prediction", first).size()
                                  >= static_cast<size_t>(n); },
                     std::chrono::seconds{60}));
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  // Every prediction names the workflow and a model, and most agree with the true label.
  auto msgs = predictions.messages();
  auto j = nlohmann::json::parse(msgs.back().second);
  CHECK(j.at("workflow") == "pcb-classifier");
  CHECK(j.at("model").get<std::string>().size() == 12);
  CHECK(msgs.back().first == "predictions/model/src/Line1/default");
  auto truth = stored_by_seq(dir, "src/Line1/default", first);
  auto predicted = predictions_by_seq(predictions, "prediction", first);
  REQUIRE(truth.size() == static_cast<size_t>(n));
  size_t right = 0;
  for (auto& [seq, r] : truth)
    right += predicted.count(seq) && predicted.at(seq) == std::get<std::string>(*r.find("label"));
  double accuracy = static_cast<double>(right) / n;
  INFO("accuracy " << accuracy);
  CHECK(accuracy > 0.8);
}

TEST_CASE("an IMU workflow classifies windows of 50 samples every 25 with accuracy above "
          "0.8", "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("imu-classifier", dir / "imu.zip");
  write_file(dir / "flow.yaml",
             flow_text(b, "    package: imu.zip\n"
                          "    window: {size: 50, step: 25}\n"
                          "    train: {storage: store, stream: src/Worker1/imu, "
                          "min_records: 12000}\n"));
  auto fabrik = run_flow(dir);
  publish_asset("imu_publisher.py", b.port(), 15000, 1, 1); // 5 minutes at 50 Hz
  REQUIRE(wait_until([&] { return fabrik.log().find("model: trained model") != std::string::npos; },
                     std::chrono::seconds{120}));
  subscriber predictions{b, {"predictions/#"}};
  const int first = 1000000, n = 3000; // one more minute, another worker's day
  publish_asset("imu_publisher.py", b.port(), n, 1001, first);
  const size_t windows = (n - 50) / 25 + 1;
  REQUIRE(wait_until([&] { return predictions_by_seq(predictions, "activity", first).size()
                                  >= windows; },
                     std::chrono::seconds{90}));
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  // A window's prediction answers its newest sample; the truth is the window's majority.
  auto truth = stored_by_seq(dir, "src/Worker1/imu", first);
  REQUIRE(truth.size() == static_cast<size_t>(n));
  auto predicted = predictions_by_seq(predictions, "activity", first);
  // History that arrived after training is buffered too, so the first window of the new
  // data may reach back into it: one window more than the new data alone makes.
  CHECK(predicted.size() >= windows);
  CHECK(predicted.size() <= windows + 1);
  size_t right = 0, scored = 0;
  for (auto& [seq, activity] : predicted) {
    if (seq - 49 < first)
      continue; // reaches into the history: its truth is not all in `truth`
    ++scored;
    std::map<std::string, int> votes;
    for (int64_t k = seq - 49; k <= seq; ++k)
      ++votes[std::get<std::string>(*truth.at(k).find("label"))];
    auto best = std::max_element(votes.begin(), votes.end(),
                                 [](auto& a, auto& b) { return a.second < b.second; });
    right += best->first == activity;
  }
  REQUIRE(scored >= windows - 1);
  double accuracy = static_cast<double>(right) / static_cast<double>(scored);
  INFO("accuracy " << accuracy);
  CHECK(accuracy > 0.8);
}
