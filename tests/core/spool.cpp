// The spool: a durable FIFO with sequence numbers that are never reused, and a meta table.

#include "core/spool.hpp"
#include "core/lmdb.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

using namespace fabrik;

namespace {

using test_support::scratch_dir;

spool open_spool(const std::filesystem::path& dir, int64_t map_size = 1 << 20) {
  auto sp = spool::open(dir, durability::process, map_size);
  if (!sp)
    FAIL("cannot open spool: " << sp.err().what());
  return std::move(*sp);
}

std::vector<uint64_t> seqs(const std::vector<spool::entry>& es) {
  std::vector<uint64_t> out;
  for (auto& e : es)
    out.push_back(e.seq);
  return out;
}

} // namespace

TEST_CASE("entries come back in append order with increasing seqs", "[spool]") {
  scratch_dir dir{"spool"};
  auto sp = open_spool(dir.path());
  std::vector<uint64_t> got;
  for (auto data : {"one", "two", "three"}) {
    auto seq = sp.append(data);
    REQUIRE(seq);
    got.push_back(*seq);
  }
  CHECK(got[0] < got[1]);
  CHECK(got[1] < got[2]);
  CHECK(sp.size() == 3);
  auto all = sp.read(0, 10);
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  CHECK(seqs(*all) == got);
  CHECK((*all)[0].data == "one");
  CHECK((*all)[2].data == "three");
  auto tail = sp.read(got[1], 10);
  REQUIRE(tail);
  CHECK(seqs(*tail) == std::vector<uint64_t>{got[1], got[2]});
  auto one = sp.read(0, 1);
  REQUIRE(one);
  CHECK(seqs(*one) == std::vector<uint64_t>{got[0]});
  auto none = sp.read(got[2] + 1, 10);
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("binary data, empty entries and large entries are kept byte for byte", "[spool]") {
  scratch_dir dir{"spool"};
  auto sp = open_spool(dir.path(), 64 << 10); // the large entry outgrows the map
  std::string binary{"\0\x01\xff", 3};
  std::string large(1 << 20, 'L');
  REQUIRE(sp.append(binary));
  REQUIRE(sp.append(""));
  REQUIRE(sp.append(large));
  auto all = sp.read(0, 10);
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].data == binary);
  CHECK((*all)[1].data.empty());
  CHECK((*all)[2].data == large);
}

TEST_CASE("erase removes the given entries and ignores missing ones", "[spool]") {
  scratch_dir dir{"spool"};
  auto sp = open_spool(dir.path());
  std::vector<uint64_t> s;
  for (int i = 0; i < 5; ++i)
    s.push_back(*sp.append("e" + std::to_string(i)));
  REQUIRE(sp.erase({s[3], s[1], s[1], 999999}));
  CHECK(sp.size() == 3);
  auto left = sp.read(0, 10);
  REQUIRE(left);
  CHECK(seqs(*left) == std::vector<uint64_t>{s[0], s[2], s[4]});
  REQUIRE(sp.erase({}));
  CHECK(sp.size() == 3);
}

TEST_CASE("a reopened spool keeps its entries and never reuses a seq", "[spool]") {
  scratch_dir dir{"spool"};
  uint64_t last = 0;
  {
    auto sp = open_spool(dir.path());
    REQUIRE(sp.append("a"));
    last = *sp.append("b");
  }
  {
    auto sp = open_spool(dir.path());
    CHECK(sp.size() == 2);
    auto all = sp.read(0, 10);
    REQUIRE(all);
    REQUIRE(all->size() == 2);
    CHECK(all->back().data == "b");
    auto next = sp.append("c");
    REQUIRE(next);
    CHECK(*next == last + 1);
    last = *next;
    // Erase everything: the counter must still move on.
    REQUIRE(sp.erase(seqs(*sp.read(0, 10))));
    CHECK(sp.size() == 0);
  }
  auto sp = open_spool(dir.path());
  CHECK(sp.size() == 0);
  auto after = sp.append("d");
  REQUIRE(after);
  CHECK(*after == last + 1);
}

TEST_CASE("meta keys are kept across reopen and overwritten in place", "[spool]") {
  scratch_dir dir{"spool"};
  {
    auto sp = open_spool(dir.path());
    CHECK_FALSE(sp.get_meta("simatic:topic"));
    REQUIRE(sp.put_meta("simatic:topic", "v1"));
    REQUIRE(sp.put_meta("simatic:topic", "v2"));
    REQUIRE(sp.put_meta("empty", ""));
    CHECK(sp.size() == 0); // meta is no entry
    CHECK_FALSE(sp.put_meta("", "x"));
    CHECK_FALSE(sp.put_meta(std::string(600, 'k'), "x"));
  }
  auto sp = open_spool(dir.path());
  CHECK(sp.get_meta("simatic:topic") == std::optional<std::string>{"v2"});
  CHECK(sp.get_meta("empty") == std::optional<std::string>{""});
  CHECK_FALSE(sp.get_meta("next_seq")); // the counter lives apart from the caller's keys
}

TEST_CASE("appends from one thread and reads and erases from another lose nothing",
          "[spool][threads]") {
  scratch_dir dir{"spool"};
  // A small map so that the map grows while the other thread reads.
  auto sp = open_spool(dir.path(), 64 << 10);
  constexpr int n = 2000;
  std::atomic<bool> done{false};
  std::thread producer{[&] {
    for (int i = 0; i < n; ++i)
      if (!sp.append("message " + std::to_string(i) + std::string(100, '.')))
        break;
    done = true;
  }};
  std::set<std::string> seen;
  uint64_t next = 0;
  bool failed = false;
  while (!failed) {
    bool finished = done;
    auto batch = sp.read(next, 100);
    if (!batch) {
      failed = true;
      break;
    }
    for (auto& e : *batch)
      seen.insert(e.data);
    if (!batch->empty()) {
      next = batch->back().seq + 1;
      if (!sp.erase(seqs(*batch)))
        failed = true;
    } else if (finished) {
      break;
    }
  }
  producer.join();
  CHECK_FALSE(failed);
  CHECK(seen.size() == n);
  CHECK(sp.size() == 0);
}

TEST_CASE("a spool of another layout version is refused naming both versions", "[spool][version]") {
  scratch_dir dir{"spool"};
  { auto sp = open_spool(dir.path()); }
  {
    lmdb::env_options eo;
    eo.dir = dir.path();
    auto env = lmdb::env::open(eo);
    REQUIRE(env);
    auto state = env->db("spool.state", false);
    REQUIRE(state);
    REQUIRE(env->write([&](lmdb::txn& t) -> expected<void> {
      if (auto ok = t.put(*state, "layout_version", lmdb::be64_key(2)); !ok)
        return ok.err();
      return {};
    }));
  }
  auto sp = spool::open(dir.path(), durability::process);
  REQUIRE_FALSE(sp);
  CHECK(sp.err().code == ec::version_mismatch);
  CHECK(sp.err().message.find("layout version 2") != std::string::npos);
  CHECK(sp.err().message.find("reads version 1") != std::string::npos);
}

TEST_CASE("several entries and meta pairs are appended in one transaction: all or none",
          "[spool]") {
  scratch_dir dir{"spool"};
  auto sp = open_spool(dir.path());
  auto first =
    sp.append(std::vector<std::string_view>{"a", "b", "c"}, {{"origin:x", "7"}, {"origin:y", "9"}});
  REQUIRE(first);
  auto all = sp.read(0, 10);
  REQUIRE(all);
  CHECK(seqs(*all) == std::vector<uint64_t>{*first, *first + 1, *first + 2});
  CHECK((*all)[1].data == "b");
  CHECK(sp.get_meta("origin:y") == std::optional<std::string>{"9"});
  // A bad meta key refuses the whole append: no entry is added.
  CHECK_FALSE(sp.append(std::vector<std::string_view>{"d"}, {{"", "1"}}));
  CHECK(sp.size() == 3);
  // Meta only, no entries: the next entry still gets the next seq.
  REQUIRE(sp.put_meta({{"k1", "1"}, {"k2", "2"}}));
  CHECK(sp.get_meta("k2") == std::optional<std::string>{"2"});
  auto next = sp.append("e");
  REQUIRE(next);
  CHECK(*next == *first + 3);
}

TEST_CASE("visit hands out entries in order without copies and stops when told", "[spool]") {
  scratch_dir dir{"spool"};
  auto sp = open_spool(dir.path());
  REQUIRE(sp.append(std::vector<std::string_view>{"one", "two", "three", "four"}, {}));
  std::vector<std::string> seen;
  REQUIRE(sp.visit(0, 10, [&](uint64_t, std::string_view data) {
    seen.emplace_back(data);
    return seen.size() < 2; // the second one is the last taken
  }));
  CHECK(seen == std::vector<std::string>{"one", "two"});
  seen.clear();
  REQUIRE(sp.visit(0, 3, [&](uint64_t, std::string_view data) {
    seen.emplace_back(data);
    return true;
  }));
  CHECK(seen.size() == 3);
}
