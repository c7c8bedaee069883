// mqtt.sink: what a flow publishes is received by a test subscriber on a real broker.

#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <map>
#include <mutex>

using namespace fabrik;
using namespace fabrik::test;

TEST_CASE("mqtt.sink publishes every record as JSON on its topic template", "[e2e][mqtt]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml",
             "name: sink-test\n"
             "brokers:\n"
             "  local: {url: \""
               + b.url()
               + "\"}\n"
                 "actors:\n"
                 "  sensors: {kind: mqtt.source, broker: local, topics: [\"in/#\"], format: json}\n"
                 "  out: {kind: mqtt.sink, broker: local, topic: \"out/{stream}\"}\n"
                 "wires: [\"sensors -> out\"]\n");
  subscriber sub{b, {"out/#"}};
  process fabrik{
    {fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir", (dir / "data").string()},
    dir / "fabrik.log"};
  REQUIRE(wait_until([&] {
    auto log = fabrik.log();
    size_t n = 0;
    for (size_t pos = 0; (pos = log.find("connected to", pos)) != std::string::npos; ++pos)
      ++n;
    return n >= 2;
  }));
  std::vector<std::string> lines;
  for (int i = 0; i < 50; ++i)
    lines.push_back(R"({"ts":"2024-05-01T10:00:00.)" + std::to_string(100 + i) + R"(Z","temp":)"
                    + std::to_string(20.5 + i) + R"(,"n":)" + std::to_string(i) + "}");
  publish_lines(b.port(), "in/hall1", lines);
  REQUIRE(wait_until([&] { return sub.count() >= 50; }, std::chrono::seconds{30}));
  auto msgs = sub.messages();
  REQUIRE(msgs.size() == 50);
  for (int i = 0; i < 50; ++i) {
    INFO(msgs[i].second);
    CHECK(msgs[i].first == "out/sensors/in/hall1");
    auto j = nlohmann::json::parse(msgs[i].second);
    CHECK(j.at("n").get<int64_t>() == i);
    CHECK(j.at("temp").get<double>() == Approx(20.5 + i));
    CHECK(j.at("ts").get<std::string>().rfind("2024-05-01T10:00:00." + std::to_string(100 + i), 0)
          == 0);
  }
  fabrik.signal(SIGTERM);
  CHECK(fabrik.wait() == 0);
}

TEST_CASE("a simatic-v1 sink publishes its own metadata and data a decoder maps back",
          "[e2e][mqtt][simatic]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml",
             "name: sink-test\n"
             "brokers:\n"
             "  local: {url: \""
               + b.url()
               + "\"}\n"
                 "actors:\n"
                 "  sensors: {kind: mqtt.source, broker: local, topics: [\"in/#\"], format: json}\n"
                 "  out: {kind: mqtt.sink, broker: local, format: simatic-v1, app: fab1}\n"
                 "wires: [\"sensors -> out\"]\n");
  subscriber sub{b, {"ie/#"}};
  process fabrik{
    {fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir", (dir / "data").string()},
    dir / "fabrik.log"};
  REQUIRE(wait_until([&] {
    auto log = fabrik.log();
    return log.find("out: connected") != std::string::npos
           && log.find("sensors: connected") != std::string::npos;
  }));
  publish_lines(b.port(), "in/press",
                {R"({"force":12.5,"ok":true})", R"({"force":13.5,"ok":false})"});
  REQUIRE(wait_until(
    [&] {
      size_t data = 0;
      for (auto& [t, p] : sub.messages())
        data += t.rfind("ie/d/j/simatic/v1/fab1/dp/r/", 0) == 0;
      return data >= 2;
    },
    std::chrono::seconds{30}));
  // The metadata names the datapoints; the data messages use its ids.
  std::map<std::string, std::string> name_of;
  std::vector<nlohmann::json> data;
  for (auto& [t, p] : sub.messages()) {
    if (t == "ie/m/j/simatic/v1/fab1/dp") {
      auto m = nlohmann::json::parse(p);
      for (auto& conn : m.at("connections"))
        for (auto& dp : conn.at("dataPoints"))
          for (auto& def : dp.at("dataPointDefinitions"))
            name_of[def.at("id").get<std::string>()] = def.at("name").get<std::string>();
    } else if (t.rfind("ie/d/j/simatic/v1/fab1/dp/r/out/", 0) == 0) {
      data.push_back(nlohmann::json::parse(p));
    }
  }
  REQUIRE(data.size() == 2);
  std::map<std::string, nlohmann::json> first;
  for (auto& v : data[0].at("vals"))
    first[name_of.at(v.at("id").get<std::string>())] = v.at("val");
  CHECK(first.at("force").get<double>() == Approx(12.5));
  CHECK(first.at("ok").get<bool>() == true);
  fabrik.signal(SIGTERM);
  CHECK(fabrik.wait() == 0);
}
