// fabrik store: look inside a storage directory, read-only, while `fabrik run` may write.

#include "cli/commands.hpp"

#include "core/record.hpp"
#include "core/store.hpp"
#include "core/time.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <optional>

namespace fabrik::cli {

namespace {

// `store` alone names the subcommand here; the class is fabrik::store.

constexpr const char* store_usage =
  R"(usage: fabrik store PATH [STREAM] [--from T] [--to T] [--limit N]

Looks inside a storage directory: the `path` of a storage actor, by default
DATA_DIR/storage/ACTOR. Opens it read-only, so it works while `fabrik run` writes.

  fabrik store PATH          the streams: records, first and last time, size
  fabrik store PATH STREAM   the stream's records as JSON lines, oldest first

  --from T    records at or after T: RFC 3339 (2024-05-01T08:00:00Z) or relative to
              now (-1h, -30m, -7d)
  --to T      records before T (same forms)
  --limit N   at most N records: with --from the first N from there, without it the
              newest N (printed oldest first)

Exit status: 0 ok, 1 a user error (no such store or stream, a bad option), 2 an
internal error.)";

/// Exit code for an error from the store: what the user can fix is 1.
int code_of(const error& e) {
  switch (e.code) {
    case ec::not_found:
    case ec::invalid_argument:
    case ec::version_mismatch:
    case ec::parse_error:
      return 1;
    default:
      return 2;
  }
}

/// "; stores inside: storage/a, ..." when `path` is, say, the data directory.
std::string stores_inside(const std::filesystem::path& path) {
  std::vector<std::string> found;
  std::error_code err;
  auto opts = std::filesystem::directory_options::skip_permission_denied;
  std::filesystem::recursive_directory_iterator it{path, opts, err}, end;
  for (; !err && it != end; it.increment(err)) {
    if (it.depth() >= 2)
      it.disable_recursion_pending();
    if (it->path().filename() != "data.mdb")
      continue;
    auto rel = std::filesystem::relative(it->path().parent_path(), path, err).generic_string();
    // Spools (DATA_DIR/spool/ACTOR) are LMDB too, but hold no records.
    if (!err && !rel.empty() && rel != "." && !rel.starts_with("spool/"))
      found.push_back(rel);
  }
  if (found.empty())
    return {};
  std::sort(found.begin(), found.end());
  std::string out = "; stores inside: ";
  for (size_t i = 0; i < found.size(); ++i)
    out += (i ? ", " : "") + found[i];
  return out;
}

int list_streams(const fabrik::store& s, const std::string& path) {
  auto all = s.streams();
  if (!all)
    return fail(code_of(all.err()), all.err().message);
  if (all->empty()) {
    std::printf("%s: no records yet\n", path.c_str());
    return 0;
  }
  struct row {
    std::string name, count, first, last, size;
  };
  std::vector<row> rows{{"STREAM", "RECORDS", "FIRST", "LAST", "SIZE"}};
  uint64_t total = 0;
  for (auto& i : *all) {
    rows.push_back({i.name, std::to_string(i.count), format_time(i.first, 3),
                    format_time(i.last, 3), format_size_approx(i.bytes)});
    total += i.count;
  }
  size_t w[5] = {0, 0, 0, 0, 0};
  for (auto& r : rows) {
    w[0] = std::max(w[0], r.name.size());
    w[1] = std::max(w[1], r.count.size());
    w[2] = std::max(w[2], r.first.size());
    w[3] = std::max(w[3], r.last.size());
  }
  for (auto& r : rows)
    std::printf("%-*s  %*s  %-*s  %-*s  %s\n", static_cast<int>(w[0]), r.name.c_str(),
                static_cast<int>(w[1]), r.count.c_str(), static_cast<int>(w[2]), r.first.c_str(),
                static_cast<int>(w[3]), r.last.c_str(), r.size.c_str());
  std::printf("%zu stream%s, %llu records, file %s\n", all->size(), all->size() == 1 ? "" : "s",
              static_cast<unsigned long long>(total), format_size_approx(s.file_size()).c_str());
  return 0;
}

int print_records(const fabrik::store& s, const std::string& path, const scan_range& range) {
  auto all = s.streams();
  if (!all)
    return fail(code_of(all.err()), all.err().message);
  auto known = std::find_if(all->begin(), all->end(),
                            [&](const stream_info& i) { return i.name == range.stream; });
  if (known == all->end()) {
    std::string names;
    size_t shown = 0;
    for (auto& i : *all) {
      if (shown++ == 20) {
        names += ", ... (" + std::to_string(all->size() - 20) + " more)";
        break;
      }
      names += (names.empty() ? "" : ", ") + i.name;
    }
    return fail(1, "no stream " + range.stream + " in " + path
                     + "; streams: " + (names.empty() ? "none" : names));
  }
  std::string line;
  auto n = s.scan(range, [&](record&& r) {
    line = to_json_line(r);
    line.push_back('\n');
    return std::fwrite(line.data(), 1, line.size(), stdout) == line.size();
  });
  if (!n)
    return fail(code_of(n.err()), n.err().message);
  if (std::fflush(stdout) != 0)
    return fail(2, "cannot write the records");
  return 0;
}

} // namespace

int store(const args& a) {
  if (wants_help(a)) {
    std::puts(store_usage);
    return 0;
  }
  auto c = parse_command_line(a, "store", {"--from", "--to", "--limit"});
  if (!c)
    return 1;
  if (c->positionals.size() > 2)
    return fail(1, "store takes a path and at most one stream; see fabrik store --help");
  std::optional<std::string> path, stream;
  if (c->positionals.size() > 0)
    path = c->positionals[0];
  if (c->positionals.size() > 1)
    stream = c->positionals[1];
  auto from_text = c->option("--from"), to_text = c->option("--to"),
       limit_text = c->option("--limit");
  if (!path)
    return fail(1, "store needs the path of a storage directory; see fabrik store --help");
  if (!stream && (from_text || to_text || limit_text))
    return fail(1, "--from, --to and --limit need a stream; see fabrik store --help");

  scan_range range;
  auto now = now_ns();
  if (from_text) {
    auto t = parse_time_arg(*from_text, now);
    if (!t)
      return fail(1, "--from: " + t.err().message);
    range.from = *t;
  }
  if (to_text) {
    auto t = parse_time_arg(*to_text, now);
    if (!t)
      return fail(1, "--to: " + t.err().message);
    range.to = *t;
  }
  if (from_text && to_text && range.from >= range.to)
    return fail(1, "--from " + *from_text + " is not before --to " + *to_text);
  if (limit_text) {
    size_t n = 0;
    auto& s = *limit_text;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || end != s.data() + s.size() || n == 0)
      return fail(1, "--limit takes a positive number of records, not '" + s + "'");
    range.limit = n;
    range.newest_first = !from_text;
  }

  store_options opts;
  opts.dir = *path;
  opts.read_only = true;
  auto s = fabrik::store::open(opts);
  if (!s)
    return fail(code_of(s.err()), s.err().message + stores_inside(*path));
  if (!stream)
    return list_streams(*s, *path);
  range.stream = *stream;
  return print_records(*s, *path, range);
}

} // namespace fabrik::cli
