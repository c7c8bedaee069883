// fabrik run, check and kinds (check FILE.zip is in package_cmd.cpp).

#include "cli/commands.hpp"

#include "core/time.hpp"
#include "engine/engine.hpp"
#include "flows/flow.hpp"
#include "flows/kind.hpp"
#include "flows/nodes.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <optional>

namespace fabrik::cli {

int fail(int code, const std::string& reason) {
  std::fprintf(stderr, "fabrik: %s\n", reason.c_str());
  return code;
}

bool wants_help(const args& a) {
  for (auto& x : a)
    if (x == "-h" || x == "--help")
      return true;
  return false;
}

std::optional<std::string> command_line::option(std::string_view name) const {
  if (auto it = options.find(name); it != options.end())
    return it->second;
  return std::nullopt;
}

std::optional<command_line> parse_command_line(const args& a, const std::string& cmd,
                                               const std::vector<std::string_view>& valued,
                                               const std::vector<std::string_view>& flags) {
  auto see = "; see fabrik " + cmd + " --help";
  auto in = [](auto& list, std::string_view x) {
    return std::find(list.begin(), list.end(), x) != list.end();
  };
  command_line out;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto& x = a[i];
    if (x.size() < 2 || x[0] != '-') {
      out.positionals.push_back(x);
      continue;
    }
    auto eq = x.find('=');
    auto name = x.substr(0, eq);
    if (in(flags, x)) {
      out.flags.insert(x);
    } else if (!in(valued, name)) {
      fail(1, "unknown option " + x + see);
      return std::nullopt;
    } else if (eq != std::string::npos) {
      out.options[name] = x.substr(eq + 1);
    } else if (i + 1 < a.size()) {
      out.options[name] = a[++i];
    } else {
      fail(1, name + " needs a value" + see);
      return std::nullopt;
    }
  }
  return out;
}

std::optional<flow> load(const std::string& file, bool print_warnings) {
  std::vector<diagnostic> diags;
  auto f = load_flow(file, diags);
  for (auto& d : diags)
    if (!d.warning || print_warnings)
      std::fprintf(stderr, "%s\n", d.to_string().c_str());
  return f;
}

int check(const args& a) {
  if (wants_help(a)) {
    std::puts("usage: fabrik check FLOW | FILE.zip\n\n"
              "Validates a flow file without running anything: YAML syntax, kinds, settings,\n"
              "wires. Prints every problem as FILE:LINE:COL: message; exits 1 if any is an\n"
              "error (warnings alone exit 0).\n\n"
              "Given a .zip, validates a workflow package instead: its manifest, its entries\n"
              "(paths, links, sizes, compression ratios) and its entry module.");
    return 0;
  }
  if (a.size() != 1)
    return fail(1, "check takes one flow file; see fabrik check --help");
  if (a[0].ends_with(".zip"))
    return check_package(a[0]);
  std::vector<diagnostic> diags;
  auto f = load_flow(a[0], diags);
  size_t errors = 0;
  for (auto& d : diags) {
    std::printf("%s\n", d.to_string().c_str());
    errors += d.warning ? 0 : 1;
  }
  std::fflush(stdout); // diagnostics first, then the summary on stderr
  if (!f || errors > 0) {
    std::fprintf(stderr, "fabrik: %zu error%s in %s\n", errors, errors == 1 ? "" : "s",
                 a[0].c_str());
    return 1;
  }
  auto plural = [](size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  std::printf("%s: ok (%s, %s)\n", a[0].c_str(), plural(f->actors.size(), "actor").c_str(),
              plural(f->wires.size(), "wire").c_str());
  return 0;
}

int run(const args& a) {
  if (wants_help(a)) {
    std::puts(
      "usage: fabrik run FLOW [--node NAME] [--data-dir DIR] [--http HOST:PORT|off]\n"
      "                       [--status-interval D] [--log-level L]\n\n"
      "Runs the flow until SIGINT or SIGTERM, then stops the sources, lets in-flight\n"
      "batches reach storage and exits. A second signal exits at once (nothing is lost:\n"
      "commits are atomic and spooled messages are replayed at the next start).\n\n"
      "  --node NAME               run only the actors placed on node NAME (on: NAME), listen\n"
      "                            for the other nodes and connect the wires that cross to\n"
      "                            them; without it the whole flow runs in this process\n"
      "  --data-dir DIR            state directory (default: data/ beside the flow file, or\n"
      "                            data/NAME with --node)\n"
      "  --http HOST:PORT|off      web UI and API address (default: the flow's http.listen,\n"
      "                            127.0.0.1:8080; port 0 picks a free one)\n"
      "  --status-interval D       log every actor's status this often (default 10s; 0 = off)\n"
      "  --log-level L             trace, debug, info (default), warn, error");
    return 0;
  }
  auto c = parse_command_line(
    a, "run", {"--node", "--data-dir", "--http", "--status-interval", "--log-level"});
  if (!c)
    return 1;
  if (c->positionals.size() != 1)
    return fail(1, c->positionals.empty() ? "run needs a flow file; see fabrik run --help"
                                          : "run takes one flow file; see fabrik run --help");
  run_options opts;
  opts.http = c->option("--http");
  if (auto v = c->option("--status-interval")) {
    auto d = parse_duration(*v);
    if (!d)
      return fail(1, "--status-interval: " + d.err().message);
    opts.status_interval = *d;
  }
  if (auto v = c->option("--log-level")) {
    auto level = spdlog::level::from_str(*v);
    if (level == spdlog::level::off && *v != "off")
      return fail(1, "--log-level takes trace, debug, info, warn or error");
    spdlog::set_level(level);
  }
  auto file = c->positionals.front();
  auto f = load(file, true);
  if (!f)
    return fail(1, "flow " + file + " has errors; nothing started");
  if (auto node = c->option("--node")) {
    if (!find_node(*f, *node)) {
      std::string names;
      for (auto& n : node_names(*f))
        names += (names.empty() ? "" : ", ") + n;
      return fail(1,
                  names.empty()
                    ? "--node " + *node + ": flow " + file + " has no 'nodes' section"
                    : "--node " + *node + ": flow " + file + " has no such node; nodes: " + names);
    }
    opts.node = *node;
  }
  opts.data_dir = data_dir_of(file, c->option("--data-dir"), opts.node);
  return run_flow(*f, opts);
}

int kinds(const args& a) {
  if (wants_help(a)) {
    std::puts("usage: fabrik kinds [KIND] [--markdown]\n\n"
              "Lists every actor kind, or one kind's settings (type, default, doc).\n"
              "--markdown prints the whole reference as docs/kinds.md holds it.");
    return 0;
  }
  bool markdown = false;
  std::optional<std::string> name;
  for (auto& x : a) {
    if (x == "--markdown")
      markdown = true;
    else if (!name)
      name = x;
    else
      return fail(1, "kinds takes at most one kind name");
  }
  if (markdown) {
    std::fputs(kinds_markdown().c_str(), stdout);
    return 0;
  }
  if (name) {
    auto* k = find_kind(*name);
    if (!k) {
      std::string known;
      for (auto* x : all_kinds())
        known += (known.empty() ? "" : ", ") + std::string{x->name};
      return fail(1, "unknown kind '" + *name + "'; kinds: " + known);
    }
    std::fputs(kind_text(*k).c_str(), stdout);
    return 0;
  }
  for (auto* k : all_kinds())
    std::printf("%-14s %-7s %s\n", std::string{k->name}.c_str(), to_string(k->role),
                std::string{k->summary}.c_str());
  for (auto* s : all_sections())
    std::printf("%-14s %-7s %s\n", std::string{s->name}.c_str(), "section",
                std::string{s->summary}.c_str());
  std::puts("\n`fabrik kinds KIND` shows a kind's settings.");
  return 0;
}

} // namespace fabrik::cli

namespace fabrik::cli {

std::filesystem::path data_dir_of(const std::string& flow_file,
                                  const std::optional<std::string>& data_dir,
                                  const std::string& node) {
  if (data_dir)
    return std::filesystem::absolute(*data_dir);
  auto dir = std::filesystem::absolute(flow_file).parent_path() / "data";
  return node.empty() ? dir : dir / node;
}

} // namespace fabrik::cli
