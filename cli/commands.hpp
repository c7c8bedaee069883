#pragma once
// Subcommands of the `fabrik` binary. Each takes its own arguments (without the
// subcommand name) and returns the process exit code: 0 ok, 1 user error, 2 internal error.

#include "flows/flow.hpp"

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace fabrik::cli {

using args = std::vector<std::string>;

int run(const args& a);
int check(const args& a);
int kinds(const args& a);
int store(const args& a);
int package(const args& a);
int workflows(const args& a); ///< cli/workflows_cmd.cpp: stored package versions
int runs(const args& a); ///< cli/workflows_cmd.cpp: stored training runs
int train(const args& a); ///< cli/train_cmd.cpp: start a run in a running engine
int certs(const args& a); ///< cli/certs_cmd.cpp: a test CA and node certificates

/// `fabrik check FILE.zip`: validates a workflow package (cli/package_cmd.cpp).
int check_package(const std::string& file);

/// The data directory a command works on: `data_dir` when given (--data-dir), else data/
/// beside the flow file (what `fabrik run FLOW` uses), or data/NODE for the engine of one
/// node (`fabrik run FLOW --node NODE`: nodes of one flow may share a machine). Absolute.
std::filesystem::path data_dir_of(const std::string& flow_file,
                                  const std::optional<std::string>& data_dir,
                                  const std::string& node = "");

/// Loads a flow, printing every error (and warning, with `print_warnings`) to stderr;
/// nullopt when it has errors.
std::optional<flow> load(const std::string& file, bool print_warnings);

/// Prints "fabrik: REASON" to stderr and returns `code`.
int fail(int code, const std::string& reason);

/// True when `a` holds -h or --help.
bool wants_help(const args& a);

/// A subcommand's arguments: options that take a value (`--opt V`, `--opt=V`; V is taken
/// as it is, even when it starts with '-'), flags, and the positionals in order.
struct command_line {
  std::map<std::string, std::string, std::less<>> options;
  std::set<std::string, std::less<>> flags;
  std::vector<std::string> positionals;

  std::optional<std::string> option(std::string_view name) const;
  bool flag(std::string_view name) const { return flags.contains(name); }
};

/// Parses the arguments of command `cmd` ("store"), which takes the options `valued` and
/// the flags `flags`. nullopt after printing why not ("unknown option --x; see fabrik
/// store --help", "--limit needs a value; ...").
std::optional<command_line> parse_command_line(const args& a, const std::string& cmd,
                                               const std::vector<std::string_view>& valued,
                                               const std::vector<std::string_view>& flags = {});

} // namespace fabrik::cli
