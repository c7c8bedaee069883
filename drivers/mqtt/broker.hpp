#pragma once
// The `brokers` section: MQTT connection settings shared by mqtt.source and mqtt.sink.

#include "actors/settings.hpp"
#include "drivers/mqtt/client.hpp"

namespace fabrik {
struct spawn_context;
}

namespace fabrik::mqtt {

/// Client options for an actor from its `broker:` reference and its own settings
/// (client_id, clean_session), with state under DATA_DIR/mqtt/ACTOR.
client_options broker_options(const spawn_context& ctx);

/// Settings every MQTT actor kind has, appended to its own table.
std::vector<setting> common_settings();

} // namespace fabrik::mqtt
