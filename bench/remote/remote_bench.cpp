// bench/remote: one wire in-process versus the same wire across two nodes (two processes
// on loopback, the real link and node actor), in the same run. Reports the hop latency
// (send to arrival at the consumer, one record per batch, paced so nothing queues) and the
// batched throughput (batches of R records, 4 unanswered per wire, as an emitter sends).
// See bench/remote/README.md.

#include "actors/actors.hpp"
#include "actors/node.hpp"
#include "engine/scheduler.hpp"
#include "flows/flow.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace fabrik;
namespace fs = std::filesystem;

namespace {

// CLOCK_MONOTONIC is one clock for every process of the machine: a send time taken in
// one process and an arrival time in another compare.
int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// CPU time of this whole process so far (every thread, user and system), in seconds.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

struct sink_state {
  uint64_t warm_seen = 0; ///< warm-up records arrived (not measured)
  int round = 0; ///< rounds measured so far
  double cpu_at_first = -1; ///< this process's CPU time when the round's first batch arrived
  std::vector<int64_t> latency; ///< per batch: arrival - send time of its first record
  uint64_t records = 0;
  int64_t first_sent = INT64_MAX, last_arrival = 0;
};

/// The consumer at the end of the wire: takes `warm` records unmeasured (then writes
/// OUT.warm), then measures rounds of `expect` records each, writing each round's figures
/// to OUT.ROUND ("p50_us p99_us records seconds cpu_seconds"; the CPU time of this process
/// from the round's first arrival on). With `work_ns`, it is busy that long with each
/// batch, as a consumer that does something with the records is.
caf::behavior sink(caf::stateful_actor<sink_state>* self, uint64_t warm, uint64_t expect,
                   fs::path out, int64_t work_ns) {
  if (warm == 0)
    std::ofstream{out.string() + ".warm"};
  return {[=](const record_batch& b) -> uint64_t {
    for (auto until = mono_ns() + work_ns; work_ns > 0 && mono_ns() < until;)
      ; // the consumer's own work: the CPU is busy, as it would be
    auto now = mono_ns();
    auto& s = self->state;
    if (s.warm_seen < warm) {
      if ((s.warm_seen += b.records.size()) >= warm)
        std::ofstream{out.string() + ".warm"};
      return b.records.size();
    }
    if (s.cpu_at_first < 0)
      s.cpu_at_first = cpu_seconds();
    if (!b.records.empty()) {
      auto sent = std::get<int64_t>(b.records.front().fields.front().v);
      s.latency.push_back(now - sent);
      s.first_sent = std::min(s.first_sent, sent);
    }
    s.records += b.records.size();
    s.last_arrival = now;
    if (s.records >= expect) {
      auto l = s.latency;
      std::sort(l.begin(), l.end());
      auto pct = [&](double p) {
        return l[std::min(l.size() - 1, size_t(p * double(l.size())))] / 1e3;
      };
      auto name = out.string() + "." + std::to_string(s.round++);
      std::ofstream f{name + ".tmp"};
      f << pct(0.5) << " " << pct(0.99) << " " << s.records << " "
        << double(s.last_arrival - s.first_sent) / 1e9 << " " << cpu_seconds() - s.cpu_at_first
        << "\n";
      f.close();
      fs::rename(name + ".tmp", name);
      s.cpu_at_first = -1;
      s.latency.clear();
      s.records = 0;
      s.first_sent = INT64_MAX;
      s.last_arrival = 0;
    }
    return b.records.size();
  }};
}

struct driver_state {
  int sent = 0, in_flight = 0;
};

/// Sends `n` batches of `records` records to `target`: with `pace_ns`, one batch every
/// pace_ns; else keeping `window` batches unanswered.
caf::behavior driver(caf::stateful_actor<driver_state>* self, caf::actor target, int n, int records,
                     int window, int64_t pace_ns) {
  auto send_one = [=] {
    auto& s = self->state;
    record_batch b;
    auto t = mono_ns();
    for (int i = 0; i < records; ++i)
      b.records.push_back({"bench/wire",
                           t,
                           t,
                           uint64_t(s.sent) * records + i,
                           quality::good,
                           {{"t", t}, {"x", double(i)}}});
    ++s.sent;
    ++s.in_flight;
    self->request(target, caf::infinite, std::move(b)).then([=](uint64_t) {
      --self->state.in_flight;
      if (pace_ns == 0)
        self->send(self, tick_atom::value);
    });
  };
  self->send(self, tick_atom::value);
  return {[=](tick_atom) {
    auto& s = self->state;
    if (pace_ns > 0) {
      if (s.sent < n) {
        send_one();
        self->delayed_send(self, std::chrono::nanoseconds{pace_ns}, tick_atom::value);
      }
      return;
    }
    while (s.sent < n && s.in_flight < window)
      send_one();
  }};
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool wait_for(const fs::path& p, int seconds) {
  for (int i = 0; i < seconds * 100; ++i) {
    if (fs::exists(p))
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  return false;
}

struct figures {
  double p50_us = 0, p99_us = 0, records = 0, seconds = 0, cpu = 0;
  double cpu_a = 0; ///< two nodes: node a's share of `cpu` (the rest is node b's)
};
/// What a sink wrote: its latency figures or one round's throughput figures.
figures read_figures(const fs::path& file) {
  figures f;
  std::ifstream{file} >> f.p50_us >> f.p99_us >> f.records >> f.seconds >> f.cpu;
  return f;
}

struct params {
  int latency_batches = 2000;
  int batches = 20000; ///< per round
  int rounds = 5; ///< in-process and two nodes take turns; the median ratio is the result
  int records = 100;
  int window = 4; ///< unanswered batches per wire (an emitter's max_in_flight, default 4)
  int warmup = -1; ///< batches sent through each wire unmeasured first (-1: as many as measured)
  bool pin = false; ///< node a on CPU 0, node b on CPU 1: two machines of one core each
  /// After the first round only the cross-node wire runs (its ratios use the first
  /// in-process figure): for a profiler attached to the nodes, which then sees the link alone.
  bool only_remote = false;
  /// Nanoseconds the consumer works on each throughput batch (0: it only counts them).
  int64_t consumer_ns = 0;
};

/// Pins this process (the threads it starts from now on) to one CPU.
void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0)
    std::perror("remote_bench: sched_setaffinity");
}

std::optional<flow> load(const fs::path& file) {
  std::vector<diagnostic> diags;
  std::ifstream in{file};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  return load_flow_text(text, file, diags);
}

/// Node b: the two sinks, published; exits once both wrote their figures.
int serve(const fs::path& dir, const params& p) {
  auto f = load(dir / "flow.yaml");
  if (!f)
    return 2;
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::fabrik>();
  tune_scheduler(cfg); // as fabrik run does
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto lat = sys.spawn(sink, 0, uint64_t(p.latency_batches), dir / "remote-latency", int64_t{0});
  auto thr = sys.spawn(sink, uint64_t(p.warmup) * p.records, uint64_t(p.batches) * p.records,
                       dir / "remote-throughput", p.consumer_ns);
  auto node = node_runtime::start(
    sys, *f, "b", dir / "b",
    [=](const std::string& name) {
      return name == "lat" ? lat : name == "thr" ? thr : caf::actor{};
    },
    [=] {
      return std::vector<node_runtime::named_actor>{{"lat", "sink", lat, {}},
                                                    {"thr", "sink", thr, {}}};
    });
  if (!node)
    return 2;
  wait_for(dir / "remote-latency.0", 600);
  wait_for(dir / ("remote-throughput." + std::to_string(p.rounds - 1)), 600);
  (*node)->stop();
  caf::anon_send_exit(lat, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(thr, caf::exit_reason::user_shutdown);
  std::fflush(stdout);
  std::_Exit(0); // CAF 0.17's middleman may not shut down while the peer is connected
}

} // namespace

int main(int argc, char** argv) {
  params p;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::optional<fs::path> serve_dir;
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    if (args[i] == "--serve")
      serve_dir = args[i + 1];
    else if (args[i] == "--latency-batches")
      p.latency_batches = std::stoi(args[i + 1]);
    else if (args[i] == "--batches")
      p.batches = std::stoi(args[i + 1]);
    else if (args[i] == "--rounds")
      p.rounds = std::max(1, std::stoi(args[i + 1]));
    else if (args[i] == "--records")
      p.records = std::stoi(args[i + 1]);
    else if (args[i] == "--warmup")
      p.warmup = std::stoi(args[i + 1]);
    else if (args[i] == "--window")
      p.window = std::stoi(args[i + 1]);
    else if (args[i] == "--pin")
      p.pin = args[i + 1] == "yes";
    else if (args[i] == "--only-remote")
      p.only_remote = args[i + 1] == "yes";
    else if (args[i] == "--consumer-ns")
      p.consumer_ns = std::stoll(args[i + 1]);
    else {
      std::fprintf(
        stderr, "usage: remote_bench [--latency-batches N] [--batches N] [--rounds K] [--records "
                "R] [--window W] [--warmup N] [--pin yes] [--only-remote yes] [--consumer-ns N]\n");
      return 1;
    }
  }
  if (p.warmup < 0)
    p.warmup = p.batches;
  if (p.pin)
    pin_to(serve_dir ? 1 : 0);
  if (serve_dir)
    return serve(*serve_dir, p);

  char tmpl[] = "/tmp/fabrik-remote-bench-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  std::ofstream{dir / "flow.yaml"}
    << "name: bench\nnodes:\n  a: {listen: \"127.0.0.1:" << free_port()
    << "\"}\n  b: {listen: \"127.0.0.1:" << free_port()
    << "\"}\nactors:\n  lat: {kind: storage, on: b}\n  thr: {kind: storage, on: b}\n";
  auto f = load(dir / "flow.yaml");
  if (!f) {
    std::fprintf(stderr, "remote_bench: the bench flow does not load\n");
    return 2;
  }
  pid_t child = ::fork();
  if (child == 0) {
    std::vector<std::string> a{argv[0],
                               "--serve",
                               dir.string(),
                               "--latency-batches",
                               std::to_string(p.latency_batches),
                               "--batches",
                               std::to_string(p.batches),
                               "--rounds",
                               std::to_string(p.rounds),
                               "--records",
                               std::to_string(p.records),
                               "--pin",
                               p.pin ? "yes" : "no",
                               "--warmup",
                               std::to_string(p.warmup),
                               "--consumer-ns",
                               std::to_string(p.consumer_ns)};
    std::vector<char*> av;
    for (auto& s : a)
      av.push_back(s.data());
    av.push_back(nullptr);
    ::execv("/proc/self/exe", av.data());
    std::_Exit(127);
  }
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::fabrik>();
  tune_scheduler(cfg); // as fabrik run does
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  const int64_t pace = 1'000'000; // 1 ms between latency probes: nothing queues
  // In process: the same driver and sink, wired directly.
  auto local_lat =
    sys.spawn(sink, 0, uint64_t(p.latency_batches), dir / "local-latency", int64_t{0});
  auto local_thr = sys.spawn(sink, uint64_t(p.warmup) * p.records, uint64_t(p.batches) * p.records,
                             dir / "local-throughput", p.consumer_ns);
  sys.spawn(driver, local_lat, p.latency_batches, 1, 1, pace);
  wait_for(dir / "local-latency.0", 600);
  sys.spawn(driver, local_thr, p.warmup, p.records, p.window, 0);
  wait_for(dir / "local-throughput.warm", 600);
  // Across nodes: through the link (spool, then the node actor of process b).
  auto node = node_runtime::start(
    sys, *f, "a", dir / "a", [](const std::string&) { return caf::actor{}; },
    [] { return std::vector<node_runtime::named_actor>{}; });
  if (!node)
    return 2;
  auto lat = (*node)->remote(*f->find("lat"));
  auto thr = (*node)->remote(*f->find("thr"));
  if (!lat || !thr)
    return 2;
  caf::scoped_actor self{sys};
  for (bool up = false; !up;) { // measure the wire, not the first connection
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
    self->request(*lat, std::chrono::seconds{1}, status_atom::value)
      .receive([&](const actor_status& st) { up = st.state == "connected"; }, [](caf::error&) {});
  }
  sys.spawn(driver, *lat, p.latency_batches, 1, 1, pace);
  wait_for(dir / "remote-latency.0", 600);
  // A wire that has run a while is measured, not one that starts (new spool pages, TCP
  // windows that still grow).
  sys.spawn(driver, *thr, p.warmup, p.records, p.window, 0);
  wait_for(dir / "remote-throughput.warm", 600);
  // The rounds take turns, so a neighbour's load on this shared machine falls on both.
  std::vector<figures> local, remote;
  for (int r = 0; r < p.rounds; ++r) {
    auto round = "." + std::to_string(r);
    if (r > 0 && p.only_remote) {
      local.push_back(local.front());
    } else {
      sys.spawn(driver, local_thr, p.batches, p.records, p.window, 0);
      wait_for(dir / ("local-throughput" + round), 600);
      local.push_back(read_figures(dir / ("local-throughput" + round)));
    }
    auto cpu_before = cpu_seconds();
    sys.spawn(driver, *thr, p.batches, p.records, p.window, 0);
    wait_for(dir / ("remote-throughput" + round), 600);
    auto cpu_sender = cpu_seconds() - cpu_before;
    remote.push_back(read_figures(dir / ("remote-throughput" + round)));
    remote.back().cpu_a = cpu_sender;
    remote.back().cpu += cpu_sender; // both processes
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  auto local_hop = read_figures(dir / "local-latency.0");
  auto remote_hop = read_figures(dir / "remote-latency.0");
  std::printf("one wire, %d probes of 1 record (1 ms apart); %d rounds of %d batches of %d "
              "records, %d in flight, after %d unmeasured%s",
              p.latency_batches, p.rounds, p.batches, p.records, p.window, p.warmup,
              p.pin ? "; one CPU per node" : "");
  if (p.consumer_ns > 0)
    std::printf("; the consumer works %lld ns a batch", static_cast<long long>(p.consumer_ns));
  std::printf("\n");
  std::printf("%-12s %10s %10s\n", "hop", "p50 (us)", "p99 (us)");
  for (auto& [name, x] : {std::pair{"in-process", local_hop}, std::pair{"two nodes", remote_hop}})
    std::printf("%-12s %10.1f %10.1f\n", name, x.p50_us, x.p99_us);
  std::printf("%-6s %16s %16s %7s %25s\n", "round", "in-process rec/s", "two nodes rec/s", "ratio",
              "CPU ns/rec (in-process; two nodes: a + b)");
  std::vector<double> ratios;
  auto rate = [](const figures& x) { return x.records / x.seconds; };
  for (int r = 0; r < p.rounds; ++r) {
    ratios.push_back(rate(remote[r]) / rate(local[r]));
    auto ns = [](double cpu, const figures& x) { return cpu / x.records * 1e9; };
    std::printf("%-6d %16.0f %16.0f %6.2fx %14.0f %10.0f = %3.0f + %3.0f\n", r + 1, rate(local[r]),
                rate(remote[r]), ratios.back(), ns(local[r].cpu, local[r]),
                ns(remote[r].cpu, remote[r]), ns(remote[r].cpu_a, remote[r]),
                ns(remote[r].cpu - remote[r].cpu_a, remote[r]));
  }
  auto sorted = ratios;
  std::sort(sorted.begin(), sorted.end());
  std::printf("cross-node hop p50 %.3f ms (target <= 0.5); throughput %.2fx in-process, the "
              "median of %d rounds (%.2f-%.2f; target >= 0.5)\n",
              remote_hop.p50_us / 1e3, sorted[sorted.size() / 2], p.rounds, sorted.front(),
              sorted.back());
  (*node)->stop();
  std::fflush(stdout);
  std::error_code ec;
  fs::remove_all(dir, ec);
  std::_Exit(0); // see serve()
}
