#include "drivers/opcua/encoding.hpp"

#include <bit>
#include <limits>
#include <type_traits>
#include <utility>

namespace fabrik::opcua {
namespace {

constexpr int64_t int64_min = std::numeric_limits<int64_t>::min();
constexpr int64_t int64_max = std::numeric_limits<int64_t>::max();

// NodeId encoding byte (5.2.2.9) and its ExpandedNodeId flags (5.2.2.10).
enum : uint8_t {
  two_byte = 0x00,
  four_byte = 0x01,
  numeric = 0x02,
  string_id = 0x03,
  guid_id = 0x04,
  byte_string_id = 0x05,
  server_index_flag = 0x40,
  namespace_uri_flag = 0x80,
};

// Variant encoding mask (5.2.2.16).
constexpr uint8_t variant_type_mask = 0x3f;
constexpr uint8_t variant_dimensions_flag = 0x40;
constexpr uint8_t variant_array_flag = 0x80;
constexpr unsigned last_supported_type = 22; // ExtensionObject

// DataValue encoding mask (5.2.2.17).
enum : uint8_t {
  dv_value = 0x01,
  dv_status = 0x02,
  dv_source_timestamp = 0x04,
  dv_server_timestamp = 0x08,
  dv_source_picoseconds = 0x10,
  dv_server_picoseconds = 0x20,
};

/// The fewest bytes one encoded element of type T takes: bounds an array's length by the
/// bytes left before it is allocated.
template <class T>
constexpr size_t min_size() {
  if constexpr (std::is_arithmetic_v<T>)
    return sizeof(T);
  else if constexpr (std::is_same_v<T, date_time>)
    return 8;
  else if constexpr (std::is_same_v<T, guid>)
    return 16;
  else if constexpr (std::is_same_v<T, status_code>)
    return 4;
  else if constexpr (
    std::is_same_v<T,
                   std::string> || std::is_same_v<T, byte_string> || std::is_same_v<T, xml_element>)
    return 4; // the length
  else if constexpr (std::is_same_v<T, node_id> || std::is_same_v<T, expanded_node_id>)
    return 2; // two-byte form
  else if constexpr (std::is_same_v<T, qualified_name>)
    return 6;
  else if constexpr (std::is_same_v<T, localized_text>)
    return 1;
  else if constexpr (std::is_same_v<T, extension_object>)
    return 3;
  else
    static_assert(sizeof(T) == 0, "no minimum size for this type");
}

template <size_t I>
expected<void> read_scalar_as(reader& r, scalar& out) {
  auto v = read_value<std::variant_alternative_t<I, scalar>>(r);
  if (!v)
    return v.err();
  out.emplace<I>(std::move(*v));
  return {};
}

template <size_t I>
expected<void> read_array_as(reader& r, size_t n, array& out) {
  using T = std::variant_alternative_t<I, scalar>;
  std::vector<T> items;
  items.reserve(n); // n was checked against the bytes left
  for (size_t i = 0; i < n; ++i) {
    auto v = read_value<T>(r);
    if (!v)
      return v.err();
    items.push_back(std::move(*v));
  }
  out.emplace<I>(std::move(items));
  return {};
}

/// Calls f.template operator()<I>() for the alternative I == id (1..22).
template <class F, size_t... I>
expected<void> dispatch(unsigned id, F&& f, std::index_sequence<I...>) {
  expected<void> result = make_error(ec::internal, "no built-in type " + std::to_string(id));
  ((id == I + 1 ? (void)(result = f.template operator()<I + 1>()) : (void)0), ...);
  return result;
}

template <class F>
expected<void> dispatch(unsigned id, F&& f) {
  return dispatch(id, std::forward<F>(f), std::make_index_sequence<last_supported_type>{});
}

} // namespace

// ---- DateTime ----------------------------------------------------------------------------

int64_t to_unix_ns(date_time t) {
  if (t.ticks <= 0)
    return int64_min;
  if (t.ticks == int64_max)
    return int64_max;
  int64_t since_1970 = t.ticks - unix_epoch_ticks; // cannot overflow: 0 < ticks < max
  if (since_1970 > int64_max / 100)
    return int64_max;
  if (since_1970 < int64_min / 100)
    return int64_min;
  return since_1970 * 100;
}

date_time from_unix_ns(int64_t ns) {
  if (ns == int64_min)
    return {0};
  if (ns == int64_max)
    return {int64_max};
  int64_t ticks = ns / 100;
  if (ns % 100 < 0)
    --ticks; // round down, also before 1970
  // fabrik's range (1677..2262) lies inside 1601..9999: no clamping needed beyond this.
  return {ticks + unix_epoch_ticks};
}

const char* builtin_type_name(unsigned id) {
  static const char* const names[] = {
    "Null",          "Boolean",       "SByte",           "Byte",           "Int16",
    "UInt16",        "Int32",         "UInt32",          "Int64",          "UInt64",
    "Float",         "Double",        "String",          "DateTime",       "Guid",
    "ByteString",    "XmlElement",    "NodeId",          "ExpandedNodeId", "StatusCode",
    "QualifiedName", "LocalizedText", "ExtensionObject", "DataValue",      "Variant",
    "DiagnosticInfo"};
  return id < std::size(names) ? names[id] : "unknown";
}

// ---- writer ------------------------------------------------------------------------------

namespace {
template <class U>
void put_le(std::string& out, U v) {
  for (size_t i = 0; i < sizeof(U); ++i)
    out.push_back(static_cast<char>(static_cast<uint8_t>(v >> (8 * i))));
}
} // namespace

void writer::write(bool v) { out_.push_back(v ? 1 : 0); }
void writer::write(int8_t v) { put_le(out_, static_cast<uint8_t>(v)); }
void writer::write(uint8_t v) { put_le(out_, v); }
void writer::write(int16_t v) { put_le(out_, static_cast<uint16_t>(v)); }
void writer::write(uint16_t v) { put_le(out_, v); }
void writer::write(int32_t v) { put_le(out_, static_cast<uint32_t>(v)); }
void writer::write(uint32_t v) { put_le(out_, v); }
void writer::write(int64_t v) { put_le(out_, static_cast<uint64_t>(v)); }
void writer::write(uint64_t v) { put_le(out_, v); }
void writer::write(float v) { put_le(out_, std::bit_cast<uint32_t>(v)); }
void writer::write(double v) { put_le(out_, std::bit_cast<uint64_t>(v)); }

void writer::write(std::string_view v) {
  write(static_cast<int32_t>(v.size()));
  out_.append(v);
}

void writer::write(date_time v) { write(v.ticks); }

void writer::write(const guid& v) {
  write(v.data1);
  write(v.data2);
  write(v.data3);
  for (uint8_t b : v.data4)
    write(b);
}

void writer::write(const byte_string& v) { write(std::string_view{v.bytes}); }
void writer::write(const xml_element& v) { write(std::string_view{v.xml}); }
void writer::write(status_code v) { write(v.code); }

void writer::write_node_id(const node_id& v, uint8_t flags) {
  uint16_t ns = v.namespace_index;
  if (auto* n = std::get_if<uint32_t>(&v.identifier)) {
    if (ns == 0 && *n <= 0xff) {
      write(static_cast<uint8_t>(two_byte | flags));
      write(static_cast<uint8_t>(*n));
    } else if (ns <= 0xff && *n <= 0xffff) {
      write(static_cast<uint8_t>(four_byte | flags));
      write(static_cast<uint8_t>(ns));
      write(static_cast<uint16_t>(*n));
    } else {
      write(static_cast<uint8_t>(numeric | flags));
      write(ns);
      write(*n);
    }
  } else if (auto* s = std::get_if<std::string>(&v.identifier)) {
    write(static_cast<uint8_t>(string_id | flags));
    write(ns);
    write(std::string_view{*s});
  } else if (auto* g = std::get_if<guid>(&v.identifier)) {
    write(static_cast<uint8_t>(guid_id | flags));
    write(ns);
    write(*g);
  } else {
    write(static_cast<uint8_t>(byte_string_id | flags));
    write(ns);
    write(std::get<byte_string>(v.identifier));
  }
}

void writer::write(const node_id& v) { write_node_id(v, 0); }

void writer::write(const expanded_node_id& v) {
  uint8_t flags = (v.namespace_uri.empty() ? 0 : namespace_uri_flag)
                  | (v.server_index == 0 ? 0 : server_index_flag);
  write_node_id(v.node, flags);
  if (!v.namespace_uri.empty())
    write(std::string_view{v.namespace_uri});
  if (v.server_index != 0)
    write(v.server_index);
}

void writer::write(const qualified_name& v) {
  write(v.namespace_index);
  write(std::string_view{v.name});
}

void writer::write(const localized_text& v) {
  write(static_cast<uint8_t>((v.locale ? 0x01 : 0) | (v.text ? 0x02 : 0)));
  if (v.locale)
    write(std::string_view{*v.locale});
  if (v.text)
    write(std::string_view{*v.text});
}

void writer::write(const extension_object& v) {
  write(v.type_id);
  write(v.encoding);
  if (v.encoding != extension_object::none)
    write(std::string_view{v.body});
}

void writer::write(const variant& v) {
  if (!v.is_array()) {
    write(static_cast<uint8_t>(v.value.index()));
    std::visit(
      [this](const auto& x) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, std::monostate>)
          write(x);
      },
      v.value);
    return;
  }
  uint8_t mask = static_cast<uint8_t>(v.values.index()) | variant_array_flag;
  if (!v.dimensions.empty())
    mask |= variant_dimensions_flag;
  write(mask);
  std::visit(
    [this](const auto& items) {
      using V = std::decay_t<decltype(items)>;
      if constexpr (!std::is_same_v<V, std::monostate>) {
        write(static_cast<int32_t>(items.size()));
        for (const auto& item : items) {
          if constexpr (std::is_same_v<V, std::vector<bool>>)
            write(static_cast<bool>(item)); // a proxy, not a bool
          else
            write(item);
        }
      }
    },
    v.values);
  if (!v.dimensions.empty()) {
    write(static_cast<int32_t>(v.dimensions.size()));
    for (int32_t d : v.dimensions)
      write(d);
  }
}

void writer::write(const data_value& v) {
  uint8_t mask = (v.value ? dv_value : 0) | (v.status ? dv_status : 0)
                 | (v.source_timestamp ? dv_source_timestamp : 0)
                 | (v.server_timestamp ? dv_server_timestamp : 0)
                 | (v.source_picoseconds ? dv_source_picoseconds : 0)
                 | (v.server_picoseconds ? dv_server_picoseconds : 0);
  write(mask);
  if (v.value)
    write(*v.value);
  if (v.status)
    write(*v.status);
  if (v.source_timestamp)
    write(*v.source_timestamp);
  if (v.source_picoseconds)
    write(*v.source_picoseconds);
  if (v.server_timestamp)
    write(*v.server_timestamp);
  if (v.server_picoseconds)
    write(*v.server_picoseconds);
}

// ---- reader ------------------------------------------------------------------------------

error reader::fail(size_t at, const std::string& message) const {
  return make_error(ec::parse_error, "OPC UA " + message + " at offset " + std::to_string(at));
}

template <class T>
expected<T> reader::read_le(const char* what) {
  using U = std::make_unsigned_t<T>;
  if (remaining() < sizeof(T))
    return fail(pos_, std::string{"truncated "} + what + " (needs " + std::to_string(sizeof(T))
                        + " bytes, " + std::to_string(remaining()) + " left)");
  U v = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<U>(static_cast<U>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i));
  pos_ += sizeof(T);
  return static_cast<T>(v);
}

expected<bool> reader::read_boolean() {
  auto v = read_le<uint8_t>("Boolean");
  if (!v)
    return v.err();
  return *v != 0; // decoders treat any non-zero value as true
}

expected<int8_t> reader::read_sbyte() { return read_le<int8_t>("SByte"); }
expected<uint8_t> reader::read_byte() { return read_le<uint8_t>("Byte"); }
expected<int16_t> reader::read_int16() { return read_le<int16_t>("Int16"); }
expected<uint16_t> reader::read_uint16() { return read_le<uint16_t>("UInt16"); }
expected<int32_t> reader::read_int32() { return read_le<int32_t>("Int32"); }
expected<uint32_t> reader::read_uint32() { return read_le<uint32_t>("UInt32"); }
expected<int64_t> reader::read_int64() { return read_le<int64_t>("Int64"); }
expected<uint64_t> reader::read_uint64() { return read_le<uint64_t>("UInt64"); }

expected<float> reader::read_float() {
  auto v = read_le<uint32_t>("Float");
  if (!v)
    return v.err();
  return std::bit_cast<float>(*v);
}

expected<double> reader::read_double() {
  auto v = read_le<uint64_t>("Double");
  if (!v)
    return v.err();
  return std::bit_cast<double>(*v);
}

expected<std::string> reader::read_bytes(const char* what) {
  size_t start = pos_;
  auto len = read_le<int32_t>(what);
  if (!len)
    return len.err();
  if (*len == -1)
    return std::string{}; // null
  if (*len < 0)
    return fail(start, std::string{what} + " has negative length " + std::to_string(*len));
  if (static_cast<size_t>(*len) > remaining())
    return fail(start, std::string{what} + " claims " + std::to_string(*len) + " bytes, "
                         + std::to_string(remaining()) + " left");
  std::string s{in_.substr(pos_, static_cast<size_t>(*len))};
  pos_ += s.size();
  return s;
}

expected<std::string> reader::read_string() { return read_bytes("String"); }

expected<date_time> reader::read_date_time() {
  auto v = read_le<int64_t>("DateTime");
  if (!v)
    return v.err();
  return date_time{*v};
}

expected<guid> reader::read_guid() {
  if (remaining() < 16)
    return fail(pos_, "truncated Guid (needs 16 bytes, " + std::to_string(remaining()) + " left)");
  guid g;
  g.data1 = *read_le<uint32_t>("Guid");
  g.data2 = *read_le<uint16_t>("Guid");
  g.data3 = *read_le<uint16_t>("Guid");
  for (auto& b : g.data4)
    b = *read_le<uint8_t>("Guid");
  return g;
}

expected<byte_string> reader::read_byte_string() {
  auto v = read_bytes("ByteString");
  if (!v)
    return v.err();
  return byte_string{std::move(*v)};
}

expected<xml_element> reader::read_xml_element() {
  auto v = read_bytes("XmlElement");
  if (!v)
    return v.err();
  return xml_element{std::move(*v)};
}

expected<status_code> reader::read_status_code() {
  auto v = read_le<uint32_t>("StatusCode");
  if (!v)
    return v.err();
  return status_code{*v};
}

expected<node_id> reader::read_node_id_body(uint8_t encoding, size_t start) {
  node_id id;
  switch (encoding) {
    case two_byte: {
      auto n = read_le<uint8_t>("two-byte NodeId");
      if (!n)
        return n.err();
      id.identifier = uint32_t{*n};
      return id;
    }
    case four_byte: {
      auto ns = read_le<uint8_t>("four-byte NodeId namespace");
      if (!ns)
        return ns.err();
      auto n = read_le<uint16_t>("four-byte NodeId identifier");
      if (!n)
        return n.err();
      id.namespace_index = *ns;
      id.identifier = uint32_t{*n};
      return id;
    }
    case numeric:
    case string_id:
    case guid_id:
    case byte_string_id:
      break;
    default:
      return fail(start, "NodeId has unknown encoding " + std::to_string(encoding));
  }
  auto ns = read_le<uint16_t>("NodeId namespace");
  if (!ns)
    return ns.err();
  id.namespace_index = *ns;
  if (encoding == numeric) {
    auto n = read_le<uint32_t>("numeric NodeId identifier");
    if (!n)
      return n.err();
    id.identifier = *n;
  } else if (encoding == string_id) {
    auto s = read_bytes("string NodeId identifier");
    if (!s)
      return s.err();
    id.identifier = std::move(*s);
  } else if (encoding == guid_id) {
    auto g = read_guid();
    if (!g)
      return g.err();
    id.identifier = *g;
  } else {
    auto b = read_bytes("opaque NodeId identifier");
    if (!b)
      return b.err();
    id.identifier = byte_string{std::move(*b)};
  }
  return id;
}

expected<node_id> reader::read_node_id() {
  size_t start = pos_;
  auto encoding = read_le<uint8_t>("NodeId encoding");
  if (!encoding)
    return encoding.err();
  if (*encoding & (namespace_uri_flag | server_index_flag))
    return fail(start, "NodeId has ExpandedNodeId flags");
  return read_node_id_body(*encoding, start);
}

expected<expanded_node_id> reader::read_expanded_node_id() {
  size_t start = pos_;
  auto encoding = read_le<uint8_t>("ExpandedNodeId encoding");
  if (!encoding)
    return encoding.err();
  auto node = read_node_id_body(*encoding & 0x3f, start);
  if (!node)
    return node.err();
  expanded_node_id e{std::move(*node), {}, 0};
  if (*encoding & namespace_uri_flag) {
    auto uri = read_bytes("ExpandedNodeId namespace URI");
    if (!uri)
      return uri.err();
    e.namespace_uri = std::move(*uri);
  }
  if (*encoding & server_index_flag) {
    auto index = read_le<uint32_t>("ExpandedNodeId server index");
    if (!index)
      return index.err();
    e.server_index = *index;
  }
  return e;
}

expected<qualified_name> reader::read_qualified_name() {
  auto ns = read_le<uint16_t>("QualifiedName namespace");
  if (!ns)
    return ns.err();
  auto name = read_bytes("QualifiedName name");
  if (!name)
    return name.err();
  return qualified_name{*ns, std::move(*name)};
}

expected<localized_text> reader::read_localized_text() {
  size_t start = pos_;
  auto mask = read_le<uint8_t>("LocalizedText mask");
  if (!mask)
    return mask.err();
  if (*mask & ~0x03)
    return fail(start, "LocalizedText has unknown mask bits " + std::to_string(*mask));
  localized_text t;
  if (*mask & 0x01) {
    auto locale = read_bytes("LocalizedText locale");
    if (!locale)
      return locale.err();
    t.locale = std::move(*locale);
  }
  if (*mask & 0x02) {
    auto text = read_bytes("LocalizedText text");
    if (!text)
      return text.err();
    t.text = std::move(*text);
  }
  return t;
}

expected<extension_object> reader::read_extension_object() {
  auto type_id = read_node_id();
  if (!type_id)
    return type_id.err();
  size_t at = pos_;
  auto encoding = read_le<uint8_t>("ExtensionObject encoding");
  if (!encoding)
    return encoding.err();
  extension_object x{std::move(*type_id), *encoding, {}};
  if (*encoding == extension_object::none)
    return x;
  if (*encoding != extension_object::binary && *encoding != extension_object::xml)
    return fail(at, "ExtensionObject has unknown encoding " + std::to_string(*encoding));
  auto body = read_bytes("ExtensionObject body");
  if (!body)
    return body.err();
  x.body = std::move(*body);
  return x;
}

expected<variant> reader::read_variant() {
  size_t start = pos_;
  auto mask = read_le<uint8_t>("Variant encoding mask");
  if (!mask)
    return mask.err();
  unsigned id = *mask & variant_type_mask;
  variant v;
  if (id == 0) {
    if (*mask != 0)
      return fail(start, "null Variant has array flags");
    return v;
  }
  if (id > 25)
    return fail(start, "Variant has unknown built-in type id " + std::to_string(id));
  if (id > last_supported_type)
    return fail(start, std::string{"Variant of "} + builtin_type_name(id) + " (type id "
                         + std::to_string(id) + ") is not supported");
  if (!(*mask & variant_array_flag)) {
    if (*mask & variant_dimensions_flag)
      return fail(start, "scalar Variant has array dimensions");
    auto ok = dispatch(id, [&]<size_t I>() { return read_scalar_as<I>(*this, v.value); });
    if (!ok)
      return ok.err();
    return v;
  }

  size_t length_at = pos_;
  auto length = read_le<int32_t>("Variant array length");
  if (!length)
    return length.err();
  if (*length < -1)
    return fail(length_at, "Variant array has negative length " + std::to_string(*length));
  if (*length > max_array_length)
    return fail(length_at, "Variant array of " + std::to_string(*length)
                             + " elements is longer than " + std::to_string(max_array_length));
  size_t n = *length == -1 ? 0 : static_cast<size_t>(*length);
  auto ok = dispatch(id, [&]<size_t I>() -> expected<void> {
    size_t need = min_size<std::variant_alternative_t<I, scalar>>();
    if (n > remaining() / need)
      return fail(length_at, "Variant array claims " + std::to_string(n) + " "
                               + builtin_type_name(id) + " elements, only "
                               + std::to_string(remaining()) + " bytes left");
    return read_array_as<I>(*this, n, v.values);
  });
  if (!ok)
    return ok.err();

  if (*mask & variant_dimensions_flag) {
    size_t dims_at = pos_;
    auto count = read_le<int32_t>("Variant array dimensions length");
    if (!count)
      return count.err();
    if (*count < 1 || *count > 64 || static_cast<size_t>(*count) > remaining() / 4)
      return fail(dims_at, "Variant has " + std::to_string(*count) + " array dimensions");
    int64_t product = 1;
    for (int32_t i = 0; i < *count; ++i) {
      auto d = read_le<int32_t>("Variant array dimension");
      if (!d)
        return d.err();
      if (*d < 0)
        return fail(dims_at, "Variant has negative array dimension " + std::to_string(*d));
      v.dimensions.push_back(*d);
      product = product > static_cast<int64_t>(n) ? product : product * *d;
    }
    if (product != static_cast<int64_t>(n))
      return fail(dims_at,
                  "Variant array dimensions do not multiply to its length " + std::to_string(n));
  }
  return v;
}

expected<data_value> reader::read_data_value() {
  size_t start = pos_;
  auto mask = read_le<uint8_t>("DataValue mask");
  if (!mask)
    return mask.err();
  if (*mask & 0xc0)
    return fail(start, "DataValue has unknown mask bits " + std::to_string(*mask));
  data_value dv;
  if (*mask & dv_value) {
    auto v = read_variant();
    if (!v)
      return v.err();
    dv.value = std::move(*v);
  }
  if (*mask & dv_status) {
    auto s = read_status_code();
    if (!s)
      return s.err();
    dv.status = *s;
  }
  if (*mask & dv_source_timestamp) {
    auto t = read_le<int64_t>("DataValue source timestamp");
    if (!t)
      return t.err();
    dv.source_timestamp = date_time{*t};
  }
  if (*mask & dv_source_picoseconds) {
    auto p = read_le<uint16_t>("DataValue source picoseconds");
    if (!p)
      return p.err();
    dv.source_picoseconds = *p;
  }
  if (*mask & dv_server_timestamp) {
    auto t = read_le<int64_t>("DataValue server timestamp");
    if (!t)
      return t.err();
    dv.server_timestamp = date_time{*t};
  }
  if (*mask & dv_server_picoseconds) {
    auto p = read_le<uint16_t>("DataValue server picoseconds");
    if (!p)
      return p.err();
    dv.server_picoseconds = *p;
  }
  return dv;
}

} // namespace fabrik::opcua
