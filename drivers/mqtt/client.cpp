#include "drivers/mqtt/client.hpp"

#include <MQTTAsync.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <system_error>
#include <thread>

namespace fabrik::mqtt {

namespace {

error to_error(int rc, std::string_view what) {
  const char* text = MQTTAsync_strerror(rc);
  return make_error(rc == MQTTASYNC_DISCONNECTED ? ec::unavailable : ec::io_error,
                    std::string{what} + ": " + (text ? text : "error " + std::to_string(rc)));
}

} // namespace

struct client::impl {
  client_options opts;
  MQTTAsync handle = nullptr;
  std::mutex mtx; // guards topics, qos and the callbacks while they are being set
  std::vector<std::string> topics;
  int qos = 1;
  message_fn on_message;
  state_fn on_state;
  std::atomic<bool> is_connected{false};
  MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
  MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;

  void report(bool up, const std::string& reason) {
    is_connected = up;
    if (on_state)
      on_state(up, reason);
  }

  void subscribe_all() {
    std::vector<char*> names;
    std::vector<int> qoss;
    {
      std::lock_guard guard{mtx};
      for (auto& t : topics) {
        names.push_back(t.data());
        qoss.push_back(qos);
      }
    }
    if (names.empty())
      return;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = this;
    ro.onFailure = [](void* ctx, MQTTAsync_failureData* fd) {
      static_cast<impl*>(ctx)->report(false, std::string{"subscribe failed: "}
                                               + (fd && fd->message ? fd->message : "refused"));
    };
    int rc = MQTTAsync_subscribeMany(handle, static_cast<int>(names.size()), names.data(),
                                     qoss.data(), &ro);
    if (rc != MQTTASYNC_SUCCESS)
      report(false, to_error(rc, "subscribe").message);
  }

  // -- Paho callbacks (Paho's threads) -------------------------------------------------
  static void connected_cb(void* ctx, char*) {
    auto* self = static_cast<impl*>(ctx);
    self->subscribe_all();
    self->report(true, "connected");
  }
  static void lost_cb(void* ctx, char* cause) {
    static_cast<impl*>(ctx)->report(false, cause ? cause : "connection lost");
  }
  static int arrived_cb(void* ctx, char* topic, int topic_len, MQTTAsync_message* m) {
    auto* self = static_cast<impl*>(ctx);
    std::string_view t = topic_len > 0 ? std::string_view{topic, static_cast<size_t>(topic_len)}
                                       : std::string_view{topic};
    if (self->on_message)
      self->on_message(t,
                       {static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen)});
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
  }
  static void connect_failed_cb(void* ctx, MQTTAsync_failureData* fd) {
    std::string reason = "connect failed";
    if (fd && fd->message)
      reason += std::string{": "} + fd->message;
    else if (fd)
      reason +=
        ": " + std::string{MQTTAsync_strerror(fd->code) ? MQTTAsync_strerror(fd->code) : "refused"};
    static_cast<impl*>(ctx)->report(false, reason);
  }
};

client::client(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

client::~client() {
  if (impl_ && impl_->handle) {
    if (MQTTAsync_isConnected(impl_->handle))
      disconnect(1000);
    MQTTAsync_destroy(&impl_->handle);
  }
}

expected<std::unique_ptr<client>> client::make(client_options opts) {
  auto p = std::make_unique<impl>();
  p->opts = std::move(opts);
  auto& o = p->opts;
  int persistence = MQTTCLIENT_PERSISTENCE_NONE;
  void* persistence_ctx = nullptr;
  std::string dir;
  if (!o.persistence_dir.empty()) {
    std::error_code err;
    std::filesystem::create_directories(o.persistence_dir, err);
    if (err)
      return make_error(ec::io_error,
                        "cannot create " + o.persistence_dir.string() + ": " + err.message());
    persistence = MQTTCLIENT_PERSISTENCE_DEFAULT;
    dir = o.persistence_dir.string();
    persistence_ctx = dir.data();
  }
  MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
  co.sendWhileDisconnected = 1;
  co.maxBufferedMessages = o.max_buffered;
  co.deleteOldestMessages = 0;
  int rc = MQTTAsync_createWithOptions(&p->handle, o.url.c_str(), o.client_id.c_str(), persistence,
                                       persistence_ctx, &co);
  if (rc != MQTTASYNC_SUCCESS)
    return to_error(rc, "MQTT client for " + o.url);
  MQTTAsync_setCallbacks(p->handle, p.get(), &impl::lost_cb, &impl::arrived_cb, nullptr);
  MQTTAsync_setConnected(p->handle, p.get(), &impl::connected_cb);
  return std::unique_ptr<client>{new client(std::move(p))};
}

void client::subscriptions(std::vector<std::string> topics, int qos) {
  std::lock_guard guard{impl_->mtx};
  impl_->topics = std::move(topics);
  impl_->qos = qos;
}

void client::on_message(message_fn fn) { impl_->on_message = std::move(fn); }

void client::on_state(state_fn fn) { impl_->on_state = std::move(fn); }

expected<void> client::connect() {
  auto& o = impl_->opts;
  MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
  co.keepAliveInterval = o.keepalive_s;
  co.cleansession = o.clean_session ? 1 : 0;
  co.automaticReconnect = 1;
  co.minRetryInterval = o.reconnect_min_s;
  co.maxRetryInterval = o.reconnect_max_s;
  co.connectTimeout = o.connect_timeout_s;
  co.context = impl_.get();
  co.onFailure = &impl::connect_failed_cb;
  if (!o.username.empty())
    co.username = o.username.c_str();
  if (!o.password.empty())
    co.password = o.password.c_str();
  if (!o.will_topic.empty()) {
    impl_->will.topicName = o.will_topic.c_str();
    impl_->will.message = o.will_payload.c_str();
    impl_->will.qos = o.will_qos;
    impl_->will.retained = o.will_retain ? 1 : 0;
    co.will = &impl_->will;
  }
  if (o.url.rfind("ssl://", 0) == 0 || o.url.rfind("mqtts://", 0) == 0) {
    auto& ssl = impl_->ssl;
    ssl.trustStore = o.ca_file.empty() ? nullptr : o.ca_file.c_str();
    ssl.keyStore = o.cert_file.empty() ? nullptr : o.cert_file.c_str();
    ssl.privateKey = o.key_file.empty() ? nullptr : o.key_file.c_str();
    ssl.enableServerCertAuth = o.verify_server ? 1 : 0;
    ssl.verify = o.verify_server ? 1 : 0;
    co.ssl = &ssl;
  }
  int rc = MQTTAsync_connect(impl_->handle, &co);
  if (rc != MQTTASYNC_SUCCESS)
    return to_error(rc, "connect to " + o.url);
  return {};
}

bool client::connected() const { return impl_->is_connected; }

expected<void> client::publish(std::string_view topic, std::string_view payload, int qos,
                               bool retain) {
  MQTTAsync_message m = MQTTAsync_message_initializer;
  m.payload = const_cast<char*>(payload.data());
  m.payloadlen = static_cast<int>(payload.size());
  m.qos = qos;
  m.retained = retain ? 1 : 0;
  std::string t{topic};
  int rc = MQTTAsync_sendMessage(impl_->handle, t.c_str(), &m, nullptr);
  if (rc != MQTTASYNC_SUCCESS)
    return to_error(rc, "publish to " + t);
  return {};
}

void client::disconnect(int timeout_ms) {
  MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
  d.timeout = timeout_ms;
  std::atomic<bool> done{false};
  d.context = &done;
  d.onSuccess = [](void* ctx, MQTTAsync_successData*) {
    static_cast<std::atomic<bool>*>(ctx)->store(true);
  };
  d.onFailure = [](void* ctx, MQTTAsync_failureData*) {
    static_cast<std::atomic<bool>*>(ctx)->store(true);
  };
  if (MQTTAsync_disconnect(impl_->handle, &d) == MQTTASYNC_SUCCESS) {
    for (int waited = 0; !done && waited < timeout_ms + 500; waited += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl_->is_connected = false;
}

const client_options& client::options() const { return impl_->opts; }

} // namespace fabrik::mqtt
