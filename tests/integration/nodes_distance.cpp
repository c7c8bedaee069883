// Distance between nodes on one machine: an edge and a fog node on loopback with the
// project's delay proxy (tests/tools/delay_proxy.py) in the wire between them, as the fog's
// `address`. The kernels here have no netem; nothing leaves 127.0.0.1.

#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <thread>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// An edge and a fog node whose links reach the fog through a delay proxy.
struct edge_and_far_fog {
  loopback_nodes nodes{{"edge", "fog"}};
  temp_dir& dir;
  delay_proxy proxy;
  std::string edge_settings; ///< the edge's node settings
  edge_and_far_fog(temp_dir& d, int delay_ms, std::string edge = "reconnect_max: 2s")
    : dir(d), proxy(d / "proxy", nodes.listen["fog"], delay_ms), edge_settings(std::move(edge)) {}

  std::string section() const {
    return nodes.section({{"edge", edge_settings},
                          {"fog", "address: \"127.0.0.1:" + std::to_string(proxy.port()) + "\""}});
  }
  /// The edge's link to the fog's actor `actor`, as GET /api/nodes of the edge shows it.
  nlohmann::json link(const std::string& actor) const {
    auto view = edge_view();
    auto l = link_in_view(view, "edge", actor);
    if (l.is_null())
      FAIL("the edge shows no link to " << actor << ": " << view.dump());
    return l;
  }
  /// Starts the fog, then the edge, and waits until the edge's source is connected and
  /// its link reaches the fog through the proxy.
  void start(process& fog, process& edge) const {
    fog = start_node(dir, "fog", "fog.log");
    edge = start_node(dir, "edge", "edge.log");
    INFO(edge.log());
    REQUIRE(wait_until([&] {
      return logged(edge, "src: connected")
             && logged(edge,
                       "link fog/store: connected to 127.0.0.1:" + std::to_string(proxy.port()));
    }));
  }
  nlohmann::json edge_view() const { return api_nodes(nodes.http.at("edge"), dir / "edge"); }
  /// The status of `actor` on `node`, as that node's GET /api/nodes shows it.
  nlohmann::json actor(const std::string& node, const std::string& actor) const {
    auto view = api_nodes(nodes.http.at(node), dir / node);
    for (auto& n : view.at("nodes"))
      if (n.at("name") == node)
        for (auto& a : n.at("actors"))
          if (a.at("name") == actor)
            return a;
    FAIL("node " << node << " shows no actor " << actor << ": " << view.dump());
    return {};
  }
};

int64_t detail(const nlohmann::json& status, const std::string& key) {
  auto& d = status.at("details");
  return d.contains(key) ? std::stoll(d.at(key).get<std::string>()) : 0;
}

/// The fog's storage stored `n` records and was handed each once: no batch twice.
void check_stored_once(const edge_and_far_fog& nodes, uint64_t n) {
  nlohmann::json store;
  REQUIRE(wait_until([&] {
    store = nodes.actor("fog", "store");
    return store.at("out") == n;
  }));
  INFO(store.dump());
  CHECK(store.at("in") == n);
  CHECK(detail(store, "duplicates") == 0);
}

} // namespace

TEST_CASE("a link to a node 20 ms away (the delay proxy as its address) delivers every "
          "record once and shows the distance in its round trip",
          "[e2e][nodes][distance]") {
  temp_dir dir;
  broker b{dir / "broker"};
  edge_and_far_fog nodes{dir, 20};
  write_file(dir / "flow.yaml",
             "name: distance-test\n"
             "brokers: {local: {url: \""
               + b.url() + "\"}}\n" + nodes.section()
               + "actors:\n"
                 "  src: {kind: mqtt.source, broker: local, topics: [\"t/#\"], batch_size: 50,\n"
                 "        on: edge}\n"
                 "  store: {kind: storage, on: fog}\n"
                 "wires: [src -> store]\n");
  std::string out;
  REQUIRE(run_command({fabrik_binary(), "check", (dir / "flow.yaml").string()}, &out) == 0);
  process fog, edge;
  nodes.start(fog, edge);
  INFO(edge.log());
  const int n = 3000;
  publish_lines(b.port(), "t/a", numbered_lines(0, n));
  auto stored = [&] { return stored_count(dir / "fog" / "storage" / "store", "src/t/a"); };
  REQUIRE(wait_until([&] { return stored() == n; }));
  std::vector<int64_t> seen, each(n);
  for (auto& r : stored_records(dir / "fog" / "storage" / "store", "src/t/a"))
    if (auto* v = r.find("i"); v && std::holds_alternative<int64_t>(*v))
      seen.push_back(std::get<int64_t>(*v));
  std::sort(seen.begin(), seen.end());
  std::iota(each.begin(), each.end(), 0);
  CHECK(seen == each); // each record once
  check_stored_once(nodes, n);

  // The last replies come back 20 ms after the fog committed.
  nlohmann::json link;
  REQUIRE(wait_until([&] {
    link = nodes.link("store");
    return link.at("queue") == 0;
  }));
  INFO(link.dump());
  CHECK(link.at("state") == "connected");
  CHECK(link.at("details").at("address") == "127.0.0.1:" + std::to_string(nodes.proxy.port()));
  CHECK(detail(link, "rtt_us") >= 40000); // 20 ms each way, at least
  CHECK(link.at("out").get<int64_t>() > 0);
  stop_nodes({&edge, &fog});
}

TEST_CASE("a link cut by the delay proxy while both nodes run: the edge keeps ingesting, "
          "storing and predicting, its link shows unreachable with a backlog, and once the "
          "wire is back the fog gets every record once",
          "[e2e][nodes][distance]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  edge_and_far_fog nodes{dir, 20};
  // Everything but the fog's storage at the edge, the workflow trained from the edge's own.
  write_file(
    dir / "flow.yaml",
    "name: distance-test\n"
    "brokers: {local: {url: \""
      + b.url() + "\"}}\n" + nodes.section()
      + "actors:\n"
        "  src:\n"
        "    kind: mqtt.source\n"
        "    broker: local\n"
        "    topics: [\"ie/m/j/simatic/v1/+/dp\", \"ie/d/j/simatic/v1/+/dp/r/#\"]\n"
        "    format: simatic-v1\n"
        "    on: edge\n"
        "  local: {kind: storage, on: edge}\n"
        "  model:\n"
        "    kind: workflow\n"
        "    package: pcb.zip\n"
        "    params: {n_estimators: 20}\n"
        "    train: {storage: local, stream: src/Line1/default}\n"
        "    on: edge\n"
        "  out: {kind: mqtt.sink, broker: local, topic: \"predictions/{stream}\", on: edge}\n"
        "  store: {kind: storage, on: fog}\n"
        "wires: [src -> local, src -> store, src -> model, model -> out]\n");
  std::string out;
  REQUIRE(run_command({fabrik_binary(), "check", (dir / "flow.yaml").string()}, &out) == 0);
  process fog, edge;
  nodes.start(fog, edge);
  INFO(edge.log());
  const auto stream = "src/Line1/default";
  auto at_fog = [&] { return stored_count(dir / "fog" / "storage" / "store", stream); };
  auto at_edge = [&] { return stored_count(dir / "edge" / "storage" / "local", stream); };
  const uint64_t history = 1500;
  publish_boards(b.port(), history, 1, 1);
  REQUIRE(wait_until([&] { return at_fog() == history && at_edge() == history; }));
  REQUIRE(wait_until([&] { return logged(edge, "model: serving pcb-classifier 1.0.0"); },
                     std::chrono::seconds{90}));

  subscriber predictions{b, {"predictions/#"}};
  nodes.proxy.cut();
  REQUIRE(wait_until([&] { return nodes.link("store").at("state") == "unreachable"; }));
  // A live line of 10 s; the wire comes back mid-stream.
  const int first = 500001, n = 1500;
  auto line = start_boards(b.port(), n, 150, 9, first, dir / "publisher.log");
  // The edge goes on alone: it stores and predicts, its link keeps a growing backlog.
  REQUIRE(wait_until([&] { return answers_per_seq(predictions, first).size() >= 300; }));
  REQUIRE(wait_until([&] { return at_edge() >= history + 300; }));
  nlohmann::json link;
  REQUIRE(wait_until([&] {
    link = nodes.link("store");
    return detail(link, "backlog") > 0;
  }));
  {
    INFO(link.dump());
    CHECK(link.at("state") == "unreachable");
    CHECK(link.at("queue").get<int64_t>() > 0);
    CHECK_FALSE(link.at("last_error").get<std::string>().empty());
  }
  for (auto actor : {"src", "local", "model", "out"}) {
    auto st = nodes.actor("edge", actor);
    INFO(st.dump());
    CHECK(st.at("state") == "running");
  }
  CHECK(at_fog() == history); // nothing crossed the cut wire
  CHECK(nodes.proxy.log().find("refused a connection (link cut)") != std::string::npos);

  nodes.proxy.restore();
  INFO("the publisher was " << (line.running() ? "still" : "no longer")
                            << " running when the wire came back");
  REQUIRE(line.wait(std::chrono::seconds{60}) == 0);
  REQUIRE(wait_until([&] { return at_fog() == history + n; }));
  REQUIRE(wait_until([&] {
    link = nodes.link("store");
    return link.at("state") == "connected" && link.at("queue") == 0;
  }));
  INFO(link.dump());
  CHECK(detail(link, "reconnects") >= 1);
  CHECK(detail(link, "dropped") == 0);
  check_stored_once(nodes, history + n);
  check_answered_once(predictions, first, static_cast<size_t>(n));
  CHECK(at_edge() == history + n);
  stop_nodes({&edge, &fog});
}

TEST_CASE("a silent cut (the proxy holds every byte and closes nothing) is noticed by the "
          "link's probe after peer_timeout: the link shows unreachable, the edge keeps "
          "storing, and once the wire is back the fog gets every record once",
          "[e2e][nodes][distance][silent]") {
  temp_dir dir;
  broker b{dir / "broker"};
  edge_and_far_fog nodes{dir, 0, "reconnect_max: 1s, peer_timeout: 2s"};
  write_file(
    dir / "flow.yaml",
    "name: silent-test\n"
    "brokers: {local: {url: \""
      + b.url() + "\"}}\n" + nodes.section()
      + "actors:\n"
        "  src: {kind: mqtt.source, broker: local, topics: [\"t/#\"], batch_size: 10, on: edge}\n"
        "  local: {kind: storage, on: edge}\n"
        "  store: {kind: storage, on: fog}\n"
        "wires: [src -> local, src -> store]\n");
  process fog, edge;
  nodes.start(fog, edge);
  INFO(edge.log());
  auto at_fog = [&] { return stored_count(dir / "fog" / "storage" / "store", "src/t/a"); };
  auto at_edge = [&] { return stored_count(dir / "edge" / "storage" / "local", "src/t/a"); };
  auto publish = [&](int from, int n) { publish_lines(b.port(), "t/a", numbered_lines(from, n)); };
  publish(0, 200);
  REQUIRE(wait_until([&] { return at_fog() == 200 && at_edge() == 200; }));

  nodes.proxy.silence();
  nlohmann::json link;
  REQUIRE(wait_until([&] {
    link = nodes.link("store");
    return link.at("state") == "unreachable";
  }));
  {
    INFO(link.dump());
    auto proxy_at = "127.0.0.1:" + std::to_string(nodes.proxy.port());
    CHECK(logged(edge,
                 "link fog/store: lost (no answer from " + proxy_at + " for 2 s (peer_timeout))"));
  }
  publish(200, 300);
  REQUIRE(wait_until([&] { return at_edge() == 500; })); // the edge goes on alone
  REQUIRE(wait_until([&] {
    link = nodes.link("store");
    return detail(link, "backlog") > 0;
  }));
  CHECK(at_fog() == 200);

  nodes.proxy.restore();
  REQUIRE(wait_until([&] { return at_fog() == 500; }));
  check_stored_once(nodes, 500);
  stop_nodes({&edge, &fog});
}
