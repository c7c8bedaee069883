// How fabrik's processes run: the CPUs they count (engine/scheduler.hpp).

#include "engine/scheduler.hpp"

#include <catch2/catch.hpp>

TEST_CASE("usable_cpus counts the CPUs of the affinity, not of the machine", "[scheduler]") {
  cpu_set_t all;
  CPU_ZERO(&all);
  REQUIRE(::sched_getaffinity(0, sizeof all, &all) == 0);
  CHECK(fabrik::usable_cpus() == CPU_COUNT(&all));
  int first = 0;
  while (!CPU_ISSET(first, &all))
    ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0); // this thread only, restored below
  auto pinned = fabrik::usable_cpus();
  REQUIRE(::sched_setaffinity(0, sizeof all, &all) == 0);
  CHECK(pinned == 1);
}
