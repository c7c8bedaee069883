// OPC UA binary encoding (drivers/opcua/encoding): byte-exact examples from Part 6, round
// trips of every built-in type, and refusal of truncated and hostile input.

#include "drivers/opcua/encoding.hpp"

#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>

using namespace fabrik;
using namespace fabrik::opcua;
using fabrik::test_support::hex;
using fabrik::test_support::to_hex;

// The largest single allocation, to show hostile lengths allocate nothing big. Replacing
// the global operator new is per program: this is the only test file that does it.
namespace {
std::atomic<size_t> largest_allocation{0};
}

// GCC cannot see that operator new below is malloc too.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  size_t seen = largest_allocation.load(std::memory_order_relaxed);
  while (n > seen
         && !largest_allocation.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc{};
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

constexpr int64_t i64_min = std::numeric_limits<int64_t>::min();
constexpr int64_t i64_max = std::numeric_limits<int64_t>::max();

/// Bytes from a hex string such as "01 05 01 04".

template <class T>
std::string encode(const T& v) {
  writer w;
  w.write(v);
  return w.release();
}

/// Decodes all of `bytes` as one T; fails the test when bytes are left over.
template <class T>
T decode(std::string_view bytes) {
  reader r{bytes};
  auto v = read_value<T>(r);
  INFO(to_hex(bytes));
  if (!v)
    FAIL(v.err().what());
  CHECK(r.at_end());
  return *v;
}

template <class T>
error decode_error(std::string_view bytes) {
  reader r{bytes};
  auto v = read_value<T>(r);
  INFO(to_hex(bytes));
  REQUIRE_FALSE(v);
  CHECK(v.err().code == ec::parse_error);
  return v.err();
}

/// Every proper prefix of a valid encoding is refused with a parse error naming an offset.
template <class T>
void check_truncations(const std::string& bytes) {
  decode<T>(bytes); // the whole is valid
  for (size_t n = 0; n < bytes.size(); ++n) {
    INFO("prefix of " << n << " of " << bytes.size() << " bytes: " << to_hex(bytes));
    reader r{std::string_view{bytes}.substr(0, n)};
    auto v = read_value<T>(r);
    REQUIRE_FALSE(v);
    CHECK(v.err().code == ec::parse_error);
    CHECK(v.err().message.find("offset") != std::string::npos);
    CHECK(r.offset() <= n);
  }
}

template <class T>
void check_round_trip(const T& v) {
  std::string bytes = encode(v);
  INFO(to_hex(bytes));
  CHECK(decode<T>(bytes) == v);
  check_truncations<T>(bytes);
}

/// A scalar Variant.
variant var(scalar s) { return variant{std::move(s), {}, {}}; }

const guid spec_guid{0x72962B91, 0xFA75, 0x4AE6, {0x8D, 0x28, 0xB4, 0x04, 0xDC, 0x7D, 0xAF, 0x63}};
const char* const spec_guid_bytes = "91 2b 96 72 75 fa e6 4a 8d 28 b4 04 dc 7d af 63";
const std::string hot_water = "Hot\xE6\xB0\xB4"; // "Hot水"

/// One sample of every supported scalar type, by built-in type id.
std::vector<scalar> samples() {
  return {
    true,
    int8_t{-100},
    uint8_t{200},
    int16_t{-30000},
    uint16_t{60000},
    int32_t{-2000000000},
    uint32_t{4000000000u},
    int64_t{-9000000000000000000},
    uint64_t{18000000000000000000u},
    1.25f,
    -2.5e300,
    hot_water,
    date_time{133028821101590000},
    spec_guid,
    byte_string{std::string("\0\x01\xff", 3)},
    xml_element{"<a>b</a>"},
    node_id{3, std::string{"Line1.Temp"}},
    expanded_node_id{node_id{0, uint32_t{1025}}, "urn:plant", 2},
    status_code{0x80340000}, // BadNodeIdUnknown
    qualified_name{2, "Temperature"},
    localized_text{"en", "Hot water"},
    extension_object{node_id{0, uint32_t{298}}, extension_object::binary, "\x01\x02\x03"},
  };
}

} // namespace

TEST_CASE("OPC UA integers, floats and Boolean are little-endian and exact", "[opcua]") {
  CHECK(encode(true) == hex("01"));
  CHECK(encode(false) == hex("00"));
  CHECK(encode(int8_t{-2}) == hex("fe"));
  CHECK(encode(int16_t{-2}) == hex("fe ff"));
  CHECK(encode(uint16_t{0x1234}) == hex("34 12"));
  CHECK(encode(int32_t{1025}) == hex("01 04 00 00"));
  CHECK(encode(uint32_t{0xdeadbeef}) == hex("ef be ad de"));
  CHECK(encode(int64_t{-1}) == hex("ff ff ff ff ff ff ff ff"));
  CHECK(encode(uint64_t{0x0102030405060708}) == hex("08 07 06 05 04 03 02 01"));
  CHECK(encode(1.0f) == hex("00 00 80 3f"));
  CHECK(encode(1.5) == hex("00 00 00 00 00 00 f8 3f"));
  CHECK(decode<bool>(hex("02")) == true); // any non-zero is true
  CHECK(decode<int16_t>(hex("fe ff")) == -2);
  CHECK(decode<uint64_t>(hex("08 07 06 05 04 03 02 01")) == 0x0102030405060708u);
  CHECK(decode<double>(hex("00 00 00 00 00 00 f8 3f")) == 1.5);

  auto e = decode_error<int32_t>(hex("01 02"));
  CHECK(e.message == "OPC UA truncated Int32 (needs 4 bytes, 2 left) at offset 0");
}

TEST_CASE("OPC UA String, ByteString and Guid match Part 6", "[opcua]") {
  // 5.2.2.4: Int32 length in bytes, then UTF-8 without terminator.
  CHECK(encode(std::string_view{hot_water}) == hex("06 00 00 00 48 6f 74 e6 b0 b4"));
  CHECK(decode<std::string>(hex("06 00 00 00 48 6f 74 e6 b0 b4")) == hot_water);
  CHECK(encode(std::string_view{}) == hex("00 00 00 00"));
  CHECK(decode<std::string>(hex("ff ff ff ff")).empty()); // null
  CHECK(encode(byte_string{"\x01\x02"}) == hex("02 00 00 00 01 02"));
  // 5.2.2.6, Figure 5: 72962B91-FA75-4AE6-8D28-B404DC7DAF63.
  CHECK(encode(spec_guid) == hex(spec_guid_bytes));
  CHECK(decode<guid>(hex(spec_guid_bytes)) == spec_guid);

  auto e = decode_error<std::string>(hex("fe ff ff ff"));
  CHECK(e.message.find("negative length -2") != std::string::npos);
}

TEST_CASE("OPC UA NodeId encodings match Part 6 and the writer picks the shortest", "[opcua]") {
  // 5.2.2.9 examples.
  CHECK(encode(node_id{0, uint32_t{72}}) == hex("00 48"));
  CHECK(encode(node_id{5, uint32_t{1025}}) == hex("01 05 01 04"));
  CHECK(encode(node_id{1, hot_water}) == hex("03 01 00 06 00 00 00 48 6f 74 e6 b0 b4"));
  CHECK(encode(node_id{4, spec_guid}) == hex(std::string{"04 04 00 "} + spec_guid_bytes));
  CHECK(encode(node_id{2, byte_string{"\xab\xcd"}}) == hex("05 02 00 02 00 00 00 ab cd"));
  CHECK(decode<node_id>(hex("00 48")) == node_id{0, uint32_t{72}});
  CHECK(decode<node_id>(hex("01 05 01 04")) == node_id{5, uint32_t{1025}});
  CHECK(decode<node_id>(hex("03 01 00 06 00 00 00 48 6f 74 e6 b0 b4")) == node_id{1, hot_water});
  CHECK(decode<node_id>(hex(std::string{"04 04 00 "} + spec_guid_bytes)) == node_id{4, spec_guid});

  // Shortest form at each boundary.
  CHECK(encode(node_id{0, uint32_t{255}}) == hex("00 ff"));
  CHECK(encode(node_id{0, uint32_t{256}}) == hex("01 00 00 01"));
  CHECK(encode(node_id{255, uint32_t{65535}}) == hex("01 ff ff ff"));
  CHECK(encode(node_id{255, uint32_t{65536}}) == hex("02 ff 00 00 00 01 00"));
  CHECK(encode(node_id{256, uint32_t{1}}) == hex("02 00 01 01 00 00 00"));
  // A longer form than needed is still read.
  CHECK(decode<node_id>(hex("02 00 00 48 00 00 00")) == node_id{0, uint32_t{72}});

  CHECK(decode_error<node_id>(hex("06 00 00")).message
        == "OPC UA NodeId has unknown encoding 6 at offset 0");
  CHECK(decode_error<node_id>(hex("80 48")).message.find("ExpandedNodeId flags")
        != std::string::npos);
}

TEST_CASE("OPC UA ExpandedNodeId writes its flags, namespace URI and server index", "[opcua]") {
  CHECK(encode(expanded_node_id{node_id{0, uint32_t{72}}, "", 0}) == hex("00 48"));
  CHECK(encode(expanded_node_id{node_id{0, uint32_t{1025}}, "urn:x", 0})
        == hex("81 00 01 04 05 00 00 00 75 72 6e 3a 78"));
  CHECK(encode(expanded_node_id{node_id{0, uint32_t{72}}, "", 3}) == hex("40 48 03 00 00 00"));
  CHECK(decode<expanded_node_id>(hex("c0 48 01 00 00 00 61 07 00 00 00"))
        == expanded_node_id{node_id{0, uint32_t{72}}, "a", 7});
}

TEST_CASE("OPC UA DateTime converts to and from fabrik time with Part 6's edge cases", "[opcua]") {
  // 1970-01-01 is 116444736000000000 ticks after 1601-01-01.
  CHECK(encode(date_time{unix_epoch_ticks}) == hex("00 80 3e d5 de b1 9d 01"));
  CHECK(to_unix_ns(date_time{unix_epoch_ticks}) == 0);
  CHECK(from_unix_ns(0) == date_time{unix_epoch_ticks});
  // 2022-07-21T13:01:50.159Z
  CHECK(encode(from_unix_ns(1658408510159000000)) == hex("f0 35 a6 0a 02 9d d8 01"));
  CHECK(to_unix_ns(decode<date_time>(hex("f0 35 a6 0a 02 9d d8 01"))) == 1658408510159000000);
  // Sub-100-ns parts round down, also before 1970.
  CHECK(from_unix_ns(199) == date_time{unix_epoch_ticks + 1});
  CHECK(from_unix_ns(-1) == date_time{unix_epoch_ticks - 1});
  CHECK(to_unix_ns(from_unix_ns(-1)) == -100);

  // 0 and Int64 max are the earliest and latest times; so are values outside 1677..2262.
  CHECK(to_unix_ns(date_time{0}) == i64_min);
  CHECK(to_unix_ns(date_time{-5}) == i64_min);
  CHECK(to_unix_ns(date_time{1}) == i64_min); // 1601, before fabrik's earliest
  CHECK(to_unix_ns(date_time{i64_max}) == i64_max);
  CHECK(to_unix_ns(date_time{i64_max - 1}) == i64_max); // year 29228
  CHECK(from_unix_ns(i64_min) == date_time{0});
  CHECK(from_unix_ns(i64_max) == date_time{i64_max});
  CHECK(to_unix_ns(from_unix_ns(i64_min)) == i64_min);
  CHECK(to_unix_ns(from_unix_ns(i64_max)) == i64_max);
  // Just inside fabrik's range, both ends, without overflow.
  const int64_t earliest = i64_min + 8, latest = i64_max - 7; // multiples of 100
  REQUIRE(earliest % 100 == 0);
  REQUIRE(latest % 100 == 0);
  CHECK(to_unix_ns(from_unix_ns(earliest)) == earliest);
  CHECK(to_unix_ns(from_unix_ns(latest)) == latest);
  CHECK(to_unix_ns(from_unix_ns(i64_min + 1)) == i64_min); // rounded down past the earliest
  CHECK(to_unix_ns(date_time{unix_epoch_ticks + latest / 100 + 1}) == i64_max); // 2262
  CHECK(to_unix_ns(date_time{unix_epoch_ticks + earliest / 100 - 1}) == i64_min); // 1677
}

TEST_CASE("OPC UA QualifiedName, LocalizedText and ExtensionObject", "[opcua]") {
  CHECK(encode(qualified_name{2, "Temp"}) == hex("02 00 04 00 00 00 54 65 6d 70"));
  CHECK(encode(localized_text{"en", "Hi"}) == hex("03 02 00 00 00 65 6e 02 00 00 00 48 69"));
  CHECK(encode(localized_text{std::nullopt, "Hi"}) == hex("02 02 00 00 00 48 69"));
  CHECK(encode(localized_text{}) == hex("00"));
  CHECK(decode<localized_text>(hex("01 02 00 00 00 65 6e")) == localized_text{"en", std::nullopt});
  CHECK(decode_error<localized_text>(hex("04")).message.find("unknown mask bits 4")
        != std::string::npos);

  CHECK(encode(extension_object{node_id{0, uint32_t{2}}, extension_object::binary, "\xaa\xbb\xcc"})
        == hex("00 02 01 03 00 00 00 aa bb cc"));
  CHECK(encode(extension_object{node_id{0, uint32_t{2}}, extension_object::none, ""})
        == hex("00 02 00"));
  CHECK(decode<extension_object>(hex("00 02 02 03 00 00 00 3c 61 3e"))
        == extension_object{node_id{0, uint32_t{2}}, extension_object::xml, "<a>"});
  CHECK(decode_error<extension_object>(hex("00 02 03 00 00 00 00")).message
        == "OPC UA ExtensionObject has unknown encoding 3 at offset 2");
}

TEST_CASE("OPC UA Variant scalars and arrays match Part 6", "[opcua]") {
  CHECK(encode(variant{}) == hex("00"));
  CHECK(encode(var(int32_t{-1})) == hex("06 ff ff ff ff"));
  CHECK(encode(var(true)) == hex("01 01"));
  CHECK(encode(var(std::string{"hi"})) == hex("0c 02 00 00 00 68 69"));
  CHECK(encode(var(1.5)) == hex("0b 00 00 00 00 00 00 f8 3f"));
  CHECK(encode(var(status_code{0x80000000})) == hex("13 00 00 00 80"));

  // Array flag 0x80 | Int32 (6), Int32 length, elements.
  variant ints{{}, std::vector<int32_t>{1, 2, 3}, {}};
  const std::string ints_bytes = hex("86 03 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00");
  CHECK(encode(ints) == ints_bytes);
  auto read = decode<variant>(ints_bytes);
  CHECK(read.is_array());
  CHECK(read.type_id() == 6);
  CHECK(std::get<std::vector<int32_t>>(read.values) == std::vector<int32_t>{1, 2, 3});
  CHECK(decode<variant>(hex("86 ff ff ff ff")) == variant{{}, std::vector<int32_t>{}, {}}); // null

  variant bools{{}, std::vector<bool>{true, false, true}, {}};
  CHECK(encode(bools) == hex("81 03 00 00 00 01 00 01"));

  // A 2x2 matrix: dimensions flag 0x40, flattened elements, then the dimensions.
  variant matrix{{}, std::vector<int32_t>{1, 2, 3, 4}, {2, 2}};
  const std::string matrix_bytes = hex("c6 04 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 "
                                       "00 00 02 00 00 00 02 00 00 00 02 00 00 00");
  CHECK(encode(matrix) == matrix_bytes);
  CHECK(decode<variant>(matrix_bytes) == matrix);
  CHECK(decode_error<variant>(hex("c6 04 00 00 00 01 00 00 00 02 00 00 00 03 00 00 00 04 00 00 00 "
                                  "02 00 00 00 02 00 00 00 03 00 00 00"))
          .message.find("do not multiply")
        != std::string::npos);
  CHECK(
    decode_error<variant>(hex("46 01 00 00 00")).message.find("scalar Variant has array dimensions")
    != std::string::npos);
  CHECK(decode_error<variant>(hex("80")).message.find("null Variant") != std::string::npos);
}

TEST_CASE("OPC UA Variant refuses unknown and unsupported built-in types clearly", "[opcua]") {
  CHECK(decode_error<variant>(hex("1a 00 00 00 00")).message
        == "OPC UA Variant has unknown built-in type id 26 at offset 0");
  CHECK(decode_error<variant>(hex("3f")).message.find("unknown built-in type id 63")
        != std::string::npos);
  CHECK(decode_error<variant>(hex("17 00")).message
        == "OPC UA Variant of DataValue (type id 23) is not supported at offset 0");
  CHECK(decode_error<variant>(hex("98 00 00 00 00")).message.find("Variant of Variant")
        != std::string::npos);
  CHECK(decode_error<variant>(hex("19 00")).message.find("DiagnosticInfo") != std::string::npos);
  // The offset is where the Variant starts within the message.
  const std::string message = hex("01 02 03 1a");
  reader r{message};
  REQUIRE(r.read_byte());
  REQUIRE(r.read_uint16());
  auto v = r.read_variant();
  REQUIRE_FALSE(v);
  CHECK(v.err().message.find("at offset 3") != std::string::npos);
}

TEST_CASE("OPC UA DataValue writes its mask and fields in Part 6 order", "[opcua]") {
  // Value (Double 1.5) and source timestamp (1970-01-01): mask 0x01 | 0x04.
  data_value dv;
  dv.value = var(1.5);
  dv.source_timestamp = date_time{unix_epoch_ticks};
  const std::string bytes = hex("05 0b 00 00 00 00 00 00 f8 3f 00 80 3e d5 de b1 9d 01");
  CHECK(encode(dv) == bytes);
  CHECK(decode<data_value>(bytes) == dv);

  // Every field: value, status, source timestamp, source picoseconds, server timestamp,
  // server picoseconds.
  data_value all{var(uint8_t{7}), status_code{0x80000000}, date_time{1}, uint16_t{2}, date_time{3},
                 uint16_t{4}};
  CHECK(encode(all)
        == hex("3f 03 07 00 00 00 80 01 00 00 00 00 00 00 00 02 00 03 00 00 00 00 00 "
               "00 00 04 00"));
  CHECK(decode<data_value>(encode(all)) == all);
  CHECK(encode(data_value{}) == hex("00"));
  CHECK(decode<data_value>(hex("00")) == data_value{});

  auto e = decode_error<data_value>(hex("04 00 80 3e d5"));
  CHECK(e.message
        == "OPC UA truncated DataValue source timestamp (needs 8 bytes, 4 left) at offset 1");
  CHECK(decode_error<data_value>(hex("40")).message.find("unknown mask bits") != std::string::npos);
}

TEST_CASE("OPC UA every built-in type round-trips and every truncation is refused", "[opcua]") {
  auto all = samples();
  REQUIRE(all.size() == 22);
  for (size_t i = 0; i < all.size(); ++i) {
    const scalar& s = all[i];
    INFO("built-in type " << builtin_type_name(static_cast<unsigned>(i + 1)));
    REQUIRE(s.index() == i + 1);
    // The type on its own.
    std::visit(
      [](const auto& x) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, std::monostate>)
          check_round_trip(x);
      },
      s);
    // As a Variant scalar, and as an array of three.
    variant v{s, {}, {}};
    CHECK(v.type_id() == i + 1);
    check_round_trip(v);
    variant a;
    std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (!std::is_same_v<T, std::monostate>)
          a.values = std::vector<T>{x, x, x};
      },
      s);
    CHECK(a.type_id() == i + 1);
    check_round_trip(a);
    // In a DataValue with every field.
    check_round_trip(data_value{v, status_code{0x40000000}, date_time{10}, uint16_t{1},
                                date_time{20}, uint16_t{2}});
  }
  // Every NodeId form and the ExpandedNodeId flags.
  for (const node_id& id :
       {node_id{0, uint32_t{1}}, node_id{1, uint32_t{300}}, node_id{7, uint32_t{1u << 20}},
        node_id{1, std::string{}}, node_id{1, spec_guid}, node_id{1, byte_string{"x"}}}) {
    check_round_trip(id);
    check_round_trip(expanded_node_id{id, "urn:a", 9});
    check_round_trip(expanded_node_id{id, "", 9});
    check_round_trip(expanded_node_id{id, "urn:a", 0});
  }
  check_round_trip(variant{{}, std::vector<double>{1, 2, 3, 4, 5, 6}, {1, 2, 3}});
  check_round_trip(localized_text{});
}

TEST_CASE("OPC UA hostile lengths are refused without allocating", "[opcua]") {
  constexpr size_t small = 1 << 16;

  // A String claiming 2^31-1 bytes with 3 present.
  largest_allocation = 0;
  auto e = decode_error<std::string>(hex("ff ff ff 7f 61 62 63"));
  CHECK(e.message == "OPC UA String claims 2147483647 bytes, 3 left at offset 0");
  CHECK(largest_allocation < small);

  largest_allocation = 0;
  decode_error<byte_string>(hex("ff ff ff 7f 61 62 63"));
  decode_error<node_id>(hex("03 00 00 ff ff ff 7f 61"));
  decode_error<extension_object>(hex("00 02 01 ff ff ff 7f 61"));
  CHECK(largest_allocation < small);

  // An array claiming 10^9 elements.
  largest_allocation = 0;
  e = decode_error<variant>(hex("86 00 ca 9a 3b 01 00 00 00"));
  CHECK(e.message
        == "OPC UA Variant array of 1000000000 elements is longer than 1000000 at offset 1");
  CHECK(largest_allocation < small);

  // Under the cap, but more elements than the bytes left could hold.
  for (const char* type : {"81", "86", "8b", "8c", "8e", "91", "96"}) {
    largest_allocation = 0;
    e = decode_error<variant>(hex(std::string{type} + " 40 42 0f 00 01 02 03 04"));
    CHECK(e.message.find("elements, only 4 bytes left") != std::string::npos);
    CHECK(largest_allocation < small);
  }
  // 10^6 empty Strings is fine when the bytes are there (4 MB of lengths) ...
  std::string many = hex("8c 40 42 0f 00") + std::string(4'000'000, '\0');
  CHECK(std::get<std::vector<std::string>>(decode<variant>(many).values).size() == 1'000'000);
  // ... and refused when one byte is missing.
  many.pop_back();
  decode_error<variant>(many);

  // Array dimensions: too many, or more than the bytes left.
  largest_allocation = 0;
  decode_error<variant>(hex("c6 00 00 00 00 ff ff ff 7f"));
  decode_error<variant>(hex("c6 00 00 00 00 10 00 00 00 00 00 00 00"));
  decode_error<variant>(hex("c6 00 00 00 00 00 00 00 00"));
  CHECK(largest_allocation < small);
  CHECK(decode_error<variant>(hex("86 fe ff ff ff")).message.find("negative length -2")
        != std::string::npos);
}
