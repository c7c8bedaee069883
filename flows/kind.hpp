#pragma once
// The kind registry: every actor kind registers itself from its own file with
// FABRIK_REGISTER_KIND, so adding a driver touches only its own folder.

#include "core/settings.hpp"

#include <string_view>
#include <vector>

namespace caf {
class actor;
}

namespace fabrik {

struct spawn_context; // actors/spawn.hpp: the actor system, settings, downstream handles
struct flow; // flows/flow.hpp
struct actor_decl;

/// Where a kind may sit on a wire.
enum class kind_role {
  source, ///< only outgoing wires (mqtt.source)
  sink, ///< only incoming wires (mqtt.sink, storage)
  stage, ///< both (workflow)
};

const char* to_string(kind_role r);

struct kind {
  std::string_view name; ///< as written in flow files: mqtt.source
  std::string_view summary; ///< one line for `fabrik kinds`
  kind_role role = kind_role::stage;
  const settings_table* settings = nullptr;
  caf::actor (*spawn)(spawn_context&) = nullptr;
  /// Optional longer text (markdown) for `fabrik kinds KIND` and docs/kinds.md.
  std::string_view details = {};
  /// Optional checks beyond the settings table, run by the flow loader once the whole flow
  /// is valid (references to other actors, files a setting names). Appends to `diags`.
  void (*check)(const flow& f, const actor_decl& a, const std::string& file,
                std::vector<diagnostic>& diags) = nullptr;
  /// Operators may add and edit actors of this kind on the web UI's Ingest page (written to
  /// the flow's NAME.local.yaml); the page builds its form from `settings`.
  bool editable = false;
};

/// A top-level section: named entries of shared settings (`brokers: {NAME: {...}}`), or,
/// when `single`, one settings object for the whole flow (`workflows: {watch: ...}`).
struct section {
  std::string_view name;
  std::string_view summary;
  const settings_table* settings = nullptr;
  /// One object, stored under the entry name "" and filled with defaults when absent.
  bool single = false;
};

void register_kind(const kind& k);
void register_section(const section& s);
const kind* find_kind(std::string_view name);
const section* find_section(std::string_view name);
/// Sorted by name.
std::vector<const kind*> all_kinds();
std::vector<const section*> all_sections();

/// The whole reference as markdown (what docs/kinds.md holds).
std::string kinds_markdown();
/// One kind as plain text for the terminal.
std::string kind_text(const kind& k);

namespace detail {
struct kind_registrar {
  explicit kind_registrar(const kind& k) { register_kind(k); }
};
struct section_registrar {
  explicit section_registrar(const section& s) { register_section(s); }
};
} // namespace detail

} // namespace fabrik

#define FABRIK_CONCAT_IMPL(a, b) a##b
#define FABRIK_CONCAT(a, b) FABRIK_CONCAT_IMPL(a, b)
/// Registers a `fabrik::kind` (an object with static storage duration).
#define FABRIK_REGISTER_KIND(k)                                                                    \
  static ::fabrik::detail::kind_registrar FABRIK_CONCAT(fabrik_kind_registrar_, __LINE__) { k }
#define FABRIK_REGISTER_SECTION(s)                                                                 \
  static ::fabrik::detail::section_registrar FABRIK_CONCAT(fabrik_section_registrar_, __LINE__) {  \
    s                                                                                              \
  }
