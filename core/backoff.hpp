#pragma once
// Delays between reconnect attempts, shared by every driver that talks to a peer.

#include <algorithm>
#include <chrono>

namespace fabrik {

/// Delays between connect attempts: doubling from min to max, reset once connected.
class backoff {
public:
  backoff(int min_s, int max_s) : min_(min_s), max_(max_s), next_(min_s) {}
  /// The delay before the next attempt; each call doubles the one after.
  std::chrono::seconds next() {
    auto d = next_;
    next_ = std::min(next_ * 2, max_);
    return std::chrono::seconds{d};
  }
  void reset() { next_ = min_; }

private:
  int min_;
  int max_;
  int next_;
};

} // namespace fabrik
