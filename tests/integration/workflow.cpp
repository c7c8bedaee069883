// The workflow kind end to end: labelled PCB boards through a real mosquitto into storage,
// a model trained by the pcb-classifier package in a real Python worker, and predictions
// for new boards received on MQTT.

#include "tests/integration/fixture.hpp"

#include "core/store.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <tuple>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// Starts `fabrik run` on DIR/flow.yaml; returns once the source is connected.
process run_flow(temp_dir& dir) {
  process p{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
             (dir / "data").string(), "--status-interval", "2s"},
            dir / "fabrik.log"};
  REQUIRE(wait_until([&] { return p.log().find("src: connected") != std::string::npos; }));
  return p;
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

/// A fabrik CLI command's exit code; its output in `out`.
int fabrik_cli(std::vector<std::string> args, std::string& out) {
  args.insert(args.begin(), fabrik_binary());
  return run_command(args, &out);
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
          "accuracy above 0.8",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  write_file(dir / "flow.yaml",
             pcb_flow_text(b, "    package: pcb.zip\n"
                              "    train: {storage: store, stream: src/Line1/default}\n"));
  auto fabrik = run_flow(dir);
  // History with labels; the workflow trains once it finds enough stored records.
  publish_boards(b.port(), 3000, 1, 1);
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("model: serving pcb-classifier 1.0.0") != std::string::npos; },
    std::chrono::seconds{90}));
  subscriber predictions{b, {"predictions/#"}};
  // New boards: their labels are stored (for the test to check), not used by the model.
  const int first = 100001, n = 500;
  publish_boards(b.port(), n, 7, first);
  REQUIRE(wait_until(
    [&] {
      return predictions_by_seq(predictions, "prediction", first).size() >= static_cast<size_t>(n);
    },
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
          "0.8",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("imu-classifier", dir / "imu.zip");
  write_file(dir / "flow.yaml",
             pcb_flow_text(b, "    package: imu.zip\n"
                              "    window: {size: 50, step: 25}\n"
                              "    train: {storage: store, stream: src/Worker1/imu, "
                              "min_records: 12000}\n"));
  auto fabrik = run_flow(dir);
  publish_asset("imu_publisher.py", b.port(), 15000, 1, 1); // 5 minutes at 50 Hz
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("model: serving imu-classifier") != std::string::npos; },
    std::chrono::seconds{120}));
  subscriber predictions{b, {"predictions/#"}};
  const int first = 1000000, n = 3000; // one more minute, another worker's day
  publish_asset("imu_publisher.py", b.port(), n, 1001, first);
  const size_t windows = (n - 50) / 25 + 1;
  REQUIRE(
    wait_until([&] { return predictions_by_seq(predictions, "activity", first).size() >= windows; },
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

TEST_CASE("a zip dropped into the watched directory is deployed once complete, a broken one "
          "is refused and a new version is swapped in",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  package("pcb-classifier", dir / "pcb-v2.zip", "1.1.0");
  std::string out;
  write_file(dir / "flow.yaml",
             "workflows: {watch: zips}\n"
               + pcb_flow_text(b, "    package: pcb-classifier\n"
                                  "    train: {storage: store, stream: src/Line1/default}\n"));
  auto fabrik = run_flow(dir);
  publish_boards(b.port(), 1500, 1, 1);
  REQUIRE(wait_until(
    [&] { return stored_count(dir / "data" / "storage" / "store", "src/Line1/default") >= 1500; }));
  CHECK(fabrik.log().find("model: waiting for package pcb-classifier") != std::string::npos);

  // Half a zip, the file still open: never read.
  auto zip = read_file(dir / "pcb.zip");
  {
    std::ofstream f{dir / "zips" / "pcb.zip", std::ios::binary};
    f.write(zip.data(), static_cast<std::streamsize>(zip.size() / 2));
    f.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds{1500});
    CHECK(fabrik.log().find("workflows: refused") == std::string::npos);
    CHECK(fabrik.log().find("workflows: stored") == std::string::npos);
    f.write(zip.data() + zip.size() / 2, static_cast<std::streamsize>(zip.size() - zip.size() / 2));
  }
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("model: serving pcb-classifier 1.0.0") != std::string::npos; },
    std::chrono::seconds{90}));
  CHECK(fabrik.log().find("workflows: refused") == std::string::npos);

  subscriber predictions{b, {"predictions/#"}};
  auto expect_predictions = [&](int first, int n, const std::string& version) {
    publish_boards(b.port(), n, 7, first);
    REQUIRE(wait_until(
      [&] { return answers_per_seq(predictions, first).size() >= static_cast<size_t>(n); }));
    CHECK(values_of(predictions, "version", first) == std::set<std::string>{version});
  };
  expect_predictions(200001, 100, "1.0.0");

  // A broken zip: refused with its reason, the serving version stays.
  write_file(dir / "zips" / "broken.zip", "PK\x03\x04 this is not a zip at all");
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("workflows: refused broken.zip") != std::string::npos; }));
  expect_predictions(300001, 100, "1.0.0");

  // Version 1.1.0, moved in: trained in a second worker, then swapped in.
  std::filesystem::copy_file(dir / "pcb-v2.zip", dir / "v2.zip.part");
  std::filesystem::rename(dir / "v2.zip.part", dir / "zips" / "v2.zip");
  REQUIRE(wait_until(
    [&] {
      return fabrik.log().find("model: now serving pcb-classifier 1.1.0") != std::string::npos;
    },
    std::chrono::seconds{90}));
  expect_predictions(400001, 100, "1.1.0");

  // Deleting the files deletes no version; a restart serves 1.1.0 with its stored model.
  std::filesystem::remove_all(dir / "zips");
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  REQUIRE(fabrik_cli({"workflows", "--data-dir", (dir / "data").string()}, out) == 0);
  INFO(out);
  CHECK(out.find("1.0.0") != std::string::npos);
  CHECK(out.find("1.1.0") != std::string::npos);
  auto again = run_flow(dir);
  REQUIRE(wait_until(
    [&] { return again.log().find("model: serving pcb-classifier 1.1.0") != std::string::npos; },
    std::chrono::seconds{60}));
  CHECK(again.log().find("serving stored model") != std::string::npos);
  again.signal(SIGTERM);
  REQUIRE(again.wait() == 0);
}

TEST_CASE("fabrik train retrains under load: the new model is swapped in with no prediction "
          "lost or doubled, and the runs are stored with their measurements",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  write_file(dir / "flow.yaml",
             pcb_flow_text(b, "    package: pcb.zip\n"
                              "    params: {n_estimators: 30}\n"
                              "    train: {storage: store, stream: src/Line1/default}\n"));
  auto fabrik = run_flow(dir);
  publish_boards(b.port(), 1500, 1, 1);
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("model: serving pcb-classifier 1.0.0") != std::string::npos; },
    std::chrono::seconds{90}));
  subscriber predictions{b, {"predictions/#"}};
  // Boards at 200/s for 10 s while two runs train and swap.
  const int first = 500001, n = 2000;
  process load{{"/usr/bin/python3",
                (source_dir() / "bench" / "assets" / "pcb_publisher.py").string(), "--port",
                std::to_string(b.port()), "--count", std::to_string(n), "--rate", "200", "-q",
                "--seed", "9", "--start-seq", std::to_string(first)},
               dir / "publisher.log"};
  std::string out;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(wait_until([&] {
      return answers_per_seq(predictions, first).size() > static_cast<size_t>(300 * (i + 1));
    }));
    int rc = fabrik_cli({"train", (dir / "flow.yaml").string(), "model"}, out);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK(out.find("succeeded") != std::string::npos);
  }
  REQUIRE(load.wait(std::chrono::seconds{60}) == 0);
  check_answered_once(predictions, first, static_cast<size_t>(n));
  // The boards were answered by more than one model: the swaps happened under load.
  CHECK(values_of(predictions, "model", first).size() >= 2);
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);

  // Three runs: on_deploy and two manual, each measured; the flow's params reached train().
  REQUIRE(fabrik_cli({"runs", "--data-dir", (dir / "data").string()}, out) == 0);
  INFO(out);
  CHECK(std::count(out.begin(), out.end(), '\n') >= 3);
  CHECK(out.find("failed") == std::string::npos);
  REQUIRE(fabrik_cli({"runs", "--data-dir", (dir / "data").string(), "3"}, out) == 0);
  CHECK(out.find("manual") != std::string::npos);
  CHECK(out.find("training 30 trees on") != std::string::npos);
  CHECK(out.find("peak RSS") != std::string::npos);
  CHECK(out.find("energy") != std::string::npos);
}

TEST_CASE("a Siemens AI Inference Server package runs unchanged: process_input per record, "
          "None emits nothing",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  std::filesystem::create_directories(dir / "siemens");
  write_file(dir / "siemens" / "entrypoint.py",
             "limit = None\n"
             "def update_parameters(params):\n"
             "    global limit\n"
             "    limit = 0.0\n"
             "def process_input(data):\n"
             "    if data.get('label') == 'OK':\n"
             "        return None\n"
             "    return {'flag': 'inspect', 'was': data['label'], 'limit': limit}\n");
  std::string out;
  REQUIRE(
    fabrik_cli({"package", (dir / "siemens").string(), "-o", (dir / "inspect.zip").string()}, out)
    == 0);
  write_file(dir / "flow.yaml", pcb_flow_text(b, "    package: inspect.zip\n"));
  auto fabrik = run_flow(dir);
  REQUIRE(
    wait_until([&] { return fabrik.log().find("model: serving inspect") != std::string::npos; }));
  subscriber predictions{b, {"predictions/#"}};
  const int first = 1, n = 300;
  publish_boards(b.port(), n, 3, first);
  auto truth = [&] { return stored_by_seq(dir, "src/Line1/default", first); };
  REQUIRE(wait_until([&] {
    return stored_count(dir / "data" / "storage" / "store", "src/Line1/default")
           >= static_cast<size_t>(n);
  }));
  size_t flagged = 0;
  for (auto& [seq, r] : truth())
    flagged += std::get<std::string>(*r.find("label")) != "OK";
  REQUIRE(flagged > 0);
  REQUIRE(wait_until([&] { return predictions.count() >= flagged; }));
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  CHECK(predictions.count() == flagged);
  auto j = nlohmann::json::parse(predictions.messages().front().second);
  CHECK(j.at("flag") == "inspect");
  CHECK(j.at("was") != "OK");
  CHECK(j.at("limit") == 0.0); // update_parameters ran before the first input
}

TEST_CASE("a time window holds the records of its span of source time, one every `every`",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  std::filesystem::create_directories(dir / "probe");
  write_file(dir / "probe" / "fabrik-workflow.yaml",
             "name: window-probe\nversion: \"1\"\nkind: fabrik\nentry: model\n"
             "inputs: [x]\noutputs: [n, first, last]\n");
  write_file(dir / "probe" / "model.py",
             "def predict(model, sample):\n"
             "    return {'n': int(sample.X.shape[1]), 'first': float(sample.x[0][0]),\n"
             "            'last': float(sample.x[-1][0])}\n");
  std::string out;
  REQUIRE(fabrik_cli({"package", (dir / "probe").string(), "-o", (dir / "probe.zip").string()}, out)
          == 0);
  write_file(dir / "flow.yaml",
             "name: window-test\n"
             "brokers:\n  local: {url: \""
               + b.url()
               + "\"}\n"
                 "actors:\n"
                 "  src: {kind: mqtt.source, broker: local, topics: [probe/#], format: json}\n"
                 "  model:\n"
                 "    kind: workflow\n"
                 "    package: probe.zip\n"
                 "    window: {span: 1s, every: 1s}\n"
                 "  out: {kind: mqtt.sink, broker: local, topic: \"predictions/{stream}\"}\n"
                 "wires:\n  - src -> model -> out\n");
  auto fabrik = run_flow(dir);
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("model: serving window-probe") != std::string::npos; }));
  subscriber predictions{b, {"predictions/#"}};
  // 50 records 100 ms apart in source time (published at once): x = 0..49.
  auto base = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count()
              - 60'000;
  std::vector<std::string> lines;
  for (int i = 0; i < 50; ++i)
    lines.push_back("{\"ts\":" + std::to_string(base + 100 * i) + ",\"seq\":" + std::to_string(i)
                    + ",\"x\":" + std::to_string(i) + "}");
  publish_lines(b.port(), "probe/a", lines);
  // Windows end at x = 0, 10, 20, 30, 40 (each once 1 s of source time passed); each holds
  // the records of the last second: (t - 1 s, t].
  REQUIRE(wait_until([&] { return predictions.count() >= 5; }));
  std::this_thread::sleep_for(std::chrono::milliseconds{500});
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  std::vector<std::tuple<int, double, double>> got;
  for (auto& [topic, payload] : predictions.messages()) {
    auto j = nlohmann::json::parse(payload);
    got.emplace_back(j.at("n").get<int>(), j.at("first").get<double>(), j.at("last").get<double>());
  }
  CHECK(got
        == std::vector<std::tuple<int, double, double>>{
          {1, 0, 0}, {10, 1, 10}, {10, 11, 20}, {10, 21, 30}, {10, 31, 40}});
}

TEST_CASE("train.when: every DURATION trains again that long after the last run",
          "[e2e][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  write_file(dir / "flow.yaml",
             pcb_flow_text(b, "    package: pcb.zip\n"
                              "    params: {n_estimators: 10}\n"
                              "    train: {storage: store, stream: src/Line1/default, "
                              "when: every 2s}\n"));
  auto fabrik = run_flow(dir);
  publish_boards(b.port(), 1200, 1, 1);
  std::string out;
  auto scheduled_runs = [&] {
    fabrik_cli({"runs", "--data-dir", (dir / "data").string()}, out);
    size_t n = 0;
    for (uint64_t id = 1; id <= 5; ++id) {
      std::string one;
      if (fabrik_cli({"runs", "--data-dir", (dir / "data").string(), std::to_string(id)}, one) == 0
          && one.find("schedule") != std::string::npos
          && one.find("succeeded") != std::string::npos)
        ++n;
    }
    return n;
  };
  REQUIRE(wait_until([&] { return scheduled_runs() >= 2; }, std::chrono::seconds{90}));
  fabrik.signal(SIGTERM);
  REQUIRE(fabrik.wait() == 0);
  INFO(out);
  CHECK(out.find("failed") == std::string::npos);
}
