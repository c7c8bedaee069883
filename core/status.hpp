#pragma once
// What every actor reports when asked `status`: the operator's view of it.

#include <cstdint>
#include <map>
#include <string>

namespace fabrik {

struct actor_status {
  std::string name;
  std::string kind;
  std::string state = "starting"; ///< starting, running, degraded, stopping, stopped, failed
  uint64_t in = 0; ///< messages (or records, see the kind's doc) received
  uint64_t out = 0; ///< records emitted or stored
  uint64_t errors = 0; ///< malformed input, failed writes, ...
  std::string last_error;
  uint64_t queue = 0; ///< work waiting inside the actor (spooled messages, pending batches)
  std::map<std::string, std::string> details; ///< kind-specific counters and facts

  /// One line for the log: "pcb_in (mqtt.source) running in=.. out=.. errors=.. queue=.."
  std::string to_line() const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_status& x) {
  return f(x.name, x.kind, x.state, x.in, x.out, x.errors, x.last_error, x.queue, x.details);
}

} // namespace fabrik
