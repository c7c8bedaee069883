#pragma once
// A small RAII wrapper over aravis 0.8 (GenICam cameras: GigE Vision, USB3 Vision, and
// aravis's in-process Fake interface). No actor code.
//
// Threads: aravis fills buffers on its stream thread. Our "new-buffer" handler only moves
// the filled buffer into a bounded ring and calls `on_frame`; the consumer (the actor)
// copies frames out with `take` and gives the buffers back to aravis. When the ring is
// full, the oldest frame's buffer goes straight back to aravis and is counted as dropped:
// the camera never waits for fabrik, and what fabrik gets is the newest frames.

#include "core/error.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fabrik::genicam {

struct camera_options {
  std::string id; ///< aravis device id; empty: the first camera found
  bool fake_interface = false; ///< enable aravis's in-process Fake interface (Fake_1)
  bool packet_socket = false; ///< GigE Vision: aravis's packet socket (root, real NICs)
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  std::string pixel_format; ///< GenICam name (Mono8, Mono16, RGB8, ...); empty: keep
  std::optional<double> exposure_us; ///< ExposureTime, microseconds
  std::optional<double> frame_rate; ///< AcquisitionFrameRate, Hz
  std::string trigger; ///< "": keep; "off": free run; else TriggerSource (Software, Line1)
  /// Any GenICam feature by name, value as text, set in this order after the above.
  std::vector<std::pair<std::string, std::string>> features;
  size_t queue = 32; ///< frames held for the consumer; beyond, the oldest is dropped
  size_t decimation = 1; ///< keep one frame in N
};

/// One image, copied out of aravis's buffer.
struct frame {
  std::string data; ///< the image bytes, as the camera sent them
  int64_t width = 0;
  int64_t height = 0;
  std::string pixel_format; ///< GenICam name (Mono8), or 0x... when the camera has no name for it
  uint64_t frame_id = 0; ///< the camera's block id (GigE Vision wraps at 65535)
  uint64_t camera_time = 0; ///< the camera's timestamp, ns (its own clock)
  int64_t system_time = 0; ///< when the host received it, ns since the epoch, UTC
};

/// Counters, readable from any thread.
struct camera_counters {
  uint64_t received = 0; ///< complete frames handed over by aravis
  uint64_t dropped = 0; ///< oldest frames dropped because the consumer fell behind
  uint64_t decimated = 0; ///< frames skipped by decimation
  uint64_t incomplete = 0; ///< buffers aravis reported as failed (missing packets, timeout)
  uint64_t underruns = 0; ///< frames aravis lost for lack of a buffer (should stay 0)
  uint64_t missing_packets = 0; ///< GigE Vision packets that did not arrive in time
  uint64_t resent_packets = 0; ///< of those, the ones the camera sent again on request
  size_t queued = 0; ///< frames in the ring now
};

class camera {
public:
  /// Finds and opens the camera; ec::not_found when there is none (or none with that id).
  static expected<std::unique_ptr<camera>> open(const camera_options& opts);
  ~camera();
  camera(const camera&) = delete;
  camera& operator=(const camera&) = delete;

  /// The device id aravis knows it by (Aravis-Fake-GV01, Fake_1).
  const std::string& id() const { return id_; }

  /// Sets the options' features. Returns one message per feature that could not be set
  /// ("feature 'Foo': ..."); the others are set all the same.
  std::vector<std::string> configure();

  /// Allocates buffers, starts the stream thread and the acquisition. `on_frame` runs on
  /// aravis's stream thread after a frame entered the ring; `on_lost` when the device
  /// stops answering (heartbeat thread). Both must only hand over (post a message).
  expected<void> start(std::function<void()> on_frame, std::function<void()> on_lost);

  /// Copies up to `max` frames out of the ring, oldest first, and gives their buffers
  /// back to aravis.
  std::vector<frame> take(size_t max);

  camera_counters counters() const;
  /// The width x height x pixel format the camera streams now (after configure).
  std::string geometry() const;

  struct impl;

private:
  explicit camera(std::unique_ptr<impl> p);
  std::unique_ptr<impl> p_;
  std::string id_;
};

/// Device ids aravis finds now (all enabled interfaces).
std::vector<std::string> list_devices(bool fake_interface);

} // namespace fabrik::genicam
