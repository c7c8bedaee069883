// A delivery's bytes: the group of spooled batches one message across nodes carries.

#include "actors/delivery.hpp"

#include <catch2/catch.hpp>

using namespace fabrik;

TEST_CASE("a group of batches round-trips with its seqs, empty and binary batches too",
          "[delivery]") {
  std::string binary{"\0\xff\x01", 3};
  std::string group;
  encode_group_part({7, "first"}, group);
  encode_group_part({8, ""}, group);
  encode_group_part({1ULL << 40, binary}, group);
  auto parts = decode_group(group);
  REQUIRE(parts);
  REQUIRE(parts->size() == 3);
  CHECK((*parts)[0].seq == 7);
  CHECK((*parts)[0].batch == "first");
  CHECK((*parts)[1].batch.empty());
  CHECK((*parts)[2].seq == 1ULL << 40);
  CHECK((*parts)[2].batch == binary);
  auto none = decode_group("");
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("a truncated group is refused at every cut, naming where", "[delivery]") {
  std::string group;
  encode_group_part({1, "abc"}, group);
  encode_group_part({2, "defg"}, group);
  for (size_t cut = 1; cut < group.size(); ++cut) {
    if (cut == 15) // exactly the first part: a whole group of one
      continue;
    auto parts = decode_group(std::string_view{group}.substr(0, cut));
    INFO("cut at " << cut);
    REQUIRE_FALSE(parts);
    CHECK(parts.err().message.find("delivery truncated") != std::string::npos);
  }
}

TEST_CASE("an origin's text is a link id and a seq, and anything else is no origin", "[delivery]") {
  auto o = origin_filter::parse("3f2a9b1c00d4e5f6:42");
  REQUIRE(o);
  CHECK(o->first == "3f2a9b1c00d4e5f6");
  CHECK(o->second == 42);
  for (std::string bad : {"", "42", ":42", "abc:", "abc:4x2", "abc:99999999999999999999999"})
    CHECK_FALSE(origin_filter::parse(bad));
}

TEST_CASE("the origin filter drops what was taken before, also after a restart, and never "
          "what a failed transaction refused",
          "[delivery]") {
  std::map<std::string, std::string> side_table; // the spool's, across restarts
  auto load = [&](const std::string& upstream) -> uint64_t {
    auto it = side_table.find(origin_filter::key(upstream));
    return it == side_table.end() ? 0 : std::stoull(it->second);
  };
  auto commit = [&](origin_filter& f) {
    for (auto& [k, v] : f.pending_meta())
      side_table[k] = v;
    f.committed();
  };
  {
    origin_filter f{load};
    CHECK_FALSE(f.replay("")); // no origin: never a replay
    CHECK_FALSE(f.replay("up:1"));
    f.take("up:1");
    CHECK(f.replay("up:1")); // the same batch twice in one transaction
    f.take("up:2");
    f.take("other:7");
    commit(f);
    CHECK(side_table.at("origin:up") == "2");
    CHECK(f.replay("up:2"));
    CHECK(f.replay("up:1"));
    CHECK_FALSE(f.replay("up:3"));
    CHECK_FALSE(f.replay("other:8"));
  }
  origin_filter after_restart{load};
  CHECK(after_restart.replay("up:2")); // made again after a crash: dropped
  CHECK(after_restart.replay("other:7"));
  CHECK_FALSE(after_restart.replay("up:3"));
  // up:3 fails to spool, up:4 gets in, then the producer resends up:3: taken, and the
  // newest stays 4, so a replay of up:4 is still dropped.
  after_restart.take("up:3");
  after_restart.refused({"up:3"});
  CHECK_FALSE(after_restart.replay("up:4"));
  after_restart.take("up:4");
  commit(after_restart);
  CHECK_FALSE(after_restart.replay("up:3"));
  after_restart.take("up:3");
  commit(after_restart);
  CHECK(side_table.at("origin:up") == "4");
  CHECK(after_restart.replay("up:4"));
  CHECK(after_restart.replay("up:3")); // taken now: a second resend is a replay
}
