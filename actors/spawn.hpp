#pragma once
// What a kind's spawn function gets (flows/kind.hpp): the actor system, the flow, the
// actor's declaration and settings, its downstream consumers, and the node's services.

#include "actors/actors.hpp"
#include "flows/flow.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik {

class registry; // runtime/registry.hpp
class telemetry; // core/telemetry.hpp

/// What a kind's spawn function gets.
struct spawn_context {
  caf::actor_system& sys;
  const flow& f;
  const actor_decl& decl;
  std::filesystem::path data_dir; ///< the one state directory
  std::vector<consumer_actor> downstream; ///< wired consumers, in wire order
  std::string node = "local";
  /// Actors spawned so far by name (every sink is spawned before any other actor, so a
  /// workflow finds the storage it trains from); an invalid handle when unknown.
  std::function<caf::actor(std::string_view)> lookup;
  /// Workflow packages, models and runs of this data directory (DATA_DIR/registry).
  std::shared_ptr<registry> workflows;
  /// Recent values and prediction statistics for the web UI and /metrics (may be null).
  std::shared_ptr<class telemetry> live;

  /// DATA_DIR/SUBDIR/ACTOR: where this actor keeps its state.
  std::filesystem::path state_dir(std::string_view subdir) const;
  /// fabrik-FLOW-NODE-ACTOR: stable across restarts (persistent sessions depend on it).
  std::string client_id() const;
};

} // namespace fabrik
