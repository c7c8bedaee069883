// The `genicam.source` kind: streams frames from a GenICam camera (aravis) as records.
//
// aravis's stream thread only hands filled buffers to a bounded ring (camera.hpp) and
// wakes the actor; the actor copies frames out in batches as fast as its downstream
// takes them. When fabrik falls behind, the ring drops its oldest frame (counted) and
// the camera goes on at its own pace. Frames cannot be asked for again, so delivery is
// at most once: what the ring dropped is gone, and is counted as `dropped`.

#include "actors/emitter.hpp"
#include "actors/spawn.hpp"
#include "core/backoff.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "drivers/genicam/camera.hpp"
#include "flows/kind.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <cmath>

namespace fabrik::genicam {
namespace {

const settings_table source_settings{{
  {.name = "camera",
   .type = setting_type::string,
   .doc = "aravis device id (Aravis-Fake-GV01, or an IP address); default: the first camera found"},
  {.name = "fake_interface",
   .type = setting_type::boolean,
   .default_value = "false",
   .doc = "enable aravis's in-process Fake interface (camera Fake_1): tests and demos"},
  {.name = "packet_socket",
   .type = setting_type::boolean,
   .default_value = "false",
   .doc = "GigE Vision: let aravis read the stream with a packet socket (root only; faster "
          "on a real network card, blind to loopback)"},
  {.name = "width",
   .type = setting_type::integer,
   .doc = "Width in pixels; default: as the camera is",
   .min = 1,
   .max = 1 << 20},
  {.name = "height",
   .type = setting_type::integer,
   .doc = "Height in pixels; default: as the camera is",
   .min = 1,
   .max = 1 << 20},
  {.name = "pixel_format",
   .type = setting_type::string,
   .doc = "PixelFormat by its GenICam name (Mono8, Mono16, RGB8, BayerRG8...); default: as "
          "the camera is"},
  {.name = "exposure",
   .type = setting_type::duration,
   .doc = "ExposureTime (10ms, 500us); default: as the camera is",
   .min = 1},
  {.name = "frame_rate",
   .type = setting_type::number,
   .doc = "AcquisitionFrameRate in frames per second; default: as the camera is",
   .min = 0.001,
   .max = 1e6},
  {.name = "trigger",
   .type = setting_type::string,
   .doc = "off (free run), or a TriggerSource such as Line1 (TriggerMode On, FrameStart); "
          "default: as the camera is. fabrik sends no TriggerSoftware: Software waits for "
          "another program to send it"},
  {.name = "features",
   .type = setting_type::string_list,
   .doc = "any GenICam feature, as Name=value, set in this order after the settings above "
          "(e.g. [GainSelector=All, Gain=6])"},
  {.name = "decimation",
   .type = setting_type::integer,
   .default_value = "1",
   .doc = "keep one frame in N (the others are counted as decimated)",
   .min = 1,
   .max = 1000000},
  {.name = "queue",
   .type = setting_type::integer,
   .default_value = "32",
   .doc = "frames held for fabrik; when it falls behind, the oldest is dropped (counted), "
          "the camera is never held up. Memory: queue + 4 frames",
   .min = 1,
   .max = 100000},
  {.name = "batch_size",
   .type = setting_type::integer,
   .default_value = "8",
   .doc = "frames per batch on the wire",
   .min = 1,
   .max = 10000},
  {.name = "max_in_flight",
   .type = setting_type::integer,
   .default_value = "4",
   .doc = "batches sent downstream and not yet acknowledged",
   .min = 1,
   .max = 1000},
}};

/// "Name=value" -> (Name, value); nullopt when there is no '=' or no name.
std::optional<std::pair<std::string, std::string>> split_feature(const std::string& item) {
  auto eq = item.find('=');
  if (eq == std::string::npos || eq == 0)
    return std::nullopt;
  auto trim = [](std::string s) {
    auto b = s.find_first_not_of(" \t");
    auto e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string{} : s.substr(b, e - b + 1);
  };
  return std::pair{trim(item.substr(0, eq)), trim(item.substr(eq + 1))};
}

/// What aravis's threads and the actor share: only the actor's handle and a flag.
struct handoff {
  caf::actor self;
  std::atomic<bool> wake_pending{false};
  void wake() {
    if (!wake_pending.exchange(true))
      caf::anon_send(self, wake_atom::value);
  }
};

struct source_state {
  static inline const char* name = "genicam.source";
  camera_options opts;
  std::unique_ptr<camera> cam;
  std::shared_ptr<handoff> ho;
  uint64_t generation = 0; // of `cam`: a control-lost from an older camera is stale
  emitter em;
  size_t batch_size = 8;
  uint64_t arrival = 0;
  actor_status st;
  camera_counters past; // totals of the cameras before a reconnect
  uint64_t feature_errors = 0;
  uint64_t reconnects = 0;
  std::string stream;
  std::string geometry;
  log_limiter limiter;
  backoff retry{1, 30};
  bool stopping = false;
  caf::response_promise stop_promise;
};

using source_pointer = caf::stateful_actor<source_state>*;

void note_error(source_state& s, const std::string& what, bool always = false) {
  ++s.st.errors;
  s.st.last_error = what;
  if (always || s.limiter.allow())
    spdlog::warn("{}: {}", s.st.name, what);
}

camera_counters totals(const source_state& s) {
  auto c = s.past;
  if (s.cam) {
    auto now = s.cam->counters();
    c.received += now.received;
    c.dropped += now.dropped;
    c.decimated += now.decimated;
    c.incomplete += now.incomplete;
    c.underruns += now.underruns;
    c.missing_packets += now.missing_packets;
    c.resent_packets += now.resent_packets;
    c.queued = now.queued;
  }
  return c;
}

/// Closes the camera (stops its threads) and keeps its counters.
void close_camera(source_state& s) {
  if (!s.cam)
    return;
  auto c = totals(s);
  c.queued = 0;
  s.cam.reset();
  s.past = c;
  ++s.generation;
}

record to_record(source_state& s, frame& f) {
  record r;
  r.stream = s.stream;
  r.ingest_time = now_ns();
  r.time = f.system_time;
  if (!plausible_source_time(r.time, r.ingest_time)) {
    r.time = r.ingest_time;
    r.quality |= quality::time_replaced;
  }
  r.seq = ++s.arrival;
  r.fields.reserve(6);
  r.fields.push_back({"image", bytes{std::move(f.data)}});
  r.fields.push_back({"width", f.width});
  r.fields.push_back({"height", f.height});
  r.fields.push_back({"pixel_format", std::move(f.pixel_format)});
  r.fields.push_back({"frame_id", static_cast<int64_t>(f.frame_id)});
  r.fields.push_back({"camera_time", static_cast<int64_t>(f.camera_time)});
  return r;
}

void pump(source_pointer self) {
  auto& s = self->state;
  while (s.cam && s.em.can_send()) {
    auto frames = s.cam->take(s.batch_size);
    if (frames.empty())
      break;
    s.st.in += frames.size();
    record_batch batch;
    batch.records.reserve(frames.size());
    for (auto& f : frames)
      batch.records.push_back(to_record(s, f));
    auto n = batch.records.size();
    s.em.send(std::move(batch), [self, n] {
      self->state.st.out += n;
      pump(self);
    });
  }
  if (s.stopping && s.em.in_flight() == 0 && s.stop_promise.pending())
    s.stop_promise.deliver(true);
}

void connect(source_pointer self) {
  auto& s = self->state;
  if (s.stopping || s.cam)
    return;
  auto fail = [&](const std::string& what) {
    s.st.state = "degraded";
    auto delay = s.retry.next();
    note_error(s, what + "; retrying in " + std::to_string(delay.count()) + " s");
    self->delayed_send(self, delay, connect_atom::value);
  };
  auto cam = camera::open(s.opts);
  if (!cam) {
    fail(cam.err().message);
    return;
  }
  for (auto& problem : (*cam)->configure()) {
    // A feature the camera refuses is the flow's mistake: said once per connect, loudly,
    // and the camera streams with the rest.
    ++s.feature_errors;
    note_error(s, "camera " + (*cam)->id() + ": " + problem, true);
  }
  auto gen = ++s.generation;
  auto ho = s.ho;
  auto me = ho->self;
  auto started =
    (*cam)->start([ho] { ho->wake(); }, [me, gen] { caf::anon_send(me, tick_atom::value, gen); });
  if (!started) {
    fail(started.err().message);
    return;
  }
  s.cam = std::move(*cam);
  s.stream = s.st.name + "/" + s.cam->id();
  s.geometry = s.cam->geometry();
  s.st.state = "running";
  s.retry.reset();
  spdlog::info("{}: streaming from {} ({}), stream {}", s.st.name, s.cam->id(), s.geometry,
               s.stream);
}

caf::behavior source(source_pointer self, camera_options opts, size_t batch_size,
                     size_t max_in_flight, actor_status st,
                     std::vector<consumer_actor> downstream) {
  auto& s = self->state;
  s.st = std::move(st);
  s.opts = std::move(opts);
  s.batch_size = batch_size;
  s.em = emitter{self, std::move(downstream), max_in_flight, s.st.name};
  s.ho = std::make_shared<handoff>();
  s.ho->self = caf::actor_cast<caf::actor>(self);
  s.st.state = "starting";
  self->send(self, connect_atom::value);
  return {
    [=](connect_atom) { connect(self); },
    [=](wake_atom) {
      self->state.ho->wake_pending = false;
      pump(self);
    },
    [=](emitter::retry_fn& r) { r.fn(); },
    [=](tick_atom, uint64_t gen) {
      // The camera stopped answering (heartbeat lost): close it and open it again.
      auto& s = self->state;
      if (gen != s.generation || !s.cam || s.stopping)
        return;
      pump(self); // what the ring holds is still good
      auto id = s.cam->id();
      close_camera(s);
      ++s.reconnects;
      s.st.state = "degraded";
      note_error(s, "camera " + id + " stopped answering; reconnecting", true);
      self->delayed_send(self, s.retry.next(), connect_atom::value);
    },
    [=](stop_atom) -> caf::result<bool> {
      auto& s = self->state;
      s.stopping = true;
      s.st.state = "stopping";
      pump(self);
      close_camera(s);
      s.stop_promise = self->make_response_promise<bool>();
      pump(self);
      return s.stop_promise;
    },
    [=](status_atom) {
      auto& s = self->state;
      auto st = s.st;
      auto c = totals(s);
      st.queue = c.queued;
      st.details["camera"] = s.cam ? s.cam->id() : "(not connected)";
      st.details["geometry"] = s.geometry;
      st.details["received"] = std::to_string(c.received);
      st.details["dropped"] = std::to_string(c.dropped);
      st.details["decimated"] = std::to_string(c.decimated);
      st.details["incomplete"] = std::to_string(c.incomplete);
      st.details["underruns"] = std::to_string(c.underruns);
      st.details["missing_packets"] = std::to_string(c.missing_packets);
      st.details["resent_packets"] = std::to_string(c.resent_packets);
      st.details["feature_errors"] = std::to_string(s.feature_errors);
      st.details["reconnects"] = std::to_string(s.reconnects);
      st.details["in_flight_batches"] = std::to_string(s.em.in_flight());
      return st;
    },
  };
}

camera_options options_from(const config& c) {
  camera_options o;
  if (c.has("camera"))
    o.id = c.str("camera");
  o.fake_interface = c.boolean("fake_interface");
  o.packet_socket = c.boolean("packet_socket");
  if (c.has("width"))
    o.width = c.integer("width");
  if (c.has("height"))
    o.height = c.integer("height");
  if (c.has("pixel_format"))
    o.pixel_format = c.str("pixel_format");
  if (c.has("exposure"))
    o.exposure_us = static_cast<double>(c.integer("exposure")) / 1000.0;
  if (c.has("frame_rate"))
    o.frame_rate = c.number("frame_rate");
  if (c.has("trigger"))
    o.trigger = c.str("trigger");
  if (c.has("features"))
    for (auto& item : c.strings("features"))
      if (auto kv = split_feature(item))
        o.features.push_back(std::move(*kv));
  o.decimation = static_cast<size_t>(c.integer("decimation"));
  o.queue = static_cast<size_t>(c.integer("queue"));
  return o;
}

caf::actor spawn_source(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "genicam.source";
  return ctx.sys.spawn(source, options_from(c), static_cast<size_t>(c.integer("batch_size")),
                       static_cast<size_t>(c.integer("max_in_flight")), st, ctx.downstream);
}

void check_source(const flow&, const actor_decl& a, const std::string& file,
                  std::vector<diagnostic>& diags) {
  if (!a.settings.has("features"))
    return;
  for (auto& item : a.settings.strings("features"))
    if (!split_feature(item))
      diags.push_back(actor_diagnostic(a, file, "features",
                                       "features: '" + item + "' is not Name=value (e.g. Gain=6)"));
}

const kind source_kind{
  .name = "genicam.source",
  .summary = "streams frames from a GenICam camera (GigE Vision, USB3 Vision) through aravis",
  .role = kind_role::source,
  .settings = &source_settings,
  .spawn = &spawn_source,
  .details = "One record per frame on stream ACTOR/CAMERA_ID, with fields `image` (bytes, as the "
             "camera sent them), `width`, `height`, `pixel_format` (GenICam name), `frame_id` (the "
             "camera's block id) and `camera_time` (the camera's clock, ns); the record's time is "
             "when the host received the frame. aravis's stream thread only hands frames to a "
             "bounded queue: when fabrik falls behind, the oldest frame is dropped and counted "
             "(`dropped`), the camera is never held up. Frames are at most once: a camera cannot "
             "send a frame again. A feature the camera refuses (unknown name, bad value) is logged "
             "and counted (`feature_errors`) and the camera streams with the rest. A camera that "
             "stops answering is reopened with backoff (`reconnects`). Images fill disks fast: "
             "give their storage its own retention (see docs/records.md, \"Images\").",
  .check = &check_source,
};

FABRIK_REGISTER_KIND(source_kind);

} // namespace
} // namespace fabrik::genicam
