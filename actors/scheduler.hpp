#pragma once
// How fabrik's actor systems schedule: one place, so `fabrik run` and the benchmarks that
// compare against it run alike.

#include <caf/actor_system_config.hpp>

namespace fabrik {

inline void tune_scheduler(caf::actor_system_config& cfg) {
  // CAF's idle workers poll for about 25 ms (500 sleeps of 50 us) after every job before
  // they wait on a condition variable: with a few messages a second that is a steady 10 %
  // of a core for nothing (bench/opcua), and under load each of those sleeps is a context
  // switch the busy threads pay for (bench/remote: 480 -> 400 ns of CPU a record without
  // them). Poll briefly, then wait.
  cfg.set("work-stealing.aggressive-poll-attempts", size_t{20});
  cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
}

} // namespace fabrik
