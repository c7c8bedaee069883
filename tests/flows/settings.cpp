// Settings tables: validation of one YAML map against a table, defaults, secrets, docs.
#include "core/settings.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

using namespace fabrik;

namespace {

const settings_table retention_table{{
  {.name = "max_age",
   .type = setting_type::duration,
   .default_value = "7d",
   .doc = "drop records older than this",
   .min = 1e9},
  {.name = "max_size", .type = setting_type::size, .doc = "cap the store at this size"},
}};

const settings_table table{{
  {.name = "url", .type = setting_type::string, .doc = "broker address", .required = true},
  {.name = "qos",
   .type = setting_type::integer,
   .default_value = "1",
   .doc = "MQTT QoS",
   .min = 0,
   .max = 2},
  {.name = "ratio",
   .type = setting_type::number,
   .default_value = "0.5",
   .doc = "a fraction",
   .min = 0,
   .max = 1},
  {.name = "retain", .type = setting_type::boolean, .default_value = "false", .doc = "retain flag"},
  {.name = "timeout",
   .type = setting_type::duration,
   .default_value = "500ms",
   .doc = "how long to wait",
   .min = 1e6,
   .max = 3600e9},
  {.name = "buffer",
   .type = setting_type::size,
   .default_value = "64MiB",
   .doc = "buffer size",
   .min = 1024},
  {.name = "format",
   .type = setting_type::choice,
   .default_value = "simatic-v1",
   .doc = "payload format",
   .choices = {"simatic-v1", "json"}},
  {.name = "topics", .type = setting_type::string_list, .doc = "topics to subscribe"},
  {.name = "retention",
   .type = setting_type::object,
   .default_value = "{}",
   .doc = "what to keep",
   .children = &retention_table},
  {.name = "streams",
   .type = setting_type::object_map,
   .doc = "per-stream retention",
   .children = &retention_table},
  {.name = "broker", .type = setting_type::reference, .doc = "which broker", .section = "brokers"},
  {.name = "password", .type = setting_type::string, .doc = "login password", .secret = true},
  {.name = "label", .type = setting_type::string, .doc = "free text"},
}};

const section_names sections{{"brokers", {"local", "plant"}}};

struct result {
  config c;
  std::vector<diagnostic> diags;
};

result validate(const std::string& yaml, const std::string& file = "flow.yaml",
                std::vector<std::string_view> ignore = {}) {
  result r;
  r.c = validate_settings(YAML::Load(yaml), table, file, sections, r.diags, ignore, "test.kind");
  return r;
}

/// The only diagnostic, which must be an error.
const diagnostic& only_error(const result& r) {
  REQUIRE(r.diags.size() == 1);
  REQUIRE_FALSE(r.diags[0].warning);
  return r.diags[0];
}

} // namespace

TEST_CASE("defaults are filled and parsed with the same rules as flow values", "[settings]") {
  auto r = validate("url: tcp://127.0.0.1:1883\n");
  REQUIRE(r.diags.empty());
  CHECK(r.c.str("url") == "tcp://127.0.0.1:1883");
  CHECK(r.c.integer("qos") == 1);
  CHECK(r.c.number("ratio") == 0.5);
  CHECK_FALSE(r.c.boolean("retain"));
  CHECK(r.c.integer("timeout") == 500'000'000);
  CHECK(r.c.integer("buffer") == 64 * 1024 * 1024);
  CHECK(r.c.str("format") == "simatic-v1");
  // An object default of {} still fills its children's defaults.
  REQUIRE(r.c.has("retention"));
  CHECK(r.c.object("retention").integer("max_age") == 7 * 86400 * 1'000'000'000LL);
  CHECK_FALSE(r.c.object("retention").has("max_size"));
  // No default and not required: absent.
  CHECK_FALSE(r.c.has("topics"));
  CHECK_FALSE(r.c.has("broker"));
  CHECK_FALSE(r.c.has("password"));
  CHECK_FALSE(r.c.has("streams"));
}

TEST_CASE("values override defaults, sizes and durations land in base units", "[settings]") {
  auto r = validate("url: x\nqos: 2\nratio: 1\nretain: true\ntimeout: 10s\nbuffer: 512KiB\n"
                    "format: json\nretention: {max_age: 30d, max_size: 1GiB}\n");
  REQUIRE(r.diags.empty());
  CHECK(r.c.integer("qos") == 2);
  CHECK(r.c.number("ratio") == 1.0);
  CHECK(r.c.boolean("retain"));
  CHECK(r.c.integer("timeout") == 10'000'000'000LL);
  CHECK(r.c.integer("buffer") == 512 * 1024);
  CHECK(r.c.str("format") == "json");
  CHECK(r.c.object("retention").integer("max_age") == 30 * 86400 * 1'000'000'000LL);
  CHECK(r.c.object("retention").integer("max_size") == 1024LL * 1024 * 1024);
}

TEST_CASE("an unknown setting names the context and lists the valid ones", "[settings]") {
  auto r = validate("url: x\n  \nfoo: 1\n");
  const auto& d = only_error(r);
  CHECK(d.file == "flow.yaml");
  CHECK(d.line == 3);
  CHECK(d.column == 1);
  CHECK(d.message
        == "unknown setting 'foo' for test.kind; valid settings: broker, buffer, "
           "format, label, password, qos, ratio, retain, retention, streams, "
           "timeout, topics, url");
}

TEST_CASE("ignored keys are skipped", "[settings]") {
  auto r = validate("kind: whatever\non: edge\nurl: x\n", "flow.yaml", {"kind", "on"});
  CHECK(r.diags.empty());
  CHECK_FALSE(r.c.has("kind"));
}

TEST_CASE("a repeated setting is an error at the second occurrence", "[settings]") {
  auto r = validate("url: x\nqos: 1\nqos: 2\n");
  const auto& d = only_error(r);
  CHECK(d.line == 3);
  CHECK(d.message == "duplicate setting 'qos' (first at line 2)");
}

TEST_CASE("wrong types point at the value", "[settings]") {
  SECTION("integer") {
    auto r = validate("url: x\nqos:   abc\n");
    const auto& d = only_error(r);
    CHECK(d.line == 2);
    CHECK(d.column == 8);
    CHECK(d.message == "setting 'qos' must be an integer, got 'abc'");
  }
  SECTION("integers are decimal: 1.5 is not one") {
    auto r = validate("url: x\nqos: 1.5\n");
    CHECK(only_error(r).message == "setting 'qos' must be an integer, got '1.5'");
  }
  SECTION("number") {
    auto r = validate("url: x\nratio: half\n");
    CHECK(only_error(r).message == "setting 'ratio' must be a number, got 'half'");
  }
  SECTION("boolean") {
    auto r = validate("url: x\nretain: maybe\n");
    const auto& d = only_error(r);
    CHECK(d.line == 2);
    CHECK(d.column == 9);
    CHECK(d.message == "setting 'retain' must be true or false, got 'maybe'");
  }
  SECTION("a list where a scalar belongs") {
    auto r = validate("url: [a, b]\n");
    const auto& d = only_error(r);
    CHECK(d.line == 1);
    CHECK(d.column == 6);
    CHECK(d.message == "setting 'url' must be a string, got a list");
  }
  SECTION("an empty value for a scalar points at the key") {
    auto r = validate("url: x\nqos:\nlabel: y\n");
    const auto& d = only_error(r);
    CHECK(d.line == 2);
    CHECK(d.column == 1);
    CHECK(d.message == "setting 'qos' must be an integer, got nothing");
  }
  SECTION("a scalar where a map belongs") {
    auto r = validate("url: x\nretention: 7d\n");
    const auto& d = only_error(r);
    CHECK(d.line == 2);
    CHECK(d.column == 12);
    CHECK(d.message == "setting 'retention' must be a map of settings, got '7d'");
  }
}

TEST_CASE("yaml boolean forms are booleans only for boolean settings", "[settings]") {
  auto r = validate("url: x\nretain: yes\nlabel: yes\n");
  REQUIRE(r.diags.empty());
  CHECK(r.c.boolean("retain"));
  CHECK(r.c.str("label") == "yes");
  CHECK_FALSE(validate("url: x\nretain: off\n").c.boolean("retain"));
}

TEST_CASE("ranges are checked", "[settings]") {
  SECTION("integer between") {
    auto r = validate("url: x\nqos: 5\n");
    const auto& d = only_error(r);
    CHECK(d.line == 2);
    CHECK(d.column == 6);
    CHECK(d.message == "setting 'qos' must be between 0 and 2, got 5");
  }
  SECTION("number between") {
    auto r = validate("url: x\nratio: 1.5\n");
    CHECK(only_error(r).message == "setting 'ratio' must be between 0 and 1, got 1.5");
  }
  SECTION("duration in base units, shown in human units") {
    auto r = validate("url: x\ntimeout: 2h\n");
    CHECK(only_error(r).message == "setting 'timeout' must be between 1ms and 1h, got 2h");
    CHECK(validate("url: x\ntimeout: 1h\n").diags.empty());
    CHECK(validate("url: x\ntimeout: 1ms\n").diags.empty());
    CHECK(validate("url: x\ntimeout: 999us\n").diags.size() == 1);
  }
  SECTION("size with only a minimum") {
    auto r = validate("url: x\nbuffer: 100B\n");
    CHECK(only_error(r).message == "setting 'buffer' must be at least 1KiB, got 100B");
  }
}

TEST_CASE("unparseable durations and sizes are errors", "[settings]") {
  auto r = validate("url: x\ntimeout: soon\nbuffer: big\n");
  REQUIRE(r.diags.size() == 2);
  CHECK(r.diags[0].line == 2);
  CHECK(r.diags[0].message
        == "setting 'timeout' must be a duration such as 500ms, 10s, 5m or "
           "7d, got 'soon'");
  CHECK(r.diags[1].line == 3);
  CHECK(r.diags[1].message
        == "setting 'buffer' must be a size such as 512KiB, 64MiB or 1GiB, "
           "got 'big'");
}

TEST_CASE("a choice outside the list names the choices", "[settings]") {
  auto r = validate("url: x\nformat: xml\n");
  const auto& d = only_error(r);
  CHECK(d.line == 2);
  CHECK(d.column == 9);
  CHECK(d.message == "setting 'format' must be one of simatic-v1, json, got 'xml'");
}

TEST_CASE("a missing required setting is reported at the map's own position", "[settings]") {
  SECTION("block map: its first key") {
    auto r = validate("qos: 1\nretain: true\n");
    const auto& d = only_error(r);
    CHECK(d.line == 1);
    CHECK(d.column == 1);
    CHECK(d.message == "missing required setting 'url' for test.kind");
  }
  SECTION("flow map: its opening brace") {
    auto r = validate("\n\n   {qos: 1}\n");
    const auto& d = only_error(r);
    CHECK(d.line == 3);
    CHECK(d.column == 4);
  }
}

TEST_CASE("string lists take a sequence or a single scalar", "[settings]") {
  auto seq = validate("url: x\ntopics: [a/b, c/#]\n");
  REQUIRE(seq.diags.empty());
  CHECK(seq.c.strings("topics") == config::list{"a/b", "c/#"});
  auto one = validate("url: x\ntopics: a/b\n");
  REQUIRE(one.diags.empty());
  CHECK(one.c.strings("topics") == config::list{"a/b"});
  auto map = validate("url: x\ntopics: {a: b}\n");
  CHECK(only_error(map).message == "setting 'topics' must be a list of strings, got a map");
  auto nested = validate("url: x\ntopics:\n  - a\n  - [b]\n");
  const auto& d = only_error(nested);
  CHECK(d.line == 4);
  CHECK(d.column == 5);
  CHECK(d.message == "items of setting 'topics' must be strings, got a list");
}

TEST_CASE("objects are validated recursively with positions of nested keys", "[settings]") {
  auto r = validate("url: x\nretention:\n  max_age: 1d\n  max_sise: 1GiB\n");
  const auto& d = only_error(r);
  CHECK(d.line == 4);
  CHECK(d.column == 3);
  CHECK(d.message
        == "unknown setting 'max_sise' for test.kind.retention; valid settings: "
           "max_age, max_size");
  auto range = validate("url: x\nretention: {max_age: 10ms}\n");
  const auto& e = only_error(range);
  CHECK(e.line == 2);
  CHECK(e.column == 22);
  CHECK(e.message == "setting 'max_age' must be at least 1s, got 10ms");
}

TEST_CASE("object maps validate every entry against the children", "[settings]") {
  auto r = validate("url: x\nstreams:\n  pcb_in/#: {max_size: 1MiB}\n  imu/#:\n"
                    "    max_age: never\n");
  const auto& d = only_error(r);
  CHECK(d.line == 5);
  CHECK(d.column == 14);
  CHECK(d.message.starts_with("setting 'max_age' must be a duration"));
  auto ok = validate("url: x\nstreams:\n  pcb_in/#: {max_size: 1MiB}\n  imu/#: {}\n");
  REQUIRE(ok.diags.empty());
  const auto& m = ok.c.objects("streams");
  REQUIRE(m.size() == 2);
  CHECK(m.at("pcb_in/#").integer("max_size") == 1024 * 1024);
  CHECK(m.at("pcb_in/#").integer("max_age") == 7 * 86400 * 1'000'000'000LL);
  CHECK(m.at("imu/#").integer("max_age") == 7 * 86400 * 1'000'000'000LL);
}

TEST_CASE("references must name an entry of their section", "[settings]") {
  auto ok = validate("url: x\nbroker: plant\n");
  REQUIRE(ok.diags.empty());
  CHECK(ok.c.str("broker") == "plant");
  auto bad = validate("url: x\nbroker: x\n");
  const auto& d = only_error(bad);
  CHECK(d.line == 2);
  CHECK(d.column == 9);
  CHECK(d.message == "broker 'x' is not defined in brokers; defined: local, plant");
  std::vector<diagnostic> diags;
  validate_settings(YAML::Load("url: x\nbroker: x\n"), table, "f.yaml", {}, diags);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message == "broker 'x' is not defined in brokers; the flow defines no brokers");
}

TEST_CASE("secrets come from the environment", "[settings][secrets]") {
  ::setenv("FABRIK_TEST_SECRET", "s3cret", 1);
  ::unsetenv("FABRIK_TEST_UNSET");
  auto r = validate("url: x\npassword: ${FABRIK_TEST_SECRET}\n");
  REQUIRE(r.diags.empty());
  CHECK(r.c.str("password") == "s3cret");
  auto unset = validate("url: x\npassword: ${FABRIK_TEST_UNSET}\n");
  const auto& d = only_error(unset);
  CHECK(d.line == 2);
  CHECK(d.column == 11);
  CHECK(d.message == "environment variable FABRIK_TEST_UNSET (setting 'password') is not set");
  CHECK_FALSE(unset.c.has("password"));
}

TEST_CASE("secrets come from a file relative to the flow file's folder", "[settings][secrets]") {
  namespace fs = std::filesystem;
  test_support::scratch_dir scratch{"settings"};
  const auto& dir = scratch.path();
  fs::create_directories(dir / "secrets");
  std::ofstream{dir / "secrets" / "pw"} << "from-file\n";
  auto flow_file = (dir / "flow.yaml").string();
  auto r = validate("url: x\npassword: file:secrets/pw\n", flow_file);
  CHECK(r.diags.empty());
  CHECK(r.c.str("password") == "from-file");
  auto missing = validate("url: x\npassword: file:secrets/nope\n", flow_file);
  const auto& d = only_error(missing);
  CHECK(d.line == 2);
  CHECK(d.message
        == "cannot read " + (dir / "secrets" / "nope").string() + " (setting 'password')");
}

TEST_CASE("a literal secret is used but warned about", "[settings][secrets]") {
  auto r = validate("url: x\npassword: hunter2\n");
  REQUIRE(r.diags.size() == 1);
  CHECK(r.diags[0].warning);
  CHECK(r.diags[0].line == 2);
  CHECK(r.diags[0].column == 11);
  CHECK(r.diags[0].message
        == "secret 'password' is written in the flow file; use ${ENV} or file:PATH");
  CHECK(r.c.str("password") == "hunter2");
}

TEST_CASE("to_string masks secrets and shows human units", "[settings][secrets]") {
  ::setenv("FABRIK_TEST_SECRET", "s3cret", 1);
  auto r = validate("url: tcp://h:1883\npassword: ${FABRIK_TEST_SECRET}\ntopics: [a, b]\n"
                    "label: two words\n");
  REQUIRE(r.diags.empty());
  auto s = r.c.to_string(table);
  CHECK(s.find("s3cret") == std::string::npos);
  CHECK(s
        == "url=tcp://h:1883, qos=1, ratio=0.5, retain=false, timeout=500ms, buffer=64MiB, "
           "format=simatic-v1, topics=[a, b], retention={max_age=7d}, password=***, "
           "label=\"two words\"");
}

TEST_CASE("config accessors throw logic_error naming the setting", "[settings]") {
  auto r = validate("url: x\n");
  REQUIRE(r.diags.empty());
  auto message_of = [](auto&& f) {
    try {
      f();
    } catch (const std::logic_error& e) {
      return std::string{e.what()};
    }
    return std::string{"no exception"};
  };
  CHECK(message_of([&] { r.c.str("nope"); }).find("'nope'") != std::string::npos);
  CHECK(message_of([&] { r.c.integer("url"); }).find("'url'") != std::string::npos);
  CHECK(message_of([&] { r.c.strings("qos"); }).find("'qos'") != std::string::npos);
  CHECK(message_of([&] { r.c.object("qos"); }).find("'qos'") != std::string::npos);
  CHECK(message_of([&] { r.c.objects("streams"); }).find("'streams'") != std::string::npos);
}

TEST_CASE("configs compare by value, nested objects by content", "[settings]") {
  auto a = validate("url: x\nretention: {max_age: 1d}\n").c;
  auto b = validate("url: x\nretention: {max_age: 1d}\n").c;
  auto c = validate("url: x\nretention: {max_age: 2d}\n").c;
  auto d = validate("url: y\nretention: {max_age: 1d}\n").c;
  CHECK(a == b);
  CHECK_FALSE(a == c);
  CHECK_FALSE(a == d);
  config e;
  CHECK_FALSE(a == e);
  CHECK(e == config{});
}

TEST_CASE("diagnostics format as FILE:LINE:COL", "[settings]") {
  CHECK(diagnostic{"f.yaml", 3, 7, "bad", false}.to_string() == "f.yaml:3:7: bad");
  CHECK(diagnostic{"f.yaml", 3, 7, "odd", true}.to_string() == "f.yaml:3:7: warning: odd");
  CHECK(diagnostic{"f.yaml", 0, 0, "whole file", false}.to_string() == "f.yaml: whole file");
  CHECK(diagnostic{"f.yaml", 2, 0, "line only", false}.to_string() == "f.yaml:2: line only");
}

TEST_CASE("settings markdown mentions every setting with type, default and doc",
          "[settings][docs]") {
  auto md = settings_markdown(table);
  for (const auto& s : table.items) {
    INFO(s.name);
    CHECK(md.find("`" + std::string{s.name} + "`") != std::string::npos);
    CHECK(md.find(std::string{s.doc}) != std::string::npos);
  }
  for (const auto& s : retention_table.items)
    CHECK(md.find("  - `" + std::string{s.name} + "`") != std::string::npos);
  CHECK(md.find("- `qos` (integer; default `1`; between 0 and 2): MQTT QoS\n")
        != std::string::npos);
  CHECK(md.find("- `url` (string; required): broker address\n") != std::string::npos);
  CHECK(md.find("one of `simatic-v1`, `json`") != std::string::npos);
  CHECK(md.find("`password` (string; secret: write `${ENV}` or `file:PATH`)") != std::string::npos);
  CHECK(md.find("name of an entry in `brokers`") != std::string::npos);
  CHECK(md.find("between 1ms and 1h") != std::string::npos);
}

TEST_CASE("whole bounds are shown as integers", "[settings][docs]") {
  const settings_table big{{
    {.name = "batch", .type = setting_type::integer, .min = 1, .max = 100000},
  }};
  CHECK(settings_markdown(big) == "- `batch` (integer; between 1 and 100000)\n");
  std::vector<diagnostic> diags;
  validate_settings(YAML::Load("batch: 100001"), big, "f.yaml", {}, diags);
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message == "setting 'batch' must be between 1 and 100000, got 100001");
}

TEST_CASE("setting types have names", "[settings]") {
  CHECK(std::string{to_string(setting_type::duration)} == "duration");
  CHECK(std::string{to_string(setting_type::string_list)} == "string list");
  CHECK(std::string{to_string(setting_type::object_map)} == "object map");
}
