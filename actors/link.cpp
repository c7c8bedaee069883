#include "actors/link.hpp"

#include "actors/log.hpp"
#include "actors/spool.hpp"
#include "flows/nodes.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/manager.hpp>

#include <deque>
#include <random>

namespace fabrik {
namespace {

using namespace std::chrono_literals;

/// Batches on their way to the peer at once: enough to hide the round trip.
constexpr size_t window = 32;
/// A delivery unanswered this long counts as a lost link (the peer reconnects and resends).
constexpr auto deliver_timeout = 60s;

struct link_state {
  static inline const char* name = "link";
  link_params p;
  std::optional<spool> buf;
  std::string id; ///< this spool's identity: the peer deduplicates per link id
  caf::actor peer; ///< the peer's node actor while connected
  uint64_t epoch = 0; ///< bumped at every loss: replies of an older epoch change no counter
  uint64_t next = 0;  ///< the next spool seq to send in this epoch
  size_t in_flight = 0;
  bool connecting = false;
  std::chrono::nanoseconds backoff = 100ms;
  /// Batches that found the spool full (`block`): taken, unanswered, kept in order.
  struct waiting {
    std::string blob;
    uint64_t records;
    caf::response_promise rp;
  };
  std::deque<waiting> blocked;
  actor_status st;
  uint64_t dropped = 0, reconnects = 0;
  double rtt_us = 0; ///< smoothed round trip of a delivery
  log_limiter limiter, drop_limiter; // one for the link, one for drops: neither hides the other
};

using link_actor = caf::stateful_actor<link_state>;

void connect(link_actor* self);
void pump(link_actor* self);

std::string peer_name(const link_state& s) { return s.p.to_node + "/" + s.p.actor; }

void lost(link_actor* self, const std::string& why) {
  auto& s = self->state;
  if (s.peer) {
    self->demonitor(s.peer);
    s.peer = nullptr;
    spdlog::warn("link {}: lost ({}); {} batch(es) kept, reconnecting", peer_name(s), why,
                 s.buf->size());
  } else if (s.limiter.allow()) {
    spdlog::warn("link {}: node {} at {}:{} unreachable ({}); {} batch(es) kept, next try in "
                 "{} ms", peer_name(s), s.p.to_node, s.p.host, s.p.port, why, s.buf->size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(s.backoff).count());
  }
  s.st.state = "unreachable";
  s.st.last_error = why;
  ++s.st.errors;
  ++s.epoch;
  s.in_flight = 0;
  s.next = 0;
  s.connecting = false;
  self->delayed_send(self, s.backoff, connect_atom::value);
  s.backoff = std::min(s.backoff * 2, s.p.reconnect_max);
}

void connect(link_actor* self) {
  auto& s = self->state;
  if (s.peer || s.connecting)
    return;
  s.connecting = true;
  auto epoch = s.epoch;
  auto mm = s.p.tls ? self->system().openssl_manager().actor_handle()
                    : self->system().middleman().actor_handle();
  self->request(mm, 10s, connect_atom::value, s.p.host, s.p.port)
    .then(
      [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
        auto& s = self->state;
        if (epoch != s.epoch)
          return;
        if (!ptr)
          return lost(self, "no node actor at that address");
        auto node = caf::actor_cast<caf::actor>(ptr);
        self->request(node, 10s, hello_atom::value, node_protocol_version, s.p.flow,
                      s.p.from_node)
          .then(
            [=](uint32_t, const std::string& name) {
              auto& s = self->state;
              if (epoch != s.epoch)
                return;
              if (name != s.p.to_node)
                return lost(self, s.p.host + ":" + std::to_string(s.p.port)
                                    + " answers as node '" + name + "', not '" + s.p.to_node
                                    + "'");
              s.connecting = false;
              s.peer = node;
              self->monitor(node);
              s.backoff = 100ms;
              if (s.st.errors > 0)
                ++s.reconnects;
              s.st.state = "connected";
              spdlog::info("link {}: connected to {}:{}; {} batch(es) to forward",
                           peer_name(s), s.p.host, s.p.port, s.buf->size());
              pump(self);
            },
            [=](caf::error& err) {
              if (epoch == self->state.epoch)
                lost(self, "handshake refused: " + caf::to_string(err));
            });
      },
      [=](caf::error& err) {
        auto& s = self->state;
        if (epoch != s.epoch)
          return;
        // The peer's TLS layer hangs up on a certificate its CA did not sign.
        if (s.p.tls && err == caf::sec::disconnect_during_handshake)
          lost(self, "TLS handshake refused (are both certificates signed by the same CA?)");
        else
          lost(self, caf::to_string(err));
      });
}

/// Takes blocked batches while there is room.
void admit(link_actor* self) {
  auto& s = self->state;
  while (!s.blocked.empty() && s.buf->size() < s.p.max_batches) {
    auto& w = s.blocked.front();
    if (auto ok = s.buf->append(w.blob); !ok)
      w.rp.deliver(caf::make_error(caf::sec::runtime_error, ok.err().message));
    else
      w.rp.deliver(w.records);
    s.blocked.pop_front();
  }
}

void pump(link_actor* self) {
  auto& s = self->state;
  if (!s.peer || s.in_flight >= window)
    return;
  auto entries = s.buf->read(s.next, window - s.in_flight);
  if (!entries) {
    if (s.limiter.allow())
      spdlog::error("link {}: cannot read its spool: {}", peer_name(s), entries.err().message);
    return;
  }
  for (auto& e : *entries) {
    s.next = e.seq + 1;
    ++s.in_flight;
    auto epoch = s.epoch;
    auto seq = e.seq;
    auto sent = std::chrono::steady_clock::now();
    self->request(s.peer, deliver_timeout, deliver_atom::value, s.id, s.p.actor, seq,
                  std::move(e.data))
      .then(
        [=](uint64_t) {
          auto& s = self->state;
          if (auto ok = s.buf->erase({seq}); !ok && s.limiter.allow())
            spdlog::error("link {}: cannot erase from its spool: {}", peer_name(s),
                          ok.err().message);
          if (epoch != s.epoch)
            return;
          ++s.st.out;
          --s.in_flight;
          double us = std::chrono::duration<double, std::micro>(
                        std::chrono::steady_clock::now() - sent).count();
          s.rtt_us = s.rtt_us == 0 ? us : 0.9 * s.rtt_us + 0.1 * us;
          admit(self);
          pump(self);
        },
        [=](caf::error& err) {
          if (epoch == self->state.epoch)
            lost(self, caf::to_string(err));
        });
  }
}

caf::behavior link(link_actor* self, link_params p, spool buf, std::string id) {
  auto& s = self->state;
  s.p = std::move(p);
  s.buf.emplace(std::move(buf));
  s.id = std::move(id);
  s.st.name = "link:" + peer_name(s);
  s.st.kind = "link";
  s.st.state = "connecting";
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& s = self->state;
    if (msg.source == s.peer)
      lost(self, "node " + s.p.to_node + " went away: " + caf::to_string(msg.reason));
  });
  self->send(self, connect_atom::value);
  return {
    [=](connect_atom) { connect(self); },
    [=](const record_batch& batch) -> caf::result<uint64_t> {
      auto& s = self->state;
      auto n = static_cast<uint64_t>(batch.records.size());
      std::string blob;
      encode(batch, blob);
      ++s.st.in; // batches, like out
      if (s.buf->size() >= s.p.max_batches) {
        if (!s.p.drop_oldest) { // the producer waits until the peer takes some
          auto rp = self->make_response_promise();
          s.blocked.push_back({std::move(blob), n, rp});
          return caf::delegated<uint64_t>{};
        }
        if (auto head = s.buf->read(0, 1); head && !head->empty()) {
          (void)s.buf->erase({head->front().seq});
          ++s.dropped;
          if (s.drop_limiter.allow())
            spdlog::warn("link {}: buffer full ({} batches), dropped the oldest ({} so far)",
                         peer_name(s), s.p.max_batches, s.dropped);
        }
      }
      if (auto ok = s.buf->append(blob); !ok) {
        ++s.st.errors;
        s.st.last_error = ok.err().message;
        return caf::make_error(caf::sec::runtime_error, ok.err().message);
      }
      pump(self);
      return n;
    },
    [=](query_atom, const scan_request& q) -> caf::result<record_batch> {
      auto& s = self->state;
      if (!s.peer)
        return caf::make_error(caf::sec::runtime_error,
                               "node " + s.p.to_node + " is unreachable");
      return self->delegate(caf::actor_cast<node_actor>(s.peer), query_atom::value, s.p.actor, q);
    },
    [=](streams_atom) -> caf::result<std::vector<stream_info>> {
      auto& s = self->state;
      if (!s.peer)
        return caf::make_error(caf::sec::runtime_error,
                               "node " + s.p.to_node + " is unreachable");
      return self->delegate(caf::actor_cast<node_actor>(s.peer), streams_atom::value, s.p.actor);
    },
    [=](model_atom, const std::string& have)
      -> caf::result<std::string, std::string, std::string> {
      auto& s = self->state;
      if (!s.peer)
        return caf::make_error(caf::sec::runtime_error,
                               "node " + s.p.to_node + " is unreachable");
      return self->delegate(caf::actor_cast<node_actor>(s.peer), model_atom::value, s.p.actor,
                            have);
    },
    [=](status_atom) -> actor_status {
      auto& s = self->state;
      auto st = s.st;
      st.queue = s.buf->size() + s.blocked.size();
      st.details["peer"] = s.p.to_node;
      st.details["address"] = s.p.host + ":" + std::to_string(s.p.port);
      st.details["actor"] = s.p.actor;
      st.details["backlog"] = std::to_string(st.queue);
      st.details["rtt_us"] = std::to_string(static_cast<int64_t>(s.rtt_us));
      st.details["dropped"] = std::to_string(s.dropped);
      st.details["reconnects"] = std::to_string(s.reconnects);
      return st;
    },
  };
}

std::string new_link_id() {
  std::random_device rd;
  std::mt19937_64 gen{(uint64_t{rd()} << 32) ^ rd()};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(gen()));
  return buf;
}

} // namespace

expected<caf::actor> spawn_link(caf::actor_system& sys, link_params p) {
  auto buf = spool::open(p.dir, durability::process);
  if (!buf)
    return make_error(ec::io_error, "link to " + p.to_node + "/" + p.actor + ": "
                                      + buf.err().message);
  // The id lives with the spool: a new spool (a wiped data directory) is a new link, whose
  // sequence numbers the peer must not take for ones it has seen.
  auto id = buf->get_meta("link_id");
  if (!id) {
    id = new_link_id();
    if (auto ok = buf->put_meta("link_id", *id); !ok)
      return ok.err();
  }
  // Detached: LMDB writes block.
  return sys.spawn<caf::detached>(link, std::move(p), std::move(*buf), std::move(*id));
}

} // namespace fabrik
