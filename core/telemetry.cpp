#include "core/telemetry.hpp"

#include <array>
#include <cstdio>

namespace fabrik {
namespace {

// Prediction latency buckets, seconds: a millisecond model sits in the first few, a slow
// batch or a queue shows in the upper ones.
constexpr std::array<double, 12> latency_bounds{0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                                0.1,   0.2,   0.5,   1,    2,    5};

std::string class_of(const record& r, std::string_view field) {
  auto* v = r.find(std::string{field});
  if (!v)
    return {};
  if (auto* s = std::get_if<std::string>(v))
    return *s;
  if (auto* i = std::get_if<int64_t>(v))
    return std::to_string(*i);
  if (auto* b = std::get_if<bool>(v))
    return *b ? "true" : "false";
  return {}; // a number is a score, not a class
}

} // namespace

telemetry::telemetry(size_t per_stream, size_t feed, size_t max_streams)
  : per_stream_(per_stream), feed_max_(feed), max_streams_(max_streams) {}

void telemetry::add(const std::vector<record>& records, std::string_view source_actor,
                    std::string_view class_field) {
  if (records.empty())
    return;
  // Only the newest per_stream records of a batch can be shown: copy no more than those.
  size_t first = records.size() > per_stream_ ? records.size() - per_stream_ : 0;
  {
    std::lock_guard lock{mutex_};
    for (size_t i = 0; i < records.size(); ++i) {
      auto& r = records[i];
      auto it = streams_.find(r.stream);
      if (it == streams_.end()) {
        if (streams_.size() >= max_streams_)
          continue;
        it = streams_.emplace(r.stream, stream_state{std::string{source_actor}, {}, 0}).first;
      }
      ++it->second.seen;
      if (!class_field.empty())
        if (auto c = class_of(r, class_field); !c.empty())
          ++classes_[std::string{source_actor}][c];
      if (i < first)
        continue;
      auto& q = it->second.newest;
      q.push_back(r);
      if (q.size() > per_stream_)
        q.pop_front();
      feed_.emplace_back(std::string{source_actor}, r);
      ++feed_end_;
      if (feed_.size() > feed_max_)
        feed_.pop_front();
    }
  }
  changed_.notify_all();
}

void telemetry::observe_prediction_latency(std::string_view actor, double seconds) {
  std::lock_guard lock{mutex_};
  auto it = latency_.find(actor);
  if (it == latency_.end())
    it =
      latency_
        .emplace(std::string{actor}, histogram{std::vector<uint64_t>(latency_bounds.size()), 0, 0})
        .first;
  auto& h = it->second;
  for (size_t i = 0; i < latency_bounds.size(); ++i)
    if (seconds <= latency_bounds[i]) {
      ++h.buckets[i];
      break;
    }
  ++h.count;
  h.sum += seconds;
}

std::vector<telemetry::stream_summary> telemetry::streams() const {
  std::lock_guard lock{mutex_};
  std::vector<stream_summary> out;
  for (auto& [name, s] : streams_)
    out.push_back({name, s.actor, s.seen, s.newest.empty() ? 0 : s.newest.back().time});
  return out;
}

std::vector<record> telemetry::newest(std::string_view stream, size_t limit) const {
  std::lock_guard lock{mutex_};
  std::vector<record> out;
  auto it = streams_.find(stream);
  if (it == streams_.end())
    return out;
  auto& q = it->second.newest;
  for (auto r = q.rbegin(); r != q.rend() && out.size() < limit; ++r)
    out.push_back(*r);
  return out;
}

std::map<std::string, std::map<std::string, uint64_t>> telemetry::class_counts() const {
  std::lock_guard lock{mutex_};
  return {classes_.begin(), classes_.end()};
}

uint64_t telemetry::feed_since(uint64_t cursor, size_t max, std::chrono::milliseconds wait,
                               std::vector<std::pair<std::string, record>>& out) {
  std::unique_lock lock{mutex_};
  if (cursor == 0)
    cursor = feed_end_;
  changed_.wait_for(lock, wait, [&] { return feed_end_ > cursor; });
  uint64_t begin = feed_end_ - feed_.size(); // sequence number of feed_.front()
  uint64_t from = std::max(cursor, begin); // what fell out of the feed is skipped
  for (uint64_t s = from; s < feed_end_ && out.size() < max; ++s)
    out.push_back(feed_[s - begin]);
  return from + out.size();
}

void telemetry::wake_all() { changed_.notify_all(); }

std::string telemetry::latency_metrics() const {
  std::lock_guard lock{mutex_};
  std::string out =
    "# HELP fabrik_prediction_latency_seconds Ingest of a record to its prediction sent "
    "downstream.\n# TYPE fabrik_prediction_latency_seconds histogram\n";
  char buf[256];
  for (auto& [actor, h] : latency_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < latency_bounds.size(); ++i) {
      cumulative += h.buckets[i];
      std::snprintf(buf, sizeof buf,
                    "fabrik_prediction_latency_seconds_bucket{actor=\"%s\",le=\"%g\"} %llu\n",
                    actor.c_str(), latency_bounds[i], static_cast<unsigned long long>(cumulative));
      out += buf;
    }
    std::snprintf(buf, sizeof buf,
                  "fabrik_prediction_latency_seconds_bucket{actor=\"%s\",le=\"+Inf\"} %llu\n"
                  "fabrik_prediction_latency_seconds_sum{actor=\"%s\"} %.6f\n"
                  "fabrik_prediction_latency_seconds_count{actor=\"%s\"} %llu\n",
                  actor.c_str(), static_cast<unsigned long long>(h.count), actor.c_str(), h.sum,
                  actor.c_str(), static_cast<unsigned long long>(h.count));
    out += buf;
  }
  return out;
}

} // namespace fabrik
