#include "engine/control.hpp"

#include "core/time.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace fabrik {

namespace {

constexpr size_t max_connections = 16;
constexpr size_t max_request = 1 << 20;
// Replies carry runs with their logs; a bound only against a confused peer.
constexpr size_t max_reply = 64 << 20;

/// Owns a file descriptor.
class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~unique_fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

private:
  int fd_ = -1;
};

error os_error(const std::string& what, int err = errno) {
  return make_error(ec::io_error, what + ": " + std::strerror(err));
}

/// A socket address for `path`. sun_path holds 107 characters; a longer path goes through
/// its parent directory, held open: "/proc/self/fd/N/NAME".
struct unix_address {
  sockaddr_un addr{};
  socklen_t len = 0;
  unique_fd dir; // the parent directory (O_PATH): also what stale-file checks and unlink use
  std::string name;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

expected<unix_address> address_of(const fs::path& path) {
  unix_address a;
  a.addr.sun_family = AF_UNIX;
  auto parent = path.parent_path().empty() ? fs::path{"."} : path.parent_path();
  a.name = path.filename().string();
  a.dir = unique_fd{::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  if (!a.dir && errno == ENOENT)
    return make_error(ec::not_found, "no directory " + parent.string());
  if (!a.dir)
    return os_error("cannot open " + parent.string());
  auto target = path.string();
  if (target.size() >= sizeof a.addr.sun_path)
    target = "/proc/self/fd/" + std::to_string(a.dir.get()) + "/" + a.name;
  if (target.size() >= sizeof a.addr.sun_path)
    return make_error(ec::invalid_argument, "socket file name too long: " + a.name);
  std::memcpy(a.addr.sun_path, target.c_str(), target.size() + 1);
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size() + 1);
  return a;
}

/// Writes all of `data`; false when the peer is gone.
bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

/// One JSON line; invalid UTF-8 in strings (a path, a log line) must not throw.
std::string line_of(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

json error_reply(std::string message) { return json{{"error", std::move(message)}}; }

/// nlohmann's "[json.exception.parse_error.101] parse error at ..." without the tag.
std::string parse_message(const json::exception& e) {
  std::string_view m = e.what();
  if (m.starts_with("[json.exception.")) {
    if (auto close = m.find("] "); close != std::string_view::npos)
      m.remove_prefix(close + 2);
  }
  return std::string{m};
}

/// The reply to one request line.
json answer(const control_server::handler& h, const std::string& line) {
  json request;
  try {
    request = json::parse(line);
  } catch (const json::exception& e) {
    return error_reply("malformed request: " + parse_message(e));
  }
  if (!request.is_object())
    return error_reply("a request must be a JSON object");
  try {
    return h(request);
  } catch (const std::exception& e) {
    return error_reply(e.what());
  } catch (...) {
    return error_reply("the request failed");
  }
}

} // namespace

// -- server -------------------------------------------------------------------

struct control_server::impl {
  handler h;
  fs::path path;
  unix_address addr;
  ino_t ino = 0; // the socket file we bound, so we never unlink someone else's
  unique_fd listener;
  std::thread acceptor;

  struct connection {
    unique_fd fd; // closed only after its thread is joined, so shutdown never hits a reused fd
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::mutex mutex;
  std::list<connection> connections; // guarded by mutex
  bool stopping = false; // guarded by mutex

  void serve(connection& c) {
    std::string buf;
    char chunk[64 * 1024];
    for (;;) {
      auto nl = buf.find('\n');
      if (nl == std::string::npos) {
        if (buf.size() > max_request) {
          // The rest of the line would be read as requests; better to hang up.
          send_all(c.fd.get(), line_of(error_reply("request line over 1 MiB")));
          break;
        }
        auto n = ::recv(c.fd.get(), chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR)
          continue;
        if (n <= 0)
          break;
        buf.append(chunk, static_cast<size_t>(n));
        continue;
      }
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      if (line.size() > max_request) {
        send_all(c.fd.get(), line_of(error_reply("request line over 1 MiB")));
        break;
      }
      if (line.find_first_not_of(" \t") == std::string::npos)
        continue;
      if (!send_all(c.fd.get(), line_of(answer(h, line))))
        break;
    }
    // The peer sees the end now; the fd itself is closed when the thread is reaped.
    ::shutdown(c.fd.get(), SHUT_RDWR);
    c.done = true;
  }

  /// Joins and closes finished connections; the caller holds `mutex`.
  size_t reap() {
    size_t live = 0;
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->done) {
        it->thread.join();
        it = connections.erase(it);
      } else {
        ++live;
        ++it;
      }
    }
    return live;
  }

  void accept_loop() {
    for (;;) {
      unique_fd fd{::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC)};
      int err = errno;
      std::unique_lock<std::mutex> lock{mutex};
      if (stopping)
        return;
      if (!fd) {
        if (err == EINTR || err == ECONNABORTED)
          continue;
        spdlog::error("control socket {}: accept failed: {}", path.string(), std::strerror(err));
        if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
          return;
        // Out of descriptors or memory: back off instead of spinning.
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::milliseconds{200});
        continue;
      }
      if (reap() >= max_connections) {
        send_all(fd.get(), line_of(error_reply("too many control connections")));
        continue;
      }
      auto& c = connections.emplace_back();
      c.fd = std::move(fd);
      c.thread = std::thread{[this, &c] { serve(c); }};
    }
  }

  ~impl() {
    {
      std::lock_guard<std::mutex> guard{mutex};
      stopping = true;
      // shutdown(2) wakes the blocked accept and recv calls; close alone would not.
      if (listener)
        ::shutdown(listener.get(), SHUT_RDWR);
      for (auto& c : connections)
        ::shutdown(c.fd.get(), SHUT_RDWR);
    }
    if (acceptor.joinable())
      acceptor.join();
    // No new connections now; a handler still working delays this join.
    for (auto& c : connections)
      c.thread.join();
    connections.clear();
    struct stat st {};
    if (ino && ::fstatat(addr.dir.get(), addr.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0
        && st.st_ino == ino)
      ::unlinkat(addr.dir.get(), addr.name.c_str(), 0);
  }
};

namespace {

/// Removes `a`'s file when it is a socket nobody listens on any more.
expected<void> remove_stale(const unix_address& a, const fs::path& path) {
  struct stat st {};
  if (::fstatat(a.dir.get(), a.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return {};
  if (!S_ISSOCK(st.st_mode))
    return make_error(ec::io_error, path.string() + " exists and is not a socket");
  unique_fd probe{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (!probe)
    return os_error("socket");
  if (::connect(probe.get(), a.get(), a.len) == 0)
    return make_error(ec::io_error, "another process is listening on " + path.string());
  if (errno != ECONNREFUSED)
    return os_error("cannot check " + path.string());
  if (::unlinkat(a.dir.get(), a.name.c_str(), 0) != 0 && errno != ENOENT)
    return os_error("cannot remove the stale " + path.string());
  return {};
}

} // namespace

control_server::control_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

control_server::~control_server() = default;

expected<std::unique_ptr<control_server>> control_server::start(const fs::path& socket_path,
                                                                handler h) {
  auto p = std::make_unique<impl>();
  p->h = std::move(h);
  p->path = socket_path;
  auto a = address_of(socket_path);
  if (!a)
    return a.err();
  p->addr = std::move(*a);
  auto& addr = p->addr;
  p->listener = unique_fd{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (!p->listener)
    return os_error("socket");
  if (::bind(p->listener.get(), addr.get(), addr.len) != 0) {
    if (errno != EADDRINUSE)
      return os_error("cannot bind " + socket_path.string());
    if (auto ok = remove_stale(addr, socket_path); !ok)
      return ok.err();
    if (::bind(p->listener.get(), addr.get(), addr.len) != 0)
      return os_error("cannot bind " + socket_path.string());
  }
  // Until listen nobody can connect, so the umask's mode is never usable.
  struct stat st {};
  if (::fchmodat(addr.dir.get(), addr.name.c_str(), 0600, 0) != 0
      || ::fstatat(addr.dir.get(), addr.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    auto err = os_error("cannot restrict " + socket_path.string());
    ::unlinkat(addr.dir.get(), addr.name.c_str(), 0);
    return err;
  }
  p->ino = st.st_ino;
  if (::listen(p->listener.get(), 64) != 0)
    return os_error("cannot listen on " + socket_path.string()); // ~impl unlinks
  auto* raw = p.get();
  p->acceptor = std::thread{[raw] { raw->accept_loop(); }};
  return std::unique_ptr<control_server>{new control_server{std::move(p)}};
}

// -- client -------------------------------------------------------------------

expected<json> control_request(const fs::path& socket_path, const json& request,
                               std::chrono::milliseconds timeout) {
  auto dir = socket_path.parent_path().string();
  auto unavailable = [&] { return make_error(ec::unavailable, "no engine is running on " + dir); };
  auto timed_out = [&] {
    return make_error(ec::timeout, "no reply from the engine on " + dir + " within "
                                     + format_duration(timeout.count() * 1'000'000));
  };
  auto a = address_of(socket_path);
  if (!a && a.err().code == ec::not_found) // no data directory at all: no engine either
    return unavailable();
  if (!a)
    return a.err();
  unique_fd fd{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (!fd)
    return os_error("socket");
  // Bounds connect (a full backlog) and send on a Unix socket.
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (::connect(fd.get(), a->get(), a->len) != 0) {
    if (errno == ECONNREFUSED || errno == ENOENT)
      return unavailable();
    if (errno == EAGAIN || errno == EINPROGRESS)
      return timed_out();
    return os_error("cannot connect to " + socket_path.string());
  }
  if (!send_all(fd.get(), line_of(request))) {
    if (errno == EAGAIN)
      return timed_out();
    return make_error(ec::unavailable, "the engine on " + dir + " closed the connection");
  }
  std::string buf;
  char chunk[64 * 1024];
  for (;;) {
    if (auto nl = buf.find('\n'); nl != std::string::npos) {
      buf.resize(nl);
      break;
    }
    if (buf.size() > max_reply)
      return make_error(ec::parse_error, "the engine's reply is over 64 MiB");
    auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return timed_out();
    pollfd pfd{fd.get(), POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return os_error("poll");
    if (n == 0)
      return timed_out();
    auto got = ::recv(fd.get(), chunk, sizeof chunk, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return make_error(ec::unavailable, "the engine on " + dir + " closed the connection");
    buf.append(chunk, static_cast<size_t>(got));
  }
  try {
    return json::parse(buf);
  } catch (const json::exception& e) {
    return make_error(ec::parse_error, "malformed reply from the engine: " + parse_message(e));
  }
}

} // namespace fabrik
