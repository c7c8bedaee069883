#pragma once
// The record store: LMDB files holding records keyed by stream then time (docs/records.md).
// No actor code here: the storage actor and `fabrik store` both use it.

#include "core/error.hpp"
#include "core/record.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fabrik {

/// Version of the LMDB layout; stored in the `meta` database, checked at open.
constexpr uint32_t store_layout_version = 1;

enum class durability {
  process, ///< commits survive any crash of fabrik (no fsync)
  power, ///< commits are fsync'd: survive power loss
};

struct retention {
  int64_t max_age = 0; ///< ns; 0 = keep forever
  int64_t max_size = 0; ///< bytes of record data; 0 = unbounded
};

struct store_options {
  std::filesystem::path dir; ///< created if missing (unless read_only)
  int64_t map_size = 1LL << 30; ///< initial LMDB map size; grown on MDB_MAP_FULL
  durability mode = durability::process;
  /// max_age: for every stream without an override; max_size: for the whole store.
  retention keep;
  /// Per-stream overrides: a stream matches a pattern equal to it, or `prefix/*`, or `*`.
  std::vector<std::pair<std::string, retention>> stream_keep;
  bool read_only = false; ///< for `fabrik store` while `fabrik run` holds the store
};

struct stream_info {
  std::string name;
  uint64_t count = 0;
  int64_t first = 0; ///< time of the oldest record, ns
  int64_t last = 0; ///< time of the newest record, ns
  uint64_t bytes = 0;
};

struct put_result {
  size_t stored = 0; ///< records newly written
  size_t duplicates = 0; ///< records whose identity was already stored
  /// Records refused and not stored: stream empty, holding a 0 byte, or longer than
  /// max_stream_size. Refusing them (not the batch) keeps one bad record from blocking a wire.
  size_t rejected = 0;
};

/// The longest stream name a store accepts, in bytes (LMDB's 511-byte key limit less the
/// 17 bytes of separator, time and digest).
constexpr size_t max_stream_size = 494;

struct scan_range {
  std::string stream;
  int64_t from = INT64_MIN; ///< inclusive, ns
  int64_t to = INT64_MAX; ///< exclusive, ns
  size_t limit = SIZE_MAX;
  bool newest_first = false; ///< with limit: the last N records (returned oldest first)
};

class store {
public:
  ~store();
  store(store&&) noexcept;
  store& operator=(store&&) noexcept;

  /// Opens or creates; refuses another layout version with ec::version_mismatch naming both.
  static expected<store> open(const store_options& opts);

  /// Writes all records in one transaction (durable when it returns). Records whose key
  /// exists are skipped. Grows the map on MDB_MAP_FULL; ec::storage_full when the disk is.
  expected<put_result> put(const std::vector<record>& records);

  /// Streams with counts and first/last times, sorted by name.
  expected<std::vector<stream_info>> streams() const;

  /// Records of one stream in time order; `fn` returns false to stop early. `fn` runs inside
  /// a read transaction: it must not write to this store.
  expected<size_t> scan(const scan_range& range, const std::function<bool(record&&)>& fn) const;

  /// Deletes what the retention policy no longer keeps; returns records deleted.
  expected<size_t> apply_retention(int64_t now);

  /// Bytes used by the LMDB file.
  uint64_t file_size() const;
  const store_options& options() const;

private:
  struct impl;
  explicit store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace fabrik
