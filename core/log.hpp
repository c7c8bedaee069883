#pragma once
// Logging helpers shared by all actors.

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace fabrik {

/// Lets one message through per interval and counts the ones it held back, so a flood
/// of malformed input cannot flood the log.
class log_limiter {
public:
  explicit log_limiter(std::chrono::milliseconds interval = std::chrono::seconds{5})
    : interval_(interval) {}

  /// True when a message may be logged now; `suppressed()` then tells how many were not.
  bool allow() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < interval_) {
      ++held_;
      return false;
    }
    last_ = now;
    last_held_ = held_;
    held_ = 0;
    return true;
  }
  uint64_t suppressed() const { return last_held_; }

private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_{};
  uint64_t held_ = 0;
  uint64_t last_held_ = 0;
};

} // namespace fabrik
