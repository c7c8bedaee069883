#pragma once
// A package version deployed in a worker process, and the training runs that give it a
// model. CAF-free: the workflow actor runs these on a thread of its own so that a new
// version or a retrained model is prepared in a second worker while the first one keeps
// serving; the actor swaps them between two batches.

#include "core/record.hpp"
#include "runtime/registry.hpp"
#include "runtime/worker_client.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fabrik {

/// A package version loaded in a worker, with the model it serves (if any).
struct deployment {
  package_version version;
  workflow_manifest manifest;
  worker_client worker;
  std::string model_id; ///< full sha256 of the serving model; empty: none loaded
  run_measurements deployed; ///< deploy_wall / deploy_cpu of starting it
};

/// The manifest's parameter defaults overridden by the flow's `params:` (text as written
/// in YAML, converted to the default's type). Appends one message per unknown name or
/// unconvertible value to `errors`.
nlohmann::json effective_params(const workflow_manifest& m,
                                const std::map<std::string, std::string>& overrides,
                                std::vector<std::string>& errors);

/// A record's value as a model input: numbers as they are, booleans 0/1, else NaN.
double as_number(const value* v);
/// Appends the manifest's inputs of `r` to `out`, in input order.
void append_inputs(const workflow_manifest& m, const record& r, std::vector<double>& out);
/// The manifest's image inputs of `r`: views into its bytes fields, with the width, height
/// and pixel_format fields of the same record (docs/workflows.md, "Images").
void append_images(const workflow_manifest& m, const record& r, std::vector<worker::image>& out);
/// Records as consecutive rows (training data, and samples without windows). Images are
/// views into `records`: keep them alive as long as the dataset.
worker::dataset to_dataset(const workflow_manifest& m, const std::vector<record>& records);

/// Where training data comes from and how much of it.
struct train_selection {
  std::string storage; ///< storage actor name (for messages)
  std::vector<std::string> streams; ///< concatenated in this order, each in time order
  uint64_t last = 100000; ///< newest N records of each stream
  int64_t since = 0; ///< ns; > 0: only records newer than now - since
  int64_t from = INT64_MIN, to = INT64_MAX; ///< absolute source-time bounds
  uint64_t min_records = 1; ///< fewer: the run waits (automatic) or fails (manual)
  std::string label; ///< the label field; empty: the manifest's
  /// "pcb/Line1 last 20000 since 7d" for run records and logs.
  std::string describe() const;
};

/// `base` with the overrides of one run (the web UI's train form, `fabrik train`): a JSON
/// object with any of stream (text or list), last, since ("7d"), from, to (times),
/// label, min_records. ec::invalid_argument naming the key for anything else or a bad value.
expected<train_selection> with_overrides(train_selection base, const nlohmann::json& j);

/// Reads one stream's records for training (the actor supplies a CAF request).
using fetch_fn = std::function<expected<std::vector<record>>(
  const std::string& stream, int64_t from, int64_t to, uint64_t last)>;

/// What a background job needs.
struct job_request {
  std::string actor;
  std::shared_ptr<registry> reg;
  package_version version; ///< what to deploy (ignored when `reuse` is set)
  std::unique_ptr<deployment> reuse; ///< a deployed, not yet serving worker to continue with
  std::filesystem::path work_dir; ///< DATA_DIR/workflows/ACTOR: extracted packages
  worker_options worker;
  /// The flow's `params:` overrides; the job types them by the manifest it deploys.
  std::map<std::string, std::string> params;
  std::chrono::milliseconds load_timeout{600000}, train_timeout{600000};
  bool stored_model = true; ///< serve the model stored for (actor, version) when there is one
  bool train = false; ///< the flow trains this workflow: it needs a model to serve
  bool train_now = false; ///< train when no stored model was loaded (else: wait for a run)
  train_selection data;
  fetch_fn fetch;
  uint64_t run_id = 0; ///< an already begun run (manual); 0: begin one when training starts
  std::string trigger; ///< on_deploy, manual, schedule, new_version
  double tdp_w = 85;
  /// The pid of the worker the job is using, for a shutdown that cannot wait.
  std::shared_ptr<std::atomic<pid_t>> pid;
};

struct job_result {
  enum class outcome {
    ready, ///< `deployment` can serve: it has a model, or needs none
    waiting, ///< deployed but not enough training data yet: try again later
    failed, ///< see `message`; `deployment` may still hold a usable worker
  };
  outcome result = outcome::failed;
  std::unique_ptr<deployment> deployed;
  std::string message; ///< why waiting or failed; what happened when ready
  uint64_t run_id = 0; ///< the run stored, if training started
};

/// Deploys (unless reusing), loads a stored model or trains, all blocking. Never throws.
job_result run_job(job_request req);

} // namespace fabrik
