#include "engine/engine.hpp"
#include "engine/scheduler.hpp"

#include "actors/actors.hpp"
#include "actors/node.hpp"
#include "core/telemetry.hpp"
#include "engine/control.hpp"
#include "engine/engine_api.hpp"
#include "engine/graph.hpp"
#include "engine/http.hpp"
#include "engine/workflow_hub.hpp"
#include "flows/nodes.hpp"
#include "runtime/registry.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <mutex>
#include <sys/file.h>
#include <thread>
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
      return make_error(ec::io_error,
                        "cannot create data directory " + dir.string() + ": " + err.message());
    auto path = dir / "fabrik.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      return make_error(ec::io_error, "cannot open " + path.string());
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0)
      return make_error(ec::unavailable,
                        "data directory " + dir.string() + " is in use by another fabrik run");
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
                const workflow_hub* hub, const node_runtime* node) {
  if (hub)
    spdlog::info("status {}", hub->status().to_line());
  caf::scoped_actor self{sys};
  auto ask = [&](const caf::actor& a, const std::string& name) {
    self->request(caf::actor_cast<status_client>(a), std::chrono::seconds{2}, status_atom::value)
      .receive([](const actor_status& st) { spdlog::info("status {}", st.to_line()); },
               [&](const caf::error& err) {
                 spdlog::warn("status {}: no answer ({})", name, caf::to_string(err));
               });
  };
  for (auto& a : actors)
    ask(a.handle, a.name);
  if (node)
    for (auto& l : node->links())
      ask(l.handle, l.name);
}

/// Stops `actors` and waits until each is gone: sources first, which stop taking input
/// and wait until downstream acknowledged all they took.
void stop(caf::actor_system& sys, const std::vector<running_actor>& actors) {
  caf::scoped_actor self{sys};
  for (auto& a : actors) {
    if (a.k->role != kind_role::source)
      continue;
    self
      ->request(caf::actor_cast<source_actor>(a.handle), std::chrono::seconds{15}, stop_atom::value)
      .receive([](bool) {},
               [&](const caf::error& err) {
                 spdlog::warn("{}: did not stop cleanly ({})", a.name, caf::to_string(err));
               });
  }
  for (auto& a : actors) {
    self->monitor(a.handle);
    self->send_exit(a.handle, caf::exit_reason::user_shutdown);
  }
  for (size_t i = 0; i < actors.size(); ++i)
    self->receive([](const caf::down_msg&) {},
                  caf::after(std::chrono::seconds{30}) >>
                    [] { spdlog::warn("an actor did not stop within 30 s"); });
}

/// The web UI and API, when the flow or --http asks for it; the engine runs on without
/// it when the address is taken (the log says so).
std::unique_ptr<http_server> start_http(const flow& f, const run_options& opts, engine_api& api,
                                        std::shared_ptr<telemetry> tel) {
  auto& c = f.sections.at("http").at("");
  auto listen = opts.http.value_or(c.str("listen"));
  if (auto* n = opts.node.empty() ? nullptr : find_node(f, opts.node);
      n && !opts.http && n->has("http"))
    listen = n->str("http");
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

/// Applies a changed flow file (and fragment) to a running engine: restarts only what
/// changed (diff_flows) and keeps every flow version alive, since actors may refer to the
/// one they were spawned from.
class reloader {
public:
  reloader(caf::actor_system& sys, const run_options& opts, engine_api& api,
           std::shared_ptr<registry> reg, std::shared_ptr<telemetry> tel, node_runtime* node)
    : sys_(sys), opts_(opts), api_(api), reg_(std::move(reg)), tel_(std::move(tel)), node_(node) {}

  /// The first version: spawns every actor.
  expected<void> start(std::shared_ptr<const flow> f) {
    auto actors = spawn_graph(sys_, *f, opts_.data_dir, reg_, tel_, {}, node_);
    if (!actors)
      return actors.err();
    publish(std::move(f), std::move(*actors));
    return {};
  }

  api_reply reload() {
    std::lock_guard lock{mutex_};
    auto now = api_.view();
    std::vector<diagnostic> diags;
    auto loaded = load_flow(now.f->file, diags);
    if (!loaded) {
      nlohmann::json lines = nlohmann::json::array();
      for (auto& d : diags)
        if (!d.warning) {
          lines.push_back(d.to_string());
          spdlog::error("reload: {}", d.to_string());
        }
      return {
        400,
        {{"error", now.f->file.filename().string() + " or " + now.f->local_file.filename().string()
                     + " has errors; nothing was changed"},
         {"diagnostics", lines}}};
    }
    auto next = std::make_shared<const flow>(std::move(*loaded));
    auto changes = diff_flows(*now.f, *next);
    std::vector<running_actor> going, keep;
    for (auto& a : *now.actors) {
      bool stays = std::find(changes.unchanged.begin(), changes.unchanged.end(), a.name)
                   != changes.unchanged.end();
      (stays ? keep : going).push_back(a);
    }
    if (changes.any()) {
      stop(sys_, going);
      auto actors = spawn_graph(sys_, *next, opts_.data_dir, reg_, tel_, keep, node_);
      if (!actors) // cannot happen for a flow that loaded; say so if it does
        return api_reply::error(500, "reload: " + actors.err().message);
      publish(next, std::move(*actors));
    } else {
      publish(next, std::vector<running_actor>(*now.actors));
    }
    auto list = [](const std::vector<std::string>& xs) {
      std::string out;
      for (auto& x : xs)
        out += (out.empty() ? "" : ", ") + x;
      return out.empty() ? std::string{"none"} : out;
    };
    spdlog::info("reload: added {}; removed {}; restarted {}; {} unchanged", list(changes.added),
                 list(changes.removed), list(changes.restarted), changes.unchanged.size());
    return {200,
            {{"reload",
              {{"added", changes.added},
               {"removed", changes.removed},
               {"restarted", changes.restarted},
               {"unchanged", changes.unchanged}}}}};
  }

  /// Zips dropped into the watched directory become versions; every workflow actor looks
  /// whether it should deploy one. Started once a flow has a workflow actor.
  void ensure_hub() {
    auto v = api_.view();
    bool wanted = std::any_of(v.actors->begin(), v.actors->end(),
                              [](auto& a) { return a.k->name == "workflow"; });
    if (hub_ || !wanted)
      return;
    auto watch = v.f->resolve(v.f->sections.at("workflows").at("").str("watch"));
    auto* api = &api_;
    auto started = workflow_hub::start(reg_, watch, [api](const package_version&) {
      for (auto& a : *api->view().actors)
        if (a.k->name == "workflow")
          caf::anon_send(a.handle, wake_atom::value);
    });
    if (!started) {
      spdlog::error("workflows: cannot watch {}: {}", watch.string(), started.err().message);
      return;
    }
    hub_ = std::move(*started);
    api_.set_hub(hub_.get());
  }

  workflow_hub* hub() const { return hub_.get(); }
  void stop_hub() {
    api_.set_hub(nullptr);
    hub_.reset();
  }

private:
  void publish(std::shared_ptr<const flow> f, std::vector<running_actor> actors) {
    flows_.push_back(f);
    api_.set_view(
      {std::move(f), std::make_shared<const std::vector<running_actor>>(std::move(actors))});
    ensure_hub();
  }

  caf::actor_system& sys_;
  const run_options& opts_;
  engine_api& api_;
  std::shared_ptr<registry> reg_;
  std::shared_ptr<telemetry> tel_;
  node_runtime* node_;
  std::unique_ptr<workflow_hub> hub_;
  std::vector<std::shared_ptr<const flow>> flows_;
  std::mutex mutex_;
};

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
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::fabrik>();
  tune_scheduler(cfg);
  if (!opts.node.empty()) {
    cfg.load<caf::io::middleman>();
    if (auto tls = tls_of(f, *find_node(f, opts.node))) {
      for (auto& [what, path] : {std::pair{"certificate", tls->certificate},
                                 std::pair{"key", tls->key}, std::pair{"ca", tls->ca}})
        if (std::error_code err; !std::filesystem::is_regular_file(path, err)) {
          spdlog::error("node {}: TLS {} {}: no such file", opts.node, what, path.string());
          return 2;
        }
      cfg.load<caf::openssl::manager>();
      cfg.openssl_certificate = tls->certificate.string();
      cfg.openssl_key = tls->key.string();
      cfg.openssl_cafile = tls->ca.string();
    }
  }
  caf::actor_system sys{cfg};
  auto opened = registry::open(opts.data_dir / "registry");
  if (!opened) {
    spdlog::error("cannot open the workflow registry: {}", opened.err().message);
    return 2;
  }
  auto reg = std::make_shared<registry>(std::move(*opened));
  auto tel = std::make_shared<telemetry>();
  engine_api api{sys, reg, tel};
  std::unique_ptr<node_runtime> node;
  if (!opts.node.empty()) {
    auto started = node_runtime::start(
      sys, f, opts.node, opts.data_dir,
      [&api](const std::string& name) {
        auto v = api.view();
        if (v.actors) // null until started
          for (auto& a : *v.actors)
            if (a.name == name)
              return a.handle;
        return caf::actor{};
      },
      [&api] {
        std::vector<node_runtime::named_actor> out;
        auto v = api.view();
        if (v.actors)
          for (auto& a : *v.actors)
            out.push_back({a.name, std::string{a.k->name}, a.handle, {}});
        return out;
      });
    if (!started) {
      spdlog::error("{}", started.err().message);
      return 2;
    }
    node = std::move(*started);
  }
  api.set_node(node.get());
  reloader graph{sys, opts, api, reg, tel, node.get()};
  if (auto ok = graph.start(std::make_shared<const flow>(f)); !ok) {
    spdlog::error("cannot start flow {}: {}", f.name, ok.err().message);
    return 2;
  }
  api.set_reloader([&graph] { return graph.reload(); });
  auto control = control_server::start(
    opts.data_dir / "control.sock", [&api](const nlohmann::json& req) { return api.handle(req); });
  if (!control)
    spdlog::warn("no control socket ({}): fabrik train cannot reach this engine",
                 control.err().message);
  auto web = start_http(f, opts, api, tel);
  spdlog::info("flow {} running{}: {} actors, data in {}", f.name,
               node ? " as node " + opts.node : std::string{}, api.view().actors->size(),
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
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading {}", f.file.string());
      graph.reload();
      continue;
    }
    if (opts.status_interval > 0)
      log_status(sys, *api.view().actors, graph.hub(), node.get());
  }
  // A second signal forces the exit (a training run can keep an actor busy for minutes).
  // Nothing is lost by it: commits are atomic and the spools are replayed at the next start.
  sigdelset(&signals, SIGHUP);
  std::thread{[signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::warn("second signal: exiting without waiting for the actors");
    std::_Exit(130);
  }}.detach();
  web.reset();
  api.set_node(nullptr);
  if (control)
    control->reset();
  auto last = api.view();
  log_status(sys, *last.actors, graph.hub(), node.get());
  if (node)
    node->drain(std::chrono::seconds{15});
  stop(sys, *last.actors);
  if (node)
    node->stop();
  graph.stop_hub();
  sys.await_all_actors_done();
  spdlog::info("flow {} stopped", f.name);
  if (node) {
    // CAF 0.17's middleman can wait forever for its I/O thread while a peer keeps its
    // connection open (seen in the three-node test). Everything durable is committed by
    // now: give the actor system's shutdown a few seconds, then leave.
    std::thread{[] {
      std::this_thread::sleep_for(std::chrono::seconds{5});
      spdlog::warn("the middleman did not shut down within 5 s; exiting");
      spdlog::default_logger()->flush();
      std::_Exit(0);
    }}.detach();
  }
  return 0;
}

} // namespace fabrik
