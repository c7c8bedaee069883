// Micro-benchmark of simatic_decoder::decode on the data messages of the simulated PCB line
// (bench/assets/pcb_publisher.py): 16 Real/LReal measurements and a String label, one ts
// shared by all 17 values, qc 3; about 1 KB each. Prints CPU ns per message for the
// nlohmann SAX path (fast path off) and the fast scanner, in one run, and their ratio.
//
//   ninja -C build decode_bench && build/decode_bench [seconds per round (0.3)] [both|fast|slow]

#include "drivers/mqtt/simatic.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using namespace fabrik;
using namespace fabrik::mqtt;

namespace {

constexpr const char* app = "pcb";
constexpr const char* meta_topic = "ie/m/j/simatic/v1/pcb/dp";
constexpr const char* data_topic = "ie/d/j/simatic/v1/pcb/dp/r/Line1/default";

struct measurement {
  const char* name;
  const char* data_type;
  int decimals;
  double mean;
  double sd;
};

// As MEASUREMENTS in pcb_publisher.py (ids "1".."16"); the label is id "17".
const measurement measurements[] = {
  {"height", "Real", 2, 120, 5},       {"area", "Real", 4, 0.5, 0.05},
  {"volume", "Real", 5, 0.06, 0.005},  {"offset_x", "Real", 1, 0, 10},
  {"offset_y", "Real", 1, 0, 10},      {"position_x", "LReal", 3, 125, 60},
  {"position_y", "LReal", 3, 100, 50}, {"height_pct", "Real", 2, 100, 4},
  {"area_pct", "Real", 2, 100, 3.5},   {"volume_pct", "Real", 2, 100, 6},
  {"bridge_len", "Real", 1, 0, 0},     {"shape_dev", "Real", 2, 3, 3},
  {"pad_size_x", "Real", 3, 0.8, 0.4}, {"pad_size_y", "Real", 3, 0.9, 0.4},
  {"temperature", "Real", 2, 24, 0.5}, {"humidity", "Real", 2, 45, 2},
};

std::string metadata() {
  nlohmann::json defs = nlohmann::json::array();
  int id = 1;
  for (auto& m : measurements)
    defs.push_back({{"name", m.name}, {"id", std::to_string(id++)}, {"dataType", m.data_type}});
  defs.push_back({{"name", "label"}, {"id", std::to_string(id)}, {"dataType", "String"}});
  nlohmann::json j = {
    {"seq", 1},
    {"connections",
     {{{"name", "Line1"},
       {"type", "simulated"},
       {"dataPoints",
        {{{"name", "default"}, {"topic", data_topic}, {"dataPointDefinitions", defs}}}}}}}};
  return j.dump();
}

/// `count` messages as the publisher formats them, 10 ms apart.
std::vector<std::string> messages(size_t count) {
  std::mt19937_64 rng{42};
  std::vector<std::string> out;
  const char* labels[] = {"OK", "error", "pseudo-error"};
  int64_t ms = 1'795'615'580'470; // 2026-11-25T14:06:20.470Z
  char buf[64];
  for (size_t seq = 1; seq <= count; ++seq, ms += 10) {
    time_t sec = static_cast<time_t>(ms / 1000);
    tm t{};
    gmtime_r(&sec, &t);
    char ts[80];
    std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                  t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                  static_cast<int>(ms % 1000));
    std::string m = "{\"seq\":" + std::to_string(seq) + ",\"vals\":[";
    int id = 1;
    for (auto& x : measurements) {
      std::normal_distribution<double> g{x.mean, x.sd > 0 ? x.sd : 1e-9};
      std::snprintf(buf, sizeof buf, "%.*f", x.decimals, g(rng));
      m += "{\"id\":\"" + std::to_string(id++) + "\",\"val\":" + buf + ",\"ts\":\"" + ts
           + "\",\"qc\":3},";
    }
    m += "{\"id\":\"" + std::to_string(id) + "\",\"val\":\"" + labels[rng() % 20 == 0 ? 1 : 0]
         + "\",\"ts\":\"" + ts + "\",\"qc\":3}]}";
    out.push_back(std::move(m));
  }
  return out;
}

int64_t cpu_ns() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

/// CPU ns per message: the best of `rounds` rounds of about `seconds` each.
double measure(simatic_decoder& dec, const std::vector<std::string>& msgs, double seconds,
               int rounds) {
  message_info info{"pcb_in", data_topic, 1'795'615'590'000'000'000, 0};
  size_t sink = 0;
  double best = 1e300;
  for (int r = 0; r < rounds; ++r) {
    size_t done = 0;
    auto start = cpu_ns();
    auto stop = start + static_cast<int64_t>(seconds * 1e9);
    int64_t now = start;
    while (now < stop) {
      for (auto& m : msgs) {
        info.arrival = done++;
        auto d = dec.decode(info, m);
        sink += d.records.size();
      }
      now = cpu_ns();
    }
    best = std::min(best, static_cast<double>(now - start) / static_cast<double>(done));
  }
  if (sink == 0)
    std::printf("(no records)\n");
  return best;
}

} // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 0.3;
  std::string_view which = argc > 2 ? argv[2] : "both"; // or "fast", "slow" (for perf)
  auto meta = metadata();
  auto msgs = messages(1000);
  size_t bytes = 0;
  for (auto& m : msgs)
    bytes += m.size();

  simatic_decoder slow, fast;
  slow.set_fast_path(false);
  for (auto* dec : {&slow, &fast}) {
    auto d = dec->decode(message_info{"pcb_in", meta_topic, 0, 0}, meta);
    if (!d.metadata || !d.error.empty()) {
      std::fprintf(stderr, "metadata rejected: %s\n", d.error.c_str());
      return 1;
    }
  }
  // Both paths must agree before their speed means anything.
  message_info info{"pcb_in", data_topic, 1'795'615'590'000'000'000, 0};
  for (auto& m : msgs) {
    auto a = slow.decode(info, m);
    auto b = fast.decode(info, m);
    if (a.records != b.records || a.error != b.error || a.records.size() != 1 || !a.error.empty()) {
      std::fprintf(stderr, "paths disagree on %s\n", m.c_str());
      return 1;
    }
  }
  if (fast.paths().fast != msgs.size()) {
    std::fprintf(stderr, "the fast path took only %" PRIu64 " of %zu messages\n", fast.paths().fast,
                 msgs.size());
    return 1;
  }

  std::printf("%zu messages, %zu bytes on average, 17 values each\n", msgs.size(),
              bytes / msgs.size());
  double s = which != "fast" ? measure(slow, msgs, seconds, 5) : 0;
  double f = which != "slow" ? measure(fast, msgs, seconds, 5) : 0;
  if (s > 0)
    std::printf("slow path (nlohmann SAX): %8.0f ns/message\n", s);
  if (f > 0)
    std::printf("fast path (scanner):      %8.0f ns/message\n", f);
  if (s > 0 && f > 0)
    std::printf("ratio slow/fast:          %8.2f\n", s / f);
  return 0;
}
