#include "core/settings.hpp"

#include "core/time.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

namespace fabrik {

const char* to_string(setting_type t) {
  switch (t) {
    case setting_type::string:
      return "string";
    case setting_type::integer:
      return "integer";
    case setting_type::number:
      return "number";
    case setting_type::boolean:
      return "boolean";
    case setting_type::duration:
      return "duration";
    case setting_type::size:
      return "size";
    case setting_type::choice:
      return "choice";
    case setting_type::string_list:
      return "string list";
    case setting_type::object:
      return "object";
    case setting_type::object_map:
      return "object map";
    case setting_type::reference:
      return "reference";
    case setting_type::scalar_map:
      return "map";
  }
  return "unknown";
}

const setting* settings_table::find(std::string_view name) const {
  for (const auto& s : items)
    if (s.name == name)
      return &s;
  return nullptr;
}

// -- config accessors ------------------------------------------------------------------

namespace {

[[noreturn]] void bad_access(std::string_view name, const char* what) {
  throw std::logic_error("setting '" + std::string{name} + "' " + what);
}

template <class T>
const T& get_as(const std::map<std::string, config::value_type, std::less<>>& values,
                std::string_view name, const char* type) {
  auto i = values.find(name);
  if (i == values.end())
    bad_access(name, "is not set");
  if (auto p = std::get_if<T>(&i->second))
    return *p;
  bad_access(name, (std::string{"is not "} + type).c_str());
}

} // namespace

bool config::has(std::string_view name) const {
  auto i = values_.find(name);
  return i != values_.end() && !std::holds_alternative<std::monostate>(i->second);
}

const std::string& config::str(std::string_view name) const {
  return get_as<std::string>(values_, name, "a string");
}

int64_t config::integer(std::string_view name) const {
  return get_as<int64_t>(values_, name, "an integer");
}

double config::number(std::string_view name) const {
  auto i = values_.find(name);
  // A number setting may have been set programmatically from an integer.
  if (i != values_.end())
    if (auto p = std::get_if<int64_t>(&i->second))
      return static_cast<double>(*p);
  return get_as<double>(values_, name, "a number");
}

bool config::boolean(std::string_view name) const {
  return get_as<bool>(values_, name, "a boolean");
}

const config::list& config::strings(std::string_view name) const {
  return get_as<list>(values_, name, "a string list");
}

const config& config::object(std::string_view name) const {
  const auto& p = get_as<std::shared_ptr<config>>(values_, name, "an object");
  if (!p)
    bad_access(name, "is a null object");
  return *p;
}

const config::object_map& config::objects(std::string_view name) const {
  return get_as<object_map>(values_, name, "an object map");
}

const config::scalars& config::scalar_map(std::string_view name) const {
  return get_as<scalars>(values_, name, "a map of values");
}

bool operator==(const config& a, const config& b) {
  if (a.values_.size() != b.values_.size())
    return false;
  auto same = [](const config::value_type& x, const config::value_type& y) {
    if (x.index() != y.index())
      return false;
    // Objects compare by content, not by pointer.
    if (auto px = std::get_if<std::shared_ptr<config>>(&x)) {
      auto py = std::get_if<std::shared_ptr<config>>(&y);
      if (!*px || !*py)
        return !*px && !*py;
      return **px == **py;
    }
    return x == y;
  };
  for (auto i = a.values_.begin(), j = b.values_.begin(); i != a.values_.end(); ++i, ++j)
    if (i->first != j->first || !same(i->second, j->second))
      return false;
  return true;
}

// -- rendering -------------------------------------------------------------------------

namespace {

std::string format_number(double d) {
  // Whole bounds read better as integers (100000, not 1e+05).
  if (std::abs(d) < 9e15 && d == std::trunc(d))
    return std::to_string(static_cast<int64_t>(d));
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

std::string quote_if_needed(const std::string& s) {
  bool plain = !s.empty() && s.find_first_of(" ,={}[]\"") == std::string::npos;
  if (plain)
    return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + '"';
}

void render(std::string& out, const config& c, const settings_table* table);

void render_value(std::string& out, const config::value_type& v, const setting* s) {
  if (s && s->secret && !std::holds_alternative<std::monostate>(v)) {
    out += "***";
    return;
  }
  const settings_table* children = s ? s->children : nullptr;
  std::visit(
    [&](const auto& x) {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, std::monostate>) {
        out += "null";
      } else if constexpr (std::is_same_v<T, std::string>) {
        out += quote_if_needed(x);
      } else if constexpr (std::is_same_v<T, int64_t>) {
        if (s && s->type == setting_type::duration)
          out += format_duration(x);
        else if (s && s->type == setting_type::size)
          out += format_size(x);
        else
          out += std::to_string(x);
      } else if constexpr (std::is_same_v<T, double>) {
        out += format_number(x);
      } else if constexpr (std::is_same_v<T, bool>) {
        out += x ? "true" : "false";
      } else if constexpr (std::is_same_v<T, config::list>) {
        out += '[';
        for (size_t i = 0; i < x.size(); ++i) {
          if (i > 0)
            out += ", ";
          out += quote_if_needed(x[i]);
        }
        out += ']';
      } else if constexpr (std::is_same_v<T, std::shared_ptr<config>>) {
        out += '{';
        if (x)
          render(out, *x, children);
        out += '}';
      } else if constexpr (std::is_same_v<T, config::scalars>) {
        out += '{';
        bool first = true;
        for (const auto& [name, value] : x) {
          if (!first)
            out += ", ";
          first = false;
          out += quote_if_needed(name) + "=" + quote_if_needed(value);
        }
        out += '}';
      } else {
        out += '{';
        bool first = true;
        for (const auto& [name, entry] : x) {
          if (!first)
            out += ", ";
          first = false;
          out += quote_if_needed(name) + "={";
          render(out, entry, children);
          out += '}';
        }
        out += '}';
      }
    },
    v);
}

// Table order first (how the kind documents them), then anything set beyond the table.
void render(std::string& out, const config& c, const settings_table* table) {
  bool first = true;
  auto emit = [&](const std::string& name, const config::value_type& v, const setting* s) {
    if (!first)
      out += ", ";
    first = false;
    out += name + '=';
    render_value(out, v, s);
  };
  if (table)
    for (const auto& s : table->items)
      if (auto i = c.values().find(s.name); i != c.values().end())
        emit(i->first, i->second, &s);
  for (const auto& [name, v] : c.values())
    if (!table || !table->find(name))
      emit(name, v, nullptr);
}

} // namespace

std::string config::to_string(const settings_table& table) const {
  std::string out;
  render(out, *this, &table);
  return out;
}

std::string diagnostic::to_string() const {
  std::string out = file.empty() ? std::string{"<flow>"} : file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0)
      out += ':' + std::to_string(column);
  }
  out += warning ? ": warning: " : ": ";
  return out + message;
}

// -- validation ------------------------------------------------------------------------

std::string what_is(const YAML::Node& v) {
  if (!v.IsDefined() || v.IsNull())
    return "nothing";
  if (v.IsSequence())
    return "a list";
  if (v.IsMap())
    return "a map";
  return "'" + v.Scalar() + "'";
}

yaml_position where(const YAML::Node& n) {
  if (!n.IsDefined())
    return {};
  auto m = n.Mark();
  if (m.is_null())
    return {};
  return {m.line + 1, m.column + 1};
}

namespace {

using position = yaml_position;

struct validator {
  const std::string& file;
  const section_names& sections;
  std::vector<diagnostic>& diags;

  void error(position p, std::string msg) {
    diags.push_back({file, p.line, p.column, std::move(msg), false});
  }
  void warn(position p, std::string msg) {
    diags.push_back({file, p.line, p.column, std::move(msg), true});
  }

  config validate_map(const YAML::Node& node, const settings_table& table,
                      const std::vector<std::string_view>& ignore, std::string_view context,
                      position fallback);
  std::optional<config::value_type> parse(const setting& s, const YAML::Node& v, position at,
                                          bool is_default, std::string_view context);
  std::optional<std::string> resolve_secret(const setting& s, const std::string& text, position at,
                                            bool is_default);
};

std::string join(const std::vector<std::string>& xs, std::string_view sep = ", ") {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += sep;
    out += xs[i];
  }
  return out;
}

std::string expectation(const setting& s) {
  switch (s.type) {
    case setting_type::string:
      return "a string";
    case setting_type::integer:
      return "an integer";
    case setting_type::number:
      return "a number";
    case setting_type::boolean:
      return "true or false";
    case setting_type::duration:
      return "a duration such as 500ms, 10s, 5m or 7d";
    case setting_type::size:
      return "a size such as 512KiB, 64MiB or 1GiB";
    case setting_type::choice: {
      std::vector<std::string> cs(s.choices.begin(), s.choices.end());
      return "one of " + join(cs);
    }
    case setting_type::string_list:
      return "a list of strings";
    case setting_type::object:
      return "a map of settings";
    case setting_type::object_map:
      return "a map of names to settings";
    case setting_type::reference:
      return "the name of an entry in " + std::string{s.section};
    case setting_type::scalar_map:
      return "a map of names to values";
  }
  return "valid";
}

// Integers are decimal only: yaml-cpp would read 010 as octal, which surprises people.
std::optional<int64_t> parse_int(const std::string& text) {
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+')
    ++b;
  int64_t v = 0;
  auto r = std::from_chars(b, e, v);
  if (r.ec != std::errc{} || r.ptr != e || b == e)
    return std::nullopt;
  return v;
}

std::optional<double> parse_double(const std::string& text) {
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+')
    ++b;
  double v = 0;
  auto r = std::from_chars(b, e, v);
  if (r.ec != std::errc{} || r.ptr != e || b == e || !std::isfinite(v))
    return std::nullopt;
  return v;
}

std::string bound_text(const setting& s, double x) {
  switch (s.type) {
    case setting_type::duration:
      return format_duration(static_cast<int64_t>(x));
    case setting_type::size:
      return format_size(static_cast<int64_t>(x));
    default:
      return format_number(x);
  }
}

/// "between 0 and 2", "at least 1ms", "at most 10"; empty when unbounded.
std::string range_text(const setting& s, const char* between_and = " and ") {
  bool lo = std::isfinite(s.min);
  bool hi = std::isfinite(s.max);
  if (lo && hi)
    return "between " + bound_text(s, s.min) + between_and + bound_text(s, s.max);
  if (lo)
    return "at least " + bound_text(s, s.min);
  if (hi)
    return "at most " + bound_text(s, s.max);
  return {};
}

bool in_range(const setting& s, double x) { return x >= s.min && x <= s.max; }

std::optional<std::string> validator::resolve_secret(const setting& s, const std::string& text,
                                                     position at, bool is_default) {
  const std::string name{s.name};
  if (text.size() > 3 && text.starts_with("${") && text.ends_with("}")) {
    auto var = text.substr(2, text.size() - 3);
    if (const char* v = std::getenv(var.c_str()))
      return std::string{v};
    // A default that points at an unset variable just leaves the setting out.
    if (!is_default)
      error(at, "environment variable " + var + " (setting '" + name + "') is not set");
    return std::nullopt;
  }
  if (text.starts_with("file:")) {
    std::filesystem::path p = text.substr(5);
    if (p.is_relative() && !file.empty())
      p = std::filesystem::path{file}.parent_path() / p;
    std::ifstream in{p, std::ios::binary};
    std::ostringstream buf;
    if (in)
      buf << in.rdbuf();
    if (!in || in.bad()) {
      if (!is_default)
        error(at, "cannot read " + p.string() + " (setting '" + name + "')");
      return std::nullopt;
    }
    auto content = buf.str();
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r'))
      content.pop_back();
    return content;
  }
  if (!is_default)
    warn(at, "secret '" + name + "' is written in the flow file; use ${ENV} or file:PATH");
  return text;
}

std::optional<config::value_type> validator::parse(const setting& s, const YAML::Node& v,
                                                   position at, bool is_default,
                                                   std::string_view context) {
  const std::string name{s.name};
  auto must_be = [&](const std::string& got) {
    error(at, "setting '" + name + "' must be " + expectation(s) + ", got " + got);
    return std::nullopt;
  };
  // Maps and lists first: they are not scalars.
  switch (s.type) {
    case setting_type::object: {
      if (v.IsDefined() && !v.IsNull() && !v.IsMap())
        return must_be(what_is(v));
      static const settings_table empty;
      auto child_context = std::string{context} + "." + name;
      auto c = validate_map(v, s.children ? *s.children : empty, {}, child_context, at);
      return std::make_shared<config>(std::move(c));
    }
    case setting_type::object_map: {
      if (v.IsDefined() && !v.IsNull() && !v.IsMap())
        return must_be(what_is(v));
      static const settings_table empty;
      config::object_map out;
      if (v.IsMap())
        for (auto it = v.begin(); it != v.end(); ++it) {
          position kp = where(it->first);
          if (!it->first.IsScalar()) {
            error(kp, "entries of '" + name + "' must be named by plain text");
            continue;
          }
          const auto& key = it->first.Scalar();
          if (out.count(key) > 0) {
            error(kp, "duplicate entry '" + key + "' in '" + name + "'");
            continue;
          }
          auto entry_context = std::string{context} + "." + name + "." + key;
          out.emplace(
            key, validate_map(it->second, s.children ? *s.children : empty, {}, entry_context, kp));
        }
      return out;
    }
    case setting_type::scalar_map: {
      config::scalars out;
      if (!v.IsDefined() || v.IsNull())
        return out;
      if (!v.IsMap())
        return must_be(what_is(v));
      bool ok = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!it->first.IsScalar() || !it->second.IsScalar()) {
          error(where(it->first),
                "entries of '" + name + "' must be NAME: value, got " + what_is(it->second));
          ok = false;
          continue;
        }
        if (!out.emplace(it->first.Scalar(), it->second.Scalar()).second) {
          error(where(it->first), "duplicate entry '" + it->first.Scalar() + "' in '" + name + "'");
          ok = false;
        }
      }
      if (!ok)
        return std::nullopt;
      return out;
    }
    case setting_type::string_list: {
      config::list out;
      if (!v.IsDefined() || v.IsNull())
        return out;
      if (v.IsScalar()) {
        out.push_back(v.Scalar());
        return out;
      }
      if (v.IsMap())
        return must_be("a map");
      bool ok = true;
      for (const auto& item : v) {
        if (!item.IsScalar()) {
          error(where(item),
                "items of setting '" + name + "' must be strings, got " + what_is(item));
          ok = false;
          continue;
        }
        out.push_back(item.Scalar());
      }
      if (!ok)
        return std::nullopt;
      return out;
    }
    default:
      break;
  }
  if (!v.IsDefined() || v.IsNull() || !v.IsScalar())
    return must_be(what_is(v));
  std::string text = v.Scalar();
  if (s.secret) {
    auto resolved = resolve_secret(s, text, at, is_default);
    if (!resolved)
      return std::nullopt;
    text = std::move(*resolved);
  }
  // Never echo a secret in a message.
  const std::string shown = s.secret ? std::string{"***"} : text;
  auto out_of_range = [&] {
    error(at, "setting '" + name + "' must be " + range_text(s) + ", got " + shown);
    return std::nullopt;
  };
  switch (s.type) {
    case setting_type::string:
      return text;
    case setting_type::integer: {
      auto x = parse_int(text);
      if (!x)
        return must_be("'" + shown + "'");
      if (!in_range(s, static_cast<double>(*x)))
        return out_of_range();
      return *x;
    }
    case setting_type::number: {
      auto x = parse_double(text);
      if (!x)
        return must_be("'" + shown + "'");
      if (!in_range(s, *x))
        return out_of_range();
      return *x;
    }
    case setting_type::boolean: {
      bool b = false;
      if (!YAML::convert<bool>::decode(YAML::Node{text}, b))
        return must_be("'" + shown + "'");
      return b;
    }
    case setting_type::duration:
    case setting_type::size: {
      auto x = s.type == setting_type::duration ? parse_duration(text) : parse_size(text);
      if (!x)
        return must_be("'" + shown + "'");
      if (!in_range(s, static_cast<double>(*x)))
        return out_of_range();
      return *x;
    }
    case setting_type::choice: {
      if (std::find(s.choices.begin(), s.choices.end(), text) == s.choices.end())
        return must_be("'" + shown + "'");
      return text;
    }
    case setting_type::reference: {
      auto sec = sections.find(s.section);
      if (sec != sections.end()
          && std::find(sec->second.begin(), sec->second.end(), text) != sec->second.end())
        return text;
      std::string msg = name + " '" + shown + "' is not defined in " + std::string{s.section};
      if (sec == sections.end() || sec->second.empty())
        msg += "; the flow defines no " + std::string{s.section};
      else
        msg += "; defined: " + join(sec->second);
      error(at, std::move(msg));
      return std::nullopt;
    }
    default:
      break;
  }
  error(at, "setting '" + name + "' has an unsupported type");
  return std::nullopt;
}

config validator::validate_map(const YAML::Node& node, const settings_table& table,
                               const std::vector<std::string_view>& ignore,
                               std::string_view context, position fallback) {
  config out;
  position self = where(node);
  // Empty values (`retention:`) carry no useful mark; use the caller's position.
  if (self.line == 0 || !node.IsDefined() || node.IsNull())
    self = fallback;
  const std::string for_context = context.empty() ? "" : " for " + std::string{context};
  if (node.IsDefined() && !node.IsNull() && !node.IsMap()) {
    error(self, "expected a map of settings" + for_context + ", got " + what_is(node));
    return out;
  }
  std::map<std::string, int, std::less<>> seen; // name -> line of first occurrence
  if (node.IsMap())
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: `it->` yields a proxy that dies at the end of the statement.
      const YAML::Node key = it->first;
      const YAML::Node val = it->second;
      position kp = where(key);
      if (!key.IsScalar()) {
        error(kp, "setting names must be plain text, got " + what_is(key));
        continue;
      }
      const std::string& name = key.Scalar();
      if (std::find(ignore.begin(), ignore.end(), name) != ignore.end())
        continue;
      // yaml-cpp keeps both pairs of a repeated key; the later one would be silently lost.
      if (auto [i, fresh] = seen.emplace(name, kp.line); !fresh) {
        error(kp,
              "duplicate setting '" + name + "' (first at line " + std::to_string(i->second) + ")");
        continue;
      }
      const setting* s = table.find(name);
      if (!s) {
        std::vector<std::string> valid;
        for (const auto& t : table.items)
          valid.emplace_back(t.name);
        std::sort(valid.begin(), valid.end());
        if (valid.empty())
          error(kp, "unknown setting '" + name + "'" + for_context + "; it takes no settings");
        else
          error(kp, "unknown setting '" + name + "'" + for_context
                      + "; valid settings: " + join(valid));
        continue;
      }
      position vp = val.IsNull() ? kp : where(val);
      if (vp.line == 0)
        vp = kp;
      if (auto v = parse(*s, val, vp, false, context))
        out.set(name, std::move(*v));
    }
  for (const auto& s : table.items) {
    if (seen.count(s.name) > 0)
      continue;
    if (s.required) {
      error(self, "missing required setting '" + std::string{s.name} + "'" + for_context);
      continue;
    }
    if (s.default_value.empty())
      continue;
    // Defaults are written as in a flow file and go through the same parsing.
    YAML::Node d;
    switch (s.type) {
      case setting_type::string_list:
      case setting_type::object:
      case setting_type::object_map:
      case setting_type::scalar_map:
        try {
          d = YAML::Load(std::string{s.default_value});
        } catch (const YAML::Exception& e) {
          error(self, "internal: default of setting '" + std::string{s.name}
                        + "' is not valid YAML: " + e.msg);
          continue;
        }
        break;
      default:
        d = YAML::Node{std::string{s.default_value}};
    }
    if (auto v = parse(s, d, self, true, context))
      out.set(std::string{s.name}, std::move(*v));
  }
  return out;
}

} // namespace

config validate_settings(const YAML::Node& node, const settings_table& table,
                         const std::string& file, const section_names& sections,
                         std::vector<diagnostic>& diags,
                         const std::vector<std::string_view>& ignore, std::string_view context) {
  validator v{file, sections, diags};
  try {
    return v.validate_map(node, table, ignore, context, where(node));
  } catch (const std::exception& e) {
    // yaml-cpp throws on misuse; keep errors as values for our callers.
    v.error(where(node), std::string{"internal error while validating settings: "} + e.what());
    return {};
  }
}

// -- reference docs --------------------------------------------------------------------

namespace {

std::string describe(const setting& s) {
  std::vector<std::string> parts;
  switch (s.type) {
    case setting_type::choice: {
      std::vector<std::string> cs;
      for (auto c : s.choices)
        cs.push_back("`" + std::string{c} + "`");
      parts.push_back("one of " + join(cs));
      break;
    }
    case setting_type::reference:
      parts.push_back("name of an entry in `" + std::string{s.section} + "`");
      break;
    case setting_type::string_list:
      parts.push_back("list of strings");
      break;
    case setting_type::object_map:
      parts.push_back("map of name to object");
      break;
    case setting_type::scalar_map:
      parts.push_back("map of name to value");
      break;
    default:
      parts.push_back(to_string(s.type));
  }
  if (s.required)
    parts.push_back("required");
  if (!s.default_value.empty())
    parts.push_back("default `" + std::string{s.default_value} + "`");
  if (auto r = range_text(s); !r.empty())
    parts.push_back(r);
  if (s.secret)
    parts.push_back("secret: write `${ENV}` or `file:PATH`");
  return join(parts, "; ");
}

void markdown(std::string& out, const settings_table& table, int indent) {
  const std::string pad(static_cast<size_t>(std::max(indent, 0)) * 2, ' ');
  if (table.items.empty()) {
    out += pad + "- _no settings_\n";
    return;
  }
  for (const auto& s : table.items) {
    out += pad + "- `" + std::string{s.name} + "` (" + describe(s) + ")";
    if (!s.doc.empty())
      out += ": " + std::string{s.doc};
    out += '\n';
    if (s.children && (s.type == setting_type::object || s.type == setting_type::object_map))
      markdown(out, *s.children, indent + 1);
  }
}

} // namespace

std::string settings_markdown(const settings_table& table, int indent) {
  std::string out;
  markdown(out, table, indent);
  return out;
}

expected<std::pair<std::string, int>> parse_listen(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return make_error(ec::invalid_argument, "'" + text + "' is not HOST:PORT (or off)");
  auto host = text.substr(0, colon);
  char* end = nullptr;
  long port = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || colon + 1 == text.size() || port < 0 || port > 65535)
    return make_error(ec::invalid_argument, "'" + text + "': the port must be 0 to 65535");
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return std::pair{host, static_cast<int>(port)};
}

} // namespace fabrik
