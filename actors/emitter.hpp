#pragma once
// The sending end of wires: sends each batch to every downstream consumer and keeps a
// bounded number of batches unanswered (the wire's credit), so a slow consumer slows its
// producer instead of growing memory. A batch a consumer refuses (say, a full disk) is
// sent to it again after a pause; consumers deduplicate, so a resend is harmless.

#include "actors/actors.hpp"
#include "core/log.hpp"

#include <caf/all.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fabrik {

class emitter {
public:
  using done_fn = std::function<void()>;

  emitter() = default;
  emitter(caf::event_based_actor* self, std::vector<consumer_actor> downstream,
          size_t max_in_flight, std::string owner)
    : self_(self), downstream_(std::move(downstream)), max_(max_in_flight),
      owner_(std::move(owner)) {}

  bool can_send() const { return in_flight_ < max_; }
  size_t in_flight() const { return in_flight_; }
  bool empty() const { return downstream_.empty(); }
  uint64_t refusals() const { return refusals_; }

  /// Sends `batch` to every downstream; `done` runs once all of them accepted it (at once
  /// for an empty batch).
  void send(record_batch batch, done_fn done) {
    ++in_flight_;
    if (downstream_.empty() || batch.records.empty()) {
      --in_flight_;
      done();
      return;
    }
    auto pending = std::make_shared<size_t>(downstream_.size());
    // One message shared by every downstream and every resend: batches are never copied.
    auto msg = caf::make_message(std::move(batch));
    auto finish = [this, pending, done = std::move(done)] {
      if (--*pending == 0) {
        --in_flight_;
        done();
      }
    };
    for (auto& dst : downstream_)
      deliver(caf::actor_cast<caf::actor>(dst), msg, finish);
  }

private:
  void deliver(const caf::actor& dst, caf::message msg, std::function<void()> finish) {
    self_->request(dst, caf::infinite, msg)
      .then([finish](uint64_t) { finish(); },
            [this, dst, msg, finish](caf::error& err) {
              ++refusals_;
              if (limiter_.allow())
                spdlog::warn("{}: downstream refused a batch ({}), retrying in 1 s", owner_,
                             caf::to_string(err));
              self_->delayed_send(self_, std::chrono::seconds{1},
                                  retry_fn{[=, this] { deliver(dst, msg, finish); }});
            });
  }

public:
  /// A delayed resend, sent to the owning actor; its behavior calls it.
  struct retry_fn {
    std::function<void()> fn;
  };

private:
  caf::event_based_actor* self_ = nullptr;
  std::vector<consumer_actor> downstream_;
  size_t max_ = 4;
  size_t in_flight_ = 0;
  uint64_t refusals_ = 0;
  std::string owner_;
  log_limiter limiter_;
};

} // namespace fabrik

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fabrik::emitter::retry_fn)
