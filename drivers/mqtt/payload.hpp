#pragma once
// Payload codecs of the MQTT driver: turning MQTT messages into records and back.
// No Paho and no actor code here: pure, unit-tested logic.

#include "core/record.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik::mqtt {

/// What decoding one MQTT message produced.
struct decoded {
  std::vector<record> records;
  bool metadata = false; ///< the message was (simatic) metadata: nothing to emit itself
  bool parked = false; ///< held back: it names ids the metadata does not know (yet)
  std::string error; ///< non-empty: malformed; `records` may still hold the good part
  size_t unknown_ids = 0;
};

/// Context of one message.
struct message_info {
  std::string_view actor; ///< the source actor's name: first part of every stream
  std::string_view topic;
  int64_t ingest_time = 0; ///< ns
  uint64_t arrival = 0; ///< arrival counter; the seq when the payload has none
};

} // namespace fabrik::mqtt
