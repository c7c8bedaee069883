#include "drivers/mqtt/json_format.hpp"

#include "core/time.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <limits>

namespace fabrik::mqtt {
namespace {

// ordered_json keeps the payload's key order, so fields keep it too.
using ojson = nlohmann::ordered_json;

/// Length of the valid UTF-8 sequence at s[i], or 0 when it is not valid.
size_t utf8_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xc0) == 0x80; };
  unsigned char c = b(0);
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2))
      return 0;
    if ((c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) > 0x9f)) // overlong, surrogates
      return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3))
      return 0;
    if ((c == 0xf0 && b(1) < 0x90) || (c == 0xf4 && b(1) > 0x8f)) // overlong, > U+10FFFF
      return 0;
    return 4;
  }
  return 0;
}

struct element_context {
  const message_info& m;
  decoded& d;
  size_t index; // array element index, or npos for a single object
  size_t errors = 0;
  std::string first_error{};

  void add(std::string what) {
    if (first_error.empty())
      first_error = index == std::string::npos ? std::move(what)
                                               : "element " + std::to_string(index) + ": " + what;
    ++errors;
  }
  std::string text() const {
    if (errors <= 1)
      return first_error;
    return first_error + " (and " + std::to_string(errors - 1) + " more)";
  }
};

constexpr int max_depth = 64;

/// Deepest nesting of objects and arrays in `text` (outside strings). Checked before
/// parsing: flattening and dumping recurse, and garbage must not exhaust the stack.
int nesting(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

/// Adds `v` as field `name`; objects are flattened into "name.key" fields.
void add_field(const ojson& v, std::string& name, record& r) {
  switch (v.type()) {
    case ojson::value_t::object:
      for (auto it = v.begin(); it != v.end(); ++it) {
        auto mark = name.size();
        name += '.';
        name += it.key();
        add_field(it.value(), name, r);
        name.resize(mark);
      }
      break;
    case ojson::value_t::array:
      r.fields.push_back({name, v.dump(-1, ' ', false, ojson::error_handler_t::replace)});
      break;
    case ojson::value_t::boolean:
      r.fields.push_back({name, v.get<bool>()});
      break;
    case ojson::value_t::number_integer:
      r.fields.push_back({name, v.get<int64_t>()});
      break;
    case ojson::value_t::number_unsigned: {
      auto u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        r.fields.push_back({name, static_cast<int64_t>(u)});
      else
        r.fields.push_back({name, static_cast<double>(u)});
      break;
    }
    case ojson::value_t::number_float:
      r.fields.push_back({name, v.get<double>()});
      break;
    case ojson::value_t::string:
      r.fields.push_back({name, v.get<std::string>()});
      break;
    default: // null (and binary, which JSON text cannot hold): no value
      break;
  }
}

/// The source time of "ts": RFC 3339 text or epoch milliseconds.
bool read_ts(const ojson& ts, int64_t& out, std::string& why) {
  if (ts.is_string()) {
    auto t = parse_time(ts.get_ref<const std::string&>());
    if (!t) {
      why = "ts: " + t.err().message;
      return false;
    }
    out = *t;
    return true;
  }
  if (ts.is_number_integer()) {
    // Unsigned values above int64 fail the range check below via the double path.
    if (ts.is_number_unsigned()
        && ts.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      why = "ts " + ts.dump() + " is out of range";
      return false;
    }
    auto ms = ts.get<int64_t>();
    if (__builtin_mul_overflow(ms, int64_t{1'000'000}, &out)) {
      why = "ts " + std::to_string(ms) + " (epoch milliseconds) is out of range";
      return false;
    }
    return true;
  }
  if (ts.is_number_float()) {
    // Whole and fractional milliseconds apart: their product with 1e6 in one double would
    // round to 256 ns.
    auto v = ts.get<double>();
    if (!(v > -9.2e12 && v < 9.2e12)) {
      why = "ts " + ts.dump() + " (epoch milliseconds) is out of range";
      return false;
    }
    auto whole = std::floor(v);
    out = static_cast<int64_t>(whole) * 1'000'000 + std::llround((v - whole) * 1e6);
    return true;
  }
  why = "ts is neither an RFC 3339 string nor epoch milliseconds";
  return false;
}

void decode_object(const ojson& j, element_context& ctx) {
  auto& m = ctx.m;
  record r;
  r.ingest_time = m.ingest_time;
  r.seq = m.arrival;
  r.quality = quality::good;
  bool has_time = false;
  std::string name;
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto& key = it.key();
    auto& v = it.value();
    if (key == "ts") {
      if (v.is_null())
        continue;
      std::string why;
      int64_t t = 0;
      if (!read_ts(v, t, why))
        ctx.add(why);
      else if (plausible_source_time(t, m.ingest_time))
        has_time = true, r.time = t;
      continue;
    }
    if (key == "seq") {
      if (v.is_number_unsigned()) {
        r.seq = v.get<uint64_t>();
      } else if (v.is_number_integer() && v.get<int64_t>() >= 0) {
        r.seq = static_cast<uint64_t>(v.get<int64_t>());
      } else if (!v.is_null()) {
        ctx.add("seq is not a non-negative integer");
        return;
      }
      continue;
    }
    name = key;
    add_field(v, name, r);
  }
  if (r.fields.empty())
    return;
  if (!has_time) {
    r.time = m.ingest_time;
    r.quality |= quality::time_replaced;
  }
  r.stream.reserve(m.actor.size() + 1 + m.topic.size());
  r.stream.append(m.actor).append(1, '/').append(m.topic);
  ctx.d.records.push_back(std::move(r));
}

} // namespace

decoded decode_json(const message_info& m, std::string_view payload) {
  decoded d;
  try {
    // Valid but too deep: refused. Invalid: the parser below says why.
    if (nesting(payload) > max_depth && ojson::accept(payload.begin(), payload.end())) {
      d.error = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
      return d;
    }
    ojson j;
    try {
      j = ojson::parse(payload.begin(), payload.end());
    } catch (const ojson::exception& e) {
      std::string_view what = e.what();
      if (auto pos = what.find("] "); pos != std::string_view::npos)
        what.remove_prefix(pos + 2);
      d.error = "not JSON: " + printable(what, 160);
      return d;
    }
    if (j.is_object()) {
      element_context ctx{m, d, std::string::npos};
      decode_object(j, ctx);
      d.error = ctx.text();
    } else if (j.is_array()) {
      element_context ctx{m, d, 0};
      for (size_t i = 0; i < j.size(); ++i) {
        ctx.index = i;
        if (j[i].is_object())
          decode_object(j[i], ctx);
        else
          ctx.add("not an object");
      }
      d.error = ctx.text();
    } else {
      d.error = "payload is not a JSON object or an array of objects";
    }
  } catch (const std::exception& e) {
    d.records.clear();
    d.error = "cannot decode: " + printable(e.what(), 160);
  }
  return d;
}

decoded decode_raw(const message_info& m, std::string_view payload) {
  decoded d;
  record r;
  r.stream.reserve(m.actor.size() + 1 + m.topic.size());
  r.stream.append(m.actor).append(1, '/').append(m.topic);
  r.time = m.ingest_time;
  r.ingest_time = m.ingest_time;
  r.seq = m.arrival;
  r.quality = quality::good;
  r.fields.push_back({"payload", bytes{std::string{payload}}});
  d.records.push_back(std::move(r));
  return d;
}

std::string encode_json(const record& r) {
  std::string out;
  out.reserve(48 + r.fields.size() * 32);
  out += "{\"ts\":\"";
  int digits = r.time % 1'000'000 == 0 ? 3 : r.time % 1'000 == 0 ? 6 : 9;
  out += format_time(r.time, digits);
  out += "\",\"seq\":";
  out += std::to_string(r.seq);
  for (auto& f : r.fields) {
    out += ',';
    if (f.name == "ts" || f.name == "seq")
      append_json_string(out, f.name + "_");
    else
      append_json_string(out, f.name);
    out += ':';
    std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, double>)
          append_json_double(out, x);
        else if constexpr (std::is_same_v<T, int64_t>)
          out += std::to_string(x);
        else if constexpr (std::is_same_v<T, bool>)
          out += x ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::string>)
          append_json_string(out, x);
        else
          append_json_string(out, base64_encode(x.data));
      },
      f.v);
  }
  out += '}';
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  size_t plain = 0; // start of a run copied as is
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      auto n = utf8_length(s, i);
      if (n > 0) {
        i += n;
        continue;
      }
    }
    out.append(s.data() + plain, i - plain);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += "\xef\xbf\xbd"; // U+FFFD for a byte that is not valid UTF-8
        }
    }
    plain = ++i;
  }
  out.append(s.data() + plain, s.size() - plain);
  out += '"';
}

std::string printable(std::string_view text, size_t limit) {
  std::string out;
  out.reserve(std::min(text.size(), limit) + 3);
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    auto n = c < 0x80 ? 1 : utf8_length(text, i);
    if (i + std::max<size_t>(n, 1) > limit)
      break;
    if (n == 0 || c < 0x20 || c == 0x7f) {
      out += '?';
      ++i;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  if (i < text.size())
    out += "...";
  return out;
}

void append_json_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  std::string_view text{buf, static_cast<size_t>(r.ptr - buf)};
  out += text;
  if (text.find_first_of(".eE") == std::string_view::npos)
    out += ".0"; // so that it reads back as a double, not an integer
}

std::string base64_encode(std::string_view data) {
  static constexpr char table[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16
                 | static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8
                 | static_cast<unsigned char>(data[i + 2]);
    out += table[n >> 18 & 63];
    out += table[n >> 12 & 63];
    out += table[n >> 6 & 63];
    out += table[n & 63];
  }
  if (i < data.size()) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(data[i])) << 16;
    if (i + 1 < data.size())
      n |= static_cast<uint32_t>(static_cast<unsigned char>(data[i + 1])) << 8;
    out += table[n >> 18 & 63];
    out += table[n >> 12 & 63];
    out += i + 1 < data.size() ? table[n >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

} // namespace fabrik::mqtt
