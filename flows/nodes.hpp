#pragma once
// Placement: the `nodes:` section (where each node listens) and `on: NODE` per actor.
// One flow file runs in one process, or split across nodes with `fabrik run --node NAME`
// (docs/flow-format.md, "Nodes").

#include "flows/flow.hpp"

#include <optional>
#include <string>
#include <vector>

namespace fabrik {

/// The flow's node names, in file order (sorted by name: the section is a map).
std::vector<std::string> node_names(const flow& f);

/// The settings of node `name`; nullptr when the flow has no such node.
const config* find_node(const flow& f, std::string_view name);

/// Where the other nodes connect to `node`: its `address`, else its listen address.
expected<std::pair<std::string, int>> peer_address(const config& node);

/// TLS files of a node, resolved against the flow's folder; nullopt when it has none.
struct node_tls {
  std::filesystem::path certificate, key, ca;
};
std::optional<node_tls> tls_of(const flow& f, const config& node);

/// Placement problems, appended to `diags` at the actor's or node's line: `on:` naming
/// no node, an actor on no node while the flow has nodes, a listen or http address used by
/// two nodes, an address that is not HOST:PORT, a node with no actors (a warning).
/// `file` is the flow file as given (the name diagnostics use).
void check_placement(const flow& f, const std::string& file, std::vector<diagnostic>& diags);

} // namespace fabrik
