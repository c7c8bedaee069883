// The workflow registry on real LMDB files: package versions and their lookup, models,
// serving, runs and their recovery, read-only readers, layout versions and map growth.
#include "runtime/registry.hpp"

#include "core/lmdb.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>
#include <zip.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <random>

using namespace fabrik;
namespace fs = std::filesystem;

namespace {

using test_support::scratch_dir;

using file = test_support::zip_entry;

/// How a zip is written: the same files give different bytes, but the same content hash.
enum class zip_style {
  deflated, ///< entries in the given order, compressed
  stored, ///< entries in reverse order, uncompressed
};

std::string styled_zip(const std::vector<file>& files, zip_style style = zip_style::deflated) {
  auto ordered = files;
  if (style == zip_style::stored)
    std::reverse(ordered.begin(), ordered.end());
  auto method = style == zip_style::stored ? ZIP_CM_STORE : ZIP_CM_DEFLATE;
  return test_support::make_zip(ordered, [method](zip_t* za, zip_uint64_t i, const file&) {
    REQUIRE(zip_set_file_compression(za, i, method, 0) == 0);
  });
}

const std::string model_py = "def train(dataset, params):\n    return 1\n\n"
                             "def predict(model, sample):\n    return {}\n";

/// A valid package; `extra` changes the content without changing name or version.
std::vector<file> package_files(const std::string& name, const std::string& version,
                                const std::string& extra = {}) {
  auto manifest = "name: " + name + "\nversion: \"" + version
                  + "\"\nentry: model\ninputs: [a]\nlabel: y\noutputs: [prediction]\n";
  return {{"fabrik-workflow.yaml", manifest}, {"model.py", model_py + extra}};
}

std::string package_zip(const std::string& name, const std::string& version,
                        const std::string& extra = {}) {
  return styled_zip(package_files(name, version, extra));
}

registry open_registry(const fs::path& dir, bool read_only = false) {
  auto r = registry::open(dir, read_only);
  if (!r)
    FAIL("cannot open the registry: " << r.err().what());
  return std::move(*r);
}

package_version add(registry& reg, const std::string& zip, const std::string& source = "x.zip") {
  auto r = reg.add_package(zip, source);
  if (!r)
    FAIL("add_package: " << r.err().what());
  CHECK(r->added);
  return r->version;
}

template <class T>
error error_of(const expected<T>& r) {
  REQUIRE_FALSE(r);
  return r.err();
}

std::vector<uint64_t> ids(const std::vector<run_record>& runs) {
  std::vector<uint64_t> out;
  for (auto& r : runs)
    out.push_back(r.id);
  return out;
}

/// Three versions of demo (1.0.0, 1.1.0, 1.0.0 with other content) and one of other.
std::vector<package_version> add_demo_versions(registry& reg) {
  std::vector<package_version> out;
  out.push_back(add(reg, package_zip("demo", "1.0.0")));
  out.push_back(add(reg, package_zip("other", "0.1")));
  out.push_back(add(reg, package_zip("demo", "1.1.0")));
  out.push_back(add(reg, package_zip("demo", "1.0.0", "# changed\n")));
  return out;
}

} // namespace

// -- packages -------------------------------------------------------------------------------

TEST_CASE("add_package stores each content once, however it was zipped", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  auto deflated = styled_zip(package_files("demo", "1.0.0"), zip_style::deflated);
  auto stored = styled_zip(package_files("demo", "1.0.0"), zip_style::stored);
  REQUIRE(deflated != stored);
  auto info = read_package_bytes(deflated, "demo.zip");
  REQUIRE(info);

  auto first = reg.add_package(deflated, "demo.zip");
  REQUIRE(first);
  CHECK(first->added);
  CHECK(first->version.name == "demo");
  CHECK(first->version.version == "1.0.0");
  CHECK(first->version.seq == 1);
  CHECK(first->version.sha256 == info->sha256);
  CHECK(first->version.source == "demo.zip");
  CHECK(first->version.size == deflated.size());
  CHECK(first->version.added > 0);

  auto again = reg.add_package(stored, "upload");
  REQUIRE(again);
  CHECK_FALSE(again->added);
  CHECK(again->version.seq == 1);
  CHECK(again->version.source == "demo.zip"); // the existing version, not a new one
  auto all = reg.versions("demo");
  REQUIRE(all);
  CHECK(all->size() == 1);
}

TEST_CASE("versions are numbered per name in order of arrival", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  add_demo_versions(reg);
  auto demo = reg.versions("demo");
  REQUIRE(demo);
  REQUIRE(demo->size() == 3);
  CHECK((*demo)[0].version == "1.0.0");
  CHECK((*demo)[1].version == "1.1.0");
  CHECK((*demo)[2].version == "1.0.0");
  for (uint64_t i = 0; i < 3; ++i)
    CHECK((*demo)[i].seq == i + 1);
  CHECK((*demo)[0].sha256 != (*demo)[2].sha256);

  auto all = reg.versions();
  REQUIRE(all);
  REQUIRE(all->size() == 4);
  CHECK((*all)[2].name == "demo");
  CHECK((*all)[3].name == "other");
  CHECK((*all)[3].seq == 1);
  auto none = reg.versions("dem"); // a prefix of a name is not the name
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("find picks the newest version, or the one a pin names", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  auto v = add_demo_versions(reg);
  const auto &v1 = v[0], &other = v[1], &v2 = v[2], &v3 = v[3];

  auto newest = reg.find("demo");
  REQUIRE(newest);
  CHECK(newest->seq == 3);
  CHECK(newest->sha256 == v3.sha256);

  auto pinned = reg.find("demo", "1.1.0");
  REQUIRE(pinned);
  CHECK(pinned->seq == v2.seq);
  // Two contents share 1.0.0: the newer one wins.
  auto shared = reg.find("demo", "1.0.0");
  REQUIRE(shared);
  CHECK(shared->seq == 3);

  auto by_hash = reg.find("demo", v1.sha256.substr(0, 8));
  REQUIRE(by_hash);
  CHECK(by_hash->seq == 1);
  std::string upper = v1.sha256.substr(0, 12);
  for (auto& c : upper)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto by_upper = reg.find("demo", upper);
  REQUIRE(by_upper);
  CHECK(by_upper->seq == 1);
  // Seven digits are too few to name a version.
  CHECK(error_of(reg.find("demo", v1.sha256.substr(0, 7))).code == ec::not_found);
  // The hash of another package's version does not match.
  CHECK(error_of(reg.find("demo", other.sha256.substr(0, 16))).code == ec::not_found);

  auto missing = error_of(reg.find("demo", "2.0"));
  CHECK(missing.code == ec::not_found);
  CHECK(missing.message == "no version 2.0 of demo; stored: 1.0.0 (#1), 1.1.0 (#2), 1.0.0 (#3)");
  auto unknown = error_of(reg.find("nope"));
  CHECK(unknown.code == ec::not_found);
  CHECK(unknown.message == "no package named nope is stored; stored: demo, other");
}

TEST_CASE("a broken package is refused with read_package's message", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  // The manifest names an entry module the zip does not hold.
  auto no_entry = styled_zip({package_files("demo", "1.0.0")[0]});
  for (const auto& bad : {no_entry, std::string{"not a zip at all"}}) {
    auto expected_err = error_of(read_package_bytes(bad, "bad.zip"));
    auto err = error_of(reg.add_package(bad, "bad.zip"));
    CHECK(err.code == ec::parse_error);
    CHECK(err.message == expected_err.message);
    CHECK(err.message.find("bad.zip") != std::string::npos);
  }
  auto all = reg.versions();
  REQUIRE(all);
  CHECK(all->empty());
}

TEST_CASE("package_bytes returns the stored zip", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  auto zip = package_zip("demo", "1.0.0");
  auto v = add(reg, zip);
  auto bytes = reg.package_bytes(v.sha256);
  REQUIRE(bytes);
  CHECK(*bytes == zip);
  CHECK(error_of(reg.package_bytes(std::string(64, '0'))).code == ec::not_found);
}

TEST_CASE("a zip larger than the initial map grows the map", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  std::mt19937_64 rng{42};
  std::string noise(static_cast<size_t>(registry_initial_map_size) + (1 << 20), '\0');
  for (size_t i = 0; i + 8 <= noise.size(); i += 8) {
    auto x = rng();
    std::memcpy(noise.data() + i, &x, 8);
  }
  auto files = package_files("big", "1.0");
  files.push_back({"data.bin", noise});
  auto zip = styled_zip(files, zip_style::stored);
  REQUIRE(zip.size() > static_cast<size_t>(registry_initial_map_size));
  auto v = add(reg, zip);
  auto bytes = reg.package_bytes(v.sha256);
  REQUIRE(bytes);
  CHECK(*bytes == zip);
  CHECK(fs::file_size(dir.path() / "data.mdb") > zip.size());
}

// -- models and serving ---------------------------------------------------------------------

TEST_CASE("models keep their bytes, format and library versions", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  auto make_model = [](std::string actor, std::string bytes, int64_t created, uint64_t run) {
    model_record m;
    m.workflow = "demo";
    m.package_sha256 = std::string(64, 'a');
    m.actor = std::move(actor);
    m.run = run;
    m.created = created;
    m.artifact.bytes = std::move(bytes);
    m.artifact.format = worker::model_format::bytes;
    m.artifact.trained_with = {"3.11.2", "1.24.2", "1.2.1"};
    return m;
  };
  std::string binary{"\0\x01pickle\xff", 9};
  auto a1 = reg.put_model(make_model("a", binary, 100, 1));
  auto b1 = reg.put_model(make_model("b", "b-model", 200, 2));
  auto a2 = reg.put_model(make_model("a", "a-model-2", 300, 3));
  REQUIRE(a1);
  REQUIRE(b1);
  REQUIRE(a2);
  CHECK(*a1 == sha256_hex(binary));

  auto m = reg.model(*a1);
  REQUIRE(m);
  CHECK(m->id == *a1);
  CHECK(m->artifact.bytes == binary);
  CHECK(m->artifact.format == worker::model_format::bytes);
  CHECK(m->artifact.trained_with == worker::versions{"3.11.2", "1.24.2", "1.2.1"});
  CHECK(m->workflow == "demo");
  CHECK(m->package_sha256 == std::string(64, 'a'));
  CHECK(m->actor == "a");
  CHECK(m->run == 1);
  CHECK(m->created == 100);

  auto of_a = reg.models("a");
  REQUIRE(of_a);
  REQUIRE(of_a->size() == 2);
  CHECK((*of_a)[0].id == *a2); // newest first
  CHECK((*of_a)[1].id == *a1);
  CHECK((*of_a)[1].artifact.bytes.empty());
  CHECK((*of_a)[1].artifact.trained_with.numpy == "1.24.2");
  auto all = reg.models();
  REQUIRE(all);
  CHECK(all->size() == 3);
  CHECK(error_of(reg.model(std::string(64, 'f'))).code == ec::not_found);
}

TEST_CASE("serving remembers the model per actor and package version", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  auto none = reg.serving("a", "sha1");
  REQUIRE(none);
  CHECK_FALSE(*none);
  REQUIRE(reg.set_serving("a", "sha1", "model-1"));
  REQUIRE(reg.set_serving("a", "sha1", "model-2"));
  REQUIRE(reg.set_serving("b", "sha1", "model-3"));
  auto a = reg.serving("a", "sha1");
  REQUIRE(a);
  CHECK(*a == std::optional<std::string>{"model-2"});
  auto b = reg.serving("b", "sha1");
  REQUIRE(b);
  CHECK(*b == std::optional<std::string>{"model-3"});
  auto other = reg.serving("a", "sha2");
  REQUIRE(other);
  CHECK_FALSE(*other);
}

// -- runs -----------------------------------------------------------------------------------

TEST_CASE("runs are numbered, updated and listed newest first", "[registry]") {
  scratch_dir dir{"registry"};
  auto reg = open_registry(dir.path());
  run_record r;
  r.actor = "a";
  r.workflow = "demo";
  auto one = reg.begin_run(r);
  r.actor = "b";
  auto two = reg.begin_run(r);
  r.actor = "a";
  auto three = reg.begin_run(r);
  REQUIRE(one);
  REQUIRE(two);
  REQUIRE(three);
  CHECK(std::vector{*one, *two, *three} == std::vector<uint64_t>{1, 2, 3});

  auto started = reg.run(1);
  REQUIRE(started);
  CHECK(started->status == "running");
  CHECK(started->started > 0);
  CHECK(started->id == 1);

  auto done = *started;
  done.status = "succeeded";
  done.rows = 3000;
  done.model_id = "m";
  done.m.train_wall = 5;
  done.logs = {"epoch 1", "epoch 2"};
  REQUIRE(reg.update_run(done));
  auto back = reg.run(1);
  REQUIRE(back);
  CHECK(to_json(*back) == to_json(done));

  auto all = reg.runs();
  REQUIRE(all);
  CHECK(ids(*all) == std::vector<uint64_t>{3, 2, 1});
  auto of_a = reg.runs("a");
  REQUIRE(of_a);
  CHECK(ids(*of_a) == std::vector<uint64_t>{3, 1});
  auto limited = reg.runs({}, 2);
  REQUIRE(limited);
  CHECK(ids(*limited) == std::vector<uint64_t>{3, 2});

  CHECK(error_of(reg.run(99)).code == ec::not_found);
  done.id = 99;
  CHECK(error_of(reg.update_run(done)).code == ec::not_found);
  CHECK(error_of(reg.run(99)).code == ec::not_found); // update_run did not create it
}

TEST_CASE("runs left running become interrupted when a writer reopens", "[registry]") {
  scratch_dir dir{"registry"};
  {
    auto reg = open_registry(dir.path());
    run_record r;
    r.actor = "a";
    REQUIRE(reg.begin_run(r));
    r.status = "succeeded";
    r.finished = 7;
    REQUIRE(reg.begin_run(r));
    // A second writer in the same process must not interrupt the first one's live runs.
    auto beside = open_registry(dir.path());
    auto live = beside.run(1);
    REQUIRE(live);
    CHECK(live->status == "running");
  }
  {
    auto reader = open_registry(dir.path(), true); // a reader changes nothing
    auto still = reader.run(1);
    REQUIRE(still);
    CHECK(still->status == "running");
  }
  auto reg = open_registry(dir.path());
  auto r1 = reg.run(1);
  REQUIRE(r1);
  CHECK(r1->status == "interrupted");
  CHECK(r1->finished >= r1->started);
  CHECK(r1->finished > 0);
  CHECK(r1->error == "the engine stopped during the run");
  auto r2 = reg.run(2);
  REQUIRE(r2);
  CHECK(r2->status == "succeeded");
  CHECK(r2->finished == 7);
  CHECK(r2->error.empty());
}

TEST_CASE("runs as JSON round-trip, and missing fields keep defaults", "[registry]") {
  run_record r;
  r.id = 4;
  r.actor = "a";
  r.workflow = "demo";
  r.version = "1.0";
  r.package_sha256 = "abc";
  r.trigger = "manual";
  r.status = "failed";
  r.error = "boom\ntrace";
  r.started = 10;
  r.finished = 20;
  r.rows = 30;
  r.data = "pcb/Line1 last 20000";
  r.model_id = "m";
  r.m = {1, 2, 3, 4, 0.5, 6, 7.5, "rapl"};
  r.logs = {"x"};
  auto j = to_json(r);
  CHECK(j["m"]["energy_method"] == "rapl");
  CHECK(to_json(run_from_json(j)) == j);
  auto partial = run_from_json(nlohmann::json{{"id", 9}, {"rows", "not a number"}});
  CHECK(partial.id == 9);
  CHECK(partial.rows == 0);
  CHECK(partial.status.empty());
}

TEST_CASE("describe_run says what a run did in human units", "[registry]") {
  CHECK(describe_duration(400'000) == "0.4 ms");
  CHECK(describe_duration(340'000'000) == "340 ms");
  CHECK(describe_duration(125'000'000'000) == "2 min 5 s");
  CHECK(describe_energy(9.5) == "9.5 J");
  CHECK(describe_energy(10'000) == "10000 J");

  run_record r;
  r.id = 12;
  r.actor = "classifier";
  r.workflow = "pcb-classifier";
  r.version = "1.0.0";
  r.status = "succeeded";
  r.rows = 3000;
  r.data = "pcb/Line1 last 20000";
  r.model_id = "3f2a" + std::string(60, '0');
  r.m.train_wall = 1'200'000'000;
  r.m.train_cpu = 1'100'000'000;
  r.m.deploy_wall = 400'000'000;
  r.m.peak_cpu = 0.98;
  r.m.peak_rss = 120ull << 20;
  r.m.energy_j = 35;
  r.m.energy_method = "tdp";
  CHECK(describe_run(r)
        == "run 12 classifier (pcb-classifier 1.0.0): succeeded, 3000 rows of pcb/Line1 last "
           "20000, model 3f2a00000000, train 1.2 s (CPU 1.1 s), deploy 400 ms, peak CPU 98%, "
           "peak RSS 120.0MiB, energy 35 J (tdp)");

  run_record f;
  f.id = 13;
  f.actor = "classifier";
  f.workflow = "pcb-classifier";
  f.version = "1.0.0";
  f.status = "failed";
  f.error = "ValueError: bad input\nTraceback (most recent call last):\n  ...";
  f.m.deploy_wall = 340'000'000;
  f.m.energy_j = 12'345;
  f.m.energy_method = "rapl";
  CHECK(describe_run(f)
        == "run 13 classifier (pcb-classifier 1.0.0): failed, deploy 340 ms, energy 12.3 kJ "
           "(rapl): ValueError: bad input");
}

// -- opening --------------------------------------------------------------------------------

TEST_CASE("a read-only registry sees the writer's data", "[registry]") {
  scratch_dir dir{"registry"};
  auto writer = open_registry(dir.path());
  auto v = add(writer, package_zip("demo", "1.0.0"));
  run_record r;
  r.actor = "a";
  REQUIRE(writer.begin_run(r));

  SECTION("in this process") {
    auto reader = open_registry(dir.path(), true);
    auto found = reader.find("demo");
    REQUIRE(found);
    CHECK(found->sha256 == v.sha256);
    add(writer, package_zip("demo", "1.1.0"));
    auto newer = reader.find("demo");
    REQUIRE(newer);
    CHECK(newer->version == "1.1.0");
    CHECK_FALSE(reader.add_package(package_zip("demo", "2.0"), "x.zip"));
    CHECK_FALSE(reader.begin_run(r));
  }
  SECTION("in another process") {
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child opens its own LMDB env, as `fabrik runs` does beside `fabrik run`.
      std::string seen = "cannot open";
      if (auto reader = registry::open(dir.path(), true)) {
        auto found = reader->find("demo");
        auto runs = reader->runs();
        seen = (found ? found->sha256 : found.err().message) + " "
               + (runs ? std::to_string(runs->size()) : runs.err().message);
      }
      (void)!write(pipe_fds[1], seen.data(), seen.size());
      _exit(0);
    }
    close(pipe_fds[1]);
    std::string got;
    char buf[256];
    for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof buf)) > 0;)
      got.append(buf, static_cast<size_t>(n));
    close(pipe_fds[0]);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(got == v.sha256 + " 1");
  }
}

TEST_CASE("opening read-only creates nothing and refuses what is not a registry", "[registry]") {
  scratch_dir dir{"registry"};
  auto missing = registry::open(dir.path() / "missing", true);
  CHECK(error_of(missing).code == ec::not_found);
  CHECK_FALSE(fs::exists(dir.path() / "missing"));
  // Another LMDB environment (a spool, say) is not taken over.
  {
    lmdb::env_options eo;
    eo.dir = dir.path() / "other";
    auto env = lmdb::env::open(eo);
    REQUIRE(env);
    REQUIRE(env->db("spool.entries", true));
  }
  auto other = error_of(registry::open(dir.path() / "other"));
  CHECK(other.code == ec::not_found);
  CHECK(other.message.find("'spool.entries'") != std::string::npos);
}

TEST_CASE("another layout version is refused, naming both", "[registry]") {
  scratch_dir dir{"registry"};
  { open_registry(dir.path()); }
  {
    lmdb::env_options eo;
    eo.dir = dir.path();
    eo.max_dbs = 8;
    auto env = lmdb::env::open(eo);
    REQUIRE(env);
    auto meta = env->db("meta", false);
    REQUIRE(meta);
    REQUIRE(env->write([&](lmdb::txn& t) -> expected<void> {
      if (auto ok = t.put(*meta, "layout_version", lmdb::be64_key(registry_layout_version + 1));
          !ok)
        return ok.err();
      return {};
    }));
  }
  for (bool read_only : {false, true}) {
    auto err = error_of(registry::open(dir.path(), read_only));
    CHECK(err.code == ec::version_mismatch);
    CHECK(err.message.find("layout version " + std::to_string(registry_layout_version + 1))
          != std::string::npos);
    CHECK(err.message.find("reads version " + std::to_string(registry_layout_version))
          != std::string::npos);
  }
}
