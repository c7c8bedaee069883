#include "core/time.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <limits>

// All calendar arithmetic is our own (proleptic Gregorian, UTC): no locale and no time
// zone database is consulted, so results do not depend on the machine's settings.

namespace fabrik {
namespace {

constexpr int64_t ns_per_s = 1'000'000'000;
constexpr int64_t max_shown = 64; // characters of bad input quoted in an error

/// The input as it appears in an error message: quoted, cut short, control bytes and
/// non-ASCII as '?' (a time is ASCII; the message must stay valid UTF-8).
std::string quote(std::string_view text) {
  std::string out = "'";
  auto n = std::min<size_t>(text.size(), max_shown);
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    out += c < 0x20 || c >= 0x7f ? '?' : static_cast<char>(c);
  }
  if (text.size() > static_cast<size_t>(max_shown))
    out += "...";
  out += "'";
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty()
         && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Howard Hinnant's days_from_civil / civil_from_days.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct civil {
  int64_t y;
  unsigned m;
  unsigned d;
};

civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {y + (m <= 2), m, d};
}

bool is_leap(int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

void put_digits(std::string& out, int64_t v, int width) {
  char buf[24];
  int n = 0;
  for (; n < width || v > 0; ++n, v /= 10)
    buf[n] = static_cast<char>('0' + v % 10);
  while (n > 0)
    out += buf[--n];
}

/// Reads exactly `n` digits at `pos`.
bool read_fixed(std::string_view s, size_t& pos, int n, int& out) {
  if (pos + static_cast<size_t>(n) > s.size())
    return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    char c = s[pos + static_cast<size_t>(i)];
    if (!is_digit(c))
      return false;
    v = v * 10 + (c - '0');
  }
  pos += static_cast<size_t>(n);
  out = v;
  return true;
}

error time_error(std::string_view text, std::string_view why) {
  return make_error(ec::parse_error, "not a time: " + quote(text) + " (" + std::string{why}
                                       + "; expected RFC 3339 such as 2024-05-01T10:00:00Z)");
}

/// Parses an unsigned decimal with optional fraction ("1", "1.5", ".5") at the start of `s`
/// into integer and fraction digits. Returns the number of characters consumed (0: none).
struct decimal {
  uint64_t whole = 0;
  std::string_view frac; // the fraction's digits
  bool overflow = false;
};

size_t read_decimal(std::string_view s, decimal& out) {
  size_t i = 0;
  bool any = false;
  for (; i < s.size() && is_digit(s[i]); ++i) {
    any = true;
    auto d = static_cast<uint64_t>(s[i] - '0');
    if (out.whole > (std::numeric_limits<uint64_t>::max() - d) / 10)
      out.overflow = true;
    else
      out.whole = out.whole * 10 + d;
  }
  if (i < s.size() && s[i] == '.') {
    size_t start = i + 1, j = start;
    while (j < s.size() && is_digit(s[j]))
      ++j;
    if (j > start) {
      out.frac = s.substr(start, j - start);
      return j;
    }
    return any ? i + 1 : 0; // "5." is 5
  }
  return any ? i : 0;
}

enum class scaled { ok, too_large, not_whole };

/// value * unit exactly, unless it overflows int64 or is not a whole number.
scaled scale(const decimal& d, int64_t unit, int64_t& out) {
  if (d.overflow)
    return scaled::too_large;
  int64_t whole = 0;
  if (d.whole > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
      || __builtin_mul_overflow(static_cast<int64_t>(d.whole), unit, &whole))
    return scaled::too_large;
  // The fraction: digits * unit / 10^k must come out whole.
  int64_t num = 0, den = 1;
  for (char c : d.frac) {
    if (den > std::numeric_limits<int64_t>::max() / 10) {
      if (c != '0')
        return scaled::not_whole; // more precision than any unit can hold exactly
      continue;
    }
    num = num * 10 + (c - '0');
    den *= 10;
  }
  // unit / gcd keeps num * unit' small.
  int64_t a = unit, b = den;
  while (b != 0) {
    auto t = a % b;
    a = b;
    b = t;
  }
  int64_t u = unit / a, dd = den / a;
  int64_t part = 0;
  if (num % dd != 0)
    return scaled::not_whole;
  if (__builtin_mul_overflow(num / dd, u, &part) || __builtin_add_overflow(whole, part, &out))
    return scaled::too_large;
  return scaled::ok;
}

struct unit_def {
  std::string_view name;
  int64_t factor;
};

constexpr unit_def duration_units[] = {
  {"ns", 1},
  {"us", 1'000},
  {"\xc2\xb5s", 1'000}, // µs
  {"ms", 1'000'000},
  {"s", ns_per_s},
  {"m", 60 * ns_per_s},
  {"h", 3600 * ns_per_s},
  {"d", 86400 * ns_per_s},
  {"w", 7 * 86400 * ns_per_s},
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

constexpr int64_t kib = 1024;
constexpr unit_def size_units[] = {
  {"B", 1},
  {"KB", 1000},
  {"MB", 1000 * 1000},
  {"GB", 1000 * 1000 * 1000},
  {"TB", int64_t{1000} * 1000 * 1000 * 1000},
  {"PB", int64_t{1000} * 1000 * 1000 * 1000 * 1000},
  {"KiB", kib},
  {"MiB", kib* kib},
  {"GiB", kib* kib* kib},
  {"TiB", kib* kib* kib* kib},
  {"PiB", kib* kib* kib* kib* kib},
};

} // namespace

int64_t now_ns() {
  using namespace std::chrono;
  return duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_time(int64_t ns, int digits) {
  if (digits < 0)
    digits = 0;
  if (digits > 9)
    digits = 9;
  // Floor division, so times before 1970 format correctly too.
  int64_t secs = ns / ns_per_s;
  int64_t frac = ns % ns_per_s;
  if (frac < 0) {
    frac += ns_per_s;
    --secs;
  }
  int64_t days = secs / 86400;
  int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    --days;
  }
  auto c = civil_from_days(days);
  std::string out;
  out.reserve(32);
  put_digits(out, c.y, 4);
  out += '-';
  put_digits(out, c.m, 2);
  out += '-';
  put_digits(out, c.d, 2);
  out += 'T';
  put_digits(out, sod / 3600, 2);
  out += ':';
  put_digits(out, sod / 60 % 60, 2);
  out += ':';
  put_digits(out, sod % 60, 2);
  if (digits > 0) {
    out += '.';
    int64_t div = 1;
    for (int i = digits; i < 9; ++i)
      div *= 10;
    put_digits(out, frac / div, digits); // truncates: never rounds into the next second
  }
  out += 'Z';
  return out;
}

// Accepted: YYYY-MM-DD, optionally followed by 'T', 't' or ' ', hh:mm[:ss[.f...]] and an
// offset ('Z', 'z', +hh:mm, +hhmm, +hh). Without an offset the time is taken as UTC (ISO
// 8601 would call it local time; fabrik has no local time). More than 9 fractional
// digits are cut to nanoseconds.
expected<int64_t> parse_time(std::string_view input) {
  auto text = trim(input);
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_fixed(text, pos, 4, year) || pos >= text.size() || text[pos++] != '-'
      || !read_fixed(text, pos, 2, month) || pos >= text.size() || text[pos++] != '-'
      || !read_fixed(text, pos, 2, day))
    return time_error(input, "no date YYYY-MM-DD");
  if (month < 1 || month > 12)
    return time_error(input, "month " + std::to_string(month) + " out of range");
  if (day < 1 || static_cast<unsigned>(day) > days_in_month(year, static_cast<unsigned>(month)))
    return time_error(input, "day " + std::to_string(day) + " out of range");
  int64_t frac_ns = 0;
  int offset_s = 0;
  if (pos < text.size()) {
    char sep = text[pos++];
    if (sep != 'T' && sep != 't' && sep != ' ')
      return time_error(input, "expected 'T' after the date");
    if (!read_fixed(text, pos, 2, hour) || pos >= text.size() || text[pos++] != ':'
        || !read_fixed(text, pos, 2, minute))
      return time_error(input, "no time hh:mm[:ss]");
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!read_fixed(text, pos, 2, second))
        return time_error(input, "bad seconds");
      if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
        ++pos;
        size_t start = pos;
        int64_t scale_ns = ns_per_s;
        while (pos < text.size() && is_digit(text[pos])) {
          if (scale_ns > 1) {
            scale_ns /= 10;
            frac_ns += (text[pos] - '0') * scale_ns;
          }
          ++pos;
        }
        if (pos == start)
          return time_error(input, "no digits after the decimal point");
      }
    }
    if (hour > 23)
      return time_error(input, "hour " + std::to_string(hour) + " out of range");
    if (minute > 59)
      return time_error(input, "minute " + std::to_string(minute) + " out of range");
    if (second > 60) // 60: a leap second, counted as the next second's start
      return time_error(input, "second " + std::to_string(second) + " out of range");
    if (pos < text.size()) {
      char z = text[pos++];
      if (z == 'Z' || z == 'z') {
        // UTC
      } else if (z == '+' || z == '-') {
        int oh = 0, om = 0;
        if (!read_fixed(text, pos, 2, oh))
          return time_error(input, "bad UTC offset");
        if (pos < text.size() && text[pos] == ':')
          ++pos;
        if (pos < text.size() && !read_fixed(text, pos, 2, om))
          return time_error(input, "bad UTC offset");
        if (oh > 23 || om > 59)
          return time_error(input, "UTC offset out of range");
        offset_s = (oh * 3600 + om * 60) * (z == '-' ? -1 : 1);
      } else {
        return time_error(input, "unexpected '" + std::string(1, z) + "' after the time");
      }
    }
  }
  if (pos != text.size())
    return time_error(input, "unexpected text after the time");
  int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  int64_t ns = 0;
  if (__builtin_mul_overflow(secs, ns_per_s, &ns) || __builtin_add_overflow(ns, frac_ns, &ns))
    return time_error(input, "outside the years 1678-2261 that nanoseconds can count");
  return ns;
}

expected<int64_t> parse_time_arg(std::string_view input, int64_t now) {
  auto text = trim(input);
  if (text == "now")
    return now;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    auto d = parse_duration(text.substr(1));
    if (!d)
      return make_error(ec::invalid_argument,
                        "not a time: " + quote(input)
                          + " (expected RFC 3339 such as 2024-05-01T10:00:00Z, or relative "
                            "to now such as -1h, -30m, -7d)");
    int64_t out = 0;
    if (text[0] == '-' ? __builtin_sub_overflow(now, *d, &out)
                       : __builtin_add_overflow(now, *d, &out))
      return make_error(ec::invalid_argument, "time out of range: " + quote(input));
    return out;
  }
  return parse_time(text);
}

expected<int64_t> parse_duration(std::string_view input) {
  auto text = trim(input);
  auto fail = [&](std::string_view why) -> error {
    return make_error(ec::invalid_argument, "not a duration: " + quote(input) + " ("
                                              + std::string{why}
                                              + "; expected e.g. 500ms, 10s, 5m, 1h, 7d)");
  };
  if (text.empty())
    return fail("empty");
  if (text[0] == '-')
    return fail("durations cannot be negative");
  if (text[0] == '+')
    text.remove_prefix(1);
  // One or more number+unit pairs ("1h30m"); a bare number alone is seconds.
  int64_t total = 0;
  bool first = true;
  while (!text.empty()) {
    decimal d;
    auto used = read_decimal(text, d);
    if (used == 0)
      return fail("expected a number");
    text.remove_prefix(used);
    while (!text.empty() && text[0] == ' ')
      text.remove_prefix(1);
    size_t u = 0;
    while (u < text.size() && !is_digit(text[u]) && text[u] != '.' && text[u] != ' ')
      ++u;
    auto unit = text.substr(0, u);
    text.remove_prefix(u);
    while (!text.empty() && text[0] == ' ')
      text.remove_prefix(1);
    int64_t factor = 0;
    if (unit.empty()) {
      if (!first || !text.empty())
        return fail("missing unit");
      factor = ns_per_s;
    } else {
      for (auto& du : duration_units)
        if (du.name == unit)
          factor = du.factor;
      if (factor == 0)
        return fail("unknown unit '" + std::string{unit} + "'; units: ns, us, ms, s, m, h, d, w");
    }
    int64_t part = 0;
    auto s = scale(d, factor, part);
    if (s == scaled::not_whole)
      return fail("not a whole number of nanoseconds");
    if (s != scaled::ok || __builtin_add_overflow(total, part, &total))
      return fail("too large");
    first = false;
  }
  return total;
}

expected<int64_t> parse_size(std::string_view input) {
  auto text = trim(input);
  auto fail = [&](std::string_view why) -> error {
    return make_error(ec::invalid_argument, "not a size: " + quote(input) + " (" + std::string{why}
                                              + "; expected e.g. 100B, 10MB, 512KiB, 64MiB)");
  };
  if (text.empty())
    return fail("empty");
  if (text[0] == '-')
    return fail("sizes cannot be negative");
  if (text[0] == '+')
    text.remove_prefix(1);
  decimal d;
  auto used = read_decimal(text, d);
  if (used == 0)
    return fail("expected a number");
  text.remove_prefix(used);
  text = trim(text);
  int64_t factor = 0;
  if (text.empty()) {
    factor = 1;
  } else {
    // Case-insensitive (64mib, 10mb): fabrik has no bits, so 'b' cannot be ambiguous.
    for (auto& su : size_units)
      if (iequal(su.name, text))
        factor = su.factor;
    if (factor == 0)
      return fail("unknown unit '" + std::string{text}
                  + "'; units: B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB "
                    "(powers of 1024)");
  }
  int64_t out = 0;
  auto s = scale(d, factor, out);
  if (s == scaled::not_whole)
    return fail("not a whole number of bytes");
  if (s != scaled::ok)
    return fail("too large");
  return out;
}

std::string format_duration(int64_t ns) {
  if (ns == 0)
    return "0s";
  if (ns < 0) {
    if (ns == std::numeric_limits<int64_t>::min())
      return "-" + std::to_string(static_cast<uint64_t>(ns)) + "ns";
    return "-" + format_duration(-ns);
  }
  // The largest unit that divides exactly; weeks are parsed but days read better.
  static constexpr unit_def units[] = {
    {"d", 86400 * ns_per_s}, {"h", 3600 * ns_per_s}, {"m", 60 * ns_per_s},
    {"s", ns_per_s},         {"ms", 1'000'000},      {"us", 1'000},
  };
  for (auto& u : units)
    if (ns % u.factor == 0)
      return std::to_string(ns / u.factor) + std::string{u.name};
  return std::to_string(ns) + "ns";
}

std::string format_size(int64_t bytes) {
  if (bytes < 0) {
    if (bytes == std::numeric_limits<int64_t>::min())
      return "-" + std::to_string(static_cast<uint64_t>(bytes)) + "B";
    return "-" + format_size(-bytes);
  }
  if (bytes == 0)
    return "0B";
  auto best_of = [bytes](std::initializer_list<unit_def> units) {
    for (auto& u : units)
      if (bytes % u.factor == 0)
        return std::to_string(bytes / u.factor) + std::string{u.name};
    return std::to_string(bytes) + "B";
  };
  auto binary =
    best_of({size_units[10], size_units[9], size_units[8], size_units[7], size_units[6]});
  auto decimal_form =
    best_of({size_units[5], size_units[4], size_units[3], size_units[2], size_units[1]});
  return decimal_form.size() < binary.size() ? decimal_form : binary;
}

bool plausible_source_time(int64_t source_ns, int64_t now) {
  constexpr int64_t y2000 = 946'684'800 * ns_per_s; // 2000-01-01T00:00:00Z
  constexpr int64_t ahead = 3600 * ns_per_s;
  if (source_ns < y2000)
    return false;
  int64_t limit = 0;
  if (__builtin_add_overflow(now, ahead, &limit))
    return true;
  return source_ns <= limit;
}

std::string format_size_approx(uint64_t bytes) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024)
    return std::to_string(bytes) + "B";
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%s", v, units[u]);
  return buf;
}

} // namespace fabrik
