#pragma once
// The requests a running engine answers: from `fabrik train` through the control socket
// today, from the web API later. One handler per operation, JSON in and out.

#include "actors/graph.hpp"

#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

namespace fabrik {

class registry;
class workflow_hub;

struct api_context {
  caf::actor_system& sys;
  const std::vector<running_actor>& actors;
  std::shared_ptr<registry> reg;
  workflow_hub* hub = nullptr; ///< null when the flow has no workflow actor
};

/// {"op": "train", "actor": A} -> {"run": ID}: starts a training run in workflow actor A.
/// {"op": "run", "id": ID} -> {"run": the run as registry's to_json makes it}.
/// {"op": "runs", "actor"?: A, "limit"?: N} -> {"runs": [...]}, newest first.
/// {"op": "versions", "name"?: NAME} -> {"versions": [...]}.
/// {"op": "status"} -> {"actors": [{name, kind, state, in, out, errors, last_error, ...}]}.
/// Anything else, or a failure: {"error": "what went wrong"}.
nlohmann::json handle_request(api_context& ctx, const nlohmann::json& request);

} // namespace fabrik
