#pragma once
// OPC UA Binary encoding of the built-in types (OPC 10000-6, Part 6, 5.2.2: 5.2.2.1-5.2.2.4
// integers, floats, String; 5.2.2.5 DateTime; 5.2.2.6 Guid; 5.2.2.7 ByteString; 5.2.2.9-10
// NodeId and ExpandedNodeId; 5.2.2.11 StatusCode; 5.2.2.13-14 QualifiedName, LocalizedText;
// 5.2.2.15 ExtensionObject; 5.2.2.16 Variant; 5.2.2.17 DataValue; 5.2.5 arrays).
// Pure code: no sockets, no CAF.
//
// The reader never reads past its input and never throws: every read returns an error
// (ec::parse_error) naming what it was reading and at which offset. Lengths are checked
// against the bytes left before anything is allocated, and arrays are capped at
// max_array_length elements. Nothing here is recursive: a Variant holding a Variant,
// DataValue or DiagnosticInfo is refused as unsupported.
//
// Simplifications: a null String or ByteString (length -1) reads as empty and a null array
// as an empty one; the writer writes empty ones with length 0. XmlElement is kept as text.

#include "core/error.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace fabrik::opcua {

/// Arrays (Variant values, dimensions) longer than this are refused.
inline constexpr int32_t max_array_length = 1'000'000;

/// DateTime: 100-ns ticks since 1601-01-01 UTC, kept as encoded.
struct date_time {
  int64_t ticks = 0;
  bool operator==(const date_time&) const = default;
};

/// Ticks between 1601-01-01 and 1970-01-01.
inline constexpr int64_t unix_epoch_ticks = 116'444'736'000'000'000;

/// Part 6 5.2.2.5 for fabrik's int64 ns since 1970: ticks <= 0 (and anything before
/// 1677) decode to INT64_MIN, INT64_MAX ticks (and anything after 2262) to INT64_MAX.
int64_t to_unix_ns(date_time t);
/// The reverse: INT64_MIN encodes as 0, INT64_MAX as INT64_MAX; rounds down to 100 ns.
date_time from_unix_ns(int64_t ns);

struct guid {
  uint32_t data1 = 0;
  uint16_t data2 = 0;
  uint16_t data3 = 0;
  std::array<uint8_t, 8> data4{};
  bool operator==(const guid&) const = default;
};

struct byte_string {
  std::string bytes;
  bool operator==(const byte_string&) const = default;
};

struct xml_element {
  std::string xml;
  bool operator==(const xml_element&) const = default;
};

struct status_code {
  uint32_t code = 0; ///< 0 is Good; the top two bits give the severity
  bool operator==(const status_code&) const = default;
};

struct node_id {
  uint16_t namespace_index = 0;
  std::variant<uint32_t, std::string, guid, byte_string> identifier = uint32_t{0};
  bool operator==(const node_id&) const = default;
};

struct expanded_node_id {
  node_id node;
  std::string namespace_uri; ///< written (flag 0x80) when not empty
  uint32_t server_index = 0; ///< written (flag 0x40) when not 0
  bool operator==(const expanded_node_id&) const = default;
};

struct qualified_name {
  uint16_t namespace_index = 0;
  std::string name;
  bool operator==(const qualified_name&) const = default;
};

struct localized_text {
  std::optional<std::string> locale;
  std::optional<std::string> text;
  bool operator==(const localized_text&) const = default;
};

/// A structure the codec does not decode: its TypeId and its body as bytes.
struct extension_object {
  enum body_encoding : uint8_t { none = 0, binary = 1, xml = 2 };
  node_id type_id;
  uint8_t encoding = none;
  std::string body; ///< empty when encoding is none
  bool operator==(const extension_object&) const = default;
};

/// A scalar of a built-in type; the index of each alternative is its built-in type id
/// (0 = null, 1 = Boolean, ..., 22 = ExtensionObject).
using scalar = std::variant<std::monostate, bool, int8_t, uint8_t, int16_t, uint16_t, int32_t,
                            uint32_t, int64_t, uint64_t, float, double, std::string, date_time,
                            guid, byte_string, xml_element, node_id, expanded_node_id, status_code,
                            qualified_name, localized_text, extension_object>;

template <class V>
struct vectors_of;
template <class... T>
struct vectors_of<std::variant<std::monostate, T...>> {
  using type = std::variant<std::monostate, std::vector<T>...>;
};
/// An array of one built-in type, indexed like scalar.
using array = vectors_of<scalar>::type;

/// Built-in type names by id (1..25), "unknown" otherwise.
const char* builtin_type_name(unsigned id);

struct variant {
  scalar value; ///< when values holds no array
  array values; ///< a (flattened) array, when its index is not 0
  std::vector<int32_t> dimensions; ///< for multi-dimensional arrays, else empty
  bool is_array() const { return values.index() != 0; }
  /// The built-in type id, 0 for null.
  unsigned type_id() const {
    return static_cast<unsigned>(is_array() ? values.index() : value.index());
  }
  bool operator==(const variant&) const = default;
};

struct data_value {
  std::optional<variant> value;
  std::optional<status_code> status;
  std::optional<date_time> source_timestamp;
  std::optional<uint16_t> source_picoseconds;
  std::optional<date_time> server_timestamp;
  std::optional<uint16_t> server_picoseconds;
  bool operator==(const data_value&) const = default;
};

/// Appends the binary encoding to a string.
class writer {
public:
  void write(bool v);
  void write(int8_t v);
  void write(uint8_t v);
  void write(int16_t v);
  void write(uint16_t v);
  void write(int32_t v);
  void write(uint32_t v);
  void write(int64_t v);
  void write(uint64_t v);
  void write(float v);
  void write(double v);
  void write(std::string_view v); ///< String
  void write(const char*) = delete; // would silently pick bool
  void write(date_time v);
  void write(const guid& v);
  void write(const byte_string& v);
  void write(const xml_element& v);
  void write(status_code v);
  void write(const node_id& v); ///< the shortest encoding that holds it
  void write(const expanded_node_id& v);
  void write(const qualified_name& v);
  void write(const localized_text& v);
  void write(const extension_object& v);
  void write(const variant& v);
  void write(const data_value& v);

  const std::string& bytes() const { return out_; }
  std::string release() { return std::move(out_); }

private:
  void write_node_id(const node_id& v, uint8_t flags);
  std::string out_;
};

/// Reads the binary encoding from a view of bytes, which must outlive the reader.
class reader {
public:
  explicit reader(std::string_view bytes) : in_(bytes) {}
  explicit reader(std::string&&) = delete; // would dangle

  expected<bool> read_boolean();
  expected<int8_t> read_sbyte();
  expected<uint8_t> read_byte();
  expected<int16_t> read_int16();
  expected<uint16_t> read_uint16();
  expected<int32_t> read_int32();
  expected<uint32_t> read_uint32();
  expected<int64_t> read_int64();
  expected<uint64_t> read_uint64();
  expected<float> read_float();
  expected<double> read_double();
  expected<std::string> read_string();
  expected<date_time> read_date_time();
  expected<guid> read_guid();
  expected<byte_string> read_byte_string();
  expected<xml_element> read_xml_element();
  expected<status_code> read_status_code();
  expected<node_id> read_node_id();
  expected<expanded_node_id> read_expanded_node_id();
  expected<qualified_name> read_qualified_name();
  expected<localized_text> read_localized_text();
  expected<extension_object> read_extension_object();
  expected<variant> read_variant();
  expected<data_value> read_data_value();

  size_t offset() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }
  bool at_end() const { return pos_ == in_.size(); }

private:
  template <class T>
  expected<T> read_le(const char* what);
  expected<std::string> read_bytes(const char* what);
  expected<node_id> read_node_id_body(uint8_t encoding, size_t start);
  error fail(size_t at, const std::string& message) const;

  std::string_view in_;
  size_t pos_ = 0;
};

/// Reads one value of type T with the matching reader method (for code generic over the
/// built-in types: Variant decoding, tests).
template <class T>
expected<T> read_value(reader& r) {
  if constexpr (std::is_same_v<T, bool>)
    return r.read_boolean();
  else if constexpr (std::is_same_v<T, int8_t>)
    return r.read_sbyte();
  else if constexpr (std::is_same_v<T, uint8_t>)
    return r.read_byte();
  else if constexpr (std::is_same_v<T, int16_t>)
    return r.read_int16();
  else if constexpr (std::is_same_v<T, uint16_t>)
    return r.read_uint16();
  else if constexpr (std::is_same_v<T, int32_t>)
    return r.read_int32();
  else if constexpr (std::is_same_v<T, uint32_t>)
    return r.read_uint32();
  else if constexpr (std::is_same_v<T, int64_t>)
    return r.read_int64();
  else if constexpr (std::is_same_v<T, uint64_t>)
    return r.read_uint64();
  else if constexpr (std::is_same_v<T, float>)
    return r.read_float();
  else if constexpr (std::is_same_v<T, double>)
    return r.read_double();
  else if constexpr (std::is_same_v<T, std::string>)
    return r.read_string();
  else if constexpr (std::is_same_v<T, date_time>)
    return r.read_date_time();
  else if constexpr (std::is_same_v<T, guid>)
    return r.read_guid();
  else if constexpr (std::is_same_v<T, byte_string>)
    return r.read_byte_string();
  else if constexpr (std::is_same_v<T, xml_element>)
    return r.read_xml_element();
  else if constexpr (std::is_same_v<T, node_id>)
    return r.read_node_id();
  else if constexpr (std::is_same_v<T, expanded_node_id>)
    return r.read_expanded_node_id();
  else if constexpr (std::is_same_v<T, status_code>)
    return r.read_status_code();
  else if constexpr (std::is_same_v<T, qualified_name>)
    return r.read_qualified_name();
  else if constexpr (std::is_same_v<T, localized_text>)
    return r.read_localized_text();
  else if constexpr (std::is_same_v<T, extension_object>)
    return r.read_extension_object();
  else if constexpr (std::is_same_v<T, variant>)
    return r.read_variant();
  else if constexpr (std::is_same_v<T, data_value>)
    return r.read_data_value();
  else
    static_assert(sizeof(T) == 0, "no reader for this type");
}

} // namespace fabrik::opcua
