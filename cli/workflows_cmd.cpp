// fabrik workflows and fabrik runs: what the engine's registry (DATA_DIR/registry) holds,
// read-only, so both work while `fabrik run` writes.

#include "cli/commands.hpp"

#include "core/time.hpp"
#include "flows/nodes.hpp"
#include "runtime/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <string_view>

namespace fabrik::cli {

namespace {

constexpr const char* workflows_usage =
  R"(usage: fabrik workflows [FLOW] [--data-dir DIR] [NAME]

Lists the workflow package versions an engine stored: every distinct content of a
package is a version, numbered #1, #2... per name in order of arrival.

  fabrik workflows            the versions of every package
  fabrik workflows NAME       the versions of one package

  FLOW            a flow file (.yaml): its data directory is data/ beside it; for a
                  flow split across nodes, data/NODE of each node, listed per node
  --data-dir DIR  the data directory (default: ./data, or data/ beside FLOW)

Columns: name, version, #seq, the first 12 digits of the content's sha256 (enough to
pin it: `pin: 3f2a9b1c`), when it was added (local time), the zip's size, and where it
came from. Opens DIR/registry read-only, so it works while `fabrik run` holds it.

Exit status: 0 ok, 1 a user error (nothing stored, no such package, a bad option),
2 an internal error.)";

constexpr const char* runs_usage =
  R"(usage: fabrik runs [FLOW] [--data-dir DIR] [--actor A] [--limit N] [ID]

Lists the training runs an engine stored, newest first, one line each: the package
version, the data, the model made, and the measurements (times, peak CPU and memory,
energy). A failed run ends with the first line of its error.

  fabrik runs         the newest runs of every workflow actor
  fabrik runs ID      one run in full: every measurement, the error with its
                      traceback, and the workflow's own log lines

  FLOW            a flow file (.yaml): its data directory is data/ beside it; for a
                  flow split across nodes, data/NODE of each node (of A's, with
                  --actor), listed per node
  --data-dir DIR  the data directory (default: ./data, or data/ beside FLOW)
  --actor A       only the runs of workflow actor A
  --limit N       at most N runs (default 100)

Opens DIR/registry read-only, so it works while `fabrik run` holds it.

Exit status: 0 ok, 1 a user error (nothing stored, no such run, a bad option), 2 an
internal error.)";

/// What the registry's user can fix is 1; the disk or a bug is 2.
int code_of(const error& e) {
  return e.code == ec::io_error || e.code == ec::internal || e.code == ec::storage_full
             || e.code == ec::unavailable
           ? 2
           : 1;
}

/// The arguments of `workflows` and `runs`: an optional FLOW (the first positional
/// ending in .yaml or .yml), --data-dir and the command's options, other positionals.
struct registry_args : command_line {
  std::optional<std::string> flow;
};

std::optional<registry_args> parse(const args& a, const std::string& cmd,
                                   std::vector<std::string_view> valued) {
  valued.push_back("--data-dir");
  auto c = parse_command_line(a, cmd, valued);
  if (!c)
    return std::nullopt;
  registry_args out;
  auto& ps = c->positionals;
  auto flow = std::find_if(ps.begin(), ps.end(),
                           [](auto& x) { return x.ends_with(".yaml") || x.ends_with(".yml"); });
  if (flow != ps.end()) {
    out.flow = *flow;
    ps.erase(flow);
  }
  static_cast<command_line&>(out) = std::move(*c);
  return out;
}

/// The data directories to read: --data-dir, else data/ beside FLOW (or ./data); for a
/// flow split across nodes, data/NODE of each node (of ACTOR's only, with --actor), as
/// `fabrik run FLOW --node NODE` keeps them. Labelled with the node's name.
expected<std::vector<std::pair<std::string, std::filesystem::path>>>
registry_dirs(const registry_args& r) {
  auto data_dir = r.option("--data-dir");
  if (!r.flow || data_dir)
    return std::vector<std::pair<std::string, std::filesystem::path>>{
      {"", r.flow || data_dir ? data_dir_of(r.flow.value_or(""), data_dir)
                              : std::filesystem::absolute("data")}};
  auto f = load(*r.flow, false);
  auto nodes = f ? node_names(*f) : std::vector<std::string>{};
  if (nodes.empty())
    return std::vector<std::pair<std::string, std::filesystem::path>>{
      {"", data_dir_of(*r.flow, std::nullopt)}};
  if (auto actor = r.option("--actor")) {
    auto* decl = f->find(*actor);
    if (!decl)
      return make_error(ec::invalid_argument, "no actor '" + *actor + "' in flow " + *r.flow);
    nodes = {decl->node};
  }
  std::vector<std::pair<std::string, std::filesystem::path>> out;
  for (auto& n : nodes)
    out.emplace_back(n, data_dir_of(*r.flow, std::nullopt, n));
  return out;
}

/// Opens the registry of each data directory `r` names, read-only, and runs `fn` on it;
/// several (the nodes of a split flow) each under a line naming the node, skipping the
/// nodes that stored nothing.
int with_registry(const registry_args& r, const std::function<int(const registry&)>& fn) {
  auto dirs = registry_dirs(r);
  if (!dirs)
    return fail(1, dirs.err().message);
  int code = 0;
  bool shown = false;
  for (auto& [node, dir] : *dirs) {
    std::error_code err;
    if (!std::filesystem::exists(dir / "registry" / "data.mdb", err)) {
      if (dirs->size() == 1)
        return fail(1,
                    "no workflows stored in " + dir.string() + " (fabrik run has not stored any)");
      continue;
    }
    if (!node.empty())
      std::printf("%snode %s (%s)\n", shown ? "\n" : "", node.c_str(), dir.string().c_str());
    shown = true;
    auto reg = registry::open(dir / "registry", true);
    if (!reg) {
      code = std::max(code, fail(code_of(reg.err()), reg.err().message));
      continue;
    }
    std::fflush(stdout);
    code = std::max(code, fn(*reg));
  }
  if (!shown)
    return fail(1, "no workflows stored by any node of " + *r.flow + " (in data/NODE beside it)");
  return code;
}

/// Local time, ISO 8601 with the offset: 2024-05-01T10:03:12+02:00.
std::string local_time(int64_t ns) {
  if (ns <= 0)
    return "-";
  auto t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[40];
  auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
  std::string out{buf, n};
  if (out.size() > 2 && (out[out.size() - 5] == '+' || out[out.size() - 5] == '-'))
    out.insert(out.size() - 2, ":");
  return out;
}

/// Prints rows as columns two spaces apart; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      width.resize(std::max(width.size(), r.size()));
      width[i] = std::max(width[i], r[i].size());
    }
  for (auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size())
        line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::puts(line.c_str());
  }
}

std::optional<uint64_t> parse_number(const std::string& s) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return n;
}

int print_run(const run_record& r) {
  auto line = [](const char* what, const std::string& value) {
    std::printf("  %-15s %s\n", what, value.c_str());
  };
  auto measured = [](int64_t ns) { return ns > 0 ? describe_duration(ns) : "not measured"; };
  std::printf("run %llu\n", static_cast<unsigned long long>(r.id));
  line("actor", r.actor);
  line("workflow", r.workflow + " " + r.version);
  line("package sha256", r.package_sha256);
  line("trigger", r.trigger);
  line("status", r.status);
  line("started", local_time(r.started));
  line("finished", r.finished > 0 ? local_time(r.finished) + " (after "
                                      + describe_duration(r.finished - r.started) + ")"
                                  : "-");
  line("rows", std::to_string(r.rows));
  line("data", r.data.empty() ? "-" : r.data);
  line("model", r.model_id.empty() ? "-" : r.model_id);
  std::puts("measurements:");
  line("deploy", measured(r.m.deploy_wall));
  line("deploy CPU", measured(r.m.deploy_cpu));
  line("train", measured(r.m.train_wall));
  line("train CPU", measured(r.m.train_cpu));
  line("peak CPU",
       r.m.peak_cpu > 0 ? std::to_string(std::lround(r.m.peak_cpu * 100)) + "%" : "not measured");
  line("peak RSS", r.m.peak_rss > 0 ? format_size_approx(r.m.peak_rss) : "not measured");
  line("energy", r.m.energy_j > 0 ? describe_energy(r.m.energy_j) : "not measured");
  line("energy method", r.m.energy_method.empty() ? "-" : r.m.energy_method);
  if (!r.error.empty()) {
    std::puts("error:");
    for (std::string_view rest = r.error; !rest.empty();) {
      auto nl = rest.find('\n');
      auto text = std::string{rest.substr(0, nl)};
      std::printf("  %s\n", text.c_str());
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    }
  }
  std::printf("log (%zu line%s)%s\n", r.logs.size(), r.logs.size() == 1 ? "" : "s",
              r.logs.empty() ? "" : ":");
  for (auto& l : r.logs)
    std::printf("  %s\n", l.c_str());
  return 0;
}

} // namespace

int workflows(const args& a) {
  if (wants_help(a)) {
    std::puts(workflows_usage);
    return 0;
  }
  auto c = parse(a, "workflows", {});
  if (!c)
    return 1;
  if (c->positionals.size() > 1)
    return fail(1, "workflows takes at most one package name; see fabrik workflows --help");
  std::string name = c->positionals.empty() ? "" : c->positionals[0];
  return with_registry(*c, [&](const registry& reg) {
    if (!name.empty())
      if (auto known = reg.find(name); !known)
        return fail(code_of(known.err()), known.err().message);
    auto all = reg.versions(name);
    if (!all)
      return fail(code_of(all.err()), all.err().message);
    if (all->empty()) {
      std::puts("no workflow packages stored yet");
      return 0;
    }
    std::vector<std::vector<std::string>> rows{
      {"NAME", "VERSION", "#", "SHA256", "ADDED", "SIZE", "SOURCE"}};
    for (auto& v : *all)
      rows.push_back({v.name, v.version, "#" + std::to_string(v.seq), v.sha256.substr(0, 12),
                      local_time(v.added), format_size_approx(v.size), v.source});
    print_table(rows);
    return 0;
  });
}

int runs(const args& a) {
  if (wants_help(a)) {
    std::puts(runs_usage);
    return 0;
  }
  auto c = parse(a, "runs", {"--actor", "--limit"});
  if (!c)
    return 1;
  if (c->positionals.size() > 1)
    return fail(1, "runs takes at most one run id; see fabrik runs --help");
  std::optional<uint64_t> id;
  if (!c->positionals.empty()) {
    id = parse_number(c->positionals[0]);
    if (!id || *id == 0)
      return fail(1, "a run id is a number such as 12, not '" + c->positionals[0] + "'");
  }
  size_t limit = 100;
  if (auto text = c->option("--limit")) {
    auto n = parse_number(*text);
    if (!n || *n == 0)
      return fail(1, "--limit takes a positive number of runs, not '" + *text + "'");
    limit = static_cast<size_t>(*n);
  }
  auto actor = c->option("--actor").value_or("");
  if (id && (c->option("--actor") || c->option("--limit")))
    return fail(1, "--actor and --limit list runs; they do not go with a run id");
  return with_registry(*c, [&](const registry& reg) {
    if (id) {
      auto r = reg.run(*id);
      if (!r)
        return fail(code_of(r.err()), r.err().message);
      return print_run(*r);
    }
    auto all = reg.runs(actor, limit);
    if (!all)
      return fail(code_of(all.err()), all.err().message);
    if (all->empty())
      std::puts(actor.empty() ? "no runs stored yet"
                              : ("no runs of actor " + actor + " stored").c_str());
    for (auto& r : *all)
      std::puts(describe_run(r).c_str());
    return 0;
  });
}

} // namespace fabrik::cli
