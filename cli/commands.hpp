#pragma once
// Subcommands of the `fabrik` binary. Each takes its own arguments (without the
// subcommand name) and returns the process exit code: 0 ok, 1 user error, 2 internal error.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace fabrik::cli {

using args = std::vector<std::string>;

int run(const args& a);
int check(const args& a);
int kinds(const args& a);
int store(const args& a);
int package(const args& a);
int workflows(const args& a); ///< cli/workflows_cmd.cpp: stored package versions
int runs(const args& a);      ///< cli/workflows_cmd.cpp: stored training runs
int train(const args& a);     ///< cli/train_cmd.cpp: start a run in a running engine

/// `fabrik check FILE.zip`: validates a workflow package (cli/package_cmd.cpp).
int check_package(const std::string& file);

/// The data directory a command works on: `data_dir` when given (--data-dir), else data/
/// beside the flow file (what `fabrik run FLOW` uses). Absolute.
std::filesystem::path data_dir_of(const std::string& flow_file,
                                  const std::optional<std::string>& data_dir);

/// Prints "fabrik: REASON" to stderr and returns `code`.
int fail(int code, const std::string& reason);

/// True when `a` holds -h or --help.
bool wants_help(const args& a);

} // namespace fabrik::cli
