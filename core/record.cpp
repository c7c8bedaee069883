// Records: binary encoding, identity (digest and key) and JSON lines. The byte layouts are
// a contract, written down in docs/records.md; change them only with a version bump.

#include "core/record.hpp"

#include "core/time.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace fabrik {

const char* type_name(const value& v) {
  switch (v.index()) {
    case 0:
      return "double";
    case 1:
      return "int";
    case 2:
      return "bool";
    case 3:
      return "string";
    case 4:
      return "bytes";
  }
  return "unknown";
}

const value* record::find(std::string_view name) const {
  for (auto& f : fields)
    if (f.name == name)
      return &f.v;
  return nullptr;
}

namespace {

// -- primitive writers --------------------------------------------------------

void put_be64(std::string& out, uint64_t x) {
  char buf[8];
  for (int i = 0; i < 8; ++i)
    buf[i] = static_cast<char>((x >> (8 * (7 - i))) & 0xff);
  out.append(buf, 8);
}

uint64_t to_le(uint64_t x) {
  return std::endian::native == std::endian::little ? x : __builtin_bswap64(x);
}

/// The low 56 bits of `x` in 7-bit groups, one a byte (the inverse of reader::gather7).
uint64_t spread7(uint64_t x) {
  x = (x & 0x000000000fffffffULL) | (x & 0x00fffffff0000000ULL) << 4;
  x = (x & 0x00003fff00003fffULL) | (x & 0x0fffc0000fffc000ULL) << 2;
  return (x & 0x007f007f007f007fULL) | (x & 0x3f803f803f803f80ULL) << 1;
}

/// Writes into a buffer with room. Each write works on a local copy of the cursor: a store
/// through a char* may alias the member, which would reload it per byte.
struct pointer_writer {
  char* p;
  void byte(char c) { *p++ = c; }
  void bytes(const char* s, size_t k) {
    // Names and streams are short: two overlapping word copies, no call into memcpy.
    if (k >= 8 && k <= 16) {
      copy_two<uint64_t>(s, k);
    } else if (k >= 4 && k < 8) {
      copy_two<uint32_t>(s, k);
    } else if (k > 0 && k < 4) { // the first, the middle and the last byte cover 1 to 3
      p[0] = s[0];
      p[k / 2] = s[k / 2];
      p[k - 1] = s[k - 1];
    } else {
      std::memcpy(p, s, k);
    }
    p += k;
  }
  /// Copies k bytes, sizeof(T) <= k <= 2 * sizeof(T), as the first and the last T.
  template <class T>
  void copy_two(const char* s, size_t k) {
    T a, b;
    std::memcpy(&a, s, sizeof(T));
    std::memcpy(&b, s + k - sizeof(T), sizeof(T));
    std::memcpy(p, &a, sizeof(T));
    std::memcpy(p + k - sizeof(T), &b, sizeof(T));
  }
  void le64(uint64_t x) {
    x = to_le(x);
    std::memcpy(p, &x, 8);
    p += 8;
  }
  void varint(uint64_t x) {
    char* q = p;
    if (x >> 56 != 0) { // 9 or 10 bytes (times in ns, say): the first 8 at once
      uint64_t w = to_le(spread7(x) | 0x8080808080808080ULL);
      std::memcpy(q, &w, 8);
      q += 8;
      x >>= 56;
    }
    while (x >= 0x80) {
      *q++ = static_cast<char>((x & 0x7f) | 0x80);
      x >>= 7;
    }
    *q++ = static_cast<char>(x);
    p = q;
  }
};

/// Appends to a string it grows as it goes: the encoding is written in one pass, with no
/// pass before it to size the output (that pass took a third of the time). This runs for
/// every record stored and every record that crosses a node.
struct growing_writer {
  std::string& out;
  char* p;
  char* end;

  explicit growing_writer(std::string& s) : out(s), p(s.data() + s.size()), end(p) {}
  size_t pos() const { return static_cast<size_t>(p - out.data()); }
  /// Makes room for `n` more bytes.
  void need(size_t n) {
    if (static_cast<size_t>(end - p) < n) [[unlikely]]
      grow(n);
  }
  [[gnu::noinline]] void grow(size_t n) {
    auto at = pos();
    out.resize(std::max(at + n, 2 * out.size() + 256));
    p = out.data() + at;
    end = out.data() + out.size();
  }
  /// Cuts the string to what was written.
  void finish() { out.resize(pos()); }

  void byte(char c) {
    need(1);
    *p++ = c;
  }
  void bytes(const char* s, size_t k) {
    write(k, [&](pointer_writer& w) { w.bytes(s, k); });
  }
  void le64(uint64_t x) {
    write(8, [&](pointer_writer& w) { w.le64(x); });
  }
  void varint(uint64_t x) {
    write(10, [&](pointer_writer& w) { w.varint(x); });
  }

private:
  template <class F>
  void write(size_t most, F f) {
    need(most);
    pointer_writer w{p};
    f(w);
    p = w.p;
  }
};

/// Appends to a string (the digest's bytes, keys): short pieces, not the hot path.
struct string_writer {
  std::string& out;
  void bytes(const char* s, size_t k) { out.append(s, k); }
  void le64(uint64_t x) {
    x = to_le(x);
    bytes(reinterpret_cast<const char*>(&x), 8);
  }
};

template <class W>
[[gnu::always_inline]] inline void w_bytes(W& w, std::string_view s) {
  w.varint(s.size());
  w.bytes(s.data(), s.size());
}

void put_le64(std::string& out, uint64_t x) { string_writer{out}.le64(x); }

uint64_t zigzag(int64_t x) {
  return (static_cast<uint64_t>(x) << 1) ^ static_cast<uint64_t>(x >> 63);
}

int64_t unzigzag(uint64_t x) { return static_cast<int64_t>(x >> 1) ^ -static_cast<int64_t>(x & 1); }

// -- a bounds-checked reader ----------------------------------------------------

/// Reads from a byte range; every accessor fails instead of reading past the end.
class reader {
public:
  explicit reader(std::string_view in) : in_(in) {}

  size_t remaining() const { return in_.size() - pos_; }
  size_t pos() const { return pos_; }

  bool u8(uint8_t& x) {
    if (remaining() < 1)
      return false;
    x = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }

  bool le16(uint16_t& x) {
    if (remaining() < 2)
      return false;
    x = static_cast<uint16_t>(byte(0) | (byte(1) << 8));
    pos_ += 2;
    return true;
  }

  bool le64(uint64_t& x) {
    if (remaining() < 8)
      return false;
    std::memcpy(&x, in_.data() + pos_, 8);
    x = to_le(x);
    pos_ += 8;
    return true;
  }

  // Inlined: called for every length, count and int of every record decoded.
  [[gnu::always_inline]] bool varint(uint64_t& x) {
    if (pos_ < in_.size() && byte(0) < 0x80) { // most lengths and counts: one byte
      x = byte(0);
      ++pos_;
      return true;
    }
    return long_varint(x);
  }

  [[gnu::noinline]] bool long_varint(uint64_t& x) {
    if (remaining() >= 10) { // a whole varint fits: its first 8 bytes at once
      auto p = reinterpret_cast<const unsigned char*>(in_.data() + pos_);
      uint64_t lo = 0;
      std::memcpy(&lo, p, 8);
      lo = to_le(lo);
      if (uint64_t ends = ~lo & 0x8080808080808080ULL; ends != 0) { // ends in these 8
        auto n = static_cast<size_t>(std::countr_zero(ends)) / 8 + 1;
        x = gather7(n == 8 ? lo : lo & ((uint64_t{1} << (8 * n)) - 1));
        pos_ += n;
        return true;
      }
      uint64_t v = gather7(lo) | (uint64_t{p[8]} & 0x7f) << 56;
      if (p[8] < 0x80) {
        x = v;
        pos_ += 9;
        return true;
      }
      if (p[9] > 1) // the tenth byte may only carry the top bit
        return false;
      x = v | uint64_t{p[9]} << 63;
      pos_ += 10;
      return true;
    }
    x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = 0;
      if (!u8(b))
        return false;
      // The tenth byte may only carry the top bit of a 64-bit value.
      if (shift == 63 && b > 1)
        return false;
      x |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0)
        return true;
    }
    return false;
  }

  [[gnu::always_inline]] bool bytes(std::string_view& s) {
    uint64_t n = 0;
    if (!varint(n) || n > remaining())
      return false;
    s = in_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return true;
  }

private:
  /// The 7-bit groups of up to 8 varint bytes (little-endian in `v`), joined: 14-bit groups
  /// in 16-bit lanes, then 28 in 32, then all 56 bits (no loop over the bytes).
  static uint64_t gather7(uint64_t v) {
    v &= 0x7f7f7f7f7f7f7f7fULL;
    v = (v & 0x007f007f007f007fULL) | (v & 0x7f007f007f007f00ULL) >> 1;
    v = (v & 0x00003fff00003fffULL) | (v & 0x3fff00003fff0000ULL) >> 2;
    return (v & 0x000000000fffffffULL) | (v & 0x0fffffff00000000ULL) >> 4;
  }

  unsigned byte(size_t i) const { return static_cast<unsigned char>(in_[pos_ + i]); }

  std::string_view in_;
  size_t pos_ = 0;
};

error truncated(const reader& r, const char* what) {
  return make_error(ec::parse_error, std::string{"record truncated or malformed at byte "}
                                       + std::to_string(r.pos()) + " (" + what + ")");
}

// -- values -----------------------------------------------------------------------

// Type tags are the variant's alternative index: the order of `value` is part of the format.
constexpr uint8_t tag_double = 0, tag_int = 1, tag_bool = 2, tag_string = 3, tag_bytes = 4;

/// A value's bytes without its type tag (a batch gives the tags once for a run of records).
template <class W>
[[gnu::always_inline]] inline void w_payload(W& w, const value& v) {
  switch (v.index()) {
    case tag_double:
      w.le64(std::bit_cast<uint64_t>(*std::get_if<double>(&v)));
      break;
    case tag_int:
      w.varint(zigzag(*std::get_if<int64_t>(&v)));
      break;
    case tag_bool:
      w.byte(*std::get_if<bool>(&v) ? 1 : 0);
      break;
    case tag_string:
      w_bytes(w, *std::get_if<std::string>(&v));
      break;
    case tag_bytes:
      w_bytes(w, std::get_if<bytes>(&v)->data);
      break;
  }
}

template <class W>
[[gnu::always_inline]] inline void w_value(W& w, const value& v) {
  w.byte(static_cast<char>(v.index()));
  w_payload(w, v);
}

// Inlined, with what it calls: as calls, they took a third of the encoding's time.
template <class W>
[[gnu::always_inline]] inline void w_record(W& w, const record& r) {
  w.byte(static_cast<char>(record_format_version));
  w_bytes(w, r.stream);
  w.le64(static_cast<uint64_t>(r.time));
  w.le64(static_cast<uint64_t>(r.ingest_time));
  w.varint(r.seq);
  w.byte(static_cast<char>(r.quality & 0xff));
  w.byte(static_cast<char>(r.quality >> 8));
  w.varint(r.fields.size());
  for (auto& f : r.fields) {
    w_bytes(w, f.name);
    w_value(w, f.v);
  }
}

/// Reads a value of type `tag` into `v` (a fresh double); on failure returns the error (the
/// hot path builds none).
std::optional<error> get_payload(reader& r, uint8_t tag, value& v) {
  switch (tag) {
    case tag_double: {
      uint64_t bits = 0;
      if (!r.le64(bits))
        return truncated(r, "double");
      v = std::bit_cast<double>(bits);
      return std::nullopt;
    }
    case tag_int: {
      uint64_t x = 0;
      if (!r.varint(x))
        return truncated(r, "int");
      v = unzigzag(x);
      return std::nullopt;
    }
    case tag_bool: {
      uint8_t b = 0;
      if (!r.u8(b) || b > 1)
        return truncated(r, "bool");
      v = b == 1;
      return std::nullopt;
    }
    case tag_string: {
      std::string_view s;
      if (!r.bytes(s))
        return truncated(r, "string");
      v.emplace<tag_string>(s);
      return std::nullopt;
    }
    case tag_bytes: {
      std::string_view s;
      if (!r.bytes(s))
        return truncated(r, "bytes");
      v.emplace<tag_bytes>(bytes{std::string{s}});
      return std::nullopt;
    }
  }
  return make_error(ec::parse_error, "unknown value type tag " + std::to_string(tag));
}

/// Reads a value's type tag (`what` names it when it is missing), refusing one that `value`
/// does not have.
[[gnu::always_inline]] inline std::optional<error> get_tag(reader& r, uint8_t& tag,
                                                           const char* what) {
  if (!r.u8(tag))
    return truncated(r, what);
  if (tag > tag_bytes)
    return make_error(ec::parse_error, "unknown value type tag " + std::to_string(tag) + " at byte "
                                         + std::to_string(r.pos() - 1));
  return std::nullopt;
}

std::optional<error> get_value(reader& r, value& v) {
  uint8_t tag = 0;
  if (auto e = get_tag(r, tag, "value type"))
    return e;
  return get_payload(r, tag, v);
}

/// Reads one record into `rec`, a default-constructed one (decoded in place: no record is
/// moved afterwards).
std::optional<error> get_record(std::string_view in, record& rec) {
  reader r{in};
  uint8_t version = 0;
  if (!r.u8(version))
    return make_error(ec::parse_error, "empty record");
  if (version != record_format_version)
    return make_error(ec::version_mismatch, "record format version " + std::to_string(version)
                                              + "; this fabrik reads version "
                                              + std::to_string(record_format_version));
  std::string_view stream;
  uint64_t time = 0, ingest = 0, seq = 0, count = 0;
  if (!r.bytes(stream))
    return truncated(r, "stream");
  rec.stream.append(stream); // into an empty string: cheaper than assign
  if (!r.le64(time) || !r.le64(ingest))
    return truncated(r, "time");
  rec.time = static_cast<int64_t>(time);
  rec.ingest_time = static_cast<int64_t>(ingest);
  if (!r.varint(seq))
    return truncated(r, "seq");
  rec.seq = seq;
  if (!r.le16(rec.quality))
    return truncated(r, "quality");
  if (!r.varint(count))
    return truncated(r, "field count");
  // A field takes at least 3 bytes: a garbage count must not make us reserve gigabytes.
  if (count > r.remaining() / 3)
    return truncated(r, "field count");
  rec.fields.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view name;
    if (!r.bytes(name))
      return truncated(r, "field name");
    auto& f = rec.fields.emplace_back();
    f.name.append(name);
    if (auto e = get_value(r, f.v))
      return e;
  }
  if (r.remaining() != 0)
    return make_error(ec::parse_error,
                      std::to_string(r.remaining()) + " bytes of garbage after the record");
  return std::nullopt;
}

// -- digest -----------------------------------------------------------------------

// FNV-1a 64: tiny, dependency-free and fixed forever by its published constants.
constexpr uint64_t fnv_offset = 14695981039346656037ULL;
constexpr uint64_t fnv_prime = 1099511628211ULL;

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= fnv_prime;
  }
  return h;
}

/// The canonical bytes of one field for the digest (docs/records.md, "Identity").
void digest_bytes(const field& f, std::string& out) {
  out.clear();
  put_le64(out, f.name.size());
  out.append(f.name);
  out.push_back(static_cast<char>(f.v.index()));
  switch (f.v.index()) {
    case tag_double: {
      double d = std::get<double>(f.v);
      // Values that compare equal digest equal: one NaN, one zero.
      uint64_t bits = std::isnan(d) ? 0x7ff8000000000000ULL
                      : d == 0.0    ? 0
                                    : std::bit_cast<uint64_t>(d);
      put_le64(out, bits);
      break;
    }
    case tag_int:
      put_le64(out, static_cast<uint64_t>(std::get<int64_t>(f.v)));
      break;
    case tag_bool:
      out.push_back(std::get<bool>(f.v) ? 1 : 0);
      break;
    case tag_string:
      put_le64(out, std::get<std::string>(f.v).size());
      out.append(std::get<std::string>(f.v));
      break;
    case tag_bytes:
      put_le64(out, std::get<bytes>(f.v).data.size());
      out.append(std::get<bytes>(f.v).data);
      break;
  }
}

// -- keys ---------------------------------------------------------------------------

uint64_t flip(int64_t t) { return static_cast<uint64_t>(t) ^ (1ULL << 63); }

uint64_t get_be64(std::string_view s) {
  uint64_t x = 0;
  for (size_t i = 0; i < 8; ++i)
    x = (x << 8) | static_cast<unsigned char>(s[i]);
  return x;
}

// -- JSON ---------------------------------------------------------------------------

std::string base64(std::string_view in) {
  static constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(in[k])); };
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t n = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(alphabet[(n >> 6) & 63]);
    out.push_back(alphabet[n & 63]);
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t n = at(i) << 16;
    if (rest == 2)
      n |= at(i + 1) << 8;
    out.push_back(alphabet[(n >> 18) & 63]);
    out.push_back(alphabet[(n >> 12) & 63]);
    out.push_back(rest == 2 ? alphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

nlohmann::ordered_json to_json(const value& v) {
  switch (v.index()) {
    case tag_double: {
      double d = std::get<double>(v);
      if (!std::isfinite(d))
        return nullptr;
      return d;
    }
    case tag_int:
      return std::get<int64_t>(v);
    case tag_bool:
      return std::get<bool>(v);
    case tag_string:
      return std::get<std::string>(v);
    case tag_bytes:
      return {{"base64", base64(std::get<bytes>(v).data)}};
  }
  return nullptr;
}

} // namespace

// -- encoding ---------------------------------------------------------------------

void encode(const record& r, std::string& out) {
  growing_writer w{out};
  w_record(w, r);
  w.finish();
}

expected<record> decode_record(std::string_view in) {
  record rec;
  if (auto e = get_record(in, rec))
    return *e;
  return rec;
}

namespace {

// Batch encoding, version 2 (docs/records.md). A record writes only what differs from the
// record before it in the batch: its stream, its layout (field names and types) and its
// quality when they change, times and seq as differences. Records of one source share all
// three, so a batch takes about a third of the bytes of version 1; every byte saved is
// copied some seven times on the way across nodes (spool, delivery, socket, both CAFs).
constexpr uint8_t batch_marker = 0; // a version 1 batch starting with 0 is the empty one
constexpr uint8_t batch_version = 2;
constexpr uint8_t new_stream = 1, new_layout = 2, new_quality = 4;

/// a - b as a zigzag varint value; wraps instead of overflowing.
uint64_t delta(uint64_t a, uint64_t b) { return zigzag(static_cast<int64_t>(a - b)); }

uint64_t undelta(uint64_t base, uint64_t d) { return base + static_cast<uint64_t>(unzigzag(d)); }

/// a == b for the short strings of streams and names, without a call into memcmp (which took
/// half the time of encoding a batch): two overlapping words, as pointer_writer copies them.
bool same_bytes(std::string_view a, std::string_view b) {
  auto k = a.size();
  if (k != b.size())
    return false;
  auto two = [&]<class T>(T) {
    T a0, a1, b0, b1;
    std::memcpy(&a0, a.data(), sizeof(T));
    std::memcpy(&b0, b.data(), sizeof(T));
    std::memcpy(&a1, a.data() + k - sizeof(T), sizeof(T));
    std::memcpy(&b1, b.data() + k - sizeof(T), sizeof(T));
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  };
  if (k >= 8 && k <= 16)
    return two(uint64_t{});
  if (k >= 4 && k < 8)
    return two(uint32_t{});
  if (k < 4) // the first, the middle and the last byte cover 1 to 3
    return k == 0 || (a[0] == b[0] && a[k / 2] == b[k / 2] && a[k - 1] == b[k - 1]);
  return std::memcmp(a.data(), b.data(), k) == 0;
}

bool same_layout(const std::vector<field>& a, const std::vector<field>& b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].v.index() != b[i].v.index() || !same_bytes(a[i].name, b[i].name))
      return false;
  return true;
}

/// What a record is written against: the record before it, or this before the first.
struct batch_context {
  std::string_view stream;
  const std::vector<field>* layout = nullptr;
  uint16_t quality = quality::good;
  uint64_t time = 0;
  uint64_t next_seq = 0;
};

/// A batch's records after its header: a varint count (refused when `min_bytes` a record
/// cannot fit the rest: a garbage count must not reserve gigabytes), then each record,
/// read by `one(i, rec)`, and nothing after the last.
template <class F>
expected<record_batch> decode_records(reader& r, size_t min_bytes, F one) {
  uint64_t count = 0;
  if (!r.varint(count))
    return make_error(ec::parse_error, "batch truncated (record count)");
  if (count > r.remaining() / min_bytes)
    return make_error(ec::parse_error, "batch truncated: " + std::to_string(count)
                                         + " records announced in " + std::to_string(r.remaining())
                                         + " bytes");
  record_batch b;
  b.records.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) // reserved: a record may point into the one before
    if (auto e = one(i, b.records.emplace_back()))
      return *e;
  if (r.remaining() != 0)
    return make_error(ec::parse_error,
                      std::to_string(r.remaining()) + " bytes of garbage after the batch");
  return b;
}

error in_record(uint64_t i, const error& e) {
  return make_error(e.code, "batch record " + std::to_string(i) + ": " + e.message);
}

/// Version 1: a varint count, then each record with a varint length before it (so a record
/// takes at least 2 bytes). Still read: a spool written by an older fabrik holds such
/// batches.
expected<record_batch> decode_batch_v1(std::string_view in) {
  reader r{in};
  return decode_records(r, 2, [&](uint64_t i, record& rec) -> std::optional<error> {
    std::string_view one;
    if (!r.bytes(one))
      return make_error(ec::parse_error, "batch truncated at record " + std::to_string(i));
    if (auto e = get_record(one, rec))
      return in_record(i, *e);
    return std::nullopt;
  });
}

/// Reads one version 2 record into `rec` (a default-constructed one); `tags` holds the
/// current layout's value types.
std::optional<error> get_batch_record(reader& r, batch_context& c, std::vector<uint8_t>& tags,
                                      record& rec) {
  uint8_t flags = 0;
  if (!r.u8(flags))
    return truncated(r, "flags");
  if (flags > (new_stream | new_layout | new_quality))
    return make_error(ec::parse_error, "unknown flags " + std::to_string(flags) + " at byte "
                                         + std::to_string(r.pos() - 1));
  if (flags & new_stream) {
    std::string_view stream;
    if (!r.bytes(stream))
      return truncated(r, "stream");
    c.stream = stream;
  }
  rec.stream.append(c.stream);
  if ((flags & new_quality) && !r.le16(c.quality))
    return truncated(r, "quality");
  rec.quality = c.quality;
  if (flags & new_layout) {
    uint64_t count = 0;
    // A field takes at least 2 bytes here: a garbage count must not reserve gigabytes.
    if (!r.varint(count) || count > r.remaining() / 2)
      return truncated(r, "field count");
    tags.clear();
    rec.fields.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      std::string_view name;
      uint8_t tag = 0;
      if (!r.bytes(name))
        return truncated(r, "field name");
      if (auto e = get_tag(r, tag, "field type"))
        return e;
      rec.fields.emplace_back().name.append(name);
      tags.push_back(tag);
    }
  } else if (c.layout) {
    rec.fields.reserve(c.layout->size());
    for (auto& f : *c.layout)
      rec.fields.emplace_back().name.append(f.name);
  }
  uint64_t time = 0, ingest = 0, seq = 0;
  if (!r.varint(time) || !r.varint(ingest))
    return truncated(r, "time");
  if (!r.varint(seq))
    return truncated(r, "seq");
  c.time = undelta(c.time, time);
  rec.time = static_cast<int64_t>(c.time);
  rec.ingest_time = static_cast<int64_t>(undelta(c.time, ingest));
  rec.seq = undelta(c.next_seq, seq);
  c.next_seq = rec.seq + 1;
  for (size_t i = 0; i < rec.fields.size(); ++i)
    if (auto e = get_payload(r, tags[i], rec.fields[i].v))
      return e;
  return std::nullopt;
}

/// Version 2: the marker and version bytes, then a varint count and the records (a record
/// takes at least 4 bytes: flags, time, ingest time, seq).
expected<record_batch> decode_batch_v2(std::string_view in) {
  reader r{in};
  uint8_t marker = 0, version = 0; // checked by decode_batch; read so that positions in
  r.u8(marker); // errors count from the batch's first byte
  r.u8(version);
  batch_context c;
  std::vector<uint8_t> tags;
  return decode_records(r, 4, [&](uint64_t i, record& rec) -> std::optional<error> {
    if (auto e = get_batch_record(r, c, tags, rec))
      return in_record(i, *e);
    c.stream = rec.stream;
    c.layout = &rec.fields;
    return std::nullopt;
  });
}

} // namespace

void encode(const record_batch& b, std::string& out) {
  growing_writer w{out};
  w.need(32 * b.records.size() + 12); // room for most batches of small records
  w.byte(static_cast<char>(batch_marker));
  w.byte(static_cast<char>(batch_version));
  w.varint(b.records.size());
  batch_context c;
  static const std::vector<field> no_fields;
  c.layout = &no_fields;
  for (auto& r : b.records) {
    uint8_t flags = 0;
    if (!same_bytes(r.stream, c.stream))
      flags |= new_stream;
    if (!same_layout(r.fields, *c.layout))
      flags |= new_layout;
    if (r.quality != c.quality)
      flags |= new_quality;
    w.byte(static_cast<char>(flags));
    if (flags & new_stream)
      w_bytes(w, r.stream);
    if (flags & new_quality) {
      w.byte(static_cast<char>(r.quality & 0xff));
      w.byte(static_cast<char>(r.quality >> 8));
    }
    if (flags & new_layout) {
      w.varint(r.fields.size());
      for (auto& f : r.fields) {
        w_bytes(w, f.name);
        w.byte(static_cast<char>(f.v.index()));
      }
    }
    w.varint(delta(static_cast<uint64_t>(r.time), c.time));
    w.varint(delta(static_cast<uint64_t>(r.ingest_time), static_cast<uint64_t>(r.time)));
    w.varint(delta(r.seq, c.next_seq));
    for (auto& f : r.fields)
      w_payload(w, f.v);
    c.stream = r.stream;
    c.layout = &r.fields;
    c.quality = r.quality;
    c.time = static_cast<uint64_t>(r.time);
    c.next_seq = r.seq + 1;
  }
  w.finish();
}

expected<record_batch> decode_batch(std::string_view in) {
  if (in.size() < 2 || in[0] != static_cast<char>(batch_marker))
    return decode_batch_v1(in);
  if (in[1] != static_cast<char>(batch_version))
    return make_error(ec::version_mismatch,
                      "batch format version " + std::to_string(static_cast<uint8_t>(in[1]))
                        + "; this fabrik reads versions 1 and " + std::to_string(batch_version));
  return decode_batch_v2(in);
}

// -- identity ---------------------------------------------------------------------

uint64_t content_digest(const record& r) {
  // Sorted, so that the order of fields in a message does not change its identity. The
  // buffers are reused: this runs for every record stored.
  thread_local std::vector<std::string> parts;
  thread_local std::vector<const std::string*> order;
  if (parts.size() < r.fields.size())
    parts.resize(r.fields.size());
  order.clear();
  for (size_t i = 0; i < r.fields.size(); ++i) {
    digest_bytes(r.fields[i], parts[i]);
    order.push_back(&parts[i]);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return *a < *b; });
  uint64_t h = fnv_offset;
  for (auto* p : order)
    h = fnv1a(h, *p);
  return h;
}

std::string record_key_prefix(std::string_view stream, int64_t time) {
  std::string key;
  key.reserve(stream.size() + 9);
  key.append(stream);
  key.push_back('\0');
  put_be64(key, flip(time));
  return key;
}

std::string record_key(const record& r) {
  auto key = record_key_prefix(r.stream, r.time);
  put_be64(key, content_digest(r));
  return key;
}

expected<key_parts> parse_record_key(std::string_view key) {
  if (key.size() < 17 || key[key.size() - 17] != '\0')
    return make_error(ec::parse_error,
                      "not a record key (" + std::to_string(key.size()) + " bytes)");
  key_parts parts;
  parts.stream = key.substr(0, key.size() - 17);
  if (parts.stream.find('\0') != std::string_view::npos)
    return make_error(ec::parse_error, "not a record key (0 byte inside the stream)");
  parts.time = static_cast<int64_t>(get_be64(key.substr(key.size() - 16)) ^ (1ULL << 63));
  parts.digest = get_be64(key.substr(key.size() - 8));
  return parts;
}

// -- JSON ---------------------------------------------------------------------------

std::string to_json_line(const record& r) {
  nlohmann::ordered_json fields = nlohmann::ordered_json::object();
  for (auto& f : r.fields)
    fields[f.name] = to_json(f.v);
  nlohmann::ordered_json j;
  j["stream"] = r.stream;
  j["time"] = format_time(r.time);
  j["ingest_time"] = format_time(r.ingest_time);
  j["seq"] = r.seq;
  j["quality"] = r.quality;
  j["fields"] = std::move(fields);
  // Field values are not guaranteed UTF-8: replace bad bytes rather than throw.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

} // namespace fabrik
