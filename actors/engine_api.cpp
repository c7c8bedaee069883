#include "actors/engine_api.hpp"

#include "actors/workflow_hub.hpp"
#include "runtime/registry.hpp"

#include <caf/all.hpp>

namespace fabrik {
namespace {

using json = nlohmann::json;

json error_reply(const std::string& message) {
  return {{"error", message}};
}

json to_json(const actor_status& st) {
  return {{"name", st.name},   {"kind", st.kind},   {"state", st.state},
          {"in", st.in},       {"out", st.out},     {"errors", st.errors},
          {"queue", st.queue}, {"last_error", st.last_error}, {"details", st.details}};
}

json to_json(const package_version& v) {
  return {{"name", v.name},     {"version", v.version}, {"seq", v.seq},  {"sha256", v.sha256},
          {"source", v.source}, {"added", v.added},     {"size", v.size}};
}

const running_actor* find_actor(api_context& ctx, const std::string& name) {
  for (auto& a : ctx.actors)
    if (a.name == name)
      return &a;
  return nullptr;
}

std::string actor_names(api_context& ctx, std::string_view kind) {
  std::string out;
  for (auto& a : ctx.actors)
    if (a.k && a.k->name == kind)
      out += (out.empty() ? "" : ", ") + a.name;
  return out.empty() ? "none" : out;
}

json train(api_context& ctx, const json& req) {
  auto name = req.value("actor", std::string{});
  auto* a = find_actor(ctx, name);
  if (!a || !a->k || a->k->name != "workflow")
    return error_reply("no workflow actor '" + name + "' in this flow; workflow actors: "
                       + actor_names(ctx, "workflow"));
  caf::scoped_actor self{ctx.sys};
  json out;
  self->request(a->handle, std::chrono::seconds{30}, train_atom::value, std::string{"manual"})
    .receive([&](uint64_t id) { out = {{"run", id}}; },
             [&](caf::error& e) {
               // The actor's own words travel in the error's context.
               auto& c = e.context();
               out = error_reply(c.match_elements<std::string>() ? c.get_as<std::string>(0)
                                                                 : caf::to_string(e));
             });
  return out;
}

json status(api_context& ctx) {
  json list = json::array();
  caf::scoped_actor self{ctx.sys};
  for (auto& a : ctx.actors)
    self->request(caf::actor_cast<status_client>(a.handle), std::chrono::seconds{2},
                  status_atom::value)
      .receive([&](const actor_status& st) { list.push_back(to_json(st)); },
               [&](caf::error&) {
                 list.push_back({{"name", a.name}, {"state", "unresponsive"}});
               });
  if (ctx.hub)
    list.push_back(to_json(ctx.hub->status()));
  return {{"actors", list}};
}

} // namespace

json handle_request(api_context& ctx, const json& req) {
  auto op = req.value("op", std::string{});
  if (op == "train")
    return train(ctx, req);
  if (op == "run") {
    if (!req.contains("id") || !req["id"].is_number_unsigned())
      return error_reply("run needs a numeric id");
    auto r = ctx.reg->run(req["id"].get<uint64_t>());
    // Wrapped: a run has an "error" field of its own.
    return r ? json{{"run", to_json(*r)}} : error_reply(r.err().message);
  }
  if (op == "runs") {
    auto rs = ctx.reg->runs(req.value("actor", std::string{}), req.value("limit", size_t{100}));
    if (!rs)
      return error_reply(rs.err().message);
    json list = json::array();
    for (auto& r : *rs)
      list.push_back(to_json(r));
    return {{"runs", list}};
  }
  if (op == "versions") {
    auto vs = ctx.reg->versions(req.value("name", std::string{}));
    if (!vs)
      return error_reply(vs.err().message);
    json list = json::array();
    for (auto& v : *vs)
      list.push_back(to_json(v));
    return {{"versions", list}};
  }
  if (op == "status")
    return status(ctx);
  return error_reply("unknown op '" + op + "'; ops: train, run, runs, versions, status");
}

} // namespace fabrik
