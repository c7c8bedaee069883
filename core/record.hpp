#pragma once
// Records: the unit of data on every wire, in storage and across nodes.
// See docs/records.md for the contract (streams, time, identity, encoding).

#include "core/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fabrik {

/// Opaque binary payload (images, raw MQTT payloads); distinct from text.
struct bytes {
  std::string data;
  friend bool operator==(const bytes&, const bytes&) = default;
};

/// One field value. The order of alternatives is part of the record encoding.
using value = std::variant<double, int64_t, bool, std::string, bytes>;

/// Name of a value's type as used in docs and JSON output: double, int, bool, string, bytes.
const char* type_name(const value& v);

struct field {
  std::string name;
  value v;
  friend bool operator==(const field&, const field&) = default;
};

/// Quality: the low byte is the OPC UA / simatic-v1 style code, the high bits are fabrik flags.
namespace quality {
constexpr uint16_t bad = 0;
constexpr uint16_t uncertain = 1;
constexpr uint16_t good_non_cascade = 2;
constexpr uint16_t good = 3;
/// The source time was missing or implausible and was replaced by the ingest time.
constexpr uint16_t time_replaced = 0x100;
inline uint16_t code(uint16_t q) { return q & 0xff; }
} // namespace quality

/// One observation: all values of one message.
struct record {
  std::string stream; ///< path such as pcb_in/Line1/default
  int64_t time = 0; ///< source time, ns since the epoch, UTC (ingest time if replaced)
  int64_t ingest_time = 0; ///< when fabrik received it, ns since the epoch, UTC
  uint64_t seq = 0; ///< source sequence number (message seq or arrival counter)
  uint16_t quality = quality::good;
  std::vector<field> fields;

  const value* find(std::string_view name) const;
  friend bool operator==(const record&, const record&) = default;
};

/// A batch is what one message on a wire carries.
struct record_batch {
  std::vector<record> records;
  /// Set on a batch that came over a cross-node wire ("LINK_ID:SEQ", unique per batch), and
  /// carried by what an actor makes of it (a workflow's predictions): a link that takes a
  /// batch whose origin it already took knows it is a replay after a crash and drops it.
  /// Not part of the encoding: it lives only inside one process.
  std::string origin;
  friend bool operator==(const record_batch&, const record_batch&) = default;
};

// -- encoding ---------------------------------------------------------------

/// Version of the binary record encoding; the first byte of every encoded record.
constexpr uint8_t record_format_version = 1;

/// Appends the binary encoding of `r` to `out`.
void encode(const record& r, std::string& out);
/// Decodes one record; refuses other format versions with ec::version_mismatch.
expected<record> decode_record(std::string_view in);

/// Appends a batch to `out` in the batch encoding (version 2: what records share with the
/// one before them is written once).
void encode(const record_batch& b, std::string& out);
/// Decodes a batch of version 2, or of version 1 (an older fabrik's spool).
expected<record_batch> decode_batch(std::string_view in);

// -- identity ---------------------------------------------------------------

/// A 64-bit digest of the fields (names, types and values), stable across versions.
uint64_t content_digest(const record& r);

/// The storage key: stream bytes, a 0 byte, time (8 bytes, big-endian, sign-flipped so
/// that negative times sort first), content digest (8 bytes, big-endian). Sorting keys
/// sorts by stream, then time; a redelivered record maps to the same key.
std::string record_key(const record& r);
/// The key prefix of a stream at a time: a range scan starts here.
std::string record_key_prefix(std::string_view stream, int64_t time);

struct key_parts {
  std::string_view stream;
  int64_t time = 0;
  uint64_t digest = 0;
};
expected<key_parts> parse_record_key(std::string_view key);

// -- JSON -------------------------------------------------------------------

/// One line of JSON: {"stream":..,"time":"RFC 3339","ingest_time":..,"seq":..,
/// "quality":..,"fields":{..}}; bytes are base64 as {"base64":"..."}.
std::string to_json_line(const record& r);

} // namespace fabrik
