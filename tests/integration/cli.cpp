// The fabrik binary's contract: exit codes, --help everywhere, check diagnostics with
// lines, and docs/kinds.md generated from the kinds' own declarations.

#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>

#include <regex>

using namespace fabrik::test;

TEST_CASE("every subcommand answers --help with exit code 0", "[cli]") {
  for (auto cmd : {"run", "check", "kinds", "store", "package"}) {
    std::string out;
    INFO(cmd);
    CHECK(run_command({fabrik_binary(), cmd, "--help"}, &out) == 0);
    CHECK(out.find("usage: fabrik " + std::string{cmd}) != std::string::npos);
  }
}

TEST_CASE("an unknown command or a missing argument is a user error with one line", "[cli]") {
  std::string out;
  CHECK(run_command({fabrik_binary(), "frobnicate"}, &out) == 1);
  CHECK(out.rfind("fabrik: unknown command 'frobnicate'", 0) == 0);
  CHECK(run_command({fabrik_binary(), "run"}, &out) == 1);
  CHECK(out.rfind("fabrik: run needs a flow file", 0) == 0);
  CHECK(run_command({fabrik_binary(), "store", "/nonexistent/store"}, &out) == 1);
}

TEST_CASE("docs/kinds.md is what fabrik kinds --markdown generates", "[cli][docs]") {
  if (!unbuilt_drivers().empty()) {
    WARN("a driver is left out of this build: docs/kinds.md describes them all");
    return;
  }
  std::string out;
  REQUIRE(run_command({fabrik_binary(), "kinds", "--markdown"}, &out) == 0);
  INFO("regenerate with: build/fabrik kinds --markdown > docs/kinds.md");
  CHECK(out == read_file(source_dir() / "docs" / "kinds.md"));
}

TEST_CASE("fabrik kinds lists the kinds and shows one kind's settings", "[cli]") {
  std::string out;
  REQUIRE(run_command({fabrik_binary(), "kinds"}, &out) == 0);
  for (auto k : {"mqtt.source", "mqtt.sink", "storage", "brokers"})
    CHECK(out.find(k) != std::string::npos);
  REQUIRE(run_command({fabrik_binary(), "kinds", "mqtt.source"}, &out) == 0);
  CHECK(out.find("topics") != std::string::npos);
  CHECK(out.find("max_pending") != std::string::npos);
  CHECK(run_command({fabrik_binary(), "kinds", "nope"}, &out) == 1);
  CHECK(out.find("unknown kind 'nope'") != std::string::npos);
}

namespace {

std::string without_unbuilt_kinds(std::string text) {
  for (auto& d : unbuilt_drivers()) {
    // "a, D.x, b" and "D.x, b" lose "D.x, "; "a, D.x" loses ", D.x".
    text = std::regex_replace(text, std::regex{"\\b" + d + "\\.[a-z_]+, "}, "");
    text = std::regex_replace(text, std::regex{", \\b" + d + "\\.[a-z_]+\\b"}, "");
  }
  return text;
}

} // namespace

// Golden flow tests: NAME.yaml beside NAME.expected (fabrik check's output, with the
// directory of the flow written as FLOWDIR) in tests/flows/check, and in
// tests/drivers/DRIVER/check for each driver built. A new case is two files.
TEST_CASE("fabrik check reports every problem of the golden flows with its line", "[cli][check]") {
  std::vector<std::filesystem::path> dirs{source_dir() / "tests" / "flows" / "check"};
  for (auto& d : built_drivers())
    if (auto dir = source_dir() / "tests" / "drivers" / d / "check";
        std::filesystem::is_directory(dir))
      dirs.push_back(dir);
  size_t cases = 0;
  for (auto& dir : dirs) {
    for (auto& entry : std::filesystem::directory_iterator(dir)) {
      if (entry.path().extension() != ".yaml")
        continue;
      ++cases;
      auto expected_path = entry.path();
      expected_path.replace_extension(".expected");
      INFO(entry.path().string());
      std::string out;
      int rc = run_command({fabrik_binary(), "check", entry.path().string()}, &out);
      // A build without some driver does not list its kinds (named DRIVER.something).
      auto expected = without_unbuilt_kinds(read_file(expected_path));
      // The expected text names the flow by FLOWDIR/NAME.yaml.
      std::string actual = out;
      for (size_t pos; (pos = actual.find(dir.string())) != std::string::npos;)
        actual.replace(pos, dir.string().size(), "FLOWDIR");
      CHECK(actual == expected);
      bool ok_case = entry.path().filename().string().rfind("ok-", 0) == 0;
      CHECK(rc == (ok_case ? 0 : 1));
    }
  }
  CHECK(cases >= 3);
}
