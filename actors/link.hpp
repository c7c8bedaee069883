#pragma once
// The sending end of a cross-node wire: a local actor that stands in for an actor on
// another node. It keeps every batch in an LMDB spool before it answers the producer, so
// the producer goes on while the peer is away; it reconnects with backoff and forwards in
// order, erasing batches once the peer's node acknowledged them. The peer deduplicates by
// sequence number, so a resend after a reconnect is not delivered twice.
// Batches that arrive together are spooled in one transaction and travel together in one
// delivery (a group), which is what makes a wire across nodes nearly as fast as a local one.

#include "actors/actors.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace fabrik {

struct link_params {
  std::string flow; ///< both ends must run the same flow (the handshake checks)
  std::string from_node; ///< this node
  std::string to_node; ///< the peer
  std::string actor; ///< the actor on the peer
  std::string host; ///< the peer's listen address
  uint16_t port = 0;
  std::filesystem::path dir; ///< the spool: DATA_DIR/links/NODE/ACTOR
  uint64_t max_batches = 100000;
  bool drop_oldest = false; ///< when full; else the producer waits
  std::chrono::nanoseconds reconnect_max = std::chrono::seconds{10};
  std::chrono::nanoseconds peer_timeout = std::chrono::seconds{15}; ///< see flows/nodes.cpp
  bool tls = false; ///< connect through caf::openssl's manager
};

/// What went wrong between two nodes, in words for the status page and the log (CAF's own
/// rendering names its error enums: "system_error(cannot_connect_to_node, ...)").
std::string describe_peer_error(const caf::error& err, const std::string& host, uint16_t port);

/// Spawns a link (a storage_actor: batches, and queries forwarded while connected).
/// Fails when its spool cannot be opened.
expected<caf::actor> spawn_link(caf::actor_system& sys, link_params p);

} // namespace fabrik
