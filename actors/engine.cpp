#include "actors/engine.hpp"

#include "actors/actors.hpp"
#include "actors/control.hpp"
#include "actors/engine_api.hpp"
#include "actors/graph.hpp"
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
  auto actors = spawn_graph(sys, f, opts.data_dir, reg);
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
  api_context api{sys, *actors, reg, hub.get()};
  auto control = control_server::start(opts.data_dir / "control.sock",
                                       [&api](const nlohmann::json& req) {
                                         return handle_request(api, req);
                                       });
  if (!control)
    spdlog::warn("no control socket ({}): fabrik train cannot reach this engine",
                 control.err().message);
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
  if (control)
    control->reset();
  stop(sys, *actors, hub.get());
  hub.reset();
  sys.await_all_actors_done();
  spdlog::info("flow {} stopped", f.name);
  return 0;
}

} // namespace fabrik
