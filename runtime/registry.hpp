#pragma once
// The workflow registry: package versions, trained models and training runs, kept in the
// engine's own LMDB at DATA_DIR/registry (docs/workflows.md, "Versions, models and runs").
// CAF-free: the workflow actors, the watched directory, `fabrik workflows` / `fabrik runs`
// and the tests all use it. Safe to use from several threads of one process (LMDB
// serializes writers); a read-only registry may be open in another process beside the
// engine's writer.

#include "core/error.hpp"
#include "runtime/package.hpp"
#include "runtime/protocol.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik {

/// Version of the registry's LMDB layout; checked at open.
constexpr uint32_t registry_layout_version = 1;
/// Initial size of the registry's LMDB map; it doubles whenever a write needs more.
constexpr int64_t registry_initial_map_size = 4 << 20;

/// One stored version of a package: each distinct content (sha256) is a version.
struct package_version {
  std::string name; ///< the manifest's name
  std::string version; ///< the manifest's version string (two contents may share one)
  uint64_t seq = 0; ///< 1, 2, 3... per name, in order of arrival
  std::string sha256; ///< content hash (package_info::sha256)
  std::string source; ///< where it came from: a file name, "upload", a path
  int64_t added = 0; ///< ns since the epoch
  uint64_t size = 0; ///< bytes of the zip
};

/// A trained model artifact and where it came from.
struct model_record {
  std::string id; ///< sha256 of the artifact's bytes, lowercase hex
  std::string workflow; ///< package name
  std::string package_sha256; ///< the package version that trained it
  std::string actor; ///< the workflow actor that trained it
  uint64_t run = 0; ///< the training run that made it
  int64_t created = 0; ///< ns since the epoch
  worker::model_artifact artifact; ///< bytes, format, and the versions it was trained with
};

/// A model as the registry stores it (a JSON header, then the artifact's bytes): also how
/// a model crosses from the node that trained it to one that serves it.
std::string encode_model(const model_record& m);
expected<model_record> decode_model(std::string_view id, std::string_view value,
                                    bool with_bytes = true);

/// What a run measured (docs/workflows.md, "Measurements"). Times in ns; 0 when not measured.
struct run_measurements {
  int64_t deploy_wall = 0; ///< starting the worker and importing the package
  int64_t deploy_cpu = 0;
  int64_t train_wall = 0; ///< reading the data and train() in the worker
  int64_t train_cpu = 0;
  double peak_cpu = 0; ///< highest CPU use of the worker, 1.0 = one core
  uint64_t peak_rss = 0; ///< bytes
  double energy_j = 0; ///< estimated energy of the whole run, joules
  std::string energy_method; ///< "rapl" or "tdp" (TDP x utilisation + RAM)
};

/// One training run.
struct run_record {
  uint64_t id = 0; ///< assigned by begin_run: 1, 2, 3... across the registry
  std::string actor; ///< the workflow actor
  std::string workflow; ///< package name
  std::string version; ///< package version string
  std::string package_sha256;
  std::string trigger; ///< on_deploy, manual, schedule, new_version
  std::string status; ///< running, succeeded, failed, interrupted
  std::string error; ///< why it failed (one line, then the traceback)
  int64_t started = 0; ///< ns since the epoch
  int64_t finished = 0; ///< 0 while running
  uint64_t rows = 0; ///< samples trained on
  std::string data; ///< the selection, as a human reads it: "pcb/Line1 last 20000"
  std::string model_id; ///< the model it made, when it succeeded
  run_measurements m;
  std::vector<std::string> logs; ///< the workflow's own output (print, logging), bounded
};

/// A run as JSON (what the registry stores, the control socket and the web API answer):
/// every field of run_record by its name, measurements under "m".
nlohmann::json to_json(const run_record& r);
/// The inverse of to_json; missing fields keep their defaults.
run_record run_from_json(const nlohmann::json& j);
/// One line a person reads: "run 12 classifier (pcb-classifier 1.0.0): succeeded, 3000 rows
/// of pcb/Line1 last 20000, model 3f2a..., train 1.2 s (CPU 1.1 s), deploy 0.4 s, peak CPU
/// 98%, peak RSS 120 MiB, energy 35 J (tdp)"; a failed run ends with its error's first line.
std::string describe_run(const run_record& r);
/// A duration as describe_run writes it: "0.4 ms", "340 ms", "1.2 s", "2 min 5 s".
std::string describe_duration(int64_t ns);
/// Energy as describe_run writes it: "35 J", "12.3 kJ" (kJ above 10 kJ).
std::string describe_energy(double joules);

struct add_package_result {
  package_version version;
  bool added = false; ///< false: this content was already stored (the existing version)
};

class registry {
public:
  ~registry();
  registry(registry&&) noexcept;
  registry& operator=(registry&&) noexcept;

  /// Opens or creates DIR (a directory holding the LMDB files). A writer marks runs left
  /// `running` by a previous process as `interrupted`. ec::version_mismatch for another
  /// layout version (naming both); read_only never creates or writes anything.
  static expected<registry> open(const std::filesystem::path& dir, bool read_only = false);

  // -- packages ---------------------------------------------------------------------------

  /// Validates the zip (read_package_bytes) and stores it as a new version of its
  /// manifest's name, unless the same content is already stored. Errors of a bad package
  /// are read_package's (ec::parse_error, messages naming `source`).
  expected<add_package_result> add_package(std::string_view zip, const std::string& source);

  /// Every version of `name` (all names when empty), by name then seq.
  expected<std::vector<package_version>> versions(std::string_view name = {}) const;

  /// The version to deploy: the newest of `name`, or, with `pin`, the newest whose version
  /// string equals `pin`, or whose sha256 starts with `pin` (at least 8 hex digits).
  /// ec::not_found saying what exists when nothing matches.
  expected<package_version> find(std::string_view name, std::string_view pin = {}) const;

  /// The zip bytes of a stored version.
  expected<std::string> package_bytes(std::string_view sha256) const;

  // -- models -----------------------------------------------------------------------------

  /// Stores a model (its id is computed from the artifact's bytes and returned).
  expected<std::string> put_model(model_record m);
  expected<model_record> model(std::string_view id) const;
  /// Models trained by `actor` (all actors when empty), newest first, without their bytes.
  expected<std::vector<model_record>> models(std::string_view actor = {}) const;

  /// The model an actor serves for a package version, so a restart serves it again.
  expected<void> set_serving(std::string_view actor, std::string_view package_sha256,
                             std::string_view model_id);
  /// nullopt when that actor never served a model for that package version.
  expected<std::optional<std::string>> serving(std::string_view actor,
                                               std::string_view package_sha256) const;

  // -- runs -------------------------------------------------------------------------------

  /// Stores a new run (status `running` unless set) and returns its id.
  expected<uint64_t> begin_run(run_record r);
  /// Replaces the stored run with the same id.
  expected<void> update_run(const run_record& r);
  expected<run_record> run(uint64_t id) const;
  /// Runs of `actor` (all when empty), newest first, at most `limit`.
  expected<std::vector<run_record>> runs(std::string_view actor = {}, size_t limit = 100) const;

private:
  struct impl;
  explicit registry(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace fabrik
