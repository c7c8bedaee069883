// The workflow registry. One LMDB env (DATA_DIR/registry), six databases:
//   meta      "layout_version" -> be64; "next_run" -> be64, the next run id to hand out
//   packages  name \0 be64(seq) -> JSON {version, sha256, source, added, size}
//   blobs     sha256 -> zip bytes (shared by versions of equal content under two names)
//   models    id -> u32 LE header length | JSON header | artifact bytes
//   serving   actor \0 package sha256 -> model id
//   runs      be64(id) -> to_json(run_record)
// Big-endian numbers in keys make byte order numeric order, so a cursor walks versions by
// seq and runs by id without sorting.

#include "runtime/registry.hpp"

#include "core/lmdb.hpp"
#include "core/time.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <utility>

namespace fabrik {

using json = nlohmann::json;

namespace {

constexpr const char* meta_db = "meta";
constexpr const char* packages_db = "packages";
constexpr const char* blobs_db = "blobs";
constexpr const char* models_db = "models";
constexpr const char* serving_db = "serving";
constexpr const char* runs_db = "runs";
constexpr const char* layout_key = "layout_version";
constexpr const char* next_run_key = "next_run";

/// Worker output (logs, tracebacks) may hold invalid UTF-8: replace it rather than throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// Sets `out` from `j[key]` when present and of a fitting type; otherwise leaves it.
template <class T>
void take(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return;
  try {
    it->get_to(out);
  } catch (const json::exception&) {
  }
}

/// `a` \0 `b`: names never hold a 0 byte, so the pair is unambiguous and groups by `a`.
std::string pair_key(std::string_view a, std::string_view b) {
  std::string key{a};
  key.push_back('\0');
  key += b;
  return key;
}

std::string package_value(const package_version& v) {
  return dump({{"version", v.version},
               {"sha256", v.sha256},
               {"source", v.source},
               {"added", v.added},
               {"size", v.size}});
}

/// Decodes a packages entry; nullopt when its key is not name \0 be64(seq).
std::optional<package_version> parse_package(std::string_view key, std::string_view value) {
  if (key.size() < 10 || key[key.size() - 9] != '\0')
    return std::nullopt;
  auto seq = lmdb::parse_be64_key(key.substr(key.size() - 8));
  auto j = json::parse(value, nullptr, false);
  if (!seq || j.is_discarded() || !j.is_object())
    return std::nullopt;
  package_version v;
  v.name = std::string{key.substr(0, key.size() - 9)};
  v.seq = *seq;
  take(j, "version", v.version);
  take(j, "sha256", v.sha256);
  take(j, "source", v.source);
  take(j, "added", v.added);
  take(j, "size", v.size);
  return v;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// Open writer registries per directory and process: only the first one recovers runs
/// left `running`, since a later one would interrupt runs that are live in this process.
struct writer_token {};
std::mutex writers_mtx;
std::map<std::string, std::weak_ptr<writer_token>> writers;

} // namespace

std::string encode_model(const model_record& m) {
  auto header = dump({{"workflow", m.workflow},
                      {"package_sha256", m.package_sha256},
                      {"actor", m.actor},
                      {"run", m.run},
                      {"created", m.created},
                      {"format", worker::to_string(m.artifact.format)},
                      {"trained_with", worker::to_json(m.artifact.trained_with)}});
  std::string out;
  out.reserve(4 + header.size() + m.artifact.bytes.size());
  auto n = static_cast<uint32_t>(header.size());
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += header;
  out += m.artifact.bytes;
  return out;
}

expected<model_record> decode_model(std::string_view id, std::string_view value, bool with_bytes) {
  auto corrupt = [&] { return make_error(ec::parse_error, "corrupt model " + std::string{id}); };
  if (value.size() < 4)
    return corrupt();
  uint32_t n = 0;
  for (int i = 3; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(value[static_cast<size_t>(i)]);
  if (value.size() - 4 < n)
    return corrupt();
  auto j = json::parse(value.substr(4, n), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return corrupt();
  model_record m;
  m.id = std::string{id};
  take(j, "workflow", m.workflow);
  take(j, "package_sha256", m.package_sha256);
  take(j, "actor", m.actor);
  take(j, "run", m.run);
  take(j, "created", m.created);
  std::string format;
  take(j, "format", format);
  auto f = worker::parse_model_format(format);
  if (!f)
    return corrupt();
  m.artifact.format = *f;
  if (auto it = j.find("trained_with"); it != j.end() && it->is_object())
    m.artifact.trained_with = worker::versions_from_json(*it);
  if (with_bytes)
    m.artifact.bytes = std::string{value.substr(4 + n)};
  return m;
}

// -- runs as JSON and text ------------------------------------------------------------------

std::string describe_duration(int64_t ns) {
  char buf[48];
  double s = static_cast<double>(ns) / 1e9;
  if (ns < 10'000'000)
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  else if (ns < 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.0f ms", s * 1e3);
  else if (s < 60)
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%d min %d s", static_cast<int>(s) / 60,
                  static_cast<int>(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%d h %d min", static_cast<int>(s) / 3600,
                  static_cast<int>(s) / 60 % 60);
  return buf;
}

std::string describe_energy(double j) {
  char buf[48];
  if (j > 10'000)
    std::snprintf(buf, sizeof buf, "%.1f kJ", j / 1000);
  else if (j < 10)
    std::snprintf(buf, sizeof buf, "%.1f J", j);
  else
    std::snprintf(buf, sizeof buf, "%.0f J", j);
  return buf;
}

json to_json(const run_record& r) {
  return {{"id", r.id},
          {"actor", r.actor},
          {"workflow", r.workflow},
          {"version", r.version},
          {"package_sha256", r.package_sha256},
          {"trigger", r.trigger},
          {"status", r.status},
          {"error", r.error},
          {"started", r.started},
          {"finished", r.finished},
          {"rows", r.rows},
          {"data", r.data},
          {"model_id", r.model_id},
          {"m",
           {{"deploy_wall", r.m.deploy_wall},
            {"deploy_cpu", r.m.deploy_cpu},
            {"train_wall", r.m.train_wall},
            {"train_cpu", r.m.train_cpu},
            {"peak_cpu", r.m.peak_cpu},
            {"peak_rss", r.m.peak_rss},
            {"energy_j", r.m.energy_j},
            {"energy_method", r.m.energy_method}}},
          {"logs", r.logs}};
}

run_record run_from_json(const json& j) {
  run_record r;
  if (!j.is_object())
    return r;
  take(j, "id", r.id);
  take(j, "actor", r.actor);
  take(j, "workflow", r.workflow);
  take(j, "version", r.version);
  take(j, "package_sha256", r.package_sha256);
  take(j, "trigger", r.trigger);
  take(j, "status", r.status);
  take(j, "error", r.error);
  take(j, "started", r.started);
  take(j, "finished", r.finished);
  take(j, "rows", r.rows);
  take(j, "data", r.data);
  take(j, "model_id", r.model_id);
  take(j, "logs", r.logs);
  if (auto m = j.find("m"); m != j.end() && m->is_object()) {
    take(*m, "deploy_wall", r.m.deploy_wall);
    take(*m, "deploy_cpu", r.m.deploy_cpu);
    take(*m, "train_wall", r.m.train_wall);
    take(*m, "train_cpu", r.m.train_cpu);
    take(*m, "peak_cpu", r.m.peak_cpu);
    take(*m, "peak_rss", r.m.peak_rss);
    take(*m, "energy_j", r.m.energy_j);
    take(*m, "energy_method", r.m.energy_method);
  }
  return r;
}

std::string describe_run(const run_record& r) {
  std::string out = "run " + std::to_string(r.id) + " " + r.actor;
  if (!r.workflow.empty())
    out += " (" + r.workflow + (r.version.empty() ? "" : " " + r.version) + ")";
  out += ": " + (r.status.empty() ? std::string{"unknown"} : r.status);
  if (r.rows > 0 || !r.data.empty()) {
    out += ", " + std::to_string(r.rows) + " rows";
    if (!r.data.empty())
      out += " of " + r.data;
  }
  if (!r.model_id.empty())
    out += ", model " + r.model_id.substr(0, 12);
  auto timed = [&](const char* what, int64_t wall, int64_t cpu) {
    if (wall <= 0)
      return;
    out += std::string{", "} + what + " " + describe_duration(wall);
    if (cpu > 0)
      out += " (CPU " + describe_duration(cpu) + ")";
  };
  timed("train", r.m.train_wall, r.m.train_cpu);
  timed("deploy", r.m.deploy_wall, r.m.deploy_cpu);
  if (r.m.peak_cpu > 0)
    out += ", peak CPU " + std::to_string(std::lround(r.m.peak_cpu * 100)) + "%";
  if (r.m.peak_rss > 0)
    out += ", peak RSS " + format_size_approx(r.m.peak_rss);
  if (r.m.energy_j > 0) {
    out += ", energy " + describe_energy(r.m.energy_j);
    if (!r.m.energy_method.empty())
      out += " (" + r.m.energy_method + ")";
  }
  if (r.status != "succeeded" && !r.error.empty())
    out += ": " + r.error.substr(0, r.error.find('\n'));
  return out;
}

// -- open -----------------------------------------------------------------------------------

struct registry::impl {
  lmdb::env env;
  MDB_dbi meta = 0;
  MDB_dbi packages = 0;
  MDB_dbi blobs = 0;
  MDB_dbi models = 0;
  MDB_dbi serving = 0;
  MDB_dbi runs = 0;
  std::shared_ptr<writer_token> writer; ///< null when read-only

  std::string where() const { return env.dir().string(); }

  /// `key` for a database, or ec::invalid_argument when LMDB would refuse its length.
  expected<std::string> checked_key(std::string key, std::string_view what) const {
    if (key.empty() || key.size() > env.max_key_size())
      return make_error(ec::invalid_argument, std::string{what}
                                                + " is empty or too long for "
                                                  "a key of at most "
                                                + std::to_string(env.max_key_size()) + " bytes");
    return key;
  }

  /// Versions of `name` (all when empty) in `t`, by name then seq.
  expected<std::vector<package_version>> versions(lmdb::txn& t, std::string_view name) const {
    std::vector<package_version> out;
    auto c = lmdb::cursor::open(t, packages);
    if (!c)
      return c.err();
    auto prefix = name.empty() ? std::string{} : pair_key(name, {});
    auto at = prefix.empty() ? c->first() : c->seek(prefix);
    for (; at && *at && c->key().starts_with(prefix); at = c->next()) {
      auto v = parse_package(c->key(), c->value());
      if (!v)
        return make_error(ec::parse_error, "corrupt package entry in registry " + where());
      out.push_back(std::move(*v));
    }
    if (!at)
      return at.err();
    return out;
  }

  /// Marks runs left `running` by a previous process as interrupted.
  expected<void> interrupt_running(lmdb::txn& t) {
    auto c = lmdb::cursor::open(t, runs);
    if (!c)
      return c.err();
    auto now = now_ns();
    std::vector<std::pair<std::string, std::string>> changed;
    auto at = c->first();
    for (; at && *at; at = c->next()) {
      // dump() writes no spaces: the substring skips parsing every finished run.
      if (c->value().find(R"("status":"running")") == std::string_view::npos)
        continue;
      auto r = run_from_json(json::parse(c->value(), nullptr, false));
      if (r.status != "running")
        continue;
      r.status = "interrupted";
      r.finished = now;
      r.error = "the engine stopped during the run";
      changed.emplace_back(std::string{c->key()}, dump(to_json(r)));
    }
    if (!at)
      return at.err();
    // Written after the walk: the cursor is not used across the puts.
    for (auto& [key, value] : changed)
      if (auto ok = t.put(runs, key, value); !ok)
        return ok.err();
    return {};
  }
};

registry::registry(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
registry::~registry() = default;
registry::registry(registry&&) noexcept = default;
registry& registry::operator=(registry&&) noexcept = default;

expected<registry> registry::open(const std::filesystem::path& dir, bool read_only) {
  lmdb::env_options eo;
  eo.dir = dir;
  eo.map_size = registry_initial_map_size;
  // Writes are rare (a package, a run's start and end) and a lost model is costly.
  eo.mode = durability::power;
  eo.read_only = read_only;
  eo.max_dbs = 8;
  auto env = lmdb::env::open(eo);
  if (!env)
    return env.err();
  auto d = std::make_unique<impl>();
  d->env = std::move(*env);
  bool recover = false;
  if (!read_only) {
    std::lock_guard guard{writers_mtx};
    std::erase_if(writers, [](auto& w) { return w.second.expired(); });
    auto key = d->where() + '\0' + std::to_string(getpid()); // fork() copies the map
    d->writer = writers[key].lock();
    if (!d->writer) {
      d->writer = std::make_shared<writer_token>();
      writers[key] = d->writer;
      recover = true;
    }
  }
  lmdb::layout layout;
  layout.dir = dir;
  layout.kind = "registry";
  layout.not_a = "fabrik registry";
  // Never turn another LMDB environment (a store, a spool) into a registry.
  layout.dbs = {{meta_db, &d->meta},     {packages_db, &d->packages}, {blobs_db, &d->blobs},
                {models_db, &d->models}, {serving_db, &d->serving},   {runs_db, &d->runs}};
  layout.meta = meta_db;
  layout.version_key = layout_key;
  layout.version = registry_layout_version;
  layout.stored_as = lmdb::layout::encoding::be64;
  // Recovery shares the transaction that checks the version.
  auto ok = lmdb::open_layout(d->env, layout, [&](lmdb::txn& t) -> expected<void> {
    if (recover)
      return d->interrupt_running(t);
    return {};
  });
  if (!ok)
    return ok.err();
  return registry{std::move(d)};
}

// -- packages -------------------------------------------------------------------------------

expected<add_package_result> registry::add_package(std::string_view zip,
                                                   const std::string& source) {
  auto info = read_package_bytes(zip, source);
  if (!info)
    return info.err();
  auto& d = *impl_;
  const auto& name = info->manifest.name;
  auto added = now_ns();
  return d.env.write([&](lmdb::txn& t) -> expected<add_package_result> {
    auto existing = d.versions(t, name);
    if (!existing)
      return existing.err();
    for (auto& v : *existing)
      if (v.sha256 == info->sha256)
        return add_package_result{v, false};
    package_version v;
    v.name = name;
    v.version = info->manifest.version;
    v.seq = existing->empty() ? 1 : existing->back().seq + 1;
    v.sha256 = info->sha256;
    v.source = source;
    v.added = added;
    v.size = zip.size();
    // Another name may hold the same content already (a Siemens zip named by its file).
    if (auto ok = t.put(d.blobs, v.sha256, zip, MDB_NOOVERWRITE); !ok)
      return ok.err();
    if (auto ok = t.put(d.packages, pair_key(name, lmdb::be64_key(v.seq)), package_value(v)); !ok)
      return ok.err();
    return add_package_result{std::move(v), true};
  });
}

expected<std::vector<package_version>> registry::versions(std::string_view name) const {
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  return impl_->versions(*t, name);
}

expected<package_version> registry::find(std::string_view name, std::string_view pin) const {
  if (name.empty())
    return make_error(ec::invalid_argument, "find needs a package name");
  auto all = versions(name);
  if (!all)
    return all.err();
  if (all->empty()) {
    auto every = versions();
    std::string names, last;
    if (every)
      for (auto& v : *every)
        if (std::exchange(last, v.name) != v.name) // sorted by name: each name once
          names += (names.empty() ? "" : ", ") + v.name;
    return make_error(ec::not_found, "no package named " + std::string{name} + " is stored"
                                       + (names.empty() ? "" : "; stored: " + names));
  }
  if (pin.empty())
    return all->back();
  for (auto v = all->rbegin(); v != all->rend(); ++v)
    if (v->version == pin)
      return *v;
  if (pin.size() >= 8 && is_hex(pin)) {
    auto prefix = lower(pin);
    for (auto v = all->rbegin(); v != all->rend(); ++v)
      if (v->sha256.starts_with(prefix))
        return *v;
  }
  std::string stored;
  for (auto& v : *all)
    stored += (stored.empty() ? "" : ", ") + v.version + " (#" + std::to_string(v.seq) + ")";
  return make_error(ec::not_found, "no version " + std::string{pin} + " of " + std::string{name}
                                     + "; stored: " + stored);
}

expected<std::string> registry::package_bytes(std::string_view sha256) const {
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  auto key = impl_->checked_key(std::string{sha256}, "a package hash");
  if (!key)
    return key.err();
  auto v = t->get(impl_->blobs, *key);
  if (!v)
    return v.err();
  if (!*v)
    return make_error(ec::not_found, "no package with sha256 " + std::string{sha256}
                                       + " in registry " + impl_->where());
  return std::string{**v};
}

// -- models ---------------------------------------------------------------------------------

expected<std::string> registry::put_model(model_record m) {
  m.id = sha256_hex(m.artifact.bytes);
  if (m.created == 0)
    m.created = now_ns();
  auto value = encode_model(m);
  auto& d = *impl_;
  auto ok = d.env.write([&](lmdb::txn& t) -> expected<bool> {
    // Content-addressed: the same bytes again keep the first record and its provenance.
    return t.put(d.models, m.id, value, MDB_NOOVERWRITE);
  });
  if (!ok)
    return ok.err();
  return m.id;
}

expected<model_record> registry::model(std::string_view id) const {
  auto key = impl_->checked_key(std::string{id}, "a model id");
  if (!key)
    return key.err();
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  auto v = t->get(impl_->models, *key);
  if (!v)
    return v.err();
  if (!*v)
    return make_error(ec::not_found,
                      "no model " + std::string{id} + " in registry " + impl_->where());
  return decode_model(id, **v, true);
}

expected<std::vector<model_record>> registry::models(std::string_view actor) const {
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  auto c = lmdb::cursor::open(*t, impl_->models);
  if (!c)
    return c.err();
  std::vector<model_record> out;
  auto at = c->first();
  for (; at && *at; at = c->next()) {
    auto m = decode_model(c->key(), c->value(), false);
    if (!m)
      return m.err();
    if (actor.empty() || m->actor == actor)
      out.push_back(std::move(*m));
  }
  if (!at)
    return at.err();
  std::stable_sort(out.begin(), out.end(), [](auto& a, auto& b) {
    return a.created != b.created ? a.created > b.created : a.run > b.run;
  });
  return out;
}

expected<void> registry::set_serving(std::string_view actor, std::string_view package_sha256,
                                     std::string_view model_id) {
  auto key = impl_->checked_key(pair_key(actor, package_sha256), "an actor name");
  if (!key)
    return key.err();
  auto& d = *impl_;
  return d.env.write([&](lmdb::txn& t) -> expected<void> {
    if (auto ok = t.put(d.serving, *key, model_id); !ok)
      return ok.err();
    return {};
  });
}

expected<std::optional<std::string>> registry::serving(std::string_view actor,
                                                       std::string_view package_sha256) const {
  auto key = impl_->checked_key(pair_key(actor, package_sha256), "an actor name");
  if (!key)
    return key.err();
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  auto v = t->get(impl_->serving, *key);
  if (!v)
    return v.err();
  if (!*v)
    return std::optional<std::string>{};
  return std::optional<std::string>{std::string{**v}};
}

// -- runs -----------------------------------------------------------------------------------

expected<uint64_t> registry::begin_run(run_record r) {
  if (r.status.empty())
    r.status = "running";
  if (r.started == 0)
    r.started = now_ns();
  auto& d = *impl_;
  return d.env.write([&](lmdb::txn& t) -> expected<uint64_t> {
    auto next = t.get(d.meta, next_run_key);
    if (!next)
      return next.err();
    uint64_t id = 1;
    if (*next) {
      auto n = lmdb::parse_be64_key(**next);
      if (!n)
        return make_error(ec::parse_error, "corrupt run counter in registry " + d.where());
      id = *n;
    }
    r.id = id;
    // MDB_APPEND: ids only grow, so LMDB skips the search.
    auto ok = t.put(d.runs, lmdb::be64_key(id), dump(to_json(r)), MDB_APPEND);
    if (!ok)
      return ok.err();
    if (!*ok)
      return make_error(ec::internal, "run counter " + std::to_string(id)
                                        + " is behind the last run in registry " + d.where());
    if (auto n = t.put(d.meta, next_run_key, lmdb::be64_key(id + 1)); !n)
      return n.err();
    return id;
  });
}

expected<void> registry::update_run(const run_record& r) {
  auto& d = *impl_;
  auto value = dump(to_json(r));
  return d.env.write([&](lmdb::txn& t) -> expected<void> {
    auto key = lmdb::be64_key(r.id);
    auto old = t.get(d.runs, key);
    if (!old)
      return old.err();
    if (!*old)
      return make_error(ec::not_found,
                        "no run " + std::to_string(r.id) + " in registry " + d.where());
    if (auto ok = t.put(d.runs, key, value); !ok)
      return ok.err();
    return {};
  });
}

expected<run_record> registry::run(uint64_t id) const {
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  auto v = t->get(impl_->runs, lmdb::be64_key(id));
  if (!v)
    return v.err();
  if (!*v)
    return make_error(ec::not_found,
                      "no run " + std::to_string(id) + " in registry " + impl_->where());
  auto j = json::parse(**v, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(ec::parse_error,
                      "corrupt run " + std::to_string(id) + " in registry " + impl_->where());
  return run_from_json(j);
}

expected<std::vector<run_record>> registry::runs(std::string_view actor, size_t limit) const {
  std::vector<run_record> out;
  if (limit == 0)
    return out;
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  auto c = lmdb::cursor::open(*t, impl_->runs);
  if (!c)
    return c.err();
  auto at = c->last();
  for (; at && *at && out.size() < limit; at = c->prev()) {
    auto j = json::parse(c->value(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return make_error(ec::parse_error, "corrupt run in registry " + impl_->where());
    auto r = run_from_json(j);
    if (actor.empty() || r.actor == actor)
      out.push_back(std::move(r));
  }
  if (!at)
    return at.err();
  return out;
}

} // namespace fabrik
