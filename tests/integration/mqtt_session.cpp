// MQTT connection details against a real broker: connector status and last will,
// username/password, TLS, and simatic-v1 metadata that arrives after the data.

#include "tests/integration/fixture.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <mutex>

using namespace fabrik;
using namespace fabrik::test;

namespace {

const std::string meta_topic = "ie/m/j/simatic/v1/plc9/dp";
const std::string data_topic = "ie/d/j/simatic/v1/plc9/dp/r/Press/cycle";

std::string metadata() {
  return R"({"seq":1,"connections":[{"name":"Press","type":"simulated","dataPoints":[)"
         R"({"name":"cycle","topic":")"
         + data_topic
         + R"(","dataPointDefinitions":[)"
           R"({"name":"force","id":"7","dataType":"Real"},)"
           R"({"name":"count","id":"8","dataType":"UDInt"}]}]}]})";
}

std::string value(int i) {
  return R"({"seq":)" + std::to_string(i) + R"(,"vals":[{"id":"7","val":)" + std::to_string(100 + i)
         + R"(.5,"ts":"2025-03-01T08:00:00.)" + std::to_string(100 + i) + R"(Z"},{"id":"8","val":)"
         + std::to_string(i) + "}]}";
}

std::vector<std::string> values(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(value(i));
  return out;
}

/// A flow with one simatic source into storage; `broker_extra` goes into the broker entry.
std::string flow_text(const std::string& url, const std::string& broker_extra = "") {
  return "name: session-test\n"
         "brokers:\n"
         "  local:\n"
         "    url: \""
         + url + "\"\n" + broker_extra
         + "actors:\n"
           "  press:\n"
           "    kind: mqtt.source\n"
           "    broker: local\n"
           "    topics: [\"ie/m/j/simatic/v1/+/dp\", \"ie/d/j/simatic/v1/+/dp/r/#\"]\n"
           "    format: simatic-v1\n"
           "    app: fab-src\n"
           "  store: {kind: storage}\n"
           "wires: [press -> store]\n";
}

process run_fabrik(temp_dir& dir, const std::string& log = "fabrik.log") {
  return process{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
                  (dir / "data").string(), "--status-interval", "1s"},
                 dir / log};
}

uint64_t stored(temp_dir& dir) {
  return stored_count(dir / "data" / "storage" / "store", "press/Press/cycle");
}

} // namespace

TEST_CASE("a simatic-v1 source publishes available and good, and its last will says "
          "unavailable when it dies",
          "[e2e][mqtt][simatic]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b.url()));
  subscriber status{b, {"ie/s/j/simatic/v1/fab-src/status"}};
  auto fabrik = run_fabrik(dir);
  REQUIRE(wait_until([&] { return status.saw(R"("status":"good")"); }, std::chrono::seconds{20}));
  CHECK(status.saw(R"("status":"available")"));
  CHECK_FALSE(status.saw(R"("status":"unavailable")"));
  fabrik.signal(SIGKILL);
  fabrik.wait();
  CHECK(
    wait_until([&] { return status.saw(R"("status":"unavailable")"); }, std::chrono::seconds{20}));
}

TEST_CASE("values that arrive before their metadata are kept and stored once it arrives",
          "[e2e][mqtt][simatic]") {
  temp_dir dir;
  broker b{dir / "broker"};
  write_file(dir / "flow.yaml", flow_text(b.url()));
  auto fabrik = run_fabrik(dir);
  REQUIRE(wait_until([&] { return logged(fabrik, "press: connected"); }));
  publish_lines(b.port(), data_topic, values(20));
  // Parked, counted, not stored, not dropped.
  REQUIRE(wait_until([&] { return logged(fabrik, "parked=20"); }, std::chrono::seconds{20}));
  CHECK(stored(dir) == 0);
  publish_lines(b.port(), meta_topic, {metadata()}, 1, true);
  REQUIRE(wait_until([&] { return stored(dir) == 20; }, std::chrono::seconds{20}));
  fabrik.signal(SIGTERM);
  CHECK(fabrik.wait() == 0);
}

TEST_CASE("username and password from a file authenticate, a wrong one is reported",
          "[e2e][mqtt]") {
  temp_dir dir;
  auto pw = dir / "passwd";
  REQUIRE(run_command({"mosquitto_passwd", "-b", "-c", pw.string(), "plant", "s3cret"}) == 0);
  broker b{dir / "broker", true, "allow_anonymous false\npassword_file " + pw.string() + "\n"};
  write_file(dir / "pw.txt", "s3cret\n");
  write_file(dir / "flow.yaml",
             flow_text(b.url(), "    username: plant\n    password: file:pw.txt\n"));
  {
    auto fabrik = run_fabrik(dir);
    REQUIRE(wait_until([&] { return logged(fabrik, "press: connected"); }));
    CHECK_FALSE(logged(fabrik, "s3cret"));
    fabrik.signal(SIGTERM);
    CHECK(fabrik.wait() == 0);
  }
  write_file(dir / "pw.txt", "wrong\n");
  auto fabrik = run_fabrik(dir, "wrong-password.log");
  REQUIRE(wait_until([&] { return logged(fabrik, "press (mqtt.source) degraded"); },
                     std::chrono::seconds{20}));
  CHECK(logged(fabrik, "connect failed"));
  CHECK_FALSE(logged(fabrik, "wrong"));
  fabrik.signal(SIGTERM);
  CHECK(fabrik.wait() == 0);
}

TEST_CASE("a source connects over TLS with the CA from its settings", "[e2e][mqtt][tls]") {
  temp_dir dir;
  auto d = dir.path().string();
  // A throwaway CA and a server certificate for 127.0.0.1.
  REQUIRE(std::system(("cd " + d
                       + " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
                         "-subj /CN=test-ca -keyout ca.key -out ca.crt 2>/dev/null && "
                         "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
                         "-keyout server.key -out server.csr 2>/dev/null && "
                         "printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf && "
                         "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key "
                         "-CAcreateserial -days 2 -extfile ext.cnf -out server.crt 2>/dev/null")
                        .c_str())
          == 0);
  broker b{dir / "broker", true,
           "cafile " + d + "/ca.crt\ncertfile " + d + "/server.crt\nkeyfile " + d
             + "/server.key\n"};
  auto url = "ssl://127.0.0.1:" + std::to_string(b.port());
  write_file(dir / "flow.yaml", flow_text(url, "    ca_file: ca.crt\n"));
  auto fabrik = run_fabrik(dir);
  REQUIRE(wait_until([&] { return logged(fabrik, "press: connected to ssl://"); },
                     std::chrono::seconds{20}));
  fabrik.signal(SIGTERM);
  CHECK(fabrik.wait() == 0);
  // The same broker refuses a client that does not trust its CA.
  write_file(dir / "flow.yaml", flow_text(url));
  auto untrusting = run_fabrik(dir, "untrusting.log");
  REQUIRE(wait_until([&] { return logged(untrusting, "press (mqtt.source) degraded"); },
                     std::chrono::seconds{20}));
  CHECK_FALSE(logged(untrusting, "press: connected"));
  untrusting.signal(SIGTERM);
  CHECK(untrusting.wait() == 0);
}
