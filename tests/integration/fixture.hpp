#pragma once
// Real peers for integration tests: a mosquitto broker on a free loopback port, the
// fabrik binary as a child process, temporary directories. Every test starts what it
// needs and stops it.

#include "core/record.hpp"

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace fabrik::test {

/// A fresh directory under the build tree's temp area, removed by the destructor.
class temp_dir {
public:
  temp_dir();
  ~temp_dir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

int free_port();

/// A child process with its output going to a log file.
class process {
public:
  process() = default;
  process(std::vector<std::string> argv, std::filesystem::path log);
  process(process&& other) noexcept;
  process& operator=(process&& other) noexcept;
  ~process();
  int pid() const { return pid_; }
  bool running();
  void signal(int sig);
  /// Waits for exit; returns the exit code (128+signal if killed), -1 on timeout.
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds{30});
  std::string log() const;

private:
  int pid_ = -1;
  int status_ = -1;
  std::filesystem::path log_;
};

/// mosquitto on 127.0.0.1:PORT with persistence in its own directory. `listener_config`
/// lines go right after the listener line (TLS files, password_file, ...).
class broker {
public:
  explicit broker(const std::filesystem::path& dir, bool persistence = true,
                  std::string listener_config = "");
  ~broker();
  void start();
  void stop();
  int port() const { return port_; }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

private:
  std::filesystem::path dir_;
  int port_;
  bool persistence_;
  std::string listener_config_;
  process proc_;
};

/// Whether `p`'s log holds `text`.
bool logged(const process& p, const std::string& text);

/// Polls `pred` every 50 ms until it holds or `timeout` passes.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// Runs a command to completion; returns its exit code and fills `out` with stdout+stderr.
int run_command(const std::vector<std::string>& argv, std::string* out = nullptr);

/// Publishes each line of `lines` as one message with mosquitto_pub -l (fast).
void publish_lines(int port, const std::string& topic, const std::vector<std::string>& lines,
                   int qos = 1, bool retain = false);
/// `n` JSON messages {"i": from}, {"i": from + 1}, ...
std::vector<std::string> numbered_lines(int from, int n);

/// Path of the fabrik binary under test and of the source tree.
std::string fabrik_binary();
/// The drivers this build has (drivers/NAME folders whose driver is on).
std::vector<std::string> built_drivers();
/// The drivers (folders under drivers/) this build left out.
std::vector<std::string> unbuilt_drivers();
std::filesystem::path source_dir();

/// Writes `text` to `path`.
void write_file(const std::filesystem::path& path, const std::string& text);
std::string read_file(const std::filesystem::path& path);

/// Records stored for `stream` (0 while the store does not exist yet).
uint64_t stored_count(const std::filesystem::path& store_dir, const std::string& stream);
/// Every record of `stream`, oldest first (none while the store does not exist yet).
std::vector<record> stored_records(const std::filesystem::path& store_dir,
                                   const std::string& stream);

/// Whether something accepts TCP connections on 127.0.0.1:PORT.
bool port_open(int port);

/// The node-opcua test server (tests/opcua/server.mjs) on 127.0.0.1:PORT, its
/// certificates in `dir`; `args` are its options (--vars, --period, --boards).
class opcua_server {
public:
  explicit opcua_server(const std::filesystem::path& dir, std::vector<std::string> args = {});
  ~opcua_server();
  void start(); ///< again after stop(), on the same port
  void stop(); ///< SIGKILL: the server vanishes without closing sessions
  int port() const { return port_; }
  std::string url() const { return "opc.tcp://127.0.0.1:" + std::to_string(port_) + "/fabrik"; }
  std::string log() const { return proc_.log(); }

private:
  std::filesystem::path dir_;
  int port_;
  std::vector<std::string> args_;
  int starts_ = 0;
  process proc_;
};

/// The newest value of `key=N` in fabrik's status lines (`--status-interval`) for `actor`.
uint64_t status_value(const std::string& log, const std::string& actor, const std::string& key);

/// aravis's fake GigE Vision camera (`arv-fake-gv-camera-0.8 -i 127.0.0.1`, device id
/// Aravis-Fake-GV01). It always listens on 127.0.0.1:3956 (GVCP has no port option), so
/// only one runs at a time: start() fails the test when that port is taken.
class fake_camera {
public:
  static constexpr const char* id = "Aravis-Fake-GV01";
  explicit fake_camera(const std::filesystem::path& dir);
  ~fake_camera();
  /// Starts it and waits until it listens.
  void start();
  void stop();

private:
  std::filesystem::path dir_;
  int starts_ = 0;
  process proc_;
};

} // namespace fabrik::test

namespace fabrik::test {
/// Publishes `payload` (any bytes) as one message with mosquitto_pub -s.
void publish_bytes(int port, const std::string& topic, const std::string& payload, int qos = 1);
} // namespace fabrik::test

namespace fabrik::mqtt {
class client;
}

namespace fabrik::test {
/// A subscriber on our own MQTT client, collecting (topic, payload) pairs; connected and
/// subscribed when the constructor returns.
class subscriber {
public:
  subscriber(const broker& b, std::vector<std::string> topics);
  ~subscriber();
  size_t count();
  std::vector<std::pair<std::string, std::string>> messages();
  /// True when some payload contains `text`.
  bool saw(const std::string& text);

private:
  std::unique_ptr<mqtt::client> cli_;
  std::mutex mtx_;
  std::vector<std::pair<std::string, std::string>> got_;
  std::atomic<bool> up_{false};
};

/// How many of `sub`'s messages (JSON objects with a "seq", such as predictions) answer
/// each seq >= first.
std::map<int64_t, int> answers_per_seq(subscriber& sub, int64_t first);
/// The set of a field's values in the messages answering seq >= first.
std::set<std::string> values_of(subscriber& sub, const std::string& key, int64_t first);
/// Waits until seqs first..first+n-1 are answered, gives a late double `pause` to show,
/// then checks that each of the n seqs was answered exactly once.
void check_answered_once(subscriber& sub, int64_t first, size_t n,
                         std::chrono::milliseconds pause = std::chrono::milliseconds{500});
} // namespace fabrik::test

namespace fabrik::test {
// -- the PCB line, shared by the workflow and web API tests ----------------------------

/// Runs a virtual asset of bench/assets (pcb_publisher.py, imu_publisher.py): `count`
/// messages as fast as the broker takes them.
void publish_asset(const std::string& script, int port, int count, int seed, int start_seq);
inline void publish_boards(int port, int count, int seed, int start_seq) {
  publish_asset("pcb_publisher.py", port, count, seed, start_seq);
}
/// The PCB line live: `count` boards at `rate` per second from a background process that
/// logs to `log`.
process start_boards(int port, int count, int rate, int seed, int start_seq,
                     const std::filesystem::path& log);

/// `fabrik package examples/EXAMPLE -o ZIP`; with `version`, the same sources under that
/// version string instead of the manifest's (a second version of one package).
void package(const std::string& example, const std::filesystem::path& zip,
             const std::string& version = "");

/// A flow `workflow-test` of source `src` (simatic-v1) -> storage `store`, src -> workflow
/// `model` -> JSON sink `out` on `predictions/{stream}`. `workflow` holds the model's
/// settings lines (indented 4); `top` goes before the brokers (an http section, nodes, ...);
/// `on` places actors on nodes (actor -> node).
std::string pcb_flow_text(const broker& b, const std::string& workflow, const std::string& top = "",
                          const std::map<std::string, std::string>& on = {});

/// The nodes of a split flow on loopback, each with a free listen and web UI port.
struct loopback_nodes {
  std::vector<std::string> names;
  std::map<std::string, int> listen, http;
  explicit loopback_nodes(std::vector<std::string> node_names);
  /// The flow's `nodes:` section; `extra` adds settings to a node (`address: "..."`).
  std::string section(const std::map<std::string, std::string>& extra = {}) const;
};
} // namespace fabrik::test

namespace fabrik::test {
// -- nodes of a split flow, and distance between them ---------------------------------

/// `fabrik run DIR/flow.yaml --node NODE` with its state in DIR/NODE and a status line
/// per second, its output in DIR/LOG.
process start_node(const temp_dir& dir, const std::string& node, const std::string& log);

/// Stops each node with SIGTERM and checks that it exits cleanly.
void stop_nodes(std::initializer_list<process*> nodes);

/// GET /api/nodes of the node whose web UI is on 127.0.0.1:`http_port`, with the token
/// in its data directory; fails the test unless it answers 200.
nlohmann::json api_nodes(int http_port, const std::filesystem::path& data_dir);
/// In such a view, node `node`'s link to the actor `actor` (null when it lists none).
nlohmann::json link_in_view(const nlohmann::json& view, const std::string& node,
                            const std::string& actor);

/// The project's delay proxy (tests/tools/delay_proxy.py) on a free 127.0.0.1 port,
/// forwarding to 127.0.0.1:`target` with `delay_ms` each way: distance between two nodes
/// on one machine (the kernels here have no netem). Point the far node's `address` at
/// port(), its `listen` at `target`.
class delay_proxy {
public:
  delay_proxy(const std::filesystem::path& dir, int target, int delay_ms);
  ~delay_proxy();
  int port() const { return port_; }
  /// Closes the proxy's connections and refuses new ones until restore(): a broken wire
  /// while both nodes run. Returns once the proxy has done it.
  void cut();
  /// Keeps every connection open, old and new, but lets no byte through until restore():
  /// a silent cut, which only a timeout can notice.
  void silence();
  void restore();
  std::string log() const { return proc_.log(); }

private:
  /// Signals the proxy and waits until its log holds `line` one more time.
  void command(int sig, const std::string& line);

  int port_;
  process proc_;
};
} // namespace fabrik::test
