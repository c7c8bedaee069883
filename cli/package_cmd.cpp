// fabrik package, and fabrik check FILE.zip: workflow packages (runtime/package.hpp).

#include "cli/commands.hpp"

#include "core/time.hpp"

#include "runtime/package.hpp"

#include <cstdio>
#include <optional>

namespace fabrik::cli {

namespace {

/// NAME VERSION, N files, SIZE, sha256 HASH
std::string summary(const package_info& p) {
  auto n = p.entries.size();
  return p.manifest.name + " " + p.manifest.version + ", " + std::to_string(n)
         + (n == 1 ? " file, " : " files, ") + format_size_approx(p.unpacked_size) + ", sha256 "
         + p.sha256;
}

/// Bad packages are user errors; a disk or library failure is internal.
int exit_code(const error& e) { return e.code == ec::io_error || e.code == ec::internal ? 2 : 1; }

} // namespace

int check_package(const std::string& file) {
  auto p = read_package(file);
  if (!p) {
    if (p.err().code != ec::parse_error)
      return fail(exit_code(p.err()), p.err().message);
    // Each line names its place (FILE.zip: entry ..., FILE.zip!fabrik-workflow.yaml:L:C:
    // ...), like flow diagnostics: on stdout, the verdict on stderr.
    std::printf("%s\n", p.err().message.c_str());
    std::fflush(stdout);
    return fail(1, file + " is not a valid workflow package");
  }
  std::string kind = p->manifest.from_manifest
                       ? to_string(p->manifest.kind)
                       : "process_input, no manifest: Siemens entrypoint.py package";
  std::printf("%s: ok: %s (%s)\n", file.c_str(), summary(*p).c_str(), kind.c_str());
  return 0;
}

int package(const args& a) {
  if (wants_help(a)) {
    std::puts("usage: fabrik package DIR -o FILE.zip\n\n"
              "Builds a workflow package from the source directory DIR: checks its\n"
              "fabrik-workflow.yaml, zips every regular file (sorted, with fixed timestamps, so\n"
              "the same sources give the same zip), skipping __pycache__/, *.pyc, *.pyo and .git,\n"
              "then validates the zip as `fabrik check FILE.zip` does. FILE.zip is replaced only\n"
              "by a valid package. Prints\n\n"
              "  FILE.zip: NAME VERSION, N files, SIZE, sha256 HASH\n\n"
              "SIZE is the unpacked size; HASH the content hash that names the version\n"
              "(docs/workflows.md).\n\n"
              "  -o, --output FILE.zip   the package to write (required)");
    return 0;
  }
  std::optional<std::string> dir, out;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "-o" || a[i] == "--output") {
      if (i + 1 >= a.size())
        return fail(1, a[i] + " needs a file name");
      out = a[++i];
    } else if (!a[i].empty() && a[i][0] == '-') {
      return fail(1, "unknown option " + a[i] + "; see fabrik package --help");
    } else if (!dir) {
      dir = a[i];
    } else {
      return fail(1, "package takes one directory; see fabrik package --help");
    }
  }
  if (!dir)
    return fail(1, "package needs a source directory; see fabrik package --help");
  if (!out)
    return fail(1, "package needs -o FILE.zip; see fabrik package --help");
  auto p = build_package(*dir, *out);
  if (!p) {
    if (p.err().code == ec::parse_error) {
      std::fprintf(stderr, "%s\n", p.err().message.c_str());
      return fail(1, "no package written");
    }
    return fail(exit_code(p.err()), p.err().message);
  }
  std::printf("%s: %s\n", out->c_str(), summary(*p).c_str());
  return 0;
}

} // namespace fabrik::cli
