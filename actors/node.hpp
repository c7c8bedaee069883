#pragma once
// One node of a split flow (`fabrik run FLOW --node NAME`): publishes this node's node
// actor at its listen address through CAF's middleman, answers the other nodes' links
// (deliveries, deduplicated per link; queries; status), and makes the links through which
// this node's actors reach actors on other nodes.

#include "core/error.hpp"
#include "core/status.hpp"
#include "flows/flow.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fabrik {

class node_runtime {
public:
  /// This node's running actor named so, or an invalid handle (asked from the node actor).
  using local_fn = std::function<caf::actor(const std::string&)>;
  /// Every running actor of this node, with its name and kind (shown when it does not
  /// answer).
  struct named_actor {
    std::string name, kind;
    caf::actor handle;
    std::map<std::string, std::string> details; ///< shown with it when it does not answer
  };
  using all_fn = std::function<std::vector<named_actor>()>;

  /// One node as the web UI shows it.
  struct node_report {
    std::string name, listen, http;
    std::string address; ///< where the other nodes connect (its `address`, else listen)
    bool here = false; ///< the node answering
    bool reachable = false; ///< it answered
    std::string error; ///< why not
    std::vector<actor_status> actors, links;
  };

  /// Publishes node `name` of `f` at its listen address. The actor system must have loaded
  /// caf::io::middleman (and caf::openssl::manager for TLS).
  static expected<std::unique_ptr<node_runtime>> start(caf::actor_system& sys, const flow& f,
                                                       std::string name,
                                                       std::filesystem::path data_dir,
                                                       local_fn local, all_fn all);
  ~node_runtime();

  const std::string& name() const { return name_; }
  /// The local stand-in for `actor` on another node: its link, made at the first call.
  expected<caf::actor> remote(const actor_decl& actor);
  /// Every node of the flow, asked (at most `timeout` each) for its actors and links.
  /// Blocks: for the web server's threads.
  std::vector<node_report> report(std::chrono::milliseconds timeout);
  /// The links made so far, named as their status names them ("link:NODE/ACTOR").
  std::vector<named_actor> links() const;
  /// Takes no more deliveries from other nodes and waits (at most `timeout`) until the
  /// actors here took every batch already handed to them. Called before the actors stop.
  void drain(std::chrono::seconds timeout);
  /// Stops the links and the node actor (what the links hold stays in their spools).
  void stop();

private:
  node_runtime(caf::actor_system& sys, const flow& f, std::string name,
               std::filesystem::path data_dir);

  caf::actor_system& sys_;
  const flow& f_;
  std::string name_;
  std::filesystem::path data_dir_;
  caf::actor node_;
  mutable std::mutex mutex_;
  std::map<std::string, named_actor> links_; ///< by remote actor name
  std::map<std::string, caf::actor> peers_; ///< node actors of other nodes, for report()
};

} // namespace fabrik
