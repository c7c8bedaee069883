// `fabrik train FLOW ACTOR` on a flow split across nodes: it asks the engine of the node
// the actor is on, in the data directory `fabrik run FLOW --node NODE` picks by default
// (data/NODE beside the flow), and says which node to start when that one is not running.

#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>

#include <csignal>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// `fabrik run FLOW --node NODE` without --data-dir: the state goes where the node's
/// engine keeps it by default, which is what `fabrik train` has to find.
process run_node(const temp_dir& dir, const std::string& node) {
  return process{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--node", node},
                 dir / (node + ".log")};
}

} // namespace

TEST_CASE("fabrik train on a split flow asks the engine of the actor's node without "
          "--data-dir, and names the node and how to start it when it is not running",
          "[e2e][nodes][train]") {
  temp_dir dir;
  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  loopback_nodes nodes{{"edge", "cloud"}};
  // Ingest at the edge; storage and the workflow that trains on it at the cloud.
  const auto flow = (dir / "flow.yaml").string();
  write_file(flow, pcb_flow_text(
                     b,
                     "    package: pcb.zip\n"
                     "    params: {n_estimators: 20}\n"
                     "    train: {storage: store, stream: src/Line1/default}\n",
                     nodes.section(),
                     {{"src", "edge"}, {"store", "cloud"}, {"model", "cloud"}, {"out", "edge"}}));
  std::string out;
  REQUIRE(run_command({fabrik_binary(), "check", flow}, &out) == 0);
  const std::string not_running = "node cloud of flow " + flow + " is not running";
  const std::string start_it = "start it with: fabrik run " + flow + " --node cloud";

  auto edge = run_node(dir, "edge");
  REQUIRE(wait_until([&] { return logged(edge, "src: connected"); }));
  // Only the edge runs: its engine is not the one to ask.
  CHECK(run_command({fabrik_binary(), "train", flow, "model"}, &out) == 1);
  INFO(out);
  CHECK(out.find(not_running) != std::string::npos);
  CHECK(out.find(start_it) != std::string::npos);
  CHECK(run_command({fabrik_binary(), "train", flow, "nope"}, &out) == 1);
  CHECK(out.find("no actor 'nope' in flow " + flow) != std::string::npos);

  auto cloud = run_node(dir, "cloud");
  const auto stream = "src/Line1/default";
  publish_boards(b.port(), 1200, 1, 1);
  REQUIRE(wait_until(
    [&] { return stored_count(dir / "data" / "cloud" / "storage" / "store", stream) == 1200; }));
  INFO(cloud.log());
  REQUIRE(wait_until([&] { return logged(cloud, "model: serving pcb-classifier 1.0.0"); },
                     std::chrono::seconds{90}));
  // The flow says model is on the cloud, whose state is in data/cloud beside the flow.
  std::string trained;
  REQUIRE(run_command({fabrik_binary(), "train", flow, "model"}, &trained) == 0);
  INFO(trained);
  CHECK(trained.find("model (pcb-classifier 1.0.0): succeeded, 1200 rows") != std::string::npos);
  // That run is the cloud's, started by hand.
  REQUIRE(trained.starts_with("run "));
  auto id = trained.substr(4, trained.find(' ', 4) - 4);
  REQUIRE(run_command(
            {fabrik_binary(), "runs", "--data-dir", (dir / "data" / "cloud").string(), id}, &out)
          == 0);
  CHECK(out.find("manual") != std::string::npos);
  // fabrik runs and workflows read the nodes' state the same way: data/NODE per node.
  REQUIRE(run_command({fabrik_binary(), "runs", flow, "--actor", "model"}, &out) == 0);
  CHECK(out.starts_with("node cloud (" + (dir / "data" / "cloud").string() + ")\n"));
  CHECK(out.find("run " + id + " model (pcb-classifier 1.0.0): succeeded") != std::string::npos);
  REQUIRE(run_command({fabrik_binary(), "workflows", flow}, &out) == 0);
  INFO(out);
  CHECK(out.find("node cloud") != std::string::npos);
  CHECK(out.find("pcb-classifier") != std::string::npos);
  // --data-dir still names the engine outright: the edge's has no actor model.
  CHECK(run_command(
          {fabrik_binary(), "train", flow, "model", "--data-dir", (dir / "data" / "edge").string()},
          &out)
        == 1);
  CHECK(out.find(not_running) == std::string::npos);

  cloud.signal(SIGTERM);
  REQUIRE(cloud.wait() == 0);
  CHECK(run_command({fabrik_binary(), "train", flow, "model"}, &out) == 1);
  CHECK(out.find(not_running) != std::string::npos);
  CHECK(out.find(start_it) != std::string::npos);
  edge.signal(SIGTERM);
  CHECK(edge.wait() == 0);
}
