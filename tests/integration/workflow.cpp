// The workflow kind end to end: labelled PCB boards through a real mosquitto into storage,
// a model trained by the pcb-classifier package in a real Python worker, and predictions
// for new boards received on MQTT.

#include "tests/integration/fixture.hpp"

#include "actors/store.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <map>

using namespace fabrik;
using namespace fabrik::test;

namespace {

void publish_boards(int port, int count, int seed, int start_seq) {
  std::string out;
  int rc = run_command({"/usr/bin/python3",
                        (source_dir() / "bench" / "assets" / "pcb_publisher.py").string(),
                        "--port", std::to_string(port), "--count", std::to_string(count),
                        "--rate", "0", "-q", "--seed", std::to_string(seed), "--start-seq",
                        std::to_string(start_seq)},
                       &out);
  INFO(out);
  REQUIRE(rc == 0);
}

} // namespace

TEST_CASE("a PCB workflow trains on stored boards and predicts new ones on MQTT with "
          "accuracy above 0.8", "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  std::string out;
  REQUIRE(run_command({fabrik_binary(), "package",
                       (source_dir() / "examples" / "pcb-classifier").string(), "-o",
                       (dir / "pcb.zip").string()},
                      &out) == 0);
  write_file(dir / "flow.yaml",
             "name: workflow-test\n"
             "brokers:\n"
             "  local: {url: \"" + b.url() + "\"}\n"
             "actors:\n"
             "  pcb_in:\n"
             "    kind: mqtt.source\n"
             "    broker: local\n"
             "    topics: [\"ie/m/j/simatic/v1/+/dp\", \"ie/d/j/simatic/v1/+/dp/r/#\"]\n"
             "    format: simatic-v1\n"
             "  store: {kind: storage}\n"
             "  classifier:\n"
             "    kind: workflow\n"
             "    package: pcb.zip\n"
             "    train: {storage: store, stream: pcb_in/Line1/default}\n"
             "  out: {kind: mqtt.sink, broker: local, topic: \"predictions/{stream}\"}\n"
             "wires:\n"
             "  - pcb_in -> store\n"
             "  - pcb_in -> classifier\n"
             "  - classifier -> out\n");
  process fabrik{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
                  (dir / "data").string(), "--status-interval", "2s"},
                 dir / "fabrik.log"};
  REQUIRE(wait_until([&] { return fabrik.log().find("pcb_in: connected") != std::string::npos; }));
  // History with labels; the workflow trains once it finds stored records.
  publish_boards(b.port(), 3000, 1, 1);
  REQUIRE(wait_until([&] { return fabrik.log().find("classifier: trained model") != std::string::npos; },
                     std::chrono::seconds{90}));
  subscriber predictions{b, {"predictions/#"}};
  // New boards: their labels are stored (for the test to check), not used by the model.
  const int first = 100001, n = 500;
  publish_boards(b.port(), n, 7, first);
  auto received = [&] {
    std::map<int64_t, std::string> by_seq;
    for (auto& [topic, payload] : predictions.messages()) {
      auto j = nlohmann::json::parse(payload);
      auto seq = j.at("seq").get<int64_t>();
      if (seq >= first)
        by_seq[seq] = j.at("prediction").get<std::string>();
    }
    return by_seq;
  };
  REQUIRE(wait_until([&] { return received().size() >= static_cast<size_t>(n); },
                     std::chrono::seconds{60}));
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  // Every prediction names the workflow and a model, and most agree with the true label.
  auto msgs = predictions.messages();
  auto j = nlohmann::json::parse(msgs.back().second);
  CHECK(j.at("workflow") == "pcb-classifier");
  CHECK(j.at("model").get<std::string>().size() == 12);
  CHECK(msgs.back().first == "predictions/classifier/pcb_in/Line1/default");
  std::map<int64_t, std::string> truth;
  store_options opts;
  opts.dir = dir / "data" / "storage" / "store";
  opts.read_only = true;
  auto db = store::open(opts);
  REQUIRE(db);
  REQUIRE(db->scan({"pcb_in/Line1/default"}, [&](record&& r) {
    if (r.seq >= static_cast<uint64_t>(first))
      truth[static_cast<int64_t>(r.seq)] = std::get<std::string>(*r.find("label"));
    return true;
  }));
  auto predicted = received();
  REQUIRE(truth.size() == static_cast<size_t>(n));
  size_t right = 0;
  for (auto& [seq, label] : truth)
    right += predicted.count(seq) && predicted.at(seq) == label;
  double accuracy = static_cast<double>(right) / n;
  INFO("accuracy " << accuracy);
  CHECK(accuracy > 0.8);
}
