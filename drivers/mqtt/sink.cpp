// The `mqtt.sink` kind: publishes records to MQTT as JSON or simatic-v1.
// A batch is answered once every record is handed to the client (which buffers while
// the broker is away, up to its limit); a refused batch is resent by the upstream.

#include "actors/actors.hpp"
#include "actors/spawn.hpp"
#include "core/log.hpp"
#include "drivers/mqtt/broker.hpp"
#include "drivers/mqtt/client.hpp"
#include "drivers/mqtt/json_format.hpp"
#include "drivers/mqtt/simatic.hpp"
#include "flows/kind.hpp"

#include <caf/all.hpp>

#include <mutex>

namespace fabrik::mqtt {
namespace {

settings_table make_sink_settings() {
  auto items = common_settings();
  std::vector<setting> own{
    {.name = "format",
     .type = setting_type::choice,
     .default_value = "json",
     .doc = "json: one flat object per record; simatic-v1: databus data messages",
     .choices = {"json", "simatic-v1"}},
    {.name = "topic",
     .type = setting_type::string,
     .doc = "topic template: {stream}, {actor}, {flow}, {app}, {connection}, {collection}; "
            "default fabrik/{flow}/{stream} for json, the connector's own read topic "
            "ie/d/j/simatic/v1/{app}/dp/r/{connection}/{collection} for simatic-v1"},
    {.name = "retain",
     .type = setting_type::boolean,
     .default_value = "false",
     .doc = "publish with the retain flag"},
    {.name = "app",
     .type = setting_type::string,
     .doc = "simatic-v1: this sink's connector id; default fabrik-FLOW-ACTOR"},
    {.name = "connection",
     .type = setting_type::string,
     .doc = "simatic-v1: connection name; default the sink's actor name"},
    {.name = "target_app",
     .type = setting_type::string,
     .doc = "simatic-v1: write to this other connector's write topic, naming values by its "
            "metadata ids (needs target_connection and target_collection)"},
    {.name = "target_connection",
     .type = setting_type::string,
     .doc = "simatic-v1: the target connector's connection"},
    {.name = "target_collection",
     .type = setting_type::string,
     .doc = "simatic-v1: the target connector's collection"},
  };
  items.insert(items.end(), own.begin(), own.end());
  return {items};
}

const settings_table sink_settings = make_sink_settings();

std::string replace_all(std::string text, std::string_view key, std::string_view value) {
  for (size_t pos = 0; (pos = text.find(key, pos)) != std::string::npos; pos += value.size())
    text.replace(pos, key.size(), value);
  return text;
}

/// A stream as a simatic collection name: slashes are not allowed there.
std::string collection_of(std::string_view stream) {
  std::string out{stream};
  for (auto& ch : out)
    if (ch == '/')
      ch = '.';
  return out;
}

struct sink_params {
  std::string flow;
  bool simatic = false;
  std::string topic;
  int qos = 1;
  bool retain = false;
  std::string app;
  std::string connection;
  std::string target_app;
  std::string target_connection;
  std::string target_collection;
};

/// Metadata of the target connector, filled on Paho's thread.
struct target_metadata {
  std::mutex mtx;
  simatic_decoder decoder;
};

struct sink_state {
  static inline const char* name = "mqtt.sink";
  sink_params p;
  std::unique_ptr<client> cli;
  std::unique_ptr<simatic_encoder> enc;
  std::shared_ptr<target_metadata> target;
  actor_status st;
  log_limiter limiter;
  backoff retry{1, 30};
};

using sink_pointer = caf::stateful_actor<sink_state>*;

std::string topic_for(const sink_state& s, const record& r) {
  auto t = replace_all(s.p.topic, "{stream}", r.stream);
  t = replace_all(std::move(t), "{flow}", s.p.flow);
  t = replace_all(std::move(t), "{actor}", s.st.name);
  t = replace_all(std::move(t), "{app}", s.p.app);
  t = replace_all(std::move(t), "{connection}", s.p.connection);
  return replace_all(std::move(t), "{collection}", collection_of(r.stream));
}

expected<void> publish_record(sink_state& s, const record& r) {
  if (!s.p.simatic)
    return s.cli->publish(topic_for(s, r), encode_json(r), s.p.qos, s.p.retain);
  if (!s.p.target_app.empty()) {
    auto topic =
      simatic_encoder::write_topic(s.p.target_app, s.p.target_connection, s.p.target_collection);
    std::string payload;
    {
      std::lock_guard guard{s.target->mtx};
      auto* coll = s.target->decoder.find_collection(topic);
      if (!coll)
        return make_error(ec::unavailable,
                          "no metadata from connector " + s.p.target_app + " yet (waiting on "
                            + simatic_encoder::metadata_topic(s.p.target_app) + ")");
      payload = s.enc->data(r, s.p.target_connection, s.p.target_collection, coll);
    }
    return s.cli->publish(topic, payload, s.p.qos, s.p.retain);
  }
  auto collection = collection_of(r.stream);
  auto payload = s.enc->data(r, s.p.connection, collection, nullptr);
  if (s.enc->metadata_changed())
    if (auto ok =
          s.cli->publish(simatic_encoder::metadata_topic(s.p.app), s.enc->metadata(), 1, true);
        !ok)
      return ok;
  return s.cli->publish(topic_for(s, r), payload, s.p.qos, s.p.retain);
}

caf::behavior sink(sink_pointer self, client_options opts, sink_params p, actor_status st) {
  auto& s = self->state;
  s.p = std::move(p);
  s.st = std::move(st);
  if (s.p.simatic) {
    s.enc = std::make_unique<simatic_encoder>(s.p.app);
    set_connector_will(opts, s.p.app);
  }
  auto cli = client::make(opts);
  if (!cli) {
    s.st.state = "failed";
    s.st.last_error = cli.err().what();
    spdlog::error("{}: {}", s.st.name, cli.err().message);
  } else {
    s.cli = std::move(*cli);
    if (!s.p.target_app.empty()) {
      s.target = std::make_shared<target_metadata>();
      s.cli->subscriptions({simatic_encoder::metadata_topic(s.p.target_app)}, 1);
      s.cli->on_message(
        [t = s.target, self_name = s.st.name](std::string_view topic, std::string_view payload) {
          std::lock_guard guard{t->mtx};
          message_info info{self_name, topic, 0, 0};
          (void)t->decoder.decode(info, payload);
        });
    }
    auto me = caf::actor_cast<caf::actor>(self);
    s.cli->on_state([me](bool up, const std::string& reason) {
      caf::anon_send(me, tick_atom::value, up, reason);
    });
    s.retry = backoff{opts.reconnect_min_s, opts.reconnect_max_s};
    self->send(self, connect_atom::value);
  }
  return {
    [=](const record_batch& batch) -> caf::result<uint64_t> {
      auto& s = self->state;
      s.st.in += batch.records.size();
      if (!s.cli)
        return caf::make_error(caf::sec::runtime_error, s.st.last_error);
      uint64_t sent = 0;
      for (auto& r : batch.records) {
        auto ok = publish_record(s, r);
        if (!ok) {
          ++s.st.errors;
          s.st.last_error = ok.err().what();
          if (s.limiter.allow())
            spdlog::warn("{}: {}", s.st.name, ok.err().message);
          // Records already handed over stay handed over; the resend repeats them, which
          // at-least-once delivery allows.
          return caf::make_error(caf::sec::runtime_error, ok.err().what());
        }
        ++sent;
      }
      s.st.out += sent;
      return sent;
    },
    [=](tick_atom, bool up, const std::string& reason) {
      auto& s = self->state;
      s.st.state = up ? "running" : "degraded";
      if (up) {
        s.retry.reset();
        spdlog::info("{}: connected to {}", s.st.name, s.cli->options().url);
        if (s.enc) {
          publish_connector_status(*s.cli, s.p.app, "available");
          (void)s.cli->publish(simatic_encoder::metadata_topic(s.p.app), s.enc->metadata(), 1,
                               true);
        }
      } else {
        s.st.last_error = reason;
        if (s.limiter.allow())
          spdlog::warn("{}: {}", s.st.name, reason);
        if (connect_failed(reason))
          self->delayed_send(self, s.retry.next(), connect_atom::value);
      }
    },
    [=](connect_atom) {
      auto& s = self->state;
      if (!s.cli || s.cli->connected())
        return;
      if (auto ok = s.cli->connect(); !ok) {
        s.st.state = "degraded";
        s.st.last_error = ok.err().what();
        spdlog::warn("{}: {}", s.st.name, ok.err().message);
        self->delayed_send(self, s.retry.next(), connect_atom::value);
      }
    },
    [=](status_atom) {
      auto& s = self->state;
      auto st = s.st;
      if (s.enc)
        st.details["skipped_fields"] = std::to_string(s.enc->skipped());
      return st;
    },
  };
}

caf::actor spawn_sink(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  sink_params p;
  p.flow = ctx.f.name;
  p.simatic = c.str("format") == "simatic-v1";
  p.qos = static_cast<int>(c.integer("qos"));
  p.retain = c.boolean("retain");
  p.app = c.has("app") ? c.str("app") : "fabrik-" + ctx.f.name + "-" + ctx.decl.name;
  p.connection = c.has("connection") ? c.str("connection") : ctx.decl.name;
  if (c.has("target_app")) {
    p.target_app = c.str("target_app");
    p.target_connection = c.has("target_connection") ? c.str("target_connection") : "";
    p.target_collection = c.has("target_collection") ? c.str("target_collection") : "";
  }
  p.topic = c.has("topic") ? c.str("topic")
            : p.simatic    ? "ie/d/j/simatic/v1/{app}/dp/r/{connection}/{collection}"
                           : "fabrik/{flow}/{stream}";
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "mqtt.sink";
  auto opts = broker_options(ctx);
  opts.clean_session = true; // a publisher needs no session state at the broker
  return ctx.sys.spawn(sink, opts, p, st);
}

const kind sink_kind{
  .name = "mqtt.sink",
  .summary = "publishes records to MQTT as JSON or simatic-v1 data messages",
  .role = kind_role::sink,
  .settings = &sink_settings,
  .spawn = &spawn_sink,
  .details = "With simatic-v1 the sink is a connector of its own: it publishes retained metadata "
             "for the datapoints it writes (one collection per stream, slashes as dots) on "
             "ie/m/j/simatic/v1/APP/dp and values on its read topics. With target_app it writes "
             "to another connector's write topic instead, mapping field names to that "
             "connector's ids from its metadata.",
};

FABRIK_REGISTER_KIND(sink_kind);

} // namespace
} // namespace fabrik::mqtt
