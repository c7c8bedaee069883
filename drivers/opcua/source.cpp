// The `opcua.source` kind: subscribes to variables of an OPC UA server and emits their
// data changes as records. The session lives on the subscriber's thread
// (drivers/opcua/subscriber.cpp); this actor only takes its batches and sends them
// downstream with bounded credit. When the engine falls behind, the subscriber thread
// waits before its next Publish and the server queues changes (up to `queue_size` per
// variable, then it drops the oldest: OPC UA has no broker that keeps a backlog).

#include "actors/emitter.hpp"
#include "actors/spawn.hpp"
#include "core/log.hpp"
#include "drivers/opcua/names.hpp"
#include "drivers/opcua/subscriber.hpp"
#include "flows/flow.hpp"
#include "flows/kind.hpp"

#include <caf/all.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>

namespace fabrik::opcua {
namespace {

const settings_table source_settings{{
  {.name = "endpoint",
   .type = setting_type::string,
   .doc = "server endpoint URL, opc.tcp://HOST:PORT/PATH (SecurityPolicy None)",
   .required = true},
  {.name = "nodes",
   .type = setting_type::string_list,
   .doc = "variables to monitor: node ids (ns=2;s=Line1.Temp, i=2258) or browse paths from "
          "the Objects folder (Plant/Line1/Temp, 2:Plant/2:Temp)"},
  {.name = "folders",
   .type = setting_type::string_list,
   .doc = "monitor every variable below these folders (node ids or browse paths), named by "
          "their path from the folder"},
  {.name = "namespace",
   .type = setting_type::integer,
   .default_value = "1",
   .doc = "namespace index of browse path segments written without NS:",
   .min = 0,
   .max = 65535},
  {.name = "stream",
   .type = setting_type::string,
   .default_value = "values",
   .doc = "records go to stream ACTOR/STREAM"},
  {.name = "sampling_interval",
   .type = setting_type::duration,
   .default_value = "100ms",
   .doc = "how often the server samples each variable (0: on every change)",
   .min = 0},
  {.name = "publishing_interval",
   .type = setting_type::duration,
   .default_value = "500ms",
   .doc = "how often the server sends the changes it collected",
   .min = 1e6},
  {.name = "report",
   .type = setting_type::choice,
   .default_value = "changes",
   .doc = "changes: a value only when it differs from the last; writes: every write, even of "
          "an equal value (by its new source timestamp), so each record has all fields",
   .choices = {"changes", "writes"}},
  {.name = "queue_size",
   .type = setting_type::integer,
   .default_value = "10",
   .doc = "changes per variable the server keeps between two publishes; beyond, it drops "
          "the oldest (counted as server_overflows): at least changes/s x publishing_interval",
   .min = 1,
   .max = 100000},
  {.name = "user",
   .type = setting_type::string,
   .doc = "user name; without it fabrik logs in anonymously"},
  {.name = "password",
   .type = setting_type::string,
   .doc = "password: ${ENV_VAR} or file:PATH (encrypted with the server certificate when "
          "the server asks for it)",
   .secret = true},
  {.name = "timeout",
   .type = setting_type::duration,
   .default_value = "5s",
   .doc = "for connecting and for each request",
   .min = 1e8},
  {.name = "reconnect_min",
   .type = setting_type::duration,
   .default_value = "1s",
   .doc = "first reconnect delay after the connection is lost",
   .min = 1e9},
  {.name = "reconnect_max",
   .type = setting_type::duration,
   .default_value = "30s",
   .doc = "longest reconnect delay (the delay doubles up to this)",
   .min = 1e9},
  {.name = "max_in_flight",
   .type = setting_type::integer,
   .default_value = "4",
   .doc = "batches sent downstream and not yet acknowledged",
   .min = 1,
   .max = 1000},
  {.name = "max_pending",
   .type = setting_type::integer,
   .default_value = "100000",
   .doc = "records received and not yet acknowledged downstream; beyond this fabrik stops "
          "asking the server for more",
   .min = 1,
   .max = 10000000},
}};

/// What the subscriber's thread and the actor share.
struct handoff {
  caf::actor self;
  std::mutex mtx;
  std::condition_variable cv;
  std::deque<record_batch> batches;
  size_t pending = 0; ///< records queued or in flight downstream
  size_t max_pending = 100000;
  bool stopping = false;
  bool wake_pending = false;
  std::string state = "starting";
  std::string why; ///< the reason of the last degraded state
  std::vector<std::string> problems; ///< of the current session
};

struct source_state {
  static inline const char* name = "opcua.source";
  std::shared_ptr<handoff> ho;
  std::unique_ptr<subscriber> sub;
  emitter em;
  actor_status st;
  caf::response_promise stop_promise;
  bool stopping = false;

  ~source_state() {
    // Without a stop (the actor killed): release a handover waiting for room, then join.
    if (ho) {
      {
        std::lock_guard lock{ho->mtx};
        ho->stopping = true;
      }
      ho->cv.notify_all();
    }
    sub.reset();
  }
};

using source_pointer = caf::stateful_actor<source_state>*;

void pump(source_pointer self) {
  auto& s = self->state;
  while (s.em.can_send()) {
    record_batch batch;
    {
      std::lock_guard lock{s.ho->mtx};
      s.ho->wake_pending = false;
      if (s.ho->batches.empty())
        break;
      batch = std::move(s.ho->batches.front());
      s.ho->batches.pop_front();
    }
    auto n = batch.records.size();
    s.st.in += n;
    s.em.send(std::move(batch), [self, n] {
      auto& s = self->state;
      s.st.out += n;
      {
        std::lock_guard lock{s.ho->mtx};
        s.ho->pending -= n;
      }
      s.ho->cv.notify_all();
      pump(self);
    });
  }
  if (s.stopping && s.em.in_flight() == 0 && s.stop_promise.pending())
    s.stop_promise.deliver(true);
}

monitor_events events_for(std::shared_ptr<handoff> ho, std::string actor) {
  monitor_events ev;
  ev.values = [ho](record_batch b) {
    std::unique_lock lock{ho->mtx};
    ho->cv.wait(lock, [&] { return ho->pending < ho->max_pending || ho->stopping; });
    ho->pending += b.records.size();
    ho->batches.push_back(std::move(b));
    if (!ho->wake_pending) {
      ho->wake_pending = true;
      caf::anon_send(ho->self, wake_atom::value);
    }
  };
  ev.state = [ho, actor](const std::string& state, const std::string& why) {
    std::lock_guard lock{ho->mtx};
    if (state == "connecting")
      ho->problems.clear();
    else if (state == "running")
      spdlog::info("{}: subscribed: {}{}", actor, why,
                   ho->problems.empty()
                     ? ""
                     : " (" + std::to_string(ho->problems.size()) + " missing, see above)");
    else if (state == "degraded" && why != ho->why)
      spdlog::warn("{}: {}", actor, why); // each new reason once, not every retry
    ho->state = state;
    if (state == "degraded")
      ho->why = why;
  };
  ev.problem = [ho, actor](const std::string& what) {
    std::lock_guard lock{ho->mtx};
    spdlog::warn("{}: {}", actor, what);
    ho->problems.push_back(what);
  };
  return ev;
}

caf::behavior source(source_pointer self, monitor_options opts, config c, actor_status st,
                     std::vector<consumer_actor> downstream) {
  auto& s = self->state;
  s.st = std::move(st);
  s.em = emitter{self, std::move(downstream), static_cast<size_t>(c.integer("max_in_flight")),
                 s.st.name};
  s.ho = std::make_shared<handoff>();
  s.ho->self = caf::actor_cast<caf::actor>(self);
  s.ho->max_pending = static_cast<size_t>(c.integer("max_pending"));
  spdlog::info("{}: connecting to {}", s.st.name, opts.connection.endpoint_url);
  s.sub = std::make_unique<subscriber>(std::move(opts), events_for(s.ho, s.st.name));
  s.sub->start();
  return {
    [=](wake_atom) { pump(self); },
    [=](emitter::retry_fn& r) { r.fn(); },
    [=](stop_atom) -> caf::result<bool> {
      auto& s = self->state;
      s.stopping = true;
      {
        std::lock_guard lock{s.ho->mtx};
        s.ho->stopping = true;
      }
      s.ho->cv.notify_all();
      s.sub->stop(); // closes the session; what it handed over is still sent below
      s.stop_promise = self->make_response_promise<bool>();
      pump(self);
      return s.stop_promise;
    },
    [=](status_atom) {
      auto& s = self->state;
      auto st = s.st;
      auto& n = s.sub->counters();
      std::lock_guard lock{s.ho->mtx};
      st.state = s.stopping ? "stopping" : s.ho->state;
      st.queue = s.ho->pending;
      if (st.state == "degraded")
        st.last_error = s.ho->why;
      else if (!s.ho->problems.empty()) {
        st.state = "degraded"; // running, but not everything the flow names is there
        st.last_error = s.ho->problems.front();
      }
      st.errors = n.unknown_nodes + n.lost + n.overflows;
      st.details["values"] = std::to_string(n.values.load());
      st.details["variables"] = std::to_string(n.variables.load());
      st.details["unknown_nodes"] = std::to_string(n.unknown_nodes.load());
      st.details["publishes"] = std::to_string(n.publishes.load());
      st.details["sessions"] = std::to_string(n.connects.load());
      st.details["lost_notifications"] = std::to_string(n.lost.load());
      st.details["server_overflows"] = std::to_string(n.overflows.load());
      st.details["refused_batches"] = std::to_string(s.em.refusals());
      return st;
    },
  };
}

double ms(const config& c, const char* key) { return double(c.integer(key)) / 1e6; }

caf::actor spawn_source(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  monitor_options o;
  o.connection.endpoint_url = c.str("endpoint");
  if (c.has("user"))
    o.connection.login.user = c.str("user");
  if (c.has("password"))
    o.connection.login.password = c.str("password");
  o.connection.timeout = std::chrono::milliseconds{c.integer("timeout") / 1'000'000};
  o.connection.session_name = ctx.client_id();
  if (c.has("nodes"))
    o.nodes = c.strings("nodes");
  if (c.has("folders"))
    o.folders = c.strings("folders");
  o.default_namespace = static_cast<uint16_t>(c.integer("namespace"));
  o.sampling_interval_ms = ms(c, "sampling_interval");
  o.publishing_interval_ms = ms(c, "publishing_interval");
  o.queue_size = static_cast<uint32_t>(c.integer("queue_size"));
  o.trigger = c.str("report") == "writes" ? data_change_trigger::status_value_timestamp
                                          : data_change_trigger::status_value;
  o.stream = ctx.decl.name + "/" + c.str("stream");
  o.reconnect_min_s = static_cast<int>(c.integer("reconnect_min") / 1'000'000'000);
  o.reconnect_max_s = static_cast<int>(c.integer("reconnect_max") / 1'000'000'000);
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "opcua.source";
  st.state = "starting";
  return ctx.sys.spawn(source, std::move(o), c, st, ctx.downstream);
}

void check_source(const flow& f, const actor_decl& a, const std::string& file,
                  std::vector<diagnostic>& diags) {
  auto report = [&](const std::string& setting, const std::string& message) {
    diags.push_back(actor_diagnostic(a, file, setting, message));
  };
  auto& c = a.settings;
  if (auto url = parse_endpoint_url(c.str("endpoint")); !url)
    report("endpoint", "endpoint: " + url.err().message);
  auto nodes = c.has("nodes") ? c.strings("nodes") : std::vector<std::string>{};
  auto folders = c.has("folders") ? c.strings("folders") : std::vector<std::string>{};
  if (nodes.empty() && folders.empty())
    report("", "name the variables to monitor in `nodes` or `folders`");
  auto ns = static_cast<uint16_t>(c.integer("namespace"));
  for (auto [key, list] : {std::pair{"nodes", &nodes}, std::pair{"folders", &folders}})
    for (auto& n : *list) {
      if (is_node_id_text(n)) {
        if (auto id = parse_node_id(n); !id)
          report(key, std::string{key} + ": " + id.err().message);
      } else if (auto path = parse_browse_path(n, ns); !path) {
        report(key, std::string{key} + ": " + path.err().message);
      }
    }
  if (c.has("password") && !c.has("user"))
    report("password", "a password needs a user");
}

const kind source_kind{
  .name = "opcua.source",
  .summary = "subscribes to variables of an OPC UA server and emits their changes as records",
  .role = kind_role::source,
  .settings = &source_settings,
  .spawn = &spawn_source,
  .details = "One subscription with a monitored item per variable; the stream is ACTOR/STREAM. "
             "Changes with the same source timestamp and quality become one record (completed "
             "across publishes: the newest timestamp's values wait at most one publishing "
             "interval) whose fields are the variables' names (their browse names, or their path "
             "below a folder); arrays become NAME[0], NAME[1], ... The record's time is the source "
             "timestamp (else the server's, else the ingest time, flagged), its quality the status "
             "code's severity (good, uncertain, bad). DateTime values are int ns since 1970, "
             "ByteString and ExtensionObject bodies bytes. The source reconnects with backoff and "
             "re-creates its subscription after a server restart; an unreachable endpoint, refused "
             "credentials and unknown variables show in its status (`degraded`, last_error, "
             "unknown_nodes). SecurityPolicy None only; a password is sent encrypted when the "
             "server's user token policy asks for it (RSA-OAEP or RSA 1.5 with its certificate).",
  .check = &check_source,
  .editable = true,
};

FABRIK_REGISTER_KIND(source_kind);

} // namespace
} // namespace fabrik::opcua
