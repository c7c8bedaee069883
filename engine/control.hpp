#pragma once
// The local control socket: `fabrik train` (and later the web API) ask a running engine to
// do things through DATA_DIR/control.sock, a Unix stream socket only its owner may use
// (mode 0600). One JSON object per line each way: a request, then its reply. CAF-free:
// the engine passes a handler that does the work.

#include "core/error.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>

namespace fabrik {

/// Serves requests on a Unix socket until destroyed. Each connection gets a thread of its
/// own (at most 16 at once; more are refused with an error reply) and may carry several
/// requests. A request that is not a JSON object, or a line over 1 MiB, gets
/// {"error": "..."}; so does a handler that throws. The handler may block.
class control_server {
public:
  using handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  /// Binds `socket_path` (replacing a stale socket file left by a dead engine; the caller
  /// holds the data directory's lock) with mode 0600. Paths longer than sun_path work.
  static expected<std::unique_ptr<control_server>> start(const std::filesystem::path& socket_path,
                                                         handler h);
  /// Stops accepting, closes every connection, joins the threads, removes the socket file.
  ~control_server();

private:
  struct impl;
  explicit control_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Sends `request` to the server at `socket_path` and returns its reply. ec::unavailable
/// ("no engine is running on DATA_DIR") when nothing listens there; ec::timeout when no
/// reply comes within `timeout`.
expected<nlohmann::json> control_request(const std::filesystem::path& socket_path,
                                         const nlohmann::json& request,
                                         std::chrono::milliseconds timeout);

} // namespace fabrik
