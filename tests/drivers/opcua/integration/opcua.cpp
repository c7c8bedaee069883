// End to end: a real OPC UA server (node-opcua, tests/opcua/server.mjs) -> fabrik's
// opcua.source (a real process) -> LMDB, read back through the store; and a fake server
// of our own that answers with malformed messages.

#include "tests/integration/fixture.hpp"

#include "core/time.hpp"
#include "drivers/opcua/client.hpp"
#include "drivers/opcua/transport.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <csignal>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <set>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace fabrik;
using namespace fabrik::test;

namespace {

/// A flow: opcua.source `plc` -> storage `store`; `settings` are extra lines of plc
/// (indented 4).
std::string flow_text(const std::string& endpoint, const std::string& settings) {
  return "name: opcua-test\n"
         "actors:\n"
         "  plc:\n"
         "    kind: opcua.source\n"
         "    endpoint: \""
         + endpoint
         + "\"\n"
           "    publishing_interval: 100ms\n"
           "    reconnect_max: 2s\n"
         + settings
         + "  store: {kind: storage}\n"
           "wires: [plc -> store]\n";
}

process run_fabrik(temp_dir& dir, const std::string& log = "fabrik.log") {
  return process{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--data-dir",
                  (dir / "data").string(), "--status-interval", "1s", "--http", "off"},
                 dir / log};
}

std::vector<record> stored(temp_dir& dir) {
  return stored_records(dir / "data" / "storage" / "store", "plc/values");
}

void stop_cleanly(process& p) {
  p.signal(SIGTERM);
  CHECK(p.wait() == 0);
}

template <class T>
const T* get(const record& r, const std::string& name) {
  auto* v = r.find(name);
  return v ? std::get_if<T>(v) : nullptr;
}

} // namespace

TEST_CASE("OPC UA values arrive with their types, names, source timestamps and quality",
          "[e2e][opcua]") {
  temp_dir dir;
  opcua_server server{dir / "server"};
  write_file(dir / "flow.yaml", flow_text(server.url(), "    folders: [Plant]\n"
                                                        "    sampling_interval: 0s\n"));
  auto started = now_ns();
  auto fabrik = run_fabrik(dir);
  REQUIRE(wait_until([&] { return stored(dir).size() >= 60; }, std::chrono::seconds{60}));
  stop_cleanly(fabrik);
  auto finished = now_ns();
  INFO(fabrik.log());

  std::map<int64_t, const record*> ticks; // Counter -> its record
  std::map<int64_t, uint16_t> quality; // Quality's value -> the record's quality
  bool serial = false;
  auto records = stored(dir);
  for (auto& r : records) {
    if (auto* c = get<int64_t>(r, "Counter"))
      ticks[*c] = &r;
    if (auto* q = get<double>(r, "Quality"))
      quality[static_cast<int64_t>(*q)] = quality::code(r.quality);
    if (auto* s = get<std::string>(r, "Static/Serial"))
      serial = *s == "SN-1";
  }
  CHECK(serial); // a variable in a subfolder, named by its path, its initial value read
  REQUIRE(ticks.size() >= 10);
  int64_t previous_time = 0;
  for (auto& [c, r] : ticks) {
    INFO("Counter " << c);
    // Every type the server writes, each with the value derived from the tick.
    REQUIRE(get<double>(*r, "Temperature"));
    CHECK(*get<double>(*r, "Temperature") == Approx(20 + double(c % 50) / 10));
    REQUIRE(get<bool>(*r, "Running"));
    CHECK(*get<bool>(*r, "Running") == (c % 2 == 0));
    REQUIRE(get<std::string>(*r, "Label"));
    CHECK(*get<std::string>(*r, "Label") == "tick-" + std::to_string(c));
    REQUIRE(get<double>(*r, "Pressure")); // Float
    CHECK(*get<double>(*r, "Pressure") == Approx(1 + double(c) / 4));
    REQUIRE(get<int64_t>(*r, "Total")); // UInt64
    CHECK(*get<int64_t>(*r, "Total") == c * 1000);
    REQUIRE(get<int64_t>(*r, "Stamp")); // DateTime: 2026-01-01 plus c seconds, in ns
    CHECK(*get<int64_t>(*r, "Stamp") == (1767225600 + c) * 1'000'000'000);
    REQUIRE(get<bytes>(*r, "Blob"));
    CHECK(get<bytes>(*r, "Blob")->data == std::string{char(c & 0xff), 1, 2, 3});
    REQUIRE(get<double>(*r, "Vector[2]")); // an array, one field per element
    CHECK(*get<double>(*r, "Vector[0]") == double(c));
    CHECK(*get<double>(*r, "Vector[1]") == double(2 * c));
    CHECK(*get<double>(*r, "Vector[2]") == double(3 * c));
    // The server's source timestamp, not the time fabrik got it.
    CHECK(quality::code(r->quality) == quality::good);
    CHECK_FALSE(r->quality & quality::time_replaced);
    CHECK(r->time > started - 10'000'000'000);
    CHECK(r->time <= r->ingest_time);
    CHECK(r->time < finished);
    CHECK(r->time > previous_time);
    previous_time = r->time;
  }
  // Every change was delivered: no tick missing between the first and the last.
  CHECK(ticks.rbegin()->first - ticks.begin()->first + 1 == int64_t(ticks.size()));
  // Status codes map to quality: the server cycles Good, UncertainLastUsableValue, Bad.
  REQUIRE(quality.size() >= 6);
  for (auto& [v, q] : quality) {
    INFO("Quality " << v);
    CHECK(q == (v % 3 == 0 ? quality::good : v % 3 == 1 ? quality::uncertain : quality::bad));
  }
}

TEST_CASE("opcua.source survives a server restart and subscribes again", "[e2e][opcua]") {
  temp_dir dir;
  opcua_server server{dir / "server"};
  write_file(dir / "flow.yaml", flow_text(server.url(), "    nodes: [Plant/Counter]\n"));
  auto fabrik = run_fabrik(dir);
  REQUIRE(wait_until([&] { return stored(dir).size() >= 10; }, std::chrono::seconds{60}));
  server.stop();
  REQUIRE(wait_until([&] { return logged(fabrik, "plc (opcua.source) degraded"); },
                     std::chrono::seconds{30}));
  auto restarted = now_ns();
  server.start(); // the same port; its Counter starts again from 1
  REQUIRE(wait_until(
    [&] {
      auto records = stored(dir);
      return std::count_if(records.begin(), records.end(),
                           [&](const record& r) { return r.time > restarted; })
             >= 10;
    },
    std::chrono::seconds{60}));
  CHECK(logged(fabrik, "sessions=2"));
  CHECK(fabrik.running());
  stop_cleanly(fabrik);
}

TEST_CASE("opcua.source reports a wrong endpoint in its status and keeps the engine running",
          "[e2e][opcua]") {
  temp_dir dir;
  auto port = free_port(); // nothing listens there
  write_file(dir / "flow.yaml", flow_text("opc.tcp://127.0.0.1:" + std::to_string(port) + "/fabrik",
                                          "    nodes: [Plant/Counter]\n"));
  auto fabrik = run_fabrik(dir);
  auto expected = "plc (opcua.source) degraded in=0 out=0 errors=0 queue=0 last_error=\"cannot "
                  "connect to 127.0.0.1:"
                  + std::to_string(port) + ": Connection refused\"";
  CHECK(wait_until([&] { return logged(fabrik, expected); }, std::chrono::seconds{30}));
  CHECK(fabrik.running());
  stop_cleanly(fabrik);
}

TEST_CASE("opcua.source logs in with an encrypted password and reports a wrong one",
          "[e2e][opcua]") {
  temp_dir dir;
  opcua_server server{dir / "server"};
  write_file(dir / "flow.yaml", flow_text(server.url(), "    nodes: [Plant/Counter]\n"
                                                        "    user: operator\n"
                                                        "    password: wrong\n"));
  auto fabrik = run_fabrik(dir, "wrong.log");
  CHECK(wait_until(
    [&] { return logged(fabrik, "last_error=\"ActivateSession refused by the server: Bad"); },
    std::chrono::seconds{30}));
  INFO(fabrik.log());
  CHECK_FALSE(logged(fabrik, "plc: subscribed"));
  CHECK_FALSE(logged(fabrik, "wrong\"")); // the password itself is never logged
  stop_cleanly(fabrik);
  CHECK(stored(dir).empty());

  // The right password: node-opcua asks for it encrypted with its certificate (RSA-OAEP).
  write_file(dir / "flow.yaml", flow_text(server.url(), "    nodes: [Plant/Counter]\n"
                                                        "    user: operator\n"
                                                        "    password: secret\n"));
  auto good = run_fabrik(dir, "right.log");
  CHECK(wait_until([&] { return stored(dir).size() >= 5; }, std::chrono::seconds{30}));
  INFO(good.log());
  stop_cleanly(good);
}

TEST_CASE("opcua.source names unknown nodes in its status and monitors the others",
          "[e2e][opcua]") {
  temp_dir dir;
  opcua_server server{dir / "server"};
  write_file(dir / "flow.yaml",
             flow_text(server.url(), "    nodes: [\"ns=1;s=Nope\", Plant/Counter, Plant/Gone]\n"));
  auto fabrik = run_fabrik(dir);
  CHECK(wait_until([&] { return stored(dir).size() >= 5; }, std::chrono::seconds{60}));
  INFO(fabrik.log());
  CHECK(wait_until(
    [&] {
      return logged(fabrik, "unknown_nodes=2")
             && logged(fabrik, "last_error=\"unknown node: browse path Plant/Gone (BadNoMatch)\"");
    },
    std::chrono::seconds{10}));
  CHECK(logged(fabrik, "plc: unknown node: ns=1;s=Nope (BadNodeIdUnknown)"));
  CHECK(logged(fabrik, "plc (opcua.source) degraded"));
  for (auto& r : stored(dir))
    CHECK(r.find("Counter"));
  stop_cleanly(fabrik);
}

namespace {

/// A server that speaks just enough OPC UA to get a client to a chosen malformed message:
/// connection k gets answer k % 6.
class malformed_server {
public:
  malformed_server() : port_(free_port()) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    thread_ = std::thread{[this] { serve(); }};
  }
  ~malformed_server() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

private:
  /// One whole message from the client, or "" when it went away.
  static std::string read_message(int fd) {
    std::string buf;
    char tmp[65536];
    while (true) {
      auto len = opcua::next_message_length(buf, 1 << 20);
      if (!len)
        return "";
      if (*len > 0 && buf.size() >= *len)
        return buf.substr(0, *len);
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0)
        return "";
      auto n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0)
        return "";
      buf.append(tmp, static_cast<size_t>(n));
    }
  }
  static void send_all(int fd, const std::string& bytes) {
    (void)::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  static std::string le32(uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i)
      s[i] = char((v >> (8 * i)) & 0xff);
    return s;
  }
  /// A chunk answering the client's chunk `asked` with `body` cut to `keep` bytes.
  static std::string answer(opcua::chunk_writer& w, const std::string& asked,
                            opcua::message_type type, const std::string& body, size_t keep) {
    auto chunk = opcua::decode_chunk(asked);
    REQUIRE(chunk);
    auto out = w.write(type, 7, 1, chunk->sequence.request_id, body.substr(0, keep));
    REQUIRE(out);
    return out->front();
  }

  void answer_connection(int c, int k) {
    if (read_message(c).empty()) // Hello
      return;
    auto ack = opcua::encode(opcua::acknowledge{});
    switch (k % 6) {
      case 0:
        send_all(c, "GARBAGE GARBAGE GARBAGE");
        return; // not OPC UA
      case 1:
        send_all(c, "ACKF" + le32(12) + le32(0));
        return; // truncated ACK
      case 2:
        send_all(c, "ACKF" + le32(0x7fffffff) + ack.substr(8));
        return; // 2 GiB
      case 3:
        return; // hangs up
      default:
        break;
    }
    send_all(c, ack);
    auto open = read_message(c);
    opcua::open_secure_channel_response res;
    res.token.channel_id = 7;
    res.token.token_id = 1;
    res.token.revised_lifetime = 600000;
    auto body = opcua::encode(res);
    opcua::chunk_writer w{65536};
    if (k % 6 == 4) { // an OpenSecureChannel response cut in half
      send_all(c, answer(w, open, opcua::message_type::open, body, body.size() / 2));
      return;
    }
    send_all(c, answer(w, open, opcua::message_type::open, body, body.size()));
    auto create = read_message(c); // CreateSession, answered with an OpenSecureChannel body
    send_all(c, answer(w, create, opcua::message_type::message, body, body.size()));
  }

  void serve() {
    int k = 0;
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0)
        continue;
      ++connections_;
      answer_connection(c, k++);
      std::this_thread::sleep_for(std::chrono::milliseconds{100});
      ::close(c);
    }
  }

  int port_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

} // namespace

TEST_CASE("malformed and truncated OPC UA server messages are refused without a crash",
          "[e2e][opcua]") {
  temp_dir dir;
  malformed_server server;
  write_file(dir / "flow.yaml",
             flow_text("opc.tcp://127.0.0.1:" + std::to_string(server.port()) + "/fabrik",
                       "    nodes: [Plant/Counter]\n"
                       "    timeout: 1s\n"));
  auto fabrik = run_fabrik(dir);
  // Each answer once, then again: the source keeps retrying and the engine keeps running.
  bool retried = wait_until([&] { return server.connections() >= 12; }, std::chrono::seconds{60});
  INFO(fabrik.log());
  REQUIRE(retried);
  CHECK(logged(fabrik, "plc: OPC UA unknown message type \"GAR\" at offset 0"));
  CHECK(logged(fabrik, "plc: OPC UA ACK receive buffer size: truncated UInt32"));
  CHECK(logged(fabrik, "plc: OPC UA message size 2147483647 exceeds the limit of 65536"));
  CHECK(logged(fabrik, "plc: the OPC UA server closed the connection"));
  CHECK(logged(fabrik, "plc: OPC UA OpenSecureChannelResponse server protocol version: truncated"));
  CHECK(logged(fabrik, "plc: OPC UA expected CreateSessionResponse"));
  CHECK(fabrik.running());
  stop_cleanly(fabrik);
  CHECK(stored(dir).empty());
}

TEST_CASE("the example flow: OPC UA boards are stored, train the PCB workflow and get "
          "predictions on MQTT",
          "[e2e][opcua][workflow]") {
  temp_dir dir;
  broker b{dir / "broker"};
  opcua_server server{dir / "server",
                      {"--boards", "/usr/bin/python3 "
                                     + (source_dir() / "bench/assets/pcb_publisher.py").string()
                                     + " --jsonl --rate 300 --seed 5"}};
  auto flow = read_file(source_dir() / "flows/examples/opcua-pcb.yaml");
  auto replace = [&](const std::string& from, const std::string& to) {
    auto at = flow.find(from);
    REQUIRE(at != std::string::npos);
    flow.replace(at, from.size(), to);
  };
  replace("opc.tcp://127.0.0.1:4840/fabrik", server.url());
  replace("tcp://127.0.0.1:1883", b.url());
  write_file(dir / "flow.yaml", flow);
  std::filesystem::create_directories(dir / "workflows");
  package("pcb-classifier", dir / "workflows" / "pcb-classifier.zip");
  subscriber predictions{b, {"#"}};
  auto fabrik = run_fabrik(dir);
  bool served = wait_until([&] { return logged(fabrik, "classifier: serving pcb-classifier"); },
                           std::chrono::seconds{120});
  INFO(fabrik.log());
  REQUIRE(served);
  REQUIRE(wait_until([&] { return predictions.count() >= 300; }, std::chrono::seconds{60}));
  stop_cleanly(fabrik);
  // Each prediction answers a stored board (by seq); most agree with its label.
  std::map<uint64_t, std::string> label;
  auto boards = stored_records(dir / "data" / "storage" / "store", "spi/values");
  for (auto& r : boards) {
    INFO("record seq " << r.seq << " of " << boards.size() << " at " << r.time);
    REQUIRE(r.fields.size() == 17); // 16 measurements and the label: whole boards
    label[r.seq] = std::get<std::string>(*r.find("label"));
  }
  size_t right = 0, answered = 0;
  for (auto& [topic, payload] : predictions.messages()) {
    auto j = nlohmann::json::parse(payload);
    auto seq = j.at("seq").get<uint64_t>();
    REQUIRE(label.count(seq));
    ++answered;
    right += j.at("prediction").get<std::string>() == label[seq];
  }
  INFO(right << " of " << answered);
  CHECK(answered >= 300);
  CHECK(double(right) / double(answered) > 0.8);
}

TEST_CASE("the client renews its secure channel before the token expires and keeps "
          "working",
          "[e2e][opcua]") {
  temp_dir dir;
  opcua_server server{dir / "server"};
  opcua::client_options o;
  o.endpoint_url = server.url();
  o.channel_lifetime_ms = 2000; // renewed after 1.5 s
  auto c = opcua::client::connect(o);
  REQUIRE(c);
  std::set<uint32_t> tokens{(*c)->token_id()};
  opcua::read_request read;
  read.nodes_to_read.push_back({});
  read.nodes_to_read.back().node = {1, std::string{"Counter"}};
  int64_t last = 0;
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds{7};
       std::chrono::steady_clock::now() < until;) {
    REQUIRE((*c)->renew_if_due());
    // A read also takes the renewal's answer when it comes first.
    auto res = (*c)->call(read, opcua::decode_read_response);
    if (!res)
      FAIL(res.err().message);
    REQUIRE(res->results.size() == 1);
    auto& v = res->results[0].value->value;
    REQUIRE(std::holds_alternative<int32_t>(v));
    CHECK(std::get<int32_t>(v) >= last); // the server's Counter, read again and again
    last = std::get<int32_t>(v);
    tokens.insert((*c)->token_id());
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
  }
  CHECK(tokens.size() >= 3); // issued, then renewed at least twice in 7 s
  (*c)->close();
}
