#pragma once
// What a running engine answers, once for every way in: the control socket (`fabrik
// train`) and the web API (engine/http.cpp) call these same handlers. JSON in and out;
// docs/api.md describes every answer.

#include "engine/graph.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace fabrik {

class registry;
class telemetry;
class workflow_hub;
class node_runtime;

/// What the engine runs right now; a reload replaces it as a whole.
struct engine_view {
  std::shared_ptr<const flow> f;
  std::shared_ptr<const std::vector<running_actor>> actors;
};

/// An answer: an HTTP-style status and a JSON body ({"error": "..."} unless 2xx).
struct api_reply {
  int status = 200;
  nlohmann::json body;
  static api_reply error(int status, std::string message);
};

class engine_api {
public:
  engine_api(caf::actor_system& sys, std::shared_ptr<registry> reg, std::shared_ptr<telemetry> tel);

  /// What runs now (set at start and after each reload; read by every handler).
  void set_view(engine_view v);
  engine_view view() const;
  void set_hub(workflow_hub* hub) { hub_ = hub; }
  /// This process's node of a split flow (null: the whole flow runs here).
  void set_node(node_runtime* node) { node_ = node; }
  /// How POST /api/reload and the ingest changes apply a changed flow.
  void set_reloader(std::function<api_reply()> reload) { reload_ = std::move(reload); }

  /// The flow as a graph: name, actors (kind, role, settings with secrets masked), wires.
  api_reply flow_graph() const;
  /// Every actor's status (plus the watched directory's), or one actor's.
  api_reply actors() const;
  api_reply actor(const std::string& name) const;
  /// Every node of a split flow with its actors and links, asked of each node.
  api_reply nodes() const;
  /// Streams every storage holds, and the ones seen live (stored or predicted).
  api_reply streams() const;
  /// Records of a stream: from a storage in a time range (newest `limit`, oldest first),
  /// or, without a storage, the newest seen live.
  api_reply records(const std::string& stream, const std::string& storage, int64_t from, int64_t to,
                    uint64_t limit) const;
  /// Stored package versions and what each workflow actor serves.
  api_reply workflows() const;
  /// Stores and deploys an uploaded zip.
  api_reply upload(std::string_view zip, const std::string& source);
  /// Starts a run in workflow actor `actor` with an optional data selection (JSON object).
  api_reply train(const std::string& actor, const nlohmann::json& selection);
  api_reply run(uint64_t id) const;
  api_reply runs(const std::string& actor, size_t limit) const;
  /// Recent predictions (newest first) and class counts, of one workflow actor or all.
  api_reply predictions(const std::string& actor, size_t limit) const;
  /// Prometheus text exposition.
  std::string metrics() const;
  /// Reads the flow file and its fragment again and restarts what changed.
  api_reply reload();
  /// The ingest page: the sources of every kind that marks itself editable, those kinds'
  /// settings tables, the storages.
  api_reply ingest() const;
  /// Adds or replaces a source of an editable kind in the fragment (validated first), then
  /// reloads.
  api_reply put_source(const nlohmann::json& body);
  /// Pins workflow actor `actor` to a stored version (a version string or sha256 prefix),
  /// or back to the newest with null: a patch in the fragment, then a reload.
  api_reply deploy(const std::string& actor, const nlohmann::json& version);
  /// Removes a source the fragment defines, then reloads.
  api_reply delete_source(const std::string& name);

  /// The control socket's requests: {"op": "train" | "run" | "runs" | "versions" |
  /// "status", ...}; the reply body, with {"error": ...} for anything but 2xx.
  nlohmann::json handle(const nlohmann::json& request);

private:
  std::optional<running_actor> find(const std::string& name) const;
  std::vector<actor_status> statuses() const;
  /// Writes `fragment` as the flow's local file when the flow loads with it; else 400.
  api_reply write_fragment(const engine_view& v, const std::string& fragment);

  caf::actor_system& sys_;
  std::shared_ptr<registry> reg_;
  workflow_hub* hub_ = nullptr;
  std::atomic<node_runtime*> node_ = nullptr;
  std::shared_ptr<telemetry> tel_;
  std::function<api_reply()> reload_;
  mutable std::mutex mutex_;
  engine_view view_;
};

} // namespace fabrik
