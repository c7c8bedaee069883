#pragma once
// The bytes of one delivery over a cross-node wire: a group of spooled batches, each with
// its spool seq (the receiving node deduplicates by it). A link sends what its spool holds
// in groups, so one message and one acknowledgement cover many batches.

#include "core/error.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik {

struct delivery_part {
  uint64_t seq = 0;
  std::string_view batch; ///< a batch in the record encoding (docs/records.md)
};

/// The bytes one part of `batch_size` bytes takes in a group.
size_t group_part_size(size_t batch_size);
/// Appends one part to a group.
void encode_group_part(const delivery_part& part, std::string& out);

/// The parts of a group, in order, pointing into `in`; fails on truncated or malformed bytes.
expected<std::vector<delivery_part>> decode_group(std::string_view in);

/// A link's memory of the origins it took (record_batch::origin: "LINK_ID:SEQ" of a batch
/// that crossed a wire, carried by what an actor made of it). A node killed after its
/// workflow answered a batch but before the delivery was recorded gets the batch again
/// and predicts it again; the link the predictions go on through drops them by origin.
/// Per upstream link it keeps the newest seq taken, in the spool's side table (written in
/// the transaction that spools the batches).
class origin_filter {
public:
  /// The newest seq stored for an upstream link (0: none); asked once per link.
  using loader = std::function<uint64_t(const std::string& upstream)>;
  explicit origin_filter(loader load = {}) : load_(std::move(load)) {}

  /// "LINK_ID:SEQ" split; nullopt for a batch that did not cross a wire.
  static std::optional<std::pair<std::string, uint64_t>> parse(const std::string& origin);
  /// The side-table key of an upstream link's newest seq.
  static std::string key(const std::string& upstream) { return "origin:" + upstream; }

  /// A batch of this origin was taken before (or is in the pending transaction): drop it.
  /// Not so for the resend of a batch whose transaction failed (see refused()).
  bool replay(const std::string& origin);
  /// Takes a batch into the pending transaction.
  void take(const std::string& origin);
  /// The side-table pairs the pending transaction writes.
  std::vector<std::pair<std::string, std::string>> pending_meta() const;
  /// The pending transaction committed / failed (its batches will be resent).
  void committed();
  void refused(const std::vector<std::string>& origins);

private:
  uint64_t newest(const std::string& upstream);

  loader load_;
  std::map<std::string, uint64_t> newest_, pending_;
  std::set<std::string> refused_;
};

} // namespace fabrik
