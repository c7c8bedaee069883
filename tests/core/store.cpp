// The record store: identity and deduplication, range scans, retention, versions, map
// growth, and reading while another store object or process writes.

#include "core/store.hpp"
#include "core/lmdb.hpp"
#include "core/spool.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <limits>
#include <random>

using namespace fabrik;

namespace {

using test_support::scratch_dir;

constexpr int64_t sec = 1000000000;
constexpr int64_t t0 = 1700000000 * sec; // some fixed instant; no test reads the clock

record make(const std::string& stream, int64_t time, double x) {
  record r;
  r.stream = stream;
  r.time = time;
  r.ingest_time = time;
  r.fields = {{"x", x}};
  return r;
}

store open_store(const std::filesystem::path& dir, retention keep = {},
                 std::vector<std::pair<std::string, retention>> overrides = {},
                 int64_t map_size = 16 << 20) {
  store_options o;
  o.dir = dir;
  o.keep = keep;
  o.stream_keep = std::move(overrides);
  o.map_size = map_size;
  auto s = store::open(o);
  if (!s)
    FAIL("cannot open store: " << s.err().what());
  return std::move(*s);
}

std::vector<record> scan_all(const store& s, scan_range range) {
  std::vector<record> out;
  auto n = s.scan(range, [&](record&& r) {
    out.push_back(std::move(r));
    return true;
  });
  REQUIRE(n);
  CHECK(*n == out.size());
  return out;
}

std::vector<record> scan_all(const store& s, const std::string& stream) {
  scan_range range;
  range.stream = stream;
  return scan_all(s, range);
}

std::vector<int64_t> times(const std::vector<record>& rs) {
  std::vector<int64_t> out;
  for (auto& r : rs)
    out.push_back(r.time);
  return out;
}

std::optional<stream_info> info(const store& s, const std::string& name) {
  auto all = s.streams();
  REQUIRE(all);
  for (auto& i : *all)
    if (i.name == name)
      return i;
  return std::nullopt;
}

/// Stats must describe exactly what a scan finds.
void check_stats(const store& s) {
  auto all = s.streams();
  REQUIRE(all);
  for (auto& i : *all) {
    INFO("stream " << i.name);
    auto rs = scan_all(s, i.name);
    REQUIRE(!rs.empty());
    CHECK(i.count == rs.size());
    CHECK(i.first == rs.front().time);
    CHECK(i.last == rs.back().time);
    uint64_t bytes = 0;
    for (auto& r : rs) {
      std::string v;
      encode(r, v);
      bytes += record_key(r).size() + v.size();
    }
    CHECK(i.bytes == bytes);
  }
}

} // namespace

TEST_CASE("put records come back from a scan in time order, whole", "[store]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  std::vector<record> rs{make("line/a", t0 + 3, 3), make("line/a", t0 + 1, 1),
                         make("line/a", t0 + 2, 2)};
  rs[0].fields.push_back({"img", bytes{std::string(1000, 'x')}});
  rs[0].quality = quality::uncertain | quality::time_replaced;
  auto res = s.put(rs);
  REQUIRE(res);
  CHECK(res->stored == 3);
  CHECK(res->duplicates == 0);
  auto back = scan_all(s, "line/a");
  REQUIRE(back.size() == 3);
  CHECK(times(back) == std::vector<int64_t>{t0 + 1, t0 + 2, t0 + 3});
  CHECK(back[2] == rs[0]);
  auto i = info(s, "line/a");
  REQUIRE(i);
  CHECK(i->count == 3);
  CHECK(i->first == t0 + 1);
  CHECK(i->last == t0 + 3);
  check_stats(s);
}

TEST_CASE("a redelivered record is stored once and counted as duplicate", "[store]") {
  scratch_dir dir{"store"};
  {
    auto s = open_store(dir.path());
    auto r = make("a", t0, 1.5);
    auto first = s.put({r, r}); // a duplicate inside one batch too
    REQUIRE(first);
    CHECK(first->stored == 1);
    CHECK(first->duplicates == 1);
    auto again = r;
    again.seq = 99; // a redelivery may carry another arrival counter
    again.ingest_time = t0 + sec; // and certainly another ingest time
    auto second = s.put({again});
    REQUIRE(second);
    CHECK(second->stored == 0);
    CHECK(second->duplicates == 1);
  }
  auto s = open_store(dir.path()); // identity survives a reopen
  auto third = s.put({make("a", t0, 1.5)});
  REQUIRE(third);
  CHECK(third->duplicates == 1);
  CHECK(scan_all(s, "a").size() == 1);
  CHECK(info(s, "a")->count == 1);
  check_stats(s);
}

TEST_CASE("two different values at the same instant are both kept", "[store]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  auto res = s.put({make("a", t0, 1), make("a", t0, 2)});
  REQUIRE(res);
  CHECK(res->stored == 2);
  CHECK(scan_all(s, "a").size() == 2);
}

TEST_CASE("a stream's scan sees none of the streams whose names extend it", "[store]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  REQUIRE(s.put({make("a", t0, 1), make("a/b", t0, 2), make("ab", t0, 3), make("a/b", t0 - 5, 4),
                 make("A", t0, 5)}));
  auto a = scan_all(s, "a");
  REQUIRE(a.size() == 1);
  CHECK(std::get<double>(a[0].fields[0].v) == 1);
  CHECK(scan_all(s, "a/b").size() == 2);
  CHECK(scan_all(s, "ab").size() == 1);
  CHECK(scan_all(s, "nope").empty());
  auto all = s.streams();
  REQUIRE(all);
  std::vector<std::string> names;
  for (auto& i : *all)
    names.push_back(i.name);
  CHECK(names == std::vector<std::string>{"A", "a", "a/b", "ab"});
}

TEST_CASE("scan ranges: from inclusive, to exclusive, limits and early stop", "[store]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  std::vector<record> rs;
  for (int64_t t : std::vector<int64_t>{-3 * sec, -1, 0, 1, 5, 10, 20})
    rs.push_back(make("s", t, static_cast<double>(t)));
  REQUIRE(s.put(rs));
  auto range = [](int64_t from, int64_t to, size_t limit = SIZE_MAX, bool newest = false) {
    return scan_range{"s", from, to, limit, newest};
  };
  CHECK(times(scan_all(s, range(INT64_MIN, INT64_MAX)))
        == std::vector<int64_t>{-3 * sec, -1, 0, 1, 5, 10, 20});
  CHECK(times(scan_all(s, range(0, 10))) == std::vector<int64_t>{0, 1, 5});
  CHECK(times(scan_all(s, range(-1, 1))) == std::vector<int64_t>{-1, 0});
  CHECK(scan_all(s, range(6, 10)).empty());
  CHECK(scan_all(s, range(10, 10)).empty());
  CHECK(times(scan_all(s, range(INT64_MIN, INT64_MAX, 2))) == std::vector<int64_t>{-3 * sec, -1});
  // The newest N, still oldest first.
  CHECK(times(scan_all(s, range(INT64_MIN, INT64_MAX, 3, true)))
        == std::vector<int64_t>{5, 10, 20});
  CHECK(times(scan_all(s, range(INT64_MIN, 10, 2, true))) == std::vector<int64_t>{1, 5});
  CHECK(times(scan_all(s, range(1, 10, 9, true))) == std::vector<int64_t>{1, 5});
  CHECK(times(scan_all(s, range(21, INT64_MAX, 9, true))).empty());
  CHECK(scan_all(s, range(INT64_MIN, INT64_MAX, 0)).empty());
  size_t seen = 0;
  auto n = s.scan(range(INT64_MIN, INT64_MAX), [&](record&&) { return ++seen < 2; });
  REQUIRE(n);
  CHECK(*n == 2);
  CHECK(seen == 2);
}

TEST_CASE("newest_first finds the last records when other streams follow", "[store]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  REQUIRE(s.put({make("a", 1, 1), make("a", 2, 2), make("b", 0, 3), make("b", 9, 4)}));
  scan_range r{"a", INT64_MIN, INT64_MAX, 1, true};
  CHECK(times(scan_all(s, r)) == std::vector<int64_t>{2});
  r.stream = "b";
  CHECK(times(scan_all(s, r)) == std::vector<int64_t>{9});
}

TEST_CASE("records with an unusable stream are rejected, the rest stored", "[store]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  auto res = s.put({make("", t0, 1), make(std::string(max_stream_size + 1, 'x'), t0, 2),
                    make(std::string{"a\0b", 3}, t0, 3), make("ok", t0, 4),
                    make(std::string(max_stream_size, 'y'), t0, 5)});
  REQUIRE(res);
  CHECK(res->rejected == 3);
  CHECK(res->stored == 2);
  CHECK(scan_all(s, std::string(max_stream_size, 'y')).size() == 1);
}

TEST_CASE("a read-only store sees what a writer in the same process commits", "[store]") {
  scratch_dir dir{"store"};
  auto writer = open_store(dir.path());
  REQUIRE(writer.put({make("a", t0, 1)}));
  store_options ro;
  ro.dir = dir.path();
  ro.read_only = true;
  auto reader = store::open(ro);
  REQUIRE(reader);
  CHECK(info(*reader, "a")->count == 1);
  REQUIRE(writer.put({make("a", t0 + 1, 2)}));
  CHECK(info(*reader, "a")->count == 2);
  auto refused = reader->put({make("a", t0 + 2, 3)});
  REQUIRE_FALSE(refused);
  CHECK(refused.err().message.find("read-only") != std::string::npos);
  CHECK_FALSE(reader->apply_retention(t0));
  writer = store{std::move(*reader)}; // the reader outlives the writer's handle
  CHECK(scan_all(writer, "a").size() == 2);
}

TEST_CASE("a read-only store in another process follows the writer, map growth included",
          "[store][process]") {
  scratch_dir dir{"store"};
  auto writer = open_store(dir.path(), {}, {}, 64 << 10);
  std::vector<record> first;
  for (int i = 0; i < 100; ++i)
    first.push_back(make("a", t0 + i, i));
  REQUIRE(writer.put(first));
  int to_child[2], from_child[2];
  REQUIRE(pipe(to_child) == 0);
  REQUIRE(pipe(from_child) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child reads the store on its own LMDB env and reports counts through the pipe.
    uint64_t counts[2] = {0, 0};
    store_options ro;
    ro.dir = dir.path();
    ro.read_only = true;
    auto reader = store::open(ro);
    if (reader) {
      auto a = reader->streams();
      counts[0] = a && !a->empty() ? (*a)[0].count : 0;
    }
    (void)!write(from_child[1], &counts[0], 8);
    char go = 0;
    (void)!read(to_child[0], &go, 1);
    if (reader) {
      size_t n = 0;
      auto ok = reader->scan({"a", INT64_MIN, INT64_MAX, SIZE_MAX, false}, [&](record&&) {
        ++n;
        return true;
      });
      counts[1] = ok ? n : 0;
    }
    (void)!write(from_child[1], &counts[1], 8);
    _exit(0);
  }
  uint64_t count = 0;
  REQUIRE(read(from_child[0], &count, 8) == 8);
  CHECK(count == 100);
  // Several MiB: the writer's map grows far beyond what the child mapped.
  std::vector<record> more;
  for (int i = 0; i < 2000; ++i) {
    auto r = make("a", t0 + 1000 + i, i);
    r.fields.push_back({"blob", bytes{std::string(2000, static_cast<char>(i))}});
    more.push_back(std::move(r));
  }
  REQUIRE(writer.put(more));
  char go = 1;
  REQUIRE(write(to_child[1], &go, 1) == 1);
  REQUIRE(read(from_child[0], &count, 8) == 8);
  CHECK(count == 2100);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]})
    close(fd);
}

TEST_CASE("opening read-only neither creates nor accepts what is not a store", "[store]") {
  scratch_dir dir{"store"};
  store_options ro;
  ro.dir = dir.path() / "missing";
  ro.read_only = true;
  auto missing = store::open(ro);
  REQUIRE_FALSE(missing);
  CHECK(missing.err().code == ec::not_found);
  CHECK_FALSE(std::filesystem::exists(ro.dir));
  std::filesystem::create_directories(dir.path() / "empty");
  ro.dir = dir.path() / "empty";
  auto empty = store::open(ro);
  REQUIRE_FALSE(empty);
  CHECK(empty.err().code == ec::not_found);
  CHECK(empty.err().message.find("not a store") != std::string::npos);
}

TEST_CASE("a spool directory is not taken for a store, nor a store for a spool", "[store]") {
  scratch_dir dir{"store"};
  {
    auto sp = spool::open(dir.path() / "spool", durability::process, 1 << 20);
    REQUIRE(sp);
    REQUIRE(sp->append("x"));
  }
  store_options o;
  o.dir = dir.path() / "spool";
  auto s = store::open(o);
  REQUIRE_FALSE(s);
  CHECK(s.err().message.find("not a fabrik store") != std::string::npos);
  o.read_only = true;
  CHECK_FALSE(store::open(o));
  { auto st = open_store(dir.path() / "store"); }
  CHECK_FALSE(spool::open(dir.path() / "store", durability::process, 1 << 20));
}

TEST_CASE("another layout version is refused naming both versions", "[store][version]") {
  scratch_dir dir{"store"};
  { auto s = open_store(dir.path()); }
  {
    // Rewrite the version by hand, as a future fabrik would have written it.
    lmdb::env_options eo;
    eo.dir = dir.path();
    eo.map_size = 16 << 20;
    auto env = lmdb::env::open(eo);
    REQUIRE(env);
    auto meta = env->db("meta", false);
    REQUIRE(meta);
    auto ok = env->write([&](lmdb::txn& t) -> expected<void> {
      auto put = t.put(*meta, "layout_version", std::string{"\x02\x00\x00\x00", 4});
      if (!put)
        return put.err();
      return {};
    });
    REQUIRE(ok);
  }
  for (bool read_only : {false, true}) {
    store_options o;
    o.dir = dir.path();
    o.read_only = read_only;
    auto s = store::open(o);
    REQUIRE_FALSE(s);
    CHECK(s.err().code == ec::version_mismatch);
    CHECK(s.err().message.find("layout version 2") != std::string::npos);
    CHECK(s.err().message.find("version " + std::to_string(store_layout_version))
          != std::string::npos);
  }
}

TEST_CASE("the map grows from 64 KiB to hold several MiB", "[store][growth]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path(), {}, {}, 64 << 10);
  size_t stored = 0;
  // 8 batches of 1 MiB (one transaction each must outgrow the map several times) ...
  for (int b = 0; b < 8; ++b) {
    std::vector<record> rs;
    for (int i = 0; i < 256; ++i) {
      auto r = make("big", t0 + b * 1000 + i, i);
      r.fields.push_back({"blob", bytes{std::string(4096, 'z')}});
      rs.push_back(std::move(r));
    }
    auto res = s.put(rs);
    REQUIRE(res);
    stored += res->stored;
  }
  // ... and one record larger than the map was at first.
  auto huge = make("big", t0 - 1, 0);
  huge.fields.push_back({"blob", bytes{std::string(3 << 20, 'h')}});
  auto res = s.put({huge});
  REQUIRE(res);
  stored += res->stored;
  CHECK(stored == 8 * 256 + 1);
  CHECK(s.file_size() > (8u << 20));
  CHECK(info(s, "big")->count == stored);
  auto back = scan_all(s, scan_range{"big", INT64_MIN, t0, SIZE_MAX, false});
  REQUIRE(back.size() == 1);
  CHECK(back[0] == huge);
}

// -- retention -------------------------------------------------------------------

TEST_CASE("retention by age deletes what is older than max_age", "[store][retention]") {
  scratch_dir dir{"store"};
  int64_t hour = 3600 * sec;
  auto s = open_store(dir.path(), retention{hour, 0});
  std::vector<record> rs;
  for (int i = 0; i <= 10; ++i)
    rs.push_back(make("a", t0 - i * 10 * 60 * sec, i)); // every 10 minutes, back 100 min
  rs.push_back(make("b", t0 - 5 * hour, 1));
  REQUIRE(s.put(rs));
  auto n = s.apply_retention(t0);
  REQUIRE(n);
  CHECK(*n == 4 + 1); // 70, 80, 90, 100 min of a; b entirely
  auto left = scan_all(s, "a");
  REQUIRE(left.size() == 7);
  CHECK(left.front().time == t0 - hour); // exactly max_age old is kept
  CHECK(info(s, "a")->first == t0 - hour);
  CHECK_FALSE(info(s, "b")); // an emptied stream disappears
  check_stats(s);
  auto again = s.apply_retention(t0);
  REQUIRE(again);
  CHECK(*again == 0);
}

TEST_CASE("retention without limits keeps everything", "[store][retention]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path());
  REQUIRE(s.put({make("a", 0, 1), make("a", t0, 2)}));
  auto n = s.apply_retention(t0 * 2);
  REQUIRE(n);
  CHECK(*n == 0);
  CHECK(scan_all(s, "a").size() == 2);
}

TEST_CASE("per-stream overrides: exact name, then longest prefix/*, then *", "[store][retention]") {
  scratch_dir dir{"store"};
  int64_t minute = 60 * sec;
  auto s = open_store(dir.path(), retention{10 * minute, 0},
                      {{"*", retention{20 * minute, 0}},
                       {"plant/*", retention{30 * minute, 0}},
                       {"plant/line1/*", retention{40 * minute, 0}},
                       {"plant/line1/keep", retention{0, 0}}});
  std::vector<record> rs;
  for (auto stream : {"other", "plant/x", "plant/line1/y", "plant/line1/keep", "plant"})
    for (int m = 0; m <= 60; m += 5)
      rs.push_back(make(stream, t0 - m * minute, m));
  REQUIRE(s.put(rs));
  REQUIRE(s.apply_retention(t0));
  auto oldest_minutes = [&](const std::string& stream) {
    return (t0 - info(s, stream)->first) / minute;
  };
  CHECK(oldest_minutes("other") == 20); // "*"
  CHECK(oldest_minutes("plant/x") == 30); // "plant/*"
  CHECK(oldest_minutes("plant/line1/y") == 40); // the longer prefix wins
  CHECK(oldest_minutes("plant/line1/keep") == 60); // exact name: 0 keeps forever
  CHECK(oldest_minutes("plant") == 20); // "plant/*" does not match "plant"
  check_stats(s);
}

TEST_CASE("without a * override, the global max_age applies", "[store][retention]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path(), retention{10 * sec, 0}, {{"x/*", retention{100 * sec, 0}}});
  REQUIRE(s.put({make("x/1", t0 - 50 * sec, 1), make("y", t0 - 50 * sec, 2)}));
  REQUIRE(s.apply_retention(t0));
  CHECK(info(s, "x/1"));
  CHECK_FALSE(info(s, "y"));
}

TEST_CASE("a stream's max_size deletes its oldest records until it fits", "[store][retention]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path(), {}, {{"*", retention{0, 10000}}});
  std::vector<record> rs;
  for (int i = 0; i < 100; ++i) {
    auto r = make("a", t0 + i, i);
    r.fields.push_back({"pad", std::string(200, 'p')});
    rs.push_back(r);
    r.stream = "b";
    if (i < 10)
      rs.push_back(r);
  }
  REQUIRE(s.put(rs));
  auto b_before = info(s, "b")->bytes;
  REQUIRE(b_before < 10000);
  auto n = s.apply_retention(t0);
  REQUIRE(n);
  CHECK(*n > 0);
  auto a = info(s, "a");
  REQUIRE(a);
  CHECK(a->bytes <= 10000);
  CHECK(a->bytes > 10000 - 300); // not more than needed: one record is ~260 bytes
  CHECK(a->last == t0 + 99); // the newest are kept
  CHECK(a->count == 100 - *n);
  CHECK(info(s, "b")->bytes == b_before); // b fits: untouched
  check_stats(s);
}

TEST_CASE("the global max_size bounds the whole store, oldest records first",
          "[store][retention]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path(), retention{0, 20000});
  std::vector<record> rs;
  // Two streams interleaved in time; "old" also has records before "new" starts.
  for (int i = 0; i < 100; ++i) {
    auto r = make("old", t0 + 2 * i, i);
    r.fields.push_back({"pad", std::string(200, 'p')});
    rs.push_back(r);
    if (i >= 50) {
      r.stream = "new";
      r.time = t0 + 2 * i + 1;
      rs.push_back(r);
    }
  }
  REQUIRE(s.put(rs));
  REQUIRE(s.apply_retention(t0));
  auto all = s.streams();
  REQUIRE(all);
  uint64_t total = 0;
  for (auto& i : *all)
    total += i.bytes;
  CHECK(total <= 20000);
  CHECK(total > 20000 - 300);
  auto old_s = info(s, "old");
  auto new_s = info(s, "new");
  REQUIRE(old_s);
  REQUIRE(new_s);
  // What is left is the newest data across both streams: their oldest times are adjacent.
  CHECK(std::abs(old_s->first - new_s->first) == 1);
  CHECK(old_s->last == t0 + 198);
  CHECK(new_s->last == t0 + 199);
  check_stats(s);
}

TEST_CASE("retention deletes more records than one chunk", "[store][retention]") {
  scratch_dir dir{"store"};
  auto s = open_store(dir.path(), retention{sec, 0});
  std::vector<record> rs;
  for (int i = 0; i < 25000; ++i)
    rs.push_back(make("a", t0 - 2 * sec - i, i));
  rs.push_back(make("a", t0, -1));
  REQUIRE(s.put(rs));
  auto n = s.apply_retention(t0);
  REQUIRE(n);
  CHECK(*n == 25000);
  CHECK(info(s, "a")->count == 1);
  check_stats(s);
}
