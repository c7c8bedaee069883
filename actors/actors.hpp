#pragma once
// The engine's actor interfaces: the whole message protocol on one page.
// Drivers implement these interfaces and add no message types of their own, which is
// what lets a wire cross from one node to another with no code change.

#include "core/record.hpp"
#include "core/status.hpp"
#include "core/store.hpp"

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fabrik {

/// A range query against a storage actor (what `fabrik store` and training ask).
struct scan_request {
  std::string stream;
  int64_t from = INT64_MIN;
  int64_t to = INT64_MAX;
  uint64_t limit = UINT64_MAX;
  bool newest_first = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scan_request& x) {
  return f(caf::meta::type_name("fabrik::scan_request"), x.stream, x.from, x.to, x.limit,
           x.newest_first);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stream_info& x) {
  return f(caf::meta::type_name("fabrik::stream_info"), x.name, x.count, x.first, x.last, x.bytes);
}

// Records cross nodes in their own versioned encoding (docs/records.md), so the wire
// format and the storage format are one and the same.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, record_batch& x) {
  std::string blob;
  if constexpr (Inspector::reads_state) {
    encode(x, blob);
    return f(caf::meta::type_name("fabrik::record_batch"), blob);
  } else {
    auto fill = [&]() -> caf::error {
      auto decoded = decode_batch(blob);
      if (!decoded)
        return caf::make_error(caf::sec::invalid_argument, decoded.err().what());
      x = std::move(*decoded);
      return caf::none;
    };
    return f(caf::meta::type_name("fabrik::record_batch"), blob, caf::meta::load_callback(fill));
  }
}

/// The version of the node-to-node protocol below (node_actor, and the batch encoding it
/// carries); a peer with another one is refused at the handshake with a message naming
/// both (edge devices get upgraded later than clouds).
constexpr uint32_t node_protocol_version = 5;

// -- atoms (at most 10 characters) -------------------------------------------
using status_atom = caf::atom_constant<caf::atom("status")>;
using query_atom = caf::atom_constant<caf::atom("query")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using wake_atom = caf::atom_constant<caf::atom("wake")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using connect_atom = caf::atom_constant<caf::atom("connect")>;
/// To a workflow actor: start a training run now (trigger: manual, ...); replies the run id.
using train_atom = caf::atom_constant<caf::atom("train")>;
/// To a storage: which streams it holds.
using streams_atom = caf::atom_constant<caf::atom("streams")>;
/// Node to node: the handshake.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
/// Node to node: a batch over a cross-node wire.
using deliver_atom = caf::atom_constant<caf::atom("deliver")>;
/// Node to link: a delivery was taken (or refused), see node_actor.
using delivered_atom = caf::atom_constant<caf::atom("delivered")>;
/// To a workflow actor: its serving model, for a workflow that serves what it trains
/// (`model_from`): (model_atom, model id the asker has) -> (model id, package zip, model in
/// the registry's encoding); the last two are empty when the asker has that model already.
using model_atom = caf::atom_constant<caf::atom("model")>;
/// Node to node: are you there? (a link's probe of a connected peer, see peer_timeout)
using ping_atom = caf::atom_constant<caf::atom("ping")>;
/// To the local node actor at shutdown: take no more deliveries.
using drain_atom = caf::atom_constant<caf::atom("drain")>;

// -- interfaces ---------------------------------------------------------------

/// Every actor answers `status` with its counters, state and last error.
using status_client = caf::typed_actor<caf::replies_to<status_atom>::with<actor_status>>;

/// A consumer takes batches. Its reply (records accepted) is the wire's credit: a sender
/// keeps a bounded number of unanswered batches per wire, so a slow consumer slows the
/// sender instead of growing memory. A consumer replies only once the batch is done
/// (a storage: committed; a sink: handed to the broker client).
using consumer_actor = status_client::extend<caf::replies_to<record_batch>::with<uint64_t>>;

/// A storage is a consumer that also answers range queries.
using storage_actor =
  consumer_actor::extend<caf::replies_to<query_atom, scan_request>::with<record_batch>,
                         caf::replies_to<streams_atom>::with<std::vector<stream_info>>>;

/// A source emits batches to its downstream consumers. `stop` asks it to stop taking input
/// and reply once everything it took is acknowledged downstream (a clean shutdown).
using source_actor = status_client::extend<caf::replies_to<stop_atom>::with<bool>>;

/// What one node asks of another: the actor `fabrik run --node NAME` publishes at the
/// node's listen address (actors/node.cpp). The sending end of a cross-node wire is a link
/// (actors/link.cpp), a local storage_actor that stands in for the remote actor.
using node_actor = caf::typed_actor<
  /// Handshake: (protocol version, flow, calling node) -> (version, this node's name).
  /// Refused when the versions or flows differ, naming both.
  caf::replies_to<hello_atom, uint32_t, std::string, std::string>::with<uint32_t, std::string>,
  /// A link's probe while it is connected: a silent peer is noticed without a delivery.
  caf::replies_to<ping_atom>::with<bool>,
  /// (link id, actor, group of spooled batches (actors/delivery.hpp), delivery number):
  /// hands each batch to the actor; once it took them all, sends the link (delivered_atom,
  /// delivery number, batches, ""), or (delivered_atom, delivery number, 0, why) when it
  /// refuses the delivery. An acknowledgement rather than a reply: a request's timeout
  /// would wake CAF's clock thread twice for each delivery. A seq the link delivered
  /// before is not delivered again (links resend after a reconnect).
  caf::reacts_to<deliver_atom, std::string, std::string, std::string, uint64_t>,
  /// A range query or the stream list of a storage on this node (remote training data).
  caf::replies_to<query_atom, std::string, scan_request>::with<record_batch>,
  caf::replies_to<streams_atom, std::string>::with<std::vector<stream_info>>,
  /// The status of an actor on this node.
  caf::replies_to<status_atom, std::string>::with<actor_status>,
  /// The status of every actor on this node and of its links (the web UI's one view).
  caf::replies_to<status_atom>::with<std::vector<actor_status>, std::vector<actor_status>>,
  /// The serving model of a workflow actor on this node (see model_atom).
  caf::replies_to<model_atom, std::string, std::string>::with<std::string, std::string,
                                                              std::string>,
  /// From this node's engine when it stops: refuse further deliveries and reply once every
  /// batch already handed to an actor was taken, so a stop leaves nothing half-delivered.
  caf::replies_to<drain_atom>::with<bool>>;

} // namespace fabrik

CAF_BEGIN_TYPE_ID_BLOCK(fabrik, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(fabrik, (fabrik::record_batch))
CAF_ADD_TYPE_ID(fabrik, (fabrik::actor_status))
CAF_ADD_TYPE_ID(fabrik, (fabrik::scan_request))
CAF_ADD_TYPE_ID(fabrik, (fabrik::stream_info))
CAF_ADD_TYPE_ID(fabrik, (std::vector<fabrik::stream_info>))
CAF_ADD_TYPE_ID(fabrik, (std::vector<fabrik::actor_status>))
CAF_END_TYPE_ID_BLOCK(fabrik)
