#pragma once
// The watched workflows directory: reports every workflow zip that is complete, never one
// that is still being written. Linux inotify; CAF-free (the engine, the tests).

#include "core/error.hpp"

#include <filesystem>
#include <functional>
#include <memory>

namespace fabrik {

/// Watches one directory (not its subdirectories) on a thread of its own and calls
/// `on_file` with the path of every `*.zip` (not hidden: no leading '.') that is complete:
/// at start for those already there, then each time one is closed after writing
/// (IN_CLOSE_WRITE) or moved or renamed into the directory (IN_MOVED_TO). A file that was
/// modified less than `settle` ago at the start scan is reported only once it has been left
/// alone for `settle` (a copy may be going on). Deleting a file reports nothing.
/// `on_file` runs on the watcher's thread, one call at a time.
class dir_watcher {
public:
  using callback = std::function<void(const std::filesystem::path&)>;

  /// Creates `dir` when missing. Errors name the directory (ec::io_error).
  static expected<std::unique_ptr<dir_watcher>>
  start(std::filesystem::path dir, callback on_file,
        std::chrono::milliseconds settle = std::chrono::milliseconds{2000});

  /// Stops the thread (waits for a running callback); idempotent.
  void stop();
  ~dir_watcher();

  const std::filesystem::path& dir() const;

private:
  struct impl;
  explicit dir_watcher(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace fabrik
