// The `storage` kind: an LMDB record store as an actor. Batches are committed in one
// transaction each and answered only after the commit, so an upstream that waits for the
// reply (the MQTT source) knows its records are durable.

#include "actors/actors.hpp"
#include "actors/spawn.hpp"
#include "core/log.hpp"
#include "core/store.hpp"
#include "core/telemetry.hpp"
#include "core/time.hpp"
#include "flows/kind.hpp"

#include <caf/all.hpp>

namespace fabrik {
namespace {

const settings_table retention_settings{{
  {.name = "max_age",
   .type = setting_type::duration,
   .default_value = "0",
   .doc = "delete records older than this (by source time); 0 keeps them forever",
   .min = 0},
  {.name = "max_size",
   .type = setting_type::size,
   .default_value = "0",
   .doc = "delete the stream's oldest records while it holds more than this; 0 = no limit",
   .min = 0},
}};

const settings_table storage_settings{{
  {.name = "path",
   .type = setting_type::string,
   .doc = "directory of the LMDB files; default DATA_DIR/storage/ACTOR; a relative path "
          "resolves against the flow file's folder"},
  {.name = "durability",
   .type = setting_type::choice,
   .default_value = "process",
   .doc = "process: commits survive any crash of fabrik (no fsync); power: fsync'd, "
          "survive power loss, slower",
   .choices = {"process", "power"}},
  {.name = "map_size",
   .type = setting_type::size,
   .default_value = "1GiB",
   .doc = "initial LMDB map size; grown automatically when full",
   .min = 1 << 20},
  {.name = "max_age",
   .type = setting_type::duration,
   .default_value = "0",
   .doc = "retention: delete records older than this; 0 keeps them forever",
   .min = 0},
  {.name = "max_size",
   .type = setting_type::size,
   .default_value = "0",
   .doc = "retention: while the whole store holds more record data than this, delete the "
          "oldest records, whatever their stream; 0 = no limit",
   .min = 0},
  {.name = "streams",
   .type = setting_type::object_map,
   .doc = "per-stream retention: a stream name, `prefix/*` or `*` -> max_age, max_size "
          "(an override replaces the store's max_age for that stream)",
   .children = &retention_settings},
  {.name = "retention_interval",
   .type = setting_type::duration,
   .default_value = "1m",
   .doc = "how often retention runs",
   .min = 1e9},
}};

struct storage_state {
  static inline const char* name = "storage";
  std::optional<store> db;
  actor_status st;
  uint64_t duplicates = 0;
  uint64_t rejected = 0;
  int64_t retention_interval = 0;
  log_limiter limiter;
  std::shared_ptr<telemetry> live; ///< recent values for the web UI; may be null
};

caf::behavior storage(caf::stateful_actor<storage_state>* self, store_options opts, actor_status st,
                      int64_t retention_interval, std::shared_ptr<telemetry> live) {
  auto& s = self->state;
  s.st = std::move(st);
  s.live = std::move(live);
  s.retention_interval = retention_interval;
  auto db = store::open(opts);
  if (!db) {
    s.st.state = "failed";
    s.st.last_error = db.err().what();
    spdlog::error("{}: cannot open storage {}: {}", s.st.name, opts.dir.string(), db.err().message);
  } else {
    s.db.emplace(std::move(*db));
    s.st.state = "running";
    spdlog::info("{}: storage open at {} (durability {})", s.st.name, opts.dir.string(),
                 opts.mode == durability::power ? "power" : "process");
  }
  self->delayed_send(self, std::chrono::nanoseconds{retention_interval}, tick_atom::value);
  return {
    [=](const record_batch& batch) -> caf::result<uint64_t> {
      auto& s = self->state;
      s.st.in += batch.records.size();
      if (!s.db)
        return caf::make_error(caf::sec::runtime_error, s.st.last_error);
      auto r = s.db->put(batch.records);
      if (!r) {
        ++s.st.errors;
        s.st.last_error = r.err().what();
        s.st.state = "degraded";
        if (s.limiter.allow())
          spdlog::error("{}: write failed ({} more suppressed): {}", s.st.name,
                        s.limiter.suppressed(), r.err().message);
        return caf::make_error(caf::sec::runtime_error, r.err().what());
      }
      s.st.state = "running";
      s.st.out += r->stored;
      if (s.live)
        s.live->add(batch.records, s.st.name);
      s.duplicates += r->duplicates;
      if (r->rejected > 0) {
        s.rejected += r->rejected;
        ++s.st.errors;
        s.st.last_error = std::to_string(r->rejected) + " records with an unusable stream name";
      }
      return static_cast<uint64_t>(batch.records.size());
    },
    [=](query_atom, const scan_request& q) -> caf::result<record_batch> {
      auto& s = self->state;
      if (!s.db)
        return caf::make_error(caf::sec::runtime_error, s.st.last_error);
      record_batch out;
      scan_range range{q.stream, q.from, q.to, static_cast<size_t>(q.limit), q.newest_first};
      auto r = s.db->scan(range, [&](record&& rec) {
        out.records.push_back(std::move(rec));
        return true;
      });
      if (!r)
        return caf::make_error(caf::sec::runtime_error, r.err().what());
      return out;
    },
    [=](streams_atom) -> caf::result<std::vector<stream_info>> {
      auto& s = self->state;
      if (!s.db)
        return caf::make_error(caf::sec::runtime_error, s.st.last_error);
      auto list = s.db->streams();
      if (!list)
        return caf::make_error(caf::sec::runtime_error, list.err().what());
      return std::move(*list);
    },
    [=](status_atom) -> actor_status {
      auto& s = self->state;
      auto st = s.st;
      st.details["duplicates"] = std::to_string(s.duplicates);
      st.details["rejected"] = std::to_string(s.rejected);
      if (s.db) {
        st.details["file_size"] = format_size(static_cast<int64_t>(s.db->file_size()));
        st.details["file_bytes"] = std::to_string(s.db->file_size()); // for /metrics
      }
      return st;
    },
    [=](tick_atom) {
      auto& s = self->state;
      if (s.db) {
        auto r = s.db->apply_retention(now_ns());
        if (!r) {
          ++s.st.errors;
          s.st.last_error = r.err().what();
          spdlog::warn("{}: retention failed: {}", s.st.name, r.err().message);
        } else if (*r > 0) {
          spdlog::info("{}: retention deleted {} records", s.st.name, *r);
        }
      }
      self->delayed_send(self, std::chrono::nanoseconds{s.retention_interval}, tick_atom::value);
    },
  };
}

retention to_retention(const config& c) { return {c.integer("max_age"), c.integer("max_size")}; }

caf::actor spawn_storage(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  store_options opts;
  opts.dir = c.has("path") ? ctx.f.resolve(c.str("path")) : ctx.state_dir("storage");
  opts.mode = c.str("durability") == "power" ? durability::power : durability::process;
  opts.map_size = c.integer("map_size");
  opts.keep = to_retention(c);
  if (c.has("streams"))
    for (auto& [pattern, sub] : c.objects("streams"))
      opts.stream_keep.emplace_back(pattern, to_retention(sub));
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "storage";
  // Detached: LMDB commits block, and must not stall the scheduler's few threads.
  return ctx.sys.spawn<caf::detached>(storage, std::move(opts), std::move(st),
                                      c.integer("retention_interval"), ctx.live);
}

const kind storage_kind{
  .name = "storage",
  .summary = "keeps records in LMDB, keyed by stream and time; answers range queries",
  .role = kind_role::sink,
  .settings = &storage_settings,
  .spawn = &spawn_storage,
  .details = "A batch is committed in one transaction and acknowledged only after the "
             "commit. A redelivered record (same stream, source time and content) is "
             "stored once. Look inside with `fabrik store PATH`.",
};

FABRIK_REGISTER_KIND(storage_kind);

} // namespace
} // namespace fabrik
