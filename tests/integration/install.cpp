// `cmake --install`: the installed fabrik finds its worker and its pages, wherever the
// prefix is (here a fresh directory; /usr/local and /usr by the same rules).
#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>
#include <httplib.h>

#include <csignal>
#include <regex>

using namespace fabrik::test;

TEST_CASE("an installed fabrik runs a workflow with its installed worker and serves its "
          "installed pages",
          "[e2e][install]") {
  temp_dir dir;
  auto prefix = dir / "prefix";
  std::string out;
  REQUIRE(
    run_command({CMAKE_COMMAND, "--install", FABRIK_BUILD_DIR, "--prefix", prefix.string()}, &out)
    == 0);
  INFO(out);
  CHECK(std::filesystem::is_regular_file(prefix / "bin" / "fabrik"));
  CHECK(std::filesystem::is_regular_file(prefix / "libexec" / "fabrik" / "fabrik-worker"));
  CHECK(
    std::filesystem::is_regular_file(prefix / "share" / "fabrik" / "web-static" / "index.html"));
  CHECK(
    std::filesystem::is_regular_file(prefix / "share" / "fabrik" / "flows" / "pcb-classify.yaml"));
  CHECK(std::filesystem::is_regular_file(prefix / "share" / "fabrik" / "examples" / "pcb-classifier"
                                         / "fabrik-workflow.yaml"));
  CHECK_FALSE(std::filesystem::exists(prefix / "bin" / "fabrik-worker"));

  broker b{dir / "broker"};
  package("pcb-classifier", dir / "pcb.zip");
  write_file(dir / "flow.yaml",
             pcb_flow_text(b, "    package: pcb.zip\n"
                              "    train: {storage: store, stream: src/Line1/default}\n"));
  process fabrik{{(prefix / "bin" / "fabrik").string(), "run", (dir / "flow.yaml").string(),
                  "--data-dir", (dir / "data").string(), "--http", "127.0.0.1:0"},
                 dir / "fabrik.log"};
  int port = 0;
  REQUIRE(wait_until([&] {
    std::smatch m;
    auto log = fabrik.log();
    static const std::regex url{R"(http: web UI on http://127\.0\.0\.1:(\d+)/)"};
    if (!std::regex_search(log, m, url))
      return false;
    port = std::stoi(m[1]);
    return log.find("src: connected") != std::string::npos;
  }));
  INFO(fabrik.log());
  // A served model means the worker ran: the only one there is is the installed one.
  publish_boards(b.port(), 1000, 1, 1);
  REQUIRE(wait_until(
    [&] { return fabrik.log().find("model: serving pcb-classifier 1.0.0") != std::string::npos; },
    std::chrono::seconds{90}));
  httplib::Client c{"127.0.0.1", port};
  auto page = c.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->body == read_file(prefix / "share" / "fabrik" / "web-static" / "index.html"));
  fabrik.signal(SIGTERM);
  CHECK(fabrik.wait() == 0);
}
