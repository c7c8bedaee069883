#pragma once
// Turns a validated flow into running actors and wires.

#include "actors/spawn.hpp"
#include "flows/flow.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fabrik {

class registry; // runtime/registry.hpp
class telemetry; // core/telemetry.hpp
class node_runtime; // actors/node.hpp

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
expected<std::vector<running_actor>>
spawn_graph(caf::actor_system& sys, const flow& f, const std::filesystem::path& data_dir,
            std::shared_ptr<registry> workflows, std::shared_ptr<telemetry> telemetry = {},
            const std::vector<running_actor>& keep = {}, node_runtime* node = nullptr);

} // namespace fabrik
