#include "runtime/measure.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string_view>
#include <vector>

namespace fabrik {

namespace {

/// A small /proc or /sys file, whole; nullopt when unreadable.
std::optional<std::string> read_small_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      ::close(fd);
      if (n < 0)
        return std::nullopt;
      return out;
    }
  }
}

/// The leading unsigned number of `s` (after blanks); nullopt when there is none.
std::optional<uint64_t> leading_number(std::string_view s) {
  auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos)
    return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data() + first, s.data() + s.size(), v);
  if (ec != std::errc{})
    return std::nullopt;
  return v;
}

int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// Values of `file` in every RAPL package domain (intel-rapl:N, not its subdomains
/// intel-rapl:N:M, whose energy the package already counts); nullopt when there is no
/// package or one of them is unreadable (a partial sum would look like a real one).
std::optional<std::vector<uint64_t>> rapl_package_values(const char* file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it{"/sys/class/powercap", ec};
  if (ec)
    return std::nullopt;
  std::vector<uint64_t> values;
  for (; it != fs::directory_iterator{}; it.increment(ec)) {
    auto name = it->path().filename().string();
    constexpr std::string_view prefix = "intel-rapl:";
    if (!name.starts_with(prefix) || name.find(':', prefix.size()) != std::string::npos)
      continue;
    auto text = read_small_file((it->path() / file).string());
    auto v = text ? leading_number(*text) : std::nullopt;
    if (!v)
      return std::nullopt; // energy_uj is root-only on recent kernels
    values.push_back(*v);
  }
  if (ec || values.empty())
    return std::nullopt;
  return values;
}

/// Negative and NaN inputs count as 0.
double non_negative(double x) { return x > 0 ? x : 0; }

} // namespace

std::optional<int64_t> process_cpu_ns(pid_t pid) {
  if (pid <= 0)
    return std::nullopt;
  auto text = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text)
    return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so fields are counted
  // from the last ')'. The first after it is field 3 (state); utime and stime are 14, 15.
  auto close = text->rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::string_view rest{*text};
  rest.remove_prefix(close + 1);
  uint64_t ticks[2] = {0, 0};
  for (int field = 3; field <= 15; ++field) {
    auto start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos)
      return std::nullopt;
    rest.remove_prefix(start);
    if (field >= 14) {
      auto v = leading_number(rest);
      if (!v)
        return std::nullopt;
      ticks[field - 14] = *v;
    }
    auto end = rest.find(' ');
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  static const long hz = ::sysconf(_SC_CLK_TCK);
  if (hz <= 0)
    return std::nullopt;
  auto total = ticks[0] + ticks[1];
  return static_cast<int64_t>(total / hz * 1'000'000'000ull + total % hz * 1'000'000'000ull / hz);
}

cpu_peak_meter::cpu_peak_meter(pid_t pid, int64_t min_interval_ns)
  : pid_(pid), min_interval_(min_interval_ns) {
  start_wall_ = last_wall_ = last_read_ = monotonic_ns();
  start_cpu_ = last_cpu_ = process_cpu_ns(pid_).value_or(0);
}

void cpu_peak_meter::sample() {
  auto now = monotonic_ns();
  if (now - last_read_ < min_interval_ / 4)
    return;
  last_read_ = now;
  auto cpu = process_cpu_ns(pid_);
  if (!cpu || *cpu < last_cpu_) // gone, or another process got its pid
    return;
  if (now - last_wall_ >= min_interval_) {
    double use = static_cast<double>(*cpu - last_cpu_) / static_cast<double>(now - last_wall_);
    // The first full interval replaces the provisional average of shorter ones.
    peak_ = have_interval_ ? std::max(peak_, use) : use;
    have_interval_ = true;
    last_wall_ = now;
    last_cpu_ = *cpu;
  } else if (!have_interval_ && now > start_wall_) {
    // Too short to count as an interval (a clock tick is 10 ms): the average so far.
    peak_ = static_cast<double>(*cpu - start_cpu_) / static_cast<double>(now - start_wall_);
  }
}

double cpu_peak_meter::peak() const { return peak_; }

std::optional<double> read_rapl_joules() {
  auto uj = rapl_package_values("energy_uj");
  if (!uj)
    return std::nullopt;
  double sum = 0;
  for (auto v : *uj)
    sum += static_cast<double>(v) * 1e-6;
  return sum;
}

std::optional<double> read_rapl_range_joules() {
  auto uj = rapl_package_values("max_energy_range_uj");
  if (!uj)
    return std::nullopt;
  return static_cast<double>(*std::max_element(uj->begin(), uj->end())) * 1e-6;
}

double rapl_delta(double before, double after, double range_j) {
  if (after >= before)
    return after - before;
  // The counter wrapped once: it ran up to the range and on from 0. Two wraps (or no
  // known range) cannot be told from noise; say nothing rather than something wrong.
  double d = after + range_j - before;
  return range_j > 0 && d >= 0 ? d : 0;
}

double estimate_energy(const energy_inputs& in, std::string& method) {
  method = in.rapl_j ? "rapl" : "tdp";
  double wall = non_negative(in.wall_s);
  if (wall == 0)
    return 0;
  double cpu_j = 0;
  if (in.rapl_j) {
    cpu_j = non_negative(*in.rapl_j);
  } else {
    double cores = std::max(in.cores, 1u);
    // Clamped: CPU time a tick over wall x cores is rounding, not a hotter CPU.
    double utilisation = std::min(non_negative(in.cpu_s) / (wall * cores), 1.0);
    cpu_j = non_negative(in.tdp_w) * utilisation * wall;
  }
  constexpr double ram_w_per_gib = 0.375;
  return cpu_j + ram_w_per_gib * non_negative(in.rss_gib) * wall;
}

std::optional<uint64_t> process_rss_bytes(pid_t pid) {
  if (pid <= 0)
    return std::nullopt;
  // statm: size resident shared ... in pages.
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
  if (!f)
    return std::nullopt;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2)
    return std::nullopt;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

} // namespace fabrik
