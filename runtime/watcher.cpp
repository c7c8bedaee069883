#include "runtime/watcher.hpp"

#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace fabrik {

namespace {

using steady = std::chrono::steady_clock;

// IN_MOVED_FROM and IN_DELETE only forget what we knew about a name; the *_SELF events
// tell that the directory itself went away.
constexpr uint32_t watch_mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
                                | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

/// `*.zip` and not hidden; case-insensitive like derived_name in runtime/package.cpp.
bool is_candidate(const std::string& name) {
  if (name.size() <= 4 || name[0] == '.')
    return false;
  auto ext = name.substr(name.size() - 4);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".zip";
}

/// What tells one version of a file from the next: a rewrite changes at least one of these.
struct signature {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const signature&) const = default;
};

/// A regular file's signature; nullopt when it is gone or not a regular file.
std::optional<signature> signature_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return std::nullopt;
  return signature{st.st_dev, st.st_ino, st.st_size,
                   int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec};
}

std::string errno_text(int err) { return std::strerror(err); }

} // namespace

struct dir_watcher::impl {
  fs::path dir;
  callback on_file;
  std::chrono::milliseconds settle;
  int inotify_fd = -1;
  int stop_fd = -1;
  int wd = -1; // -1 while the directory is gone
  std::thread thread;
  std::atomic<bool> stopping{false}; // no more callbacks once set
  std::mutex stop_mutex;
  bool stopped = false; // guarded by stop_mutex

  /// Files seen young at a scan: reported once their signature stays put for `settle`.
  struct young {
    signature sig;
    steady::time_point since; // when `sig` was last seen to change
  };
  std::map<fs::path, young> pending;
  /// What a scan reported, so the close event of that same write (the file closed between
  /// adding the watch and the scan) is not reported again. Cleared by the next event.
  std::map<fs::path, signature> scanned;
  steady::time_point next_retry{};

  ~impl() {
    if (inotify_fd >= 0)
      ::close(inotify_fd);
    if (stop_fd >= 0)
      ::close(stop_fd);
  }

  void report(const fs::path& p) {
    if (stopping)
      return;
    try {
      on_file(p);
    } catch (const std::exception& e) {
      spdlog::error("watcher {}: handling {} failed: {}", dir.string(), p.string(), e.what());
    } catch (...) {
      spdlog::error("watcher {}: handling {} failed", dir.string(), p.string());
    }
  }

  /// The complete zips already in the directory, by name; young ones go pending.
  std::vector<fs::path> scan() {
    std::vector<fs::path> names, ready;
    std::error_code err;
    for (fs::directory_iterator it{dir, err}, end; !err && it != end; it.increment(err))
      if (is_candidate(it->path().filename().string()))
        names.push_back(it->path());
    if (err)
      spdlog::warn("watcher: cannot list {}: {}", dir.string(), err.message());
    std::sort(names.begin(), names.end());
    auto now_wall = std::chrono::system_clock::now();
    auto now = steady::now();
    for (auto& p : names) {
      auto sig = signature_of(p);
      if (!sig)
        continue;
      auto mtime = std::chrono::system_clock::time_point{
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds{sig->mtime_ns})};
      // A future mtime (clock skew) counts as just modified.
      auto age = std::max(now_wall - mtime, std::chrono::system_clock::duration::zero());
      if (age >= settle) {
        scanned[p] = *sig;
        ready.push_back(p);
      } else {
        pending[p] = young{*sig, now - std::chrono::duration_cast<steady::duration>(age)};
      }
    }
    return ready;
  }

  void rescan() {
    for (auto& p : scan())
      report(p);
  }

  /// Reports pending files left alone for `settle`; returns when to look again.
  std::optional<steady::time_point> check_pending() {
    std::optional<steady::time_point> next;
    auto now = steady::now();
    for (auto it = pending.begin(); it != pending.end();) {
      auto sig = signature_of(it->first);
      if (!sig) { // deleted: nothing to report
        it = pending.erase(it);
        continue;
      }
      if (*sig != it->second.sig) {
        it->second = young{*sig, now};
      } else if (now - it->second.since >= settle) {
        auto p = it->first;
        it = pending.erase(it);
        scanned[p] = *sig;
        report(p);
        continue;
      }
      auto due = it->second.since + settle;
      next = next ? std::min(*next, due) : due;
      ++it;
    }
    return next;
  }

  void on_event(const inotify_event& ev) {
    if (ev.mask & IN_Q_OVERFLOW) {
      // Events were lost: look at everything again (consumers dedup by content).
      spdlog::warn("watcher {}: too many events at once; rescanning", dir.string());
      rescan();
      return;
    }
    if (ev.wd != wd)
      return;
    if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
      // A moved directory keeps its watch; we watch the path, so drop it.
      if (!(ev.mask & IN_IGNORED))
        ::inotify_rm_watch(inotify_fd, wd);
      wd = -1;
      spdlog::warn("watcher: {} went away; trying to watch it again every second", dir.string());
      next_retry = steady::now() + 1s;
      pending.clear();
      scanned.clear();
      return;
    }
    if ((ev.mask & IN_ISDIR) || ev.len == 0)
      return;
    std::string name = ev.name;
    if (!is_candidate(name))
      return;
    auto p = dir / name;
    pending.erase(p);
    if (ev.mask & (IN_MOVED_FROM | IN_DELETE)) {
      scanned.erase(p);
      return;
    }
    auto sig = signature_of(p);
    auto seen = scanned.find(p);
    bool already = seen != scanned.end() && sig && seen->second == *sig;
    if (seen != scanned.end())
      scanned.erase(seen);
    if (sig && !already)
      report(p);
  }

  void retry_watch() {
    int w = ::inotify_add_watch(inotify_fd, dir.c_str(), watch_mask);
    if (w < 0) {
      next_retry = steady::now() + 1s;
      return;
    }
    wd = w;
    spdlog::info("watcher: watching {} again", dir.string());
    rescan(); // files may have arrived while it was gone
  }

  void run(const std::vector<fs::path>& initial) {
    for (auto& p : initial)
      report(p);
    // Aligned for inotify_event, as inotify(7) shows.
    alignas(inotify_event) char buf[64 * 1024];
    for (;;) {
      auto next = check_pending();
      if (wd < 0)
        next = next ? std::min(*next, next_retry) : next_retry;
      int timeout = -1;
      if (next) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - steady::now()).count();
        timeout = static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
      }
      pollfd fds[2] = {{stop_fd, POLLIN, 0}, {inotify_fd, POLLIN, 0}};
      int n = ::poll(fds, 2, timeout);
      if (n < 0 && errno != EINTR) {
        spdlog::error("watcher {}: poll failed: {}", dir.string(), errno_text(errno));
        return;
      }
      if (fds[0].revents)
        return;
      if (n > 0 && (fds[1].revents & POLLIN)) {
        ssize_t len = ::read(inotify_fd, buf, sizeof buf);
        for (ssize_t off = 0; len > 0 && off < len;) {
          auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          on_event(*ev);
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
      if (wd < 0 && steady::now() >= next_retry)
        retry_watch();
    }
  }
};

dir_watcher::dir_watcher(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

expected<std::unique_ptr<dir_watcher>> dir_watcher::start(fs::path dir, callback on_file,
                                                          std::chrono::milliseconds settle) {
  std::error_code err;
  fs::create_directories(dir, err);
  if (err)
    return make_error(ec::io_error, "cannot create " + dir.string() + ": " + err.message());
  auto p = std::make_unique<impl>();
  p->dir = std::move(dir);
  p->on_file = std::move(on_file);
  p->settle = settle;
  p->inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (p->inotify_fd < 0)
    return make_error(ec::io_error,
                      "cannot watch " + p->dir.string() + ": inotify: " + errno_text(errno));
  p->stop_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (p->stop_fd < 0)
    return make_error(ec::io_error,
                      "cannot watch " + p->dir.string() + ": eventfd: " + errno_text(errno));
  // The watch comes before the scan, so nothing closed in between is missed.
  p->wd = ::inotify_add_watch(p->inotify_fd, p->dir.c_str(), watch_mask);
  if (p->wd < 0)
    return make_error(ec::io_error, "cannot watch " + p->dir.string() + ": " + errno_text(errno));
  // Scanned here, not on the thread, so "at start" means when start() returned.
  auto* raw = p.get();
  p->thread = std::thread{[raw, initial = raw->scan()] { raw->run(initial); }};
  return std::unique_ptr<dir_watcher>{new dir_watcher{std::move(p)}};
}

void dir_watcher::stop() {
  impl_->stopping = true;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->stop_fd, &one, sizeof one);
  // From inside a callback the thread ends once the callback returns; the destructor joins.
  if (impl_->thread.get_id() == std::this_thread::get_id())
    return;
  std::lock_guard<std::mutex> guard{impl_->stop_mutex};
  if (impl_->stopped)
    return;
  if (impl_->thread.joinable())
    impl_->thread.join();
  impl_->stopped = true;
}

dir_watcher::~dir_watcher() {
  if (impl_)
    stop();
}

const fs::path& dir_watcher::dir() const { return impl_->dir; }

} // namespace fabrik
