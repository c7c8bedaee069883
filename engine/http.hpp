#pragma once
// The engine's web server (cpp-httplib): the operator pages from web-static/, the JSON API
// of docs/api.md over engine_api, live updates as Server-Sent Events, and /metrics.

#include "core/error.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace fabrik {

class engine_api;
class telemetry;

struct http_options {
  std::string host = "127.0.0.1";
  int port = 8080; ///< 0: any free port (see http_server::port)
  /// Required for every change, and for reads unless public_status.
  std::string token;
  bool public_status = false;
  uint64_t max_upload = 64ull << 20;
  std::filesystem::path static_dir; ///< the pages; empty or missing: API only
};

/// The web pages beside the running executable (build/web-static, or ../web-static of
/// the source tree when run from build/), else /usr/share/fabrik/web-static; empty when
/// none is there.
std::filesystem::path default_static_dir();

/// The token of a data directory: DATA_DIR/http-token, made (32 random bytes, hex, mode
/// 0600) when missing; `made` tells the caller to show it once.
expected<std::string> data_dir_token(const std::filesystem::path& data_dir, bool& made);

class http_server {
public:
  /// Binds and starts serving on threads of its own. ec::unavailable when the address is
  /// taken (naming it).
  static expected<std::unique_ptr<http_server>> start(http_options opts, engine_api& api,
                                                      std::shared_ptr<telemetry> tel);
  /// Stops accepting, ends live event streams, joins.
  ~http_server();
  int port() const;

private:
  struct impl;
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace fabrik
