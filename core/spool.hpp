#pragma once
// A durable FIFO of byte strings in its own LMDB environment. The MQTT source appends
// every message here inside Paho's callback (cheap, no actor round trip) before Paho acks
// it, and erases entries once their records are committed downstream. Cross-node wires
// will use the same spool for store and forward.

#include "core/error.hpp"
#include "core/store.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik {

class spool {
public:
  struct entry {
    uint64_t seq = 0; ///< increasing, never reused within one spool
    std::string data;
  };

  ~spool();
  spool(spool&&) noexcept;
  spool& operator=(spool&&) noexcept;

  /// Opens or creates the spool in `dir`. Safe to use from several threads.
  static expected<spool> open(const std::filesystem::path& dir, durability mode,
                              int64_t map_size = 256LL << 20);

  /// Appends in its own committed transaction; returns the entry's sequence number.
  expected<uint64_t> append(std::string_view data);
  /// Appends every entry of `data` and sets every side-table pair of `meta`, all in one
  /// transaction (all or none); returns the first entry's sequence number.
  expected<uint64_t> append(std::span<const std::string_view> data,
                            const std::vector<std::pair<std::string, std::string>>& meta);
  /// Up to `max` entries with seq >= `from`, in order.
  expected<std::vector<entry>> read(uint64_t from, size_t max) const;
  /// Calls `take` with entries with seq >= `from`, in order, while it returns true and at
  /// most `max` times; the bytes are valid during the call only (no copy).
  expected<void> visit(uint64_t from, size_t max,
                       const std::function<bool(uint64_t seq, std::string_view data)>& take) const;
  /// Removes the given entries (missing ones are ignored).
  expected<void> erase(const std::vector<uint64_t>& seqs);
  /// Entries currently held.
  uint64_t size() const;

  /// A small key/value side table (e.g. the last simatic metadata), durable like entries.
  expected<void> put_meta(std::string_view key, std::string_view value);
  /// Sets several pairs in one transaction.
  expected<void> put_meta(const std::vector<std::pair<std::string, std::string>>& pairs);
  std::optional<std::string> get_meta(std::string_view key) const;

private:
  struct impl;
  explicit spool(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace fabrik
