#include "drivers/genicam/camera.hpp"

#include <arv.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>

namespace fabrik::genicam {
namespace {

// Buffers aravis keeps for filling beyond the ring: a burst of frames must not find the
// stream without a buffer while the consumer copies.
constexpr size_t stream_slack = 4;

/// The message of a GError, freed; empty when there was none.
std::string take_error(GError*& err) {
  if (!err)
    return {};
  std::string msg = err->message ? err->message : "unknown aravis error";
  g_clear_error(&err);
  return msg;
}

// aravis keeps one device list for the process: two sources opening cameras at once
// must not update it under each other.
std::mutex& discovery_mutex() {
  static std::mutex m;
  return m;
}

void enable_fake_interface() {
  static std::once_flag once;
  std::call_once(once, [] { arv_enable_interface("Fake"); });
}

} // namespace

struct camera::impl {
  camera_options opts;
  ArvCamera* cam = nullptr;
  ArvStream* stream = nullptr;
  gulong lost_handler = 0;
  std::function<void()> on_frame;
  std::function<void()> on_lost;
  std::map<int64_t, std::string> format_names; // ArvPixelFormat -> GenICam name

  std::mutex mtx;
  std::deque<ArvBuffer*> ring; // filled buffers the consumer has not taken yet
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> decimated{0};
  std::atomic<uint64_t> incomplete{0};

  ~impl() {
    if (stream) {
      GError* err = nullptr;
      arv_camera_stop_acquisition(cam, &err);
      g_clear_error(&err);
      arv_stream_set_emit_signals(stream, FALSE);
      g_object_unref(stream); // joins the stream thread
    }
    if (lost_handler)
      g_signal_handler_disconnect(arv_camera_get_device(cam), lost_handler);
    for (auto* b : ring)
      g_object_unref(b);
    if (cam)
      g_object_unref(cam);
  }

  // aravis's stream thread: hand the buffer over, nothing more.
  static void new_buffer(ArvStream* s, gpointer user) {
    auto* p = static_cast<impl*>(user);
    ArvBuffer* b = arv_stream_try_pop_buffer(s);
    if (!b)
      return;
    if (arv_buffer_get_status(b) != ARV_BUFFER_STATUS_SUCCESS) {
      ++p->incomplete;
      arv_stream_push_buffer(s, b);
      return;
    }
    auto n = p->received++;
    if (p->opts.decimation > 1 && n % p->opts.decimation != 0) {
      ++p->decimated;
      arv_stream_push_buffer(s, b);
      return;
    }
    ArvBuffer* evicted = nullptr;
    {
      std::lock_guard lock{p->mtx};
      if (p->ring.size() >= p->opts.queue) {
        evicted = p->ring.front();
        p->ring.pop_front();
      }
      p->ring.push_back(b);
    }
    if (evicted) {
      ++p->dropped;
      arv_stream_push_buffer(s, evicted);
    }
    if (p->on_frame)
      p->on_frame();
  }

  // The device's heartbeat thread: the camera stopped answering.
  static void control_lost(ArvDevice*, gpointer user) {
    auto* p = static_cast<impl*>(user);
    if (p->on_lost)
      p->on_lost();
  }

  std::string format_name(ArvPixelFormat f) const {
    if (auto it = format_names.find(static_cast<int64_t>(f)); it != format_names.end())
      return it->second;
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(f));
    return hex;
  }
};

camera::camera(std::unique_ptr<impl> p) : p_(std::move(p)) {}
camera::~camera() = default;

namespace {
std::vector<std::string> device_ids() {
  arv_update_device_list();
  std::vector<std::string> ids;
  for (unsigned i = 0; i < arv_get_n_devices(); ++i)
    if (auto* id = arv_get_device_id(i))
      ids.emplace_back(id);
  return ids;
}
} // namespace

std::vector<std::string> list_devices(bool fake_interface) {
  if (fake_interface)
    enable_fake_interface();
  std::lock_guard lock{discovery_mutex()};
  return device_ids();
}

expected<std::unique_ptr<camera>> camera::open(const camera_options& opts) {
  if (opts.fake_interface)
    enable_fake_interface();
  // The first camera is looked up by id, so that the stream is named after the device
  // (its DeviceID feature is often only a serial number).
  std::lock_guard lock{discovery_mutex()};
  auto id = opts.id;
  if (id.empty()) {
    auto ids = device_ids();
    if (ids.empty())
      return make_error(ec::not_found, "no camera found");
    id = ids.front();
  }
  GError* err = nullptr;
  ArvCamera* cam = arv_camera_new(id.c_str(), &err);
  auto msg = take_error(err);
  if (!cam)
    return make_error(ec::not_found,
                      "camera '" + id + "' not found" + (msg.empty() ? "" : " (" + msg + ")"));
  auto p = std::make_unique<impl>();
  p->opts = opts;
  p->opts.queue = std::max<size_t>(opts.queue, 1);
  p->opts.decimation = std::max<size_t>(opts.decimation, 1);
  p->cam = cam;
  // A feature value out of its range is refused by the camera's own description (the
  // GenICam XML) instead of being written and silently clamped by the device.
  arv_camera_set_range_check_policy(cam, ARV_RANGE_CHECK_POLICY_ENABLE);
  std::unique_ptr<camera> c{new camera{std::move(p)}};
  c->id_ = id;
  return c;
}

std::vector<std::string> camera::configure() {
  auto& o = p_->opts;
  auto* cam = p_->cam;
  std::vector<std::string> problems;
  GError* err = nullptr;
  auto check = [&](const std::string& what) {
    if (auto msg = take_error(err); !msg.empty())
      problems.push_back(what + ": " + msg);
  };
  // Pixel format and size first: they decide the payload size and limit each other.
  if (!o.pixel_format.empty()) {
    arv_camera_set_pixel_format_from_string(cam, o.pixel_format.c_str(), &err);
    check("pixel_format '" + o.pixel_format + "'");
  }
  if (o.width) {
    arv_camera_set_integer(cam, "Width", *o.width, &err);
    check("width " + std::to_string(*o.width));
  }
  if (o.height) {
    arv_camera_set_integer(cam, "Height", *o.height, &err);
    check("height " + std::to_string(*o.height));
  }
  if (o.exposure_us) {
    arv_camera_set_exposure_time(cam, *o.exposure_us, &err);
    check("exposure " + std::to_string(*o.exposure_us) + " us");
  }
  if (!o.trigger.empty()) {
    if (o.trigger == "off")
      arv_camera_clear_triggers(cam, &err);
    else
      arv_camera_set_trigger(cam, o.trigger.c_str(), &err);
    check("trigger '" + o.trigger + "'");
  }
  // After the trigger: setting a trigger may switch the frame rate control off.
  if (o.frame_rate) {
    arv_camera_set_frame_rate(cam, *o.frame_rate, &err);
    check("frame_rate " + std::to_string(*o.frame_rate));
  }
  auto* dev = arv_camera_get_device(cam);
  for (auto& [name, text] : o.features) {
    auto where = "feature '" + name + "'";
    auto* node = arv_device_get_feature(dev, name.c_str());
    if (!node || !ARV_IS_GC_FEATURE_NODE(node)) {
      problems.push_back(where + ": no such feature on this camera");
      continue;
    }
    arv_gc_feature_node_set_value_from_string(ARV_GC_FEATURE_NODE(node), text.c_str(), &err);
    check(where + " = '" + text + "'");
  }
  // Names of the pixel formats this camera offers, for the frames' pixel_format field.
  guint n = 0;
  gint64* values = arv_camera_dup_available_pixel_formats(cam, &n, &err);
  take_error(err);
  guint n_names = 0;
  const char** names = arv_camera_dup_available_pixel_formats_as_strings(cam, &n_names, &err);
  take_error(err);
  if (values && names)
    for (guint i = 0; i < n && i < n_names; ++i)
      if (names[i])
        p_->format_names[values[i]] = names[i];
  g_free(values);
  g_free(names);
  auto current = arv_camera_get_pixel_format(cam, &err);
  take_error(err);
  if (const char* s = arv_camera_get_pixel_format_as_string(cam, &err); s)
    p_->format_names[static_cast<int64_t>(current)] = s;
  take_error(err);
  return problems;
}

std::string camera::geometry() const {
  GError* err = nullptr;
  auto w = arv_camera_get_integer(p_->cam, "Width", &err);
  take_error(err);
  auto h = arv_camera_get_integer(p_->cam, "Height", &err);
  take_error(err);
  auto f = arv_camera_get_pixel_format(p_->cam, &err);
  take_error(err);
  return std::to_string(w) + "x" + std::to_string(h) + " " + p_->format_name(f);
}

expected<void> camera::start(std::function<void()> on_frame, std::function<void()> on_lost) {
  auto& p = *p_;
  p.on_frame = std::move(on_frame);
  p.on_lost = std::move(on_lost);
  GError* err = nullptr;
  auto payload = arv_camera_get_payload(p.cam, &err);
  if (auto msg = take_error(err); !msg.empty() || payload == 0)
    return make_error(ec::io_error, "cannot read the payload size of " + id_ + ": "
                                      + (msg.empty() ? "0 bytes" : msg));
  if (arv_camera_is_gv_device(p.cam))
    arv_camera_gv_set_stream_options(p.cam, p.opts.packet_socket
                                              ? ARV_GV_STREAM_OPTION_NONE
                                              : ARV_GV_STREAM_OPTION_PACKET_SOCKET_DISABLED);
  p.stream = arv_camera_create_stream(p.cam, nullptr, nullptr, &err);
  if (!p.stream)
    return make_error(ec::io_error, "cannot open a stream from " + id_ + ": " + take_error(err));
  take_error(err);
  // A whole frame arrives as one burst of UDP packets: the socket buffer must hold it.
  if (ARV_IS_GV_STREAM(p.stream))
    g_object_set(p.stream, "socket-buffer", ARV_GV_STREAM_SOCKET_BUFFER_AUTO, nullptr);
  for (size_t i = 0; i < p.opts.queue + stream_slack; ++i)
    arv_stream_push_buffer(p.stream, arv_buffer_new_allocate(payload));
  g_signal_connect(p.stream, "new-buffer", G_CALLBACK(impl::new_buffer), &p);
  arv_stream_set_emit_signals(p.stream, TRUE);
  p.lost_handler = g_signal_connect(arv_camera_get_device(p.cam), "control-lost",
                                    G_CALLBACK(impl::control_lost), &p);
  arv_camera_set_acquisition_mode(p.cam, ARV_ACQUISITION_MODE_CONTINUOUS, &err);
  take_error(err); // some cameras know only continuous and have no such feature
  arv_camera_start_acquisition(p.cam, &err);
  if (auto msg = take_error(err); !msg.empty())
    return make_error(ec::io_error, "cannot start acquisition on " + id_ + ": " + msg);
  return {};
}

std::vector<frame> camera::take(size_t max) {
  auto& p = *p_;
  std::vector<ArvBuffer*> got;
  {
    std::lock_guard lock{p.mtx};
    while (!p.ring.empty() && got.size() < max) {
      got.push_back(p.ring.front());
      p.ring.pop_front();
    }
  }
  std::vector<frame> out;
  out.reserve(got.size());
  for (auto* b : got) {
    frame f;
    size_t size = 0;
    auto* data = static_cast<const char*>(arv_buffer_get_image_data(b, &size));
    if (data)
      f.data.assign(data, size); // the one copy: the buffer goes back to aravis at once
    f.width = arv_buffer_get_image_width(b);
    f.height = arv_buffer_get_image_height(b);
    f.pixel_format = p.format_name(arv_buffer_get_image_pixel_format(b));
    f.frame_id = arv_buffer_get_frame_id(b);
    f.camera_time = arv_buffer_get_timestamp(b);
    f.system_time = static_cast<int64_t>(arv_buffer_get_system_timestamp(b));
    arv_stream_push_buffer(p.stream, b);
    out.push_back(std::move(f));
  }
  return out;
}

camera_counters camera::counters() const {
  auto& p = *p_;
  camera_counters c;
  c.received = p.received;
  c.dropped = p.dropped;
  c.decimated = p.decimated;
  c.incomplete = p.incomplete;
  if (p.stream) {
    guint64 completed = 0, failures = 0, underruns = 0;
    arv_stream_get_statistics(p.stream, &completed, &failures, &underruns);
    c.underruns = underruns;
    // Names of aravis's GigE Vision stream infos; other streams report 0.
    c.missing_packets = arv_stream_get_info_uint64_by_name(p.stream, "n_missing_packets");
    c.resent_packets = arv_stream_get_info_uint64_by_name(p.stream, "n_resent_packets");
  }
  std::lock_guard lock{p.mtx};
  c.queued = p.ring.size();
  return c;
}

} // namespace fabrik::genicam
