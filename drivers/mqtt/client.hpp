#pragma once
// A small RAII wrapper over Paho MQTT C (async). No actor code: callbacks run on Paho's
// threads and must only hand data over (see source.cpp for the delivery contract).

#include "core/backoff.hpp"
#include "core/error.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik::mqtt {

struct client_options {
  std::string url; ///< tcp://host:port or ssl://host:port
  std::string client_id;
  std::string username;
  std::string password;
  std::string ca_file; ///< TLS: trust store (PEM)
  std::string cert_file; ///< TLS: client certificate (PEM)
  std::string key_file; ///< TLS: client private key (PEM)
  bool verify_server = true;
  int keepalive_s = 30;
  bool clean_session = false;
  int reconnect_min_s = 1;
  int reconnect_max_s = 30;
  int connect_timeout_s = 10;
  std::filesystem::path persistence_dir; ///< Paho's file persistence (QoS 1/2 in flight)
  int max_buffered = 10000; ///< publishes kept while disconnected
  // Last will, published by the broker when the connection drops uncleanly.
  std::string will_topic;
  std::string will_payload;
  int will_qos = 1;
  bool will_retain = false;
};

/// True when a connection-state reason says the first connect failed (retry is ours).
inline bool connect_failed(const std::string& reason) {
  return reason.rfind("connect failed", 0) == 0;
}

class client {
public:
  /// Runs on Paho's receive thread. Returns once the message is handed off durably:
  /// Paho acknowledges QoS 1/2 messages after this returns.
  using message_fn = std::function<void(std::string_view topic, std::string_view payload)>;
  /// Connection changes: connected (true) or lost/failed (false) with a reason.
  using state_fn = std::function<void(bool connected, const std::string& reason)>;

  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  static expected<std::unique_ptr<client>> make(client_options opts);

  /// Topics (re)subscribed on every successful connect, with one QoS.
  void subscriptions(std::vector<std::string> topics, int qos);
  void on_message(message_fn fn);
  void on_state(state_fn fn);

  /// Starts connecting. Paho reconnects by itself after a connection is lost; a failed
  /// first attempt is reported through on_state and the owner calls connect() again later.
  expected<void> connect();
  bool connected() const;

  /// Queues a message (also while disconnected, up to max_buffered).
  expected<void> publish(std::string_view topic, std::string_view payload, int qos, bool retain);

  /// Disconnects cleanly (no last will), waiting up to `timeout_ms` for in-flight work.
  void disconnect(int timeout_ms = 2000);

  const client_options& options() const;

private:
  struct impl;
  explicit client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace fabrik::mqtt
