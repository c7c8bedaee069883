#include "actors/engine.hpp"

#include "actors/actors.hpp"
#include "actors/control.hpp"
#include "actors/engine_api.hpp"
#include "actors/graph.hpp"
#include "actors/http.hpp"
#include "actors/telemetry.hpp"
#include "actors/workflow_hub.hpp"
#include "runtime/registry.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <thread>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace fabrik {
namespace {

/// One `fabrik run` per data directory: two would fight over spools and sessions.
class data_dir_lock {
public:
  expected<void> acquire(const std::filesystem::path& dir) {
    std::error_code err;
    std::filesystem::create_directories(dir, err);
    if (err)
      return make_error(ec::io_error, "cannot create data directory " + dir.string() + ": "
                                        + err.message());
    auto path = dir / "fabrik.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return make_error(ec::io_error, "cannot open " + path.string());
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0)
      return make_error(ec::unavailable, "data directory " + dir.string()
                                           + " is in use by another fabrik run");
    return {};
  }
  ~data_dir_lock() {
    if (fd_ >= 0)
      ::close(fd_);
  }

private:
  int fd_ = -1;
};

void log_status(caf::actor_system& sys, const std::vector<running_actor>& actors,
                const workflow_hub* hub) {
  if (hub)
    spdlog::info("status {}", hub->status().to_line());
  caf::scoped_actor self{sys};
  for (auto& a : actors) {
    self->request(caf::actor_cast<status_client>(a.handle), std::chrono::seconds{2},
                  status_atom::value)
      .receive([](const actor_status& st) { spdlog::info("status {}", st.to_line()); },
               [&](const caf::error& err) {
                 spdlog::warn("status {}: no answer ({})", a.name, caf::to_string(err));
               });
  }
}

void stop(caf::actor_system& sys, const std::vector<running_actor>& actors,
          const workflow_hub* hub) {
  caf::scoped_actor self{sys};
  // Sources first: they stop taking input and wait until downstream acknowledged all.
  for (auto& a : actors) {
    if (a.k->role != kind_role::source)
      continue;
    self->request(caf::actor_cast<source_actor>(a.handle), std::chrono::seconds{15},
                  stop_atom::value)
      .receive([](bool) {},
               [&](const caf::error& err) {
                 spdlog::warn("{}: did not stop cleanly ({})", a.name, caf::to_string(err));
               });
  }
  log_status(sys, actors, hub);
  for (auto& a : actors)
    self->send_exit(a.handle, caf::exit_reason::user_shutdown);
}

/// The web UI and API, when the flow or --http asks for it; the engine runs on without
/// it when the address is taken (the log says so).
std::unique_ptr<http_server> start_http(const flow& f, const run_options& opts, engine_api& api,
                                        std::shared_ptr<telemetry> tel) {
  auto& c = f.sections.at("http").at("");
  auto listen = opts.http.value_or(c.str("listen"));
  if (listen == "off")
    return nullptr;
  auto addr = parse_listen(listen);
  if (!addr) {
    spdlog::error("http: {}; no web UI", addr.err().message);
    return nullptr;
  }
  http_options o;
  o.host = addr->first;
  o.port = addr->second;
  o.public_status = c.boolean("public_status");
  o.max_upload = static_cast<uint64_t>(c.integer("max_upload"));
  o.static_dir = default_static_dir();
  bool made = false;
  if (c.has("token")) {
    o.token = c.str("token");
  } else if (auto t = data_dir_token(opts.data_dir, made)) {
    o.token = *t;
  } else {
    spdlog::error("http: {}; no web UI", t.err().message);
    return nullptr;
  }
  auto token = o.token;
  auto server = http_server::start(std::move(o), api, std::move(tel));
  if (!server) {
    spdlog::error("http: {}; the flow runs without its web UI", server.err().message);
    return nullptr;
  }
  auto url = "http://" + addr->first + ":" + std::to_string((*server)->port()) + "/";
  if (made) // shown this once; afterwards it is in the file
    spdlog::info("http: web UI on {} (new access token, kept in {}): open {}#token={}", url,
                 (opts.data_dir / "http-token").string(), url, token);
  else
    spdlog::info("http: web UI on {} (access token: {})", url,
                 c.has("token") ? "the flow's http.token"
                                : "in " + (opts.data_dir / "http-token").string());
  return std::move(*server);
}

} // namespace

int run_flow(const flow& f, const run_options& opts) {
  data_dir_lock lock;
  if (auto ok = lock.acquire(opts.data_dir); !ok) {
    spdlog::error("{}", ok.err().message);
    return 1;
  }
  // Block the signals in every thread; the main thread takes them with sigtimedwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::fabrik>();
  caf::actor_system sys{cfg};
  auto opened = registry::open(opts.data_dir / "registry");
  if (!opened) {
    spdlog::error("cannot open the workflow registry: {}", opened.err().message);
    return 2;
  }
  auto reg = std::make_shared<registry>(std::move(*opened));
  auto tel = std::make_shared<telemetry>();
  auto actors = spawn_graph(sys, f, opts.data_dir, reg, tel);
  if (!actors) {
    spdlog::error("cannot start flow {}: {}", f.name, actors.err().message);
    return 2;
  }
  // Zips dropped into the watched directory become versions; every workflow actor looks
  // whether it should deploy one.
  std::unique_ptr<workflow_hub> hub;
  std::vector<caf::actor> workflow_actors;
  for (auto& a : *actors)
    if (a.k->name == "workflow")
      workflow_actors.push_back(a.handle);
  if (!workflow_actors.empty()) {
    auto watch = f.resolve(f.sections.at("workflows").at("").str("watch"));
    auto started = workflow_hub::start(reg, watch, [workflow_actors](const package_version&) {
      for (auto& h : workflow_actors)
        caf::anon_send(h, wake_atom::value);
    });
    if (!started)
      spdlog::error("workflows: cannot watch {}: {}", watch.string(), started.err().message);
    else
      hub = std::move(*started);
  }
  engine_api api{sys, f, *actors, reg, hub.get(), tel};
  auto control = control_server::start(opts.data_dir / "control.sock",
                                       [&api](const nlohmann::json& req) {
                                         return api.handle(req);
                                       });
  if (!control)
    spdlog::warn("no control socket ({}): fabrik train cannot reach this engine",
                 control.err().message);
  auto web = start_http(f, opts, api, tel);
  spdlog::info("flow {} running: {} actors, data in {}", f.name, actors->size(),
               opts.data_dir.string());
  auto interval = opts.status_interval > 0 ? opts.status_interval : 3'600'000'000'000;
  for (;;) {
    timespec ts{static_cast<time_t>(interval / 1'000'000'000),
                static_cast<long>(interval % 1'000'000'000)};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("signal {}: stopping flow {}", sig == SIGINT ? "SIGINT" : "SIGTERM", f.name);
      break;
    }
    if (opts.status_interval > 0)
      log_status(sys, *actors, hub.get());
  }
  // A second signal forces the exit (a training run can keep an actor busy for minutes).
  // Nothing is lost by it: commits are atomic and the spools are replayed at the next start.
  std::thread{[signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::warn("second signal: exiting without waiting for the actors");
    std::_Exit(130);
  }}.detach();
  web.reset();
  if (control)
    control->reset();
  stop(sys, *actors, hub.get());
  hub.reset();
  sys.await_all_actors_done();
  spdlog::info("flow {} stopped", f.name);
  return 0;
}

} // namespace fabrik
