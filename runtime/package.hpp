#pragma once
// Workflow packages: a zip with a manifest (fabrik-workflow.yaml), Python sources and lib/
// for vendored pure-Python libraries. Reading validates everything a hostile zip could
// abuse (paths, links, sizes, bombs, encryption) before a single byte reaches the disk;
// extraction repeats the checks on the bytes it actually writes. docs/workflows.md
// describes the format. CAF-free: the watcher, the CLI and the tests all use it.

#include "core/error.hpp"
#include "core/settings.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fabrik {

// -- manifest --------------------------------------------------------------------------

/// The manifest's file name, at the zip root.
inline constexpr std::string_view manifest_file_name = "fabrik-workflow.yaml";

/// How the worker drives the entry module.
enum class workflow_kind {
  fabrik, ///< train(dataset, params) -> model; predict / predict_batch
  process_input, ///< Siemens AI Inference Server: process_input(data) -> dict | None
};

const char* to_string(workflow_kind k);

/// A parameter default: YAML null (None), a boolean, an integer, a number or a string.
using parameter_value = std::variant<std::monostate, bool, int64_t, double, std::string>;

/// The validated manifest, or the values derived for a Siemens package without one.
struct workflow_manifest {
  std::string name; ///< [a-z0-9_-]+, at most 64 characters
  std::string version; ///< [A-Za-z0-9._+-]+, at most 64 characters
  workflow_kind kind = workflow_kind::fabrik;
  std::string entry; ///< Python module name: `model`, `pkg.model`
  std::vector<std::string> inputs; ///< input fields the workflow needs, in order
  std::vector<std::string> images; ///< bytes fields passed as numpy images, in order
  std::vector<std::string> outputs;
  std::string label; ///< label field for training; empty: none
  std::map<std::string, parameter_value> parameters;
  std::string python; ///< minimum Python version ("3.11"); empty: any
  std::string description;
  bool from_manifest = true; ///< false: a Siemens zip without fabrik-workflow.yaml
};

/// The manifest's settings, as a settings table (validation and docs).
const settings_table& manifest_settings();

/// Parses and validates a manifest. `file` names it in diagnostics
/// ("pcb.zip!fabrik-workflow.yaml"); every problem is appended to `diags` as
/// FILE:LINE:COL. Checks that need the package's files (the entry module) are
/// read_package's. nullopt when an error was added.
std::optional<workflow_manifest> parse_manifest(std::string_view yaml, const std::string& file,
                                                std::vector<diagnostic>& diags);

// -- reading and extracting ------------------------------------------------------------

/// Bounds that keep a hostile zip from exhausting the machine.
struct package_limits {
  uint64_t max_entries = 10'000; ///< entries in the zip's directory
  uint64_t max_unpacked = 512ull << 20; ///< sum of all entries' bytes, counted
  uint64_t max_ratio = 200; ///< uncompressed : compressed, per entry
  uint64_t ratio_floor = 64ull << 10; ///< entries up to this size skip the ratio check
};

/// One file of a package.
struct package_entry {
  std::string name; ///< '/'-separated path inside the zip, as validated
  uint64_t size = 0;
};

/// What read_package learned about a valid package.
struct package_info {
  workflow_manifest manifest;
  /// Content hash, lowercase hex: sha256 over the regular files in byte-wise name order,
  /// each as NAME, a 0 byte, its size as 8 bytes big-endian, then its bytes. Directories
  /// and zip metadata (timestamps, compression, order) do not count: the same files give
  /// the same hash whatever tool zipped them.
  std::string sha256;
  std::vector<package_entry> entries; ///< regular files, sorted by name
  uint64_t unpacked_size = 0; ///< sum of entries' sizes
  std::string entry_file; ///< the entry module's file: model.py, pkg/__init__.py
};

/// Reads and validates the zip at `zip` without writing anything: every entry is
/// decompressed and counted, so lying sizes and bombs are caught here already. Errors
/// are one line per problem, each starting with the place (`pcb.zip: entry '../x': ...`,
/// `pcb.zip!fabrik-workflow.yaml:3:7: ...`); code parse_error for a bad package,
/// not_found / io_error when the file cannot be read.
expected<package_info> read_package(const std::filesystem::path& zip,
                                    const package_limits& limits = {});

/// As read_package, for a zip held in memory (e.g. from LMDB); `name` stands for the
/// file name in messages and, for a Siemens zip without manifest, gives the workflow name.
expected<package_info> read_package_bytes(std::string_view bytes, const std::string& name,
                                          const package_limits& limits = {});

/// Validates the zip at `zip` and extracts it into `dest`, which is created with mode
/// 0700 (an existing `dest` must be an empty directory, not a link). Files are created
/// with O_EXCL|O_NOFOLLOW below directory handles opened with O_NOFOLLOW, and every
/// limit is enforced on the bytes actually written. On any error everything written is
/// removed again (and `dest` too if this call created it). Returns what was extracted.
expected<package_info> extract_package(const std::filesystem::path& zip,
                                       const std::filesystem::path& dest,
                                       const package_limits& limits = {});

/// As extract_package, for a zip held in memory.
expected<package_info> extract_package_bytes(std::string_view bytes, const std::string& name,
                                             const std::filesystem::path& dest,
                                             const package_limits& limits = {});

// -- building --------------------------------------------------------------------------

/// Builds `out` from the package source directory `dir`: validates the manifest first,
/// zips the regular files in sorted order with fixed timestamps and attributes (the same
/// sources give the same bytes), skipping __pycache__, *.pyc, *.pyo, .git and `out`
/// itself, then validates the result with read_package. Symlinks and other non-regular
/// files in `dir` are refused. `out` is replaced atomically and removed if invalid.
expected<package_info> build_package(const std::filesystem::path& dir,
                                     const std::filesystem::path& out,
                                     const package_limits& limits = {});

// -- helpers ---------------------------------------------------------------------------

/// The bytes of a zip on disk, refusing anything over max_zip_size before reading it.
/// Errors name the file (not_found, io_error, invalid_argument when too large).
expected<std::string> read_zip_file(const std::filesystem::path& zip);
/// The largest zip the engine reads into memory.
inline constexpr uint64_t max_zip_size = 512ull << 20;

/// SHA-256 of `data`, lowercase hex.
std::string sha256_hex(std::string_view data);

/// True when `data` is valid UTF-8 (no overlong forms, surrogates or values > U+10FFFF).
bool valid_utf8(std::string_view data);

} // namespace fabrik
