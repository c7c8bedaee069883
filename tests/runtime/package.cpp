// Workflow packages: manifest validation, one test per hostile zip, extraction, building.
#include "runtime/package.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>
#include <zip.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace fabrik;
namespace fs = std::filesystem;

namespace {

using test_support::scratch_dir;

using file = test_support::zip_entry;
using tweak = test_support::zip_entry_hook; // gives entries odd attributes
using test_support::make_zip;
using test_support::write_file;

const std::string good_manifest = R"(name: demo
version: "0.1"
entry: model
inputs: [a, b]
label: y
outputs: [prediction]
parameters:
  n: 10
)";

const std::string good_model = "def train(dataset, params):\n    return 1\n\n"
                               "def predict(model, sample):\n    return {}\n";

std::vector<file> good_files() {
  return {{"fabrik-workflow.yaml", good_manifest}, {"model.py", good_model}};
}

/// The error's text; fails the test when there is none.
template <class T>
std::string error_of(const expected<T>& r) {
  REQUIRE_FALSE(r);
  return r.err().message;
}

/// Overwrites every occurrence of `from` (same length as `to`) in `bytes`.
int patch(std::string& bytes, const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  int n = 0;
  for (auto p = bytes.find(from); p != std::string::npos; p = bytes.find(from, p + 1)) {
    bytes.replace(p, from.size(), to);
    ++n;
  }
  return n;
}

void put_u32(std::string& bytes, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    bytes[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

/// Sets the uncompressed size of the only file entry in both its local header and the
/// central directory, so the archive stays consistent and only the size lies.
void set_declared_size(std::string& bytes, const std::string& name, uint32_t size) {
  auto local = bytes.find(std::string{"PK\3\4"});
  while (local != std::string::npos && bytes.compare(local + 30, name.size(), name) != 0)
    local = bytes.find(std::string{"PK\3\4"}, local + 1);
  auto central = bytes.find(std::string{"PK\1\2"});
  while (central != std::string::npos && bytes.compare(central + 46, name.size(), name) != 0)
    central = bytes.find(std::string{"PK\1\2"}, central + 1);
  REQUIRE(local != std::string::npos);
  REQUIRE(central != std::string::npos);
  put_u32(bytes, local + 22, size);
  put_u32(bytes, central + 24, size);
}

std::string read_file(const fs::path& p) {
  std::ifstream in{p, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

const fs::path example_dir = fs::path{FABRIK_SOURCE_DIR} / "examples" / "pcb-classifier";

} // namespace

// -- helpers ---------------------------------------------------------------------------

TEST_CASE("sha256_hex matches the FIPS 180-4 test vectors", "[package]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1'000'000, 'a'))
        == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("valid_utf8 accepts UTF-8 and rejects broken sequences", "[package]") {
  CHECK(valid_utf8("plain ascii"));
  CHECK(valid_utf8("Grüße, 温度, 🙂"));
  CHECK_FALSE(valid_utf8("\xff"));
  CHECK_FALSE(valid_utf8("caf\xe9")); // Latin-1
  CHECK_FALSE(valid_utf8("\xc0\xaf")); // overlong '/'
  CHECK_FALSE(valid_utf8("\xed\xa0\x80")); // surrogate
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
  CHECK_FALSE(valid_utf8("\xe2\x82")); // truncated
}

// -- a good package --------------------------------------------------------------------

TEST_CASE("a good package reads with its manifest, entries and hash", "[package]") {
  auto zip = make_zip(good_files());
  auto p = read_package_bytes(zip, "demo.zip");
  INFO((p ? "" : p.err().message));
  REQUIRE(p);
  CHECK(p->manifest.name == "demo");
  CHECK(p->manifest.version == "0.1");
  CHECK(p->manifest.kind == workflow_kind::fabrik);
  CHECK(p->manifest.entry == "model");
  CHECK(p->manifest.inputs == std::vector<std::string>{"a", "b"});
  CHECK(p->manifest.outputs == std::vector<std::string>{"prediction"});
  CHECK(p->manifest.label == "y");
  CHECK(p->manifest.parameters.at("n") == parameter_value{int64_t{10}});
  CHECK(p->manifest.from_manifest);
  CHECK(p->entry_file == "model.py");
  REQUIRE(p->entries.size() == 2);
  CHECK(p->entries[0].name == "fabrik-workflow.yaml");
  CHECK(p->entries[1].name == "model.py");
  CHECK(p->unpacked_size == good_manifest.size() + good_model.size());
  CHECK(p->sha256.size() == 64);
}

TEST_CASE("the content hash follows its documented definition", "[package]") {
  auto p = read_package_bytes(make_zip(good_files()), "demo.zip");
  REQUIRE(p);
  // Files in name order: NAME, 0, size as 8 bytes big-endian, bytes.
  std::string stream;
  for (const auto& f : good_files()) {
    stream += f.name;
    stream += '\0';
    for (int i = 7; i >= 0; --i)
      stream += static_cast<char>((f.data.size() >> (8 * i)) & 0xff);
    stream += f.data;
  }
  CHECK(p->sha256 == sha256_hex(stream));
}

TEST_CASE("the content hash ignores entry order, compression and directories", "[package]") {
  auto a = read_package_bytes(make_zip(good_files()), "a.zip");
  auto files = good_files();
  std::reverse(files.begin(), files.end());
  files.push_back({"lib/", ""});
  auto b = read_package_bytes(
    make_zip(files, [](zip_t* za, zip_uint64_t i,
                       const file&) { zip_set_file_compression(za, i, ZIP_CM_STORE, 0); }),
    "b.zip");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->sha256 == b->sha256);
  auto changed = good_files();
  changed[1].data += "\n";
  auto c = read_package_bytes(make_zip(changed), "c.zip");
  REQUIRE(c);
  CHECK(c->sha256 != a->sha256);
}

TEST_CASE("a package reads from a file as from memory", "[package]") {
  scratch_dir tmp{"package"};
  auto zip = make_zip(good_files());
  write_file(tmp.path() / "demo.zip", zip);
  auto from_file = read_package(tmp.path() / "demo.zip");
  auto from_bytes = read_package_bytes(zip, "demo.zip");
  REQUIRE(from_file);
  REQUIRE(from_bytes);
  CHECK(from_file->sha256 == from_bytes->sha256);
}

// -- hostile zips: one test each -------------------------------------------------------

TEST_CASE("an absolute entry path is rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"/etc/cron.d/evil", "x"});
  auto msg = error_of(read_package_bytes(make_zip(files), "evil.zip"));
  CHECK(msg == "evil.zip: entry '/etc/cron.d/evil' is an absolute path");
}

TEST_CASE("a '..' component is rejected", "[package][hostile]") {
  for (std::string name : {"../evil.py", "lib/../../evil.py", "lib/.."}) {
    auto files = good_files();
    files.push_back({name, "x"});
    auto msg = error_of(read_package_bytes(make_zip(files), "evil.zip"));
    CHECK(msg
          == "evil.zip: entry '" + name
               + "' contains a '..' component (it would leave "
                 "the package)");
  }
}

TEST_CASE("backslashes and drive letters are rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"..\\evil.py", "x"});
  auto msg = error_of(read_package_bytes(make_zip(files), "evil.zip"));
  CHECK(msg == "evil.zip: entry '..\\evil.py' contains a backslash (a Windows path separator)");
  files = good_files();
  files.push_back({"C:/evil.py", "x"});
  msg = error_of(read_package_bytes(make_zip(files), "evil.zip"));
  CHECK(msg == "evil.zip: entry 'C:/evil.py' starts with a drive letter");
}

TEST_CASE("empty and '.' components and control characters are rejected", "[package][hostile]") {
  auto check = [](std::string name, std::string why) {
    auto files = good_files();
    files.push_back({name, "x"});
    CHECK_THAT(error_of(read_package_bytes(make_zip(files), "evil.zip")), Catch::EndsWith(why));
  };
  check("lib//x.py", "has an empty path component (//)");
  check("./x.py", "contains a '.' component");
  check("x\n.py", "entry 'x\\x0a.py' has control characters in its name");
  check("caf\xe9.py", "has a name that is not valid UTF-8");
}

TEST_CASE("a symlink entry is rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"lib/passwd", "/etc/passwd"});
  auto zip = make_zip(files, [](zip_t* za, zip_uint64_t i, const file& f) {
    if (f.name == "lib/passwd")
      zip_file_set_external_attributes(za, i, 0, ZIP_OPSYS_UNIX, (S_IFLNK | 0777u) << 16);
  });
  auto msg = error_of(read_package_bytes(zip, "evil.zip"));
  CHECK(msg
        == "evil.zip: entry 'lib/passwd' is a symbolic link; packages hold regular files "
           "only");
  scratch_dir tmp{"package"};
  CHECK_FALSE(extract_package_bytes(zip, "evil.zip", tmp.path() / "out"));
  CHECK_FALSE(fs::exists(tmp.path() / "out"));
}

TEST_CASE("other non-regular entries (a FIFO) are rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"pipe", ""});
  auto zip = make_zip(files, [](zip_t* za, zip_uint64_t i, const file& f) {
    if (f.name == "pipe")
      zip_file_set_external_attributes(za, i, 0, ZIP_OPSYS_UNIX, (S_IFIFO | 0644u) << 16);
  });
  auto msg = error_of(read_package_bytes(zip, "evil.zip"));
  CHECK(msg
        == "evil.zip: entry 'pipe' is not a regular file or directory (Unix file type "
           "FIFO)");
}

TEST_CASE("duplicate entry names are rejected, naming the entry", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"aa.py", "print('first')"});
  files.push_back({"bb.py", "print('second')"});
  auto zip = make_zip(files);
  // libzip refuses to write duplicates: rename bb.py in place (headers and directory).
  REQUIRE(patch(zip, "bb.py", "aa.py") == 2);
  auto msg = error_of(read_package_bytes(zip, "evil.zip"));
  CHECK(msg == "evil.zip: entry 'aa.py' appears twice");
}

TEST_CASE("a file that is also used as a directory is rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"util", "x"});
  files.push_back({"util/x.py", "y"});
  CHECK(error_of(read_package_bytes(make_zip(files), "evil.zip"))
        == "evil.zip: entry 'util' is a file, but other entries use it as a directory");
  files = good_files();
  files.push_back({"lib", "x"});
  CHECK(error_of(read_package_bytes(make_zip(files), "evil.zip"))
        == "evil.zip: entry 'lib' must be a directory: lib/ holds vendored Python libraries");
}

TEST_CASE("more entries than the limit are rejected", "[package][hostile]") {
  CHECK(package_limits{}.max_entries == 10'000);
  auto files = good_files();
  for (int i = 0; i < 4; ++i)
    files.push_back({"f" + std::to_string(i) + ".py", "x"});
  auto zip = make_zip(files); // 6 entries
  package_limits limits;
  limits.max_entries = 6;
  CHECK(read_package_bytes(zip, "many.zip", limits));
  limits.max_entries = 5;
  auto msg = error_of(read_package_bytes(zip, "many.zip", limits));
  CHECK(msg == "many.zip: has 6 entries, more than the limit of 5");
}

TEST_CASE("a total unpacked size over the limit is rejected", "[package][hostile]") {
  CHECK(package_limits{}.max_unpacked == 512ull << 20);
  auto files = good_files();
  std::string noise(600 << 10, '\0');
  uint32_t x = 1;
  for (auto& c : noise) // incompressible, so only the total is over a limit
    c = static_cast<char>((x = x * 1664525u + 1013904223u) >> 24);
  files.push_back({"data1.bin", noise});
  files.push_back({"data2.bin", noise});
  package_limits limits;
  limits.max_unpacked = 1 << 20;
  auto msg = error_of(read_package_bytes(make_zip(files), "big.zip", limits));
  CHECK(msg == "big.zip: unpacks to more than the limit of 1MiB (at entry 'data2.bin')");
}

TEST_CASE("an entry with a compression ratio over 200:1 is rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"bomb.txt", std::string(10 << 20, '\0')});
  auto msg = error_of(read_package_bytes(make_zip(files), "bomb.zip"));
  CHECK_THAT(msg, Catch::StartsWith("bomb.zip: entry 'bomb.txt' has a compression ratio of "));
  CHECK_THAT(msg, Catch::EndsWith(":1, over the limit of 200:1 (a zip bomb?)"));
  // Small entries cannot blow anything up and may compress well.
  files.back().data = std::string(60 << 10, ' ');
  CHECK(read_package_bytes(make_zip(files), "spaces.zip"));
}

TEST_CASE("an entry holding more data than its header declares is rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"big.txt", std::string(5000, 'a')});
  auto zip = make_zip(files);
  set_declared_size(zip, "big.txt", 100);
  auto msg = error_of(read_package_bytes(zip, "liar.zip"));
  CHECK(msg
        == "liar.zip: entry 'big.txt' holds more data than the 100 bytes its header "
           "declares");
  scratch_dir tmp{"package"};
  CHECK_FALSE(extract_package_bytes(zip, "liar.zip", tmp.path() / "out"));
  CHECK_FALSE(fs::exists(tmp.path() / "out"));
}

TEST_CASE("an entry holding less data than its header declares is rejected", "[package][hostile]") {
  auto files = good_files();
  files.push_back({"big.txt", std::string(5000, 'a')});
  auto zip = make_zip(files);
  set_declared_size(zip, "big.txt", 9000);
  auto msg = error_of(read_package_bytes(zip, "liar.zip"));
  CHECK(msg == "liar.zip: entry 'big.txt' holds 5000 bytes, not the 9000 its header declares");
}

TEST_CASE("an encrypted entry is rejected", "[package][hostile]") {
  for (zip_uint16_t method : {ZIP_EM_AES_256, ZIP_EM_TRAD_PKWARE}) {
    if (!zip_encryption_method_supported(method, 1))
      continue;
    auto zip = make_zip(good_files(), [method](zip_t* za, zip_uint64_t i, const file& f) {
      if (f.name == "model.py")
        REQUIRE(zip_file_set_encryption(za, i, method, "secret") == 0);
    });
    auto msg = error_of(read_package_bytes(zip, "locked.zip"));
    CHECK(msg == "locked.zip: entry 'model.py' is encrypted; packages must not be");
  }
}

TEST_CASE("a file that is not a zip is rejected", "[package][hostile]") {
  auto r = read_package_bytes("def train(): pass\n", "model.zip");
  CHECK(error_of(r) == "model.zip: not a zip file");
  CHECK(r.err().code == ec::parse_error);
  CHECK(error_of(read_package_bytes("", "empty.zip")) == "empty.zip: not a zip file (it is empty)");
  scratch_dir tmp{"package"};
  write_file(tmp.path() / "text.zip", "just text");
  CHECK(error_of(read_package(tmp.path() / "text.zip"))
        == (tmp.path() / "text.zip").string() + ": not a zip file");
  auto missing = read_package(tmp.path() / "missing.zip");
  REQUIRE_FALSE(missing);
  CHECK(missing.err().code == ec::not_found);
}

TEST_CASE("a missing entry module is rejected", "[package][hostile]") {
  auto msg =
    error_of(read_package_bytes(make_zip({{"fabrik-workflow.yaml", good_manifest}}), "demo.zip"));
  CHECK(msg == "demo.zip: entry module 'model' is missing: no model.py in the package");
}

TEST_CASE("an entry module that is not UTF-8 is rejected", "[package][hostile]") {
  auto files = good_files();
  files[1].data = "# caf\xe9\n" + good_model;
  auto msg = error_of(read_package_bytes(make_zip(files), "demo.zip"));
  CHECK(msg == "demo.zip: entry module model.py is not valid UTF-8 text");
}

TEST_CASE("a zip without manifest or entrypoint.py is not a package", "[package][hostile]") {
  auto msg = error_of(read_package_bytes(make_zip({{"model.py", good_model}}), "x.zip"));
  CHECK_THAT(msg, Catch::StartsWith("x.zip: is not a workflow package: no fabrik-workflow.yaml"));
  // Zipping the folder instead of its contents gets a hint.
  msg = error_of(read_package_bytes(
    make_zip({{"demo/fabrik-workflow.yaml", good_manifest}, {"demo/model.py", good_model}}),
    "x.zip"));
  CHECK_THAT(msg, Catch::Contains("zip the contents of 'demo', not the folder"));
}

// -- manifests -------------------------------------------------------------------------

TEST_CASE("manifest errors point at FILE.zip!fabrik-workflow.yaml:LINE:COL", "[package]") {
  const std::string manifest = "name: Demo Model\n" // 1: bad name
                               "version: \"0.1\"\n" // 2
                               "kind: tensorflow\n" // 3: not a kind
                               "inputs: [a, b, a]\n" // 4: a twice
                               "label: b\n" // 5: label is an input
                               "colour: blue\n" // 6: unknown
                               "parameters:\n" // 7
                               "  layers: [1, 2]\n"; // 8: not a scalar
  auto msg = error_of(read_package_bytes(
    make_zip({{"fabrik-workflow.yaml", manifest}, {"model.py", good_model}}), "demo.zip"));
  const std::string f = "demo.zip!fabrik-workflow.yaml:";
  CHECK_THAT(msg, Catch::Contains(f
                                  + "1:7: name 'Demo Model' must be 1 to 64 lowercase "
                                    "letters, digits, - or _"));
  CHECK_THAT(msg, Catch::Contains(f
                                  + "3:7: setting 'kind' must be one of fabrik, "
                                    "process_input, got 'tensorflow'"));
  CHECK_THAT(msg, Catch::Contains(f + "4:16: inputs names 'a' twice"));
  CHECK_THAT(msg, Catch::Contains(f + "5:8: label 'b' is also an input"));
  CHECK_THAT(msg, Catch::Contains(f
                                  + "6:1: unknown setting 'colour'; valid settings: "
                                    "description, entry, images, inputs, kind, label, name, "
                                    "outputs, parameters, python, version"));
  CHECK_THAT(msg, Catch::Contains(f
                                  + "8:11: parameter 'layers' must be a number, string, "
                                    "boolean or null, got a list"));
  // One line per problem, in file order.
  CHECK(std::count(msg.begin(), msg.end(), '\n') == 5);
  CHECK_THAT(msg, Catch::StartsWith(f + "1:7: "));
  CHECK(msg.find(f + "6:1: ") < msg.find(f + "8:11: "));
}

TEST_CASE("manifest: required settings and YAML syntax errors", "[package]") {
  std::vector<diagnostic> diags;
  CHECK_FALSE(parse_manifest("inputs: [a]\n", "m.yaml", diags));
  REQUIRE(diags.size() == 2);
  CHECK(diags[0].to_string() == "m.yaml:1:1: missing required setting 'name'");
  CHECK(diags[1].to_string() == "m.yaml:1:1: missing required setting 'version'");
  diags.clear();
  CHECK_FALSE(parse_manifest("name: x\nversion: [1\n", "m.yaml", diags));
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].line == 3);
  diags.clear();
  CHECK_FALSE(parse_manifest("name: x\nversion: '1'\n", "m.yaml", diags));
  REQUIRE(diags.size() == 1);
  CHECK(diags[0].message == "inputs (or images) must name at least one field for kind fabrik");
}

TEST_CASE("manifest: defaults, entry forms and parameter types", "[package]") {
  std::vector<diagnostic> diags;
  auto m = parse_manifest("name: x\n"
                          "version: 2.10\n"
                          "entry: pkg.main.py\n"
                          "inputs: a\n"
                          "python: '3.11'\n"
                          "parameters:\n"
                          "  i: -3\n"
                          "  d: 0.25\n"
                          "  b: true\n"
                          "  s: yes\n"
                          "  q: '10'\n"
                          "  n: null\n"
                          "  e:\n",
                          "m.yaml", diags);
  INFO((diags.empty() ? "" : diags[0].to_string()));
  REQUIRE(m);
  CHECK(m->version == "2.10"); // the YAML text, not a float
  CHECK(m->kind == workflow_kind::fabrik);
  CHECK(m->entry == "pkg.main");
  CHECK(m->inputs == std::vector<std::string>{"a"});
  CHECK(m->python == "3.11");
  const auto& p = m->parameters;
  CHECK(p.at("i") == parameter_value{int64_t{-3}});
  CHECK(p.at("d") == parameter_value{0.25});
  CHECK(p.at("b") == parameter_value{true});
  CHECK(p.at("s") == parameter_value{std::string{"yes"}}); // YAML 1.2: not a boolean
  CHECK(p.at("q") == parameter_value{std::string{"10"}}); // quoted: a string
  CHECK(p.at("n") == parameter_value{std::monostate{}});
  CHECK(p.at("e") == parameter_value{std::monostate{}});

  diags.clear();
  m = parse_manifest("name: x\nversion: '1'\nkind: process_input\n", "m.yaml", diags);
  REQUIRE(m);
  CHECK(m->entry == "entrypoint");
  CHECK(m->inputs.empty());

  diags.clear();
  CHECK_FALSE(parse_manifest("name: x\nversion: 1 beta\nentry: 3d\ninputs: [a]\npython: 3.x\n",
                             "m.yaml", diags));
  REQUIRE(diags.size() == 3);
  CHECK(diags[0].to_string()
        == "m.yaml:2:10: version '1 beta' must be 1 to 64 letters, "
           "digits, '.', '_', '+' or '-'");
  CHECK(diags[1].to_string()
        == "m.yaml:3:8: entry '3d' must be a Python module name such as "
           "model or pkg.model");
  CHECK(diags[2].to_string()
        == "m.yaml:5:9: python '3.x' must be a version such as 3.11 or "
           "3.11.2");
}

TEST_CASE("a label is required when the entry module defines train()", "[package]") {
  const std::string manifest = "name: demo\nversion: '1'\ninputs: [a]\n";
  auto msg = error_of(read_package_bytes(
    make_zip({{"fabrik-workflow.yaml", manifest}, {"model.py", good_model}}), "demo.zip"));
  CHECK(msg == "demo.zip!fabrik-workflow.yaml: label is required: model.py defines train()");
  // Predict-only: no label needed.
  CHECK(read_package_bytes(make_zip({{"fabrik-workflow.yaml", manifest},
                                     {"model.py", "def predict(model, sample):\n  return {}\n"}}),
                           "demo.zip"));
}

TEST_CASE("a dotted entry resolves to a module file or a package", "[package]") {
  const std::string manifest = "name: demo\nversion: '1'\ninputs: [a]\nentry: app.main\n";
  auto p = read_package_bytes(
    make_zip({{"fabrik-workflow.yaml", manifest}, {"app/main/__init__.py", "x = 1\n"}}), "d.zip");
  REQUIRE(p);
  CHECK(p->entry_file == "app/main/__init__.py");
  p = read_package_bytes(make_zip({{"fabrik-workflow.yaml", manifest}, {"app/main.py", "x = 1\n"}}),
                         "d.zip");
  REQUIRE(p);
  CHECK(p->entry_file == "app/main.py");
}

// -- Siemens AI Inference Server packages ----------------------------------------------

TEST_CASE("a zip with only entrypoint.py is a Siemens process_input package", "[package]") {
  const std::string entry = "def process_input(data: dict):\n    return {'y': data['x']}\n";
  auto zip = make_zip({{"entrypoint.py", entry}, {"lib/helper.py", "A = 1\n"}});
  auto p = read_package_bytes(zip, "/models/Anomaly Detector V2.zip");
  INFO((p ? "" : p.err().message));
  REQUIRE(p);
  CHECK_FALSE(p->manifest.from_manifest);
  CHECK(p->manifest.kind == workflow_kind::process_input);
  CHECK(p->manifest.name == "anomaly-detector-v2");
  CHECK(p->manifest.entry == "entrypoint");
  CHECK(p->entry_file == "entrypoint.py");
  CHECK(p->manifest.version == p->sha256.substr(0, 12));
  // A manifest saying so works too, with its own name and version.
  auto q = read_package_bytes(
    make_zip({{"fabrik-workflow.yaml", "name: det\nversion: '3'\nkind: process_input\n"
                                       "entry: entrypoint.py\n"},
              {"entrypoint.py", entry}}),
    "x.zip");
  REQUIRE(q);
  CHECK(q->manifest.kind == workflow_kind::process_input);
  CHECK(q->manifest.name == "det");
  CHECK(q->manifest.version == "3");
}

// -- extraction ------------------------------------------------------------------------

TEST_CASE("a built example package round-trips through read and extract", "[package]") {
  scratch_dir tmp{"package"};
  auto built = build_package(example_dir, tmp.path() / "pcb-classifier.zip");
  INFO((built ? "" : built.err().message));
  REQUIRE(built);
  CHECK(built->manifest.name == "pcb-classifier");
  CHECK(built->manifest.inputs.size() == 16);
  CHECK(built->manifest.label == "label");

  auto read = read_package(tmp.path() / "pcb-classifier.zip");
  REQUIRE(read);
  CHECK(read->sha256 == built->sha256);

  auto dest = tmp.path() / "deploy" / "pcb-classifier" / "1.0.0";
  auto x = extract_package(tmp.path() / "pcb-classifier.zip", dest);
  INFO((x ? "" : x.err().message));
  REQUIRE(x);
  CHECK(x->sha256 == read->sha256);
  struct stat st;
  REQUIRE(::stat(dest.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  // Exactly the package's files, byte for byte the sources.
  size_t files = 0;
  for (auto& e : fs::recursive_directory_iterator(dest)) {
    if (!e.is_regular_file())
      continue;
    ++files;
    auto rel = fs::relative(e.path(), dest);
    CHECK(read_file(e.path()) == read_file(example_dir / rel));
  }
  CHECK(files == read->entries.size());
  for (const auto& entry : read->entries)
    CHECK(fs::is_regular_file(dest / entry.name));
}

TEST_CASE("extraction refuses a non-empty destination and uses an empty one", "[package]") {
  scratch_dir tmp{"package"};
  auto zip = make_zip(good_files());
  write_file(tmp.path() / "full" / "keep.txt", "mine");
  auto msg = error_of(extract_package_bytes(zip, "demo.zip", tmp.path() / "full"));
  CHECK(msg == "cannot extract into " + (tmp.path() / "full").string() + ": not empty");
  CHECK(read_file(tmp.path() / "full" / "keep.txt") == "mine");
  fs::create_directories(tmp.path() / "empty");
  REQUIRE(extract_package_bytes(zip, "demo.zip", tmp.path() / "empty"));
  CHECK(read_file(tmp.path() / "empty" / "model.py") == good_model);
  // A link where the directory should be is not followed.
  fs::create_directories(tmp.path() / "target");
  fs::create_directory_symlink(tmp.path() / "target", tmp.path() / "link");
  CHECK_FALSE(extract_package_bytes(zip, "demo.zip", tmp.path() / "link"));
  CHECK(fs::is_empty(tmp.path() / "target"));
}

TEST_CASE("a failed extraction removes what it wrote", "[package]") {
  scratch_dir tmp{"package"};
  auto files = good_files();
  files.push_back({"lib/pkg/a.py", "A = 1\n"});
  files.push_back({"zz.txt", std::string(5000, 'z')}); // extracted last, and lying
  auto zip = make_zip(files);
  set_declared_size(zip, "zz.txt", 100);
  // Into a directory it creates: the directory goes.
  CHECK_FALSE(extract_package_bytes(zip, "liar.zip", tmp.path() / "new"));
  CHECK_FALSE(fs::exists(tmp.path() / "new"));
  // Into an empty directory given to it: the directory stays, empty.
  fs::create_directories(tmp.path() / "given");
  CHECK_FALSE(extract_package_bytes(zip, "liar.zip", tmp.path() / "given"));
  CHECK(fs::is_directory(tmp.path() / "given"));
  CHECK(fs::is_empty(tmp.path() / "given"));
}

// -- building --------------------------------------------------------------------------

TEST_CASE("packaging is deterministic and skips caches and .git", "[package]") {
  scratch_dir tmp{"package"};
  auto src = tmp.path() / "src";
  write_file(src / "fabrik-workflow.yaml", good_manifest);
  write_file(src / "model.py", good_model);
  write_file(src / "lib" / "util" / "__init__.py", "X = 1\n");
  write_file(src / "__pycache__" / "model.cpython-311.pyc", "junk");
  write_file(src / "lib" / "util" / "__pycache__" / "x.pyc", "junk");
  write_file(src / "stale.pyc", "junk");
  write_file(src / ".git" / "HEAD", "ref: refs/heads/main\n");

  auto a = build_package(src, tmp.path() / "a.zip");
  INFO((a ? "" : a.err().message));
  REQUIRE(a);
  // Touch every source and package again, in another time zone.
  for (auto& e : fs::recursive_directory_iterator(src))
    fs::last_write_time(e.path(), fs::file_time_type::clock::now() + std::chrono::hours(5));
  const char* old_tz = std::getenv("TZ");
  std::string saved = old_tz ? old_tz : "";
  ::setenv("TZ", "America/Los_Angeles", 1);
  ::tzset();
  auto b = build_package(src, tmp.path() / "b.zip");
  if (old_tz)
    ::setenv("TZ", saved.c_str(), 1);
  else
    ::unsetenv("TZ");
  ::tzset();
  REQUIRE(b);
  CHECK(a->sha256 == b->sha256);
  CHECK(read_file(tmp.path() / "a.zip") == read_file(tmp.path() / "b.zip"));
  std::vector<std::string> names;
  for (auto& e : a->entries)
    names.push_back(e.name);
  CHECK(names
        == std::vector<std::string>{"fabrik-workflow.yaml", "lib/util/__init__.py", "model.py"});
}

TEST_CASE("packaging skips its own output inside the source directory", "[package]") {
  scratch_dir tmp{"package"};
  write_file(tmp.path() / "fabrik-workflow.yaml", good_manifest);
  write_file(tmp.path() / "model.py", good_model);
  REQUIRE(build_package(tmp.path(), tmp.path() / "demo.zip"));
  auto again = build_package(tmp.path(), tmp.path() / "demo.zip");
  REQUIRE(again);
  CHECK(again->entries.size() == 2);
}

TEST_CASE("packaging refuses links and reports manifest errors at their line", "[package]") {
  scratch_dir tmp{"package"};
  auto src = tmp.path() / "src";
  write_file(src / "fabrik-workflow.yaml", good_manifest);
  write_file(src / "model.py", good_model);
  fs::create_symlink("/etc/passwd", src / "passwd");
  auto msg = error_of(build_package(src, tmp.path() / "x.zip"));
  CHECK(msg
        == (src / "passwd").string()
             + " is a symbolic link; packages hold regular files "
               "only");
  fs::remove(src / "passwd");

  write_file(src / "fabrik-workflow.yaml", good_manifest + "extra: 1\n");
  msg = error_of(build_package(src, tmp.path() / "x.zip"));
  CHECK_THAT(msg, Catch::StartsWith((src / "fabrik-workflow.yaml").string()
                                    + ":9:1: unknown setting 'extra'"));
  CHECK_FALSE(fs::exists(tmp.path() / "x.zip"));
}

TEST_CASE("packaging replaces the output only with a valid package", "[package]") {
  scratch_dir tmp{"package"};
  auto src = tmp.path() / "src";
  write_file(src / "fabrik-workflow.yaml", good_manifest);
  write_file(src / "model.py", good_model);
  REQUIRE(build_package(src, tmp.path() / "x.zip"));
  auto before = read_file(tmp.path() / "x.zip");
  // The bomb passes the source checks but not the zip's.
  write_file(src / "zeros.bin", std::string(1 << 20, '\0'));
  auto msg = error_of(build_package(src, tmp.path() / "x.zip"));
  CHECK_THAT(msg, Catch::Contains("entry 'zeros.bin' has a compression ratio"));
  CHECK(read_file(tmp.path() / "x.zip") == before);
  CHECK_FALSE(fs::exists(tmp.path() / "x.zip.tmp"));
}
