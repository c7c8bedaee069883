#pragma once
// How fabrik's processes run (the actor scheduler, malloc): one place, so `fabrik run` and
// the benchmarks that compare against it run alike.

#include <caf/actor_system_config.hpp>

#include <algorithm>
#include <malloc.h>
#include <sched.h>

namespace fabrik {

/// The CPUs this process may run on: its affinity (taskset, a container's cpuset).
inline int usable_cpus() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (::sched_getaffinity(0, sizeof cpus, &cpus) != 0)
    return 1;
  return std::max(1, CPU_COUNT(&cpus));
}

/// glibc lets threads spread over up to 8 malloc arenas a core. A record is allocated by
/// one actor and freed by another, each on whichever worker runs it: with more arenas than
/// CPUs, most frees go to an arena other threads allocate from, through glibc's slow paths
/// (a third of a node's CPU, bench/remote). One arena for each CPU this process may run
/// on keeps threads that really run at once apart and nothing more: node b of bench/remote
/// took 10 % less CPU a record, and the in-process wire kept its speed.
inline void tune_malloc() { ::mallopt(M_ARENA_MAX, usable_cpus()); }

/// Call before the actor system starts its threads.
inline void tune_scheduler(caf::actor_system_config& cfg) {
  tune_malloc();
  // CAF starts at least 4 workers. More workers than CPUs only take turns on them, and a
  // batch handed between actors on two workers waits for a time slice (bench/remote, both
  // nodes on 2 shared CPUs: 0.47x -> 0.55x, the in-process wire as fast as before). At
  // least 2: storage and workflows run on their own threads, but a link's spool write can
  // still take a while on a slow disk, and one worker would then stall every actor.
  cfg.set("scheduler.max-threads", static_cast<size_t>(std::max(2, usable_cpus())));
  // CAF's idle workers poll for about 25 ms (500 sleeps of 50 us) after every job before
  // they wait on a condition variable: with a few messages a second that is a steady 10 %
  // of a core for nothing (bench/opcua), and under load each of those sleeps is a context
  // switch the busy threads pay for (bench/remote: 480 -> 400 ns of CPU a record without
  // them). Poll briefly, then wait.
  cfg.set("work-stealing.aggressive-poll-attempts", size_t{20});
  cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
}

} // namespace fabrik
