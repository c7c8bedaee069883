#pragma once
// A small RAII, move-only wrapper over LMDB, shared by the record store and the spool.
// No actor code: errors are values, map growth and MDB_MAP_RESIZED are handled here once.
//
// Rules it enforces (see the LMDB docs, "Caveats"):
// - one MDB_env per directory and process: opening a directory twice shares the env, since
//   two envs on one file in one process break LMDB's locks;
// - MDB_NOTLS, so transactions may start and end on different threads;
// - the map is only resized while no transaction of this process is active: every txn holds
//   the env's grow lock shared, a resize takes it exclusively.

#include "core/error.hpp"
#include "core/store.hpp"

#include <lmdb.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fabrik::lmdb {

/// Maps an LMDB or errno return code to a fabrik error whose message starts with `what`:
/// MDB_MAP_FULL, ENOSPC and EDQUOT -> ec::storage_full; MDB_NOTFOUND, ENOENT -> not_found;
/// MDB_VERSION_MISMATCH -> version_mismatch; MDB_INVALID -> parse_error; others io_error.
error to_error(int rc, std::string_view what);

/// Bytes of an MDB_val; valid until its transaction ends or writes to the same page.
inline std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}

/// An MDB_val over `s`; LMDB does not write through it.
inline MDB_val val(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }

/// A big-endian uint64 key: integer order equals byte order.
std::string be64_key(uint64_t x);
/// Reads a be64_key; nullopt unless `key` is exactly 8 bytes.
std::optional<uint64_t> parse_be64_key(std::string_view key);

struct env_options {
  std::filesystem::path dir; ///< holds data.mdb and lock.mdb; created unless read_only
  int64_t map_size = 1 << 20; ///< initial map size in bytes; ignored when read_only
  durability mode = durability::process;
  bool read_only = false; ///< MDB_RDONLY: never writes, adopts the writer's map size
  unsigned max_dbs = 4; ///< named databases in the env
  /// MDB_WRITEMAP: commits write through the shared mapping instead of pwrite calls,
  /// about twice as fast for small transactions. The file is as large as the map (sparse),
  /// so it suits small queues, not the record store whose file size users read.
  bool write_map = false;
};

struct env_state;
struct txn_state;
struct cursor_state;

/// A transaction; aborted by the destructor unless committed. Holds the env's grow lock
/// shared for its lifetime: never start a write (env::write) while holding one.
class txn {
public:
  txn();
  ~txn();
  txn(txn&&) noexcept;
  txn& operator=(txn&&) noexcept;

  MDB_txn* get() const;
  bool writable() const;
  /// Commits; the txn is finished afterwards, also on error.
  expected<void> commit();
  /// Aborts (a no-op when already finished).
  void abort();

  /// The value of `key`, nullopt when absent; points into the map until the txn ends.
  expected<std::optional<std::string_view>> get(MDB_dbi db, std::string_view key) const;
  /// Stores `value` under `key`; false when `flags` holds MDB_NOOVERWRITE or MDB_APPEND and
  /// the key exists (or is not last).
  expected<bool> put(MDB_dbi db, std::string_view key, std::string_view value, unsigned flags = 0);
  /// Deletes `key`; false when it did not exist.
  expected<bool> del(MDB_dbi db, std::string_view key);
  /// Entries in `db`.
  expected<uint64_t> entries(MDB_dbi db) const;

  /// True once an operation of this txn failed with MDB_MAP_FULL (env::write retries then).
  bool map_full() const;

  /// Records `rc` for map_full() and turns it into an error naming `what`.
  error fail(int rc, std::string_view what);

private:
  friend class env;
  friend class cursor;
  std::unique_ptr<txn_state> s_;
};

/// A cursor over one database. Closed by its destructor, or when its txn ends: a cursor
/// may outlive its transaction but is unusable afterwards.
class cursor {
public:
  cursor();
  ~cursor();
  cursor(cursor&&) noexcept;
  cursor& operator=(cursor&&) noexcept;

  static expected<cursor> open(txn& t, MDB_dbi db);

  /// Positions at the first key >= `key`; false when there is none.
  expected<bool> seek(std::string_view key);
  expected<bool> first();
  expected<bool> last();
  expected<bool> next();
  expected<bool> prev();
  /// The entry under the cursor after a move that returned true.
  std::string_view key() const;
  std::string_view value() const;
  /// Deletes the entry under the cursor; a following next() yields the entry after it.
  expected<void> del();

private:
  expected<bool> move(int op, std::string_view key = {});
  std::unique_ptr<cursor_state> s_;
};

/// An environment: one directory, shared within the process.
class env {
public:
  env();
  ~env();
  env(env&&) noexcept;
  env& operator=(env&&) noexcept;

  /// Opens or creates. A directory already open in this process shares that env (a
  /// read-only open of a writable env is fine; the opposite is refused).
  static expected<env> open(const env_options& opts);

  /// A named database, created (in its own write txn) when `create` and missing; handles
  /// are cached for the env's life. ec::not_found when missing and not created. Call it
  /// while the calling thread holds no transaction (open databases up front).
  expected<MDB_dbi> db(const std::string& name, bool create);

  /// Names of the named databases in the env (the keys of LMDB's main database).
  expected<std::vector<std::string>> db_names() const;

  /// A read-only transaction.
  expected<txn> read() const;

  /// Runs `fn(txn&)` (returning expected<T>) in a write transaction and commits. On
  /// MDB_MAP_FULL it aborts, doubles the map and runs `fn` again, so `fn` must only
  /// change state through the txn. Refused on a read-only env.
  template <class F>
  auto write(F&& fn) -> decltype(fn(std::declval<txn&>())) {
    for (int attempt = 0;; ++attempt) {
      auto t = begin_write();
      if (!t)
        return t.err();
      auto seen = map_size();
      auto r = fn(*t);
      if (r) {
        auto c = t->commit();
        if (c)
          return r;
        if (!t->map_full())
          return c.err();
      } else if (!t->map_full()) {
        return r;
      }
      t->abort();
      if (auto g = grow(seen, attempt); !g)
        return g.err();
    }
  }

  /// A write transaction without growth handling; prefer write().
  expected<txn> begin_write();

  /// Doubles the map unless it already grew past `seen`. No txn of this process may be
  /// held by the calling thread. `attempt` bounds how often one write may grow it.
  expected<void> grow(size_t seen, int attempt = 0);

  size_t map_size() const;
  /// The longest key LMDB accepts (511 bytes in Debian's build).
  size_t max_key_size() const;
  /// Size of data.mdb in bytes (0 when unknown).
  uint64_t file_size() const;
  bool read_only() const;
  const std::filesystem::path& dir() const;

private:
  expected<txn> begin(bool write) const;

  std::shared_ptr<env_state> s_;
  bool read_only_ = false;
};

/// One kind of LMDB directory (a store, a spool, a registry): its databases, where it keeps
/// its layout version, and how its refusals read. For open_layout.
struct layout {
  /// How the version is stored: 4 bytes little-endian, or a be64_key.
  enum class encoding { u32_le, be64 };
  struct db {
    std::string_view name;
    MDB_dbi* handle = nullptr; ///< opened by open_layout when set, else by the caller
  };

  std::filesystem::path dir; ///< as the caller named it: messages show it so
  std::string_view kind; ///< "store": "store DIR has layout version 2; this fabrik..."
  std::string_view not_a; ///< "fabrik store": "DIR is not a fabrik store: WHY"
  ec refusal = ec::not_found;
  /// Every database of the layout; a directory holding another one is refused.
  std::vector<db> dbs;
  std::string_view meta; ///< the database (of `dbs`, with a handle) holding the version
  std::string_view version_key; ///< its key there
  uint64_t version = 0;
  encoding stored_as = encoding::be64;
  /// Look for foreign databases even when `meta` exists; otherwise a directory holding
  /// `meta` is taken for one of ours.
  bool always_refuse_foreign = false;

  /// "DIR is not a NOT_A: WHY", with code `refusal`.
  error refuse(const std::string& why) const;
};

/// Opens `l` in `e`, refusing what is not one:
/// - a directory without `l.meta` that is read-only, or holds a database not in `l.dbs`
///   (see always_refuse_foreign): nothing is written into another kind of environment;
/// - opens the databases of `l.dbs` that have a handle, in order, created unless `e` is
///   read-only; a missing one is refused;
/// - in one transaction (a write one unless `e` is read-only): writes `l.version` when
///   there is none (refused when read-only), refuses another version with
///   ec::version_mismatch naming both, then runs `then` when set.
/// Call it while the calling thread holds no transaction.
expected<void> open_layout(env& e, const layout& l,
                           const std::function<expected<void>(txn&)>& then = {});

} // namespace fabrik::lmdb
