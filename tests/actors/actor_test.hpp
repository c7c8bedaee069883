#pragma once
// Actor tests: an actor system on CAF's deterministic scheduler (no threads: the test runs
// every message itself, and time moves only when the test moves it), and small helpers.

#include "actors/actors.hpp"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <chrono>
#include <utility>
#include <vector>

namespace fabrik::test {

struct deterministic_system {
  static caf::actor_system_config& configured(caf::actor_system_config& cfg) {
    cfg.add_message_types<caf::id_block::fabrik>();
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    return cfg;
  }
  caf::actor_system_config cfg;
  caf::actor_system sys{configured(cfg)};
  caf::scheduler::test_coordinator& sched =
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::vector<caf::actor> spawned;

  /// Spawns an actor that the test stops at its end (the system waits for every actor, and
  /// on this scheduler nothing runs unless the test runs it).
  template <class... Ts>
  auto spawn(Ts&&... xs) {
    auto h = sys.spawn(std::forward<Ts>(xs)...);
    spawned.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }
  ~deterministic_system() {
    for (auto& a : spawned)
      caf::anon_send_exit(a, caf::exit_reason::kill);
    spawned.clear();
    sched.trigger_timeouts();
    run();
  }

  /// Runs every queued message, and every message those send, until none is left; timers
  /// wait for advance() (test_coordinator::run would fire them all).
  void run() {
    while (sched.try_run_once()) {
    }
  }
  /// Moves time on, fires what falls due, and runs what that sends.
  void advance(std::chrono::nanoseconds d) {
    sched.advance_time(caf::timespan{d.count()});
    run();
  }
  /// The state of a stateful actor (safe between runs: no actor is running then).
  template <class State, class Handle>
  State& state(const Handle& h) {
    auto* ptr = caf::actor_cast<caf::abstract_actor*>(h);
    return dynamic_cast<caf::stateful_actor<State>&>(*ptr).state;
  }
};

/// A batch of one record with this seq on stream "test".
inline record_batch one_record_batch(uint64_t seq) {
  record r;
  r.stream = "test";
  r.seq = seq;
  r.time = static_cast<int64_t>(seq) * 1'000'000'000;
  r.ingest_time = r.time;
  record_batch b;
  b.records.push_back(std::move(r));
  return b;
}

} // namespace fabrik::test
