#include "flows/flow.hpp"

#include "flows/nodes.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>

namespace fabrik {

// -- flow queries ----------------------------------------------------------------------

const actor_decl* flow::find(std::string_view actor) const {
  for (const auto& a : actors)
    if (a.name == actor)
      return &a;
  return nullptr;
}

std::vector<std::string> flow::downstream(std::string_view actor) const {
  std::vector<std::string> out;
  for (const auto& w : wires)
    if (w.from == actor && std::find(out.begin(), out.end(), w.to) == out.end())
      out.push_back(w.to);
  return out;
}

std::vector<std::string> flow::upstream(std::string_view actor) const {
  std::vector<std::string> out;
  for (const auto& w : wires)
    if (w.to == actor && std::find(out.begin(), out.end(), w.from) == out.end())
      out.push_back(w.from);
  return out;
}

std::filesystem::path flow::resolve(const std::string& path) const {
  std::filesystem::path p{path};
  if (p.is_absolute())
    return p.lexically_normal();
  return (dir / p).lexically_normal();
}

// -- loading ---------------------------------------------------------------------------

namespace {

constexpr const char* fixed_keys[] = {"name", "description", "actors", "wires"};

using position = yaml_position;

std::string join(const std::vector<std::string>& xs, std::string_view sep = ", ") {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += sep;
    out += xs[i];
  }
  return out;
}

bool lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/// [a-z0-9_-]+: the flow name goes into client ids and data paths.
bool valid_flow_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), lower_alnum);
}

/// [A-Za-z_][A-Za-z0-9_-]*: actor names prefix stream names and client ids.
bool valid_actor_name(std::string_view s) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  auto rest = [&](char c) { return alpha(c) || (c >= '0' && c <= '9') || c == '-'; };
  return !s.empty() && alpha(s.front()) && std::all_of(s.begin() + 1, s.end(), rest);
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(" \t");
  return std::string{s.substr(b, e - b + 1)};
}

std::string known_kinds() {
  std::vector<std::string> names;
  for (const auto* k : all_kinds())
    names.emplace_back(k->name);
  return names.empty() ? std::string{"none are registered"} : join(names);
}

struct loader {
  std::string file; // as given, for diagnostics; the fragment's while loading it
  std::vector<diagnostic>& diags;
  flow& f;
  std::set<std::string> wired; // named in any well-formed wire, valid or not
  std::optional<YAML::Node> local_root = {}; // the fragment, parsed
  std::map<std::string, YAML::Node> main_actors = {}; // the flow file's actor bodies, for patches
  std::string local_name = {}; // its path, for diagnostics
  bool local = false; // loading the fragment now

  void error(position p, std::string msg) {
    diags.push_back({file, p.line, p.column, std::move(msg), false});
  }
  void warn(position p, std::string msg) {
    diags.push_back({file, p.line, p.column, std::move(msg), true});
  }

  // Runs validate_settings; an empty value (`local:`) has no mark, so its diagnostics
  // are moved to the entry's key.
  config settings(const YAML::Node& node, const settings_table& table, const section_names& sn,
                  const std::vector<std::string_view>& ignore, std::string_view context,
                  position key) {
    const size_t before = diags.size();
    auto c = validate_settings(node.IsNull() ? YAML::Node{YAML::NodeType::Map} : node, table, file,
                               sn, diags, ignore, context);
    for (size_t i = before; i < diags.size(); ++i)
      if (diags[i].line == 0) {
        diags[i].line = key.line;
        diags[i].column = key.column;
      }
    return c;
  }

  void load(const YAML::Node& root);
  void load_sections(const std::map<std::string, YAML::Node>& present, section_names& names);
  void load_actors(const YAML::Node& key, const YAML::Node& value, const section_names& names);
  void load_wires(const YAML::Node& value);
  void load_local(const section_names& names, bool wires);
  YAML::Node patched(const YAML::Node& actors);
  void check_graph(position actors_pos);
  void error_in(const std::string& in, position p, std::string msg) {
    diags.push_back({in.empty() ? file : in, p.line, p.column, std::move(msg), false});
  }
  void warn_in(const std::string& in, position p, std::string msg) {
    diags.push_back({in.empty() ? file : in, p.line, p.column, std::move(msg), true});
  }
};

void loader::load(const YAML::Node& root) {
  if (!root.IsDefined() || root.IsNull()) {
    error({}, "the flow file is empty; it needs at least 'name' and 'actors'");
    return;
  }
  if (!root.IsMap()) {
    error(where(root),
          "a flow file must be a map of keys (name, actors, wires, ...), got " + what_is(root));
    return;
  }
  // Collect the top-level keys first. yaml-cpp keeps every pair of a repeated key, so
  // duplicates show up here instead of silently replacing each other.
  std::map<std::string, std::pair<YAML::Node, YAML::Node>> keys;
  std::map<std::string, YAML::Node> section_nodes; // registered sections present
  for (auto it = root.begin(); it != root.end(); ++it) {
    position kp = where(it->first);
    if (!it->first.IsScalar()) {
      error(kp, "top-level keys must be plain text, got " + what_is(it->first));
      continue;
    }
    const std::string& key = it->first.Scalar();
    if (auto i = keys.find(key); i != keys.end()) {
      error(kp, "duplicate key '" + key + "' (first at line "
                  + std::to_string(where(i->second.first).line) + ")");
      continue;
    }
    keys.emplace(key, std::pair{it->first, it->second});
    bool fixed =
      std::find(std::begin(fixed_keys), std::end(fixed_keys), key) != std::end(fixed_keys);
    if (fixed)
      continue;
    if (find_section(key)) {
      section_nodes.emplace(key, it->second);
      continue;
    }
    std::vector<std::string> valid(std::begin(fixed_keys), std::end(fixed_keys));
    for (const auto* s : all_sections())
      valid.emplace_back(s->name);
    std::sort(valid.begin(), valid.end());
    error(kp, "unknown top-level key '" + key + "'; valid keys: " + join(valid));
  }

  if (auto i = keys.find("name"); i == keys.end()) {
    error(where(root), "missing required key 'name' (the flow's name, [a-z0-9_-]+)");
  } else {
    const auto& v = i->second.second;
    position vp = v.IsNull() ? where(i->second.first) : where(v);
    if (!v.IsScalar())
      error(vp, "'name' must be text matching [a-z0-9_-]+, got " + what_is(v));
    else if (!valid_flow_name(v.Scalar()))
      error(vp, "flow name '" + v.Scalar()
                  + "' must match [a-z0-9_-]+ (it goes into client ids and data paths)");
    else
      f.name = v.Scalar();
  }
  if (auto i = keys.find("description"); i != keys.end()) {
    const auto& v = i->second.second;
    if (!v.IsNull() && !v.IsScalar())
      error(where(v), "'description' must be text, got " + what_is(v));
  }

  // Section names first: actors reference them.
  section_names names;
  load_sections(section_nodes, names);

  position actors_pos;
  if (auto i = keys.find("actors"); i == keys.end()) {
    error(where(root), "missing required key 'actors'");
  } else {
    actors_pos = where(i->second.first);
    load_actors(i->second.first, i->second.second, names);
  }
  load_local(names, false);
  if (auto i = keys.find("wires"); i != keys.end())
    load_wires(i->second.second);
  load_local(names, true);
  if (keys.count("actors") > 0) {
    check_graph(actors_pos);
    check_placement(f, file, diags);
  }
}

/// The fragment's actors, where an entry without `kind` naming a flow file actor is a
/// patch: its settings over that actor's (a null value removes one).
YAML::Node loader::patched(const YAML::Node& actors) {
  if (!actors.IsMap())
    return actors;
  YAML::Node out{YAML::NodeType::Map};
  for (auto it = actors.begin(); it != actors.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node body = it->second;
    auto base = key.IsScalar() ? main_actors.find(key.Scalar()) : main_actors.end();
    if (!body.IsMap() || body["kind"] || base == main_actors.end()) {
      out[key] = body;
      continue;
    }
    YAML::Node merged = YAML::Clone(base->second);
    for (auto kv = body.begin(); kv != body.end(); ++kv) {
      if (!kv->first.IsScalar())
        continue; // validation reports it with the whole actor
      // By name: a Node key would compare by identity and add a second entry.
      auto name = kv->first.Scalar();
      if (kv->second.IsNull())
        merged.remove(name);
      else
        merged[name] = kv->second;
    }
    out[key] = merged;
  }
  return out;
}

void loader::load_local(const section_names& names, bool wires) {
  if (!local_root || local_root->IsNull())
    return;
  auto main_file = file;
  file = local_name; // its diagnostics name the fragment
  local = true;
  auto& root = *local_root;
  if (!root.IsMap()) {
    if (!wires)
      error(where(root),
            "a local fragment is a map with 'actors' and 'wires', got " + what_is(root));
  } else if (!wires) {
    for (auto it = root.begin(); it != root.end(); ++it)
      if (!it->first.IsScalar()
          || (it->first.Scalar() != "actors" && it->first.Scalar() != "wires"))
        error(where(it->first), "a local fragment holds only 'actors' and 'wires', not "
                                  + what_is(it->first) + "; the rest belongs in the flow file");
    if (auto a = root["actors"]; a && !a.IsNull() && !(a.IsMap() && a.size() == 0)) {
      size_t before = f.actors.size();
      load_actors(YAML::Node{}, patched(a), names);
      // A fragment's actor replaces the flow file's of the same name, in its place.
      for (size_t i = before; i < f.actors.size();) {
        f.actors[i].file = local_name;
        auto same =
          std::find_if(f.actors.begin(), f.actors.begin() + static_cast<std::ptrdiff_t>(before),
                       [&](auto& x) { return x.name == f.actors[i].name; });
        if (same == f.actors.begin() + static_cast<std::ptrdiff_t>(before)) {
          ++i;
          continue;
        }
        *same = std::move(f.actors[i]);
        f.actors.erase(f.actors.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  } else if (auto w = root["wires"]; w) {
    load_wires(w);
  }
  file = main_file;
  local = false;
}

void loader::load_sections(const std::map<std::string, YAML::Node>& present, section_names& names) {
  // Pass 1: every entry name, so references between sections work in any order.
  struct entry {
    std::string name;
    YAML::Node key;
    YAML::Node value;
  };
  std::map<std::string, std::vector<entry>> entries;
  for (const auto& [sec, node] : present) {
    auto& list = names[sec];
    auto& es = entries[sec];
    if (find_section(sec)->single) {
      es.push_back({"", node, node});
      continue;
    }
    if (node.IsNull())
      continue;
    if (!node.IsMap()) {
      error(where(node), "'" + sec + "' must be a map of NAME: settings, got " + what_is(node));
      continue;
    }
    std::map<std::string, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      position kp = where(it->first);
      if (!it->first.IsScalar()) {
        error(kp, "entries of '" + sec + "' must be named by plain text");
        continue;
      }
      const std::string& name = it->first.Scalar();
      if (auto [i, fresh] = seen.emplace(name, kp.line); !fresh) {
        error(kp, "duplicate entry '" + name + "' in " + sec + " (first at line "
                    + std::to_string(i->second) + ")");
        continue;
      }
      list.push_back(name);
      es.push_back({name, it->first, it->second});
    }
  }
  // Pass 2: validate each entry with the section's table.
  for (const auto& [sec, es] : entries) {
    const section* s = find_section(sec);
    static const settings_table none;
    const settings_table& table = s && s->settings ? *s->settings : none;
    auto& out = f.sections[sec];
    for (const auto& e : es) {
      if (!s->single)
        f.entry_at[sec + "/" + e.name] = where(e.key);
      out[e.name] =
        settings(e.value, table, names, {}, s->single ? sec : sec + "." + e.name, where(e.key));
    }
  }
  // A single section the flow leaves out still has its defaults.
  for (const auto* s : all_sections())
    if (s->single && !present.count(std::string{s->name}))
      f.sections[std::string{s->name}][""] =
        settings(YAML::Node{YAML::NodeType::Map}, *s->settings, names, {}, s->name, {});
}

void loader::load_actors(const YAML::Node& key, const YAML::Node& value,
                         const section_names& names) {
  position kp = where(key);
  if (value.IsNull() || (value.IsMap() && value.size() == 0)) {
    error(kp, "the flow defines no actors");
    return;
  }
  if (!value.IsMap()) {
    error(where(value),
          "'actors' must be a map of NAME: {kind: ..., settings}, got " + what_is(value));
    return;
  }
  std::map<std::string, int> seen;
  for (auto it = value.begin(); it != value.end(); ++it) {
    // Copies: `it->` yields a proxy that dies at the end of the statement.
    const YAML::Node name_node = it->first;
    const YAML::Node body = it->second;
    position np = where(name_node);
    if (!name_node.IsScalar()) {
      error(np, "actor names must be plain text, got " + what_is(name_node));
      continue;
    }
    const std::string& name = name_node.Scalar();
    if (auto [i, fresh] = seen.emplace(name, np.line); !fresh) {
      error(np, "duplicate actor '" + name + "' (first defined at line " + std::to_string(i->second)
                  + ")");
      continue;
    }
    if (!valid_actor_name(name))
      error(np, "actor name '" + name
                  + "' must match [A-Za-z_][A-Za-z0-9_-]* (it prefixes stream names and "
                    "client ids)");
    if (!local && body.IsMap())
      main_actors.emplace(name, body);
    actor_decl decl;
    decl.name = name;
    decl.line = np.line;
    decl.column = np.column;
    if (!body.IsMap()) {
      error(body.IsNull() ? np : where(body),
            "actor '" + name + "' must be a map with at least 'kind', got " + what_is(body));
      f.actors.push_back(std::move(decl));
      continue;
    }
    position bp = where(body);
    // A default YAML::Node counts as defined, hence optional.
    std::optional<YAML::Node> kind_node;
    std::optional<YAML::Node> on_node;
    for (auto j = body.begin(); j != body.end(); ++j) {
      if (!j->first.IsScalar())
        continue; // validate_settings reports it
      const auto& key = j->first.Scalar();
      if (key != "kind" && key != "on")
        continue; // settings: validate_settings checks those, repeats included
      auto& slot = key == "kind" ? kind_node : on_node;
      if (slot)
        error(where(j->first), "duplicate key '" + key + "' in actor '" + name + "' (first at line "
                                 + std::to_string(where(*slot).line) + ")");
      else
        slot.emplace(j->second);
    }
    if (!kind_node) {
      error(bp, "actor '" + name + "' has no 'kind'; known kinds: " + known_kinds());
    } else if (!kind_node->IsScalar()) {
      error(kind_node->IsNull() ? bp : where(*kind_node),
            "'kind' of actor '" + name + "' must be a kind name, got " + what_is(*kind_node));
    } else if (decl.k = find_kind(kind_node->Scalar()); !decl.k) {
      error(where(*kind_node), "unknown kind '" + kind_node->Scalar() + "' for actor '" + name
                                 + "'; known kinds: " + known_kinds());
    }
    if (on_node) {
      if (on_node->IsScalar() && !on_node->Scalar().empty())
        decl.node = on_node->Scalar();
      else
        error(on_node->IsNull() ? bp : where(*on_node),
              "'on' of actor '" + name + "' must be a node name, got " + what_is(*on_node));
    }
    if (!local)
      for (auto j = body.begin(); j != body.end(); ++j)
        if (j->first.IsScalar()) {
          auto at = where(j->second.IsNull() ? j->first : j->second);
          decl.setting_at[j->first.Scalar()] = {at.line, at.column};
        }
    if (decl.k) {
      static const settings_table none;
      const settings_table& table = decl.k->settings ? *decl.k->settings : none;
      decl.settings = settings(body, table, names, {"kind", "on"}, decl.k->name, np);
    }
    f.actors.push_back(std::move(decl));
  }
}

void loader::load_wires(const YAML::Node& value) {
  if (value.IsNull())
    return;
  if (!value.IsSequence()) {
    error(where(value), "'wires' must be a list of \"from -> to\" strings, got " + what_is(value));
    return;
  }
  std::map<std::pair<std::string, std::string>, int> seen; // wire -> line
  for (const auto& item : value) {
    position ip = where(item);
    if (!item.IsScalar()) {
      error(ip, "a wire must be a string like 'from -> to', got " + what_is(item));
      continue;
    }
    const std::string& text = item.Scalar();
    // Split "a -> b -> c", remembering where each name starts for precise columns.
    struct part {
      std::string name;
      position at;
    };
    std::vector<part> parts;
    // Columns within the text are exact only for a plain one-line scalar.
    const bool plain = item.Tag() == "?";
    size_t start = 0;
    while (true) {
      size_t arrow = text.find("->", start);
      std::string_view piece = std::string_view{text}.substr(
        start, arrow == std::string::npos ? std::string::npos : arrow - start);
      auto name = trim(piece);
      position at = ip;
      if (plain && !name.empty())
        at.column = ip.column + static_cast<int>(start + piece.find(name));
      parts.push_back({name, at});
      if (arrow == std::string::npos)
        break;
      start = arrow + 2;
    }
    bool malformed = parts.size() < 2;
    for (const auto& p : parts)
      malformed = malformed || p.name.empty();
    if (malformed) {
      error(ip, "wire '" + text + "' must look like 'from -> to' (or a chain 'a -> b -> c')");
      continue;
    }
    std::set<std::string> reported;
    for (const auto& p : parts)
      wired.insert(p.name);
    for (const auto& p : parts)
      if (!f.find(p.name) && reported.insert(p.name).second) {
        std::vector<std::string> actor_names;
        for (const auto& a : f.actors)
          actor_names.push_back(a.name);
        error(p.at, "wire names unknown actor '" + p.name + "'; actors: " + join(actor_names));
      }
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto& from = parts[i];
      const auto& to = parts[i + 1];
      wire_decl w{local ? file : std::string{}, from.name, to.name, from.at.line, from.at.column};
      const actor_decl* a = f.find(from.name);
      const actor_decl* b = f.find(to.name);
      if (!a || !b)
        continue;
      if (from.name == to.name) {
        error(from.at, "actor '" + from.name + "' is wired to itself");
        continue;
      }
      bool ok = true;
      if (b->k && b->k->role == kind_role::source) {
        error(to.at, "actor '" + to.name + "' is a source (" + std::string{b->k->name}
                       + ") and cannot receive a wire");
        ok = false;
      }
      if (a->k && a->k->role == kind_role::sink) {
        error(from.at, "actor '" + from.name + "' is a sink (" + std::string{a->k->name}
                         + ") and cannot send on a wire");
        ok = false;
      }
      if (!ok)
        continue;
      if (auto [j, fresh] = seen.emplace(std::pair{from.name, to.name}, from.at.line); !fresh) {
        warn(from.at, "duplicate wire " + from.name + " -> " + to.name + " (first at line "
                        + std::to_string(j->second) + ")");
        continue;
      }
      // The fragment may repeat a wire of the flow file: one is enough.
      if (std::any_of(f.wires.begin(), f.wires.end(),
                      [&](auto& x) { return x.from == w.from && x.to == w.to; }))
        continue;
      f.wires.push_back(std::move(w));
    }
  }
}

void loader::check_graph(position actors_pos) {
  // Cycles: depth-first search in file order; each back edge closes one cycle.
  enum class mark { white, grey, black };
  std::map<std::string, mark> color;
  std::vector<std::string> stack;
  auto visit = [&](auto& self, const std::string& u) -> void {
    color[u] = mark::grey;
    stack.push_back(u);
    for (const auto& w : f.wires) {
      if (w.from != u)
        continue;
      auto c = color[w.to];
      if (c == mark::grey) {
        auto at = std::find(stack.begin(), stack.end(), w.to);
        std::vector<std::string> path(at, stack.end());
        path.push_back(w.to);
        error_in(w.file, {w.line, w.column}, "wires form a cycle: " + join(path, " -> "));
      } else if (c == mark::white) {
        self(self, w.to);
      }
    }
    stack.pop_back();
    color[u] = mark::black;
  };
  for (const auto& a : f.actors)
    if (color[a.name] == mark::white)
      visit(visit, a.name);

  // An actor named in a faulty wire already has an error; do not pile warnings on it.
  for (const auto& a : f.actors) {
    if (wired.count(a.name) > 0)
      continue;
    if (a.k && a.k->role == kind_role::source)
      warn_in(a.file, {a.line, a.column},
              "source '" + a.name + "' has no outgoing wire; its data goes nowhere");
    else
      warn_in(a.file, {a.line, a.column}, "actor '" + a.name + "' has no wires");
  }

  bool stored = std::any_of(f.actors.begin(), f.actors.end(),
                            [](const actor_decl& a) { return a.k && a.k->name == "storage"; });
  if (!stored && !f.actors.empty())
    warn(actors_pos, "no storage actor: records are not kept, and messages in flight when "
                     "fabrik stops are lost (at-most-once)");
}

} // namespace

flow_changes diff_flows(const flow& before, const flow& after) {
  auto shared_sections = [](const flow& f) {
    auto s = f.sections;
    s.erase("http");
    return s;
  };
  bool all = shared_sections(before) != shared_sections(after);
  auto outgoing = [](const flow& f, const std::string& a) {
    auto d = f.downstream(a);
    return std::set<std::string>(d.begin(), d.end());
  };
  std::set<std::string> added, restarted;
  for (auto& a : after.actors) {
    auto* b = before.find(a.name);
    if (!b)
      added.insert(a.name);
    else if (all || b->k != a.k || !(b->settings == a.settings) || b->node != a.node
             || outgoing(before, a.name) != outgoing(after, a.name))
      restarted.insert(a.name);
  }
  // Upstream of anything new or restarted: their handles change.
  for (bool grew = true; grew;) {
    grew = false;
    for (auto& w : after.wires)
      if ((added.count(w.to) || restarted.count(w.to)) && !added.count(w.from)
          && restarted.insert(w.from).second)
        grew = true;
  }
  flow_changes out;
  for (auto& a : after.actors)
    (added.count(a.name)       ? out.added
     : restarted.count(a.name) ? out.restarted
                               : out.unchanged)
      .push_back(a.name);
  for (auto& b : before.actors)
    if (!after.find(b.name))
      out.removed.push_back(b.name);
  return out;
}

std::filesystem::path local_file_of(const std::filesystem::path& flow_file) {
  auto out = flow_file;
  out.replace_extension();
  out += ".local.yaml";
  return out;
}

std::optional<flow> load_flow_text(const std::string& text, const std::filesystem::path& file,
                                   std::vector<diagnostic>& diags,
                                   const std::optional<std::string>& local_text) {
  const size_t first = diags.size();
  flow f;
  std::error_code err;
  f.file = file.empty() ? std::filesystem::path{} : std::filesystem::absolute(file, err);
  if (err)
    f.file = file;
  f.file = f.file.lexically_normal();
  f.dir = f.file.parent_path();
  f.local_file = local_file_of(f.file);
  loader l{file.string(), diags, f, {}};
  l.local_name = local_file_of(file).string();
  try {
    if (local_text) {
      try {
        l.local_root = YAML::Load(*local_text);
      } catch (const YAML::Exception& e) {
        position p = e.mark.is_null() ? position{} : position{e.mark.line + 1, e.mark.column + 1};
        l.error_in(l.local_name, p, e.msg);
      }
    }
    YAML::Node root = YAML::Load(text);
    l.load(root);
  } catch (const YAML::Exception& e) {
    // ParserException (syntax) and anything yaml-cpp throws while we walk the tree.
    position p = e.mark.is_null() ? position{} : position{e.mark.line + 1, e.mark.column + 1};
    l.error(p, e.msg);
  } catch (const std::exception& e) {
    l.error({}, std::string{"internal error while loading the flow: "} + e.what());
  }
  // Kind-specific checks need a flow whose every setting is valid.
  bool valid = std::none_of(diags.begin() + static_cast<std::ptrdiff_t>(first), diags.end(),
                            [](const diagnostic& d) { return !d.warning; });
  if (valid)
    for (auto& a : f.actors)
      if (a.k && a.k->check)
        a.k->check(f, a, a.file.empty() ? file.string() : a.file, diags);
  // Report in file order; problems without a place (line 0) come last.
  auto main_file = file.string();
  auto key = [&](const diagnostic& d) {
    return std::tuple{d.file != main_file, d.line == 0 ? INT_MAX : d.line, d.column};
  };
  std::stable_sort(diags.begin() + static_cast<std::ptrdiff_t>(first), diags.end(),
                   [&](const diagnostic& a, const diagnostic& b) { return key(a) < key(b); });
  bool failed = std::any_of(diags.begin() + static_cast<std::ptrdiff_t>(first), diags.end(),
                            [](const diagnostic& d) { return !d.warning; });
  if (failed)
    return std::nullopt;
  return f;
}

diagnostic actor_diagnostic(const actor_decl& a, const std::string& file,
                            const std::string& setting, std::string message, bool warning) {
  auto at = a.setting_at.find(setting);
  auto [line, column] = at == a.setting_at.end() ? std::pair{a.line, a.column} : at->second;
  return {file, line, column, "actor '" + a.name + "': " + std::move(message), warning};
}

std::optional<flow> load_flow(const std::filesystem::path& file, std::vector<diagnostic>& diags) {
  std::error_code err;
  if (std::filesystem::is_directory(file, err)) {
    diags.push_back({file.string(), 0, 0, "cannot read " + file.string() + ": is a directory"});
    return std::nullopt;
  }
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    int e = errno;
    auto reason = e != 0 ? std::generic_category().message(e) : std::string{"cannot open"};
    diags.push_back({file.string(), 0, 0, "cannot read " + file.string() + ": " + reason});
    return std::nullopt;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  std::optional<std::string> local;
  if (std::ifstream l{local_file_of(file), std::ios::binary}) {
    std::ostringstream lb;
    lb << l.rdbuf();
    local = lb.str();
  }
  return load_flow_text(buf.str(), file, diags, local);
}

} // namespace fabrik
