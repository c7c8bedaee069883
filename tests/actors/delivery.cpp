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
