#include "engine/graph.hpp"

#include "actors/node.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <map>

namespace fabrik {

expected<std::vector<running_actor>>
spawn_graph(caf::actor_system& sys, const flow& f, const std::filesystem::path& data_dir,
            std::shared_ptr<registry> workflows, std::shared_ptr<telemetry> telemetry,
            const std::vector<running_actor>& keep, node_runtime* node) {
  std::map<std::string, caf::actor, std::less<>> spawned;
  std::vector<running_actor> result;
  auto elsewhere = [&](const actor_decl& d) { return node && d.node != node->name(); };
  // A running actor of this node, or the link to one on another node.
  auto handle = [&](std::string_view name) -> caf::actor {
    if (auto it = spawned.find(name); it != spawned.end())
      return it->second;
    auto* d = f.find(name);
    if (!d || !elsewhere(*d))
      return {};
    auto link = node->remote(*d);
    if (!link) {
      spdlog::error("{}", link.err().message);
      return {};
    }
    spawned.emplace(d->name, *link);
    return *link;
  };
  // Depth-first from every actor: an actor is spawned once all its consumers are.
  std::function<expected<void>(const actor_decl&)> visit;
  visit = [&](const actor_decl& decl) -> expected<void> {
    if (spawned.count(decl.name) || elsewhere(decl))
      return {};
    for (auto& k : keep)
      if (k.name == decl.name) {
        spawned.emplace(decl.name, k.handle);
        result.push_back({decl.name, decl.k, k.handle});
        return {};
      }
    spawn_context ctx{sys,    f,         decl,     data_dir, {}, node ? node->name() : "local",
                      handle, workflows, telemetry};
    for (auto& name : f.downstream(decl.name)) {
      auto* next = f.find(name);
      if (!next)
        return make_error(ec::internal, "wire to unknown actor " + name);
      if (auto ok = visit(*next); !ok)
        return ok;
      auto next_handle = handle(name);
      if (!next_handle)
        return make_error(ec::unavailable,
                          "no way to reach actor " + name + " on node " + next->node);
      ctx.downstream.push_back(caf::actor_cast<consumer_actor>(next_handle));
    }
    if (!decl.k || !decl.k->spawn)
      return make_error(ec::internal, "kind of actor " + decl.name + " cannot be spawned");
    auto handle = decl.k->spawn(ctx);
    if (!handle)
      return make_error(ec::internal, "spawning " + decl.name + " failed");
    spawned.emplace(decl.name, handle);
    result.push_back({decl.name, decl.k, handle});
    return {};
  };
  for (auto& decl : f.actors)
    if (decl.k && decl.k->role == kind_role::sink)
      if (auto ok = visit(decl); !ok)
        return ok.err();
  for (auto& decl : f.actors)
    if (auto ok = visit(decl); !ok)
      return ok.err();
  return result;
}

} // namespace fabrik
