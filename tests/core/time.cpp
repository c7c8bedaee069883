// Time, duration and size parsing and formatting (core/time.hpp).

#include "core/time.hpp"

#include <catch2/catch.hpp>

#include <limits>

using namespace fabrik;

namespace {

constexpr int64_t s = 1'000'000'000;
// 2022-07-21T13:01:50Z, checked against `date -u -d 2022-07-21T13:01:50Z +%s`.
constexpr int64_t t0 = 1'658'408'510 * s;

int64_t parsed(std::string_view text) {
  auto t = parse_time(text);
  INFO(text << ": " << (t ? "" : t.err().message));
  REQUIRE(t);
  return *t;
}

} // namespace

TEST_CASE("format_time writes RFC 3339 UTC with the requested fraction digits", "[time]") {
  CHECK(format_time(0) == "1970-01-01T00:00:00.000000000Z");
  CHECK(format_time(0, 0) == "1970-01-01T00:00:00Z");
  CHECK(format_time(t0 + 159'000'000, 3) == "2022-07-21T13:01:50.159Z");
  CHECK(format_time(t0 + 123'456'789, 9) == "2022-07-21T13:01:50.123456789Z");
  CHECK(format_time(t0 + 123'456'789, 7) == "2022-07-21T13:01:50.1234567Z");
  CHECK(format_time(t0 + 123'456'789, 1) == "2022-07-21T13:01:50.1Z");
  // Truncated, never rounded up into the next second.
  CHECK(format_time(t0 + 999'999'999, 3) == "2022-07-21T13:01:50.999Z");
  // Out-of-range digit counts are clamped.
  CHECK(format_time(t0, -1) == "2022-07-21T13:01:50Z");
  CHECK(format_time(t0, 12) == "2022-07-21T13:01:50.000000000Z");
  // Leap day, end of year, before the epoch.
  CHECK(format_time(parsed("2024-02-29T23:59:59Z"), 0) == "2024-02-29T23:59:59Z");
  CHECK(format_time(parsed("1999-12-31T23:59:59.5Z"), 1) == "1999-12-31T23:59:59.5Z");
  CHECK(format_time(-1, 9) == "1969-12-31T23:59:59.999999999Z");
}

TEST_CASE("parse_time reads 0 to 9 fractional digits", "[time]") {
  CHECK(parsed("2022-07-21T13:01:50Z") == t0);
  CHECK(parsed("2022-07-21T13:01:50.1Z") == t0 + 100'000'000);
  CHECK(parsed("2022-07-21T13:01:50.15Z") == t0 + 150'000'000);
  CHECK(parsed("2022-07-21T13:01:50.159Z") == t0 + 159'000'000);
  CHECK(parsed("2022-07-21T13:01:50.1594Z") == t0 + 159'400'000);
  CHECK(parsed("2022-07-21T13:01:50.15942Z") == t0 + 159'420'000);
  CHECK(parsed("2022-07-21T13:01:50.159421Z") == t0 + 159'421'000);
  CHECK(parsed("2022-07-21T13:01:50.1594213Z") == t0 + 159'421'300);
  CHECK(parsed("2022-07-21T13:01:50.15942137Z") == t0 + 159'421'370);
  CHECK(parsed("2022-07-21T13:01:50.159421378Z") == t0 + 159'421'378);
  // Beyond nanoseconds the extra digits are cut.
  CHECK(parsed("2022-07-21T13:01:50.1594213789Z") == t0 + 159'421'378);
}

TEST_CASE("parse_time applies UTC offsets and accepts the common variants", "[time]") {
  CHECK(parsed("2022-07-21T15:01:50+02:00") == t0);
  CHECK(parsed("2022-07-21T08:31:50-04:30") == t0);
  CHECK(parsed("2022-07-21T15:01:50.159+02:00") == t0 + 159'000'000);
  CHECK(parsed("2022-07-21T15:01:50+0200") == t0);
  CHECK(parsed("2022-07-21T15:01:50+02") == t0);
  CHECK(parsed("2022-07-21T13:01:50+00:00") == t0);
  CHECK(parsed("2022-07-21T13:01:50-00:00") == t0);
  CHECK(parsed("2022-07-21 13:01:50Z") == t0);
  CHECK(parsed("2022-07-21t13:01:50z") == t0);
  CHECK(parsed("2022-07-21T13:01:50,159Z") == t0 + 159'000'000);
  // An offset crossing midnight moves the date.
  CHECK(parsed("2022-07-22T01:01:50+12:00") == t0);
  // No offset: UTC. No seconds, no time.
  CHECK(parsed("2022-07-21T13:01:50") == t0);
  CHECK(parsed("2022-07-21T13:01Z") == t0 - 50 * s);
  CHECK(parsed("2022-07-21") == t0 - (13 * 3600 + 60 + 50) * s);
  CHECK(parsed("  2022-07-21T13:01:50Z\n") == t0);
  // Dates around the calendar's corners.
  CHECK(parsed("1970-01-01T00:00:00Z") == 0);
  CHECK(parsed("2000-03-01T00:00:00Z") - parsed("2000-02-28T00:00:00Z") == 2 * 86400 * s);
  CHECK(parsed("1900-03-01T00:00:00Z") - parsed("1900-02-28T00:00:00Z") == 86400 * s);
  CHECK(parsed("1969-12-31T23:59:59.5Z") == -500'000'000);
}

TEST_CASE("parse_time round-trips format_time", "[time]") {
  for (int64_t t : {int64_t{0}, t0, t0 + 1, t0 + 123'456'789, int64_t{4'102'444'799} * s})
    CHECK(parsed(format_time(t)) == t);
}

TEST_CASE("parse_time rejects garbage with a parse_error quoting the input", "[time]") {
  for (auto bad :
       {"", "garbage", "2022-07-21T", "2022-13-01T00:00:00Z", "2022-02-29T00:00:00Z", "2022-07-32",
        "2022-07-21T24:00:00Z", "2022-07-21T13:60:00Z", "2022-07-21T13:01:61Z",
        "2022-07-21T13:01:50.Z", "2022-07-21T13:01:50Q", "2022-07-21T13:01:50+25:00",
        "2022-07-21T13:01:50+02:0", "2022-07-21T13:01:50Z trailing", "22-07-21T13:01:50Z",
        "2022/07/21", "3000-01-01T00:00:00Z", "1600-01-01T00:00:00Z", "1658408510"}) {
    auto t = parse_time(bad);
    INFO(bad);
    REQUIRE_FALSE(t);
    CHECK(t.err().code == ec::parse_error);
    CHECK(t.err().message.find("'" + std::string{bad}) != std::string::npos);
  }
  // Long input is quoted cut short.
  auto t = parse_time(std::string(10000, 'x'));
  REQUIRE_FALSE(t);
  CHECK(t.err().message.size() < 300);
}

TEST_CASE("parse_time_arg takes absolute times and times relative to now", "[time]") {
  const int64_t now = t0;
  CHECK(*parse_time_arg("-1h", now) == now - 3600 * s);
  CHECK(*parse_time_arg("-30m", now) == now - 1800 * s);
  CHECK(*parse_time_arg("-7d", now) == now - 7 * 86400 * s);
  CHECK(*parse_time_arg("-10s", now) == now - 10 * s);
  CHECK(*parse_time_arg("-500ms", now) == now - 500'000'000);
  CHECK(*parse_time_arg("+1h", now) == now + 3600 * s);
  CHECK(*parse_time_arg("now", now) == now);
  CHECK(*parse_time_arg("2022-07-21T13:01:50Z", 0) == t0);
  for (auto bad : {"-1x", "-", "yesterday", "-h"}) {
    auto t = parse_time_arg(bad, now);
    INFO(bad);
    REQUIRE_FALSE(t);
    CHECK(t.err().message.find(bad) != std::string::npos);
  }
}

TEST_CASE("parse_duration reads every unit and a bare number as seconds", "[time]") {
  CHECK(*parse_duration("10ns") == 10);
  CHECK(*parse_duration("100us") == 100'000);
  CHECK(*parse_duration("100\xc2\xb5s") == 100'000);
  CHECK(*parse_duration("500ms") == 500'000'000);
  CHECK(*parse_duration("10s") == 10 * s);
  CHECK(*parse_duration("5m") == 300 * s);
  CHECK(*parse_duration("1h") == 3600 * s);
  CHECK(*parse_duration("7d") == 7 * 86400 * s);
  CHECK(*parse_duration("2w") == 14 * 86400 * s);
  CHECK(*parse_duration("30") == 30 * s);
  CHECK(*parse_duration("0") == 0);
  CHECK(*parse_duration("1.5s") == 1'500'000'000);
  CHECK(*parse_duration("0.25") == 250'000'000);
  CHECK(*parse_duration("1h30m") == 5400 * s);
  CHECK(*parse_duration(" 10 s ") == 10 * s);
}

TEST_CASE("parse_duration rejects negative, fractional-ns, overflowing and garbage input",
          "[time]") {
  for (auto bad :
       {"", "-1s", "abc", "10x", "1.5ns", "10 20", "1h30", "s", "99999999999d", "1e3s", "5M"}) {
    auto d = parse_duration(bad);
    INFO(bad);
    REQUIRE_FALSE(d);
    CHECK(d.err().message.find("not a duration") != std::string::npos);
    CHECK(d.err().message.find("'" + std::string{bad} + "'") != std::string::npos);
  }
  CHECK(parse_duration("-1s").err().message.find("negative") != std::string::npos);
  CHECK(parse_duration("10x").err().message.find("unknown unit 'x'") != std::string::npos);
}

TEST_CASE("parse_size uses powers of 1000 for KB..TB and 1024 for KiB..TiB", "[time]") {
  CHECK(*parse_size("100B") == 100);
  CHECK(*parse_size("100") == 100);
  CHECK(*parse_size("10KB") == 10'000);
  CHECK(*parse_size("10MB") == 10'000'000);
  CHECK(*parse_size("2GB") == 2'000'000'000);
  CHECK(*parse_size("1TB") == 1'000'000'000'000);
  CHECK(*parse_size("512KiB") == 512 * 1024);
  CHECK(*parse_size("64MiB") == 64 * 1024 * 1024);
  CHECK(*parse_size("1GiB") == int64_t{1} << 30);
  CHECK(*parse_size("2TiB") == int64_t{2} << 40);
  CHECK(*parse_size("64mib") == 64 * 1024 * 1024);
  CHECK(*parse_size("1.5KiB") == 1536);
  CHECK(*parse_size("64 MiB") == 64 * 1024 * 1024);
  for (auto bad : {"", "-1MB", "10XB", "1.5B", "lots", "9999999PiB", "10M"}) {
    auto x = parse_size(bad);
    INFO(bad);
    REQUIRE_FALSE(x);
    CHECK(x.err().message.find("not a size") != std::string::npos);
  }
  CHECK(parse_size("-1MB").err().message.find("negative") != std::string::npos);
}

TEST_CASE("format_duration and format_size give the shortest exact form", "[time]") {
  CHECK(format_duration(300 * s) == "5m");
  CHECK(format_duration(1'500'000'000) == "1500ms");
  CHECK(format_duration(3600 * s) == "1h");
  CHECK(format_duration(5400 * s) == "90m");
  CHECK(format_duration(7 * 86400 * s) == "7d");
  CHECK(format_duration(10 * s) == "10s");
  CHECK(format_duration(100'000) == "100us");
  CHECK(format_duration(1) == "1ns");
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(-2 * s) == "-2s");
  CHECK(format_size(64 * 1024 * 1024) == "64MiB");
  CHECK(format_size(10'000'000) == "10MB");
  CHECK(format_size(1024) == "1KiB");
  CHECK(format_size(1000) == "1KB");
  CHECK(format_size(2'048'000) == "2048KB");
  CHECK(format_size(100) == "100B");
  CHECK(format_size(0) == "0B");
  CHECK(format_size(int64_t{1} << 40) == "1TiB");
  // Every formatted value parses back to itself.
  for (int64_t d : {int64_t{1}, int64_t{999}, int64_t{1'500'000'000}, 86400 * s, 90 * s})
    CHECK(*parse_duration(format_duration(d)) == d);
  for (int64_t b : {int64_t{1}, int64_t{1536}, int64_t{10'000'000}, int64_t{3} << 30})
    CHECK(*parse_size(format_size(b)) == b);
}

TEST_CASE("plausible_source_time accepts 2000 up to one hour ahead of now", "[time]") {
  const int64_t now = t0;
  const int64_t y2000 = parsed("2000-01-01T00:00:00Z");
  CHECK(plausible_source_time(now, now));
  CHECK(plausible_source_time(y2000, now));
  CHECK_FALSE(plausible_source_time(y2000 - 1, now));
  CHECK_FALSE(plausible_source_time(0, now));
  CHECK(plausible_source_time(now + 3600 * s, now));
  CHECK_FALSE(plausible_source_time(now + 3600 * s + 1, now));
  CHECK(plausible_source_time(now, std::numeric_limits<int64_t>::max()));
}

TEST_CASE("now_ns counts nanoseconds since the epoch", "[time]") {
  // The clock of this machine is after 2020 and before 2200; seconds would be far smaller.
  auto a = now_ns();
  CHECK(a > parsed("2020-01-01T00:00:00Z"));
  CHECK(a < parsed("2200-01-01T00:00:00Z"));
}
