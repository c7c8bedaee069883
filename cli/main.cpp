// fabrik: one binary, subcommands. Exit codes: 0 ok, 1 user error, 2 internal error.

#include "cli/commands.hpp"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <map>
#include <string>

namespace {

constexpr const char* usage = R"(fabrik - an actor-based dataflow engine for industrial ML

usage: fabrik COMMAND [ARGS...]

commands:
  run FLOW      run a flow until SIGINT/SIGTERM
  check FLOW    validate a flow file without running it (or a workflow FILE.zip)
  kinds [KIND]  reference of every actor kind and its settings
  store PATH    look inside a storage: streams, or the records of one stream
  package DIR   build a workflow package: fabrik package DIR -o FILE.zip
  train FLOW ACTOR   train a workflow actor of a running engine now
  workflows     the workflow package versions an engine stored
  runs          the training runs an engine stored, with their measurements
  certs DIR NODE...   a test CA and TLS certificates for the nodes of a flow
  version       print the version

`fabrik COMMAND --help` tells more about each command.
)";

} // namespace

int main(int argc, char** argv) {
  using namespace fabrik::cli;
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 1;
  }
  std::string cmd = argv[1];
  args rest(argv + 2, argv + argc);
  static const std::map<std::string, int (*)(const args&)> commands{
    {"run", &run},         {"check", &check}, {"kinds", &kinds},         {"store", &store},
    {"package", &package}, {"train", &train}, {"workflows", &workflows}, {"runs", &runs},
    {"certs", &certs}};
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::fputs(usage, stdout);
    return 0;
  }
  if (cmd == "version" || cmd == "--version") {
    std::puts("fabrik " FABRIK_VERSION);
    return 0;
  }
  auto it = commands.find(cmd);
  if (it == commands.end())
    return fail(
      1,
      "unknown command '" + cmd
        + "'; commands: run, check, kinds, store, package, train, workflows, runs, certs, version");
  try {
    return it->second(rest);
  } catch (const std::exception& e) {
    return fail(2, std::string{"internal error: "} + e.what());
  }
}
