#pragma once
// Turns a validated flow into running actors and wires.

#include "actors/actors.hpp"
#include "flows/flow.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fabrik {

class registry;     // runtime/registry.hpp
class telemetry;    // actors/telemetry.hpp
class node_runtime; // actors/node.hpp

/// What a kind's spawn function gets.
struct spawn_context {
  caf::actor_system& sys;
  const flow& f;
  const actor_decl& decl;
  std::filesystem::path data_dir;         ///< the one state directory
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

struct running_actor {
  std::string name;
  const kind* k = nullptr;
  caf::actor handle;
};

/// Spawns every actor, sinks first, then consumers before their producers, so each spawn
/// gets live downstream handles. Flows are acyclic (the loader checks).
/// `keep`: actors already running (a reload's unchanged ones) that are wired in as they
/// are instead of being spawned.
/// `node`: when the flow runs split, this node: only its actors are spawned, and wires to
/// actors on other nodes (and workflows' remote training storage) get links instead.
expected<std::vector<running_actor>> spawn_graph(caf::actor_system& sys, const flow& f,
                                                 const std::filesystem::path& data_dir,
                                                 std::shared_ptr<registry> workflows,
                                                 std::shared_ptr<telemetry> telemetry = {},
                                                 const std::vector<running_actor>& keep = {},
                                                 node_runtime* node = nullptr);

} // namespace fabrik
