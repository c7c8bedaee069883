#pragma once
// Measuring runs (docs/workflows.md, "Measurements"): CPU time and peak CPU of a process, RAPL
// energy counters, and codecarbon's energy estimate. CAF-free.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace fabrik {

/// CPU time (user + system, all threads) of a live process, ns; nullopt when unreadable.
std::optional<int64_t> process_cpu_ns(pid_t pid);

/// Resident memory of a live process, bytes; nullopt when unreadable.
std::optional<uint64_t> process_rss_bytes(pid_t pid);

/// Follows one process's CPU use over time: call sample() now and then (say every 100 ms
/// or more); peak() is the highest use between two samples at least `min_interval` apart,
/// 1.0 = one core busy. Before two such samples peak() is the average since start.
/// sample() ignores calls within min_interval / 4 of its last reading: /proc counts CPU in
/// 10 ms ticks, so closer readings are noise, and skipping them keeps eager callers cheap.
class cpu_peak_meter {
public:
  explicit cpu_peak_meter(pid_t pid, int64_t min_interval_ns = 200'000'000);
  void sample();
  double peak() const;
  /// Two samples at least min_interval apart were taken: peak() is a peak, not an average.
  bool has_interval() const { return have_interval_; }

private:
  pid_t pid_;
  int64_t min_interval_;
  int64_t start_wall_ = 0, start_cpu_ = 0;
  int64_t last_wall_ = 0, last_cpu_ = 0;
  int64_t last_read_ = 0; // wall time of the last reading of /proc
  double peak_ = 0;
  bool have_interval_ = false;
};

/// Sum of the RAPL package counters (/sys/class/powercap/intel-rapl:N/energy_uj), joules;
/// nullopt when there are none or they are not readable (most VMs, non-root).
std::optional<double> read_rapl_joules();
/// Where the RAPL package counters wrap (the largest max_energy_range_uj), joules; nullopt
/// when read_rapl_joules() has nothing to read.
std::optional<double> read_rapl_range_joules();
/// Joules between two RAPL readings of the same machine, allowing for one counter wrap at
/// `range_j` (read_rapl_range_joules()); 0 when `after` is below `before` and no range helps.
double rapl_delta(double before, double after, double range_j);

/// The CPU's thermal design power: 85 W unless the flow sets it (we carry no CPU table).
constexpr double default_tdp_watts = 85;

/// What an energy estimate needs.
struct energy_inputs {
  double wall_s = 0; ///< duration of the run
  double cpu_s = 0; ///< CPU time of the worker over the run
  double rss_gib = 0; ///< peak RSS of the worker, GiB
  double tdp_w = default_tdp_watts;
  unsigned cores = 1; ///< logical cores (utilisation = cpu / (wall x cores))
  std::optional<double> rapl_j; ///< RAPL package energy over the run, when readable
};

/// codecarbon's method: CPU energy from RAPL when given, else TDP x utilisation x wall;
/// plus RAM at 0.375 W per GiB over the wall time. Sets `method` to "rapl" or "tdp".
double estimate_energy(const energy_inputs& in, std::string& method);

} // namespace fabrik
