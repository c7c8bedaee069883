#pragma once
// The embedded CPython of the fabrik-worker process: initialised once per process (a second
// initialisation breaks numpy) and never finalised (the worker leaves with _exit, so user
// threads cannot hang it at shutdown). The C++ side only moves frames; the Python half of
// the worker loop (imports, calls into user code, log capture, tracebacks) is a bootstrap
// module compiled into python.cpp. Only the worker links this; no CAF, no engine code.

#include "core/error.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fabrik::worker {

/// What the worker loop sends back for one request.
struct python_reply {
  std::string_view frame; ///< a complete frame; valid until the next request
  bool exit_after = false; ///< the worker must exit once it is sent (MemoryError, refusal)
};

/// The interpreter. Only one may exist per process; all calls come from the main thread.
class python {
public:
  /// Initialises CPython (isolated: no user site, environment ignored; Debian's
  /// dist-packages are on sys.path for numpy and scikit-learn) and loads the bootstrap,
  /// which will answer hello with `protocol` as its version.
  static expected<python> start(const char* argv0, uint32_t protocol);

  python(python&& other) noexcept;
  python& operator=(python&&) = delete;
  python(const python&) = delete;
  ~python();

  /// Allocates the buffer for the next request's payload (a Python bytearray, so numpy
  /// can use the bytes in place); nullptr when it cannot be allocated.
  char* new_request(size_t size);

  /// Handles the request whose payload was read into the last new_request buffer.
  /// Never fails: errors in user code become error frames; a failure of the bootstrap
  /// itself is returned as ec::internal and the worker should exit.
  expected<python_reply> handle(uint8_t type);

  /// Releases the GIL for a blocking call (socket I/O), so user threads keep running.
  class unlocked {
  public:
    unlocked();
    ~unlocked();
    unlocked(const unlocked&) = delete;
    unlocked& operator=(const unlocked&) = delete;

  private:
    void* state_;
  };

private:
  python() = default;
  void* handle_fn_ = nullptr; // PyObject*: the bootstrap's handle(type, payload)
  void* request_ = nullptr; // PyObject*: the bytearray of the current request
  void* reply_ = nullptr; // PyObject*: the last reply (kept alive while it is sent)
};

} // namespace fabrik::worker
