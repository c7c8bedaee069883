#include "actors/graph.hpp"

#include <caf/all.hpp>

#include <map>

namespace fabrik {

std::filesystem::path spawn_context::state_dir(std::string_view subdir) const {
  return data_dir / subdir / decl.name;
}

std::string spawn_context::client_id() const {
  return "fabrik-" + f.name + "-" + node + "-" + decl.name;
}

expected<std::vector<running_actor>> spawn_graph(caf::actor_system& sys, const flow& f,
                                                 const std::filesystem::path& data_dir,
                                                 std::shared_ptr<registry> workflows,
                                                 std::shared_ptr<telemetry> telemetry,
                                                 const std::vector<running_actor>& keep) {
  std::map<std::string, caf::actor, std::less<>> spawned;
  std::vector<running_actor> result;
  // Depth-first from every actor: an actor is spawned once all its consumers are.
  std::function<expected<void>(const actor_decl&)> visit;
  visit = [&](const actor_decl& decl) -> expected<void> {
    if (spawned.count(decl.name))
      return {};
    for (auto& k : keep)
      if (k.name == decl.name) {
        spawned.emplace(decl.name, k.handle);
        result.push_back({decl.name, decl.k, k.handle});
        return {};
      }
    spawn_context ctx{sys, f, decl, data_dir, {}, "local", [&](std::string_view name) {
                        auto it = spawned.find(name);
                        return it == spawned.end() ? caf::actor{} : it->second;
                      }, workflows, telemetry};
    for (auto& name : f.downstream(decl.name)) {
      auto* next = f.find(name);
      if (!next)
        return make_error(ec::internal, "wire to unknown actor " + name);
      if (auto ok = visit(*next); !ok)
        return ok;
      ctx.downstream.push_back(caf::actor_cast<consumer_actor>(spawned.at(name)));
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
