#include "actors/engine_api.hpp"

#include "actors/telemetry.hpp"
#include "actors/time.hpp"
#include "actors/workflow_hub.hpp"
#include "runtime/measure.hpp"
#include "runtime/registry.hpp"

#include <caf/all.hpp>

#include <cstdio>
#include <set>

namespace fabrik {
namespace {

using json = nlohmann::json;

/// The actor's own words travel in a caf::error's context.
std::string message_of(const caf::error& e) {
  auto& c = e.context();
  return c.match_elements<std::string>() ? c.get_as<std::string>(0) : caf::to_string(e);
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

json to_json(const value& v) {
  return std::visit([](auto& x) -> json {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, bytes>)
      return {{"bytes", x.data.size()}}; // binary values are not sent, only their size
    else
      return x;
  }, v);
}

json to_json(const record& r) {
  json fields = json::object();
  for (auto& f : r.fields)
    fields[f.name] = to_json(f.v);
  return {{"stream", r.stream}, {"time", r.time},     {"ingest_time", r.ingest_time},
          {"seq", r.seq},       {"quality", r.quality}, {"fields", fields}};
}

/// Settings as JSON, secrets as "***" (as everywhere else).
json to_json(const config& c, const settings_table* table) {
  json out = json::object();
  for (auto& [name, v] : c.values()) {
    const setting* s = table ? table->find(name) : nullptr;
    if (s && s->secret) {
      out[name] = "***";
      continue;
    }
    std::visit([&, &name = name](auto& x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, std::monostate>)
        out[name] = nullptr;
      else if constexpr (std::is_same_v<T, std::shared_ptr<config>>)
        out[name] = x ? to_json(*x, s ? s->children : nullptr) : json(nullptr);
      else if constexpr (std::is_same_v<T, config::object_map>) {
        json m = json::object();
        for (auto& [k, sub] : x)
          m[k] = to_json(sub, s ? s->children : nullptr);
        out[name] = m;
      } else
        out[name] = x;
    }, v);
  }
  return out;
}

} // namespace

api_reply api_reply::error(int status, std::string message) {
  return {status, {{"error", std::move(message)}}};
}

engine_api::engine_api(caf::actor_system& sys, const flow& f,
                       const std::vector<running_actor>& actors, std::shared_ptr<registry> reg,
                       workflow_hub* hub, std::shared_ptr<telemetry> tel)
  : sys_(sys), flow_(f), actors_(actors), reg_(std::move(reg)), hub_(hub), tel_(std::move(tel)) {}

const running_actor* engine_api::find(const std::string& name) const {
  for (auto& a : actors_)
    if (a.name == name)
      return &a;
  return nullptr;
}

std::vector<actor_status> engine_api::statuses() const {
  std::vector<actor_status> out;
  caf::scoped_actor self{sys_};
  for (auto& a : actors_)
    self->request(caf::actor_cast<status_client>(a.handle), std::chrono::seconds{2},
                  status_atom::value)
      .receive([&](const actor_status& st) { out.push_back(st); },
               [&](caf::error&) {
                 actor_status st;
                 st.name = a.name;
                 st.kind = std::string{a.k->name};
                 st.state = "unresponsive";
                 out.push_back(st);
               });
  if (hub_)
    out.push_back(hub_->status());
  return out;
}

api_reply engine_api::flow_graph() const {
  json actors = json::array();
  for (auto& a : flow_.actors)
    actors.push_back({{"name", a.name},
                      {"kind", std::string{a.k->name}},
                      {"role", to_string(a.k->role)},
                      {"settings", to_json(a.settings, a.k->settings)}});
  json wires = json::array();
  for (auto& w : flow_.wires)
    wires.push_back({{"from", w.from}, {"to", w.to}});
  return {200, {{"name", flow_.name}, {"file", flow_.file.string()}, {"actors", actors},
                {"wires", wires}}};
}

api_reply engine_api::actors() const {
  json list = json::array();
  for (auto& st : statuses())
    list.push_back(to_json(st));
  return {200, {{"actors", list}}};
}

api_reply engine_api::actor(const std::string& name) const {
  auto* a = find(name);
  if (!a)
    return api_reply::error(404, "no actor '" + name + "' in flow " + flow_.name);
  caf::scoped_actor self{sys_};
  api_reply out = api_reply::error(503, "actor '" + name + "' did not answer");
  self->request(caf::actor_cast<status_client>(a->handle), std::chrono::seconds{2},
                status_atom::value)
    .receive([&](const actor_status& st) { out = {200, to_json(st)}; },
             [&](caf::error&) {});
  return out;
}

api_reply engine_api::streams() const {
  json stored = json::array();
  caf::scoped_actor self{sys_};
  for (auto& a : actors_) {
    if (a.k->name != "storage")
      continue;
    self->request(caf::actor_cast<storage_actor>(a.handle), std::chrono::seconds{10},
                  streams_atom::value)
      .receive(
        [&](const std::vector<stream_info>& list) {
          for (auto& s : list)
            stored.push_back({{"storage", a.name}, {"stream", s.name}, {"count", s.count},
                              {"first", s.first}, {"last", s.last}, {"bytes", s.bytes}});
        },
        [&](caf::error& e) {
          stored.push_back({{"storage", a.name}, {"error", message_of(e)}});
        });
  }
  json live = json::array();
  if (tel_)
    for (auto& s : tel_->streams())
      live.push_back({{"stream", s.stream}, {"actor", s.actor}, {"seen", s.seen},
                      {"last", s.last_time}});
  return {200, {{"stored", stored}, {"live", live}}};
}

api_reply engine_api::records(const std::string& stream, const std::string& storage,
                              int64_t from, int64_t to, uint64_t limit) const {
  if (stream.empty())
    return api_reply::error(400, "which stream? add ?stream=NAME");
  json list = json::array();
  if (storage.empty()) {
    if (tel_)
      for (auto& r : tel_->newest(stream, limit))
        list.push_back(to_json(r));
    return {200, {{"stream", stream}, {"records", list}}};
  }
  auto* a = find(storage);
  if (!a || a->k->name != "storage")
    return api_reply::error(404, "no storage actor '" + storage + "' in flow " + flow_.name);
  caf::scoped_actor self{sys_};
  api_reply out = api_reply::error(503, "storage '" + storage + "' did not answer");
  scan_request q{stream, from, to, limit, true};
  self->request(caf::actor_cast<storage_actor>(a->handle), std::chrono::seconds{30},
                query_atom::value, q)
    .receive(
      [&](const record_batch& b) {
        for (auto& r : b.records)
          list.push_back(to_json(r));
        out = {200, {{"stream", stream}, {"storage", storage}, {"records", list}}};
      },
      [&](caf::error& e) { out = api_reply::error(503, message_of(e)); });
  return out;
}

api_reply engine_api::workflows() const {
  auto vs = reg_->versions();
  if (!vs)
    return api_reply::error(500, vs.err().message);
  json versions = json::array();
  for (auto& v : *vs)
    versions.push_back(to_json(v));
  json actors = json::array();
  for (auto& st : statuses())
    if (st.kind == "workflow")
      actors.push_back(to_json(st));
  return {200, {{"versions", versions}, {"actors", actors}}};
}

api_reply engine_api::upload(std::string_view zip, const std::string& source) {
  if (!hub_)
    return api_reply::error(409, "flow " + flow_.name + " has no workflow actor to deploy to");
  auto added = hub_->add(zip, source);
  if (!added)
    return api_reply::error(added.err().code == ec::parse_error ? 422 : 500,
                            added.err().message);
  return {added->added ? 201 : 200,
          {{"version", to_json(added->version)}, {"added", added->added}}};
}

api_reply engine_api::train(const std::string& name, const json& selection) {
  auto* a = find(name);
  if (!a || a->k->name != "workflow") {
    std::string names;
    for (auto& x : actors_)
      if (x.k->name == "workflow")
        names += (names.empty() ? "" : ", ") + x.name;
    return api_reply::error(404, "no workflow actor '" + name + "' in this flow; workflow "
                                   "actors: " + (names.empty() ? "none" : names));
  }
  caf::scoped_actor self{sys_};
  api_reply out = api_reply::error(503, "actor '" + name + "' did not answer");
  self->request(a->handle, std::chrono::seconds{30}, train_atom::value, std::string{"manual"},
                selection.is_null() ? std::string{"null"} : selection.dump())
    .receive([&](uint64_t id) { out = {202, {{"run", id}}}; },
             [&](caf::error& e) {
               auto msg = message_of(e);
               out = api_reply::error(msg.find("busy") != std::string::npos ? 409 : 400, msg);
             });
  return out;
}

api_reply engine_api::run(uint64_t id) const {
  auto r = reg_->run(id);
  if (!r)
    return api_reply::error(r.err().code == ec::not_found ? 404 : 500, r.err().message);
  return {200, {{"run", to_json(*r)}}}; // wrapped: a run has an "error" field of its own
}

api_reply engine_api::runs(const std::string& actor, size_t limit) const {
  auto rs = reg_->runs(actor, limit);
  if (!rs)
    return api_reply::error(500, rs.err().message);
  json list = json::array();
  for (auto& r : *rs)
    list.push_back(to_json(r));
  return {200, {{"runs", list}}};
}

api_reply engine_api::predictions(const std::string& actor, size_t limit) const {
  json recent = json::array();
  json counts = json::object();
  if (tel_) {
    for (auto& s : tel_->streams()) {
      bool is_workflow = find(s.actor) && find(s.actor)->k->name == "workflow";
      if (!is_workflow || (!actor.empty() && s.actor != actor))
        continue;
      for (auto& r : tel_->newest(s.stream, limit))
        recent.push_back(to_json(r));
    }
    for (auto& [a, classes] : tel_->class_counts())
      if (actor.empty() || a == actor)
        counts[a] = classes;
  }
  // Newest first across streams.
  std::sort(recent.begin(), recent.end(),
            [](auto& x, auto& y) { return x["ingest_time"] > y["ingest_time"]; });
  if (recent.size() > limit)
    recent.erase(recent.begin() + static_cast<std::ptrdiff_t>(limit), recent.end());
  return {200, {{"recent", recent}, {"class_counts", counts}}};
}

std::string engine_api::metrics() const {
  std::string out;
  char buf[512];
  auto family = [&](const char* name, const char* type, const char* help) {
    std::snprintf(buf, sizeof buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    out += buf;
  };
  auto sts = statuses();
  auto each = [&](const char* name, auto get) {
    for (auto& st : sts) {
      std::snprintf(buf, sizeof buf, "%s{actor=\"%s\",kind=\"%s\"} %llu\n", name,
                    st.name.c_str(), st.kind.c_str(), static_cast<unsigned long long>(get(st)));
      out += buf;
    }
  };
  family("fabrik_actor_messages_in_total", "counter", "Messages (or records) an actor took in.");
  each("fabrik_actor_messages_in_total", [](auto& st) { return st.in; });
  family("fabrik_actor_messages_out_total", "counter", "Records an actor emitted or stored.");
  each("fabrik_actor_messages_out_total", [](auto& st) { return st.out; });
  family("fabrik_actor_errors_total", "counter", "Errors an actor counted.");
  each("fabrik_actor_errors_total", [](auto& st) { return st.errors; });
  family("fabrik_actor_queue", "gauge", "Work waiting inside an actor.");
  each("fabrik_actor_queue", [](auto& st) { return st.queue; });
  family("fabrik_actor_up", "gauge", "1 when an actor runs, 0 when it failed or hangs.");
  each("fabrik_actor_up", [](auto& st) {
    return st.state == "running" || st.state == "waiting" || st.state == "deploying" ? 1 : 0;
  });
  family("fabrik_storage_bytes", "gauge", "Size of a storage's LMDB file.");
  for (auto& st : sts)
    if (auto b = st.details.find("file_bytes"); st.kind == "storage" && b != st.details.end())
      out += "fabrik_storage_bytes{actor=\"" + st.name + "\"} " + b->second + "\n";
  family("fabrik_worker_cpu_seconds_total", "counter", "CPU time of a workflow's worker.");
  family("fabrik_worker_rss_bytes", "gauge", "Resident memory of a workflow's worker.");
  for (auto& st : sts) {
    auto pid = st.details.find("worker_pid");
    if (pid == st.details.end())
      continue;
    auto p = static_cast<pid_t>(std::stol(pid->second));
    if (auto cpu = process_cpu_ns(p)) {
      std::snprintf(buf, sizeof buf, "fabrik_worker_cpu_seconds_total{actor=\"%s\"} %.3f\n",
                    st.name.c_str(), static_cast<double>(*cpu) / 1e9);
      out += buf;
    }
    if (auto rss = process_rss_bytes(p)) {
      std::snprintf(buf, sizeof buf, "fabrik_worker_rss_bytes{actor=\"%s\"} %llu\n",
                    st.name.c_str(), static_cast<unsigned long long>(*rss));
      out += buf;
    }
  }
  family("fabrik_training_seconds", "gauge", "Wall time of a workflow actor's last finished run.");
  if (auto rs = reg_->runs({}, 1000)) {
    std::set<std::string> seen;
    for (auto& r : *rs)
      if (r.finished > 0 && seen.insert(r.actor).second) {
        std::snprintf(buf, sizeof buf,
                      "fabrik_training_seconds{actor=\"%s\",status=\"%s\"} %.3f\n",
                      r.actor.c_str(), r.status.c_str(),
                      static_cast<double>(r.m.deploy_wall + r.m.train_wall) / 1e9);
        out += buf;
      }
  }
  if (tel_)
    out += tel_->latency_metrics();
  return out;
}

json engine_api::handle(const json& req) {
  auto op = req.value("op", std::string{});
  api_reply r;
  if (op == "train")
    r = train(req.value("actor", std::string{}), req.value("data", json(nullptr)));
  else if (op == "run" && req.contains("id") && req["id"].is_number_unsigned())
    r = run(req["id"].get<uint64_t>());
  else if (op == "run")
    r = api_reply::error(400, "run needs a numeric id");
  else if (op == "runs")
    r = runs(req.value("actor", std::string{}), req.value("limit", size_t{100}));
  else if (op == "versions")
    r = workflows();
  else if (op == "status")
    r = actors();
  else
    r = api_reply::error(400, "unknown op '" + op + "'; ops: train, run, runs, versions, status");
  return r.body;
}

} // namespace fabrik
