#pragma once
// The engine's side of a Python worker: starts a fabrik-worker process, talks the worker
// protocol (runtime/protocol.hpp) to it, and turns every way a worker can fail (exception,
// crash, exit, hang, memory blow-up) into an error value that says what happened. No actor
// code: the workflow actor owns one client per worker and calls it from a thread that may
// block (every call blocks until the reply, the timeout, or the worker's death).
//
// After a call fails with the worker dead (alive() is false), restart() starts a new
// process and replays the last load, parameters and model; backoff is the caller's.

#include "core/error.hpp"
#include "runtime/package.hpp"
#include "runtime/protocol.hpp"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fabrik {

/// How to start a worker.
struct worker_options {
  /// The fabrik-worker executable; empty: $FABRIK_WORKER, else fabrik-worker beside the
  /// running executable (/proc/self/exe).
  std::filesystem::path binary;
  /// Address-space limit of the worker (RLIMIT_AS), bytes; 0: none. A Python allocation
  /// over it raises MemoryError in user code.
  uint64_t memory_limit = 2ull << 30;
  /// Time for the process to start Python, import numpy and answer hello.
  std::chrono::milliseconds start_timeout{30000};
  /// Bytes of the worker's stderr kept for error messages (crash dumps, C-level output).
  size_t stderr_tail = 16 * 1024;
  /// Testing only: the protocol version the client announces in hello (0: the real one).
  uint32_t test_client_protocol = 0;
  /// Testing only: the protocol version the worker is told to claim (0: the real one).
  uint32_t test_worker_protocol = 0;
};

/// What a worker answers to hello.
struct worker_info {
  uint32_t protocol = 0;
  pid_t pid = 0;
  worker::versions versions; ///< Python, numpy and scikit-learn of the worker
};

/// The package a worker runs.
struct load_request {
  std::filesystem::path package_dir; ///< an extracted package
  std::string entry; ///< entry module: `model`, `pkg.model`
  workflow_kind kind = workflow_kind::fabrik;
  nlohmann::json params = nlohmann::json::object(); ///< the workflow's parameters
};

/// Measurements of one call.
struct call_stats {
  std::chrono::nanoseconds wall{0}; ///< round trip as the engine saw it
  std::chrono::nanoseconds worker_wall{0}; ///< handling time inside the worker
  std::chrono::nanoseconds cpu{0}; ///< worker CPU time, all threads (user + system)
  uint64_t peak_rss = 0; ///< worker peak RSS during the call, bytes; 0: unknown
  /// Worker's highest CPU use over 200 ms intervals of the call (a shorter call: its
  /// average), 1.0 = one core busy.
  double peak_cpu = 0;
};

/// What every call brings back besides its result.
struct call_report {
  std::vector<std::string> logs; ///< print() and logging output of user code, bounded
  size_t logs_dropped = 0; ///< lines over the bound that were dropped
  std::string stderr_output; ///< what the process wrote to its stderr meanwhile (C level)
  call_stats stats;
};

struct load_result {
  std::vector<std::string> functions; ///< the contract functions the entry module defines
  call_report report;
};

struct train_result {
  worker::model_artifact model; ///< bytes, format, and the versions it was trained with
  call_report report;
};

struct predict_result {
  std::vector<nlohmann::json> outputs; ///< one JSON object per sample, in sample order
  bool batch = false; ///< predict_batch() was used (else predict())
  call_report report;
};

struct process_result {
  std::optional<nlohmann::json> output; ///< nullopt: process_input() returned None
  call_report report;
};

/// Why the last call failed.
enum class failure_kind {
  none, ///< the last call succeeded
  python_error, ///< user code raised (the worker lives on, except after MemoryError)
  crashed, ///< the worker was killed by a signal (segfault, OOM killer)
  exited, ///< the worker exited (os._exit, a fatal worker error)
  timeout, ///< no reply in time: the worker was killed
  refused, ///< the worker refused the request (version mismatch, malformed request)
  not_running, ///< no worker process: call restart()
  spawn_failed, ///< the worker binary could not be started
};

const char* to_string(failure_kind k);

/// Details of the last failed call; the error value holds the one-line reason.
struct call_failure {
  failure_kind kind = failure_kind::none;
  std::string operation; ///< "predict", "train", ...
  std::string type; ///< Python exception type ("ValueError"), for python_error
  std::string message; ///< exception message, or what happened to the process
  std::string traceback; ///< Python traceback (user frames only), or the worker's stack dump
  int exit_status = -1; ///< for exited
  int signal = 0; ///< for crashed (and the SIGKILL of a timeout)
  call_report report; ///< logs and stats up to the failure, stderr of the worker
};

/// One fabrik-worker process. Move-only; the destructor stops the process (and its group).
class worker_client {
public:
  /// Starts a worker and exchanges hello: ec::version_mismatch when the worker speaks
  /// another protocol version (naming both), ec::not_found without a worker binary,
  /// ec::unavailable when it dies or does not answer within start_timeout.
  static expected<worker_client> start(worker_options options = {});

  worker_client(worker_client&&) noexcept;
  worker_client& operator=(worker_client&&) noexcept;
  worker_client(const worker_client&) = delete;
  worker_client& operator=(const worker_client&) = delete;
  ~worker_client();

  // -- calls ----------------------------------------------------------------------------
  // Each call fails with: ec::invalid_argument when user code raised (type, message and
  // traceback in last_failure()); ec::unavailable when the worker crashed, exited or timed
  // out (it is dead then, see alive()); ec::version_mismatch / ec::parse_error when the
  // worker refused or broke the protocol.

  /// The hello answer of the running worker.
  const worker_info& info() const;
  /// Exchanges hello again (a liveness check).
  expected<worker_info> hello(std::chrono::milliseconds timeout);

  /// Imports the package's entry module (once per worker) and, when defined, calls
  /// update_parameters(params). Remembered for restart().
  expected<load_result> load(load_request request, std::chrono::milliseconds timeout);

  /// train(dataset, params) in the worker; the model comes back pickled (or as the bytes
  /// train() returned) with the versions it was trained with. The serving model of this
  /// worker is not changed.
  expected<train_result> train(const worker::dataset& data, std::chrono::milliseconds timeout);

  /// Makes `model` the one predict() uses, sending it at once. ec::version_mismatch
  /// (naming both sides) when it was trained under other Python/numpy/sklearn versions.
  /// Remembered for restart(); on failure the previous model stays in use.
  expected<call_report> load_model(worker::model_artifact model, std::chrono::milliseconds timeout);

  /// Predicts every sample with the loaded model (None when none was loaded):
  /// predict_batch(model, samples) when the workflow defines it and there is more than one
  /// sample, else predict(model, sample) per sample.
  expected<predict_result> predict(const worker::dataset& samples,
                                   std::chrono::milliseconds timeout);

  /// process_input(data) of a process_input workflow.
  expected<process_result> process_input(const nlohmann::json& data,
                                         std::chrono::milliseconds timeout);

  /// update_parameters(params) when the workflow defines it; later train() calls get the
  /// new parameters. Remembered for restart().
  expected<call_report> update_parameters(nlohmann::json params, std::chrono::milliseconds timeout);

  // -- process --------------------------------------------------------------------------

  /// False once the worker died, timed out or was told to stop.
  bool alive() const;
  pid_t pid() const;
  /// Kills the worker if it still runs, starts a new one, and replays the last load (with
  /// the current parameters) and model. `timeout` bounds each replayed call.
  expected<void> restart(std::chrono::milliseconds timeout);
  /// Closes the socket and waits briefly for the worker to exit; kills it otherwise.
  void stop();

  /// Details of the last failed call (kind none after a success).
  const call_failure& last_failure() const;

private:
  struct impl;
  explicit worker_client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// Where start() looks for the worker executable when options.binary is empty.
std::filesystem::path default_worker_binary();

} // namespace fabrik
