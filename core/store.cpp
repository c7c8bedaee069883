// The record store. One LMDB env, three databases (docs/records.md, "Storage layout"):
//   meta     "layout_version" -> uint32 LE
//   records  record_key(r) -> encode(r)
//   streams  stream name -> count, first, last, bytes (4 x 8 bytes LE)
// `streams` changes in the same transaction as every put and every retention delete, so
// listing streams never scans records.

#include "core/store.hpp"

#include "core/lmdb.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

namespace fabrik {

namespace {

constexpr const char* layout_key = "layout_version";
/// Deletes per retention transaction: bounded, so a put never waits long behind retention.
constexpr size_t retention_chunk = 10000;

void put_le64(std::string& out, uint64_t x) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
}

uint64_t get_le64(std::string_view s) {
  uint64_t x = 0;
  for (int i = 7; i >= 0; --i)
    x = (x << 8) | static_cast<unsigned char>(s[static_cast<size_t>(i)]);
  return x;
}

std::string encode_stats(const stream_info& s) {
  std::string out;
  out.reserve(32);
  put_le64(out, s.count);
  put_le64(out, static_cast<uint64_t>(s.first));
  put_le64(out, static_cast<uint64_t>(s.last));
  put_le64(out, s.bytes);
  return out;
}

expected<stream_info> decode_stats(std::string_view name, std::string_view v) {
  if (v.size() != 32)
    return make_error(ec::parse_error, "corrupt statistics of stream '" + std::string{name} + "' ("
                                         + std::to_string(v.size()) + " bytes)");
  stream_info s;
  s.name = std::string{name};
  s.count = get_le64(v.substr(0, 8));
  s.first = static_cast<int64_t>(get_le64(v.substr(8, 8)));
  s.last = static_cast<int64_t>(get_le64(v.substr(16, 8)));
  s.bytes = get_le64(v.substr(24, 8));
  return s;
}

uint64_t minus(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/// The override that applies to `name`: exact name, else the longest `prefix/*`, else `*`.
const retention* find_override(const store_options& o, std::string_view name) {
  const retention* best = nullptr;
  size_t best_len = 0;
  const retention* any = nullptr;
  for (auto& [pattern, keep] : o.stream_keep) {
    if (pattern == name)
      return &keep;
    if (pattern == "*") {
      any = &keep;
    } else if (pattern.size() >= 2 && pattern.ends_with("/*")) {
      auto prefix = std::string_view{pattern}.substr(0, pattern.size() - 1); // keeps the '/'
      if (name.starts_with(prefix) && prefix.size() > best_len) {
        best = &keep;
        best_len = prefix.size();
      }
    }
  }
  return best ? best : any;
}

struct deleted {
  size_t records = 0;
  uint64_t bytes = 0;
};

} // namespace

struct store::impl {
  store_options opts;
  lmdb::env env;
  MDB_dbi meta = 0;
  MDB_dbi records = 0;
  MDB_dbi streams = 0;
  size_t max_stream = max_stream_size;

  expected<void> writable() const {
    if (env.read_only())
      return make_error(ec::invalid_argument, "store " + opts.dir.string() + " is open read-only");
    return {};
  }

  /// The stats of `stream` in `t`; nullopt when the stream has none.
  expected<std::optional<stream_info>> stats(lmdb::txn& t, std::string_view stream) const {
    auto v = t.get(streams, stream);
    if (!v)
      return v.err();
    if (!*v)
      return std::optional<stream_info>{};
    auto s = decode_stats(stream, **v);
    if (!s)
      return s.err();
    return std::optional<stream_info>{std::move(*s)};
  }

  /// In `t`: deletes the oldest records of `st`'s stream with time <= `max_time`, until
  /// `to_free` bytes or `max_records` records are gone, and writes the stream's new stats.
  expected<deleted> delete_oldest(lmdb::txn& t, stream_info& st, int64_t max_time, uint64_t to_free,
                                  size_t max_records) {
    auto c = lmdb::cursor::open(t, records);
    if (!c)
      return c.err();
    auto start = record_key_prefix(st.name, INT64_MIN);
    deleted out;
    auto at = c->seek(start);
    for (; at && *at && out.records < max_records && out.bytes < to_free; at = c->next()) {
      auto parts = parse_record_key(c->key());
      if (!parts || parts->stream != st.name || parts->time > max_time)
        break;
      out.bytes += c->key().size() + c->value().size();
      ++out.records;
      if (auto ok = c->del(); !ok)
        return ok.err();
    }
    if (!at)
      return at.err();
    // The new oldest record, if any: the stats follow what is really there.
    auto first = c->seek(start);
    if (!first)
      return first.err();
    std::optional<key_parts> left;
    if (*first)
      if (auto parts = parse_record_key(c->key()); parts && parts->stream == st.name)
        left = *parts;
    if (!left) {
      st.count = 0;
      st.bytes = 0;
      if (auto ok = t.del(streams, st.name); !ok)
        return ok.err();
      return out;
    }
    st.count = std::max<uint64_t>(minus(st.count, out.records), 1);
    st.bytes = minus(st.bytes, out.bytes);
    st.first = left->time;
    st.last = std::max(st.last, st.first);
    if (auto ok = t.put(streams, st.name, encode_stats(st)); !ok)
      return ok.err();
    return out;
  }

  /// All stream stats in `t`.
  expected<std::vector<stream_info>> all_stats(lmdb::txn& t) const {
    auto c = lmdb::cursor::open(t, streams);
    if (!c)
      return c.err();
    std::vector<stream_info> out;
    auto at = c->first();
    for (; at && *at; at = c->next()) {
      auto s = decode_stats(c->key(), c->value());
      if (!s)
        return s.err();
      out.push_back(std::move(*s));
    }
    if (!at)
      return at.err();
    return out;
  }

  /// Retention by age and by per-stream size for one stream; `seen` are its stats as
  /// listed before, to skip write transactions that would delete nothing.
  expected<size_t> retain_stream(const stream_info& seen, int64_t now) {
    const auto& name = seen.name;
    const retention* over = find_override(opts, name);
    int64_t max_age = over ? over->max_age : opts.keep.max_age;
    int64_t max_size = over ? over->max_size : 0; // the global max_size bounds the store
    size_t total = 0;
    if (max_age > 0 && now > INT64_MIN + max_age && seen.first < now - max_age) {
      int64_t newest_dropped = now - max_age - 1; // keep time >= now - max_age
      for (;;) {
        auto r = env.write([&](lmdb::txn& t) -> expected<deleted> {
          auto st = stats(t, name);
          if (!st)
            return st.err();
          if (!*st || (*st)->first > newest_dropped)
            return deleted{};
          return delete_oldest(t, **st, newest_dropped, UINT64_MAX, retention_chunk);
        });
        if (!r)
          return r.err();
        total += r->records;
        if (r->records < retention_chunk)
          break;
      }
    }
    if (max_size > 0 && seen.bytes > static_cast<uint64_t>(max_size)) {
      for (;;) {
        auto r = env.write([&](lmdb::txn& t) -> expected<deleted> {
          auto st = stats(t, name);
          if (!st)
            return st.err();
          if (!*st || (*st)->bytes <= static_cast<uint64_t>(max_size))
            return deleted{};
          auto excess = (*st)->bytes - static_cast<uint64_t>(max_size);
          return delete_oldest(t, **st, INT64_MAX, excess, retention_chunk);
        });
        if (!r)
          return r.err();
        total += r->records;
        if (r->records == 0)
          break;
      }
    }
    return total;
  }

  /// Retention by the global max_size: the oldest records of the whole store go first.
  expected<size_t> retain_store_size(uint64_t max_size) {
    size_t total = 0;
    for (;;) {
      auto r = env.write([&](lmdb::txn& t) -> expected<deleted> {
        auto all = all_stats(t);
        if (!all)
          return all.err();
        uint64_t bytes = 0;
        std::set<std::pair<int64_t, size_t>> oldest; // (first time, index into all)
        for (size_t i = 0; i < all->size(); ++i) {
          bytes += (*all)[i].bytes;
          oldest.emplace((*all)[i].first, i);
        }
        deleted out;
        if (bytes <= max_size)
          return out;
        uint64_t excess = bytes - max_size;
        while (out.bytes < excess && out.records < retention_chunk && !oldest.empty()) {
          auto i = oldest.begin()->second;
          oldest.erase(oldest.begin());
          // Delete up to the next stream's oldest time, then let that stream take over.
          int64_t until = oldest.empty() ? INT64_MAX : oldest.begin()->first;
          auto& st = (*all)[i];
          auto d = delete_oldest(t, st, until, excess - out.bytes, retention_chunk - out.records);
          if (!d)
            return d.err();
          out.records += d->records;
          out.bytes += d->bytes;
          if (st.count > 0)
            oldest.emplace(st.first, i);
        }
        return out;
      });
      if (!r)
        return r.err();
      total += r->records;
      if (r->records == 0)
        break;
    }
    return total;
  }
};

store::store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
store::~store() = default;
store::store(store&&) noexcept = default;
store& store::operator=(store&&) noexcept = default;

expected<store> store::open(const store_options& opts) {
  std::error_code err;
  const auto& dir = opts.dir;
  if (opts.read_only) {
    if (!std::filesystem::is_directory(dir, err))
      return make_error(ec::not_found, "no store at " + dir.string() + ": no such directory");
    if (!std::filesystem::exists(dir / "data.mdb", err))
      return make_error(ec::not_found, dir.string() + " is not a store: it holds no data.mdb");
  }
  auto d = std::make_unique<impl>();
  d->opts = opts;
  lmdb::env_options eo;
  eo.dir = dir;
  eo.map_size = opts.map_size;
  eo.mode = opts.mode;
  eo.read_only = opts.read_only;
  eo.max_dbs = 4;
  auto env = lmdb::env::open(eo);
  if (!env)
    return env.err();
  d->env = std::move(*env);
  d->max_stream = std::min(max_stream_size, d->env.max_key_size() - 17);
  lmdb::layout layout;
  layout.dir = dir;
  layout.kind = "store";
  layout.not_a = "fabrik store";
  // Never turn another LMDB environment (a spool, say) into a store by writing into it.
  layout.dbs = {{"meta", &d->meta}, {"records"}, {"streams"}};
  layout.meta = "meta";
  layout.version_key = layout_key;
  layout.version = store_layout_version;
  layout.stored_as = lmdb::layout::encoding::u32_le;
  if (auto ok = lmdb::open_layout(d->env, layout); !ok)
    return ok.err();
  auto records = d->env.db("records", !opts.read_only);
  auto streams = d->env.db("streams", !opts.read_only);
  if (!records || !streams)
    return layout.refuse("it lacks the records or streams database");
  d->records = *records;
  d->streams = *streams;
  return store{std::move(d)};
}

expected<put_result> store::put(const std::vector<record>& records) {
  auto& d = *impl_;
  if (auto ok = d.writable(); !ok)
    return ok.err();
  put_result res;
  struct item {
    std::string key;
    std::string value;
    const record* rec;
  };
  std::vector<item> items;
  items.reserve(records.size());
  for (auto& r : records) {
    if (r.stream.empty() || r.stream.size() > d.max_stream
        || r.stream.find('\0') != std::string::npos) {
      ++res.rejected;
      continue;
    }
    item it{record_key(r), {}, &r};
    encode(r, it.value);
    items.push_back(std::move(it));
  }
  if (items.empty())
    return res;
  // Inserting in key order touches each B-tree page once.
  std::sort(items.begin(), items.end(), [](const item& a, const item& b) { return a.key < b.key; });
  return d.env.write([&](lmdb::txn& t) -> expected<put_result> {
    put_result out = res;
    std::map<std::string_view, stream_info> touched;
    for (auto& it : items) {
      auto ok = t.put(d.records, it.key, it.value, MDB_NOOVERWRITE);
      if (!ok)
        return ok.err();
      if (!*ok) {
        ++out.duplicates;
        continue;
      }
      ++out.stored;
      const record& r = *it.rec;
      auto [pos, fresh] = touched.try_emplace(r.stream);
      auto& st = pos->second;
      if (fresh) {
        auto old = d.stats(t, r.stream);
        if (!old)
          return old.err();
        if (*old)
          st = std::move(**old);
        else
          st.name = r.stream;
      }
      st.first = st.count == 0 ? r.time : std::min(st.first, r.time);
      st.last = st.count == 0 ? r.time : std::max(st.last, r.time);
      ++st.count;
      st.bytes += it.key.size() + it.value.size();
    }
    for (auto& [name, st] : touched)
      if (auto ok = t.put(d.streams, name, encode_stats(st)); !ok)
        return ok.err();
    return out;
  });
}

expected<std::vector<stream_info>> store::streams() const {
  auto t = impl_->env.read();
  if (!t)
    return t.err();
  return impl_->all_stats(*t);
}

expected<size_t> store::scan(const scan_range& range,
                             const std::function<bool(record&&)>& fn) const {
  auto& d = *impl_;
  if (range.from >= range.to || range.limit == 0)
    return size_t{0};
  auto t = d.env.read();
  if (!t)
    return t.err();
  auto c = lmdb::cursor::open(*t, d.records);
  if (!c)
    return c.err();
  // Both bounds start with the stream and its 0 byte: no other stream's key lies between.
  auto start = record_key_prefix(range.stream, range.from);
  auto end = record_key_prefix(range.stream, range.to);
  if (range.newest_first && range.limit != SIZE_MAX) {
    // Walk back `limit` records from the end to find where the newest N begin.
    auto at = c->seek(end);
    if (!at)
      return at.err();
    at = *at ? c->prev() : c->last();
    size_t n = 0;
    std::string first;
    for (; at && *at && n < range.limit && c->key() >= start; at = c->prev(), ++n)
      first = std::string{c->key()};
    if (!at)
      return at.err();
    if (n == 0)
      return size_t{0};
    start = std::move(first);
  }
  size_t n = 0;
  auto at = c->seek(start);
  for (; at && *at && n < range.limit && c->key() < end; at = c->next()) {
    auto rec = decode_record(c->value());
    if (!rec)
      return make_error(rec.err().code,
                        "stored record of " + range.stream + ": " + rec.err().message);
    ++n;
    if (!fn(std::move(*rec)))
      break;
  }
  if (!at)
    return at.err();
  return n;
}

expected<size_t> store::apply_retention(int64_t now) {
  auto& d = *impl_;
  if (auto ok = d.writable(); !ok)
    return ok.err();
  auto list = streams();
  if (!list)
    return list.err();
  size_t total = 0;
  for (auto& s : *list) {
    auto n = d.retain_stream(s, now);
    if (!n)
      return n.err();
    total += *n;
  }
  uint64_t listed = 0;
  for (auto& s : *list)
    listed += s.bytes;
  // The listed sizes only shrank since: under the limit then means under it now.
  if (d.opts.keep.max_size > 0 && listed > static_cast<uint64_t>(d.opts.keep.max_size)) {
    auto n = d.retain_store_size(static_cast<uint64_t>(d.opts.keep.max_size));
    if (!n)
      return n.err();
    total += *n;
  }
  return total;
}

uint64_t store::file_size() const { return impl_->env.file_size(); }

const store_options& store::options() const { return impl_->opts; }

} // namespace fabrik
