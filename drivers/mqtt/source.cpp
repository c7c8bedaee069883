// The `mqtt.source` kind: subscribes to topics and emits records.
//
// Delivery (docs/records.md, "Delivery"): Paho acknowledges a QoS 1/2 message as soon as
// the message callback returns, so the callback appends the raw message to a spool (an
// LMDB queue under DATA_DIR/spool/ACTOR, one cheap commit, no actor round trip) before
// returning. The actor reads the spool in batches, decodes, sends the records downstream
// and erases spool entries only once every downstream consumer accepted them (a storage
// accepts after its commit). After a crash the spool is replayed; storage deduplicates.
// Back-pressure: when the spool holds `max_pending` messages the callback waits, Paho
// stops reading the socket, and the broker keeps the backlog.

#include "actors/emitter.hpp"
#include "actors/spawn.hpp"
#include "core/log.hpp"
#include "core/spool.hpp"
#include "core/time.hpp"
#include "drivers/mqtt/broker.hpp"
#include "drivers/mqtt/client.hpp"
#include "drivers/mqtt/json_format.hpp"
#include "drivers/mqtt/simatic.hpp"
#include "flows/kind.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

namespace fabrik::mqtt {
namespace {

settings_table make_source_settings() {
  auto items = common_settings();
  std::vector<setting> own{
    {.name = "topics",
     .type = setting_type::string_list,
     .doc = "topic filters to subscribe to (+ and # wildcards allowed)",
     .required = true},
    {.name = "format",
     .type = setting_type::choice,
     .default_value = "json",
     .doc = "payload format: simatic-v1 (Industrial Edge databus), json, raw (bytes)",
     .choices = {"simatic-v1", "json", "raw"}},
    {.name = "clean_session",
     .type = setting_type::boolean,
     .default_value = "false",
     .doc = "false keeps a persistent session: QoS 1/2 messages published while fabrik "
            "is down arrive after a restart"},
    {.name = "app",
     .type = setting_type::string,
     .doc = "simatic-v1: connector id for the status topic ie/s/j/simatic/v1/APP/status; "
            "default fabrik-FLOW-ACTOR"},
    {.name = "batch_size",
     .type = setting_type::integer,
     .default_value = "500",
     .doc = "messages decoded into one batch on the wire",
     .min = 1,
     .max = 100000},
    {.name = "max_in_flight",
     .type = setting_type::integer,
     .default_value = "4",
     .doc = "batches sent downstream and not yet acknowledged",
     .min = 1,
     .max = 1000},
    {.name = "max_pending",
     .type = setting_type::integer,
     .default_value = "20000",
     .doc = "messages spooled and not yet acknowledged downstream; beyond this fabrik "
            "stops reading from the broker, which keeps the backlog",
     .min = 1,
     .max = 10000000},
    {.name = "max_parked",
     .type = setting_type::integer,
     .default_value = "10000",
     .doc = "simatic-v1: messages with ids unknown to the metadata, kept until it arrives",
     .min = 0,
     .max = 10000000},
  };
  items.insert(items.end(), own.begin(), own.end());
  return {items};
}

const settings_table source_settings = make_source_settings();

enum class payload_format { simatic, json, raw };

// Spool entry: ingest time (8 bytes), topic length (4 bytes), topic, payload.
std::string spool_entry(int64_t ingest, std::string_view topic, std::string_view payload) {
  std::string out;
  out.resize(12 + topic.size() + payload.size());
  auto len = static_cast<uint32_t>(topic.size());
  std::memcpy(out.data(), &ingest, 8);
  std::memcpy(out.data() + 8, &len, 4);
  std::memcpy(out.data() + 12, topic.data(), topic.size());
  std::memcpy(out.data() + 12 + topic.size(), payload.data(), payload.size());
  return out;
}

struct spooled {
  int64_t ingest = 0;
  std::string_view topic;
  std::string_view payload;
};

std::optional<spooled> parse_entry(std::string_view e) {
  if (e.size() < 12)
    return std::nullopt;
  spooled s;
  uint32_t len = 0;
  std::memcpy(&s.ingest, e.data(), 8);
  std::memcpy(&len, e.data() + 8, 4);
  if (e.size() < 12 + static_cast<size_t>(len))
    return std::nullopt;
  s.topic = e.substr(12, len);
  s.payload = e.substr(12 + len);
  return s;
}

/// What Paho's thread and the actor share.
struct handoff {
  std::shared_ptr<spool> sp;
  caf::actor self;
  std::atomic<bool> wake_pending{false};
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> pending{0}; // spooled, not yet erased
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> spool_errors{0};
  uint64_t max_pending = 20000;
  std::mutex mtx;
  std::condition_variable cv;

  void wake() {
    if (!wake_pending.exchange(true))
      caf::anon_send(self, wake_atom::value);
  }
};

struct source_state {
  static inline const char* name = "mqtt.source";
  std::string actor;
  payload_format format = payload_format::json;
  std::shared_ptr<handoff> ho;
  std::unique_ptr<client> cli;
  emitter em;
  simatic_decoder simatic;
  std::deque<spool::entry> parked;
  size_t max_parked = 10000;
  size_t batch_size = 500;
  uint64_t next_read = 0;
  uint64_t next_arrival = 1;
  actor_status st;
  uint64_t malformed = 0;
  uint64_t unknown_ids = 0;
  uint64_t dropped_parked = 0;
  bool new_metadata = false;
  std::string app;
  log_limiter limiter;
  caf::response_promise stop_promise;
  bool stopping = false;
  backoff retry{1, 30};

  ~source_state() {
    // Releases a Paho callback waiting for room, before the client is destroyed.
    if (ho) {
      ho->stopping = true;
      ho->cv.notify_all();
    }
  }
};

using source_pointer = caf::stateful_actor<source_state>*;

void publish_status(source_state& s, std::string_view status) {
  if (s.format == payload_format::simatic && s.cli)
    publish_connector_status(*s.cli, s.app, status);
}

void note_error(source_state& s, const std::string& what) {
  ++s.st.errors;
  s.st.last_error = what;
  if (s.limiter.allow()) {
    if (s.limiter.suppressed() > 0)
      spdlog::warn("{}: {} ({} similar messages suppressed)", s.actor, what,
                   s.limiter.suppressed());
    else
      spdlog::warn("{}: {}", s.actor, what);
  }
}

// Metadata outlives the spool entry that brought it: kept under "simatic:TOPIC", with the
// list of topics under "simatic:topics", and fed to the decoder at start.
void keep_metadata(source_state& s, std::string_view topic, std::string_view payload) {
  auto& sp = *s.ho->sp;
  auto ok = sp.put_meta("simatic:" + std::string{topic}, payload);
  auto topics = sp.get_meta("simatic:topics").value_or("");
  if (ok && ("\n" + topics).find("\n" + std::string{topic} + "\n") == std::string::npos)
    ok = sp.put_meta("simatic:topics", topics + std::string{topic} + "\n");
  if (!ok)
    note_error(s, "cannot keep metadata: " + ok.err().message);
}

void load_metadata(source_state& s) {
  auto& sp = *s.ho->sp;
  auto topics = sp.get_meta("simatic:topics").value_or("");
  size_t pos = 0;
  for (size_t nl; (nl = topics.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    auto topic = topics.substr(pos, nl - pos);
    if (auto payload = sp.get_meta("simatic:" + topic)) {
      message_info info{s.actor, topic, now_ns(), 0};
      (void)s.simatic.decode(info, *payload);
    }
  }
}

/// Decodes one spooled message; returns false when it must stay parked.
bool decode_into(source_state& s, const spool::entry& e, record_batch& out) {
  auto msg = parse_entry(e.data);
  if (!msg) {
    ++s.malformed;
    note_error(s, "corrupt spool entry " + std::to_string(e.seq) + " skipped");
    return true;
  }
  message_info info{s.actor, msg->topic, msg->ingest, s.next_arrival++};
  decoded d;
  switch (s.format) {
    case payload_format::simatic:
      if (msg->topic.rfind("ie/s/", 0) == 0)
        return true; // connector status messages carry no data
      d = s.simatic.decode(info, msg->payload);
      if (d.metadata) {
        s.new_metadata = true;
        keep_metadata(s, msg->topic, msg->payload);
      }
      break;
    case payload_format::json:
      d = decode_json(info, msg->payload);
      break;
    case payload_format::raw:
      d = decode_raw(info, msg->payload);
      break;
  }
  if (d.parked) {
    s.unknown_ids += d.unknown_ids;
    return false;
  }
  if (!d.error.empty()) {
    ++s.malformed;
    note_error(s, "malformed message on " + std::string{msg->topic} + ": " + d.error);
  }
  for (auto& r : d.records)
    out.records.push_back(std::move(r));
  return true;
}

void pump(source_pointer self);

void finish_batch(source_pointer self, std::vector<uint64_t> seqs, size_t records) {
  auto& s = self->state;
  if (auto ok = s.ho->sp->erase(seqs); !ok)
    note_error(s, "cannot erase spooled messages: " + ok.err().message);
  s.st.out += records;
  s.ho->pending -= seqs.size();
  s.ho->cv.notify_all();
  pump(self);
}

void send_batch(source_pointer self, record_batch batch, std::vector<uint64_t> seqs) {
  auto& s = self->state;
  if (seqs.empty())
    return;
  auto n = batch.records.size();
  if (batch.records.empty()) {
    finish_batch(self, std::move(seqs), 0);
    return;
  }
  s.em.send(std::move(batch), [self, seqs = std::move(seqs), n]() mutable {
    finish_batch(self, std::move(seqs), n);
  });
}

/// After new metadata: messages parked for unknown ids may decode now.
void retry_parked(source_pointer self) {
  auto& s = self->state;
  record_batch batch;
  std::vector<uint64_t> seqs;
  std::deque<spool::entry> still;
  for (auto& e : s.parked) {
    if (decode_into(s, e, batch))
      seqs.push_back(e.seq);
    else
      still.push_back(std::move(e));
  }
  s.parked = std::move(still);
  send_batch(self, std::move(batch), std::move(seqs));
}

void park(source_pointer self, spool::entry e) {
  auto& s = self->state;
  s.parked.push_back(std::move(e));
  if (s.parked.size() > s.max_parked) {
    // Kept in the spool would stall nothing, but memory must stay bounded: say so loudly.
    auto oldest = s.parked.front().seq;
    s.parked.pop_front();
    ++s.dropped_parked;
    note_error(s, "dropped a message with ids unknown to the metadata (more than "
                    + std::to_string(s.max_parked) + " parked)");
    send_batch(self, {}, {oldest});
  }
}

void pump(source_pointer self) {
  auto& s = self->state;
  while (s.em.can_send()) {
    auto entries = s.ho->sp->read(s.next_read, s.batch_size);
    if (!entries) {
      note_error(s, "cannot read spool: " + entries.err().message);
      return;
    }
    if (entries->empty())
      break;
    s.next_read = entries->back().seq + 1;
    record_batch batch;
    std::vector<uint64_t> seqs;
    s.new_metadata = false;
    for (auto& e : *entries) {
      ++s.st.in;
      if (decode_into(s, e, batch))
        seqs.push_back(e.seq);
      else
        park(self, std::move(e));
    }
    send_batch(self, std::move(batch), std::move(seqs));
    if (s.new_metadata && !s.parked.empty())
      retry_parked(self);
  }
  if (s.stopping && s.em.in_flight() == 0 && s.stop_promise.pending())
    s.stop_promise.deliver(true);
}

caf::behavior source(source_pointer self, client_options opts, config c, actor_status st,
                     std::vector<consumer_actor> downstream, std::filesystem::path spool_dir,
                     std::string app, durability spool_mode) {
  auto& s = self->state;
  s.st = std::move(st);
  s.actor = s.st.name;
  auto fmt = c.str("format");
  s.format = fmt == "simatic-v1" ? payload_format::simatic
             : fmt == "raw"      ? payload_format::raw
                                 : payload_format::json;
  s.batch_size = static_cast<size_t>(c.integer("batch_size"));
  s.max_parked = static_cast<size_t>(c.integer("max_parked"));
  s.em =
    emitter{self, std::move(downstream), static_cast<size_t>(c.integer("max_in_flight")), s.actor};
  s.retry = backoff{opts.reconnect_min_s, opts.reconnect_max_s};
  s.ho = std::make_shared<handoff>();
  s.ho->self = caf::actor_cast<caf::actor>(self);
  s.ho->max_pending = static_cast<uint64_t>(c.integer("max_pending"));

  auto sp = spool::open(spool_dir, spool_mode);
  if (!sp) {
    s.st.state = "failed";
    s.st.last_error = sp.err().what();
    spdlog::error("{}: cannot open spool {}: {}", s.actor, spool_dir.string(), sp.err().message);
    return {[=](status_atom) { return self->state.st; }, [=](stop_atom) { return true; }};
  }
  s.ho->sp = std::make_shared<spool>(std::move(*sp));
  s.ho->pending = s.ho->sp->size();
  // Metadata seen before a restart: values spooled then decode without waiting for it.
  if (s.format == payload_format::simatic)
    load_metadata(s);
  s.app = std::move(app);

  opts.clean_session = c.boolean("clean_session");
  if (s.format == payload_format::simatic)
    set_connector_will(opts, s.app);
  auto cli = client::make(opts);
  if (!cli) {
    s.st.state = "failed";
    s.st.last_error = cli.err().what();
    spdlog::error("{}: {}", s.actor, cli.err().message);
    return {[=](status_atom) { return self->state.st; }, [=](stop_atom) { return true; }};
  }
  s.cli = std::move(*cli);
  s.cli->subscriptions(c.strings("topics"), static_cast<int>(c.integer("qos")));
  s.cli->on_message([ho = s.ho](std::string_view topic, std::string_view payload) {
    // Paho's receive thread: spool durably, wake the actor, wait while the spool is full.
    auto entry = spool_entry(now_ns(), topic, payload);
    ++ho->received;
    for (int attempt = 0;; ++attempt) {
      auto ok = ho->sp->append(entry);
      if (ok)
        break;
      if (ho->spool_errors++ == 0 || attempt % 50 == 0)
        spdlog::error("cannot spool an MQTT message (retrying): {}", ok.err().message);
      if (ho->stopping)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ++ho->pending;
    ho->wake();
    std::unique_lock lock{ho->mtx};
    ho->cv.wait(lock, [&] { return ho->pending < ho->max_pending || ho->stopping; });
  });
  s.cli->on_state([me = s.ho->self](bool up, const std::string& reason) {
    caf::anon_send(me, tick_atom::value, up, reason);
  });
  spdlog::info("{}: connecting to {} as {} ({} spooled messages to replay)", s.actor, opts.url,
               opts.client_id, s.ho->pending.load());
  s.st.state = "starting";
  self->send(self, connect_atom::value);
  self->send(self, wake_atom::value); // replay what the spool kept from the last run
  return {
    [=](wake_atom) {
      self->state.ho->wake_pending = false;
      pump(self);
    },
    [=](emitter::retry_fn& r) { r.fn(); },
    [=](tick_atom, bool up, const std::string& reason) {
      auto& s = self->state;
      if (up) {
        s.st.state = "running";
        s.retry.reset();
        spdlog::info("{}: connected to {}", s.actor, s.cli->options().url);
        publish_status(s, "available");
        publish_status(s, "good");
      } else if (!s.stopping) {
        s.st.state = "degraded";
        note_error(s, reason);
        if (connect_failed(reason))
          self->delayed_send(self, s.retry.next(), connect_atom::value);
      }
    },
    [=](connect_atom) {
      auto& s = self->state;
      if (s.stopping || s.cli->connected())
        return;
      if (auto ok = s.cli->connect(); !ok) {
        s.st.state = "degraded";
        note_error(s, ok.err().message);
        self->delayed_send(self, s.retry.next(), connect_atom::value);
      }
    },
    [=](stop_atom) -> caf::result<bool> {
      auto& s = self->state;
      s.stopping = true;
      s.st.state = "stopping";
      publish_status(s, "unavailable");
      s.ho->stopping = true;
      s.ho->cv.notify_all();
      s.cli->disconnect(2000);
      s.stop_promise = self->make_response_promise<bool>();
      pump(self);
      return s.stop_promise;
    },
    [=](status_atom) {
      auto& s = self->state;
      auto st = s.st;
      st.queue = s.ho->pending.load();
      st.details["received"] = std::to_string(s.ho->received.load());
      st.details["malformed"] = std::to_string(s.malformed);
      st.details["unknown_ids"] = std::to_string(s.unknown_ids);
      st.details["parked"] = std::to_string(s.parked.size());
      st.details["dropped_parked"] = std::to_string(s.dropped_parked);
      st.details["spool_errors"] = std::to_string(s.ho->spool_errors.load());
      if (s.ho->spool_errors > 0 && st.last_error.empty())
        st.last_error = "cannot spool MQTT messages (see the log)";
      st.details["refused_batches"] = std::to_string(s.em.refusals());
      st.details["in_flight_batches"] = std::to_string(s.em.in_flight());
      return st;
    },
  };
}

caf::actor spawn_source(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "mqtt.source";
  auto app = c.has("app") ? c.str("app") : "fabrik-" + ctx.f.name + "-" + ctx.decl.name;
  // What the broker handed over must be as durable as the storage it is headed for.
  auto mode = durability::process;
  for (auto& name : ctx.f.downstream(ctx.decl.name))
    if (auto* d = ctx.f.find(name);
        d && d->k->name == "storage" && d->settings.str("durability") == "power")
      mode = durability::power;
  return ctx.sys.spawn(source, broker_options(ctx), c, st, ctx.downstream, ctx.state_dir("spool"),
                       app, mode);
}

const kind source_kind{
  .name = "mqtt.source",
  .summary = "subscribes to MQTT topics and emits records (simatic-v1, json or raw)",
  .role = kind_role::source,
  .settings = &source_settings,
  .spawn = &spawn_source,
  .details = "Streams are ACTOR/CONNECTION/COLLECTION for simatic-v1 and ACTOR/TOPIC for json and "
             "raw. QoS 1/2 messages are acknowledged to the broker once spooled durably; records "
             "leave the spool when every downstream accepted them (a storage: committed). With "
             "simatic-v1, values whose ids the metadata does not know yet are kept (counted as "
             "unknown_ids) and decoded when the metadata arrives; the source publishes connector "
             "status (available, good, unavailable as last will) on ie/s/j/simatic/v1/APP/status.",
  .editable = true,
};

FABRIK_REGISTER_KIND(source_kind);

} // namespace
} // namespace fabrik::mqtt
