#include "actors/link.hpp"

#include "actors/delivery.hpp"
#include "core/log.hpp"
#include "core/spool.hpp"
#include "flows/nodes.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/manager.hpp>

#include <deque>
#include <random>

namespace fabrik {
namespace {

using namespace std::chrono_literals;

// A link is two actors on their own threads sharing one spool: the intake takes batches
// from local producers and spools them (answering once they are on disk), the sender
// forwards what is spooled to the peer and erases what it acknowledged. Neither waits for
// the other: a producer is answered while deliveries are in flight.

/// Deliveries on their way to the peer at once: enough to hide the round trip.
constexpr size_t window = 4;
/// A delivery takes the spooled batches there are, up to this many or this many bytes.
constexpr size_t group_batches = 64;
constexpr size_t group_bytes = 256 << 10;
/// While the peer is connected, the spool runs at most this many batches ahead of it: a
/// producer faster than the wire waits instead of growing the spool. Spooling far ahead
/// buys nothing (the wire does not get faster) and costs: a spool that grew to hundreds of
/// MiB and drained keeps a long free list in LMDB, and every later write pays for it (five
/// times slower appends, bench/remote). While the peer is away, `link_buffer` is the bound.
constexpr uint64_t connected_ahead = 1024;

/// The batches the spool may hold now.
uint64_t spool_limit(const link_params& p, bool connected) {
  return connected ? std::min(p.max_batches, connected_ahead) : p.max_batches;
}

/// A delivery unacknowledged this long counts as a lost link (the link reconnects and
/// resends); checked at each probe.
constexpr auto deliver_timeout = 60s;

/// To the sender: time to probe the peer of this epoch (see probe()).
using probe_atom = caf::atom_constant<caf::atom("probe")>;

/// To the intake: spool what arrived since the last flush. Batches that came in one burst
/// share a transaction, and their producers are answered together.
using flush_atom = caf::atom_constant<caf::atom("flush")>;

std::string peer_name(const link_params& p) { return p.to_node + "/" + p.actor; }

// -- the sender: spool -> peer --------------------------------------------------------

struct sender_state {
  static inline const char* name = "link sender";
  link_params p;
  std::shared_ptr<spool> buf;
  std::string id; ///< this spool's identity: the peer deduplicates per link id
  caf::actor intake;
  bool intake_waits = false; ///< a full spool holds a producer back: say when there is room
  caf::actor peer; ///< the peer's node actor while connected
  uint64_t epoch = 0; ///< bumped at every loss: replies of an older epoch change no counter
  uint64_t next = 0; ///< the next spool seq to send in this epoch
  /// Deliveries sent in this epoch and not yet acknowledged, by number: their seqs and
  /// when they left.
  struct in_flight_delivery {
    std::vector<uint64_t> seqs;
    std::chrono::steady_clock::time_point sent;
  };
  std::map<uint64_t, in_flight_delivery> in_flight;
  uint64_t last_delivery = 0; ///< numbers are never reused: a late acknowledgement is known
  size_t group_hint = 0; ///< bytes to reserve for the next delivery (the last one's size)
  bool connecting = false;
  std::chrono::nanoseconds backoff = 100ms;
  actor_status st;
  uint64_t reconnects = 0;
  double rtt_us = 0; ///< smoothed round trip of a delivery
  log_limiter limiter;
};

using sender_actor = caf::stateful_actor<sender_state>;

void pump(sender_actor* self);

void lost(sender_actor* self, const std::string& why) {
  auto& s = self->state;
  if (s.peer) {
    self->demonitor(s.peer);
    s.peer = nullptr;
    self->send(s.intake, connect_atom::value, false); // the spool may fill up to link_buffer
    s.intake_waits = false;
    spdlog::warn("link {}: lost ({}); {} batch(es) kept, reconnecting", peer_name(s.p), why,
                 s.buf->size());
  } else if (s.limiter.allow()) {
    spdlog::warn("link {}: node {} at {}:{} unreachable ({}); {} batch(es) kept, next try in "
                 "{} ms",
                 peer_name(s.p), s.p.to_node, s.p.host, s.p.port, why, s.buf->size(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(s.backoff).count());
  }
  s.st.state = "unreachable";
  s.st.last_error = why;
  ++s.st.errors;
  ++s.epoch;
  s.in_flight.clear(); // resent: an acknowledgement that still comes changes nothing
  s.next = 0;
  s.connecting = false;
  self->delayed_send(self, s.backoff, connect_atom::value);
  s.backoff = std::min(s.backoff * 2, s.p.reconnect_max);
}

/// While connected, asks the peer every third of `peer_timeout` whether it is there. A cut
/// that closes no connection (a cable pulled between two switches, a route that drops
/// everything) answers nothing: without a probe an idle link would show connected forever,
/// and a busy one only after its delivery timeout.
void probe(sender_actor* self, uint64_t epoch) {
  auto& s = self->state;
  if (epoch != s.epoch || !s.peer)
    return;
  self->request(s.peer, s.p.peer_timeout, ping_atom::value)
    .then(
      [=](bool) {
        auto& s = self->state;
        if (epoch != s.epoch)
          return;
        if (!s.in_flight.empty()
            && std::chrono::steady_clock::now() - s.in_flight.begin()->second.sent
                 > deliver_timeout)
          return lost(self, fmt::format("no acknowledgement of a delivery from {}:{} in {} s",
                                        s.p.host, s.p.port, deliver_timeout.count()));
        self->delayed_send(self, s.p.peer_timeout / 3, probe_atom::value, epoch);
      },
      [=](caf::error& err) {
        auto& s = self->state;
        if (epoch != s.epoch)
          return;
        if (err == caf::sec::request_timeout)
          lost(self,
               fmt::format("no answer from {}:{} for {:g} s (peer_timeout)", s.p.host, s.p.port,
                           std::chrono::duration<double>(s.p.peer_timeout).count()));
        else
          lost(self, describe_peer_error(err, s.p.host, s.p.port));
      });
}

void connect(sender_actor* self) {
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
        self->request(node, 10s, hello_atom::value, node_protocol_version, s.p.flow, s.p.from_node)
          .then(
            [=](uint32_t, const std::string& name) {
              auto& s = self->state;
              if (epoch != s.epoch)
                return;
              if (name != s.p.to_node)
                return lost(self, s.p.host + ":" + std::to_string(s.p.port) + " answers as node '"
                                    + name + "', not '" + s.p.to_node + "'");
              s.connecting = false;
              s.peer = node;
              self->send(s.intake, connect_atom::value, true);
              self->monitor(node);
              s.backoff = 100ms;
              if (s.st.errors > 0)
                ++s.reconnects;
              s.st.state = "connected";
              s.st.last_error.clear(); // the log keeps it; the page shows what is wrong now
              spdlog::info("link {}: connected to {}:{}; {} batch(es) to forward", peer_name(s.p),
                           s.p.host, s.p.port, s.buf->size());
              pump(self);
              probe(self, epoch);
            },
            [=](caf::error& err) {
              auto& s = self->state;
              if (epoch != s.epoch)
                return;
              if (err == caf::sec::request_timeout) // a connection that carries nothing
                lost(self, describe_peer_error(err, s.p.host, s.p.port));
              else
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
          lost(self, describe_peer_error(err, s.p.host, s.p.port));
      });
}

/// Sends what is spooled, in groups, while fewer than `window` deliveries are in flight.
void pump(sender_actor* self) {
  auto& s = self->state;
  while (s.peer && s.in_flight.size() < window) {
    // Sized like the last delivery: grown batch by batch, a delivery of 256 KiB was copied
    // twice over on the way and asked malloc for ever larger blocks.
    std::string group;
    std::vector<uint64_t> seqs;
    group.reserve(s.group_hint);
    seqs.reserve(group_batches);
    auto ok = s.buf->visit(s.next, group_batches, [&](uint64_t seq, std::string_view batch) {
      if (!seqs.empty() && group.size() + group_part_size(batch.size()) > group_bytes)
        return false;
      encode_group_part({seq, batch}, group);
      seqs.push_back(seq);
      return true;
    });
    if (!ok) {
      if (s.limiter.allow())
        spdlog::error("link {}: cannot read its spool: {}", peer_name(s.p), ok.err().message);
      return;
    }
    if (seqs.empty())
      return;
    s.next = seqs.back() + 1;
    s.group_hint = std::min(group.size() + group.size() / 4, group_bytes + group_bytes / 4);
    auto number = ++s.last_delivery;
    s.in_flight.emplace(number,
                        sender_state::in_flight_delivery{seqs, std::chrono::steady_clock::now()});
    self->send(s.peer, deliver_atom::value, s.id, s.p.actor, std::move(group), number);
  }
}

/// The peer took delivery `number` (`batches` of them), or refused it (`refused` says why).
void acknowledged(sender_actor* self, uint64_t number, const std::string& refused) {
  auto& s = self->state;
  auto it = s.in_flight.find(number);
  if (it == s.in_flight.end()) // of an epoch before a loss: resent since
    return;
  if (!refused.empty())
    return lost(self, "delivery refused: " + refused);
  auto d = std::move(it->second);
  s.in_flight.erase(it);
  s.st.out += d.seqs.size();
  double us =
    std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - d.sent).count();
  s.rtt_us = s.rtt_us == 0 ? us : 0.9 * s.rtt_us + 0.1 * us;
  // The next delivery first: the peer waits for it, the spool's cleanup does not wait.
  pump(self);
  if (auto ok = s.buf->erase(d.seqs); !ok && s.limiter.allow())
    spdlog::error("link {}: cannot erase from its spool: {}", peer_name(s.p), ok.err().message);
  if (std::exchange(s.intake_waits, false))
    self->send(s.intake, wake_atom::value); // room for the producer that waits
}

caf::error unreachable(const sender_state& s) {
  return caf::make_error(caf::sec::runtime_error, "node " + s.p.to_node + " is unreachable");
}

caf::behavior sender(sender_actor* self, link_params p, std::shared_ptr<spool> buf,
                     std::string id) {
  auto& s = self->state;
  s.p = std::move(p);
  s.buf = std::move(buf);
  s.id = std::move(id);
  s.st.state = "connecting";
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& s = self->state;
    if (msg.source == s.peer)
      lost(self, "node " + s.p.to_node + " went away: " + caf::to_string(msg.reason));
  });
  self->send(self, connect_atom::value);
  return {
    [=](connect_atom) { connect(self); },
    [=](probe_atom, uint64_t epoch) { probe(self, epoch); },
    [=](const caf::actor& intake) { self->state.intake = intake; },
    [=](tick_atom) { pump(self); },
    [=](delivered_atom, uint64_t number, uint64_t, const std::string& refused) {
      acknowledged(self, number, refused);
    },
    [=](wake_atom) { // the intake waits for room: now, or after the next acknowledgement
      auto& s = self->state;
      if (s.buf->size() < spool_limit(s.p, s.peer != nullptr))
        self->send(s.intake, wake_atom::value);
      else
        s.intake_waits = true;
    },
    // Queries, stream lists and models go to the peer while it is connected.
    [=](query_atom, const scan_request& q) -> caf::result<record_batch> {
      auto& s = self->state;
      if (!s.peer)
        return unreachable(s);
      return self->delegate(caf::actor_cast<node_actor>(s.peer), query_atom::value, s.p.actor, q);
    },
    [=](streams_atom) -> caf::result<std::vector<stream_info>> {
      auto& s = self->state;
      if (!s.peer)
        return unreachable(s);
      return self->delegate(caf::actor_cast<node_actor>(s.peer), streams_atom::value, s.p.actor);
    },
    [=](model_atom, const std::string& have) -> caf::result<std::string, std::string, std::string> {
      auto& s = self->state;
      if (!s.peer)
        return unreachable(s);
      return self->delegate(caf::actor_cast<node_actor>(s.peer), model_atom::value, s.p.actor,
                            have);
    },
    [=](status_atom) -> actor_status {
      auto& s = self->state;
      auto st = s.st;
      st.details["peer"] = s.p.to_node;
      st.details["address"] = s.p.host + ":" + std::to_string(s.p.port);
      st.details["actor"] = s.p.actor;
      st.details["rtt_us"] = std::to_string(static_cast<int64_t>(s.rtt_us));
      st.details["reconnects"] = std::to_string(s.reconnects);
      return st;
    },
  };
}

// -- the intake: producers -> spool ----------------------------------------------------

struct intake_state {
  static inline const char* name = "link";
  link_params p;
  std::shared_ptr<spool> buf;
  caf::actor sender;
  /// Batches taken and not yet answered: spooled together at the next flush, or waiting
  /// for room in a full spool (`block`), in arrival order.
  struct waiting {
    std::string blob;
    uint64_t records;
    std::string origin;
    caf::response_promise rp;
  };
  std::deque<waiting> pending;
  bool flush_queued = false;
  bool peer_up = false; ///< told by the sender: see spool_limit()
  origin_filter origins; ///< replays after a crash upstream are dropped by it
  uint64_t in = 0, dropped = 0, replays = 0, errors = 0;
  std::string last_error;
  log_limiter limiter, drop_limiter, replay_limiter; // apart: none hides another
};

using intake_actor = caf::stateful_actor<intake_state>;

/// Drops the oldest spooled batch to make room (`drop_oldest`); false if none is left.
bool drop_one(intake_state& s) {
  std::optional<uint64_t> head; // its seq only: no copy of the batch
  auto ok = s.buf->visit(0, 1, [&](uint64_t seq, std::string_view) {
    head = seq;
    return true;
  });
  if (!ok || !head)
    return false;
  (void)s.buf->erase({*head});
  ++s.dropped;
  if (s.drop_limiter.allow())
    spdlog::warn("link {}: buffer full ({} batches), dropped the oldest ({} so far)",
                 peer_name(s.p), s.p.max_batches, s.dropped);
  return true;
}

/// Spools the waiting batches there is room for, in one transaction, and answers their
/// producers. A replay of an origin spooled before is answered without spooling it again.
void admit(intake_actor* self) {
  auto& s = self->state;
  bool spooled = false;
  while (!s.pending.empty()) {
    auto held = s.buf->size();
    std::vector<intake_state::waiting> take;
    while (!s.pending.empty()) {
      auto& w = s.pending.front();
      if (s.origins.replay(w.origin)) {
        if (++s.replays, s.replay_limiter.allow())
          spdlog::info("link {}: dropped a batch it took before a restart (made again from "
                       "a delivery replayed after a crash; {} so far)",
                       peer_name(s.p), s.replays);
        w.rp.deliver(w.records);
        s.pending.pop_front();
        continue;
      }
      if (held + take.size() >= spool_limit(s.p, s.peer_up)) {
        // Only a full link_buffer drops (`drop_oldest`); a busy wire never does.
        bool full = held + take.size() >= s.p.max_batches;
        if (!full || !s.p.drop_oldest || !drop_one(s)) {
          // The producer waits until the peer takes some; the sender says when.
          self->send(s.sender, wake_atom::value);
          break;
        }
        --held;
      }
      s.origins.take(w.origin);
      take.push_back(std::move(w));
      s.pending.pop_front();
    }
    if (take.empty())
      break;
    std::vector<std::string_view> blobs;
    for (auto& w : take)
      blobs.push_back(w.blob);
    auto ok = s.buf->append(blobs, s.origins.pending_meta());
    if (ok) {
      spooled = true;
      s.origins.committed();
      for (auto& w : take)
        w.rp.deliver(w.records);
      continue;
    }
    ++s.errors;
    s.last_error = ok.err().message;
    if (s.limiter.allow())
      spdlog::error("link {}: cannot spool: {}", peer_name(s.p), ok.err().message);
    std::vector<std::string> refused;
    for (auto& w : take) {
      refused.push_back(w.origin);
      w.rp.deliver(caf::make_error(caf::sec::runtime_error, ok.err().message));
    }
    s.origins.refused(refused);
  }
  if (spooled)
    self->send(s.sender, tick_atom::value);
}

caf::behavior intake(intake_actor* self, link_params p, std::shared_ptr<spool> buf,
                     caf::actor sender) {
  auto& s = self->state;
  s.p = std::move(p);
  s.buf = std::move(buf);
  s.sender = sender;
  s.origins = origin_filter{[buf = s.buf](const std::string& upstream) -> uint64_t {
    auto v = buf->get_meta(origin_filter::key(upstream));
    return v ? std::strtoull(v->c_str(), nullptr, 10) : 0;
  }};
  self->link_to(sender); // one stops, both stop
  self->send(sender, caf::actor{self});
  return {
    [=](const record_batch& batch) -> caf::result<uint64_t> {
      auto& s = self->state;
      ++s.in; // batches, like out
      std::string blob;
      encode(batch, blob);
      auto rp = self->make_response_promise();
      s.pending.push_back({std::move(blob), batch.records.size(), batch.origin, rp});
      if (s.flush_queued)
        return caf::delegated<uint64_t>{};
      if (self->mailbox().empty()) { // nothing to wait for: no message to itself
        admit(self);
      } else { // behind what is in the mailbox already: those join this transaction
        s.flush_queued = true;
        self->send(self, flush_atom::value);
      }
      return caf::delegated<uint64_t>{};
    },
    [=](flush_atom) {
      self->state.flush_queued = false;
      admit(self);
    },
    [=](wake_atom) { admit(self); }, // the sender made room
    [=](connect_atom, bool up) {
      self->state.peer_up = up;
      admit(self);
    },
    // The sender holds the connection: it answers these.
    [=](query_atom, const scan_request& q) -> caf::result<record_batch> {
      self->delegate(self->state.sender, query_atom::value, q);
      return caf::delegated<record_batch>{};
    },
    [=](streams_atom) -> caf::result<std::vector<stream_info>> {
      self->delegate(self->state.sender, streams_atom::value);
      return caf::delegated<std::vector<stream_info>>{};
    },
    [=](model_atom, const std::string& have) -> caf::result<std::string, std::string, std::string> {
      self->delegate(self->state.sender, model_atom::value, have);
      return caf::delegated<std::string, std::string, std::string>{};
    },
    [=](status_atom) -> caf::result<actor_status> {
      auto rp = self->make_response_promise<actor_status>();
      self->request(self->state.sender, 2s, status_atom::value)
        .then(
          [=](actor_status& st) mutable {
            auto& s = self->state;
            st.name = "link:" + peer_name(s.p);
            st.kind = "link";
            st.in = s.in;
            st.errors += s.errors;
            if (!s.last_error.empty() && st.last_error.empty())
              st.last_error = s.last_error;
            st.queue = s.buf->size() + s.pending.size();
            st.details["backlog"] = std::to_string(st.queue);
            st.details["dropped"] = std::to_string(s.dropped);
            st.details["replays"] = std::to_string(s.replays);
            rp.deliver(std::move(st));
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
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

std::string describe_peer_error(const caf::error& err, const std::string& host, uint16_t port) {
  auto at = host + ":" + std::to_string(port);
  if (err.category() == caf::atom("system"))
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::cannot_connect_to_node:
        return "cannot connect to " + at + " (is the node running there?)";
      case caf::sec::request_timeout:
        return "no answer from " + at + " in time";
      case caf::sec::disconnect_during_handshake:
        return "the connection to " + at + " closed during the handshake";
      case caf::sec::request_receiver_down:
        return "the node at " + at + " went away";
      default:
        break;
    }
  return caf::to_string(err);
}

expected<caf::actor> spawn_link(caf::actor_system& sys, link_params p) {
  auto buf = spool::open(p.dir, durability::process);
  if (!buf)
    return make_error(ec::io_error,
                      "link to " + p.to_node + "/" + p.actor + ": " + buf.err().message);
  // The id lives with the spool: a new spool (a wiped data directory) is a new link, whose
  // sequence numbers the peer must not take for ones it has seen.
  auto id = buf->get_meta("link_id");
  if (!id) {
    id = new_link_id();
    if (auto ok = buf->put_meta("link_id", *id); !ok)
      return ok.err();
  }
  auto shared = std::make_shared<spool>(std::move(*buf));
  auto out = sys.spawn(sender, p, shared, std::move(*id));
  return sys.spawn(intake, std::move(p), std::move(shared), std::move(out));
}

} // namespace fabrik
