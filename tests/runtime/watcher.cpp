// The watched directory: complete *.zip files are reported once, partial ones never.

#include "runtime/watcher.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

using namespace fabrik;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using test_support::scratch_dir;
using test_support::write_file;

/// Collects what the watcher reports, by file name.
struct recorder {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::string> seen;

  dir_watcher::callback callback() {
    return [this](const fs::path& p) {
      std::lock_guard<std::mutex> g{m};
      seen.push_back(p.filename().string());
      cv.notify_all();
    };
  }
  /// Waits up to `limit` for `n` reports in all; returns what there is.
  std::vector<std::string> wait_for(size_t n, std::chrono::milliseconds limit = 5s) {
    std::unique_lock<std::mutex> g{m};
    cv.wait_for(g, limit, [&] { return seen.size() >= n; });
    return seen;
  }
  std::vector<std::string> now() {
    std::lock_guard<std::mutex> g{m};
    return seen;
  }
};

/// Sets a file's mtime `age` into the past, so a start scan counts it as complete.
void age_file(const fs::path& p, std::chrono::seconds age) {
  fs::last_write_time(p, fs::file_time_type::clock::now() - age);
}

std::unique_ptr<dir_watcher> start(const fs::path& dir, recorder& r,
                                   std::chrono::milliseconds settle = 300ms) {
  auto w = dir_watcher::start(dir, r.callback(), settle);
  if (!w)
    FAIL("cannot start the watcher: " << w.err().what());
  return std::move(*w);
}

using names = std::vector<std::string>;

} // namespace

TEST_CASE("files already there are reported at start, sorted", "[watcher]") {
  scratch_dir d{"watcher"};
  for (auto name : {"b.zip", "a.zip", "c.zip"}) {
    write_file(d.path() / name, "zip");
    age_file(d.path() / name, 60s);
  }
  recorder r;
  auto w = start(d.path(), r);
  CHECK(r.wait_for(3) == names{"a.zip", "b.zip", "c.zip"});
  CHECK(w->dir() == d.path());
}

TEST_CASE("a missing directory is created", "[watcher]") {
  scratch_dir d{"watcher"};
  recorder r;
  auto w = start(d.path() / "sub" / "flows", r);
  CHECK(fs::is_directory(d.path() / "sub" / "flows"));
}

TEST_CASE("a file is reported once it is closed, not while written", "[watcher]") {
  scratch_dir d{"watcher"};
  recorder r;
  auto w = start(d.path(), r);
  auto p = d.path() / "model.zip";
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "first", 5) == 5);
  // Longer than settle: an open file must not count as settled.
  std::this_thread::sleep_for(600ms);
  REQUIRE(::write(fd, "second", 6) == 6);
  std::this_thread::sleep_for(200ms);
  CHECK(r.now().empty());
  ::close(fd);
  CHECK(r.wait_for(1) == names{"model.zip"});
  std::this_thread::sleep_for(500ms); // nothing more comes
  CHECK(r.now() == names{"model.zip"});

  SECTION("rewriting it reports it again") {
    write_file(p, "third");
    CHECK(r.wait_for(2) == names{"model.zip", "model.zip"});
  }
}

TEST_CASE("a rename into place is reported, the partial file never", "[watcher]") {
  scratch_dir d{"watcher"};
  recorder r;
  auto w = start(d.path(), r);
  write_file(d.path() / "x.zip.part", "zip");
  fs::rename(d.path() / "x.zip.part", d.path() / "x.zip");
  CHECK(r.wait_for(1) == names{"x.zip"});

  SECTION("also from another directory") {
    scratch_dir other{"watcher"};
    write_file(other.path() / "y.zip", "zip");
    fs::rename(other.path() / "y.zip", d.path() / "y.zip");
    CHECK(r.wait_for(2) == names{"x.zip", "y.zip"});
  }
}

TEST_CASE("hidden files, other files and directories are ignored", "[watcher]") {
  scratch_dir d{"watcher"};
  write_file(d.path() / ".old.zip", "zip");
  age_file(d.path() / ".old.zip", 60s);
  recorder r;
  auto w = start(d.path(), r);
  write_file(d.path() / ".hidden.zip", "zip");
  write_file(d.path() / "notes.txt", "text");
  write_file(d.path() / "zip", "text");
  fs::create_directory(d.path() / "dir.zip");
  fs::rename(d.path() / ".hidden.zip", d.path() / ".renamed.zip");
  // A file that does count, written last: once it is reported the others have been seen.
  write_file(d.path() / "marker.zip", "zip");
  CHECK(r.wait_for(1) == names{"marker.zip"});
  std::this_thread::sleep_for(300ms);
  CHECK(r.now() == names{"marker.zip"});
}

TEST_CASE("a young file at start is reported only once it has settled", "[watcher]") {
  scratch_dir d{"watcher"};
  write_file(d.path() / "old.zip", "zip");
  age_file(d.path() / "old.zip", 60s);
  auto written = std::chrono::steady_clock::now();
  write_file(d.path() / "fresh.zip", "zip");
  recorder r;
  auto w = start(d.path(), r, 300ms);
  auto got = r.wait_for(2);
  CHECK(got == names{"old.zip", "fresh.zip"});
  // Not before settle has passed since it was written (less a coarse mtime tick).
  CHECK(std::chrono::steady_clock::now() - written >= 250ms);
  std::this_thread::sleep_for(500ms);
  CHECK(r.now().size() == 2);
}

TEST_CASE("a young file that is deleted before it settles is not reported", "[watcher]") {
  scratch_dir d{"watcher"};
  write_file(d.path() / "gone.zip", "zip");
  recorder r;
  auto w = start(d.path(), r, 300ms);
  fs::remove(d.path() / "gone.zip");
  std::this_thread::sleep_for(700ms);
  CHECK(r.now().empty());
}

TEST_CASE("deleting a file reports nothing", "[watcher]") {
  scratch_dir d{"watcher"};
  write_file(d.path() / "a.zip", "zip");
  age_file(d.path() / "a.zip", 60s);
  recorder r;
  auto w = start(d.path(), r);
  REQUIRE(r.wait_for(1) == names{"a.zip"});
  fs::remove(d.path() / "a.zip");
  write_file(d.path() / "marker.zip", "zip");
  CHECK(r.wait_for(2) == names{"a.zip", "marker.zip"});
  std::this_thread::sleep_for(300ms);
  CHECK(r.now().size() == 2);
}

TEST_CASE("the directory coming back is watched again", "[watcher]") {
  scratch_dir d{"watcher"};
  auto dir = d.path() / "flows";
  recorder r;
  auto w = start(dir, r);
  fs::remove_all(dir);
  std::this_thread::sleep_for(200ms);
  fs::create_directory(dir);
  // Retried every second; files written before the watch is back are found by its scan.
  write_file(dir / "back.zip", "zip");
  age_file(dir / "back.zip", 60s);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (r.now().empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  REQUIRE(r.now() == names{"back.zip"});
  write_file(dir / "later.zip", "zip");
  CHECK(r.wait_for(2) == names{"back.zip", "later.zip"});
}

TEST_CASE("stop is prompt and idempotent", "[watcher]") {
  scratch_dir d{"watcher"};
  write_file(d.path() / "young.zip", "zip"); // keeps a settle timer going
  recorder r;
  auto w = start(d.path(), r, 10s);
  auto before = std::chrono::steady_clock::now();
  w->stop();
  w->stop();
  CHECK(std::chrono::steady_clock::now() - before < 2s);
  write_file(d.path() / "after.zip", "zip");
  std::this_thread::sleep_for(200ms);
  CHECK(r.now().empty() == true);
  w.reset(); // the destructor after stop
}
