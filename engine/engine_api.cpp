#include "engine/engine_api.hpp"

#include "actors/node.hpp"

#include "core/telemetry.hpp"
#include "core/time.hpp"
#include "engine/workflow_hub.hpp"
#include "flows/kind.hpp"
#include "runtime/measure.hpp"
#include "runtime/registry.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

namespace fabrik {
namespace {

using json = nlohmann::json;

/// The actor's own words travel in a caf::error's context.
std::string message_of(const caf::error& e) {
  auto& c = e.context();
  return c.match_elements<std::string>() ? c.get_as<std::string>(0) : caf::to_string(e);
}

json to_json(const actor_status& st) {
  return {{"name", st.name},      {"kind", st.kind},
          {"state", st.state},    {"in", st.in},
          {"out", st.out},        {"errors", st.errors},
          {"queue", st.queue},    {"last_error", st.last_error},
          {"details", st.details}};
}

json to_json(const package_version& v) {
  return {{"name", v.name},     {"version", v.version}, {"seq", v.seq},  {"sha256", v.sha256},
          {"source", v.source}, {"added", v.added},     {"size", v.size}};
}

json to_json(const value& v) {
  return std::visit(
    [](auto& x) -> json {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, bytes>)
        return {{"bytes", x.data.size()}}; // binary values are not sent, only their size
      else
        return x;
    },
    v);
}

json to_json(const record& r) {
  json fields = json::object();
  for (auto& f : r.fields)
    fields[f.name] = to_json(f.v);
  return {{"stream", r.stream}, {"time", r.time},       {"ingest_time", r.ingest_time},
          {"seq", r.seq},       {"quality", r.quality}, {"fields", fields}};
}

/// Settings as JSON, secrets as "***" (as everywhere else).
/// `as_written`: durations and sizes as a flow file writes them ("500ms", "64MiB"), so that
/// a form can send them back unchanged (a bare number would be read as seconds or bytes).
json to_json(const config& c, const settings_table* table, bool as_written = false) {
  json out = json::object();
  for (auto& [name, v] : c.values()) {
    const setting* s = table ? table->find(name) : nullptr;
    if (s && s->secret) {
      out[name] = "***";
      continue;
    }
    std::visit(
      [&, &name = name](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>)
          out[name] = nullptr;
        else if constexpr (std::is_same_v<T, std::shared_ptr<config>>)
          out[name] = x ? to_json(*x, s ? s->children : nullptr, as_written) : json(nullptr);
        else if constexpr (std::is_same_v<T, config::object_map>) {
          json m = json::object();
          for (auto& [k, sub] : x)
            m[k] = to_json(sub, s ? s->children : nullptr, as_written);
          out[name] = m;
        } else if constexpr (std::is_same_v<T, int64_t>) {
          if (as_written && s && s->type == setting_type::duration)
            out[name] = format_duration(x);
          else if (as_written && s && s->type == setting_type::size)
            out[name] = format_size(x);
          else
            out[name] = x;
        } else
          out[name] = x;
      },
      v);
  }
  return out;
}

YAML::Node to_yaml(const json& j) {
  if (j.is_object()) {
    YAML::Node n{YAML::NodeType::Map};
    for (auto& [k, v] : j.items())
      n[k] = to_yaml(v);
    return n;
  }
  if (j.is_array()) {
    YAML::Node n{YAML::NodeType::Sequence};
    for (auto& v : j)
      n.push_back(to_yaml(v));
    return n;
  }
  if (j.is_string())
    return YAML::Node{j.get<std::string>()};
  if (j.is_null())
    return YAML::Node{YAML::NodeType::Null};
  return YAML::Node{j.dump()}; // numbers and booleans as YAML reads them
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in{p, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

api_reply api_reply::error(int status, std::string message) {
  return {status, {{"error", std::move(message)}}};
}

engine_api::engine_api(caf::actor_system& sys, std::shared_ptr<registry> reg,
                       std::shared_ptr<telemetry> tel)
  : sys_(sys), reg_(std::move(reg)), tel_(std::move(tel)) {}

void engine_api::set_view(engine_view v) {
  std::lock_guard lock{mutex_};
  view_ = std::move(v);
}

engine_view engine_api::view() const {
  std::lock_guard lock{mutex_};
  return view_;
}

std::optional<running_actor> engine_api::find(const std::string& name) const {
  auto v = view();
  for (auto& a : *v.actors)
    if (a.name == name)
      return a;
  return std::nullopt;
}

std::vector<actor_status> engine_api::statuses() const {
  std::vector<actor_status> out;
  caf::scoped_actor self{sys_};
  auto v = view();
  for (auto& a : *v.actors)
    self
      ->request(caf::actor_cast<status_client>(a.handle), std::chrono::seconds{2},
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
  auto v = view();
  auto& flow_ = *v.f;
  json actors = json::array();
  for (auto& a : flow_.actors)
    actors.push_back({{"name", a.name},
                      {"kind", std::string{a.k->name}},
                      {"role", to_string(a.k->role)},
                      {"node", a.node},
                      {"settings", to_json(a.settings, a.k->settings)}});
  json wires = json::array();
  for (auto& w : flow_.wires)
    wires.push_back({{"from", w.from}, {"to", w.to}});
  return {200,
          {{"name", flow_.name},
           {"file", flow_.file.string()},
           {"local_file", flow_.local_file.string()},
           {"actors", actors},
           {"wires", wires}}};
}

api_reply engine_api::actors() const {
  json list = json::array();
  for (auto& st : statuses())
    list.push_back(to_json(st));
  return {200, {{"actors", list}}};
}

api_reply engine_api::nodes() const {
  auto* node = node_.load();
  if (!node)
    return {200, {{"node", nullptr}, {"nodes", json::array()}}};
  json nodes = json::array();
  for (auto& r : node->report(std::chrono::seconds{3})) {
    json actors = json::array(), links = json::array();
    for (auto& st : r.actors)
      actors.push_back(to_json(st));
    for (auto& st : r.links)
      links.push_back(to_json(st));
    nodes.push_back({{"name", r.name},
                     {"listen", r.listen},
                     {"address", r.address},
                     {"http", r.http},
                     {"here", r.here},
                     {"reachable", r.reachable},
                     {"error", r.error},
                     {"actors", actors},
                     {"links", links}});
  }
  return {200, {{"node", node->name()}, {"nodes", nodes}}};
}

api_reply engine_api::actor(const std::string& name) const {
  auto a = find(name);
  if (!a)
    return api_reply::error(404, "no actor '" + name + "' in flow " + view().f->name);
  caf::scoped_actor self{sys_};
  api_reply out = api_reply::error(503, "actor '" + name + "' did not answer");
  self
    ->request(caf::actor_cast<status_client>(a->handle), std::chrono::seconds{2},
              status_atom::value)
    .receive(
      [&](const actor_status& st) {
        out = {200, to_json(st)};
      },
      [&](caf::error&) {});
  return out;
}

api_reply engine_api::streams() const {
  json stored = json::array();
  caf::scoped_actor self{sys_};
  auto v = view();
  for (auto& a : *v.actors) {
    if (a.k->name != "storage")
      continue;
    self
      ->request(caf::actor_cast<storage_actor>(a.handle), std::chrono::seconds{10},
                streams_atom::value)
      .receive(
        [&](const std::vector<stream_info>& list) {
          for (auto& s : list)
            stored.push_back({{"storage", a.name},
                              {"stream", s.name},
                              {"count", s.count},
                              {"first", s.first},
                              {"last", s.last},
                              {"bytes", s.bytes}});
        },
        [&](caf::error& e) {
          stored.push_back({{"storage", a.name}, {"error", message_of(e)}});
        });
  }
  json live = json::array();
  if (tel_)
    for (auto& s : tel_->streams())
      live.push_back(
        {{"stream", s.stream}, {"actor", s.actor}, {"seen", s.seen}, {"last", s.last_time}});
  return {200, {{"stored", stored}, {"live", live}}};
}

api_reply engine_api::records(const std::string& stream, const std::string& storage, int64_t from,
                              int64_t to, uint64_t limit) const {
  if (stream.empty())
    return api_reply::error(400, "which stream? add ?stream=NAME");
  json list = json::array();
  if (storage.empty()) {
    if (tel_)
      for (auto& r : tel_->newest(stream, limit))
        list.push_back(to_json(r));
    return {200, {{"stream", stream}, {"records", list}}};
  }
  auto a = find(storage);
  if (!a || a->k->name != "storage")
    return api_reply::error(404, "no storage actor '" + storage + "' in flow " + view().f->name);
  caf::scoped_actor self{sys_};
  api_reply out = api_reply::error(503, "storage '" + storage + "' did not answer");
  scan_request q{stream, from, to, limit, true};
  self
    ->request(caf::actor_cast<storage_actor>(a->handle), std::chrono::seconds{30},
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
    return api_reply::error(409, "flow " + view().f->name + " has no workflow actor to deploy to");
  auto added = hub_->add(zip, source);
  if (!added)
    return api_reply::error(added.err().code == ec::parse_error ? 422 : 500, added.err().message);
  return {added->added ? 201 : 200,
          {{"version", to_json(added->version)}, {"added", added->added}}};
}

api_reply engine_api::train(const std::string& name, const json& selection) {
  auto a = find(name);
  if (!a || a->k->name != "workflow") {
    std::string names;
    for (auto& x : *view().actors)
      if (x.k->name == "workflow")
        names += (names.empty() ? "" : ", ") + x.name;
    return api_reply::error(404, "no workflow actor '" + name
                                   + "' in this flow; workflow "
                                     "actors: "
                                   + (names.empty() ? "none" : names));
  }
  caf::scoped_actor self{sys_};
  api_reply out = api_reply::error(503, "actor '" + name + "' did not answer");
  self
    ->request(a->handle, std::chrono::seconds{30}, train_atom::value, std::string{"manual"},
              selection.is_null() ? std::string{"null"} : selection.dump())
    .receive(
      [&](uint64_t id) {
        out = {202, {{"run", id}}};
      },
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
      auto who = find(s.actor);
      bool is_workflow = who && who->k->name == "workflow";
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
      std::snprintf(buf, sizeof buf, "%s{actor=\"%s\",kind=\"%s\"} %llu\n", name, st.name.c_str(),
                    st.kind.c_str(), static_cast<unsigned long long>(get(st)));
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
        std::snprintf(buf, sizeof buf, "fabrik_training_seconds{actor=\"%s\",status=\"%s\"} %.3f\n",
                      r.actor.c_str(), r.status.c_str(),
                      static_cast<double>(r.m.deploy_wall + r.m.train_wall) / 1e9);
        out += buf;
      }
  }
  if (tel_)
    out += tel_->latency_metrics();
  return out;
}

api_reply engine_api::reload() {
  if (!reload_)
    return api_reply::error(409, "this engine cannot reload");
  return reload_();
}

namespace {

/// The kinds an operator may add and edit on the Ingest page, by name.
std::vector<const kind*> editable_kinds() {
  std::vector<const kind*> out;
  for (auto* k : all_kinds())
    if (k->editable)
      out.push_back(k);
  return out;
}

std::string kind_names(const std::vector<const kind*>& kinds) {
  std::string out;
  for (auto* k : kinds)
    out += (out.empty() ? "" : ", ") + std::string{k->name};
  return out.empty() ? "none in this build" : out;
}

/// A settings table for a form: a reference setting lists the entries of its section.
json settings_form(const settings_table& t, const flow& f) {
  json table = json::array();
  for (auto& st : t.items) {
    json choices = json::array();
    for (auto c : st.choices)
      choices.push_back(std::string{c});
    json row = {{"name", std::string{st.name}},
                {"type", to_string(st.type)},
                {"default", std::string{st.default_value}},
                {"doc", std::string{st.doc}},
                {"required", st.required},
                {"secret", st.secret},
                {"choices", choices}};
    if (std::isfinite(st.min))
      row["min"] = st.min;
    if (std::isfinite(st.max))
      row["max"] = st.max;
    if (st.type == setting_type::reference) {
      json entries = json::array();
      if (auto sec = f.sections.find(st.section); sec != f.sections.end())
        for (auto& [name, _] : sec->second)
          entries.push_back(name);
      row["section"] = std::string{st.section};
      row["entries"] = entries;
    }
    table.push_back(row);
  }
  return table;
}

} // namespace

api_reply engine_api::ingest() const {
  auto v = view();
  auto& f = *v.f;
  auto editable = editable_kinds();
  json kinds = json::array(), storages = json::array(), sources = json::array();
  for (auto* k : editable)
    kinds.push_back(
      {{"kind", std::string{k->name}},
       {"summary", std::string{k->summary}},
       {"settings", settings_form(k->settings ? *k->settings : settings_table{}, f)}});
  for (auto& a : f.actors)
    if (a.k && a.k->name == "storage")
      storages.push_back(a.name);
  for (auto& a : f.actors) {
    if (!a.k || !a.k->editable)
      continue;
    json stores_in = json::array();
    for (auto& d : f.downstream(a.name))
      if (auto* x = f.find(d); x && x->k->name == "storage")
        stores_in.push_back(d);
    sources.push_back({{"name", a.name},
                       {"kind", std::string{a.k->name}},
                       {"settings", to_json(a.settings, a.k->settings, true)},
                       {"local", !a.file.empty()},
                       {"stores_in", stores_in}});
  }
  return {200,
          {{"local_file", f.local_file.string()},
           {"kinds", kinds},
           {"storages", storages},
           {"sources", sources}}};
}

api_reply engine_api::write_fragment(const engine_view& v, const std::string& fragment) {
  std::vector<diagnostic> diags;
  if (!load_flow_text(read_text(v.f->file), v.f->file, diags, fragment)) {
    json lines = json::array();
    for (auto& d : diags)
      if (!d.warning)
        lines.push_back(d.to_string());
    return {
      400,
      {{"error", "the change does not validate; nothing was written"}, {"diagnostics", lines}}};
  }
  // Whole or not at all: write beside it, then rename over it.
  auto tmp = v.f->local_file;
  tmp += ".tmp";
  {
    std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
    out << fragment;
    if (!out.flush())
      return api_reply::error(500, "cannot write " + tmp.string());
  }
  std::error_code ec_;
  std::filesystem::rename(tmp, v.f->local_file, ec_);
  if (ec_)
    return api_reply::error(500,
                            "cannot replace " + v.f->local_file.string() + ": " + ec_.message());
  spdlog::info("http: wrote {}", v.f->local_file.string());
  return reload();
}

namespace {

/// The fragment as YAML (an empty map when there is none); a broken one is not touched.
expected<YAML::Node> load_fragment(const flow& f) {
  std::error_code ec_;
  if (!std::filesystem::exists(f.local_file, ec_))
    return YAML::Node{YAML::NodeType::Map};
  try {
    auto n = YAML::LoadFile(f.local_file.string());
    return n.IsNull() ? YAML::Node{YAML::NodeType::Map} : n;
  } catch (const YAML::Exception& e) {
    return make_error(ec::parse_error,
                      f.local_file.string() + " has errors (" + e.msg + "); fix it by hand first");
  }
}

std::string fragment_text(const flow& f, const YAML::Node& n) {
  YAML::Emitter out;
  out << n;
  return "# Written by fabrik's web UI (the ingest page). `fabrik check` and `fabrik run`\n"
         "# merge it into "
         + f.file.filename().string()
         + ": its actors add to or replace the "
           "flow's, its wires add to them.\n"
         + std::string{out.c_str()} + "\n";
}

/// The fragment's wires without those touching `actor`.
YAML::Node wires_without(const YAML::Node& wires, const std::string& actor) {
  YAML::Node out{YAML::NodeType::Sequence};
  if (wires && wires.IsSequence())
    for (auto w : wires) {
      auto text = w.IsScalar() ? w.Scalar() : std::string{};
      auto arrow = text.find("->");
      auto trim = [](std::string x) {
        x.erase(0, x.find_first_not_of(' '));
        x.erase(x.find_last_not_of(' ') + 1);
        return x;
      };
      if (arrow != std::string::npos && text.find("->", arrow + 2) == std::string::npos
          && (trim(text.substr(0, arrow)) == actor || trim(text.substr(arrow + 2)) == actor))
        continue;
      out.push_back(w);
    }
  return out;
}

} // namespace

api_reply engine_api::put_source(const json& body) {
  if (!body.is_object() || !body.contains("name") || !body["name"].is_string()
      || !body.contains("settings") || !body["settings"].is_object()
      || (body.contains("kind") && !body["kind"].is_string()))
    return api_reply::error(
      400, "send {\"name\": ..., \"kind\": ..., \"settings\": {...}, \"stores_in\": [...]}");
  auto name = body["name"].get<std::string>();
  auto v = view();
  auto* existing = v.f->find(name);
  auto editable = editable_kinds();
  // A new source names its kind; an edit may leave it out.
  std::string kind_name = body.value("kind", std::string{});
  if (kind_name.empty() && existing && existing->k && existing->k->editable)
    kind_name = std::string{existing->k->name};
  const kind* k = find_kind(kind_name);
  if (!k || !k->editable)
    return api_reply::error(400,
                            (kind_name.empty() ? std::string{"no kind given"}
                                               : "kind '" + kind_name + "' cannot be added here")
                              + "; the Ingest page adds " + kind_names(editable));
  if (existing && existing->k != k)
    return api_reply::error(409, "'" + name + "' is a "
                                   + std::string{existing->k ? existing->k->name : "actor"}
                                   + ", not a " + kind_name + "; pick another name");
  auto fragment = load_fragment(*v.f);
  if (!fragment)
    return api_reply::error(409, fragment.err().message);
  json settings = body["settings"];
  settings.erase("kind");
  // A secret comes back masked (***): keep what the fragment holds.
  auto before = (*fragment)["actors"][name];
  for (auto& st : k->settings ? k->settings->items : std::vector<setting>{}) {
    auto key = std::string{st.name};
    if (!st.secret || !settings.contains(key) || settings[key] != "***")
      continue;
    if (!before.IsMap() || !before[key])
      return api_reply::error(400, "setting '" + key
                                     + "': give the secret, or a ${ENV_VAR} or file:PATH");
    settings[key] = before[key].as<std::string>();
  }
  settings["kind"] = kind_name;
  (*fragment)["actors"][name] = to_yaml(settings);
  auto wires = wires_without((*fragment)["wires"], name);
  json stores_in = body.value("stores_in", json::array());
  if (!stores_in.is_array())
    return api_reply::error(400, "stores_in must be a list of storage actors");
  for (auto& s : stores_in)
    if (s.is_string())
      wires.push_back(name + " -> " + s.get<std::string>());
  (*fragment)["wires"] = wires;
  return write_fragment(v, fragment_text(*v.f, *fragment));
}

api_reply engine_api::deploy(const std::string& actor, const json& version) {
  auto v = view();
  auto* a = v.f->find(actor);
  if (!a || a->k->name != "workflow")
    return api_reply::error(404, "no workflow actor '" + actor + "' in flow " + v.f->name);
  auto package = a->settings.str("package");
  if (package.ends_with(".zip") || package.find('/') != std::string::npos)
    return api_reply::error(409, "'" + actor + "' runs the zip " + package
                                   + "; pin versions of a package it names, not of a file");
  if (!version.is_null() && !version.is_string())
    return api_reply::error(400, "version must be a version string, a sha256 prefix, or null");
  if (version.is_string())
    if (auto found = reg_->find(package, version.get<std::string>()); !found)
      return api_reply::error(404, found.err().message);
  auto fragment = load_fragment(*v.f);
  if (!fragment)
    return api_reply::error(409, fragment.err().message);
  auto entry = (*fragment)["actors"][actor];
  if (version.is_null() && entry.IsMap() && !entry["kind"]) {
    entry.remove("version");
    if (entry.size() == 0)
      (*fragment)["actors"].remove(actor);
  } else {
    // A patch of the flow file's actor, or the fragment's own actor.
    (*fragment)["actors"][actor]["version"] = to_yaml(version);
  }
  return write_fragment(v, fragment_text(*v.f, *fragment));
}

api_reply engine_api::delete_source(const std::string& name) {
  auto v = view();
  auto* a = v.f->find(name);
  if (!a)
    return api_reply::error(404, "no actor '" + name + "' in flow " + v.f->name);
  if (a->file.empty())
    return api_reply::error(409, "'" + name + "' is defined in " + v.f->file.filename().string()
                                   + ", not in the local fragment; change it there");
  auto fragment = load_fragment(*v.f);
  if (!fragment)
    return api_reply::error(409, fragment.err().message);
  (*fragment)["actors"].remove(name);
  (*fragment)["wires"] = wires_without((*fragment)["wires"], name);
  return write_fragment(v, fragment_text(*v.f, *fragment));
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
