// The flow loader and the kind registry, with test kinds that need no driver (and no CAF).
#include "flows/flow.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace fabrik;

namespace {

const settings_table test_broker_settings{{
  {.name = "url", .type = setting_type::string, .doc = "broker address", .required = true},
  {.name = "password", .type = setting_type::string, .doc = "login", .secret = true},
}};

const section test_brokers{"test_brokers", "brokers for the loader tests", &test_broker_settings};
FABRIK_REGISTER_SECTION(test_brokers);

const settings_table test_single_settings{{
  {.name = "watch", .type = setting_type::string, .default_value = "zips", .doc = "a folder"},
  {.name = "tdp", .type = setting_type::number, .default_value = "85", .doc = "watts", .min = 1},
}};

const section test_single{.name = "test_single",
                          .summary = "one settings object for the loader tests",
                          .settings = &test_single_settings,
                          .single = true};
FABRIK_REGISTER_SECTION(test_single);

const settings_table test_source_settings{{
  {.name = "broker",
   .type = setting_type::reference,
   .doc = "which broker",
   .required = true,
   .section = "test_brokers"},
  {.name = "topics", .type = setting_type::string_list, .doc = "topics", .required = true},
  {.name = "qos",
   .type = setting_type::integer,
   .default_value = "1",
   .doc = "QoS",
   .min = 0,
   .max = 2},
}};

const kind test_source{"test.source",         "reads test data", kind_role::source,
                       &test_source_settings, nullptr,           "Longer *markdown* details."};
FABRIK_REGISTER_KIND(test_source);

const settings_table test_stage_settings{{
  {.name = "timeout",
   .type = setting_type::duration,
   .default_value = "500ms",
   .doc = "how long a step may take"},
  {.name = "buffer", .type = setting_type::size, .default_value = "64MiB", .doc = "buffer"},
}};

const kind test_stage{"test.stage", "transforms test data", kind_role::stage, &test_stage_settings,
                      nullptr};
FABRIK_REGISTER_KIND(test_stage);

const settings_table test_sink_settings{{
  {.name = "path", .type = setting_type::string, .doc = "where to write"},
}};

const kind test_sink{"test.sink", "writes test data", kind_role::sink, &test_sink_settings,
                     nullptr};
FABRIK_REGISTER_KIND(test_sink);

// A stand-in for the real storage kind, registered only by the test that needs it.
const kind test_storage{"storage", "stand-in storage", kind_role::sink, &test_sink_settings,
                        nullptr};

constexpr const char* no_storage = "no storage actor: records are not kept, and messages in "
                                   "flight when fabrik stops are lost (at-most-once)";

struct loaded {
  std::optional<flow> f;
  std::vector<diagnostic> diags;

  /// Diagnostics other than the no-storage warning, which most test flows trigger.
  std::vector<diagnostic> problems() const {
    std::vector<diagnostic> out;
    for (const auto& d : diags)
      if (d.message != no_storage)
        out.push_back(d);
    return out;
  }
  /// The only diagnostic besides the no-storage warning.
  diagnostic only() const {
    auto p = problems();
    INFO(dump());
    REQUIRE(p.size() == 1);
    return p[0];
  }
  std::vector<diagnostic> errors() const {
    std::vector<diagnostic> out;
    for (const auto& d : diags)
      if (!d.warning)
        out.push_back(d);
    return out;
  }
  /// The only error (warnings aside).
  diagnostic error() const {
    auto e = errors();
    INFO(dump());
    REQUIRE(e.size() == 1);
    return e[0];
  }
  std::string dump() const {
    std::string out;
    for (const auto& d : diags)
      out += d.to_string() + "\n";
    return out;
  }
};

loaded load(const std::string& text, const std::string& file = "/flows/test.yaml") {
  loaded l;
  l.f = load_flow_text(text, file, l.diags);
  return l;
}

// A valid preamble: lines 1-3.
const std::string head = "name: t\n"
                         "test_brokers: {local: {url: tcp://127.0.0.1:1883}}\n"
                         "actors:\n";

} // namespace

TEST_CASE("a valid flow loads with defaults, sections, wires and placement", "[flow]") {
  ::setenv("FABRIK_TEST_PW", "pw", 1);
  auto l = load("name: pcb-ingest\n"
                "description: boards from line 1\n"
                "test_brokers:\n"
                "  local: {url: tcp://127.0.0.1:1883}\n"
                "  plant:\n"
                "    url: tcp://plant:1883\n"
                "    password: ${FABRIK_TEST_PW}\n"
                "actors:\n"
                "  pcb_in: {kind: test.source, broker: local, topics: [a/#], on: edge}\n"
                "  score:  {kind: test.stage, timeout: 10s, on: cloud}\n"
                "  out:    {kind: test.sink, path: out/x.bin, on: edge}\n"
                "  audit:  {kind: test.sink, on: cloud}\n"
                "wires:\n"
                "  - pcb_in -> score -> out\n"
                "  - pcb_in->audit\n"
                "nodes:\n"
                "  edge: {listen: \"127.0.0.1:7101\", http: \"127.0.0.1:8101\"}\n"
                "  cloud: {listen: \"127.0.0.1:7102\", when_full: drop_oldest}\n",
                "/flows/pcb.yaml");
  INFO(l.dump());
  REQUIRE(l.f);
  REQUIRE(l.problems().empty());
  const flow& f = *l.f;
  CHECK(f.name == "pcb-ingest");
  CHECK(f.file == std::filesystem::path{"/flows/pcb.yaml"});
  CHECK(f.dir == std::filesystem::path{"/flows"});
  REQUIRE(f.actors.size() == 4);
  CHECK(f.actors[0].name == "pcb_in");
  CHECK(f.actors[0].k == find_kind("test.source"));
  CHECK(f.actors[0].node == "edge");
  CHECK(f.actors[0].line == 9);
  CHECK(f.actors[0].column == 3);
  CHECK(f.actors[0].settings.str("broker") == "local");
  CHECK(f.actors[0].settings.integer("qos") == 1);
  CHECK_FALSE(f.actors[0].settings.has("kind"));
  CHECK_FALSE(f.actors[0].settings.has("on"));
  CHECK(f.actors[1].node == "cloud");
  auto& nodes = f.sections.at("nodes");
  CHECK(nodes.at("edge").str("http") == "127.0.0.1:8101");
  CHECK(nodes.at("edge").str("when_full") == "block");
  CHECK(nodes.at("cloud").str("when_full") == "drop_oldest");
  CHECK_FALSE(nodes.at("cloud").has("http"));
  CHECK(f.entry_at.at("nodes/cloud").line == 18);
  CHECK(f.actors[1].settings.integer("timeout") == 10'000'000'000LL);
  CHECK(f.actors[1].settings.integer("buffer") == 64 * 1024 * 1024);
  CHECK(f.actors[3].name == "audit");
  REQUIRE(f.wires.size() == 3);
  CHECK(f.wires[0].from == "pcb_in");
  CHECK(f.wires[0].to == "score");
  CHECK(f.wires[0].line == 14);
  CHECK(f.wires[0].column == 5);
  CHECK(f.wires[1].from == "score");
  CHECK(f.wires[1].to == "out");
  CHECK(f.wires[1].column == 15);
  CHECK(f.wires[2].from == "pcb_in");
  CHECK(f.wires[2].to == "audit");
  CHECK(f.downstream("pcb_in") == std::vector<std::string>{"score", "audit"});
  CHECK(f.upstream("out") == std::vector<std::string>{"score"});
  CHECK(f.upstream("pcb_in").empty());
  CHECK(f.find("score") == &f.actors[1]);
  CHECK(f.find("nope") == nullptr);
  CHECK(f.resolve("out/x.bin") == std::filesystem::path{"/flows/out/x.bin"});
  CHECK(f.resolve("../data/y") == std::filesystem::path{"/data/y"});
  CHECK(f.resolve("/abs/z") == std::filesystem::path{"/abs/z"});
  REQUIRE(f.sections.count("test_brokers") == 1);
  const auto& brokers = f.sections.at("test_brokers");
  REQUIRE(brokers.size() == 2);
  CHECK(brokers.at("local").str("url") == "tcp://127.0.0.1:1883");
  CHECK(brokers.at("plant").str("password") == "pw");
}

TEST_CASE("yaml syntax errors carry yaml-cpp's line and column", "[flow]") {
  auto l = load("name: t\nactors:\n  a: {kind: test.source\n  b: 1\n");
  REQUIRE_FALSE(l.f);
  auto d = l.only();
  CHECK(d.file == "/flows/test.yaml");
  CHECK(d.line == 4);
  CHECK(d.column == 4);
  CHECK_FALSE(d.message.empty());
}

TEST_CASE("the top level must be a non-empty map", "[flow]") {
  auto empty = load("# nothing\n");
  CHECK_FALSE(empty.f);
  CHECK(empty.only().message == "the flow file is empty; it needs at least 'name' and 'actors'");
  auto list = load("\n- a\n- b\n");
  CHECK_FALSE(list.f);
  CHECK(list.only().line == 2);
  CHECK(list.only().column == 1);
  CHECK(list.only().message
        == "a flow file must be a map of keys (name, actors, wires, ...), "
           "got a list");
}

TEST_CASE("unknown top-level keys list the valid keys", "[flow]") {
  auto l = load(head + "  a: {kind: test.sink}\nwire:\n  - a -> a\n");
  CHECK_FALSE(l.f);
  auto d = l.error();
  CHECK(d.line == 5);
  CHECK(d.column == 1);
  // Sections registered by what this binary links: the flow loader's and the tests' own.
  CHECK(d.message.starts_with("unknown top-level key 'wire'; valid keys: actors, description, "
                              "name, nodes, test_brokers, test_single, wires"));
}

TEST_CASE("a repeated top-level key is an error", "[flow]") {
  auto l = load("name: t\nactors: {a: {kind: test.sink}}\nname: u\n");
  CHECK_FALSE(l.f);
  CHECK(l.error().line == 3);
  CHECK(l.error().column == 1);
  CHECK(l.error().message == "duplicate key 'name' (first at line 1)");
}

TEST_CASE("placement: every actor on a known node, each node at its own address", "[flow]") {
  const std::string nodes = "nodes:\n"
                            "  edge: {listen: \"127.0.0.1:7001\", http: \"127.0.0.1:8001\"}\n"
                            "  fog: {listen: \"127.0.0.1:7001\", http: \"127.0.0.1:8001\"}\n"
                            "  cloud: {listen: \"127.0.0.1:0\"}\n"
                            "  spare: {listen: \"127.0.0.1:7004\"}\n";
  auto l = load(nodes + head
                + "  a: {kind: test.source, broker: local, topics: x, on: edge}\n"
                  "  b: {kind: test.sink, on: moon}\n"
                  "  c: {kind: test.sink}\n"
                  "  d: {kind: test.sink, on: fog}\n"
                  "  e: {kind: test.sink, on: cloud}\n"
                  "wires: [a -> b, a -> c, a -> d, a -> e]\n");
  INFO(l.dump());
  CHECK_FALSE(l.f);
  auto p = l.problems();
  REQUIRE(p.size() == 6);
  CHECK(p[0].line == 3);
  CHECK(p[0].message
        == "node 'fog': listen address 127.0.0.1:7001 is already node "
           "'edge''s (line 2)");
  CHECK(p[1].line == 3);
  CHECK(p[1].message
        == "node 'fog': http address 127.0.0.1:8001 is already node 'edge''s "
           "(line 2)");
  CHECK(p[2].line == 4);
  CHECK(p[2].message
        == "node 'cloud': listen needs a fixed port (the other nodes connect "
           "to it), not 0");
  CHECK(p[3].line == 5);
  CHECK(p[3].warning);
  CHECK(p[3].message == "node 'spare' runs no actor");
  CHECK(p[4].line == 10);
  CHECK(p[4].message == "actor 'b' is on unknown node 'moon'; nodes: cloud, edge, fog, spare");
  CHECK(p[5].line == 11);
  CHECK(p[5].message
        == "actor 'c' is on no node; add 'on: NODE' (nodes: cloud, edge, fog, "
           "spare)");

  auto none = load(head + "  b: {kind: test.sink, on: edge}\n");
  CHECK_FALSE(none.f);
  CHECK(none.error().line == 4);
  CHECK(none.error().message
        == "actor 'b' is on node 'edge', but the flow has no 'nodes' "
           "section");
}

TEST_CASE("a single-object section is validated, and has its defaults when left out", "[flow]") {
  auto absent = load("name: t\nactors: {a: {kind: test.sink}}\n");
  REQUIRE(absent.f);
  CHECK(absent.f->sections.at("test_single").at("").str("watch") == "zips");
  CHECK(absent.f->sections.at("test_single").at("").number("tdp") == 85);

  auto set =
    load("name: t\ntest_single: {watch: models, tdp: 35}\nactors: {a: {kind: test.sink}}\n");
  REQUIRE(set.f);
  CHECK(set.f->sections.at("test_single").at("").str("watch") == "models");
  CHECK(set.f->sections.at("test_single").at("").number("tdp") == 35);

  auto bad = load("name: t\ntest_single:\n  wach: zips\nactors: {a: {kind: test.sink}}\n");
  CHECK_FALSE(bad.f);
  CHECK(bad.error().line == 3);
  CHECK(bad.error().message.find("unknown setting 'wach'") != std::string::npos);
}

TEST_CASE("name is required and restricted to [a-z0-9_-]+", "[flow]") {
  auto missing = load("\nactors: {a: {kind: test.sink}}\n");
  CHECK_FALSE(missing.f);
  CHECK(missing.error().line == 2);
  CHECK(missing.error().column == 1);
  CHECK(missing.error().message == "missing required key 'name' (the flow's name, [a-z0-9_-]+)");
  auto bad = load("name: PCB Ingest\nactors: {a: {kind: test.sink}}\n");
  CHECK_FALSE(bad.f);
  CHECK(bad.error().line == 1);
  CHECK(bad.error().column == 7);
  CHECK(bad.error().message
        == "flow name 'PCB Ingest' must match [a-z0-9_-]+ (it goes into "
           "client ids and data paths)");
  auto list = load("name: [a]\nactors: {a: {kind: test.sink}}\n");
  CHECK(list.error().message == "'name' must be text matching [a-z0-9_-]+, got a list");
}

TEST_CASE("actors are required and must not be empty", "[flow]") {
  auto missing = load("name: t\n");
  CHECK_FALSE(missing.f);
  CHECK(missing.only().line == 1);
  CHECK(missing.only().column == 1);
  CHECK(missing.only().message == "missing required key 'actors'");
  auto empty = load("name: t\nactors:\n");
  CHECK_FALSE(empty.f);
  CHECK(empty.only().line == 2);
  CHECK(empty.only().message == "the flow defines no actors");
  auto list = load("name: t\nactors:\n  - a\n");
  CHECK_FALSE(list.f);
  CHECK(list.only().line == 3);
  CHECK(list.only().column == 3);
  CHECK(list.only().message.starts_with("'actors' must be a map"));
}

TEST_CASE("actor names must match [A-Za-z_][A-Za-z0-9_-]*", "[flow]") {
  auto l = load(head
                + "  ok_Name-2: {kind: test.sink}\n  9lives: {kind: test.sink}\n"
                  "  a/b: {kind: test.sink}\n");
  CHECK_FALSE(l.f);
  std::vector<diagnostic> errors;
  for (const auto& d : l.diags)
    if (!d.warning)
      errors.push_back(d);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].line == 5);
  CHECK(errors[0].column == 3);
  CHECK(errors[0].message
        == "actor name '9lives' must match [A-Za-z_][A-Za-z0-9_-]* (it "
           "prefixes stream names and client ids)");
  CHECK(errors[1].line == 6);
  CHECK(errors[1].message.starts_with("actor name 'a/b' must match"));
}

TEST_CASE("duplicate actor names are found although yaml-cpp keeps only one on lookup", "[flow]") {
  auto l = load(head
                + "  a: {kind: test.source, broker: local, topics: x}\n"
                  "  b: {kind: test.sink}\n"
                  "  a: {kind: test.sink}\n"
                  "wires: [a -> b]\n");
  CHECK_FALSE(l.f);
  auto d = l.only();
  CHECK(d.line == 6);
  CHECK(d.column == 3);
  CHECK(d.message == "duplicate actor 'a' (first defined at line 4)");
}

TEST_CASE("every actor needs a known kind", "[flow]") {
  auto l = load(head
                + "  a: {broker: local}\n  b:\n    kind: test.nope\n  c: sink\n"
                  "  d: {kind: [x]}\n");
  CHECK_FALSE(l.f);
  std::vector<diagnostic> errors;
  for (const auto& d : l.diags)
    if (!d.warning)
      errors.push_back(d);
  INFO(l.dump());
  REQUIRE(errors.size() == 4);
  CHECK(errors[0].line == 4);
  CHECK(errors[0].column == 6);
  CHECK(errors[0].message.starts_with("actor 'a' has no 'kind'; known kinds: "));
  CHECK(errors[0].message.find("test.sink, test.source, test.stage") != std::string::npos);
  CHECK(errors[1].line == 6);
  CHECK(errors[1].column == 11);
  CHECK(errors[1].message.starts_with("unknown kind 'test.nope' for actor 'b'; known kinds: "));
  CHECK(errors[1].message.find("test.sink, test.source, test.stage") != std::string::npos);
  CHECK(errors[2].line == 7);
  CHECK(errors[2].column == 6);
  CHECK(errors[2].message == "actor 'c' must be a map with at least 'kind', got 'sink'");
  CHECK(errors[3].line == 8);
  CHECK(errors[3].column == 13);
  CHECK(errors[3].message == "'kind' of actor 'd' must be a kind name, got a list");
}

TEST_CASE("kind or on written twice in one actor is an error", "[flow]") {
  auto l = load(head + "  a:\n    kind: test.sink\n    path: x\n    kind: test.stage\n");
  CHECK_FALSE(l.f);
  CHECK(l.error().line == 7);
  CHECK(l.error().column == 5);
  CHECK(l.error().message == "duplicate key 'kind' in actor 'a' (first at line 5)");
}

TEST_CASE("actor settings are validated with the kind's table", "[flow]") {
  auto l = load(head
                + "  a:\n    kind: test.source\n    broker: local\n    topics: x\n"
                  "    qos: 7\n    color: red\n"
                  "  b: {kind: test.sink}\n"
                  "wires: [a -> b]\n");
  CHECK_FALSE(l.f);
  auto p = l.problems();
  INFO(l.dump());
  REQUIRE(p.size() == 2);
  CHECK(p[0].line == 8);
  CHECK(p[0].column == 10);
  CHECK(p[0].message == "setting 'qos' must be between 0 and 2, got 7");
  CHECK(p[1].line == 9);
  CHECK(p[1].column == 5);
  CHECK(p[1].message
        == "unknown setting 'color' for test.source; valid settings: broker, qos, "
           "topics");
}

TEST_CASE("a missing required actor setting points at the actor's map", "[flow]") {
  auto l = load(head
                + "  a:\n    kind: test.source\n    broker: local\n"
                  "  b: {kind: test.sink}\nwires: [a -> b]\n");
  CHECK_FALSE(l.f);
  CHECK(l.only().line == 5);
  CHECK(l.only().column == 5);
  CHECK(l.only().message == "missing required setting 'topics' for test.source");
}

TEST_CASE("references to sections must exist", "[flow]") {
  auto l = load(head
                + "  a: {kind: test.source, broker: plant, topics: x}\n"
                  "  b: {kind: test.sink}\nwires: [a -> b]\n");
  CHECK_FALSE(l.f);
  CHECK(l.only().line == 4);
  CHECK(l.only().column == 34);
  CHECK(l.only().message == "broker 'plant' is not defined in test_brokers; defined: local");
  // Sections may follow the actors in the file.
  auto later = load("name: t\nactors:\n  a: {kind: test.source, broker: local, topics: x}\n"
                    "  b: {kind: test.sink}\nwires: [a -> b]\n"
                    "test_brokers: {local: {url: x}}\n");
  CHECK(later.f);
  CHECK(later.problems().empty());
}

TEST_CASE("section entries are validated with the section's table", "[flow]") {
  auto l = load("name: t\n"
                "test_brokers:\n"
                "  local:\n"
                "    password: file:nowhere\n"
                "  plant: {url: x, port: 1883}\n"
                "  empty:\n"
                "  local: {url: y}\n"
                "actors: {a: {kind: test.sink}}\n");
  CHECK_FALSE(l.f);
  auto p = l.problems();
  INFO(l.dump());
  REQUIRE(p.size() == 6);
  CHECK(p[0].line == 4);
  CHECK(p[0].column == 5);
  CHECK(p[0].message == "missing required setting 'url' for test_brokers.local");
  CHECK(p[1].line == 4);
  CHECK(p[1].column == 15);
  CHECK(p[1].message == "cannot read /flows/nowhere (setting 'password')");
  CHECK(p[2].line == 5);
  CHECK(p[2].column == 19);
  CHECK(p[2].message
        == "unknown setting 'port' for test_brokers.plant; valid settings: "
           "password, url");
  CHECK(p[3].line == 6);
  CHECK(p[3].column == 3);
  CHECK(p[3].message == "missing required setting 'url' for test_brokers.empty");
  CHECK(p[4].line == 7);
  CHECK(p[4].message == "duplicate entry 'local' in test_brokers (first at line 3)");
  CHECK(p[5].line == 8);
  CHECK(p[5].warning);
}

TEST_CASE("'on' must be a node name", "[flow]") {
  auto l = load(head + "  b: {kind: test.sink, on: [edge, fog]}\n");
  CHECK_FALSE(l.f);
  auto d = l.error();
  CHECK(d.line == 4);
  CHECK(d.column == 28);
  CHECK(d.message == "'on' of actor 'b' must be a node name, got a list");
}

TEST_CASE("wires must be a list of 'from -> to' strings", "[flow]") {
  const std::string actors = head
                             + "  a: {kind: test.source, broker: local, topics: x}\n"
                               "  b: {kind: test.stage}\n"
                               "  c: {kind: test.sink}\n";
  SECTION("not a list") {
    auto l = load(actors + "wires: {a: b}\n");
    CHECK_FALSE(l.f);
    auto d = l.error();
    CHECK(d.line == 7);
    CHECK(d.column == 8);
    CHECK(d.message == "'wires' must be a list of \"from -> to\" strings, got a map");
  }
  SECTION("an item that is not a string") {
    auto l = load(actors + "wires:\n  - a -> b -> c\n  - {from: a, to: c}\n");
    CHECK_FALSE(l.f);
    CHECK(l.only().line == 9);
    CHECK(l.only().column == 5);
    CHECK(l.only().message == "a wire must be a string like 'from -> to', got a map");
  }
  SECTION("malformed") {
    auto l = load(actors + "wires:\n  - a -> b -> c\n  - a ->\n  - a\n");
    CHECK_FALSE(l.f);
    auto p = l.problems();
    REQUIRE(p.size() == 2);
    CHECK(p[0].line == 9);
    CHECK(p[0].column == 5);
    CHECK(p[0].message == "wire 'a ->' must look like 'from -> to' (or a chain 'a -> b -> c')");
    CHECK(p[1].line == 10);
    CHECK(p[1].message == "wire 'a' must look like 'from -> to' (or a chain 'a -> b -> c')");
  }
  SECTION("unknown actor, pointing at the name") {
    auto l = load(actors + "wires:\n  - a -> b -> c\n  - b ->  x\n");
    CHECK_FALSE(l.f);
    CHECK(l.only().line == 9);
    CHECK(l.only().column == 11);
    CHECK(l.only().message == "wire names unknown actor 'x'; actors: a, b, c");
  }
  SECTION("quoted wires point at the string") {
    auto l = load(actors + "wires:\n  - a -> b -> c\n  - \"b -> y\"\n");
    CHECK_FALSE(l.f);
    CHECK(l.only().line == 9);
    CHECK(l.only().column == 5);
    CHECK(l.only().message == "wire names unknown actor 'y'; actors: a, b, c");
  }
}

TEST_CASE("wire direction follows the kinds' roles", "[flow]") {
  auto l = load(head
                + "  a: {kind: test.source, broker: local, topics: x}\n"
                  "  b: {kind: test.stage}\n"
                  "  c: {kind: test.sink}\n"
                  "wires:\n"
                  "  - a -> b -> c\n"
                  "  - b -> a\n"
                  "  - c -> b\n");
  CHECK_FALSE(l.f);
  auto p = l.problems();
  INFO(l.dump());
  REQUIRE(p.size() == 2);
  CHECK(p[0].line == 9);
  CHECK(p[0].column == 10);
  CHECK(p[0].message == "actor 'a' is a source (test.source) and cannot receive a wire");
  CHECK(p[1].line == 10);
  CHECK(p[1].column == 5);
  CHECK(p[1].message == "actor 'c' is a sink (test.sink) and cannot send on a wire");
}

TEST_CASE("self-wires and cycles are errors", "[flow]") {
  const std::string actors = head
                             + "  a: {kind: test.source, broker: local, topics: x}\n"
                               "  b: {kind: test.stage}\n"
                               "  c: {kind: test.stage}\n"
                               "  d: {kind: test.sink}\n";
  SECTION("self") {
    auto l = load(actors + "wires:\n  - a -> b -> d\n  - c -> c\n");
    CHECK_FALSE(l.f);
    CHECK(l.only().line == 10);
    CHECK(l.only().column == 5);
    CHECK(l.only().message == "actor 'c' is wired to itself");
  }
  SECTION("cycle") {
    auto l = load(actors + "wires:\n  - a -> b -> c -> d\n  - c -> b\n");
    CHECK_FALSE(l.f);
    CHECK(l.only().line == 10);
    CHECK(l.only().column == 5);
    CHECK(l.only().message == "wires form a cycle: b -> c -> b");
  }
}

TEST_CASE("a duplicate wire is a warning and kept once", "[flow]") {
  auto l = load(head
                + "  a: {kind: test.source, broker: local, topics: x}\n"
                  "  b: {kind: test.sink}\n"
                  "wires:\n  - a -> b\n  - a->b\n");
  REQUIRE(l.f);
  auto d = l.only();
  CHECK(d.warning);
  CHECK(d.line == 8);
  CHECK(d.column == 5);
  CHECK(d.message == "duplicate wire a -> b (first at line 7)");
  CHECK(l.f->wires.size() == 1);
}

TEST_CASE("unwired actors and sources without outgoing wires are warned about", "[flow]") {
  auto l = load(head
                + "  a: {kind: test.source, broker: local, topics: x}\n"
                  "  b: {kind: test.stage}\n"
                  "  c: {kind: test.sink}\n"
                  "  d: {kind: test.sink}\n"
                  "wires: [b -> c]\n");
  REQUIRE(l.f);
  auto p = l.problems();
  REQUIRE(p.size() == 2);
  CHECK(p[0].warning);
  CHECK(p[0].line == 4);
  CHECK(p[0].column == 3);
  CHECK(p[0].message == "source 'a' has no outgoing wire; its data goes nowhere");
  CHECK(p[1].warning);
  CHECK(p[1].line == 7);
  CHECK(p[1].message == "actor 'd' has no wires");
}

TEST_CASE("a flow without storage is warned to be at-most-once", "[flow]") {
  const std::string text = head
                           + "  a: {kind: test.source, broker: local, topics: x}\n"
                             "  b: {kind: test.sink}\n"
                             "wires: [a -> b]\n";
  auto without = load(text);
  REQUIRE(without.f);
  REQUIRE(without.diags.size() == 1);
  CHECK(without.diags[0].warning);
  CHECK(without.diags[0].line == 3);
  CHECK(without.diags[0].column == 1);
  CHECK(without.diags[0].message == no_storage);
  if (!find_kind("storage"))
    register_kind(test_storage);
  auto stored = load(head
                     + "  a: {kind: test.source, broker: local, topics: x}\n"
                       "  keep: {kind: storage, path: x.lmdb}\n"
                       "wires: [a -> keep]\n");
  INFO(stored.dump());
  REQUIRE(stored.f);
  CHECK(stored.diags.empty());
}

TEST_CASE("problems are all collected and reported in file order", "[flow]") {
  auto l = load("name: Bad\n"
                "actors:\n"
                "  a: {kind: nope}\n"
                "  b: {kind: test.sink, colour: red}\n"
                "wires: [b -> z]\n"
                "extra: 1\n");
  CHECK_FALSE(l.f);
  std::vector<int> lines;
  for (const auto& d : l.diags)
    lines.push_back(d.line);
  INFO(l.dump());
  // name, no-storage warning (at `actors:`), a unwired, a's kind, b's setting, z, extra.
  CHECK(lines == std::vector<int>{1, 2, 3, 3, 4, 5, 6});
  CHECK(l.errors().size() == 5);
}

TEST_CASE("load_flow reads a file and resolves against its folder", "[flow]") {
  namespace fs = std::filesystem;
  test_support::scratch_dir scratch{"loader"};
  const auto& dir = scratch.path();
  fs::create_directories(dir / "secrets");
  std::ofstream{dir / "secrets" / "pw"} << "from-file\n";
  std::ofstream{dir / "f.yaml"} << "name: t\n"
                                   "test_brokers: {local: {url: x, password: file:secrets/pw}}\n"
                                   "actors: {a: {kind: test.sink, path: out.bin}}\n";
  std::vector<diagnostic> diags;
  auto f = load_flow(dir / "f.yaml", diags);
  REQUIRE(f);
  CHECK(f->dir == dir);
  CHECK(f->resolve("out.bin") == dir / "out.bin");
  CHECK(f->sections.at("test_brokers").at("local").str("password") == "from-file");

  std::vector<diagnostic> missing;
  auto none = load_flow(dir / "nope.yaml", missing);
  CHECK_FALSE(none);
  REQUIRE(missing.size() == 1);
  CHECK(missing[0].message
        == "cannot read " + (dir / "nope.yaml").string() + ": No such file or directory");
}

TEST_CASE("the kind registry finds kinds and lists them sorted", "[kinds]") {
  REQUIRE(find_kind("test.source") != nullptr);
  CHECK(find_kind("test.source")->role == kind_role::source);
  CHECK(find_kind("test.missing") == nullptr);
  REQUIRE(find_section("test_brokers") != nullptr);
  CHECK(find_section("test_brokers")->settings == &test_broker_settings);
  auto ks = all_kinds();
  CHECK(std::is_sorted(ks.begin(), ks.end(),
                       [](const kind* a, const kind* b) { return a->name < b->name; }));
  CHECK(
    std::count_if(ks.begin(), ks.end(), [](const kind* k) { return k->name.starts_with("test."); })
    == 3);
  CHECK(std::string{to_string(kind_role::source)} == "source");
  CHECK(std::string{to_string(kind_role::sink)} == "sink");
  CHECK(std::string{to_string(kind_role::stage)} == "stage");
}

TEST_CASE("the kinds reference mentions every kind, section and setting", "[kinds][docs]") {
  auto md = kinds_markdown();
  CHECK(md.find("generated by `fabrik kinds --markdown`; do not edit") != std::string::npos);
  CHECK(md.find("### `test_brokers`") != std::string::npos);
  CHECK(md.find("brokers for the loader tests") != std::string::npos);
  CHECK(md.find("### `test.source`") != std::string::npos);
  CHECK(md.find("Role: source. reads test data") != std::string::npos);
  CHECK(md.find("Longer *markdown* details.") != std::string::npos);
  for (const auto* t :
       {&test_broker_settings, &test_source_settings, &test_stage_settings, &test_sink_settings})
    for (const auto& s : t->items) {
      INFO(s.name);
      CHECK(md.find("`" + std::string{s.name} + "`") != std::string::npos);
    }
  // Sections come before kinds.
  CHECK(md.find("### `test_brokers`") < md.find("### `test.source`"));

  auto text = kind_text(test_stage);
  CHECK(text.starts_with("test.stage (stage): transforms test data\n"));
  CHECK(text.find("timeout (duration; default 500ms): how long a step may take")
        != std::string::npos);
  CHECK(text.find('`') == std::string::npos);
}

TEST_CASE("a flow's local fragment adds actors and wires, and replaces actors by name",
          "[flow][local]") {
  const std::string main_text = "name: t\n"
                                "test_brokers: {b: {url: x}}\n"
                                "actors:\n"
                                "  src: {kind: test.source, broker: b, topics: [a]}\n"
                                "  out: {kind: test.sink}\n"
                                "wires:\n  - src -> out\n";
  std::vector<diagnostic> diags;
  auto f = load_flow_text(main_text, "/x/flow.yaml", diags,
                          "actors:\n"
                          "  src: {kind: test.source, broker: b, topics: [c], qos: 2}\n"
                          "  src2: {kind: test.source, broker: b, topics: [d]}\n"
                          "wires:\n  - src2 -> out\n  - src -> out\n");
  REQUIRE(f);
  CHECK(f->local_file == "/x/flow.local.yaml");
  REQUIRE(f->actors.size() == 3);
  CHECK(f->actors[0].name == "src"); // replaced in its place
  CHECK(f->actors[0].settings.strings("topics") == config::list{"c"});
  CHECK(f->actors[0].file == "/x/flow.local.yaml");
  CHECK(f->actors[1].name == "out");
  CHECK(f->actors[1].file.empty());
  CHECK(f->actors[2].name == "src2");
  CHECK(f->wires.size() == 2); // src -> out once
  CHECK(f->downstream("src2") == std::vector<std::string>{"out"});
}

TEST_CASE("problems in the local fragment name the fragment's file and line", "[flow][local]") {
  std::vector<diagnostic> diags;
  auto f = load_flow_text("name: t\nactors:\n  out: {kind: test.sink}\n", "/x/flow.yaml", diags,
                          "brokers: {}\n"
                          "actors:\n"
                          "  bad: {kind: test.sink, colour: red}\n"
                          "wires:\n  - bad -> nowhere\n");
  CHECK_FALSE(f);
  std::vector<std::string> lines;
  for (auto& d : diags)
    lines.push_back(d.to_string());
  INFO(lines.size());
  for (auto& l : lines)
    INFO(l);
  REQUIRE(diags.size() >= 3);
  CHECK(std::all_of(diags.begin(), diags.end(),
                    [](auto& d) { return d.file == "/x/flow.local.yaml" || d.warning; }));
  auto has = [&](std::string_view text, int line) {
    return std::any_of(diags.begin(), diags.end(), [&](auto& d) {
      return d.line == line && d.message.find(text) != std::string::npos;
    });
  };
  CHECK(has("holds only 'actors' and 'wires'", 1));
  CHECK(has("unknown setting 'colour'", 3));
  CHECK(has("unknown actor 'nowhere'", 5));

  diags.clear();
  CHECK_FALSE(load_flow_text("name: t\nactors:\n  out: {kind: test.sink}\n", "/x/flow.yaml", diags,
                             "actors: [oops\n"));
  CHECK(std::any_of(diags.begin(), diags.end(),
                    [](auto& d) { return !d.warning && d.file == "/x/flow.local.yaml"; }));
}

TEST_CASE("load_flow reads NAME.local.yaml beside the flow file", "[flow][local]") {
  test_support::scratch_dir dir{"local"};
  test_support::write_file(dir / "line.yaml", "name: t\nactors:\n  out: {kind: test.sink}\n");
  std::vector<diagnostic> diags;
  auto plain = load_flow(dir / "line.yaml", diags);
  REQUIRE(plain);
  CHECK(plain->actors.size() == 1);
  test_support::write_file(dir / "line.local.yaml", "actors:\n  more: {kind: test.sink}\n");
  auto merged = load_flow(dir / "line.yaml", diags);
  REQUIRE(merged);
  CHECK(merged->actors.size() == 2);
}

TEST_CASE("diff_flows restarts what changed and everything feeding it", "[flow][local]") {
  const std::string base = "name: t\n"
                           "test_brokers: {b: {url: x}}\n"
                           "actors:\n"
                           "  a: {kind: test.source, broker: b, topics: [a]}\n"
                           "  s: {kind: test.stage}\n"
                           "  out: {kind: test.sink}\n"
                           "  c: {kind: test.source, broker: b, topics: [c]}\n"
                           "  other: {kind: test.sink}\n"
                           "wires:\n  - a -> s -> out\n  - c -> other\n";
  std::vector<diagnostic> diags;
  auto before = load_flow_text(base, "/x/f.yaml", diags);
  REQUIRE(before);
  auto same = load_flow_text(base, "/x/f.yaml", diags);
  CHECK_FALSE(diff_flows(*before, *same).any());

  // The sink's settings change: it restarts, and so does everything upstream of it.
  auto sink =
    load_flow_text(base, "/x/f.yaml", diags, "actors:\n  out: {kind: test.sink, path: y}\n");
  REQUIRE(sink);
  auto d = diff_flows(*before, *sink);
  CHECK(d.restarted == std::vector<std::string>{"a", "s", "out"});
  CHECK(d.unchanged == std::vector<std::string>{"c", "other"});
  CHECK(d.added.empty());

  // A new source wired into `other`: added, and `other` keeps running (nothing feeds it
  // new handles: the new source gets its handle).
  auto more = load_flow_text(base, "/x/f.yaml", diags,
                             "actors:\n  n: {kind: test.source, broker: b, topics: [n]}\n"
                             "wires:\n  - n -> other\n");
  REQUIRE(more);
  d = diff_flows(*before, *more);
  CHECK(d.added == std::vector<std::string>{"n"});
  CHECK(d.restarted.empty());

  // A shared section changes: everything restarts.
  auto broker = load_flow_text(
    base.substr(0, 8) + "test_brokers: {b: {url: z}}\n" + base.substr(36), "/x/f.yaml", diags);
  REQUIRE(broker);
  CHECK(diff_flows(*before, *broker).restarted.size() == 5);
}

TEST_CASE("a fragment entry without kind patches the flow file's actor", "[flow][local]") {
  std::vector<diagnostic> diags;
  auto f =
    load_flow_text("name: t\nactors:\n  out: {kind: test.sink, path: a}\n"
                   "  st: {kind: test.stage, timeout: 2s}\nwires:\n  - st -> out\n",
                   "/x/flow.yaml", diags, "actors:\n  out: {path: b}\n  st: {timeout: null}\n");
  std::string all;
  for (auto& d : diags)
    all += d.to_string() + "\n";
  INFO(all);
  REQUIRE(f);
  CHECK(f->find("out")->settings.str("path") == "b");
  CHECK(f->find("out")->k->name == "test.sink");
  CHECK(f->find("st")->settings.integer("timeout") == 500'000'000); // back to the default
  CHECK(f->find("out")->file == "/x/flow.local.yaml");
}
