// Measuring runs: CPU time and peak CPU of real child processes, RAPL, energy estimates.
// The machine is shared: bounds are loose, and waits are "until enough happened" with a
// far deadline rather than "for this long".

#include "runtime/measure.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <filesystem>
#include <thread>

using namespace fabrik;
using namespace std::chrono_literals;

namespace {

/// A forked child that spins or sleeps until killed. Its name has the spaces and
/// parentheses that trip a naive /proc/PID/stat parser. The child only makes system
/// calls: the test process may have threads.
struct child {
  pid_t pid = -1;
  explicit child(bool spin) {
    pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::prctl(PR_SET_NAME, "a) (b c) d");
      volatile unsigned long n = 0;
      while (spin)
        n = n + 1;
      for (;;)
        ::pause();
    }
  }
  ~child() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

/// Samples `m` every 50 ms until `enough` holds, or 30 s passed.
template <class Pred>
void sample_until(cpu_peak_meter& m, Pred enough) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!enough() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    m.sample();
  }
}

} // namespace

TEST_CASE("process_cpu_ns counts a spinning child and not a sleeping one", "[measure]") {
  child spinner{true};
  child sleeper{false};
  auto deadline = std::chrono::steady_clock::now() + 30s;
  std::optional<int64_t> spun;
  while (std::chrono::steady_clock::now() < deadline) {
    spun = process_cpu_ns(spinner.pid);
    REQUIRE(spun);
    if (*spun >= 300'000'000)
      break;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(*spun >= 300'000'000);
  auto slept = process_cpu_ns(sleeper.pid);
  REQUIRE(slept);
  CHECK(*slept >= 0);
  CHECK(*slept < 100'000'000);
  CHECK_FALSE(process_cpu_ns(INT_MAX)); // above any pid_max
  CHECK_FALSE(process_cpu_ns(0));
}

TEST_CASE("cpu_peak_meter sees a spinning child near one core and a sleeping one near 0",
          "[measure]") {
  SECTION("spinning") {
    child spinner{true};
    cpu_peak_meter m{spinner.pid, 100'000'000};
    // Peak over many intervals: one of them gets a core even on a busy machine.
    sample_until(m, [&] { return m.has_interval() && m.peak() > 0.8; });
    CHECK(m.peak() > 0.3); // shared machines: a clear share of a core
    CHECK(m.has_interval());
  }
  SECTION("sleeping") {
    child sleeper{false};
    cpu_peak_meter m{sleeper.pid, 100'000'000};
    for (int i = 0; i < 10; ++i) {
      std::this_thread::sleep_for(50ms);
      m.sample();
    }
    CHECK(m.peak() >= 0);
    CHECK(m.peak() < 0.3);
  }
  SECTION("before a whole interval, the average since start; eager samples are skipped") {
    child spinner{true};
    cpu_peak_meter m{spinner.pid, 10'000'000'000};
    m.sample(); // within 2.5 s of the start: not read
    CHECK(m.peak() == 0);
    sample_until(m, [&] { return m.peak() > 0.8; });
    CHECK(m.peak() > 0.3);
  }
  SECTION("a process that is gone reads as no use") {
    cpu_peak_meter m{INT_MAX, 0};
    m.sample();
    m.sample();
    CHECK(m.peak() == 0);
  }
}

TEST_CASE("RAPL is absent without powercap, and its counter wraps once", "[measure]") {
  if (!std::filesystem::exists("/sys/class/powercap")) {
    CHECK_FALSE(read_rapl_joules());
    CHECK_FALSE(read_rapl_range_joules());
  } else if (auto j = read_rapl_joules()) { // readable here: plausible numbers at least
    CHECK(*j >= 0);
    auto range = read_rapl_range_joules();
    REQUIRE(range);
    CHECK(*range > 0);
  }
  CHECK(rapl_delta(10, 25, 100) == Approx(15));
  CHECK(rapl_delta(10, 10, 100) == 0);
  CHECK(rapl_delta(90, 5, 100) == Approx(15)); // 90 -> 100 = 0 -> 5
  CHECK(rapl_delta(90, 5, 0) == 0); // no range: not a negative energy
  CHECK(rapl_delta(90, 5, 50) == 0); // more than one wrap
}

TEST_CASE("estimate_energy follows codecarbon for RAPL and TDP", "[measure]") {
  std::string method;
  SECTION("TDP x utilisation, plus RAM") {
    energy_inputs in;
    in.wall_s = 10;
    in.cpu_s = 5; // a quarter of 2 cores
    in.cores = 2;
    in.rss_gib = 2;
    // 85 W x 0.25 x 10 s + 0.375 W/GiB x 2 GiB x 10 s
    CHECK(estimate_energy(in, method) == Approx(212.5 + 7.5));
    CHECK(method == "tdp");
    in.tdp_w = 40;
    CHECK(estimate_energy(in, method) == Approx(100 + 7.5));
    in.cpu_s = 30; // more than wall x cores: the CPU was busy, not hotter
    CHECK(estimate_energy(in, method) == Approx(400 + 7.5));
  }
  SECTION("RAPL replaces the CPU part") {
    energy_inputs in;
    in.wall_s = 4;
    in.cpu_s = 4;
    in.rss_gib = 1;
    in.rapl_j = 300;
    CHECK(estimate_energy(in, method) == Approx(300 + 1.5));
    CHECK(method == "rapl");
  }
  SECTION("zero and negative inputs") {
    energy_inputs in;
    in.cpu_s = 5;
    in.rss_gib = 1;
    CHECK(estimate_energy(in, method) == 0); // no wall time
    in.wall_s = -1;
    CHECK(estimate_energy(in, method) == 0);
    in.wall_s = 10;
    in.cores = 0; // taken as one core: 85 W x 0.5 x 10 s + 0.375 W x 10 s
    CHECK(estimate_energy(in, method) == Approx(425 + 3.75));
    in.cpu_s = -5;
    in.rss_gib = -1;
    CHECK(estimate_energy(in, method) == 0);
    in.rapl_j = -3;
    CHECK(estimate_energy(in, method) == 0);
    CHECK(method == "rapl");
  }
}
