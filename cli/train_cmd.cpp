// fabrik train: asks a running engine, through its control socket, to train a workflow
// actor now, and waits for the run to end.

#include "cli/commands.hpp"

#include "core/time.hpp"
#include "engine/control.hpp"
#include "runtime/registry.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

namespace fabrik::cli {

namespace {

constexpr const char* train_usage =
  R"(usage: fabrik train FLOW ACTOR [--data-dir DIR] [--no-wait] [--timeout DURATION]

Trains the workflow actor ACTOR of the engine running FLOW now, through the engine's
control socket (DATA_DIR/control.sock), then waits for the run to end and prints it:
rows, model, time, CPU, memory and energy, or why it failed. In a flow split across
nodes, the engine is the one of ACTOR's node (its `on:`), started with
`fabrik run FLOW --node NODE`.

  --data-dir DIR       the engine's state directory (default: data/ beside the flow file,
                       or data/NODE for an actor on node NODE, as fabrik run --node uses)
  --no-wait            print the run's id and return at once
  --timeout DURATION   give up waiting after this long (default 30m); the run goes on

Interrupting the wait leaves the run going as well; fabrik runs shows how it ended.

Exit status: 0 the run succeeded (or started, with --no-wait), 1 it failed or was
interrupted, the engine refused or is not running, or the wait timed out; 2 an
internal error.)";

using json = nlohmann::json;
using namespace std::chrono_literals;

// One request is quick (the engine only looks the run up); the bound is for a stuck engine.
constexpr std::chrono::milliseconds request_timeout = 10s;
constexpr std::chrono::milliseconds poll_interval = 250ms;

/// Exit code for a failed request: what the user can fix (start the engine, name another
/// actor) is 1.
int code_of(const error& e) {
  switch (e.code) {
    case ec::unavailable:
    case ec::timeout:
    case ec::invalid_argument:
      return 1;
    default:
      return 2;
  }
}

/// Sends `request`; the engine's reply, or its {"error": ...} as ec::invalid_argument.
expected<json> ask(const std::filesystem::path& socket, const json& request) {
  auto reply = control_request(socket, request, request_timeout);
  if (!reply)
    return reply;
  if (!reply->is_object())
    return make_error(ec::parse_error, "the engine's reply is not a JSON object");
  if (auto e = reply->find("error"); e != reply->end())
    return make_error(ec::invalid_argument, e->is_string() ? e->get<std::string>() : e->dump());
  return reply;
}

} // namespace

int train(const args& a) {
  if (wants_help(a)) {
    std::puts(train_usage);
    return 0;
  }
  auto c = parse_command_line(a, "train", {"--data-dir", "--timeout"}, {"--no-wait"});
  if (!c)
    return 1;
  if (c->positionals.size() != 2)
    return fail(1, "train needs a flow file and one actor; see fabrik train --help");
  auto& flow_file = c->positionals[0];
  auto& actor = c->positionals[1];
  auto timeout_text = c->option("--timeout");
  bool wait = !c->flag("--no-wait");
  int64_t timeout_ns = 30LL * 60 * 1'000'000'000;
  if (timeout_text) {
    auto d = parse_duration(*timeout_text);
    if (!d)
      return fail(1, "--timeout: " + d.err().message);
    if (*d <= 0)
      return fail(1, "--timeout must be positive, not " + *timeout_text);
    timeout_ns = *d;
  }

  // Without --data-dir, the flow says where ACTOR runs: its node's engine has the state
  // directory `fabrik run FLOW --node NODE` picks.
  auto data_dir = c->option("--data-dir");
  std::string node;
  if (!data_dir) {
    auto f = load(flow_file, false);
    if (!f)
      return fail(1, "flow " + flow_file + " has errors, so it does not say where " + actor
                       + " runs; fix it, or name the engine's state directory with --data-dir");
    auto* decl = f->find(actor);
    if (!decl)
      return fail(1, "no actor '" + actor + "' in flow " + flow_file);
    node = decl->node;
  }
  auto socket = data_dir_of(flow_file, data_dir, node) / "control.sock";
  auto started = ask(socket, json{{"op", "train"}, {"actor", actor}});
  if (!started && started.err().code == ec::unavailable && !node.empty())
    return fail(1, "node " + node + " of flow " + flow_file + " is not running (" + actor
                     + " is on it; " + started.err().message + "); start it with: fabrik run "
                     + flow_file + " --node " + node);
  if (!started)
    return fail(code_of(started.err()), started.err().message);
  auto id = started->find("run");
  if (id == started->end() || !id->is_number_unsigned())
    return fail(2, "the engine's reply names no run: " + started->dump());
  auto run_id = id->get<uint64_t>();
  if (!wait) {
    std::printf("run %llu started\n", static_cast<unsigned long long>(run_id));
    return 0;
  }

  auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds{timeout_ns};
  for (;;) {
    auto got = ask(socket, json{{"op", "run"}, {"id", run_id}});
    if (!got)
      return fail(code_of(got.err()), got.err().message);
    run_record run;
    try {
      run = run_from_json(got->at("run"));
    } catch (const json::exception& e) {
      return fail(2, std::string{"the engine sent a malformed run: "} + e.what());
    }
    if (run.status != "running") {
      std::printf("%s\n", describe_run(run).c_str());
      return run.status == "succeeded" ? 0 : 1;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return fail(1, "run " + std::to_string(run_id) + " still running after "
                       + format_duration(timeout_ns) + "; see fabrik runs");
    std::this_thread::sleep_for(
      std::min<std::chrono::steady_clock::duration>(poll_interval, deadline - now));
  }
}

} // namespace fabrik::cli
