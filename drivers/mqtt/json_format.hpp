#pragma once
// Plain JSON and raw payloads: MQTT messages to records and records to JSON.

#include "drivers/mqtt/payload.hpp"

#include <string>
#include <string_view>

namespace fabrik::mqtt {

/// A JSON object becomes one record, an array of objects one record per element; stream
/// "{actor}/{topic}". Top-level keys:
/// - "ts": the source time, an RFC 3339 string or epoch milliseconds (a number). Missing
///   or implausible: the ingest time and quality::time_replaced; not a time at all: the
///   same, and decoded.error says so.
/// - "seq": the sequence number (a non-negative integer; anything else is an error for
///   that element); default message_info::arrival.
/// - everything else is a field: integers fitting int64 -> int, other numbers -> double,
///   bool, string; nested objects are flattened with '.' ("axis": {"x": 1} -> "axis.x");
///   arrays are kept as their JSON text in a string field; null is skipped.
/// An element with no fields left yields no record. Malformed JSON, a top-level scalar or
/// an array element that is not an object: decoded.error (other elements still decode).
/// Quality is good (plus time_replaced). Never throws.
decoded decode_json(const message_info& m, std::string_view payload);

/// One record with one bytes field "payload"; time = ingest time, seq = arrival.
decoded decode_raw(const message_info& m, std::string_view payload);

/// A flat object {"ts":"RFC 3339","seq":N,field:value,...}: ts with 3, 6 or 9 fraction
/// digits (the fewest that are exact), doubles written so that they read back as doubles
/// ("20.0"), bytes as a base64 string, NaN and infinities as null. decode_json reads it
/// back to the same fields (bytes come back as their base64 string). A field named "ts"
/// or "seq" is written as "ts_" or "seq_" so it cannot be taken for the record's own.
std::string encode_json(const record& r);

// -- JSON text helpers shared by the codecs -----------------------------------

/// Appends `s` as a JSON string literal; invalid UTF-8 becomes U+FFFD.
void append_json_string(std::string& out, std::string_view s);
/// Appends a finite double in the shortest form that reads back exactly and as a double
/// ("20.0", "1e+300"); NaN and infinities as null.
void append_json_double(std::string& out, double d);
/// `text` fit for a one-line message: control bytes and invalid UTF-8 as '?', cut after
/// `limit` bytes (never inside a character) with "..." appended.
std::string printable(std::string_view text, size_t limit = 48);
/// Standard base64 with padding.
std::string base64_encode(std::string_view data);

} // namespace fabrik::mqtt
