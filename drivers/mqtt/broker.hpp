#pragma once
// The `brokers` section: MQTT connection settings shared by mqtt.source and mqtt.sink.

#include "core/settings.hpp"
#include "drivers/mqtt/client.hpp"

namespace fabrik {
struct spawn_context;
}

namespace fabrik::mqtt {

/// Client options for an actor from its `broker:` reference and its own settings
/// (client_id, clean_session), with state under DATA_DIR/mqtt/ACTOR.
client_options broker_options(const spawn_context& ctx);

/// simatic-v1: makes the broker publish `unavailable` (retained) on APP's connector status
/// topic when the client drops without saying goodbye.
void set_connector_will(client_options& o, std::string_view app);
/// simatic-v1: publishes a connector status (retained, QoS 1) on APP's status topic.
void publish_connector_status(client& c, std::string_view app, std::string_view status);

/// Settings every MQTT actor kind has, appended to its own table.
std::vector<setting> common_settings();

} // namespace fabrik::mqtt
