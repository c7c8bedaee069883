// The spool: a durable FIFO in its own LMDB env. Databases:
//   spool.entries  big-endian uint64 seq -> bytes (so byte order is seq order)
//   spool.state    "next_seq" -> big-endian uint64, the next seq to hand out;
//                  "layout_version" -> big-endian uint64, spool_layout_version
//   spool.meta     the caller's key/value side table
// The counter is persisted in the same transaction as each append, so a seq is never handed
// out twice, even after every entry was erased and the spool reopened.
// Thread safety comes from LMDB (one writer at a time, readers alongside, MDB_NOTLS) and
// from lmdb::env (map growth waits for every transaction of the process).

#include "core/spool.hpp"

#include "core/lmdb.hpp"

#include <algorithm>

namespace fabrik {

namespace {

constexpr const char* entries_db = "spool.entries";
constexpr const char* state_db = "spool.state";
constexpr const char* meta_db = "spool.meta";
constexpr const char* next_key = "next_seq";
constexpr const char* version_key = "layout_version";
/// Version of the spool's LMDB layout (docs/records.md, "Spool layout").
constexpr uint64_t spool_layout_version = 1;

} // namespace

struct spool::impl {
  lmdb::env env;
  MDB_dbi entries = 0;
  MDB_dbi state = 0;
  MDB_dbi meta = 0;
};

spool::spool(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
spool::~spool() = default;
spool::spool(spool&&) noexcept = default;
spool& spool::operator=(spool&&) noexcept = default;

expected<spool> spool::open(const std::filesystem::path& dir, durability mode, int64_t map_size) {
  lmdb::env_options eo;
  eo.dir = dir;
  eo.map_size = map_size;
  eo.mode = mode;
  eo.max_dbs = 4;
  eo.write_map = true; // one commit per MQTT message: this is the hot path
  auto env = lmdb::env::open(eo);
  if (!env)
    return env.err();
  auto d = std::make_unique<impl>();
  d->env = std::move(*env);
  lmdb::layout layout;
  layout.dir = dir;
  layout.kind = "spool";
  layout.not_a = "spool";
  layout.refusal = ec::invalid_argument;
  // Never write spool tables into another LMDB environment (a record store, say).
  layout.dbs = {{entries_db, &d->entries}, {state_db, &d->state}, {meta_db, &d->meta}};
  layout.always_refuse_foreign = true;
  layout.meta = state_db;
  layout.version_key = version_key;
  layout.version = spool_layout_version;
  layout.stored_as = lmdb::layout::encoding::be64;
  if (auto ok = lmdb::open_layout(d->env, layout); !ok)
    return ok.err();
  return spool{std::move(d)};
}

expected<uint64_t> spool::append(std::string_view data) {
  // The MQTT source's hot path: one entry, no vector.
  return append(std::span<const std::string_view>{&data, 1}, {});
}

namespace {

expected<void> check_meta_key(const lmdb::env& env, std::string_view key) {
  if (key.empty() || key.size() > env.max_key_size())
    return make_error(ec::invalid_argument, "spool meta keys take 1 to "
                                              + std::to_string(env.max_key_size()) + " bytes, not "
                                              + std::to_string(key.size()));
  return {};
}

} // namespace

expected<uint64_t> spool::append(std::span<const std::string_view> data,
                                 const std::vector<std::pair<std::string, std::string>>& meta) {
  auto& d = *impl_;
  for (auto& [key, value] : meta)
    if (auto ok = check_meta_key(d.env, key); !ok)
      return ok.err();
  return d.env.write([&](lmdb::txn& t) -> expected<uint64_t> {
    auto stored = t.get(d.state, next_key);
    if (!stored)
      return stored.err();
    uint64_t first = 1;
    if (*stored) {
      auto n = lmdb::parse_be64_key(**stored);
      if (!n)
        return make_error(ec::parse_error, "corrupt spool counter in " + d.env.dir().string());
      first = *n;
    }
    uint64_t seq = first;
    for (auto one : data) {
      // MDB_APPEND: the key is known to be the largest, so LMDB skips the search.
      auto ok = t.put(d.entries, lmdb::be64_key(seq), one, MDB_APPEND);
      if (!ok)
        return ok.err();
      if (!*ok)
        return make_error(ec::internal,
                          "spool counter " + std::to_string(seq) + " is behind its last entry");
      ++seq;
    }
    if (seq != first)
      if (auto next = t.put(d.state, next_key, lmdb::be64_key(seq)); !next)
        return next.err();
    for (auto& [key, value] : meta)
      if (auto ok = t.put(d.meta, key, value); !ok)
        return ok.err();
    return first;
  });
}

expected<std::vector<spool::entry>> spool::read(uint64_t from, size_t max) const {
  std::vector<entry> out;
  auto ok = visit(from, max, [&](uint64_t seq, std::string_view data) {
    out.push_back(entry{seq, std::string{data}});
    return true;
  });
  if (!ok)
    return ok.err();
  return out;
}

expected<void> spool::visit(uint64_t from, size_t max,
                            const std::function<bool(uint64_t, std::string_view)>& take) const {
  auto& d = *impl_;
  if (max == 0)
    return {};
  auto t = d.env.read();
  if (!t)
    return t.err();
  auto c = lmdb::cursor::open(*t, d.entries);
  if (!c)
    return c.err();
  size_t n = 0;
  auto at = c->seek(lmdb::be64_key(from));
  for (; at && *at && n < max; at = c->next(), ++n) {
    auto seq = lmdb::parse_be64_key(c->key());
    if (!seq)
      return make_error(ec::parse_error, "corrupt spool key in " + d.env.dir().string());
    if (!take(*seq, c->value()))
      return {};
  }
  if (!at)
    return at.err();
  return {};
}

expected<void> spool::erase(const std::vector<uint64_t>& seqs) {
  auto& d = *impl_;
  if (seqs.empty())
    return {};
  // Sorted: deleting in key order touches each page once.
  auto sorted = seqs;
  std::sort(sorted.begin(), sorted.end());
  return d.env.write([&](lmdb::txn& t) -> expected<void> {
    for (auto seq : sorted)
      if (auto ok = t.del(d.entries, lmdb::be64_key(seq)); !ok)
        return ok.err();
    return {};
  });
}

uint64_t spool::size() const {
  auto t = impl_->env.read();
  if (!t)
    return 0;
  auto n = t->entries(impl_->entries);
  return n ? *n : 0;
}

expected<void> spool::put_meta(std::string_view key, std::string_view value) {
  return put_meta({{std::string{key}, std::string{value}}});
}

expected<void> spool::put_meta(const std::vector<std::pair<std::string, std::string>>& pairs) {
  auto first = append(std::span<const std::string_view>{}, pairs);
  if (!first)
    return first.err();
  return {};
}

std::optional<std::string> spool::get_meta(std::string_view key) const {
  auto& d = *impl_;
  if (key.empty() || key.size() > d.env.max_key_size())
    return std::nullopt;
  auto t = d.env.read();
  if (!t)
    return std::nullopt;
  auto v = t->get(d.meta, key);
  if (!v || !*v)
    return std::nullopt;
  return std::string{**v};
}

} // namespace fabrik
