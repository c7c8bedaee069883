#include "actors/node.hpp"

#include "actors/actors.hpp"
#include "actors/delivery.hpp"
#include "actors/emitter.hpp"
#include "actors/link.hpp"
#include "core/log.hpp"
#include "core/spool.hpp"
#include "flows/nodes.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/openssl/remote_actor.hpp>

#include <deque>
#include <set>

namespace fabrik {
namespace {

/// One delivery (a group of batches) from a link: acknowledged once the actor took them all.
struct group_wait {
  size_t pending = 0;
  uint64_t batches = 0;
  caf::actor link;
  uint64_t delivery = 0;
  /// Tells the link the delivery was taken, or why it was refused (then none was).
  void acknowledge(const std::string& refused = {}) const {
    caf::anon_send(link, delivered_atom::value, delivery, refused.empty() ? batches : 0, refused);
  }
};
using group_ptr = std::shared_ptr<group_wait>;

/// What arrived over one link (one remote producer to one actor here). `done` is the
/// highest seq such that it and everything forwarded before it was taken by the actor; it
/// is kept on disk, so a resend after a reconnect or a restart of this node is answered
/// without a second delivery.
struct inbox {
  uint64_t done = 0;
  std::deque<uint64_t> order; ///< forwarded and not yet covered by `done`, in order
  std::set<uint64_t> finished; ///< taken, but behind one that is not
  std::map<uint64_t, std::vector<group_ptr>> waiting; ///< by seq: the deliveries it is in
};

struct node_state {
  static inline const char* name = "node";
  std::string flow, node;
  node_runtime::local_fn local;
  node_runtime::all_fn all;
  node_runtime::all_fn links;
  std::optional<spool> marks; ///< `done` per link id, in the spool's side table
  std::map<std::string, inbox> inboxes;
  std::set<std::string> unmarked; ///< links whose `done` moved since the last flush
  std::vector<group_ptr> ready; ///< deliveries taken, answered at the next flush
  bool flush_queued = false;
  uint64_t delivered = 0, duplicates = 0, undecodable = 0;
  bool draining = false;
  std::vector<caf::response_promise> drained; ///< answered once nothing is in flight
  log_limiter limiter;
};

using node_pointer = caf::stateful_actor<node_state>*;

/// To itself: record what the actors took and answer the links.
using flush_atom = caf::atom_constant<caf::atom("flush")>;

inbox& inbox_of(node_state& s, const std::string& link) {
  auto [it, fresh] = s.inboxes.try_emplace(link);
  if (fresh)
    if (auto v = s.marks->get_meta(link))
      it->second.done = std::stoull(*v);
  return it->second;
}

/// Answers a pending drain once no forwarded batch waits for its actor.
void check_drained(node_state& s) {
  if (!s.draining || !s.ready.empty())
    return;
  for (auto& [link, in] : s.inboxes)
    if (!in.waiting.empty())
      return;
  for (auto& rp : s.drained)
    rp.deliver(true);
  s.drained.clear();
}

/// Records `done` of the links that moved, in one transaction, then answers the
/// deliveries taken meanwhile (one transaction per burst, not per batch).
void flush(node_pointer self) {
  auto& s = self->state;
  s.flush_queued = false;
  std::vector<std::pair<std::string, std::string>> marks;
  for (auto& link : s.unmarked)
    marks.emplace_back(link, std::to_string(s.inboxes[link].done));
  s.unmarked.clear();
  if (!marks.empty())
    if (auto ok = s.marks->put_meta(marks); !ok && s.limiter.allow())
      spdlog::error("node {}: cannot record deliveries: {}", s.node, ok.err().message);
  for (auto& g : s.ready)
    g->acknowledge();
  s.ready.clear();
  check_drained(s);
}

void queue_flush(node_pointer self) {
  auto& s = self->state;
  if (!s.flush_queued) {
    s.flush_queued = true;
    self->send(self, flush_atom::value);
  }
}

void finish(node_pointer self, const std::string& link, uint64_t seq) {
  auto& s = self->state;
  auto& in = inbox_of(s, link);
  in.finished.insert(seq);
  auto before = in.done;
  while (!in.order.empty() && in.finished.count(in.order.front())) {
    in.done = std::max(in.done, in.order.front());
    in.finished.erase(in.order.front());
    in.order.pop_front();
  }
  if (in.done != before)
    s.unmarked.insert(link);
  if (auto w = in.waiting.find(seq); w != in.waiting.end()) {
    for (auto& g : w->second)
      if (--g->pending == 0)
        s.ready.push_back(g);
    in.waiting.erase(w);
  }
  queue_flush(self);
}

/// Hands a batch to the local actor; a refusal (say, a full disk) is retried after a
/// pause, so `done` never passes a batch the actor did not take.
void forward(node_pointer self, std::string link, std::string actor, uint64_t seq,
             caf::message batch) {
  auto& s = self->state;
  auto target = s.local(actor);
  auto retry = [=](const std::string& why) {
    auto& s = self->state;
    if (s.limiter.allow())
      spdlog::warn("node {}: {} did not take a batch ({}), retrying in 1 s", s.node, actor, why);
    self->delayed_send(self, std::chrono::seconds{1},
                       emitter::retry_fn{[=] { forward(self, link, actor, seq, batch); }});
  };
  if (!target)
    return retry("not running");
  self->request(target, caf::infinite, batch)
    .then([=](uint64_t) { finish(self, link, seq); },
          [=](caf::error& err) { retry(caf::to_string(err)); });
}

/// Takes one delivery: each batch not seen before goes to the actor (tagged with its
/// origin, see record_batch::origin); the acknowledgement waits for all of them.
void take_group(node_pointer self, const std::string& link, const std::string& actor,
                const std::string& group, uint64_t delivery) {
  auto& s = self->state;
  auto g = std::make_shared<group_wait>();
  g->link = caf::actor_cast<caf::actor>(self->current_sender());
  g->delivery = delivery;
  if (s.draining) // the link keeps it and resends to the next run of this node
    return g->acknowledge("node " + s.node + " is stopping");
  auto parts = decode_group(group);
  if (!parts) {
    // Resending cannot mend it: say so, count it, and let the link move on.
    ++s.undecodable;
    spdlog::error("node {}: a delivery for {} cannot be decoded ({}); dropped", s.node, actor,
                  parts.err().message);
    return g->acknowledge();
  }
  g->batches = parts->size();
  auto& in = inbox_of(s, link);
  for (auto& part : *parts) {
    auto seq = part.seq;
    if (seq <= in.done || in.finished.count(seq)) {
      ++s.duplicates;
      continue;
    }
    ++g->pending;
    if (auto w = in.waiting.find(seq); w != in.waiting.end()) { // a resend while in flight
      ++s.duplicates;
      w->second.push_back(g);
      continue;
    }
    in.order.push_back(seq);
    in.waiting[seq].push_back(g);
    auto batch = decode_batch(part.batch);
    if (!batch) {
      ++s.undecodable;
      spdlog::error("node {}: a batch for {} cannot be decoded ({}); dropped", s.node, actor,
                    batch.err().message);
      finish(self, link, seq);
      continue;
    }
    ++s.delivered;
    batch->origin = link + ":" + std::to_string(seq);
    forward(self, link, actor, seq, caf::make_message(std::move(*batch)));
  }
  if (g->pending == 0)
    g->acknowledge();
}

/// Asks every actor and link of this node for its status; answers once all did (or 2 s).
void report(node_pointer self, caf::response_promise rp) {
  auto& s = self->state;
  auto actors = s.all();
  auto links = s.links();
  struct gather {
    std::vector<actor_status> actors, links;
    size_t pending = 0;
    caf::response_promise rp;
  };
  auto g = std::make_shared<gather>();
  g->pending = actors.size() + links.size();
  g->rp = std::move(rp);
  auto done = [g] {
    if (--g->pending == 0)
      g->rp.deliver(std::move(g->actors), std::move(g->links));
  };
  if (g->pending == 0)
    return g->rp.deliver(std::vector<actor_status>{}, std::vector<actor_status>{});
  // An actor or link that does not answer is shown as such, as the engine's own status list
  // does (a busy detached actor, say; a link whose spool write hangs on a full disk).
  auto ask = [&](const node_runtime::named_actor& a, bool link) {
    actor_status silent;
    silent.name = a.name;
    silent.kind = a.kind;
    silent.details = a.details;
    silent.state = "unresponsive";
    silent.last_error = "no status within 2 s";
    self
      ->request(caf::actor_cast<status_client>(a.handle), std::chrono::seconds{2},
                status_atom::value)
      .then(
        [g, done, link](actor_status& st) {
          (link ? g->links : g->actors).push_back(std::move(st));
          done();
        },
        [g, done, link, silent](caf::error&) mutable {
          (link ? g->links : g->actors).push_back(std::move(silent));
          done();
        });
  };
  for (auto& a : actors)
    ask(a, false);
  for (auto& l : links)
    ask(l, true);
}

caf::behavior node_actor_impl(node_pointer self, std::string flow, std::string node,
                              node_runtime::local_fn local, node_runtime::all_fn all,
                              node_runtime::all_fn links, spool marks) {
  auto& s = self->state;
  s.flow = std::move(flow);
  s.node = std::move(node);
  s.local = std::move(local);
  s.all = std::move(all);
  s.links = std::move(links);
  s.marks.emplace(std::move(marks));
  auto unknown = [self](const std::string& actor) {
    return caf::make_error(caf::sec::runtime_error,
                           "no actor '" + actor + "' runs on node " + self->state.node);
  };
  return {
    [=](hello_atom, uint32_t version, const std::string& flow,
        const std::string& from) -> caf::result<uint32_t, std::string> {
      auto& s = self->state;
      if (version != node_protocol_version) {
        spdlog::warn("node {}: refused node {}: it speaks node protocol version {}, this "
                     "node version {}",
                     s.node, from, version, node_protocol_version);
        return caf::make_error(caf::sec::runtime_error,
                               "node protocol version " + std::to_string(version) + " at " + from
                                 + ", version " + std::to_string(node_protocol_version) + " at "
                                 + s.node);
      }
      if (flow != s.flow) {
        spdlog::warn("node {}: refused node {}: it runs flow '{}', this node '{}'", s.node, from,
                     flow, s.flow);
        return caf::make_error(caf::sec::runtime_error, "node " + s.node + " runs flow '" + s.flow
                                                          + "', not '" + flow + "'");
      }
      spdlog::info("node {}: node {} attached", s.node, from);
      return {node_protocol_version, s.node};
    },
    [](ping_atom) { return true; },
    [=](deliver_atom, const std::string& link, const std::string& actor, const std::string& group,
        uint64_t delivery) { take_group(self, link, actor, group, delivery); },
    [=](query_atom, const std::string& actor, const scan_request& q) -> caf::result<record_batch> {
      auto target = self->state.local(actor);
      if (!target)
        return unknown(actor);
      return self->delegate(caf::actor_cast<storage_actor>(target), query_atom::value, q);
    },
    [=](streams_atom, const std::string& actor) -> caf::result<std::vector<stream_info>> {
      auto target = self->state.local(actor);
      if (!target)
        return unknown(actor);
      return self->delegate(caf::actor_cast<storage_actor>(target), streams_atom::value);
    },
    [=](status_atom, const std::string& actor) -> caf::result<actor_status> {
      auto target = self->state.local(actor);
      if (!target)
        return unknown(actor);
      return self->delegate(caf::actor_cast<status_client>(target), status_atom::value);
    },
    [=](model_atom, const std::string& actor,
        const std::string& have) -> caf::result<std::string, std::string, std::string> {
      auto target = self->state.local(actor);
      if (!target)
        return unknown(actor);
      auto rp = self->make_response_promise();
      self->request(target, std::chrono::minutes{1}, model_atom::value, have)
        .then(
          [rp](std::string& id, std::string& zip, std::string& model) mutable {
            rp.deliver(std::move(id), std::move(zip), std::move(model));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return caf::delegated<std::string, std::string, std::string>{};
    },
    [=](status_atom) -> caf::result<std::vector<actor_status>, std::vector<actor_status>> {
      auto rp = self->make_response_promise();
      report(self, rp);
      return caf::delegated<std::vector<actor_status>, std::vector<actor_status>>{};
    },
    [=](drain_atom) -> caf::result<bool> {
      auto& s = self->state;
      s.draining = true;
      auto rp = self->make_response_promise();
      s.drained.push_back(rp);
      check_drained(s);
      return caf::delegated<bool>{};
    },
    [=](flush_atom) { flush(self); },
    [](emitter::retry_fn& r) { r.fn(); },
  };
}

} // namespace

node_runtime::node_runtime(caf::actor_system& sys, const flow& f, std::string name,
                           std::filesystem::path data_dir)
  : sys_(sys), f_(f), name_(std::move(name)), data_dir_(std::move(data_dir)) {}

node_runtime::~node_runtime() { stop(); }

expected<std::unique_ptr<node_runtime>> node_runtime::start(caf::actor_system& sys, const flow& f,
                                                            std::string name,
                                                            std::filesystem::path data_dir,
                                                            local_fn local, all_fn all) {
  auto* n = find_node(f, name);
  if (!n) {
    std::string names;
    for (auto& x : node_names(f))
      names += (names.empty() ? "" : ", ") + x;
    return make_error(
      ec::invalid_argument,
      names.empty() ? "flow " + f.name + " has no 'nodes' section; --node " + name + " needs one"
                    : "flow " + f.name + " has no node '" + name + "'; nodes: " + names);
  }
  auto addr = parse_listen(n->str("listen"));
  if (!addr)
    return addr.err();
  auto marks = spool::open(data_dir / "links" / "in", durability::process, 16 << 20);
  if (!marks)
    return marks.err();
  std::unique_ptr<node_runtime> rt{new node_runtime(sys, f, name, data_dir)};
  // Detached: it writes delivery marks to LMDB.
  auto* raw = rt.get();
  rt->node_ = sys.spawn(
    node_actor_impl, f.name, name, std::move(local), std::move(all), [raw] { return raw->links(); },
    std::move(*marks));
  auto tls = tls_of(f, *n);
  auto port = tls ? caf::openssl::publish(rt->node_, static_cast<uint16_t>(addr->second),
                                          addr->first.c_str(), true)
                  : caf::io::publish(rt->node_, static_cast<uint16_t>(addr->second),
                                     addr->first.c_str(), true);
  if (!port) {
    caf::anon_send_exit(rt->node_, caf::exit_reason::user_shutdown);
    return make_error(ec::unavailable, "node " + name + ": cannot listen on " + n->str("listen")
                                         + ": " + sys.render(port.error()));
  }
  spdlog::info("node {}: listening on {} for the other nodes{}", name, n->str("listen"),
               tls ? " (TLS: peers need a certificate of " + tls->ca.string() + ")" : "");
  return rt;
}

expected<caf::actor> node_runtime::remote(const actor_decl& actor) {
  std::lock_guard lock{mutex_};
  if (auto it = links_.find(actor.name); it != links_.end())
    return it->second.handle;
  auto* peer = find_node(f_, actor.node);
  auto* self = find_node(f_, name_);
  if (!peer || !self)
    return make_error(ec::internal, "actor " + actor.name + " is on unknown node " + actor.node);
  auto addr = peer_address(*peer);
  if (!addr)
    return addr.err();
  link_params p;
  p.flow = f_.name;
  p.from_node = name_;
  p.to_node = actor.node;
  p.actor = actor.name;
  p.host = addr->first;
  p.port = static_cast<uint16_t>(addr->second);
  p.dir = data_dir_ / "links" / "out" / actor.node / actor.name;
  p.max_batches = static_cast<uint64_t>(self->integer("link_buffer"));
  p.drop_oldest = self->str("when_full") == "drop_oldest";
  p.reconnect_max = std::chrono::nanoseconds{self->integer("reconnect_max")};
  p.peer_timeout = std::chrono::nanoseconds{self->integer("peer_timeout")};
  p.tls = tls_of(f_, *self).has_value();
  auto link = spawn_link(sys_, std::move(p));
  if (!link)
    return link.err();
  links_.emplace(actor.name, named_actor{"link:" + actor.node + "/" + actor.name,
                                         "link",
                                         *link,
                                         {{"peer", actor.node}, {"actor", actor.name}}});
  return *link;
}

std::vector<node_runtime::node_report> node_runtime::report(std::chrono::milliseconds timeout) {
  std::vector<node_report> out;
  caf::scoped_actor self{sys_};
  for (auto& name : node_names(f_)) {
    auto& c = *find_node(f_, name);
    node_report r;
    r.name = name;
    r.listen = c.str("listen");
    r.http = c.has("http") ? c.str("http") : "";
    r.here = name == name_;
    auto addr = peer_address(c);
    auto host = addr ? addr->first : "";
    auto port = static_cast<uint16_t>(addr ? addr->second : 0);
    r.address = host + ":" + std::to_string(port);
    caf::actor peer;
    {
      std::lock_guard lock{mutex_};
      peer = r.here ? node_ : peers_[name];
    }
    if (!peer) {
      auto got = tls_of(f_, c) ? caf::openssl::remote_actor(sys_, host, port)
                               : sys_.middleman().remote_actor(host, port);
      if (!got) {
        r.error = describe_peer_error(got.error(), host, port);
        out.push_back(std::move(r));
        continue;
      }
      peer = *got;
      std::lock_guard lock{mutex_};
      peers_[name] = peer;
    }
    self->request(peer, timeout, status_atom::value)
      .receive(
        [&](std::vector<actor_status>& actors, std::vector<actor_status>& links) {
          r.reachable = true;
          r.actors = std::move(actors);
          r.links = std::move(links);
        },
        [&](caf::error& err) {
          r.error = describe_peer_error(err, host, port);
          std::lock_guard lock{mutex_};
          peers_.erase(name); // connect again next time
        });
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<node_runtime::named_actor> node_runtime::links() const {
  std::lock_guard lock{mutex_};
  std::vector<named_actor> out;
  for (auto& [name, l] : links_)
    out.push_back(l);
  return out;
}

void node_runtime::drain(std::chrono::seconds timeout) {
  caf::actor node;
  {
    std::lock_guard lock{mutex_};
    node = node_;
  }
  if (!node)
    return;
  caf::scoped_actor self{sys_};
  self->request(node, timeout, drain_atom::value)
    .receive([](bool) {},
             [&](caf::error& err) {
               spdlog::warn("node {}: deliveries still in flight at the stop ({}); their "
                            "links resend them",
                            name_, caf::to_string(err));
             });
}

void node_runtime::stop() {
  std::lock_guard lock{mutex_};
  for (auto& [name, l] : links_)
    caf::anon_send_exit(l.handle, caf::exit_reason::user_shutdown);
  links_.clear();
  peers_.clear();
  if (node_)
    caf::anon_send_exit(node_, caf::exit_reason::user_shutdown);
  node_ = nullptr;
}

} // namespace fabrik
