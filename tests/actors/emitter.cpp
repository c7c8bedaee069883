// The emitter (actors/emitter.hpp) on CAF's deterministic scheduler: a wire's credit, the
// back-pressure it puts on a producer, and the resend of a refused batch. The consumer here
// holds its answers back until the test releases them, so every step is observable.
#include "tests/actors/actor_test.hpp"

#include "actors/emitter.hpp"

#include <catch2/catch.hpp>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// A consumer that answers nothing until told: it keeps each batch's promise, and answers
/// the Nth batch it got when the test sends (answer_atom, N, accepted?).
struct held_state {
  std::vector<caf::response_promise> held;
  std::vector<uint64_t> seqs; ///< the first record's seq of every batch received
};

using answer_atom = caf::atom_constant<caf::atom("answer")>;

caf::behavior held_consumer(caf::stateful_actor<held_state>* self) {
  return {
    [=](const record_batch& b) -> caf::result<uint64_t> {
      self->state.seqs.push_back(b.records.front().seq);
      self->state.held.push_back(self->make_response_promise());
      return caf::delegated<uint64_t>{};
    },
    [=](answer_atom, size_t n, bool accept) {
      auto& p = self->state.held.at(n);
      if (accept)
        p.deliver(uint64_t{1});
      else
        p.deliver(caf::make_error(caf::sec::runtime_error, "disk full"));
    },
  };
}

/// A producer as a source is one: it sends while the emitter has credit and keeps the rest.
struct producer_state {
  emitter out;
  std::deque<record_batch> waiting;
  uint64_t done = 0; ///< batches every downstream accepted
};

using send_atom = caf::atom_constant<caf::atom("send")>;

caf::behavior producer(caf::stateful_actor<producer_state>* self, consumer_actor downstream,
                       size_t max_in_flight) {
  self->state.out = emitter{self, {downstream}, max_in_flight, "producer"};
  auto pump = [self] {
    auto& s = self->state;
    while (s.out.can_send() && !s.waiting.empty()) {
      auto b = std::move(s.waiting.front());
      s.waiting.pop_front();
      s.out.send(std::move(b), [self] {
        ++self->state.done;
        self->send(self, send_atom::value, uint64_t{0});
      });
    }
  };
  return {
    [=](send_atom, uint64_t seq) {
      if (seq != 0)
        self->state.waiting.push_back(one_record_batch(seq));
      pump();
    },
    [](emitter::retry_fn& r) { r.fn(); },
  };
}

} // namespace

TEST_CASE("emitter: a wire holds at most max_in_flight unanswered batches, and each answer "
          "lets the next one go",
          "[actors][emitter]") {
  deterministic_system t;
  auto consumer = t.spawn(held_consumer);
  auto p = t.spawn(producer, caf::actor_cast<consumer_actor>(consumer), size_t{2});
  for (uint64_t seq = 1; seq <= 5; ++seq)
    caf::anon_send(p, send_atom::value, seq);
  t.run();
  auto& c = t.state<held_state>(consumer);
  auto& s = t.state<producer_state>(p);
  CHECK(c.seqs == std::vector<uint64_t>{1, 2});
  CHECK(s.out.in_flight() == 2);
  CHECK_FALSE(s.out.can_send());
  CHECK(s.waiting.size() == 3);

  // One answer: one more batch goes out, in order.
  caf::anon_send(consumer, answer_atom::value, size_t{0}, true);
  t.run();
  CHECK(s.done == 1);
  CHECK(c.seqs == std::vector<uint64_t>{1, 2, 3});
  CHECK(s.out.in_flight() == 2);

  for (size_t i = 1; i < 5; ++i) {
    REQUIRE(c.held.size() > i);
    caf::anon_send(consumer, answer_atom::value, i, true);
    t.run();
  }
  CHECK(s.done == 5);
  CHECK(c.seqs == std::vector<uint64_t>{1, 2, 3, 4, 5});
  CHECK(s.out.in_flight() == 0);
  CHECK(s.waiting.empty());
}

TEST_CASE("emitter: a refused batch is sent again after a second and holds its credit "
          "until taken",
          "[actors][emitter]") {
  deterministic_system t;
  auto consumer = t.spawn(held_consumer);
  auto p = t.spawn(producer, caf::actor_cast<consumer_actor>(consumer), size_t{1});
  caf::anon_send(p, send_atom::value, uint64_t{7});
  caf::anon_send(p, send_atom::value, uint64_t{8});
  t.run();
  auto& c = t.state<held_state>(consumer);
  auto& s = t.state<producer_state>(p);
  REQUIRE(c.seqs == std::vector<uint64_t>{7});
  caf::anon_send(consumer, answer_atom::value, size_t{0}, false);
  t.run();
  CHECK(s.out.refusals() == 1);
  CHECK(s.out.in_flight() == 1); // still owed: batch 8 waits
  CHECK(c.seqs == std::vector<uint64_t>{7});
  t.advance(std::chrono::seconds{1});
  CHECK(c.seqs == std::vector<uint64_t>{7, 7});
  caf::anon_send(consumer, answer_atom::value, size_t{1}, true);
  t.run();
  CHECK(s.done == 1);
  CHECK(c.seqs == std::vector<uint64_t>{7, 7, 8});
}
