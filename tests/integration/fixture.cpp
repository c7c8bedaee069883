#include "tests/integration/fixture.hpp"

#include "core/store.hpp"
#include "drivers/mqtt/client.hpp"

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <random>
#include <set>
#include <sstream>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fabrik::test {

temp_dir::temp_dir() {
  static std::mt19937_64 rng{std::random_device{}()};
  auto base = std::filesystem::temp_directory_path() / "fabrik-tests";
  std::filesystem::create_directories(base);
  path_ = base / ("t" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000000));
  std::filesystem::create_directories(path_);
}

temp_dir::~temp_dir() {
  std::error_code err;
  std::filesystem::remove_all(path_, err);
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

process::process(std::vector<std::string> argv, std::filesystem::path log) : log_(std::move(log)) {
  const pid_t test = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // A test that aborts (a crash, Catch2 giving up) runs no destructor: its nodes and
    // brokers must not outlive it and hold ports and CPU for the next tests.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != test)
      ::_exit(127);
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::setpgid(0, 0);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::perror("exec");
    ::_exit(127);
  }
}

process::process(process&& other) noexcept { *this = std::move(other); }

process& process::operator=(process&& other) noexcept {
  std::swap(pid_, other.pid_);
  std::swap(status_, other.status_);
  std::swap(log_, other.log_);
  return *this;
}

process::~process() {
  if (pid_ > 0 && running()) {
    signal(SIGKILL);
    wait();
  }
}

bool process::running() {
  if (pid_ <= 0 || status_ != -1)
    return false;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

void process::signal(int sig) {
  if (pid_ > 0 && status_ == -1)
    ::kill(pid_, sig);
}

int process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline)
      return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

std::string process::log() const { return read_file(log_); }

broker::broker(const std::filesystem::path& dir, bool persistence, std::string listener_config)
  : dir_(dir), port_(free_port()), persistence_(persistence),
    listener_config_(std::move(listener_config)) {
  std::filesystem::create_directories(dir_);
  start();
}

broker::~broker() { stop(); }

void broker::start() {
  std::ostringstream conf;
  conf << "listener " << port_ << " 127.0.0.1\n"
       << listener_config_
       << (listener_config_.find("allow_anonymous") == std::string::npos ? "allow_anonymous true\n"
                                                                         : "")
       << "set_tcp_nodelay true\n"
       << "max_queued_messages 0\n"
       << "max_inflight_messages 100\n"
       << "persistence " << (persistence_ ? "true" : "false") << "\n"
       << "persistence_location " << dir_.string() << "/\n"
       << "autosave_interval 1\n";
  if (::getuid() == 0)
    conf << "user root\n";
  write_file(dir_ / "mosquitto.conf", conf.str());
  proc_ = process({"mosquitto", "-c", (dir_ / "mosquitto.conf").string()}, dir_ / "mosquitto.log");
  // Ready when the port accepts connections.
  bool up = wait_until([&] { return port_open(port_); }, std::chrono::seconds{10});
  if (!up)
    FAIL("mosquitto did not start: " << read_file(dir_ / "mosquitto.log"));
}

void broker::stop() {
  if (proc_.running()) {
    proc_.signal(SIGTERM);
    if (proc_.wait(std::chrono::seconds{10}) == -1) {
      proc_.signal(SIGKILL);
      proc_.wait();
    }
  }
}

bool logged(const process& p, const std::string& text) {
  return p.log().find(text) != std::string::npos;
}

std::map<int64_t, int> answers_per_seq(subscriber& sub, int64_t first) {
  std::map<int64_t, int> out;
  for (auto& [topic, payload] : sub.messages())
    if (auto seq = nlohmann::json::parse(payload).at("seq").get<int64_t>(); seq >= first)
      ++out[seq];
  return out;
}

std::set<std::string> values_of(subscriber& sub, const std::string& key, int64_t first) {
  std::set<std::string> out;
  for (auto& [topic, payload] : sub.messages()) {
    auto j = nlohmann::json::parse(payload);
    if (j.at("seq").get<int64_t>() >= first)
      out.insert(j.at(key).get<std::string>());
  }
  return out;
}

void check_answered_once(subscriber& sub, int64_t first, size_t n,
                         std::chrono::milliseconds pause) {
  REQUIRE(wait_until([&] { return answers_per_seq(sub, first).size() >= n; }));
  std::this_thread::sleep_for(pause); // a late double would show now
  auto answers = answers_per_seq(sub, first);
  CHECK(answers.size() == n);
  CHECK(std::all_of(answers.begin(), answers.end(), [](auto& a) { return a.second == 1; }));
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int run_command(const std::vector<std::string>& argv, std::string* out) {
  temp_dir tmp;
  process p{argv, tmp / "out.log"};
  int rc = p.wait(std::chrono::minutes{5});
  if (out)
    *out = p.log();
  return rc;
}

std::vector<std::string> numbered_lines(int from, int n) {
  std::vector<std::string> lines;
  for (int i = from; i < from + n; ++i)
    lines.push_back("{\"i\": " + std::to_string(i) + "}");
  return lines;
}

void publish_lines(int port, const std::string& topic, const std::vector<std::string>& lines,
                   int qos, bool retain) {
  temp_dir tmp;
  std::string all;
  for (auto& l : lines)
    all += l + "\n";
  write_file(tmp / "in.txt", all);
  std::string cmd = "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(port) + " -q "
                    + std::to_string(qos) + (retain ? " -r" : "") + " -t '" + topic + "' -l < "
                    + (tmp / "in.txt").string() + " 2>&1";
  int rc = std::system(cmd.c_str());
  REQUIRE(rc == 0);
}

std::string fabrik_binary() { return FABRIK_BINARY; }

std::vector<std::string> built_drivers() {
  std::vector<std::string> out;
  std::string list = FABRIK_DRIVERS;
  for (size_t pos = 0; pos < list.size();) {
    auto end = list.find(',', pos);
    out.push_back(list.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    pos = end == std::string::npos ? list.size() : end + 1;
  }
  return out;
}

std::vector<std::string> unbuilt_drivers() {
  auto built = built_drivers();
  std::vector<std::string> out;
  for (auto& entry : std::filesystem::directory_iterator(source_dir() / "drivers"))
    if (auto d = entry.path().filename().string();
        std::filesystem::exists(entry.path() / "CMakeLists.txt")
        && std::find(built.begin(), built.end(), d) == built.end())
      out.push_back(d);
  return out;
}
std::filesystem::path source_dir() { return FABRIK_SOURCE_DIR; }

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out{path, std::ios::binary};
  out << text;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<record> stored_records(const std::filesystem::path& store_dir,
                                   const std::string& stream) {
  std::vector<record> out;
  if (!std::filesystem::exists(store_dir / "data.mdb"))
    return out;
  store_options opts;
  opts.dir = store_dir;
  opts.read_only = true;
  auto db = store::open(opts);
  if (!db)
    return out;
  scan_range range;
  range.stream = stream;
  (void)db->scan(range, [&](record&& r) {
    out.push_back(std::move(r));
    return true;
  });
  return out;
}

bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

opcua_server::opcua_server(const std::filesystem::path& dir, std::vector<std::string> args)
  : dir_(dir), port_(free_port()), args_(std::move(args)) {
  std::filesystem::create_directories(dir_);
  start();
}

opcua_server::~opcua_server() { stop(); }

void opcua_server::start() {
  // node-opcua writes its certificates under XDG_CONFIG_HOME: keep them in the test's dir.
  std::vector<std::string> argv{"env",    "XDG_CONFIG_HOME=" + (dir_ / "config").string(),
                                "node",   (source_dir() / "tests/opcua/server.mjs").string(),
                                "--port", std::to_string(port_)};
  argv.insert(argv.end(), args_.begin(), args_.end());
  proc_ = process(argv, dir_ / ("server" + std::to_string(++starts_) + ".log"));
  if (!wait_until([&] { return proc_.log().find("ready ") != std::string::npos; },
                  std::chrono::seconds{60}))
    FAIL("the OPC UA test server did not start: " << proc_.log());
}

void opcua_server::stop() {
  if (proc_.running()) {
    proc_.signal(SIGKILL); // like a crash or a power cut: no goodbye to clients
    proc_.wait();
  }
}

uint64_t stored_count(const std::filesystem::path& store_dir, const std::string& stream) {
  if (!std::filesystem::exists(store_dir / "data.mdb"))
    return 0;
  store_options opts;
  opts.dir = store_dir;
  opts.read_only = true;
  auto db = store::open(opts);
  if (!db)
    return 0;
  auto streams = db->streams();
  if (!streams)
    return 0;
  for (auto& s : *streams)
    if (s.name == stream)
      return s.count;
  return 0;
}

uint64_t status_value(const std::string& log, const std::string& actor, const std::string& key) {
  uint64_t value = 0;
  size_t pos = 0;
  while ((pos = log.find("status " + actor + " ", pos)) != std::string::npos) {
    auto eol = log.find('\n', pos);
    auto line = log.substr(pos, eol - pos);
    auto k = line.find(" " + key + "=");
    if (k != std::string::npos)
      value = std::stoull(line.substr(k + key.size() + 2));
    pos = eol;
  }
  return value;
}

namespace {
/// True when UDP 127.0.0.1:`port` can be bound, i.e. nobody listens there.
bool udp_port_free(int port) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0)
    return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}
constexpr int gvcp_port = 3956;
} // namespace

fake_camera::fake_camera(const std::filesystem::path& dir) : dir_(dir) { start(); }
fake_camera::~fake_camera() { stop(); }

void fake_camera::start() {
  INFO("another fake GigE Vision camera listens on 127.0.0.1:3956: stop it first");
  REQUIRE(wait_until([] { return udp_port_free(gvcp_port); }, std::chrono::seconds{10}));
  proc_ = process({"arv-fake-gv-camera-0.8", "-i", "127.0.0.1"},
                  dir_ / ("camera" + std::to_string(++starts_) + ".log"));
  INFO(proc_.log());
  REQUIRE(wait_until([&] { return !udp_port_free(gvcp_port) || !proc_.running(); },
                     std::chrono::seconds{10}));
  REQUIRE(proc_.running());
}

void fake_camera::stop() {
  if (!proc_.running())
    return;
  proc_.signal(SIGTERM);
  if (proc_.wait(std::chrono::seconds{5}) < 0) {
    proc_.signal(SIGKILL);
    proc_.wait();
  }
}

} // namespace fabrik::test

namespace fabrik::test {
void publish_bytes(int port, const std::string& topic, const std::string& payload, int qos) {
  temp_dir tmp;
  write_file(tmp / "payload.bin", payload);
  std::string cmd = "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(port) + " -q "
                    + std::to_string(qos) + " -t '" + topic + "' -s < "
                    + (tmp / "payload.bin").string() + " 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
}
} // namespace fabrik::test

namespace fabrik::test {
subscriber::subscriber(const broker& b, std::vector<std::string> topics) {
  static std::atomic<int> n{0};
  mqtt::client_options o;
  o.url = b.url();
  o.client_id = "test-subscriber-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
  o.clean_session = true;
  auto c = mqtt::client::make(o);
  REQUIRE(c);
  cli_ = std::move(*c);
  cli_->subscriptions(std::move(topics), 1);
  cli_->on_message([this](std::string_view t, std::string_view p) {
    std::lock_guard guard{mtx_};
    got_.emplace_back(std::string{t}, std::string{p});
  });
  cli_->on_state([this](bool connected, const std::string&) { up_ = connected; });
  REQUIRE(cli_->connect());
  REQUIRE(wait_until([&] { return up_.load(); }, std::chrono::seconds{10}));
}

subscriber::~subscriber() = default;

size_t subscriber::count() {
  std::lock_guard guard{mtx_};
  return got_.size();
}

std::vector<std::pair<std::string, std::string>> subscriber::messages() {
  std::lock_guard guard{mtx_};
  return got_;
}

bool subscriber::saw(const std::string& text) {
  std::lock_guard guard{mtx_};
  for (auto& [t, p] : got_)
    if (p.find(text) != std::string::npos)
      return true;
  return false;
}
} // namespace fabrik::test

namespace fabrik::test {

namespace {
/// The command line of a virtual asset of bench/assets; rate 0: as fast as the broker takes.
std::vector<std::string> asset_command(const std::string& script, int port, int count, int rate,
                                       int seed, int start_seq) {
  return {"/usr/bin/python3",
          (source_dir() / "bench" / "assets" / script).string(),
          "--port",
          std::to_string(port),
          "--count",
          std::to_string(count),
          "--rate",
          std::to_string(rate),
          "-q",
          "--seed",
          std::to_string(seed),
          "--start-seq",
          std::to_string(start_seq)};
}
} // namespace

void publish_asset(const std::string& script, int port, int count, int seed, int start_seq) {
  std::string out;
  int rc = run_command(asset_command(script, port, count, 0, seed, start_seq), &out);
  INFO(out);
  REQUIRE(rc == 0);
}

process start_boards(int port, int count, int rate, int seed, int start_seq,
                     const std::filesystem::path& log) {
  return process{asset_command("pcb_publisher.py", port, count, rate, seed, start_seq), log};
}

void package(const std::string& example, const std::filesystem::path& zip,
             const std::string& version) {
  auto src = source_dir() / "examples" / example;
  if (!version.empty()) {
    auto copy = zip;
    copy.replace_extension(".src");
    std::filesystem::copy(src, copy, std::filesystem::copy_options::recursive);
    auto manifest = read_file(copy / "fabrik-workflow.yaml");
    auto at = manifest.find("\nversion: ");
    REQUIRE(at != std::string::npos);
    auto end = manifest.find('\n', at + 1);
    manifest.replace(at, end - at, "\nversion: \"" + version + "\"");
    write_file(copy / "fabrik-workflow.yaml", manifest);
    src = copy;
  }
  std::string out;
  int rc = run_command({fabrik_binary(), "package", src.string(), "-o", zip.string()}, &out);
  INFO(out);
  REQUIRE(rc == 0);
}

std::string pcb_flow_text(const broker& b, const std::string& workflow, const std::string& top,
                          const std::map<std::string, std::string>& on) {
  auto at = [&](const std::string& actor) {
    auto it = on.find(actor);
    return it == on.end() ? std::string{} : "    on: " + it->second + "\n";
  };
  return "name: workflow-test\n" + top
         + "brokers:\n"
           "  local: {url: \""
         + b.url()
         + "\"}\n"
           "actors:\n"
           "  src:\n"
           "    kind: mqtt.source\n"
           "    broker: local\n"
           "    topics: [\"ie/m/j/simatic/v1/+/dp\", \"ie/d/j/simatic/v1/+/dp/r/#\"]\n"
           "    format: simatic-v1\n"
         + at("src")
         + "  store:\n"
           "    kind: storage\n"
         + at("store")
         + "  model:\n"
           "    kind: workflow\n"
         + workflow + at("model")
         + "  out:\n"
           "    kind: mqtt.sink\n"
           "    broker: local\n"
           "    topic: \"predictions/{stream}\"\n"
         + at("out")
         + "wires:\n"
           "  - src -> store\n"
           "  - src -> model\n"
           "  - model -> out\n";
}

loopback_nodes::loopback_nodes(std::vector<std::string> node_names) : names(std::move(node_names)) {
  for (auto& n : names) {
    listen[n] = free_port();
    http[n] = free_port();
  }
}

std::string loopback_nodes::section(const std::map<std::string, std::string>& extra) const {
  std::string out = "nodes:\n";
  for (auto& n : names) {
    auto more = extra.find(n);
    out += "  " + n + ": {listen: \"127.0.0.1:" + std::to_string(listen.at(n))
           + "\", http: \"127.0.0.1:" + std::to_string(http.at(n)) + "\""
           + (more == extra.end() ? "" : ", " + more->second) + "}\n";
  }
  return out;
}

} // namespace fabrik::test

namespace fabrik::test {

process start_node(const temp_dir& dir, const std::string& node, const std::string& log) {
  return process{{fabrik_binary(), "run", (dir / "flow.yaml").string(), "--node", node,
                  "--data-dir", (dir / node).string(), "--status-interval", "1s"},
                 dir / log};
}

void stop_nodes(std::initializer_list<process*> nodes) {
  for (auto* p : nodes) {
    p->signal(SIGTERM);
    int rc = p->wait();
    INFO(p->log());
    CHECK(rc == 0);
  }
}

nlohmann::json api_nodes(int http_port, const std::filesystem::path& data_dir) {
  auto token = read_file(data_dir / "http-token");
  token.erase(token.find_last_not_of('\n') + 1);
  httplib::Client c{"127.0.0.1", http_port};
  c.set_read_timeout(20, 0); // a node asks the others, up to 3 s each
  auto res = c.Get("/api/nodes", {{"Authorization", "Bearer " + token}});
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 200);
  return nlohmann::json::parse(res->body);
}

nlohmann::json link_in_view(const nlohmann::json& view, const std::string& node,
                            const std::string& actor) {
  for (auto& n : view.at("nodes"))
    if (n.at("name") == node)
      for (auto& l : n.at("links"))
        if (l.at("details").at("actor") == actor)
          return l;
  return nullptr;
}

delay_proxy::delay_proxy(const std::filesystem::path& dir, int target, int delay_ms)
  : port_(free_port()) {
  std::filesystem::create_directories(dir);
  auto script = source_dir() / "tests" / "tools" / "delay_proxy.py";
  proc_ = process({"/usr/bin/python3", script.string(), "--port", std::to_string(port_), "--target",
                   std::to_string(target), "--delay-ms", std::to_string(delay_ms)},
                  dir / "delay_proxy.log");
  if (!wait_until([&] { return logged(proc_, "delay_proxy: listening on") || !proc_.running(); },
                  std::chrono::seconds{10})
      || !proc_.running())
    FAIL("the delay proxy did not start: " << proc_.log());
}

delay_proxy::~delay_proxy() {
  proc_.signal(SIGTERM);
  proc_.wait(std::chrono::seconds{5}); // else the process's destructor kills it
}

void delay_proxy::cut() { command(SIGUSR1, "delay_proxy: link cut"); }
void delay_proxy::silence() { command(SIGHUP, "delay_proxy: link silenced"); }
void delay_proxy::restore() { command(SIGUSR2, "delay_proxy: link restored"); }

void delay_proxy::command(int sig, const std::string& line) {
  auto times = [&] {
    auto text = proc_.log();
    size_t n = 0;
    for (auto at = text.find(line); at != std::string::npos; at = text.find(line, at + 1))
      ++n;
    return n;
  };
  auto before = times();
  proc_.signal(sig);
  INFO(proc_.log());
  REQUIRE(wait_until([&] { return times() > before; }, std::chrono::seconds{10}));
}

} // namespace fabrik::test
