#include "drivers/mqtt/simatic.hpp"

#include "core/time.hpp"
#include "drivers/mqtt/json_format.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace fabrik::mqtt {
namespace {

using json = nlohmann::json;

constexpr int64_t i64_min = std::numeric_limits<int64_t>::min();
constexpr int64_t i64_max = std::numeric_limits<int64_t>::max();
constexpr size_t max_shown = 48; // characters of a bad value quoted in an error

// -- data types ---------------------------------------------------------------

struct type_info {
  std::string_view name;
  data_kind kind;
  int64_t min = 0;
  int64_t max = 0;
};

// Unsigned 64-bit types are clipped to int64: fabrik stores int64, and a larger value is
// reported as out of range rather than wrapped. The OPC UA spellings (Boolean, Int32,
// Double, ...) are accepted too: some connectors declare those.
constexpr type_info known_types[] = {
  {"Bool", data_kind::boolean},
  {"Boolean", data_kind::boolean},
  {"Byte", data_kind::integer, 0, 255},
  {"Word", data_kind::integer, 0, 65535},
  {"DWord", data_kind::integer, 0, 4294967295},
  {"LWord", data_kind::integer, 0, i64_max},
  {"SInt", data_kind::integer, -128, 127},
  {"USInt", data_kind::integer, 0, 255},
  {"Int", data_kind::integer, -32768, 32767},
  {"UInt", data_kind::integer, 0, 65535},
  {"DInt", data_kind::integer, -2147483648, 2147483647},
  {"UDInt", data_kind::integer, 0, 4294967295},
  {"LInt", data_kind::integer, i64_min, i64_max},
  {"ULInt", data_kind::integer, 0, i64_max},
  {"SByte", data_kind::integer, -128, 127},
  {"Int16", data_kind::integer, -32768, 32767},
  {"UInt16", data_kind::integer, 0, 65535},
  {"Int32", data_kind::integer, -2147483648, 2147483647},
  {"UInt32", data_kind::integer, 0, 4294967295},
  {"Int64", data_kind::integer, i64_min, i64_max},
  {"UInt64", data_kind::integer, 0, i64_max},
  {"Real", data_kind::real},
  {"LReal", data_kind::real},
  {"Float", data_kind::real},
  {"Double", data_kind::real},
  {"Char", data_kind::text},
  {"WChar", data_kind::text},
  {"String", data_kind::text},
  {"WString", data_kind::text},
  {"Time", data_kind::time},
  {"LTime", data_kind::time},
  {"DateTime", data_kind::time},
  {"Date", data_kind::time},
  {"Time_Of_Day", data_kind::time},
  {"LTime_Of_Day", data_kind::time},
  {"Date_And_Time", data_kind::time},
  {"DTL", data_kind::time},
  {"LDT", data_kind::time},
  {"S5Time", data_kind::time},
};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = a[i] >= 'A' && a[i] <= 'Z' ? a[i] - 'A' + 'a' : a[i];
    auto y = b[i] >= 'A' && b[i] <= 'Z' ? b[i] - 'A' + 'a' : b[i];
    if (x != y)
      return false;
  }
  return true;
}

void classify(datapoint& dp) {
  dp.kind = data_kind::other;
  for (auto& t : known_types)
    if (iequal(t.name, dp.data_type)) {
      dp.kind = t.kind;
      dp.min = t.min;
      dp.max = t.max;
      return;
    }
}

std::string shown(std::string_view text, size_t limit = max_shown) {
  return printable(text, limit);
}

// -- data messages: what both parsers produce -----------------------------------
//
// A data message is read by one of two parsers: a fast scanner for the common shape
// (fast_data_scanner) or, for everything else and whenever the scanner gives up, the
// nlohmann SAX parser (data_sax). Both turn each JSON scalar into a `scalar` and hand it to
// read_seq() / store(), so they fill the same data_top and list of raw_val the same way;
// impl::data then turns that list into records, whichever parser filled it.

/// One element of `vals` as read; reused across messages to spare allocations.
struct raw_val {
  enum class kind : uint8_t { none, null, boolean, integer, unsigned_, floating, string, json };
  enum class ts_state : uint8_t { absent, ok, bad };
  std::string id;
  bool has_id = false;
  kind k = kind::none;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string s; // string value, or JSON text of an array/object value
  ts_state ts = ts_state::absent;
  int64_t ts_ns = 0;
  std::string ts_text; // only when bad, for the error message
  int qc = -1; // -1: absent
  bool qc_bad = false;
  size_t dp = 0; // index of its datapoint, once looked up

  void reset() {
    id.clear();
    has_id = false;
    k = kind::none;
    s.clear();
    ts = ts_state::absent;
    ts_text.clear();
    qc = -1;
    qc_bad = false;
  }
};

/// The top level of a data message, as read.
struct data_top {
  bool has_seq = false;
  uint64_t seq = 0;
  bool has_vals = false;
};

/// The key a value belongs to.
enum class slot : uint8_t { none, seq, vals, other, id, val, ts, qc };

/// One JSON scalar as read by either parser.
struct scalar {
  raw_val::kind k;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string_view text = {}; // strings; the number's text for floats
};

/// parse_time of the last ts read: the values of a message nearly always share one ts, so
/// a byte-equal ts reuses the result. Lives as long as the decoder.
class ts_cache {
public:
  void read(std::string_view ts, raw_val& v) {
    if (!valid_ || ts != text_) {
      auto t = parse_time(ts);
      bool ok = static_cast<bool>(t);
      if (ts.size() > max_cached) // a time takes ~30 bytes: do not keep a huge string
        return set(v, ok, ok ? *t : 0, ts);
      text_.assign(ts);
      valid_ = true;
      ok_ = ok;
      ns_ = ok ? *t : 0;
    }
    set(v, ok_, ns_, ts);
  }

private:
  static constexpr size_t max_cached = 64;

  static void set(raw_val& v, bool ok, int64_t ns, std::string_view ts) {
    if (ok) {
      v.ts = raw_val::ts_state::ok;
      v.ts_ns = ns;
    } else {
      v.ts = raw_val::ts_state::bad;
      v.ts_text = "'" + shown(ts) + "'";
    }
  }

  std::string text_;
  bool valid_ = false;
  bool ok_ = false;
  int64_t ns_ = 0;
};

/// The top-level `seq`; false when it is not a non-negative integer.
bool read_seq(const scalar& x, data_top& top) {
  if (x.k == raw_val::kind::unsigned_)
    top.seq = x.u;
  else if (x.k == raw_val::kind::integer && x.i >= 0)
    top.seq = static_cast<uint64_t>(x.i);
  else
    return false;
  top.has_seq = true;
  return true;
}

/// Stores the scalar of key `s` of a vals element; false when an id is not a string.
bool store(raw_val& v, slot s, const scalar& x, ts_cache& times) {
  switch (s) {
    case slot::id:
      if (x.k != raw_val::kind::string)
        return false;
      v.id.assign(x.text);
      v.has_id = true;
      return true;
    case slot::val:
      v.k = x.k;
      v.b = x.b;
      v.i = x.i;
      v.u = x.u;
      v.d = x.d;
      if (x.k == raw_val::kind::string)
        v.s.assign(x.text);
      return true;
    case slot::ts:
      if (x.k == raw_val::kind::null) {
        v.ts = raw_val::ts_state::absent;
      } else if (x.k == raw_val::kind::string) {
        times.read(x.text, v);
      } else {
        v.ts = raw_val::ts_state::bad;
        v.ts_text = "a non-string";
      }
      return true;
    case slot::qc:
      if (x.k == raw_val::kind::unsigned_ && x.u <= 3)
        v.qc = static_cast<int>(x.u);
      else if (x.k == raw_val::kind::integer && x.i >= 0 && x.i <= 3)
        v.qc = static_cast<int>(x.i);
      else if (x.k != raw_val::kind::null)
        v.qc_bad = true;
      return true;
    default:
      return true;
  }
}

// -- data messages: the SAX pass ----------------------------------------------

/// Reads {"seq":N,"vals":[{"id":..,"val":..,"ts":..,"qc":..},..]} without building a DOM.
/// Any other key, at either level, is skipped (qx, and whatever newer formats add). The
/// reference: it handles any JSON and words every error.
class data_sax {
public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  data_sax(std::vector<raw_val>& vals, size_t& n, ts_cache& times)
    : vals_(vals), n_(n), times_(times) {
    n_ = 0;
  }

  data_top top;
  std::string error;

  bool null() { return on_scalar({raw_val::kind::null}); }
  bool boolean(bool v) {
    scalar x{raw_val::kind::boolean};
    x.b = v;
    return on_scalar(x);
  }
  bool number_integer(number_integer_t v) {
    scalar x{raw_val::kind::integer};
    x.i = v;
    return on_scalar(x);
  }
  bool number_unsigned(number_unsigned_t v) {
    scalar x{raw_val::kind::unsigned_};
    x.u = v;
    return on_scalar(x);
  }
  bool number_float(number_float_t v, const string_t& raw) {
    scalar x{raw_val::kind::floating};
    x.d = v;
    x.text = raw;
    return on_scalar(x);
  }
  bool string(string_t& v) {
    scalar x{raw_val::kind::string};
    x.text = v;
    return on_scalar(x);
  }
  bool binary(binary_t&) { return fail("binary data"); }

  bool start_object(std::size_t) {
    if (skip_ > 0)
      return ++skip_, true;
    if (!cap_.empty())
      return cap_open('{'), true;
    switch (depth_) {
      case 0:
        depth_ = 1;
        return true;
      case 1:
        return compound_at_top();
      case 2:
        if (n_ == vals_.size())
          vals_.emplace_back();
        vals_[n_++].reset();
        depth_ = 3;
        next_ = slot::none;
        return true;
      default:
        return compound_in_val('{');
    }
  }

  bool end_object() {
    if (skip_ > 0)
      return --skip_, true;
    if (!cap_.empty())
      return cap_close('}'), true;
    if (depth_ == 3) {
      if (!cur().has_id)
        return fail(where() + " has no id");
      depth_ = 2;
    } else {
      depth_ = 0; // the top-level object is done
    }
    next_ = slot::none;
    return true;
  }

  bool start_array(std::size_t) {
    if (skip_ > 0)
      return ++skip_, true;
    if (!cap_.empty())
      return cap_open('['), true;
    switch (depth_) {
      case 0:
        return fail("payload is not a JSON object");
      case 1:
        if (next_ == slot::vals) {
          depth_ = 2;
          top.has_vals = true;
          n_ = 0;
          return true;
        }
        return compound_at_top();
      case 2:
        return fail("vals[" + std::to_string(n_) + "] is not an object");
      default:
        return compound_in_val('[');
    }
  }

  bool end_array() {
    if (skip_ > 0)
      return --skip_, true;
    if (!cap_.empty())
      return cap_close(']'), true;
    depth_ = 1; // only the vals array is entered without capture or skip
    next_ = slot::none;
    return true;
  }

  bool key(string_t& k) {
    if (skip_ > 0)
      return true;
    if (!cap_.empty()) {
      auto& t = cur().s;
      if (!cap_.back().first)
        t += ',';
      cap_.back().first = false;
      append_json_string(t, k);
      t += ':';
      return true;
    }
    if (depth_ == 1)
      next_ = k == "seq" ? slot::seq : k == "vals" ? slot::vals : slot::other;
    else
      next_ = k == "id"    ? slot::id
              : k == "val" ? slot::val
              : k == "ts"  ? slot::ts
              : k == "qc"  ? slot::qc
                           : slot::other;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
    if (error.empty()) {
      // nlohmann's message quotes the last token, which can be huge: keep one short line.
      std::string_view what = ex.what();
      if (auto pos = what.find("] "); pos != std::string_view::npos)
        what.remove_prefix(pos + 2);
      error = "not JSON: " + shown(what, 160);
    }
    return false;
  }

private:
  struct level {
    char close;
    bool first;
  };

  raw_val& cur() { return vals_[n_ - 1]; }
  std::string where() { return "vals[" + std::to_string(n_ - 1) + "]"; }

  bool fail(std::string why) {
    if (error.empty())
      error = std::move(why);
    return false;
  }

  bool compound_at_top() {
    if (next_ == slot::vals)
      return fail("vals is not an array");
    if (next_ == slot::seq)
      return fail("seq is not a non-negative integer");
    skip_ = 1;
    return true;
  }

  bool compound_in_val(char open) {
    auto& v = cur();
    switch (next_) {
      case slot::val:
        v.k = raw_val::kind::json;
        v.s.clear();
        cap_open(open);
        return true;
      case slot::id:
        return fail(where() + ".id is not a string");
      case slot::ts:
        v.ts = raw_val::ts_state::bad;
        v.ts_text = open == '{' ? "an object" : "an array";
        break;
      case slot::qc:
        v.qc_bad = true;
        break;
      default:
        break;
    }
    skip_ = 1;
    return true;
  }

  void cap_before_value() {
    if (!cap_.empty() && cap_.back().close == ']') {
      if (!cap_.back().first)
        cur().s += ',';
      cap_.back().first = false;
    }
  }
  void cap_open(char open) {
    cap_before_value();
    cur().s += open;
    cap_.push_back({open == '{' ? '}' : ']', true});
  }
  void cap_close(char close) {
    cur().s += close;
    cap_.pop_back();
  }
  void cap_scalar(const scalar& x) {
    cap_before_value();
    auto& t = cur().s;
    switch (x.k) {
      case raw_val::kind::null:
        t += "null";
        break;
      case raw_val::kind::boolean:
        t += x.b ? "true" : "false";
        break;
      case raw_val::kind::integer:
        t += std::to_string(x.i);
        break;
      case raw_val::kind::unsigned_:
        t += std::to_string(x.u);
        break;
      case raw_val::kind::floating:
        t += x.text;
        break;
      default:
        append_json_string(t, x.text);
        break;
    }
  }

  bool on_scalar(const scalar& x) {
    if (skip_ > 0)
      return true;
    if (!cap_.empty())
      return cap_scalar(x), true;
    switch (depth_) {
      case 0:
        return fail("payload is not a JSON object");
      case 1:
        return top_scalar(x);
      case 2:
        return fail("vals[" + std::to_string(n_) + "] is not an object");
      default:
        return val_scalar(x);
    }
  }

  bool top_scalar(const scalar& x) {
    auto s = next_;
    next_ = slot::none;
    if (s == slot::vals)
      return fail("vals is not an array");
    if (s == slot::seq && !read_seq(x, top))
      return fail("seq is not a non-negative integer");
    return true;
  }

  bool val_scalar(const scalar& x) {
    auto s = next_;
    next_ = slot::none;
    if (!store(cur(), s, x, times_))
      return fail(where() + ".id is not a string");
    return true;
  }

  std::vector<raw_val>& vals_;
  size_t& n_;
  ts_cache& times_;
  int depth_ = 0; // 1: top object, 2: vals array, 3: an element of vals
  slot next_ = slot::none;
  int skip_ = 0; // nesting inside a skipped compound value
  std::vector<level> cap_; // nesting inside a compound val captured as JSON text
};

// -- data messages: the fast scanner --------------------------------------------

/// Reads the shape connectors publish, several times faster than data_sax:
///   {"seq":N,"vals":[{"id":"..","val":..,"ts":"..","qc":N,"qx":..},..]}
/// keys in any order (each at most once, all but id optional), JSON whitespace anywhere,
/// scalar values only: numbers, true, false, null, and strings of printable ASCII without
/// escapes. Anything else (another key, an object or array value, an escape, a byte
/// outside ASCII, a control character, a number strtod would read differently or not at
/// all, a duplicate key, malformed JSON, any error) makes scan() return false, and the
/// caller then reads the message with data_sax, which words the error. So whenever scan()
/// returns true, data_sax would have read the same data_top and raw values without error.
class fast_data_scanner {
public:
  fast_data_scanner(std::vector<raw_val>& vals, size_t& n, ts_cache& times)
    : vals_(vals), n_(n), times_(times) {}

  bool scan(std::string_view in, data_top& top) {
    p_ = in.data();
    end_ = p_ + in.size();
    n_ = 0;
    top = data_top{};
    if (!skip_ws() || *p_ != '{')
      return false;
    ++p_;
    if (!skip_ws())
      return false;
    if (*p_ == '}') {
      ++p_;
      return at_end();
    }
    bool seen_seq = false;
    for (;;) {
      std::string_view k;
      if (!key(k))
        return false;
      if (is(k, "seq")) {
        scalar x{raw_val::kind::none};
        if (seen_seq || !value(x) || !read_seq(x, top))
          return false;
        seen_seq = true;
      } else if (is(k, "vals")) {
        if (top.has_vals || !vals())
          return false;
        top.has_vals = true;
      } else {
        return false;
      }
      if (!skip_ws())
        return false;
      if (*p_ == '}') {
        ++p_;
        return at_end();
      }
      if (*p_++ != ',' || !skip_ws())
        return false;
    }
  }

private:
  static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  /// Skips whitespace; false at the end of the input.
  bool skip_ws() {
    if (p_ != end_ && static_cast<unsigned char>(*p_) > ' ') // compact JSON: no whitespace
      return true;
    while (p_ != end_ && is_ws(*p_))
      ++p_;
    return p_ != end_;
  }

  /// k == word, without a call to memcmp for these short keys.
  template <size_t N>
  static bool is(std::string_view k, const char (&word)[N]) {
    if (k.size() != N - 1)
      return false;
    for (size_t i = 0; i < N - 1; ++i)
      if (k[i] != word[i])
        return false;
    return true;
  }

  bool at_end() {
    while (p_ != end_ && is_ws(*p_))
      ++p_;
    return p_ == end_;
  }

  /// Bytes that may stand in a plain string: printable ASCII (0x20..0x7f) but '"' and '\\'.
  static constexpr auto plain = [] {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x80; ++c)
      t[c] = c != '"' && c != '\\';
    return t;
  }();

  /// A string of plain bytes; p_ is at its opening quote.
  bool plain_string(std::string_view& out) {
    const char* start = ++p_;
    // Eight bytes at a time while none is a quote, a backslash, below 0x20 or above 0x7f
    // (the has-zero-byte bit trick: exact as to whether there is one); then byte by byte.
    constexpr uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    while (end_ - p_ >= 8) {
      uint64_t w;
      std::memcpy(&w, p_, 8);
      uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
      uint64_t special =
        ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash) | (w - ones * 0x20) | w;
      if (special & highs)
        break;
      p_ += 8;
    }
    while (p_ != end_ && plain[static_cast<unsigned char>(*p_)])
      ++p_;
    if (p_ == end_ || *p_ != '"')
      return false;
    out = std::string_view{start, static_cast<size_t>(p_ - start)};
    ++p_;
    return true;
  }

  /// `"key"` `:` and the whitespace after; p_ is at the key's opening quote (or not).
  bool key(std::string_view& k) {
    if (*p_ != '"' || !plain_string(k) || !skip_ws() || *p_++ != ':')
      return false;
    return skip_ws();
  }

  bool literal(std::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() || std::string_view{p_, word.size()} != word)
      return false;
    p_ += word.size();
    return true;
  }

  /// A JSON number, read as nlohmann reads it: without fraction or exponent an unsigned
  /// (no sign) or integer (minus), else a double; integers beyond 64 bits, which nlohmann
  /// reads as doubles, are left to it. from_chars and glibc's strtod both round
  /// correctly, so the doubles are the same.
  bool number(scalar& x) {
    const char* start = p_;
    bool neg = *p_ == '-';
    if (neg && ++p_ == end_)
      return false;
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (++p_ != end_ && is_digit(*p_)) {
      }
    } else {
      return false;
    }
    bool floating = false;
    if (p_ != end_ && *p_ == '.') {
      floating = true;
      if (++p_ == end_ || !is_digit(*p_))
        return false;
      while (++p_ != end_ && is_digit(*p_)) {
      }
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      floating = true;
      if (++p_ != end_ && (*p_ == '+' || *p_ == '-'))
        ++p_;
      if (p_ == end_ || !is_digit(*p_))
        return false;
      while (++p_ != end_ && is_digit(*p_)) {
      }
    }
    std::from_chars_result r;
    if (floating) {
      x.k = raw_val::kind::floating;
      r = std::from_chars(start, p_, x.d);
      if (r.ec == std::errc{} && !std::isfinite(x.d))
        return false;
      x.text = std::string_view{start, static_cast<size_t>(p_ - start)};
    } else if (neg) {
      x.k = raw_val::kind::integer;
      r = std::from_chars(start, p_, x.i);
    } else {
      x.k = raw_val::kind::unsigned_;
      r = std::from_chars(start, p_, x.u);
    }
    return r.ec == std::errc{} && r.ptr == p_;
  }

  /// A scalar value; false for objects, arrays and anything it does not read.
  bool value(scalar& x) {
    switch (*p_) {
      case '"':
        x.k = raw_val::kind::string;
        return plain_string(x.text);
      case 't':
        x.k = raw_val::kind::boolean;
        x.b = true;
        return literal("true");
      case 'f':
        x.k = raw_val::kind::boolean;
        x.b = false;
        return literal("false");
      case 'n':
        x.k = raw_val::kind::null;
        return literal("null");
      default:
        return number(x);
    }
  }

  /// The vals array; p_ is at its '['.
  bool vals() {
    if (*p_++ != '[' || !skip_ws())
      return false;
    if (*p_ == ']')
      return ++p_, true;
    for (;;) {
      if (*p_++ != '{' || !skip_ws())
        return false;
      if (n_ == vals_.size())
        vals_.emplace_back();
      auto& v = vals_[n_++];
      v.reset();
      if (*p_ != '}' && !element(v))
        return false;
      ++p_; // the element's '}'
      if (!v.has_id || !skip_ws())
        return false;
      if (*p_ == ']')
        return ++p_, true;
      if (*p_++ != ',' || !skip_ws())
        return false;
    }
  }

  /// The keys of one element of vals; leaves p_ at its closing '}'.
  bool element(raw_val& v) {
    unsigned seen = 0; // one bit per slot
    for (;;) {
      std::string_view k;
      if (!key(k))
        return false;
      slot s = is(k, "id")    ? slot::id
               : is(k, "val") ? slot::val
               : is(k, "ts")  ? slot::ts
               : is(k, "qc")  ? slot::qc
               : is(k, "qx")  ? slot::other
                              : slot::none;
      auto bit = 1u << static_cast<unsigned>(s);
      if (s == slot::none || (seen & bit))
        return false;
      seen |= bit;
      scalar x{raw_val::kind::none};
      if (!value(x) || !store(v, s, x, times_) || !skip_ws())
        return false;
      if (*p_ == '}')
        return true;
      if (*p_++ != ',' || !skip_ws())
        return false;
    }
  }

  std::vector<raw_val>& vals_;
  size_t& n_;
  ts_cache& times_;
  const char* p_ = nullptr;
  const char* end_ = nullptr;
};

// -- data messages: conversion ------------------------------------------------

std::string describe(const raw_val& x) {
  switch (x.k) {
    case raw_val::kind::boolean:
      return x.b ? "true" : "false";
    case raw_val::kind::integer:
      return std::to_string(x.i);
    case raw_val::kind::unsigned_:
      return std::to_string(x.u);
    case raw_val::kind::floating: {
      std::string out;
      append_json_double(out, x.d);
      return out;
    }
    case raw_val::kind::string:
      return "\"" + shown(x.s) + "\"";
    default:
      return "null";
  }
}

template <class T>
bool parse_whole(std::string_view s, T& out) {
  if (!s.empty() && s.front() == '+')
    s.remove_prefix(1);
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc{} && r.ptr == s.data() + s.size() && !s.empty();
}

/// Converts `x` to the value its datapoint declares; false with `why` when it does not fit.
bool convert(raw_val& x, const datapoint& dp, value& out, std::string& why) {
  using k = raw_val::kind;
  if (x.k == k::json) {
    out = std::move(x.s);
    return true;
  }
  if (x.k == k::none) {
    why = "no val";
    return false;
  }
  if (x.k == k::null) {
    why = "val is null";
    return false;
  }
  switch (dp.kind) {
    case data_kind::boolean:
      if (x.k == k::boolean) {
        out = x.b;
        return true;
      }
      if ((x.k == k::integer && (x.i == 0 || x.i == 1)) || (x.k == k::unsigned_ && x.u <= 1)) {
        out = x.k == k::integer ? x.i == 1 : x.u == 1;
        return true;
      }
      if (x.k == k::string && (x.s == "true" || x.s == "false")) {
        out = x.s == "true";
        return true;
      }
      why = describe(x) + " is not a " + dp.data_type;
      return false;
    case data_kind::integer: {
      int64_t v = 0;
      bool range = true; // false: a number, but not in int64
      if (x.k == k::integer) {
        v = x.i;
      } else if (x.k == k::unsigned_) {
        range = x.u <= static_cast<uint64_t>(i64_max);
        v = range ? static_cast<int64_t>(x.u) : 0;
      } else if (x.k == k::floating && std::trunc(x.d) == x.d) {
        // 2^63 itself does not fit; every double below it converts exactly.
        range = x.d >= -9223372036854775808.0 && x.d < 9223372036854775808.0;
        v = range ? static_cast<int64_t>(x.d) : 0;
      } else if (x.k == k::string && parse_whole(x.s, v)) {
      } else {
        why = describe(x) + " is not an integer (" + dp.data_type + ")";
        return false;
      }
      if (!range || v < dp.min || v > dp.max) {
        why = describe(x) + " is out of range for " + dp.data_type;
        return false;
      }
      out = v;
      return true;
    }
    case data_kind::real: {
      double v = 0;
      if (x.k == k::floating)
        v = x.d;
      else if (x.k == k::integer)
        v = static_cast<double>(x.i);
      else if (x.k == k::unsigned_)
        v = static_cast<double>(x.u);
      else if (x.k == k::string && parse_whole(x.s, v) && std::isfinite(v)) {
      } else {
        why = describe(x) + " is not a number (" + dp.data_type + ")";
        return false;
      }
      if (iequal(dp.data_type, "Real") && std::fabs(v) > FLT_MAX) {
        why = describe(x) + " is out of range for Real";
        return false;
      }
      out = v;
      return true;
    }
    case data_kind::text:
      if (x.k != k::string) {
        why = describe(x) + " is not a string (" + dp.data_type + ")";
        return false;
      }
      out = std::move(x.s);
      return true;
    case data_kind::time:
    case data_kind::other:
      switch (x.k) {
        case k::string:
          out = std::move(x.s);
          return true;
        case k::integer:
          out = x.i;
          return true;
        case k::unsigned_:
          if (x.u <= static_cast<uint64_t>(i64_max))
            out = static_cast<int64_t>(x.u);
          else
            out = static_cast<double>(x.u);
          return true;
        case k::floating:
          out = x.d;
          return true;
        default:
          if (dp.kind == data_kind::other) {
            out = x.b;
            return true;
          }
          why = describe(x) + " is not a " + dp.data_type;
          return false;
      }
  }
  why = "unknown data kind";
  return false;
}

/// The first problem of a message and how many more there were, on one line.
struct problems {
  std::string first;
  size_t more = 0;
  void add(std::string what) {
    if (first.empty())
      first = std::move(what);
    else
      ++more;
  }
  std::string text() const {
    if (more == 0)
      return first;
    return first + " (and " + std::to_string(more) + " more)";
  }
};

// -- metadata -----------------------------------------------------------------

constexpr std::string_view meta_prefix = "ie/m/j/simatic/v1/";

std::string_view app_of(std::string_view metadata_topic) {
  auto rest = metadata_topic.substr(meta_prefix.size());
  return rest.substr(0, rest.find('/'));
}

const std::string* string_at(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    return nullptr;
  return it->get_ptr<const std::string*>();
}

const json* array_at(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array())
    return nullptr;
  return &*it;
}

} // namespace

// -- collection -----------------------------------------------------------------

const datapoint* collection::find_id(std::string_view id) const {
  auto it = by_id.find(id);
  return it == by_id.end() ? nullptr : &points[it->second];
}

const datapoint* collection::find_name(std::string_view n) const {
  auto it = by_name.find(n);
  return it == by_name.end() ? nullptr : &points[it->second];
}

// -- decoder --------------------------------------------------------------------

struct simatic_decoder::impl {
  string_map<std::shared_ptr<const collection>> by_topic;
  string_map<std::vector<std::string>> topics_of; // metadata topic -> topics it declared
  std::vector<raw_val> vals;
  size_t n = 0;
  std::vector<uint32_t> seen; // per datapoint: the group that holds it (repeated ids)
  uint32_t gen = 0;
  ts_cache times;
  bool fast_path = true;
  path_counts paths;

  uint32_t next_gen() {
    if (++gen == 0) {
      std::fill(seen.begin(), seen.end(), 0);
      gen = 1;
    }
    return gen;
  }

  decoded metadata(const message_info& m, std::string_view payload);
  decoded data(const message_info& m, std::string_view payload);
};

simatic_decoder::simatic_decoder() : impl_(std::make_unique<impl>()) {}
simatic_decoder::~simatic_decoder() = default;
simatic_decoder::simatic_decoder(simatic_decoder&&) noexcept = default;
simatic_decoder& simatic_decoder::operator=(simatic_decoder&&) noexcept = default;

bool simatic_decoder::is_metadata_topic(std::string_view topic) {
  if (topic.substr(0, meta_prefix.size()) != meta_prefix)
    return false;
  auto rest = topic.substr(meta_prefix.size());
  auto slash = rest.find('/');
  return slash != 0 && slash != std::string_view::npos && rest.substr(slash) == "/dp";
}

const collection* simatic_decoder::find_collection(std::string_view topic) const {
  auto it = impl_->by_topic.find(topic);
  return it == impl_->by_topic.end() ? nullptr : it->second.get();
}

void simatic_decoder::set_fast_path(bool on) { impl_->fast_path = on; }

simatic_decoder::path_counts simatic_decoder::paths() const { return impl_->paths; }

size_t simatic_decoder::collections() const {
  size_t n = 0;
  for (auto& [topic, c] : impl_->by_topic)
    n += c->topic == topic;
  return n;
}

decoded simatic_decoder::decode(const message_info& m, std::string_view payload) {
  try {
    if (is_metadata_topic(m.topic))
      return impl_->metadata(m, payload);
    return impl_->data(m, payload);
  } catch (const std::exception& e) {
    decoded d;
    d.error = std::string{"cannot decode: "} + shown(e.what(), 160);
    return d;
  }
}

decoded simatic_decoder::impl::metadata(const message_info& m, std::string_view payload) {
  decoded d;
  json j;
  try {
    j = json::parse(payload.begin(), payload.end());
  } catch (const json::exception& e) {
    std::string_view what = e.what();
    if (auto pos = what.find("] "); pos != std::string_view::npos)
      what.remove_prefix(pos + 2);
    d.error = "metadata is not JSON: " + shown(what, 160);
    return d;
  }
  if (!j.is_object()) {
    d.error = "metadata is not a JSON object";
    return d;
  }
  auto* conns = array_at(j, "connections");
  if (!conns) {
    d.error = "metadata has no connections array";
    return d;
  }
  std::string app{app_of(m.topic)};
  std::vector<std::shared_ptr<collection>> built;
  problems bad;
  for (size_t ci = 0; ci < conns->size(); ++ci) {
    auto& conn = (*conns)[ci];
    auto at = "connections[" + std::to_string(ci) + "]";
    const std::string* conn_name = conn.is_object() ? string_at(conn, "name") : nullptr;
    if (!conn_name) {
      bad.add(at + " has no name");
      continue;
    }
    auto* dps = array_at(conn, "dataPoints");
    if (!dps) {
      bad.add(at + " (" + shown(*conn_name) + ") has no dataPoints array");
      continue;
    }
    for (size_t di = 0; di < dps->size(); ++di) {
      auto& dp = (*dps)[di];
      auto dat = at + ".dataPoints[" + std::to_string(di) + "]";
      const std::string* name = dp.is_object() ? string_at(dp, "name") : nullptr;
      const std::string* topic = dp.is_object() ? string_at(dp, "topic") : nullptr;
      auto* defs = dp.is_object() ? array_at(dp, "dataPointDefinitions") : nullptr;
      if (!name || !topic || !defs) {
        bad.add(dat + " needs name, topic and dataPointDefinitions");
        continue;
      }
      auto c = std::make_shared<collection>();
      c->app = app;
      c->metadata_topic = std::string{m.topic};
      c->connection = *conn_name;
      c->name = *name;
      c->topic = *topic;
      if (auto* pub = string_at(dp, "pubTopic"))
        c->pub_topic = *pub;
      c->points.reserve(defs->size());
      for (size_t ki = 0; ki < defs->size(); ++ki) {
        auto& def = (*defs)[ki];
        const std::string* dname = def.is_object() ? string_at(def, "name") : nullptr;
        const std::string* id = def.is_object() ? string_at(def, "id") : nullptr;
        const std::string* type = def.is_object() ? string_at(def, "dataType") : nullptr;
        auto kat = dat + ".dataPointDefinitions[" + std::to_string(ki) + "]";
        if (!dname || !id || !type) {
          bad.add(kat + " needs string name, id and dataType");
          continue;
        }
        if (c->by_id.count(*id)) {
          bad.add(kat + ": id " + shown(*id) + " declared twice in " + shown(*name));
          continue;
        }
        datapoint p{*id, *dname, *type};
        classify(p);
        c->by_id.emplace(*id, c->points.size());
        c->by_name.emplace(*dname, c->points.size()); // the first of equal names wins
        c->points.push_back(std::move(p));
      }
      built.push_back(std::move(c));
    }
  }
  if (built.empty() && !conns->empty()) {
    d.error = "metadata declares no usable collection: " + bad.text();
    return d;
  }
  // Replace what this metadata topic declared before (ids may change on reconfiguration).
  if (auto old = topics_of.find(m.topic); old != topics_of.end()) {
    for (auto& t : old->second)
      if (auto it = by_topic.find(t); it != by_topic.end() && it->second->metadata_topic == m.topic)
        by_topic.erase(it);
    old->second.clear();
  }
  auto& mine = topics_of[std::string{m.topic}];
  for (auto& c : built) {
    std::shared_ptr<const collection> cc = c;
    by_topic[c->topic] = cc;
    mine.push_back(c->topic);
    if (!c->pub_topic.empty()) {
      by_topic[c->pub_topic] = cc;
      mine.push_back(c->pub_topic);
    }
  }
  d.metadata = true;
  d.error = bad.text();
  return d;
}

decoded simatic_decoder::impl::data(const message_info& m, std::string_view payload) {
  decoded d;
  data_top top;
  if (fast_path && fast_data_scanner{vals, n, times}.scan(payload, top)) {
    ++paths.fast;
  } else {
    ++paths.slow;
    data_sax h{vals, n, times};
    bool ok = json::sax_parse(payload.data(), payload.data() + payload.size(), &h,
                              json::input_format_t::json, true);
    if (!ok || !h.error.empty()) {
      d.error = h.error.empty() ? std::string{"not JSON"} : std::move(h.error);
      return d;
    }
    top = h.top;
  }
  if (!top.has_vals) {
    d.error = "no vals array";
    return d;
  }
  if (n == 0)
    return d;
  auto it = by_topic.find(m.topic);
  if (it == by_topic.end()) {
    d.parked = true;
    d.unknown_ids = n;
    return d;
  }
  auto& c = *it->second;
  for (size_t i = 0; i < n; ++i) {
    auto id = c.by_id.find(vals[i].id);
    if (id == c.by_id.end())
      ++d.unknown_ids;
    else
      vals[i].dp = id->second;
  }
  if (d.unknown_ids > 0) {
    d.parked = true;
    return d;
  }

  const uint64_t seq = top.has_seq ? top.seq : m.arrival;
  problems bad;
  if (seen.size() < c.points.size())
    seen.resize(c.points.size(), 0);

  // One group of values becomes one record.
  record r;
  int qc = quality::good;
  bool failed = false;
  bool has_time = false;
  int64_t newest = 0;
  auto start = [&] {
    r = record{};
    r.fields.reserve(n);
    qc = quality::good;
    failed = false;
    has_time = false;
    newest = 0;
  };
  auto finish = [&] {
    if (r.fields.empty())
      return;
    r.stream.reserve(m.actor.size() + c.connection.size() + c.name.size() + 2);
    r.stream.append(m.actor).append(1, '/').append(c.connection).append(1, '/').append(c.name);
    r.ingest_time = m.ingest_time;
    r.seq = seq;
    r.quality = static_cast<uint16_t>(failed ? std::min(qc, int{quality::uncertain}) : qc);
    if (has_time) {
      r.time = newest;
    } else {
      r.time = m.ingest_time;
      r.quality |= quality::time_replaced;
    }
    d.records.push_back(std::move(r));
  };

  start();
  uint32_t group = next_gen();
  for (size_t i = 0; i < n; ++i) {
    auto& x = vals[i];
    auto& dp = c.points[x.dp];
    if (seen[x.dp] == group) {
      finish();
      start();
      group = next_gen();
    }
    seen[x.dp] = group;
    auto at = [&] { return "vals[" + std::to_string(i) + "] (id " + shown(x.id) + ")"; };
    value v;
    std::string why;
    if (convert(x, dp, v, why)) {
      r.fields.push_back(field{dp.name, std::move(v)});
    } else {
      failed = true;
      bad.add(at() + ", " + shown(dp.name) + ": " + why);
    }
    if (x.qc_bad) {
      bad.add(at() + ": qc is not 0..3");
      qc = std::min(qc, int{quality::uncertain});
    } else if (x.qc >= 0) {
      qc = std::min(qc, x.qc);
    }
    if (x.ts == raw_val::ts_state::ok) {
      if (plausible_source_time(x.ts_ns, m.ingest_time) && (!has_time || x.ts_ns > newest)) {
        newest = x.ts_ns;
        has_time = true;
      }
    } else if (x.ts == raw_val::ts_state::bad) {
      bad.add(at() + ": ts " + x.ts_text + " is not a time");
    }
  }
  finish();
  d.error = bad.text();
  return d;
}

// -- encoder --------------------------------------------------------------------

namespace {

data_kind kind_of(const char* data_type) {
  std::string_view t = data_type;
  return t == "Bool"     ? data_kind::boolean
         : t == "LInt"   ? data_kind::integer
         : t == "String" ? data_kind::text
                         : data_kind::real;
}

/// Appends `v` as a val of kind `kind`; false (nothing appended) when it does not fit.
bool append_val(std::string& out, const value& v, data_kind kind, int64_t min, int64_t max) {
  switch (kind) {
    case data_kind::boolean:
      if (auto* b = std::get_if<bool>(&v)) {
        out += *b ? "true" : "false";
        return true;
      }
      if (auto* i = std::get_if<int64_t>(&v); i && (*i == 0 || *i == 1)) {
        out += *i ? "true" : "false";
        return true;
      }
      return false;
    case data_kind::integer:
      if (auto* i = std::get_if<int64_t>(&v); i && *i >= min && *i <= max) {
        out += std::to_string(*i);
        return true;
      }
      if (auto* x = std::get_if<double>(&v);
          x && std::trunc(*x) == *x && *x >= -9223372036854775808.0 && *x < 9223372036854775808.0) {
        auto i = static_cast<int64_t>(*x);
        if (i < min || i > max)
          return false;
        out += std::to_string(i);
        return true;
      }
      return false;
    case data_kind::real:
      if (auto* x = std::get_if<double>(&v); x && std::isfinite(*x)) {
        append_json_double(out, *x);
        return true;
      }
      if (auto* i = std::get_if<int64_t>(&v)) {
        out += std::to_string(*i);
        return true;
      }
      return false;
    case data_kind::text:
      if (auto* s = std::get_if<std::string>(&v)) {
        append_json_string(out, *s);
        return true;
      }
      return false;
    case data_kind::time:
    case data_kind::other:
      if (auto* s = std::get_if<std::string>(&v)) {
        append_json_string(out, *s);
        return true;
      }
      if (auto* i = std::get_if<int64_t>(&v)) {
        out += std::to_string(*i);
        return true;
      }
      if (auto* x = std::get_if<double>(&v); x && std::isfinite(*x)) {
        append_json_double(out, *x);
        return true;
      }
      if (auto* b = std::get_if<bool>(&v); b && kind == data_kind::other) {
        out += *b ? "true" : "false";
        return true;
      }
      return false;
  }
  return false;
}

/// simatic-v1 allows up to 7 fraction digits: the fewest of 3, 6, 7 that are exact.
std::string ts_text(int64_t ns) {
  int digits = ns % 1'000'000 == 0 ? 3 : ns % 1'000 == 0 ? 6 : 7;
  return format_time(ns, digits);
}

std::atomic<uint64_t> status_seq{0};

} // namespace

simatic_encoder::simatic_encoder(std::string app, std::string application_name)
  : app_(std::move(app)), application_name_(std::move(application_name)) {}

simatic_encoder::own_collection& simatic_encoder::own(std::string_view connection_name,
                                                      std::string_view collection_name) {
  own_connection* conn = nullptr;
  for (auto& c : connections_)
    if (c.name == connection_name)
      conn = &c;
  if (!conn) {
    connections_.push_back(own_connection{std::string{connection_name}, 1, {}});
    conn = &connections_.back();
    changed_ = true;
  }
  for (auto& c : conn->collections)
    if (c.name == collection_name)
      return c;
  conn->collections.push_back(own_collection{std::string{collection_name}, {}, {}});
  changed_ = true;
  return conn->collections.back();
}

std::string simatic_encoder::data(const record& r, std::string_view connection_name,
                                  std::string_view collection_name, const collection* target) {
  std::string out;
  out.reserve(32 + r.fields.size() * 64);
  out += "{\"seq\":";
  out += std::to_string(++seq_);
  out += ",\"vals\":[";
  const auto ts = ts_text(r.time);
  const auto qc = std::to_string(std::min<int>(quality::code(r.quality), quality::good));
  own_collection* mine = target ? nullptr : &own(connection_name, collection_name);
  own_connection* conn = nullptr;
  if (mine)
    for (auto& c : connections_)
      if (c.name == connection_name)
        conn = &c;
  bool first = true;
  for (auto& f : r.fields) {
    auto mark = out.size();
    out += first ? "{\"id\":" : ",{\"id\":";
    bool ok = false;
    if (target) {
      if (auto* dp = target->find_name(f.name)) {
        append_json_string(out, dp->id);
        out += ",\"val\":";
        ok = append_val(out, f.v, dp->kind, dp->min, dp->max);
      }
    } else {
      const char* type = std::holds_alternative<double>(f.v)        ? "LReal"
                         : std::holds_alternative<int64_t>(f.v)     ? "LInt"
                         : std::holds_alternative<bool>(f.v)        ? "Bool"
                         : std::holds_alternative<std::string>(f.v) ? "String"
                                                                    : nullptr;
      if (auto* x = std::get_if<double>(&f.v); x && !std::isfinite(*x))
        type = nullptr; // not representable in JSON
      if (type) {
        auto it = mine->by_name.find(f.name);
        own_point* p = nullptr;
        if (it == mine->by_name.end()) {
          mine->by_name.emplace(f.name, mine->points.size());
          mine->points.push_back(own_point{f.name, std::to_string(conn->next_id++), type});
          p = &mine->points.back();
          changed_ = true;
        } else {
          p = &mine->points[it->second];
          if (std::string_view{p->data_type} == "LInt" && std::string_view{type} == "LReal") {
            p->data_type = "LReal"; // an int field that also carries doubles
            changed_ = true;
          }
        }
        append_json_string(out, p->id);
        out += ",\"val\":";
        ok = append_val(out, f.v, kind_of(p->data_type), i64_min, i64_max);
      }
    }
    if (!ok) {
      out.resize(mark);
      ++skipped_;
      continue;
    }
    out += ",\"ts\":\"";
    out += ts;
    out += "\",\"qc\":";
    out += qc;
    out += '}';
    first = false;
  }
  out += "]}";
  return out;
}

bool simatic_encoder::metadata_changed() const { return changed_; }

std::string simatic_encoder::metadata() {
  using ojson = nlohmann::ordered_json;
  ojson conns = ojson::array();
  for (auto& conn : connections_) {
    ojson dps = ojson::array();
    for (auto& coll : conn.collections) {
      ojson defs = ojson::array();
      for (auto& p : coll.points)
        defs.push_back({{"name", p.name}, {"id", p.id}, {"dataType", p.data_type}});
      dps.push_back({{"name", coll.name},
                     {"topic", read_topic(app_, conn.name, coll.name)},
                     {"pubTopic", write_topic(app_, conn.name, coll.name)},
                     {"publishType", "bulk"},
                     {"dataPointDefinitions", std::move(defs)}});
    }
    conns.push_back({{"name", conn.name}, {"type", "fabrik"}, {"dataPoints", std::move(dps)}});
  }
  auto replace = ojson::error_handler_t::replace;
  // hashVersion changes whenever the datapoints do: FNV-1a of their description, 32 bits
  // so that JavaScript consumers read it exactly.
  auto described = conns.dump(-1, ' ', false, replace);
  uint32_t hash = 2166136261u;
  for (unsigned char ch : described)
    hash = (hash ^ ch) * 16777619u;
  ojson j = {{"seq", ++metadata_seq_},
             {"hashVersion", hash},
             {"applicationName", application_name_},
             {"statustopic", status_topic(app_)},
             {"connections", std::move(conns)}};
  changed_ = false;
  return j.dump(-1, ' ', false, replace);
}

std::string simatic_encoder::status(std::string_view status) {
  std::string out = "{\"seq\":";
  out += std::to_string(++status_seq);
  out += ",\"ts\":\"";
  out += format_time(now_ns(), 3);
  out += "\",\"connector\":{\"status\":";
  append_json_string(out, status);
  out += "}}";
  return out;
}

std::string simatic_encoder::metadata_topic(std::string_view app) {
  return std::string{meta_prefix}.append(app).append("/dp");
}

std::string simatic_encoder::read_topic(std::string_view app, std::string_view connection,
                                        std::string_view collection) {
  return std::string{"ie/d/j/simatic/v1/"}
    .append(app)
    .append("/dp/r/")
    .append(connection)
    .append("/")
    .append(collection);
}

std::string simatic_encoder::write_topic(std::string_view app, std::string_view connection,
                                         std::string_view collection) {
  return std::string{"ie/d/j/simatic/v1/"}
    .append(app)
    .append("/dp/w/")
    .append(connection)
    .append("/")
    .append(collection);
}

std::string simatic_encoder::status_topic(std::string_view app) {
  return std::string{"ie/s/j/simatic/v1/"}.append(app).append("/status");
}

} // namespace fabrik::mqtt
