#pragma once
// Time and size parsing shared by flow files, payload codecs and the CLI.

#include "core/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace fabrik {

/// Nanoseconds since the epoch, UTC.
int64_t now_ns();

/// Formats as RFC 3339 UTC with `digits` fractional digits (0..9), e.g. 2022-07-21T13:01:50.159Z.
std::string format_time(int64_t ns, int digits = 9);

/// Parses ISO 8601 / RFC 3339: date, 'T' or ' ', time, 0-9 fractional digits, 'Z' or +hh:mm.
expected<int64_t> parse_time(std::string_view text);

/// A CLI time argument: RFC 3339, or relative to `now` such as -1h, -30m, -7d.
expected<int64_t> parse_time_arg(std::string_view text, int64_t now);

/// Durations: 500ms, 10s, 5m, 1h, 7d, 100us, 10ns; a bare number is seconds. Returns ns.
expected<int64_t> parse_duration(std::string_view text);
/// Sizes: 64MiB, 1GiB, 512KiB, 10MB, 100B; a bare number is bytes. Returns bytes.
expected<int64_t> parse_size(std::string_view text);

/// Human forms for docs and logs: 5m, 64MiB.
std::string format_duration(int64_t ns);
std::string format_size(int64_t bytes);
/// Rounded for people: 980B, 1.5KiB, 312.4MiB.
std::string format_size_approx(uint64_t bytes);

/// A source time is plausible when it is after 2000-01-01 and at most one hour ahead of
/// `now`; otherwise the record gets the ingest time and quality::time_replaced.
bool plausible_source_time(int64_t source_ns, int64_t now);

} // namespace fabrik
