#pragma once
// The bytes of one delivery over a cross-node wire: a group of spooled batches, each with
// its spool seq (the receiving node deduplicates by it). A link sends what its spool holds
// in groups, so one message and one acknowledgement cover many batches.

#include "actors/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik {

struct delivery_part {
  uint64_t seq = 0;
  std::string_view batch; ///< a batch in the record encoding (docs/records.md)
};

/// Appends one part to a group.
void encode_group_part(const delivery_part& part, std::string& out);

/// The parts of a group, in order, pointing into `in`; fails on truncated or malformed bytes.
expected<std::vector<delivery_part>> decode_group(std::string_view in);

} // namespace fabrik
