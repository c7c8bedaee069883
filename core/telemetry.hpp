#pragma once
// What the web UI and /metrics show beyond actor status: the newest records of each stream
// that passes a storage or a workflow, predicted class counts, a feed of new values for
// Server-Sent Events, and a prediction latency histogram. Actors write, HTTP threads read.
// Bounded in every direction; CAF-free and thread-safe.

#include "core/record.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik {

class telemetry {
public:
  /// `per_stream`: records kept per stream (and taken from one batch); `feed`: entries of
  /// the live feed; `max_streams`: streams tracked (more are ignored, and counted).
  explicit telemetry(size_t per_stream = 200, size_t feed = 2000, size_t max_streams = 2000);

  /// The newest records of a batch a storage committed or a workflow predicted.
  /// `class_field`: for predictions, the output counted per class (empty: none).
  void add(const std::vector<record>& records, std::string_view source_actor,
           std::string_view class_field = {});

  /// Seconds from a record's ingest to its prediction being sent downstream.
  void observe_prediction_latency(std::string_view actor, double seconds);

  struct stream_summary {
    std::string stream;
    std::string actor; ///< who added it: a storage or a workflow
    uint64_t seen = 0; ///< records added since start
    int64_t last_time = 0;
  };
  std::vector<stream_summary> streams() const;
  /// Newest first, at most `limit`.
  std::vector<record> newest(std::string_view stream, size_t limit) const;
  /// Per workflow actor: class -> predictions since start.
  std::map<std::string, std::map<std::string, uint64_t>> class_counts() const;

  /// Feed entries after `cursor` (0: only what comes next), waiting up to `wait` for one.
  /// Returns the new cursor; `out` gets (actor, record) pairs, at most `max`.
  uint64_t feed_since(uint64_t cursor, size_t max, std::chrono::milliseconds wait,
                      std::vector<std::pair<std::string, record>>& out);
  /// Wakes every feed_since waiter (shutdown).
  void wake_all();

  /// Prometheus text lines for the latency histogram (fabrik_prediction_latency_seconds).
  std::string latency_metrics() const;

private:
  struct stream_state {
    std::string actor;
    std::deque<record> newest;
    uint64_t seen = 0;
  };
  struct histogram {
    std::vector<uint64_t> buckets; ///< per bound (not cumulative)
    uint64_t count = 0;
    double sum = 0;
  };
  size_t per_stream_, feed_max_, max_streams_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, stream_state, std::less<>> streams_;
  std::map<std::string, std::map<std::string, uint64_t>, std::less<>> classes_;
  std::deque<std::pair<std::string, record>> feed_;
  uint64_t feed_end_ = 0; ///< sequence number after the newest feed entry
  std::map<std::string, histogram, std::less<>> latency_;
};

} // namespace fabrik
