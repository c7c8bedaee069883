#pragma once
// Settings tables: every actor kind (and every shared section such as `brokers`) declares
// its settings once, as data. That one table drives validation of flow files, defaults,
// `fabrik kinds` and docs/kinds.md.

#include "core/error.hpp"

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace YAML {
class Node;
}

namespace fabrik {

enum class setting_type {
  string, ///< any scalar text
  integer, ///< int64
  number, ///< double
  boolean, ///< true/false
  duration, ///< 500ms, 10s, 7d -> nanoseconds
  size, ///< 64MiB -> bytes
  choice, ///< one of `choices`
  string_list, ///< a YAML sequence of strings (a single scalar is accepted as one item)
  object, ///< a nested map validated by `children`
  object_map, ///< a map NAME -> object validated by `children` (e.g. per-stream retention)
  reference, ///< the name of an entry in the top-level section `section` (e.g. brokers)
  scalar_map, ///< a map NAME -> scalar, as written (the kind gives the values meaning)
};

const char* to_string(setting_type t);

struct settings_table;

/// One setting: name, type, default, doc. Defaults are written as a flow file would.
struct setting {
  std::string_view name;
  setting_type type = setting_type::string;
  std::string_view default_value = {}; ///< empty: no default
  std::string_view doc = {};
  bool required = false;
  bool secret = false; ///< `${ENV}` or `file:PATH` allowed; shown as *** everywhere
  double min = -std::numeric_limits<double>::infinity(); ///< in base units (ns, bytes)
  double max = std::numeric_limits<double>::infinity();
  std::vector<std::string_view> choices = {};
  const settings_table* children = nullptr; ///< object, object_map
  std::string_view section = {}; ///< reference
};

struct settings_table {
  std::vector<setting> items;
  const setting* find(std::string_view name) const;
};

/// Validated, typed settings with defaults filled in.
class config {
public:
  using list = std::vector<std::string>;
  using object_map = std::map<std::string, config>;
  using scalars = std::map<std::string, std::string>;
  using value_type = std::variant<std::monostate, std::string, int64_t, double, bool, list,
                                  std::shared_ptr<config>, object_map, scalars>;

  bool has(std::string_view name) const;
  /// string, choice, reference and resolved secrets.
  const std::string& str(std::string_view name) const;
  /// integer, duration (ns) and size (bytes).
  int64_t integer(std::string_view name) const;
  double number(std::string_view name) const;
  bool boolean(std::string_view name) const;
  const list& strings(std::string_view name) const;
  const config& object(std::string_view name) const;
  const object_map& objects(std::string_view name) const;
  const scalars& scalar_map(std::string_view name) const;

  void set(std::string name, value_type v) { values_[std::move(name)] = std::move(v); }
  const std::map<std::string, value_type, std::less<>>& values() const { return values_; }

  /// Renders as one line for logs, secrets masked with `table`.
  std::string to_string(const settings_table& table) const;

  friend bool operator==(const config& a, const config& b);

private:
  std::map<std::string, value_type, std::less<>> values_;
};

/// A problem found in a flow file, pointing at its place.
struct diagnostic {
  std::string file;
  int line = 0; ///< 1-based; 0 when unknown
  int column = 0;
  std::string message;
  bool warning = false;
  /// FILE:LINE:COL: message   (warnings: FILE:LINE:COL: warning: message)
  std::string to_string() const;
};

/// 1-based line and column of a YAML node; 0 when the node carries no mark.
struct yaml_position {
  int line = 0;
  int column = 0;
};
yaml_position where(const YAML::Node& n);
/// A YAML value as an error message shows it: 'abc', a list, a map, nothing.
std::string what_is(const YAML::Node& v);

/// Names of the entries in each top-level section, for `reference` settings.
using section_names = std::map<std::string, std::vector<std::string>, std::less<>>;

/// Validates `node` (a YAML map) against `table`: unknown keys (listing the valid ones),
/// wrong types, ranges, missing required settings, unknown references; fills defaults and
/// resolves secrets. Keys in `ignore` (e.g. kind, on) are skipped. Every problem is
/// appended to `diags` (with `file` and the node's line); the result is usable only when
/// no error was added.
config validate_settings(const YAML::Node& node, const settings_table& table,
                         const std::string& file, const section_names& sections,
                         std::vector<diagnostic>& diags,
                         const std::vector<std::string_view>& ignore = {},
                         std::string_view context = {});

/// "HOST:PORT" (an address setting) -> host and port; "off" is for the caller.
/// ec::invalid_argument otherwise.
expected<std::pair<std::string, int>> parse_listen(const std::string& text);

/// Markdown reference of one table (a list of settings with type, default and doc).
std::string settings_markdown(const settings_table& table, int indent = 0);

} // namespace fabrik
