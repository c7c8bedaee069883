#include "flows/nodes.hpp"

#include "flows/kind.hpp"

#include <algorithm>
#include <map>

namespace fabrik {
namespace {

const settings_table node_settings{{
  {.name = "listen",
   .type = setting_type::string,
   .doc = "HOST:PORT where this node takes connections from the other nodes",
   .required = true},
  {.name = "address",
   .type = setting_type::string,
   .doc = "HOST:PORT the other nodes connect to, when it differs from listen (a node "
          "listening on 0.0.0.0, or reached through a proxy or NAT); default: listen"},
  {.name = "http",
   .type = setting_type::string,
   .doc = "the web UI and API address of this node (HOST:PORT or off) when it runs with "
          "`--node`; default: the flow's http.listen. Nodes on one machine need their own"},
  {.name = "link_buffer",
   .type = setting_type::integer,
   .default_value = "100000",
   .doc = "batches a wire from this node to another keeps on disk while the peer is away "
          "(while it is connected, at most 1024 run ahead of it)",
   .min = 1},
  {.name = "when_full",
   .type = setting_type::choice,
   .default_value = "block",
   .doc = "when that buffer is full: `block` (the producer waits, nothing is lost) or "
          "`drop_oldest` (the oldest batch is dropped and counted)",
   .choices = {"block", "drop_oldest"}},
  {.name = "certificate",
   .type = setting_type::string,
   .doc = "this node's TLS certificate (PEM), signed by the deployment's CA (`fabrik certs` "
          "makes a test one); with key and ca, nodes talk TLS and refuse peers without one"},
  {.name = "key", .type = setting_type::string, .doc = "the private key of that certificate (PEM)"},
  {.name = "ca",
   .type = setting_type::string,
   .doc = "the deployment's CA certificate (PEM): a peer must have a certificate it signed"},
  {.name = "reconnect_max",
   .type = setting_type::duration,
   .default_value = "10s",
   .doc = "longest pause between attempts to reach a peer that is away (the pause doubles "
          "from 100ms)",
   .min = 100e6},
  {.name = "peer_timeout",
   .type = setting_type::duration,
   .default_value = "15s",
   .doc = "a connected peer that answers no probe for this long is taken for lost (a cut "
          "cable, a route that drops everything): the link reconnects and resends",
   .min = 1e9},
}};

const section nodes_section{
  .name = "nodes",
  .summary = "where the flow runs when it is split across nodes (`fabrik run --node NAME`); "
             "each actor names its node with `on:`",
  .settings = &node_settings,
};

FABRIK_REGISTER_SECTION(nodes_section);

bool is_wildcard(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]" || host.empty();
}

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ", ") + x;
  return out;
}

} // namespace

std::vector<std::string> node_names(const flow& f) {
  std::vector<std::string> out;
  if (auto it = f.sections.find("nodes"); it != f.sections.end())
    for (auto& [name, c] : it->second)
      out.push_back(name);
  return out;
}

const config* find_node(const flow& f, std::string_view name) {
  auto it = f.sections.find("nodes");
  if (it == f.sections.end())
    return nullptr;
  auto n = it->second.find(std::string{name});
  return n == it->second.end() ? nullptr : &n->second;
}

expected<std::pair<std::string, int>> peer_address(const config& node) {
  return parse_listen(node.str(node.has("address") ? "address" : "listen"));
}

std::optional<node_tls> tls_of(const flow& f, const config& node) {
  if (!node.has("certificate"))
    return std::nullopt;
  return node_tls{f.resolve(node.str("certificate")), f.resolve(node.str("key")),
                  f.resolve(node.str("ca"))};
}

void check_placement(const flow& f, const std::string& file, std::vector<diagnostic>& diags) {
  auto names = node_names(f);
  auto at = [&](const std::string& node) {
    auto it = f.entry_at.find("nodes/" + node);
    return it == f.entry_at.end() ? yaml_position{} : it->second;
  };
  auto node_error = [&](const std::string& node, std::string msg, bool warning = false) {
    auto p = at(node);
    diags.push_back({file, p.line, p.column, std::move(msg), warning});
  };
  // In file order, so a repeated address is reported at the second node.
  auto in_file_order = names;
  std::stable_sort(in_file_order.begin(), in_file_order.end(),
                   [&](auto& a, auto& b) { return at(a).line < at(b).line; });
  // Two nodes at one address would connect to each other's actors by mistake.
  for (std::string key : {"listen", "address", "http"}) {
    std::map<std::string, std::string> used; // address -> node
    for (auto& n : in_file_order) {
      auto& c = *find_node(f, n);
      if (!c.has(key) || (key == "http" && c.str(key) == "off"))
        continue;
      auto addr = c.str(key);
      auto parsed = parse_listen(addr);
      if (!parsed) {
        node_error(n, "node '" + n + "': " + key + " '" + addr + "' is not HOST:PORT");
        continue;
      }
      if (key != "http" && parsed->second == 0) {
        node_error(n, "node '" + n + "': " + key
                        + " needs a fixed port (the other nodes "
                          "connect to it), not 0");
        continue;
      }
      if (key == "listen" && !c.has("address") && is_wildcard(parsed->first)) {
        node_error(n, "node '" + n + "': the other nodes cannot connect to " + parsed->first
                        + "; give this node an address (HOST:PORT they reach it at)");
        continue;
      }
      if (auto [it, fresh] = used.emplace(addr, n); !fresh)
        node_error(n, "node '" + n + "': " + key + " address " + addr + " is already node '"
                        + it->second + "''s (line " + std::to_string(at(it->second).line) + ")");
    }
  }
  // TLS is all or nothing: a node with it cannot talk to one without.
  const char* tls_keys[] = {"certificate", "key", "ca"};
  std::string first_tls, first_plain;
  for (auto& n : in_file_order) {
    auto& c = *find_node(f, n);
    std::vector<std::string> missing;
    size_t given = 0;
    for (auto* k : tls_keys)
      if (c.has(k))
        ++given;
      else
        missing.push_back(k);
    if (given > 0 && !missing.empty())
      node_error(n,
                 "node '" + n + "': TLS needs certificate, key and ca; missing " + join(missing));
    auto& first = given > 0 ? first_tls : first_plain;
    if (first.empty())
      first = n;
  }
  if (!first_tls.empty() && !first_plain.empty())
    node_error(first_plain, "node '" + first_plain + "' has no TLS settings but node '" + first_tls
                              + "' has: the nodes of a flow all use TLS or none");
  for (auto& a : f.actors) {
    auto in = a.file.empty() ? file : a.file;
    if (a.node.empty()) {
      if (!names.empty())
        diags.push_back({in, a.line, a.column,
                         "actor '" + a.name
                           + "' is on no node; add "
                             "'on: NODE' (nodes: "
                           + join(names) + ")"});
      continue;
    }
    if (names.empty())
      diags.push_back({in, a.line, a.column,
                       "actor '" + a.name + "' is on node '" + a.node
                         + "', but the flow has no 'nodes' section"});
    else if (!find_node(f, a.node))
      diags.push_back(
        {in, a.line, a.column,
         "actor '" + a.name + "' is on unknown node '" + a.node + "'; nodes: " + join(names)});
  }
  for (auto& n : names)
    if (std::none_of(f.actors.begin(), f.actors.end(), [&](auto& a) { return a.node == n; }))
      node_error(n, "node '" + n + "' runs no actor", true);
}

} // namespace fabrik
