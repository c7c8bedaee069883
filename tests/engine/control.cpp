// The control socket: JSON lines over a Unix socket only its owner may use.

#include "engine/control.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <thread>

using namespace fabrik;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using test_support::scratch_dir;

/// Where the tests put the socket.
fs::path sock(const scratch_dir& d) { return d / "control.sock"; }

json echo(const json& request) { return json{{"echo", request}}; }

std::unique_ptr<control_server> serve(const fs::path& path, control_server::handler h = echo) {
  auto s = control_server::start(path, std::move(h));
  if (!s)
    FAIL("cannot start the control server: " << s.err().what());
  return std::move(*s);
}

/// A client that speaks raw lines, for what control_request does not do (several requests
/// on one connection, bytes that are not JSON). Short paths only.
struct raw_client {
  int fd = -1;
  std::string buf;

  explicit raw_client(const fs::path& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.string().size() < sizeof addr.sun_path);
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~raw_client() { ::close(fd); }

  void send(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      auto n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0)
        return; // the server hung up; the test checks what it replied
      done += static_cast<size_t>(n);
    }
  }
  /// The next line, or "<eof>" / "<timeout>".
  std::string line(std::chrono::milliseconds limit = 5s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (auto nl = buf.find('\n'); nl != std::string::npos) {
        auto out = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        return out;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        return "<timeout>";
      char chunk[4096];
      auto n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0)
        return "<eof>";
      buf.append(chunk, static_cast<size_t>(n));
    }
  }
  json reply() { return json::parse(line()); }
};

} // namespace

TEST_CASE("a request gets its reply", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  auto r = control_request(sock(d), json{{"op", "train"}, {"actor", "a"}}, 5s);
  REQUIRE(r);
  CHECK(*r == json{{"echo", {{"op", "train"}, {"actor", "a"}}}});
}

TEST_CASE("one connection carries several requests", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  raw_client c{sock(d)};
  c.send("{\"n\":1}\n{\"n\":2}\r\n\n{\"n\"");
  CHECK(c.reply() == json{{"echo", {{"n", 1}}}});
  CHECK(c.reply() == json{{"echo", {{"n", 2}}}});
  c.send(":3}\n"); // a request split over two writes
  CHECK(c.reply() == json{{"echo", {{"n", 3}}}});
}

TEST_CASE("malformed requests get an error and the connection goes on", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  raw_client c{sock(d)};
  c.send("not json\n[1,2]\n{\"ok\":true}\n");
  auto bad = c.reply();
  CHECK(bad.at("error").get<std::string>().starts_with("malformed request: "));
  CHECK(c.reply() == json{{"error", "a request must be a JSON object"}});
  CHECK(c.reply() == json{{"echo", {{"ok", true}}}});
}

TEST_CASE("a line over 1 MiB gets an error and the connection is closed", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  raw_client c{sock(d)};
  c.send("{\"x\":\"" + std::string((1 << 20) + 100, 'a') + "\"}\n");
  CHECK(c.reply() == json{{"error", "request line over 1 MiB"}});
  CHECK(c.line() == "<eof>");
  // The server itself goes on.
  auto r = control_request(sock(d), json{{"n", 1}}, 5s);
  REQUIRE(r);
}

TEST_CASE("a handler that throws gets its message back", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d), [](const json& request) -> json {
    throw std::runtime_error{"no actor " + request.value("actor", std::string{})};
  });
  auto r = control_request(sock(d), json{{"actor", "nope"}}, 5s);
  REQUIRE(r);
  CHECK(*r == json{{"error", "no actor nope"}});
}

TEST_CASE("socket paths longer than sun_path work", "[control]") {
  scratch_dir d{"control"};
  auto dir = d.path() / std::string(60, 'a') / std::string(60, 'b');
  fs::create_directories(dir);
  auto path = dir / "control.sock";
  REQUIRE(path.string().size() > 108);
  auto s = serve(path);
  CHECK(fs::is_socket(path));
  auto r = control_request(path, json{{"long", true}}, 5s);
  REQUIRE(r);
  CHECK(*r == json{{"echo", {{"long", true}}}});
  s.reset();
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("only the owner may use the socket", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  struct stat st {};
  REQUIRE(::stat(sock(d).c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("a stale socket file is replaced", "[control]") {
  scratch_dir d{"control"};
  { // a dead engine's socket: bound, then closed without unlinking
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, sock(d).c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(fd);
  }
  REQUIRE(fs::is_socket(sock(d)));
  auto s = serve(sock(d));
  auto r = control_request(sock(d), json{{"n", 1}}, 5s);
  REQUIRE(r);

  SECTION("but not a live one") {
    auto second = control_server::start(sock(d), echo);
    REQUIRE_FALSE(second);
    CHECK(second.err().code == ec::io_error);
    CHECK(control_request(sock(d), json{{"n", 2}}, 5s)); // the first still serves
  }
}

TEST_CASE("with no server the request is unavailable", "[control]") {
  scratch_dir d{"control"};
  auto r = control_request(sock(d), json{{"op", "train"}}, 1s);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::unavailable);
  CHECK(r.err().message == "no engine is running on " + d.path().string());

  SECTION("nor a data directory") {
    auto missing = d.path() / "missing" / "control.sock";
    auto r2 = control_request(missing, json{{"op", "train"}}, 1s);
    REQUIRE_FALSE(r2);
    CHECK(r2.err().code == ec::unavailable);
    CHECK(r2.err().message == "no engine is running on " + (d.path() / "missing").string());
  }
}

TEST_CASE("a reply slower than the timeout is a timeout", "[control]") {
  scratch_dir d{"control"};
  std::mutex m;
  std::condition_variable cv;
  bool release = false;
  auto s = serve(sock(d), [&](const json&) {
    std::unique_lock<std::mutex> g{m};
    cv.wait_for(g, 10s, [&] { return release; });
    return json{{"late", true}};
  });
  auto r = control_request(sock(d), json{{"op", "slow"}}, 200ms);
  {
    std::lock_guard<std::mutex> g{m};
    release = true;
  }
  cv.notify_all();
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::timeout);
}

TEST_CASE("more than 16 connections at once are refused", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  std::vector<std::unique_ptr<raw_client>> clients;
  for (int i = 0; i < 16; ++i) {
    clients.push_back(std::make_unique<raw_client>(sock(d)));
    clients.back()->send("{}\n");
    REQUIRE(clients.back()->reply() == json{{"echo", json::object()}});
  }
  raw_client extra{sock(d)};
  CHECK(extra.reply() == json{{"error", "too many control connections"}});
  CHECK(extra.line() == "<eof>");
  clients.pop_back(); // a free place, once the server notices
  auto deadline = std::chrono::steady_clock::now() + 5s;
  expected<json> r = make_error(ec::internal, "not tried");
  while (std::chrono::steady_clock::now() < deadline) {
    r = control_request(sock(d), json{{"n", 17}}, 5s);
    if (r && !r->contains("error"))
      break;
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(r);
  CHECK(*r == json{{"echo", {{"n", 17}}}});
}

TEST_CASE("the destructor closes connections and removes the socket file", "[control]") {
  scratch_dir d{"control"};
  auto s = serve(sock(d));
  raw_client c{sock(d)};
  c.send("{}\n");
  REQUIRE(c.reply() == json{{"echo", json::object()}});
  auto before = std::chrono::steady_clock::now();
  s.reset();
  CHECK(std::chrono::steady_clock::now() - before < 2s);
  CHECK_FALSE(fs::exists(sock(d)));
  CHECK(c.line() == "<eof>");
}
