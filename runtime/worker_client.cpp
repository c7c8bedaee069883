#include "runtime/worker_client.hpp"

#include "runtime/measure.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

extern char** environ;

namespace fabrik {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

std::string errno_text(const char* what) { return std::string{what} + ": " + std::strerror(errno); }

std::string signal_name(int sig) {
  if (const char* abbrev = sigabbrev_np(sig))
    return std::string{"SIG"} + abbrev;
  return "signal " + std::to_string(sig);
}

std::string duration_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0)
    return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

const char* kind_name(workflow_kind k) {
  return k == workflow_kind::process_input ? "process_input" : "fabrik";
}

/// The innermost frame of a faulthandler dump, preferring one inside `package`:
/// ` (at model.py:12 in predict)`; empty when the dump has no frame.
std::string where_from_dump(const std::string& dump, const std::filesystem::path& package) {
  std::string first, in_package;
  auto prefix = package.empty() ? std::string{} : package.string() + "/";
  size_t pos = 0;
  while (pos < dump.size()) {
    auto end = dump.find('\n', pos);
    if (end == std::string::npos)
      end = dump.size();
    std::string_view line{dump.data() + pos, end - pos};
    pos = end + 1;
    // faulthandler: `  File "/path/model.py", line 12 in predict`
    auto f = line.find("File \"");
    if (f == std::string_view::npos)
      continue;
    auto q = line.find('"', f + 6);
    auto l = line.find(", line ", q);
    if (q == std::string_view::npos || l == std::string_view::npos)
      continue;
    std::string file{line.substr(f + 6, q - f - 6)};
    auto rest = line.substr(l + 7);
    auto sp = rest.find(" in ");
    std::string lineno{rest.substr(0, sp)};
    std::string func = sp == std::string_view::npos ? "" : std::string{rest.substr(sp + 4)};
    bool inside = !prefix.empty() && file.rfind(prefix, 0) == 0;
    auto shown = inside ? file.substr(prefix.size()) : file;
    auto text = " (at " + shown + ":" + lineno + (func.empty() ? "" : " in " + func) + ")";
    if (first.empty())
      first = text;
    if (inside) {
      in_package = text;
      break;
    }
  }
  return in_package.empty() ? first : in_package;
}

/// The faulthandler part of a worker's stderr (from its first header line), if any.
std::string stack_dump(const std::string& err) {
  for (auto marker : {"Fatal Python error", "Thread 0x", "Current thread 0x"}) {
    auto p = err.find(marker);
    if (p != std::string::npos)
      return err.substr(p);
  }
  return {};
}

uint64_t ns_of(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1'000'000'000ull
         + static_cast<uint64_t>(tv.tv_usec) * 1000ull;
}

/// VmHWM of a live process, bytes; 0 when unreadable.
uint64_t peak_rss_of(pid_t pid) {
  auto path = "/proc/" + std::to_string(pid) + "/status";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[8192];
  auto n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  auto* p = std::strstr(buf, "VmHWM:");
  return p == nullptr ? 0 : std::strtoull(p + 6, nullptr, 10) * 1024;
}

std::vector<std::string> string_list(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (auto& s : j)
      if (s.is_string())
        out.push_back(s.get<std::string>());
  return out;
}

// Readers of reply headers that never throw: a worker that sends a wrong type is reported
// through the result's checks, not by an exception out of the client.
std::string string_or(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

bool flag(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const nlohmann::json& member(const nlohmann::json& j, const char* key) {
  static const nlohmann::json none;
  auto it = j.find(key);
  return it != j.end() ? *it : none;
}

template <class T>
T number_or(const nlohmann::json& j, const char* key, T fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<T>() : fallback;
}

} // namespace

const char* to_string(failure_kind k) {
  switch (k) {
    case failure_kind::none:
      return "none";
    case failure_kind::python_error:
      return "python error";
    case failure_kind::crashed:
      return "crashed";
    case failure_kind::exited:
      return "exited";
    case failure_kind::timeout:
      return "timeout";
    case failure_kind::refused:
      return "refused";
    case failure_kind::not_running:
      return "not running";
    case failure_kind::spawn_failed:
      return "spawn failed";
  }
  return "unknown";
}

std::filesystem::path default_worker_binary() {
  if (const char* env = std::getenv("FABRIK_WORKER"); env != nullptr && *env != '\0')
    return env;
  std::error_code err;
  auto self = std::filesystem::read_symlink("/proc/self/exe", err);
  if (err)
    return "fabrik-worker";
  // Beside fabrik in a build tree; PREFIX/libexec/fabrik once installed (cmake --install).
  auto installed = self.parent_path().parent_path() / "libexec" / "fabrik" / "fabrik-worker";
  if (!std::filesystem::exists(self.parent_path() / "fabrik-worker", err)
      && std::filesystem::exists(installed, err))
    return installed;
  return self.parent_path() / "fabrik-worker";
}

// -- the process ----------------------------------------------------------------------

struct worker_client::impl {
  worker_options opts;
  pid_t pid = -1;
  int sock = -1;
  int err = -1; // read end of the worker's stdout+stderr pipe
  bool alive = false;
  worker_info info;
  call_failure failure;
  std::string call_stderr; // stderr seen during the current call, last opts.stderr_tail bytes
  uint64_t cpu_total_ns = 0; // worker CPU time as of its last reply
  std::optional<cpu_peak_meter> meter; // the current call's, sampled while waiting on I/O
  // Replayed by restart():
  std::optional<load_request> last_load;
  std::optional<worker::model_artifact> model;

  ~impl() { stop(); }

  expected<void> spawn();
  void stop();
  void close_fds();
  void drain_stderr();
  bool wait_exit(std::chrono::milliseconds grace);
  void kill_and_reap(int* status, rusage* usage);
  error died(const char* op, clock_type::time_point start);
  error timed_out(const char* op, std::chrono::milliseconds timeout, clock_type::time_point start);
  enum class io_state { ready, timeout };
  io_state wait_io(short events, clock_type::time_point deadline);
  expected<void> send(const worker::outgoing_message& m, const char* op,
                      std::chrono::milliseconds timeout, clock_type::time_point start);
  expected<worker::message> receive(const char* op, std::chrono::milliseconds timeout,
                                    clock_type::time_point start);
  expected<worker::message> call(const worker::message_builder& b, const char* op,
                                 std::chrono::milliseconds timeout, call_report& report);
  expected<worker_info> do_hello(std::chrono::milliseconds timeout);
};

expected<void> worker_client::impl::spawn() {
  auto binary = opts.binary.empty() ? default_worker_binary() : opts.binary;
  if (::access(binary.c_str(), X_OK) != 0) {
    failure = {};
    failure.kind = failure_kind::spawn_failed;
    failure.operation = "start";
    failure.message = "no fabrik-worker executable at " + binary.string()
                      + " (build the fabrik-worker target, or set FABRIK_WORKER)";
    return make_error(ec::not_found, failure.message);
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return make_error(ec::io_error, errno_text("socketpair"));
  int ep[2];
  if (::pipe2(ep, O_CLOEXEC) != 0) {
    auto e = errno_text("pipe2");
    ::close(sv[0]);
    ::close(sv[1]);
    return make_error(ec::io_error, e);
  }
  // The child's ends move above fd 3 first, so that the dup2s below cannot clobber each
  // other; CLOEXEC everywhere keeps them out of workers spawned by other threads.
  int child_sock = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  int child_err = ::fcntl(ep[1], F_DUPFD_CLOEXEC, 10);
  ::close(sv[1]);
  ::close(ep[1]);

  std::vector<std::string> args = {binary.string(), "--memory-limit",
                                   std::to_string(opts.memory_limit), "--parent",
                                   std::to_string(::getpid())};
  if (opts.test_worker_protocol != 0) {
    args.push_back("--protocol-version");
    args.push_back(std::to_string(opts.test_worker_protocol));
  }
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, child_err, 1);
  posix_spawn_file_actions_adddup2(&fa, child_err, 2);
  posix_spawn_file_actions_adddup2(&fa, child_sock, worker::worker_socket_fd);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group: the terminal's Ctrl-C reaches the engine only, and a kill of the
  // group also ends whatever processes user code started. Signal state starts clean.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  pid_t child = -1;
  int rc = ::posix_spawn(&child, binary.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(child_sock);
  ::close(child_err);
  if (rc != 0) {
    ::close(sv[0]);
    ::close(ep[0]);
    failure = {};
    failure.kind = failure_kind::spawn_failed;
    failure.operation = "start";
    failure.message = "cannot start " + binary.string() + ": " + std::strerror(rc);
    return make_error(ec::io_error, failure.message);
  }
  pid = child;
  sock = sv[0];
  err = ep[0];
  ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
  ::fcntl(err, F_SETFL, ::fcntl(err, F_GETFL) | O_NONBLOCK);
  alive = true;
  cpu_total_ns = 0;
  return {};
}

void worker_client::impl::close_fds() {
  if (sock >= 0)
    ::close(sock);
  if (err >= 0)
    ::close(err);
  sock = err = -1;
}

void worker_client::impl::drain_stderr() {
  if (err < 0)
    return;
  char buf[4096];
  for (;;) {
    auto n = ::read(err, buf, sizeof buf);
    if (n > 0) {
      call_stderr.append(buf, static_cast<size_t>(n));
      if (call_stderr.size() > opts.stderr_tail) // keep the end: a crash dump is last
        call_stderr.erase(0, call_stderr.size() - opts.stderr_tail);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n == 0) { // every writer is gone
        ::close(err);
        err = -1;
      }
      return;
    }
  }
}

/// Waits up to `grace` for the worker to exit, without reaping it (its pid, and so its
/// process group id, stay reserved until kill_and_reap).
bool worker_client::impl::wait_exit(std::chrono::milliseconds grace) {
  auto deadline = clock_type::now() + grace;
  auto nap = 1ms;
  for (;;) {
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0)
      return true; // ECHILD: someone else reaped it (SIGCHLD ignored)
    if (si.si_pid == pid)
      return true;
    if (clock_type::now() >= deadline)
      return false;
    drain_stderr();
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, 20ms);
  }
}

/// SIGKILLs the worker's process group (the worker and whatever user code started) and
/// reaps the worker.
void worker_client::impl::kill_and_reap(int* status, rusage* usage) {
  if (pid <= 0) { // kill(-pid) of 0 or 1 would hit our own group or everything
    close_fds();
    alive = false;
    return;
  }
  ::kill(-pid, SIGKILL);
  int st = 0;
  rusage ru{};
  while (::wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {
  }
  if (status)
    *status = st;
  if (usage)
    *usage = ru;
  drain_stderr();
  close_fds();
  pid = -1;
  alive = false;
}

void worker_client::impl::stop() {
  if (pid <= 0)
    return;
  // Closing the socket is the stop signal: an idle worker exits at once.
  if (sock >= 0) {
    ::close(sock);
    sock = -1;
  }
  wait_exit(1000ms);
  kill_and_reap(nullptr, nullptr);
}

/// The worker closed the socket: it crashed or exited. Reaps it and says which.
error worker_client::impl::died(const char* op, clock_type::time_point start) {
  bool exited = wait_exit(2000ms); // false: it closed fd 3 but lives on; killed below
  int status = 0;
  rusage ru{};
  kill_and_reap(&status, &ru);
  failure.operation = op;
  failure.report.stats.wall = clock_type::now() - start;
  auto cpu = ns_of(ru.ru_utime) + ns_of(ru.ru_stime);
  failure.report.stats.cpu = std::chrono::nanoseconds{cpu > cpu_total_ns ? cpu - cpu_total_ns : 0};
  failure.report.stats.peak_cpu = meter ? meter->peak() : 0;
  failure.report.stderr_output = call_stderr;
  failure.traceback = stack_dump(call_stderr);
  std::string what;
  if (!exited) {
    failure.kind = failure_kind::exited;
    what = std::string{"worker closed its socket during "} + op + " and was killed";
  } else if (WIFSIGNALED(status)) {
    failure.kind = failure_kind::crashed;
    failure.signal = WTERMSIG(status);
    what = "worker killed by signal " + std::to_string(failure.signal) + " ("
           + signal_name(failure.signal) + ") during " + op;
  } else if (WIFEXITED(status)) {
    failure.kind = failure_kind::exited;
    failure.exit_status = WEXITSTATUS(status);
    what = "worker exited with status " + std::to_string(failure.exit_status) + " during " + op;
  } else {
    failure.kind = failure_kind::exited;
    what = std::string{"worker closed its socket during "} + op;
  }
  auto where = where_from_dump(failure.traceback,
                               last_load ? last_load->package_dir : std::filesystem::path{});
  if (!where.empty())
    what += where;
  else if (failure.kind == failure_kind::exited && !call_stderr.empty()) {
    // A worker that failed on its own says why on its last stderr line.
    auto text = call_stderr;
    while (!text.empty() && text.back() == '\n')
      text.pop_back();
    auto nl = text.rfind('\n');
    what += ": " + text.substr(nl == std::string::npos ? 0 : nl + 1);
  }
  failure.message = what;
  return make_error(ec::unavailable, what);
}

error worker_client::impl::timed_out(const char* op, std::chrono::milliseconds timeout,
                                     clock_type::time_point start) {
  failure.kind = failure_kind::timeout;
  failure.operation = op;
  failure.report.stats.peak_rss = pid > 0 ? peak_rss_of(pid) : 0;
  // Ask faulthandler for every thread's stack (SIGUSR1, registered by the bootstrap), so
  // the reason can say where the code hung; wait for the dump to settle, briefly.
  if (pid > 0 && ::kill(pid, SIGUSR1) == 0) {
    auto limit = clock_type::now() + 500ms;
    auto before = call_stderr.size();
    auto quiet_since = clock_type::now();
    while (clock_type::now() < limit && err >= 0) {
      pollfd p{err, POLLIN, 0};
      ::poll(&p, 1, 20);
      auto size = call_stderr.size();
      drain_stderr();
      if (call_stderr.size() != size)
        quiet_since = clock_type::now();
      else if (call_stderr.size() > before && clock_type::now() - quiet_since > 50ms)
        break;
    }
  }
  int status = 0;
  rusage ru{};
  kill_and_reap(&status, &ru);
  failure.signal = SIGKILL;
  failure.report.stats.wall = clock_type::now() - start;
  auto cpu = ns_of(ru.ru_utime) + ns_of(ru.ru_stime);
  failure.report.stats.cpu = std::chrono::nanoseconds{cpu > cpu_total_ns ? cpu - cpu_total_ns : 0};
  failure.report.stats.peak_cpu = meter ? meter->peak() : 0;
  failure.report.stderr_output = call_stderr;
  failure.traceback = stack_dump(call_stderr);
  failure.message = "timeout after " + duration_text(timeout) + " during " + op
                    + where_from_dump(failure.traceback,
                                      last_load ? last_load->package_dir : std::filesystem::path{})
                    + "; worker killed";
  return make_error(ec::unavailable, failure.message);
}

worker_client::impl::io_state worker_client::impl::wait_io(short events,
                                                           clock_type::time_point deadline) {
  for (;;) {
    if (meter)
      meter->sample();
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0)
      return io_state::timeout;
    pollfd fds[2] = {{sock, events, 0}, {err, POLLIN, 0}};
    // Woken at least every 100 ms, so that long calls get their CPU use sampled.
    int n = ::poll(fds, err >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (n < 0 && errno != EINTR)
      return io_state::ready; // let the socket call report the problem
    if (n <= 0)
      continue;
    if (err >= 0 && fds[1].revents != 0)
      drain_stderr();
    if (fds[0].revents != 0)
      return io_state::ready;
  }
}

expected<void> worker_client::impl::send(const worker::outgoing_message& m, const char* op,
                                         std::chrono::milliseconds timeout,
                                         clock_type::time_point start) {
  auto deadline = start + timeout;
  auto send_part = [&](std::string_view data) -> expected<void> {
    while (!data.empty()) {
      auto n = ::send(sock, data.data(), data.size(), MSG_NOSIGNAL);
      if (n >= 0) {
        data.remove_prefix(static_cast<size_t>(n));
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (wait_io(POLLOUT, deadline) == io_state::timeout)
          return timed_out(op, timeout, start);
      } else if (errno == EPIPE || errno == ECONNRESET) {
        return died(op, start);
      } else if (errno != EINTR) {
        return make_error(ec::io_error, errno_text("writing to the worker"));
      }
    }
    return {};
  };
  if (auto r = send_part(m.head); !r)
    return r;
  for (auto part : m.blob_parts)
    if (auto r = send_part(part); !r)
      return r;
  return {};
}

expected<worker::message> worker_client::impl::receive(const char* op,
                                                       std::chrono::milliseconds timeout,
                                                       clock_type::time_point start) {
  auto deadline = start + timeout;
  unsigned char prefix[worker::frame_prefix_size];
  size_t got = 0;
  std::string payload;
  size_t want = 0;
  bool have_prefix = false;
  for (;;) {
    char* dst = have_prefix ? payload.data() + got : reinterpret_cast<char*>(prefix) + got;
    size_t room = have_prefix ? want - got : sizeof prefix - got;
    if (room == 0) { // an empty payload
      break;
    }
    auto n = ::recv(sock, dst, room, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
      if (!have_prefix && got == sizeof prefix) {
        auto fp = worker::parse_frame_prefix(prefix);
        if (!fp) {
          failure.kind = failure_kind::refused;
          failure.operation = op;
          failure.message =
            "worker broke the protocol during " + std::string{op} + ": " + fp.err().message;
          kill_and_reap(nullptr, nullptr);
          return make_error(ec::parse_error, failure.message);
        }
        have_prefix = true;
        want = fp->first;
        payload.resize(want);
        got = 0;
        if (want == 0)
          break;
      } else if (have_prefix && got == want) {
        break;
      }
    } else if (n == 0) {
      return died(op, start);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (wait_io(POLLIN, deadline) == io_state::timeout)
        return timed_out(op, timeout, start);
    } else if (errno == ECONNRESET) {
      return died(op, start);
    } else if (errno != EINTR) {
      return make_error(ec::io_error, errno_text("reading from the worker"));
    }
  }
  auto m = worker::decode_message(static_cast<worker::message_type>(prefix[4]), std::move(payload));
  if (!m) {
    failure.kind = failure_kind::refused;
    failure.operation = op;
    failure.message =
      "worker broke the protocol during " + std::string{op} + ": " + m.err().message;
    kill_and_reap(nullptr, nullptr);
    return make_error(ec::parse_error, failure.message);
  }
  return m;
}

expected<worker::message> worker_client::impl::call(const worker::message_builder& b,
                                                    const char* op,
                                                    std::chrono::milliseconds timeout,
                                                    call_report& report) {
  failure = {};
  call_stderr.clear();
  if (!alive) {
    failure.kind = failure_kind::not_running;
    failure.operation = op;
    failure.message = std::string{"no worker process for "} + op + " (restart it)";
    return make_error(ec::unavailable, failure.message);
  }
  auto out = b.build();
  if (!out) {
    failure.kind = failure_kind::refused;
    failure.operation = op;
    failure.message = out.err().message;
    return out.err();
  }
  auto start = clock_type::now();
  meter.emplace(pid);
  drain_stderr(); // output from between calls is not this call's
  call_stderr.clear();
  if (auto r = send(*out, op, timeout, start); !r)
    return r.err();
  auto m = receive(op, timeout, start);
  if (!m)
    return m.err();
  drain_stderr();
  auto& h = m->header;
  report.logs = string_list(member(h, "logs"));
  report.logs_dropped = number_or<size_t>(h, "logs_dropped", 0);
  report.stderr_output = call_stderr;
  auto& stats = member(h, "stats");
  report.stats.wall = clock_type::now() - start;
  report.stats.worker_wall = std::chrono::nanoseconds{number_or<int64_t>(stats, "wall_ns", 0)};
  report.stats.cpu = std::chrono::nanoseconds{number_or<int64_t>(stats, "cpu_ns", 0)};
  report.stats.peak_rss = number_or<uint64_t>(stats, "peak_rss", 0);
  meter->sample();
  // A call too short for a whole interval has its average instead, by the worker's own
  // clocks: over a few ms /proc's 10 ms ticks would make noise of it.
  report.stats.peak_cpu = meter->has_interval() || report.stats.worker_wall.count() <= 0
                            ? meter->peak()
                            : static_cast<double>(report.stats.cpu.count())
                                / static_cast<double>(report.stats.worker_wall.count());
  cpu_total_ns = number_or<uint64_t>(stats, "cpu_total_ns", cpu_total_ns);
  if (m->type != worker::message_type::error)
    return m;

  failure.operation = op;
  failure.type = string_or(h, "type");
  failure.message = string_or(h, "message");
  failure.traceback = string_or(h, "traceback");
  failure.report = report;
  error e;
  if (flag(h, "protocol_error")) {
    failure.kind = failure_kind::refused;
    e = make_error(ec::parse_error, std::string{"worker refused a malformed "} + op
                                      + " request: " + failure.message);
  } else if (failure.type == "VersionMismatch") {
    failure.kind = failure_kind::refused;
    e = make_error(ec::version_mismatch, failure.message);
  } else {
    failure.kind = failure_kind::python_error;
    e =
      make_error(ec::invalid_argument, std::string{op} + " raised " + failure.type
                                         + (failure.message.empty() ? "" : ": " + failure.message));
  }
  if (flag(h, "exit")) { // the worker exits after this reply (MemoryError, refusal)
    if (!wait_exit(2000ms))
      failure.message += " (worker did not exit by itself)";
    kill_and_reap(nullptr, nullptr);
  }
  return e;
}

expected<worker_info> worker_client::impl::do_hello(std::chrono::milliseconds timeout) {
  worker::message_builder b{worker::message_type::hello};
  auto ours = opts.test_client_protocol != 0 ? opts.test_client_protocol : worker::protocol_version;
  b.header()["protocol"] = ours;
  call_report report;
  auto m = call(b, "hello", timeout, report);
  if (!m)
    return m.err();
  auto& h = m->header;
  worker_info wi;
  wi.protocol = number_or<uint32_t>(h, "protocol", 0);
  wi.pid = number_or<pid_t>(h, "pid", 0);
  wi.versions = worker::versions_from_json(h);
  if (m->type != worker::message_type::hello_reply || wi.protocol != ours) {
    failure.kind = failure_kind::refused;
    failure.operation = "hello";
    failure.message = "worker protocol version mismatch: the engine speaks version "
                      + std::to_string(ours) + ", the worker speaks version "
                      + std::to_string(wi.protocol);
    kill_and_reap(nullptr, nullptr);
    return make_error(ec::version_mismatch, failure.message);
  }
  info = wi;
  return wi;
}

// -- the client -----------------------------------------------------------------------

worker_client::worker_client(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

worker_client::worker_client(worker_client&&) noexcept = default;
worker_client& worker_client::operator=(worker_client&&) noexcept = default;
worker_client::~worker_client() = default;

expected<worker_client> worker_client::start(worker_options options) {
  auto p = std::make_unique<impl>();
  p->opts = std::move(options);
  if (auto r = p->spawn(); !r)
    return r.err();
  if (auto h = p->do_hello(p->opts.start_timeout); !h)
    return h.err();
  return worker_client{std::move(p)};
}

const worker_info& worker_client::info() const { return impl_->info; }

expected<worker_info> worker_client::hello(std::chrono::milliseconds timeout) {
  return impl_->do_hello(timeout);
}

expected<load_result> worker_client::load(load_request request, std::chrono::milliseconds timeout) {
  worker::message_builder b{worker::message_type::load};
  std::error_code ec_;
  auto dir = std::filesystem::absolute(request.package_dir, ec_);
  b.header() = {{"package_dir", dir.string()},
                {"entry", request.entry},
                {"kind", kind_name(request.kind)},
                {"params", request.params.is_null() ? nlohmann::json::object() : request.params}};
  request.package_dir = dir;
  impl_->last_load = std::move(request); // replayed by restart() even if this one times out
  load_result r;
  auto m = impl_->call(b, "load", timeout, r.report);
  if (!m)
    return m.err();
  r.functions = string_list(member(m->header, "functions"));
  return r;
}

expected<train_result> worker_client::train(const worker::dataset& data,
                                            std::chrono::milliseconds timeout) {
  if (auto ok = data.check(); !ok)
    return ok.err();
  worker::message_builder b{worker::message_type::train};
  b.header()["dataset"] = worker::encode_dataset(data, b);
  train_result r;
  auto m = impl_->call(b, "train", timeout, r.report);
  if (!m)
    return m.err();
  auto& meta = member(m->header, "model");
  auto format = worker::parse_model_format(string_or(meta, "format"));
  if (!format)
    return format.err();
  r.model.format = *format;
  r.model.trained_with = worker::versions_from_json(meta);
  r.model.bytes = std::string{m->blob()};
  return r;
}

expected<call_report> worker_client::load_model(worker::model_artifact model,
                                                std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (auto conflict = worker::version_conflict(model.trained_with, d.info.versions)) {
    d.failure = {};
    d.failure.kind = failure_kind::refused;
    d.failure.operation = "load_model";
    d.failure.message = *conflict;
    return make_error(ec::version_mismatch, *conflict);
  }
  worker::message_builder b{worker::message_type::predict};
  auto where = b.add_blob(model.bytes);
  where["format"] = worker::to_string(model.format);
  b.header()["model"] = std::move(where);
  call_report report;
  auto m = d.call(b, "load_model", timeout, report);
  if (!m)
    return m.err();
  d.model = std::move(model);
  return report;
}

expected<predict_result> worker_client::predict(const worker::dataset& samples,
                                                std::chrono::milliseconds timeout) {
  if (auto ok = samples.check(); !ok)
    return ok.err();
  worker::message_builder b{worker::message_type::predict};
  b.header()["samples"] = worker::encode_dataset(samples, b);
  predict_result r;
  auto m = impl_->call(b, "predict", timeout, r.report);
  if (!m)
    return m.err();
  r.batch = flag(m->header, "batch");
  auto blob = m->blob();
  auto outs = nlohmann::json::parse(blob.begin(), blob.end(), nullptr, false);
  if (outs.is_discarded() || !outs.is_array() || outs.size() != samples.rows())
    return make_error(ec::parse_error, "worker sent malformed predict outputs");
  r.outputs.reserve(outs.size());
  for (auto& o : outs)
    r.outputs.push_back(std::move(o));
  return r;
}

expected<process_result> worker_client::process_input(const nlohmann::json& data,
                                                      std::chrono::milliseconds timeout) {
  worker::message_builder b{worker::message_type::process_input};
  b.header()["data"] = data;
  process_result r;
  auto m = impl_->call(b, "process_input", timeout, r.report);
  if (!m)
    return m.err();
  auto blob = m->blob();
  auto out = nlohmann::json::parse(blob.begin(), blob.end(), nullptr, false);
  if (out.is_discarded() || !(out.is_null() || out.is_object()))
    return make_error(ec::parse_error, "worker sent a malformed process_input output");
  if (!out.is_null())
    r.output = std::move(out);
  return r;
}

expected<call_report> worker_client::update_parameters(nlohmann::json params,
                                                       std::chrono::milliseconds timeout) {
  worker::message_builder b{worker::message_type::update_parameters};
  b.header()["params"] = params;
  call_report report;
  auto m = impl_->call(b, "update_parameters", timeout, report);
  if (!m)
    return m.err();
  if (impl_->last_load)
    impl_->last_load->params = std::move(params);
  return report;
}

bool worker_client::alive() const { return impl_ && impl_->alive; }

pid_t worker_client::pid() const { return impl_ ? impl_->pid : -1; }

expected<void> worker_client::restart(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  d.stop();
  if (auto r = d.spawn(); !r)
    return r;
  if (auto h = d.do_hello(d.opts.start_timeout); !h)
    return h.err();
  if (d.last_load) {
    auto req = *d.last_load;
    if (auto r = load(std::move(req), timeout); !r)
      return r.err();
  }
  if (d.model) {
    auto model = *d.model;
    if (auto r = load_model(std::move(model), timeout); !r)
      return r.err();
  }
  return {};
}

void worker_client::stop() {
  if (impl_)
    impl_->stop();
}

const call_failure& worker_client::last_failure() const { return impl_->failure; }

} // namespace fabrik
