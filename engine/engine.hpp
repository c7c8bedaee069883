#pragma once
// Running a flow: the actor system, signals, periodic status, clean shutdown.
// CAF-free header: the CLI includes it.

#include "flows/flow.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace fabrik {

struct run_options {
  std::filesystem::path data_dir; ///< the one state directory
  int64_t status_interval = 10'000'000'000; ///< ns between status lines in the log; 0 = off
  std::optional<std::string> http; ///< --http HOST:PORT or off; else the flow's http.listen
  /// --node NAME: run only this node's actors of a split flow; empty: the whole flow here.
  std::string node;
};

/// Runs `f` until SIGINT or SIGTERM, then stops sources, lets in-flight batches finish
/// and closes storage. Returns the process exit code.
int run_flow(const flow& f, const run_options& opts);

} // namespace fabrik
