#pragma once
// Where workflow packages come in: the watched directory (and, later, uploads through the
// web API) add versions to the registry, and every workflow actor is told to look again.
// A broken zip is refused with its reason in the log and the status; it never replaces
// a stored version. CAF-free.

#include "core/status.hpp"
#include "runtime/registry.hpp"
#include "runtime/watcher.hpp"

#include <functional>
#include <memory>
#include <mutex>

namespace fabrik {

class workflow_hub {
public:
  /// Called after a version was added (on the watcher's or the uploader's thread).
  using added_fn = std::function<void(const package_version&)>;

  /// Starts watching `watch_dir` (created when missing).
  static expected<std::unique_ptr<workflow_hub>>
  start(std::shared_ptr<registry> reg, std::filesystem::path watch_dir, added_fn on_added);

  /// Validates and stores a zip (from the watched directory or an upload). `source` names
  /// it in messages and in the stored version.
  expected<add_package_result> add(std::string_view zip, const std::string& source);

  /// The hub as an actor-like status line: files seen, versions added, refused.
  actor_status status() const;

private:
  workflow_hub() = default;
  void on_file(const std::filesystem::path& file);
  void refuse(const std::string& source, const error& why);

  std::shared_ptr<registry> reg_;
  added_fn on_added_;
  std::unique_ptr<dir_watcher> watcher_; // last: stops before the rest goes
  mutable std::mutex mutex_;
  actor_status st_;
};

} // namespace fabrik
