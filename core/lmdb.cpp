// The LMDB wrapper: env sharing, transactions holding the grow lock, cursors that die
// with their transaction, map growth.

#include "core/lmdb.hpp"

#include "core/time.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <vector>

namespace fabrik::lmdb {

error to_error(int rc, std::string_view what) {
  std::string msg{what};
  msg += ": ";
  msg += mdb_strerror(rc);
  switch (rc) {
    case MDB_MAP_FULL:
      return make_error(ec::storage_full, std::move(msg));
    case ENOSPC:
    case EDQUOT:
      return make_error(ec::storage_full, std::move(msg) + " (disk full)");
    case MDB_NOTFOUND:
    case ENOENT:
      return make_error(ec::not_found, std::move(msg));
    case MDB_VERSION_MISMATCH:
      return make_error(ec::version_mismatch, std::move(msg));
    case MDB_INVALID:
      return make_error(ec::parse_error, std::move(msg));
    case MDB_BAD_VALSIZE:
      return make_error(ec::invalid_argument, std::move(msg));
    case MDB_READERS_FULL:
      return make_error(ec::unavailable, std::move(msg));
    case MDB_TXN_FULL:
      return make_error(ec::invalid_argument, std::move(msg) + " (write fewer records at once)");
    default:
      return make_error(ec::io_error, std::move(msg));
  }
}

std::string be64_key(uint64_t x) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i, x >>= 8)
    key[static_cast<size_t>(i)] = static_cast<char>(x & 0xff);
  return key;
}

std::optional<uint64_t> parse_be64_key(std::string_view key) {
  if (key.size() != 8)
    return std::nullopt;
  uint64_t x = 0;
  for (unsigned char c : key)
    x = (x << 8) | c;
  return x;
}

// -- state ------------------------------------------------------------------------

struct env_state {
  MDB_env* env = nullptr;
  std::filesystem::path dir;
  bool read_only = false;
  pid_t pid = 0;
  /// Held shared by every txn, exclusively to resize the map.
  mutable std::shared_mutex grow_mtx;
  /// Guards `dbs`; mdb_dbi_open must not run in two transactions at once.
  std::mutex db_mtx;
  std::map<std::string, MDB_dbi> dbs;

  ~env_state() {
    if (env)
      mdb_env_close(env);
  }
};

struct cursor_state {
  MDB_cursor* c = nullptr;
  txn_state* t = nullptr;
  MDB_val k{0, nullptr};
  MDB_val v{0, nullptr};
};

struct txn_state {
  MDB_txn* txn = nullptr;
  std::shared_ptr<env_state> env;
  std::shared_lock<std::shared_mutex> lock;
  bool write = false;
  bool map_full = false;
  std::vector<cursor_state*> cursors;

  /// Ends the txn (commit or abort) and detaches cursors; returns LMDB's code.
  int finish(bool commit) {
    for (auto* c : cursors) {
      // LMDB frees a write txn's cursors itself; a read txn's must be closed by us.
      if (!write && c->c)
        mdb_cursor_close(c->c);
      c->c = nullptr;
      c->t = nullptr;
    }
    cursors.clear();
    int rc = 0;
    if (txn) {
      if (commit)
        rc = mdb_txn_commit(txn);
      else
        mdb_txn_abort(txn);
      txn = nullptr;
    }
    if (lock.owns_lock())
      lock.unlock();
    return rc;
  }
};

namespace {

std::mutex registry_mtx;
std::map<std::string, std::weak_ptr<env_state>> registry;

size_t page_round(int64_t size) {
  auto page = static_cast<size_t>(std::max(4096L, sysconf(_SC_PAGESIZE)));
  auto n = static_cast<size_t>(std::max<int64_t>(size, 1));
  return (n + page - 1) / page * page;
}

/// Another process grew the map beyond ours: adopt its size (needs no txn active here).
expected<void> adopt_map_size(env_state& s) {
  std::unique_lock guard{s.grow_mtx};
  if (int rc = mdb_env_set_mapsize(s.env, 0); rc != 0)
    return to_error(rc, "cannot adopt the grown map of " + s.dir.string());
  return {};
}

} // namespace

// -- txn --------------------------------------------------------------------------

txn::txn() = default;
txn::~txn() { abort(); }
txn::txn(txn&&) noexcept = default;
txn& txn::operator=(txn&& other) noexcept {
  if (this != &other) {
    abort();
    s_ = std::move(other.s_);
  }
  return *this;
}

MDB_txn* txn::get() const { return s_ ? s_->txn : nullptr; }

bool txn::writable() const { return s_ && s_->write; }

bool txn::map_full() const { return s_ && s_->map_full; }

error txn::fail(int rc, std::string_view what) {
  if (rc == MDB_MAP_FULL && s_)
    s_->map_full = true;
  return to_error(rc, what);
}

expected<void> txn::commit() {
  if (!s_ || !s_->txn)
    return make_error(ec::internal, "commit of a finished transaction");
  if (int rc = s_->finish(true); rc != 0)
    return fail(rc, "cannot commit to " + s_->env->dir.string());
  return {};
}

void txn::abort() {
  if (s_)
    s_->finish(false);
}

expected<std::optional<std::string_view>> txn::get(MDB_dbi db, std::string_view key) const {
  MDB_val k = val(key), v{0, nullptr};
  int rc = mdb_get(get(), db, &k, &v);
  if (rc == MDB_NOTFOUND)
    return std::optional<std::string_view>{};
  if (rc != 0)
    return to_error(rc, "cannot read");
  return std::optional<std::string_view>{view(v)};
}

expected<bool> txn::put(MDB_dbi db, std::string_view key, std::string_view value, unsigned flags) {
  MDB_val k = val(key), v = val(value);
  int rc = mdb_put(get(), db, &k, &v, flags);
  if (rc == MDB_KEYEXIST)
    return false;
  if (rc != 0)
    return fail(rc, "cannot write");
  return true;
}

expected<bool> txn::del(MDB_dbi db, std::string_view key) {
  MDB_val k = val(key);
  int rc = mdb_del(get(), db, &k, nullptr);
  if (rc == MDB_NOTFOUND)
    return false;
  if (rc != 0)
    return fail(rc, "cannot delete");
  return true;
}

expected<uint64_t> txn::entries(MDB_dbi db) const {
  MDB_stat st;
  if (int rc = mdb_stat(get(), db, &st); rc != 0)
    return to_error(rc, "cannot stat a database");
  return static_cast<uint64_t>(st.ms_entries);
}

// -- cursor -------------------------------------------------------------------------

cursor::cursor() = default;

cursor::~cursor() {
  if (!s_)
    return;
  if (s_->c)
    mdb_cursor_close(s_->c);
  if (s_->t) {
    auto& cs = s_->t->cursors;
    cs.erase(std::remove(cs.begin(), cs.end(), s_.get()), cs.end());
  }
}

cursor::cursor(cursor&&) noexcept = default;

cursor& cursor::operator=(cursor&& other) noexcept {
  if (this != &other) {
    cursor dead{std::move(*this)};
    s_ = std::move(other.s_);
  }
  return *this;
}

expected<cursor> cursor::open(txn& t, MDB_dbi db) {
  if (!t.s_ || !t.s_->txn)
    return make_error(ec::internal, "cursor on a finished transaction");
  cursor c;
  c.s_ = std::make_unique<cursor_state>();
  if (int rc = mdb_cursor_open(t.get(), db, &c.s_->c); rc != 0) {
    c.s_->c = nullptr;
    return to_error(rc, "cannot open a cursor");
  }
  c.s_->t = t.s_.get();
  t.s_->cursors.push_back(c.s_.get());
  return c;
}

expected<bool> cursor::move(int op, std::string_view key) {
  if (!s_ || !s_->c)
    return make_error(ec::internal, "cursor used after its transaction ended");
  if (op == MDB_SET_RANGE)
    s_->k = val(key);
  int rc = mdb_cursor_get(s_->c, &s_->k, &s_->v, static_cast<MDB_cursor_op>(op));
  if (rc == MDB_NOTFOUND)
    return false;
  if (rc != 0)
    return to_error(rc, "cannot move a cursor");
  return true;
}

expected<bool> cursor::seek(std::string_view key) { return move(MDB_SET_RANGE, key); }
expected<bool> cursor::first() { return move(MDB_FIRST); }
expected<bool> cursor::last() { return move(MDB_LAST); }
expected<bool> cursor::next() { return move(MDB_NEXT); }
expected<bool> cursor::prev() { return move(MDB_PREV); }

std::string_view cursor::key() const { return view(s_->k); }

std::string_view cursor::value() const { return view(s_->v); }

expected<void> cursor::del() {
  if (!s_ || !s_->c)
    return make_error(ec::internal, "cursor used after its transaction ended");
  if (int rc = mdb_cursor_del(s_->c, 0); rc != 0) {
    if (rc == MDB_MAP_FULL && s_->t)
      s_->t->map_full = true;
    return to_error(rc, "cannot delete");
  }
  return {};
}

// -- env ----------------------------------------------------------------------------

env::env() = default;
env::~env() = default;
env::env(env&&) noexcept = default;
env& env::operator=(env&&) noexcept = default;

expected<env> env::open(const env_options& opts) {
  std::error_code err;
  if (opts.read_only) {
    if (!std::filesystem::is_directory(opts.dir, err))
      return make_error(ec::not_found, "no directory " + opts.dir.string());
    if (!std::filesystem::exists(opts.dir / "data.mdb", err))
      return make_error(ec::not_found, opts.dir.string() + " holds no LMDB file (data.mdb)");
  } else {
    std::filesystem::create_directories(opts.dir, err);
    if (err)
      return make_error(ec::io_error, "cannot create " + opts.dir.string() + ": " + err.message());
  }
  auto dir = std::filesystem::weakly_canonical(opts.dir, err);
  if (err)
    dir = std::filesystem::absolute(opts.dir);
  std::lock_guard guard{registry_mtx};
  std::erase_if(registry, [](auto& entry) { return entry.second.expired(); });
  // The registry outlives fork(): an env of the parent process is not ours to share.
  if (auto it = registry.find(dir.string()); it != registry.end()) {
    if (auto s = it->second.lock(); s && s->pid == getpid()) {
      if (s->read_only && !opts.read_only)
        return make_error(ec::unavailable,
                          dir.string() + " is already open read-only in this process");
      env e;
      e.s_ = std::move(s);
      e.read_only_ = opts.read_only;
      return e;
    }
  }
  auto s = std::make_shared<env_state>();
  s->dir = dir;
  s->read_only = opts.read_only;
  s->pid = getpid();
  if (int rc = mdb_env_create(&s->env); rc != 0) {
    s->env = nullptr;
    return to_error(rc, "cannot create an LMDB environment");
  }
  if (int rc = mdb_env_set_maxdbs(s->env, opts.max_dbs); rc != 0)
    return to_error(rc, "cannot set max dbs");
  // Read-only: map size 0 adopts the size the writer set.
  if (!opts.read_only)
    if (int rc = mdb_env_set_mapsize(s->env, page_round(opts.map_size)); rc != 0)
      return to_error(rc, "cannot set the map size of " + dir.string());
  unsigned flags = MDB_NOTLS;
  if (opts.read_only)
    flags |= MDB_RDONLY;
  else if (opts.mode == durability::process)
    flags |= MDB_NOSYNC; // written to the OS before commit returns: survives a crash of ours
  // Written through the map, a growing file faults its new pages in one by one, and the
  // kernel's readahead zeroes whole ranges of holes around each (a fifth of a link's CPU
  // while its spool grew, bench/remote): read nothing ahead.
  if (opts.write_map && !opts.read_only)
    flags |= MDB_WRITEMAP | MDB_NORDAHEAD;
  if (int rc = mdb_env_open(s->env, dir.c_str(), flags, 0644); rc != 0)
    return to_error(rc, "cannot open LMDB in " + dir.string());
  // Reader slots of crashed processes would keep old pages from being reused.
  if (!opts.read_only) {
    int dead = 0;
    mdb_reader_check(s->env, &dead);
  }
  registry[dir.string()] = s;
  env e;
  e.s_ = std::move(s);
  e.read_only_ = opts.read_only;
  return e;
}

expected<MDB_dbi> env::db(const std::string& name, bool create) {
  std::lock_guard guard{s_->db_mtx};
  if (auto it = s_->dbs.find(name); it != s_->dbs.end())
    return it->second;
  bool write = create && !read_only_;
  auto t = begin(write);
  if (!t)
    return t.err();
  MDB_dbi dbi = 0;
  int rc = mdb_dbi_open(t->get(), name.c_str(), write ? MDB_CREATE : 0, &dbi);
  if (rc == MDB_MAP_FULL) {
    t->abort();
    if (auto g = grow(map_size()); !g)
      return g.err();
    t = begin(write);
    if (!t)
      return t.err();
    rc = mdb_dbi_open(t->get(), name.c_str(), write ? MDB_CREATE : 0, &dbi);
  }
  if (rc != 0)
    return to_error(rc, "cannot open database '" + name + "' in " + s_->dir.string());
  // Committing (even a read txn) makes the handle usable by every later transaction.
  if (auto ok = t->commit(); !ok)
    return ok.err();
  s_->dbs.emplace(name, dbi);
  return dbi;
}

expected<txn> env::begin(bool write) const {
  for (int attempt = 0;; ++attempt) {
    auto s = std::make_unique<txn_state>();
    s->env = s_;
    s->write = write;
    s->lock = std::shared_lock{s_->grow_mtx};
    int rc = mdb_txn_begin(s_->env, nullptr, write ? 0 : MDB_RDONLY, &s->txn);
    if (rc == 0) {
      txn t;
      t.s_ = std::move(s);
      return t;
    }
    s->txn = nullptr;
    s->lock.unlock();
    if (rc == MDB_MAP_RESIZED && attempt < 3) {
      if (auto ok = adopt_map_size(*s_); !ok)
        return ok.err();
      continue;
    }
    return to_error(rc, std::string{"cannot begin a "} + (write ? "write" : "read")
                          + " transaction in " + s_->dir.string());
  }
}

expected<std::vector<std::string>> env::db_names() const {
  auto t = read();
  if (!t)
    return t.err();
  MDB_dbi main = 0;
  if (int rc = mdb_dbi_open(t->get(), nullptr, 0, &main); rc != 0)
    return to_error(rc, "cannot open the main database of " + s_->dir.string());
  auto c = cursor::open(*t, main);
  if (!c)
    return c.err();
  std::vector<std::string> names;
  auto at = c->first();
  for (; at && *at; at = c->next())
    names.emplace_back(c->key());
  if (!at)
    return at.err();
  return names;
}

expected<txn> env::read() const { return begin(false); }

expected<txn> env::begin_write() {
  if (read_only_)
    return make_error(ec::invalid_argument, s_->dir.string() + " is open read-only");
  return begin(true);
}

expected<void> env::grow(size_t seen, int attempt) {
  // 40 doublings of even a 4 KiB map exceed any disk: past that something else is wrong.
  if (attempt >= 40)
    return make_error(ec::storage_full,
                      "LMDB map of " + s_->dir.string() + " cannot grow any further");
  std::unique_lock guard{s_->grow_mtx};
  MDB_envinfo info;
  mdb_env_info(s_->env, &info);
  if (info.me_mapsize > seen)
    return {}; // another thread grew it meanwhile
  size_t next = info.me_mapsize * 2;
  if (int rc = mdb_env_set_mapsize(s_->env, next); rc != 0) {
    auto e = to_error(rc, "cannot grow the LMDB map of " + s_->dir.string() + " to "
                            + format_size(static_cast<int64_t>(next)));
    return make_error(ec::storage_full, e.message);
  }
  spdlog::debug("LMDB map of {} grown to {}", s_->dir.string(),
                format_size(static_cast<int64_t>(next)));
  return {};
}

size_t env::map_size() const {
  MDB_envinfo info;
  mdb_env_info(s_->env, &info);
  return info.me_mapsize;
}

size_t env::max_key_size() const { return static_cast<size_t>(mdb_env_get_maxkeysize(s_->env)); }

uint64_t env::file_size() const {
  std::error_code err;
  auto n = std::filesystem::file_size(s_->dir / "data.mdb", err);
  return err ? 0 : static_cast<uint64_t>(n);
}

bool env::read_only() const { return read_only_; }

const std::filesystem::path& env::dir() const { return s_->dir; }

// -- layout -------------------------------------------------------------------------

error layout::refuse(const std::string& why) const {
  return make_error(refusal, dir.string() + " is not a " + std::string{not_a} + ": " + why);
}

expected<void> open_layout(env& e, const layout& l,
                           const std::function<expected<void>(txn&)>& then) {
  auto names = e.db_names();
  if (!names)
    return names.err();
  bool has_meta = std::find(names->begin(), names->end(), l.meta) != names->end();
  if (!has_meta && e.read_only())
    return l.refuse("it has no meta database");
  if (!has_meta || l.always_refuse_foreign)
    for (auto& n : *names)
      if (std::none_of(l.dbs.begin(), l.dbs.end(), [&](auto& db) { return n == db.name; }))
        return l.refuse("it holds a database named '" + n + "'");
  std::optional<MDB_dbi> meta;
  for (auto& db : l.dbs) {
    if (!db.handle)
      continue;
    auto h = e.db(std::string{db.name}, !e.read_only());
    if (!h)
      return h.err().code == ec::not_found ? l.refuse(h.err().message) : h.err();
    *db.handle = *h;
    if (db.name == l.meta)
      meta = *h;
  }
  if (!meta)
    return make_error(ec::internal, "the layout of " + l.dir.string() + " opens no meta database");
  auto check = [&](txn& t) -> expected<void> {
    auto v = t.get(*meta, l.version_key);
    if (!v)
      return v.err();
    if (!*v) {
      if (!t.writable())
        return l.refuse("its meta database has no layout version");
      std::string stored;
      if (l.stored_as == layout::encoding::u32_le)
        for (size_t i = 0; i < 4; ++i)
          stored.push_back(static_cast<char>((l.version >> (8 * i)) & 0xff));
      else
        stored = be64_key(l.version);
      if (auto ok = t.put(*meta, l.version_key, stored); !ok)
        return ok.err();
    } else {
      std::optional<uint64_t> found;
      if (l.stored_as == layout::encoding::u32_le) {
        if ((*v)->size() != 4)
          return l.refuse("its layout version is not a 4-byte number");
        uint32_t x = 0;
        for (size_t i = 0; i < 4; ++i)
          x |= static_cast<uint32_t>(static_cast<unsigned char>((**v)[i])) << (8 * i);
        found = x;
      } else {
        found = parse_be64_key(**v);
      }
      if (found != l.version)
        return make_error(ec::version_mismatch,
                          std::string{l.kind} + " " + l.dir.string() + " has layout version "
                            + (found ? std::to_string(*found) : std::string{"(unreadable)"})
                            + "; this fabrik reads version " + std::to_string(l.version));
    }
    if (then)
      return then(t);
    return {};
  };
  if (e.read_only()) {
    auto t = e.read();
    if (!t)
      return t.err();
    return check(*t);
  }
  return e.write(check);
}

} // namespace fabrik::lmdb
