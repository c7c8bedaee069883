#pragma once
// Flow files: loading and validating a YAML flow before anything is spawned.
// docs/flow-format.md is the user-facing description of what this accepts.

#include "core/settings.hpp"
#include "flows/kind.hpp"

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fabrik {

struct actor_decl {
  std::string name;
  std::string file; ///< where it is defined, for diagnostics: the flow file, or its fragment
  const kind* k = nullptr;
  std::string node; ///< `on:`; empty = the default node
  config settings;
  int line = 0;
  int column = 0;
  /// Where each top-level setting's value is written (line, column). Empty for an actor of
  /// the local fragment: its settings may come from two files.
  std::map<std::string, std::pair<int, int>> setting_at;
};

/// A kind check's finding about actor `a` ("actor 'NAME': MESSAGE"), placed at `setting`'s
/// value when the flow file writes it there, else at the actor.
diagnostic actor_diagnostic(const actor_decl& a, const std::string& file,
                            const std::string& setting, std::string message, bool warning = false);

struct wire_decl {
  std::string file; ///< where it is written: the flow file, or its fragment
  std::string from;
  std::string to;
  int line = 0;
  int column = 0;
};

struct flow {
  std::string name;
  std::filesystem::path file; ///< absolute path of the flow file
  std::filesystem::path dir; ///< its folder: relative paths resolve here
  /// NAME.local.yaml beside the flow file, which the web UI writes and loading merges (its
  /// actors add to or replace the flow file's, its wires add to them); always set, the
  /// file may not exist.
  std::filesystem::path local_file;
  std::vector<actor_decl> actors; ///< in file order
  std::vector<wire_decl> wires;
  /// Shared sections by section name, then entry name (brokers -> local -> settings).
  std::map<std::string, std::map<std::string, config>, std::less<>> sections;
  /// Where each entry of a named section is written ("nodes/edge" -> line), for diagnostics.
  std::map<std::string, yaml_position, std::less<>> entry_at;

  const actor_decl* find(std::string_view actor) const;
  /// Names of the actors wired out of / into `actor`.
  std::vector<std::string> downstream(std::string_view actor) const;
  std::vector<std::string> upstream(std::string_view actor) const;
  /// Resolves a path from a setting against the flow file's folder.
  std::filesystem::path resolve(const std::string& path) const;
};

/// Loads and validates a flow file, merged with its NAME.local.yaml fragment when there is
/// one. Every problem (errors and warnings) goes to `diags` as FILE:LINE:COL of the file it
/// is in; returns the flow only when there is no error.
std::optional<flow> load_flow(const std::filesystem::path& file, std::vector<diagnostic>& diags);

/// Same, from text (tests); `file` is used in diagnostics and for `dir`. `local_text`, when
/// given, is the fragment's text.
std::optional<flow> load_flow_text(const std::string& text, const std::filesystem::path& file,
                                   std::vector<diagnostic>& diags,
                                   const std::optional<std::string>& local_text = std::nullopt);

/// What a new version of a flow changes (a reload): actors new in it, gone from it,
/// to restart (kind, settings or outgoing wires changed, and every actor upstream of one
/// that restarts or appears: producers hold their consumers' handles), and the rest.
/// A change in a shared section (brokers, workflows) restarts every actor; `http` is not
/// compared (it applies at the next start).
struct flow_changes {
  std::vector<std::string> added, removed, restarted, unchanged;
  bool any() const { return !added.empty() || !removed.empty() || !restarted.empty(); }
};
flow_changes diff_flows(const flow& before, const flow& after);

/// The fragment's path for a flow file: pcb.yaml -> pcb.local.yaml.
std::filesystem::path local_file_of(const std::filesystem::path& flow_file);

} // namespace fabrik
