#include "drivers/mqtt/broker.hpp"

#include "actors/spawn.hpp"
#include "drivers/mqtt/simatic.hpp"
#include "flows/kind.hpp"

namespace fabrik::mqtt {
namespace {

const settings_table broker_settings{{
  {.name = "url",
   .type = setting_type::string,
   .doc = "tcp://HOST:PORT, or ssl://HOST:PORT for TLS",
   .required = true},
  {.name = "username", .type = setting_type::string, .doc = "user name for the broker"},
  {.name = "password",
   .type = setting_type::string,
   .doc = "password: ${ENV_VAR} or file:PATH",
   .secret = true},
  {.name = "ca_file",
   .type = setting_type::string,
   .doc = "TLS: CA certificates (PEM) that sign the broker's certificate"},
  {.name = "cert_file",
   .type = setting_type::string,
   .doc = "TLS: client certificate (PEM) for brokers that require one"},
  {.name = "key_file", .type = setting_type::string, .doc = "TLS: client private key (PEM)"},
  {.name = "verify",
   .type = setting_type::boolean,
   .default_value = "true",
   .doc = "TLS: verify the broker's certificate and host name"},
  {.name = "keepalive",
   .type = setting_type::duration,
   .default_value = "30s",
   .doc = "MQTT keep-alive interval",
   .min = 1e9,
   .max = 65535e9},
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
}};

const section brokers_section{
  .name = "brokers",
  .summary = "MQTT brokers that mqtt.source and mqtt.sink actors name with `broker:`",
  .settings = &broker_settings,
};

FABRIK_REGISTER_SECTION(brokers_section);

} // namespace

std::vector<setting> common_settings() {
  return {
    {.name = "broker",
     .type = setting_type::reference,
     .doc = "name of an entry in `brokers`",
     .required = true,
     .section = "brokers"},
    {.name = "client_id",
     .type = setting_type::string,
     .doc = "MQTT client id; default fabrik-FLOW-NODE-ACTOR (stable, for persistent sessions)"},
    {.name = "qos",
     .type = setting_type::integer,
     .default_value = "1",
     .doc = "MQTT quality of service: 0, 1 or 2",
     .min = 0,
     .max = 2},
  };
}

void set_connector_will(client_options& o, std::string_view app) {
  o.will_topic = simatic_encoder::status_topic(app);
  o.will_payload = simatic_encoder::status("unavailable");
  o.will_qos = 1;
  o.will_retain = true;
}

void publish_connector_status(client& c, std::string_view app, std::string_view status) {
  (void)c.publish(simatic_encoder::status_topic(app), simatic_encoder::status(status), 1, true);
}

client_options broker_options(const spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  auto& b = ctx.f.sections.at("brokers").at(c.str("broker"));
  client_options o;
  o.url = b.str("url");
  if (b.has("username"))
    o.username = b.str("username");
  if (b.has("password"))
    o.password = b.str("password");
  auto path = [&](const char* key) { return b.has(key) ? ctx.f.resolve(b.str(key)).string() : ""; };
  o.ca_file = path("ca_file");
  o.cert_file = path("cert_file");
  o.key_file = path("key_file");
  o.verify_server = b.boolean("verify");
  o.keepalive_s = static_cast<int>(b.integer("keepalive") / 1'000'000'000);
  o.reconnect_min_s = static_cast<int>(b.integer("reconnect_min") / 1'000'000'000);
  o.reconnect_max_s = static_cast<int>(b.integer("reconnect_max") / 1'000'000'000);
  o.client_id = c.has("client_id") ? c.str("client_id") : ctx.client_id();
  o.persistence_dir = ctx.state_dir("mqtt");
  return o;
}

} // namespace fabrik::mqtt
