// The `workflow` kind: serves a Python workflow package (a version from the registry) in a
// worker process, emits one prediction record per sample, and trains it on records from a
// storage actor.
//
// New versions and retrained models are prepared by a job on a thread of its own, in a
// second worker (runtime/deployment.hpp), while the serving worker keeps answering; the
// actor swaps the two between batches, so no prediction is lost or answered twice.

#include "actors/emitter.hpp"
#include "actors/spawn.hpp"
#include "core/log.hpp"
#include "core/telemetry.hpp"
#include "core/time.hpp"
#include "flows/kind.hpp"
#include "runtime/deployment.hpp"
#include "runtime/measure.hpp"

#include <caf/all.hpp>

#include <csignal>
#include <deque>
#include <map>
#include <thread>

namespace fabrik {
namespace {

const settings_table train_settings{{
  {.name = "storage",
   .type = setting_type::string,
   .doc = "the storage actor to train from",
   .required = true},
  {.name = "stream",
   .type = setting_type::string_list,
   .doc = "the stream(s) holding labelled records; several are concatenated in this order",
   .required = true},
  {.name = "last",
   .type = setting_type::integer,
   .default_value = "100000",
   .doc = "train on the newest N records of each stream",
   .min = 1,
   .max = 100000000},
  {.name = "since",
   .type = setting_type::duration,
   .doc = "only records newer than this (source time), e.g. 7d"},
  {.name = "from",
   .type = setting_type::string,
   .doc = "only records at or after this source time (2026-11-25T08:00:00Z)"},
  {.name = "to", .type = setting_type::string, .doc = "only records before this source time"},
  {.name = "min_records",
   .type = setting_type::integer,
   .default_value = "1000",
   .doc = "an automatic run waits until the selection holds this many records (looking "
          "every 10 s); a manual run fails with fewer",
   .min = 1,
   .max = 100000000},
  {.name = "when",
   .type = setting_type::string,
   .default_value = "on_deploy",
   .doc = "on_deploy: whenever a version without a model is deployed; manual: only by "
          "`fabrik train`; `every DURATION` (every 6h): also again that long after the last "
          "successful run"},
}};

const settings_table window_settings{{
  {.name = "size",
   .type = setting_type::integer,
   .doc = "records per window (a window by count)",
   .min = 1,
   .max = 100000},
  {.name = "step",
   .type = setting_type::integer,
   .doc = "records between the starts of two count windows; default: size (no overlap)",
   .min = 1,
   .max = 100000},
  {.name = "span",
   .type = setting_type::duration,
   .doc = "source time a window covers (a window by time; its record count varies)",
   .min = 1e6},
  {.name = "every",
   .type = setting_type::duration,
   .doc = "source time between two time windows; default: span",
   .min = 1e6},
}};

const settings_table workflow_settings{{
  {.name = "package",
   .type = setting_type::string,
   .doc = "the workflow's name (as in its manifest), deployed from the watched directory or "
          "an upload; or the path of a zip (ending in .zip, relative to the flow file)",
   .required = true},
  {.name = "version",
   .type = setting_type::string,
   .doc = "pin a version: the manifest's version string, or the first 8+ hex digits of the "
          "package's sha256; default: the newest stored"},
  {.name = "params",
   .type = setting_type::scalar_map,
   .doc = "parameter overrides, NAME: value (the package's parameters and their types)"},
  {.name = "train",
   .type = setting_type::object,
   .doc = "where and when to train; without it the package must be predict-only",
   .children = &train_settings},
  {.name = "model_from",
   .type = setting_type::string,
   .doc = "serve the models that workflow actor (on this node or another) trains: its "
          "package version and each new model are copied here and swapped in (training in "
          "the cloud, predictions at the edge); instead of train"},
  {.name = "model_poll",
   .type = setting_type::duration,
   .default_value = "5s",
   .doc = "how often model_from is asked for a newer model",
   .min = 1e8},
  {.name = "window",
   .type = setting_type::object,
   .doc = "make one sample of several consecutive records of a stream (size or span)",
   .children = &window_settings},
  {.name = "predict_timeout",
   .type = setting_type::duration,
   .default_value = "10s",
   .doc = "longest a batch of predictions may take before the worker is restarted",
   .min = 1e6},
  {.name = "train_timeout",
   .type = setting_type::duration,
   .default_value = "10m",
   .doc = "longest a training run (or a package import) may take",
   .min = 1e9},
  {.name = "memory_limit",
   .type = setting_type::size,
   .default_value = "2GiB",
   .doc = "address-space limit of each worker process (RLIMIT_AS)",
   .min = 64 << 20},
  {.name = "max_in_flight",
   .type = setting_type::integer,
   .default_value = "4",
   .doc = "prediction batches sent downstream and not yet acknowledged",
   .min = 1,
   .max = 1000},
}};

/// `when:` parsed. every == 0 unless a schedule.
struct train_when {
  bool manual = false;
  int64_t every = 0; ///< ns
};

expected<train_when> parse_when(const std::string& text) {
  if (text == "on_deploy")
    return train_when{};
  if (text == "manual")
    return train_when{.manual = true};
  if (text.starts_with("every ")) {
    auto d = parse_duration(text.substr(6));
    if (!d)
      return make_error(ec::invalid_argument, "train.when '" + text + "': " + d.err().message);
    if (*d < 1'000'000'000)
      return make_error(ec::invalid_argument, "train.when '" + text + "': at least every 1s");
    return train_when{.every = *d};
  }
  return make_error(ec::invalid_argument, "train.when '" + text
                                            + "' must be on_deploy, manual or `every DURATION` "
                                              "(every 6h)");
}

bool is_path(const std::string& package) {
  return package.ends_with(".zip") || package.find('/') != std::string::npos;
}

struct workflow_params {
  std::string package; ///< a name, or a zip path resolved against the flow
  std::string pin;
  std::map<std::string, std::string> params;
  std::filesystem::path work_dir; ///< DATA_DIR/workflows/ACTOR
  bool train = false;
  train_selection data;
  train_when when;
  std::chrono::milliseconds predict_timeout{10000};
  std::chrono::milliseconds train_timeout{600000};
  uint64_t memory_limit = 0;
  size_t max_in_flight = 4;
  size_t window = 0; ///< records per count window; 0: none
  size_t window_step = 1;
  int64_t span = 0; ///< ns of a time window; 0: none
  int64_t span_every = 0;
  double tdp_w = default_tdp_watts;
  caf::actor storage;
  std::string model_from_name; ///< model_from: the workflow actor whose models it serves
  caf::actor model_from;
  std::chrono::nanoseconds model_poll{5'000'000'000};
};

/// The background job and what a shutdown needs to stop it.
struct job_control {
  std::thread thread;
  std::shared_ptr<std::atomic<pid_t>> pid = std::make_shared<std::atomic<pid_t>>(0);
  ~job_control() {
    if (!thread.joinable())
      return;
    // A shutdown does not wait for a training run: its worker is killed, the call returns.
    if (pid_t p = pid->load(); p > 0)
      ::kill(-p, SIGKILL);
    thread.join();
  }
};

/// A job's result, sent from the job thread to the actor.
struct job_done {
  std::shared_ptr<job_result> result;
};

struct window_buffer {
  std::deque<record> records;
  size_t since = 0; ///< records since the last count window
  int64_t last_emit = INT64_MIN; ///< source time of the last time window
};

struct workflow_state {
  static inline const char* name = "workflow";
  workflow_params p;
  std::shared_ptr<registry> reg;
  std::shared_ptr<telemetry> live; ///< recent values for the web UI; may be null
  std::unique_ptr<deployment> serving;
  std::unique_ptr<deployment> pending; ///< deployed, waiting for training data
  std::shared_ptr<job_control> job; ///< set while a job runs
  std::string job_sha; ///< the version the running job deploys
  uint64_t job_run = 0; ///< the run the running job trains, if any
  bool recheck = false; ///< a new version arrived during a job
  bool waiting_tick = false; ///< a retry tick is scheduled
  int64_t next_scheduled = 0; ///< ns; 0: no schedule
  emitter em;
  /// Batches that came while a deployment that serves without training is under way (the
  /// model this actor served before a restart, or a package that never trains): answered
  /// once it serves (a short wait, unlike a first training).
  std::deque<std::pair<record_batch, caf::response_promise>> held;
  bool serving_soon = false;
  uint64_t unserved = 0;
  uint64_t swaps = 0;
  std::map<std::string, window_buffer> windows;
  actor_status st;
  log_limiter limiter;
};

using workflow_pointer = caf::stateful_actor<workflow_state>*;

void fail(workflow_state& s, const std::string& what, bool fatal) {
  ++s.st.errors;
  s.st.last_error = what;
  if (fatal)
    s.st.state = "failed";
  if (fatal || s.limiter.allow())
    spdlog::error("{}: {}", s.st.name, what);
}

std::string describe(const worker_client& w, const error& e) {
  auto& f = w.last_failure();
  return f.traceback.empty() ? e.message : e.message + "\n" + f.traceback;
}

value to_value(const nlohmann::json& j) {
  if (j.is_boolean())
    return j.get<bool>();
  if (j.is_number_integer())
    return j.get<int64_t>();
  if (j.is_number())
    return j.get<double>();
  if (j.is_string())
    return j.get<std::string>();
  return j.dump();
}

// -- jobs ------------------------------------------------------------------------------

/// Reads training data from the storage actor, from the job's thread.
fetch_fn storage_reader(caf::actor_system& sys, caf::actor storage) {
  return [&sys, storage](const std::string& stream, int64_t from, int64_t to,
                         uint64_t last) -> expected<std::vector<record>> {
    caf::scoped_actor self{sys};
    expected<std::vector<record>> out = make_error(ec::unavailable, "no answer");
    scan_request q{stream, from, to, last, true};
    self
      ->request(caf::actor_cast<storage_actor>(storage), std::chrono::minutes{5}, query_atom::value,
                q)
      .receive([&](record_batch& b) { out = std::move(b.records); },
               [&](caf::error& e) { out = make_error(ec::unavailable, caf::to_string(e)); });
    return out;
  };
}

/// Starts a job: deploy `version` (or continue with `reuse`), then serve a stored model or
/// train. At most one job runs per actor.
void start_job(workflow_pointer self, package_version version, std::unique_ptr<deployment> reuse,
               std::string trigger, uint64_t run_id,
               std::optional<train_selection> data = std::nullopt) {
  auto& s = self->state;
  job_request req;
  req.actor = s.st.name;
  req.reg = s.reg;
  req.version = std::move(version);
  req.reuse = std::move(reuse);
  req.work_dir = s.p.work_dir;
  req.worker.memory_limit = s.p.memory_limit;
  req.load_timeout = s.p.train_timeout;
  req.train_timeout = s.p.train_timeout;
  // A model_from workflow needs a model as much as one that trains; it only never trains.
  req.train = s.p.train || s.p.model_from;
  req.train_now = s.p.train && (run_id != 0 || !s.p.when.manual);
  req.data = data ? std::move(*data) : s.p.data;
  req.fetch = storage_reader(self->system(), s.p.storage);
  req.run_id = run_id;
  req.trigger = std::move(trigger);
  req.tdp_w = s.p.tdp_w;
  req.params = s.p.params;
  s.job = std::make_shared<job_control>();
  req.pid = s.job->pid;
  s.job_sha = req.reuse ? req.reuse->version.sha256 : req.version.sha256;
  s.job_run = run_id;
  if (!s.serving) {
    s.st.state = "deploying";
    s.st.last_error.clear(); // "no such package" and the like are over now
  }
  caf::actor me = caf::actor_cast<caf::actor>(self);
  s.job->thread = std::thread{[req = std::move(req), me]() mutable {
    auto r = std::make_shared<job_result>(run_job(std::move(req)));
    caf::anon_send(me, job_done{std::move(r)});
  }};
}

/// The version this actor should serve, or why there is none.
expected<package_version> wanted_version(workflow_state& s) {
  return s.reg->find(s.p.package, s.p.pin);
}

/// Starts deploying the wanted version unless it serves already or is being deployed.
void check_version(workflow_pointer self) {
  auto& s = self->state;
  if (s.job) {
    s.recheck = true;
    return;
  }
  auto v = wanted_version(s);
  if (!v) {
    if (!s.serving && s.st.last_error != v.err().message) {
      s.st.state = "waiting";
      s.st.last_error = v.err().message;
      spdlog::info("{}: waiting for package {}: {}", s.st.name, s.p.package, v.err().message);
    }
    return;
  }
  if (s.serving && s.serving->version.sha256 == v->sha256)
    return;
  if (s.pending && s.pending->version.sha256 == v->sha256)
    return; // waiting for training data; the retry tick goes on
  s.pending.reset();
  spdlog::info("{}: deploying {} {} (#{}, sha256 {})", s.st.name, v->name, v->version, v->seq,
               v->sha256.substr(0, 12));
  if (!s.serving) {
    auto stored = s.reg->serving(s.st.name, v->sha256);
    s.serving_soon = (stored && *stored) || !(s.p.train || s.p.model_from);
  }
  start_job(self, *v, nullptr, s.serving ? "new_version" : "on_deploy", 0);
}

void schedule_next(workflow_pointer self) {
  auto& s = self->state;
  if (s.p.when.every <= 0)
    return;
  // From the end of the last run, failed or not: a failing run is not retried at once.
  int64_t last = 0;
  if (auto rs = s.reg->runs(s.st.name, 1); rs && !rs->empty())
    last = rs->front().finished;
  s.next_scheduled = (last > 0 ? last : now_ns()) + s.p.when.every;
  auto wait = std::max<int64_t>(s.next_scheduled - now_ns(), 1'000'000'000);
  self->delayed_send(self, std::chrono::nanoseconds{wait}, tick_atom::value);
}

/// A run started now (manual or scheduled): in a fresh worker beside the serving one.
expected<uint64_t> start_training(workflow_pointer self, const std::string& trigger,
                                  const nlohmann::json& selection = nullptr) {
  auto& s = self->state;
  if (!s.p.train)
    return make_error(ec::invalid_argument, s.st.name + " has no train: settings");
  auto data = with_overrides(s.p.data, selection);
  if (!data)
    return data.err();
  if (s.job)
    return make_error(ec::unavailable, s.st.name + " is busy "
                                         + (s.job_run ? "with run " + std::to_string(s.job_run)
                                                      : std::string{"deploying"})
                                         + "; try again when it is done");
  // The pending version (not serving yet) is the one to train, else the serving one.
  package_version v;
  if (s.pending)
    v = s.pending->version;
  else if (s.serving)
    v = s.serving->version;
  else if (auto w = wanted_version(s))
    v = *w;
  else
    return w.err();
  run_record r;
  r.actor = s.st.name;
  r.workflow = v.name;
  r.version = v.version;
  r.package_sha256 = v.sha256;
  r.trigger = trigger;
  r.started = now_ns();
  r.data = data->describe();
  auto id = s.reg->begin_run(r);
  if (!id)
    return id.err();
  spdlog::info("{}: run {} ({}) of {} {} started", s.st.name, *id, trigger, v.name, v.version);
  start_job(self, v, std::move(s.pending), trigger, *id, *data);
  return *id;
}

void serve(workflow_pointer self, const record_batch& batch, caf::response_promise rp);

void on_job_done(workflow_pointer self, job_result& r) {
  auto& s = self->state;
  if (s.job) {
    s.job->thread.join();
    s.job.reset();
  }
  s.job_sha.clear();
  s.job_run = 0;
  using outcome = job_result::outcome;
  switch (r.result) {
    case outcome::ready: {
      auto& d = *r.deployed;
      bool first = !s.serving;
      // The swap: the next batch is answered by the new worker, the old one stops.
      std::swap(s.serving, r.deployed);
      ++s.swaps;
      s.st.state = "running";
      s.st.last_error.clear();
      s.st.details["version"] = d.version.version + " (#" + std::to_string(d.version.seq) + ")";
      s.st.details["model"] = d.model_id.empty() ? "none" : d.model_id.substr(0, 12);
      spdlog::info("{}: {} {} {}: {}", s.st.name, first ? "serving" : "now serving", d.version.name,
                   d.version.version, r.message);
      r.deployed.reset(); // stops the previous worker
      schedule_next(self);
      break;
    }
    case outcome::waiting:
      s.pending = std::move(r.deployed);
      if (!s.serving) {
        s.st.state = "waiting";
        s.st.last_error = r.message;
      }
      if (s.p.when.manual) {
        spdlog::info("{}: {}", s.st.name, r.message);
        break;
      }
      spdlog::info("{}: {}; trying again in 10 s", s.st.name, r.message);
      if (!s.waiting_tick) {
        s.waiting_tick = true;
        self->delayed_send(self, std::chrono::seconds{10}, tick_atom::value);
      }
      break;
    case outcome::failed:
      fail(s, r.message, false);
      schedule_next(self);
      if (!s.serving)
        s.st.state = "failed";
      // A new version that deployed but could not train waits for the next trigger; a
      // retrain of the serving version just ends (its worker is not kept idle).
      if (r.deployed && !(s.serving && s.serving->version.sha256 == r.deployed->version.sha256))
        s.pending = std::move(r.deployed);
      break;
  }
  s.serving_soon = false;
  for (auto held = std::exchange(s.held, {}); auto& [batch, rp] : held)
    serve(self, batch, rp);
  if (s.recheck) {
    s.recheck = false;
    check_version(self);
  }
}

void on_tick(workflow_pointer self) {
  auto& s = self->state;
  s.waiting_tick = false;
  if (s.job)
    return; // its end decides what comes next
  if (s.pending && !s.pending->model_id.size() && s.p.train && !s.p.when.manual) {
    auto v = s.pending->version;
    start_job(self, v, std::move(s.pending), s.serving ? "new_version" : "on_deploy", 0);
    return;
  }
  // schedule_next() armed a tick for the due time; earlier ticks (retries) pass by.
  if (s.next_scheduled > 0 && now_ns() >= s.next_scheduled) {
    s.next_scheduled = 0;
    if (auto id = start_training(self, "schedule"); !id)
      fail(s, "scheduled run not started: " + id.err().message, false);
  }
}

// -- serving ---------------------------------------------------------------------------

/// The prediction record for input `in`: the outputs plus where they came from.
record prediction(const workflow_state& s, const record& in, const nlohmann::json& outputs,
                  double compute_ms) {
  auto& d = *s.serving;
  record r;
  r.stream = s.st.name + "/" + in.stream;
  r.time = in.time;
  r.ingest_time = now_ns();
  r.seq = in.seq;
  if (s.live) // from the input's arrival to its answer, our whole part included
    s.live->observe_prediction_latency(s.st.name,
                                       static_cast<double>(r.ingest_time - in.ingest_time) / 1e9);
  r.quality = in.quality;
  for (auto& [k, v] : outputs.items())
    r.fields.push_back({k, to_value(v)});
  r.fields.push_back({"workflow", d.manifest.name});
  r.fields.push_back({"version", d.manifest.version});
  r.fields.push_back(
    {"model", d.model_id.empty() ? std::string{"none"} : d.model_id.substr(0, 12)});
  r.fields.push_back({"compute_ms", compute_ms});
  return r;
}

void handle_failure(workflow_state& s, const error& e, caf::response_promise& rp) {
  auto& w = s.serving->worker;
  fail(s, "prediction failed: " + describe(w, e), false);
  if (!w.alive())
    if (auto ok = w.restart(s.p.train_timeout); !ok)
      fail(s, "cannot restart the worker: " + ok.err().message, false);
  rp.deliver(caf::make_error(caf::sec::runtime_error, e.message));
}

void emit(workflow_pointer self, record_batch predictions, uint64_t inputs,
          caf::response_promise rp) {
  auto& s = self->state;
  s.st.out += predictions.records.size();
  if (s.live && !predictions.records.empty()) {
    auto& outputs = s.serving->manifest.outputs;
    s.live->add(predictions.records, s.st.name, outputs.empty() ? "" : outputs.front());
  }
  s.em.send(std::move(predictions), [rp, inputs]() mutable { rp.deliver(inputs); });
}

/// Siemens AI Inference Server style: process_input(dict) per record; None emits nothing.
void serve_process_input(workflow_pointer self, const record_batch& batch,
                         caf::response_promise rp) {
  auto& s = self->state;
  record_batch predictions;
  predictions.origin = batch.origin;
  for (auto& in : batch.records) {
    nlohmann::json data = nlohmann::json::object();
    for (auto& f : in.fields)
      std::visit(
        [&](auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bytes>)
            data[f.name] = nullptr; // binary values are not passed to process_input
          else
            data[f.name] = v;
        },
        f.v);
    auto out = s.serving->worker.process_input(data, s.p.predict_timeout);
    if (!out) {
      handle_failure(s, out.err(), rp);
      return;
    }
    if (out->output)
      predictions.records.push_back(prediction(
        s, in, *out->output,
        std::chrono::duration<double, std::milli>(out->report.stats.worker_wall).count()));
  }
  emit(self, std::move(predictions), batch.records.size(), std::move(rp));
}

/// One sample per record, per count window, or per time window; `answers` gets the
/// record each sample's prediction answers (a window's newest record).
void make_samples(workflow_state& s, const record_batch& batch, std::vector<worker::dataset>& calls,
                  std::vector<const record*>& answers) {
  auto& m = s.serving->manifest;
  if (s.p.window == 0 && s.p.span == 0) {
    calls.push_back(to_dataset(m, batch.records));
    for (auto& r : batch.records)
      answers.push_back(&r);
    return;
  }
  std::vector<double> flat;
  for (auto& r : batch.records) {
    auto& w = s.windows[r.stream];
    w.records.push_back(r);
    flat.clear();
    if (s.p.window > 0) {
      if (w.records.size() > s.p.window)
        w.records.pop_front();
      if (++w.since < s.p.window_step || w.records.size() < s.p.window)
        continue;
      w.since = 0;
      if (calls.empty()) {
        calls.emplace_back();
        calls.back().columns = m.inputs;
        calls.back().window = s.p.window;
      }
      for (auto& x : w.records)
        append_inputs(m, x, flat);
      calls.back().add_row(flat);
    } else {
      // A time window holds the records of the last `span` of source time; its record
      // count varies, so each window is a call of its own.
      while (!w.records.empty() && w.records.front().time <= r.time - s.p.span)
        w.records.pop_front();
      if (w.last_emit != INT64_MIN && r.time < w.last_emit + s.p.span_every)
        continue;
      w.last_emit = r.time;
      worker::dataset d;
      d.columns = m.inputs;
      d.window = w.records.size();
      for (auto& x : w.records)
        append_inputs(m, x, flat);
      d.add_row(flat);
      calls.push_back(std::move(d));
    }
    answers.push_back(&r);
  }
}

void serve(workflow_pointer self, const record_batch& batch, caf::response_promise rp) {
  auto& s = self->state;
  if (!s.serving && s.serving_soon) {
    s.held.emplace_back(batch, std::move(rp));
    return;
  }
  if (!s.serving || (s.serving->model_id.empty() && (s.p.train || s.p.model_from))) {
    // No model yet: nothing to predict with. Holding the batch would also stall the
    // storage the training data comes from (one source feeds both), so it is counted.
    s.unserved += batch.records.size();
    rp.deliver(static_cast<uint64_t>(batch.records.size()));
    return;
  }
  if (s.serving->manifest.kind == workflow_kind::process_input) {
    serve_process_input(self, batch, std::move(rp));
    return;
  }
  std::vector<worker::dataset> calls;
  std::vector<const record*> answers;
  make_samples(s, batch, calls, answers);
  auto inputs = static_cast<uint64_t>(batch.records.size());
  record_batch predictions;
  predictions.origin = batch.origin;
  size_t next = 0;
  for (auto& samples : calls) {
    auto out = s.serving->worker.predict(samples, s.p.predict_timeout);
    if (!out) {
      handle_failure(s, out.err(), rp);
      return;
    }
    // compute_ms: time inside the worker (the model plus its Python glue), shared by the
    // call's samples; end-to-end latency minus this is fabrik's own part.
    auto n = samples.rows();
    auto compute_ms =
      std::chrono::duration<double, std::milli>(out->report.stats.worker_wall).count()
      / static_cast<double>(std::max<size_t>(n, 1));
    for (size_t i = 0; i < n && i < out->outputs.size(); ++i)
      predictions.records.push_back(prediction(s, *answers[next + i], out->outputs[i], compute_ms));
    next += n;
  }
  emit(self, std::move(predictions), inputs, std::move(rp));
}

// -- model_from: serving what another actor trains ---------------------------------------

/// Stores the offered package version and model, makes the model this actor's serving one
/// for that version, and deploys it beside the serving worker (swapped in when ready).
void take_model(workflow_pointer self, const std::string& id, const std::string& zip,
                const std::string& blob) {
  auto& s = self->state;
  if (zip.empty() || (s.serving && s.serving->model_id == id) || s.job)
    return; // nothing new, or busy: the next poll offers it again
  auto added = s.reg->add_package(zip, "model_from " + s.p.model_from_name);
  auto m = added ? decode_model(id, blob) : expected<model_record>{added.err()};
  auto put = m ? s.reg->put_model(*m) : expected<std::string>{m.err()};
  auto set =
    put ? s.reg->set_serving(s.st.name, added->version.sha256, *put) : expected<void>{put.err()};
  if (!set)
    return fail(s,
                "cannot keep model " + id.substr(0, 12) + " of " + s.p.model_from_name + ": "
                  + set.err().message,
                false);
  s.p.pin = added->version.sha256; // this version, whatever the watched directory holds
  spdlog::info("{}: model {} of {} ({} {}) arrived; deploying it", s.st.name, id.substr(0, 12),
               s.p.model_from_name, added->version.name, added->version.version);
  start_job(self, added->version, nullptr, "model_from", 0);
}

void poll_model(workflow_pointer self) {
  auto& s = self->state;
  auto have = s.serving ? s.serving->model_id : std::string{};
  auto again = [self] { self->delayed_send(self, self->state.p.model_poll, model_atom::value); };
  self->request(s.p.model_from, std::chrono::minutes{1}, model_atom::value, have)
    .then(
      [=](std::string& id, std::string& zip, std::string& blob) {
        take_model(self, id, zip, blob);
        again();
      },
      [=](caf::error& err) {
        auto& s = self->state;
        if (s.limiter.allow())
          spdlog::info(
            "{}: no model from {} yet ({}); asking again every {} ms", s.st.name,
            s.p.model_from_name, caf::to_string(err),
            std::chrono::duration_cast<std::chrono::milliseconds>(s.p.model_poll).count());
        again();
      });
}

caf::behavior workflow(workflow_pointer self, workflow_params p, actor_status st,
                       std::shared_ptr<registry> reg, std::shared_ptr<telemetry> tel,
                       std::vector<consumer_actor> downstream) {
  auto& s = self->state;
  s.live = std::move(tel);
  s.p = std::move(p);
  s.st = std::move(st);
  s.reg = std::move(reg);
  s.em = emitter{self, std::move(downstream), s.p.max_in_flight, s.st.name};
  if (s.st.state != "failed") {
    s.st.state = "waiting";
    check_version(self);
    if (s.p.model_from)
      self->send(self, model_atom::value);
  }
  return {
    [=](const record_batch& batch) -> caf::result<uint64_t> {
      auto& s = self->state;
      s.st.in += batch.records.size();
      // Even a workflow that cannot serve (see its status) takes the batch, counting it as
      // unserved: refusing it would stall the source, and with it the storage beside us.
      auto rp = self->make_response_promise<uint64_t>();
      serve(self, batch, rp);
      return rp;
    },
    [=](emitter::retry_fn& r) { r.fn(); },
    [=](job_done& d) { on_job_done(self, *d.result); },
    [=](wake_atom) { check_version(self); },
    [=](tick_atom) { on_tick(self); },
    [=](train_atom, const std::string& trigger,
        const std::string& selection) -> caf::result<uint64_t> {
      // The selection is JSON text: the data the run trains on, overriding the flow's.
      auto j = nlohmann::json::parse(selection, nullptr, false);
      if (j.is_discarded())
        return caf::make_error(caf::sec::runtime_error, "the data selection is not JSON");
      auto id = start_training(self, trigger, j);
      if (!id)
        return caf::make_error(caf::sec::runtime_error, id.err().message);
      return *id;
    },
    [=](model_atom, const std::string& have) -> caf::result<std::string, std::string, std::string> {
      auto& s = self->state;
      if (!s.serving || s.serving->model_id.empty())
        return caf::make_error(caf::sec::runtime_error, s.st.name + " serves no model yet");
      auto& id = s.serving->model_id;
      if (id == have)
        return {id, std::string{}, std::string{}};
      auto zip = s.reg->package_bytes(s.serving->version.sha256);
      auto m = s.reg->model(id);
      if (!zip || !m)
        return caf::make_error(caf::sec::runtime_error, (zip ? m.err() : zip.err()).message);
      return {id, std::move(*zip), encode_model(*m)};
    },
    [=](model_atom) { poll_model(self); },
    [=](status_atom) {
      auto& s = self->state;
      auto st = s.st;
      st.queue = s.em.in_flight();
      st.details["unserved"] = std::to_string(s.unserved);
      st.details["package"] = s.p.package;
      if (!s.p.pin.empty())
        st.details["pinned"] = s.p.pin;
      st.details["swaps"] = std::to_string(s.swaps);
      if (s.serving)
        st.details["worker_pid"] = std::to_string(s.serving->worker.pid());
      if (s.job_run)
        st.details["training"] = "run " + std::to_string(s.job_run);
      else if (s.job)
        st.details["deploying"] = s.job_sha.substr(0, 12);
      return st;
    },
  };
}

caf::actor spawn_workflow(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  workflow_params p;
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "workflow";
  auto refuse = [&](std::string why) {
    st.state = "failed";
    st.last_error = std::move(why);
    spdlog::error("{}: {}", st.name, st.last_error);
  };
  p.package = c.str("package");
  if (c.has("version"))
    p.pin = c.str("version");
  if (c.has("params"))
    p.params = c.scalar_map("params");
  p.work_dir = ctx.state_dir("workflows");
  p.predict_timeout = std::chrono::milliseconds{c.integer("predict_timeout") / 1'000'000};
  p.train_timeout = std::chrono::milliseconds{c.integer("train_timeout") / 1'000'000};
  p.memory_limit = static_cast<uint64_t>(c.integer("memory_limit"));
  p.max_in_flight = static_cast<size_t>(c.integer("max_in_flight"));
  if (auto sec = ctx.f.sections.find("workflows"); sec != ctx.f.sections.end())
    if (auto e = sec->second.find(""); e != sec->second.end())
      p.tdp_w = e->second.number("tdp");
  if (c.has("window")) {
    auto& w = c.object("window");
    if (w.has("size")) {
      p.window = static_cast<size_t>(w.integer("size"));
      p.window_step = w.has("step") ? static_cast<size_t>(w.integer("step")) : p.window;
    } else if (w.has("span")) {
      p.span = w.integer("span");
      p.span_every = w.has("every") ? w.integer("every") : p.span;
    }
  }
  if (c.has("train")) {
    auto& t = c.object("train");
    p.train = true;
    p.data.storage = t.str("storage");
    p.data.streams = t.strings("stream");
    p.data.last = static_cast<uint64_t>(t.integer("last"));
    p.data.min_records = static_cast<uint64_t>(t.integer("min_records"));
    if (t.has("since"))
      p.data.since = t.integer("since");
    if (t.has("from"))
      p.data.from = parse_time(t.str("from")).value_or(INT64_MIN);
    if (t.has("to"))
      p.data.to = parse_time(t.str("to")).value_or(INT64_MAX);
    p.when = parse_when(t.str("when")).value_or(train_when{});
    p.storage = ctx.lookup(p.data.storage);
    auto* decl = ctx.f.find(p.data.storage);
    if (!p.storage || !decl || decl->k->name != "storage")
      refuse("train.storage '" + p.data.storage + "' is not a storage actor");
  }
  if (c.has("model_from")) {
    p.model_from_name = c.str("model_from");
    p.model_poll = std::chrono::nanoseconds{c.integer("model_poll")};
    p.model_from = ctx.lookup(p.model_from_name);
    if (!p.model_from)
      refuse("model_from '" + p.model_from_name
             + "' is not running (a workflow on this "
               "node must be defined above "
             + ctx.decl.name + ")");
  }
  if (!ctx.workflows) {
    refuse("no workflow registry (internal)");
  } else if (is_path(p.package)) {
    // A zip named by path: stored as a version like a dropped one, and pinned to it.
    auto path = ctx.f.resolve(p.package);
    auto bytes = read_zip_file(path);
    auto added = bytes ? ctx.workflows->add_package(*bytes, path.string())
                       : expected<add_package_result>{bytes.err()};
    if (!added) {
      refuse("cannot deploy " + path.string() + ": " + added.err().message);
    } else {
      p.package = added->version.name;
      p.pin = added->version.sha256;
    }
  }
  // Detached: calls into the worker block until it answers.
  return ctx.sys.spawn<caf::detached>(workflow, std::move(p), std::move(st), ctx.workflows,
                                      ctx.live, ctx.downstream);
}

/// What `fabrik check` can know before running: the settings fit together, and for a
/// package named by path, that it is valid and its parameters and window match.
void check_workflow(const flow& f, const actor_decl& a, const std::string& file,
                    std::vector<diagnostic>& diags) {
  auto report = [&](const std::string& setting, std::string message, bool warning = false) {
    diags.push_back(actor_diagnostic(a, file, setting, std::move(message), warning));
  };
  auto& c = a.settings;
  std::optional<package_info> info;
  if (is_path(c.str("package"))) {
    auto read = read_package(f.resolve(c.str("package")));
    if (!read)
      report("package", "package " + c.str("package") + ": " + read.err().message);
    else
      info = std::move(*read);
  } else if (!std::all_of(c.str("package").begin(), c.str("package").end(), [](char ch) {
               return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'
                      || ch == '-';
             })) {
    report("package", "package '" + c.str("package")
                        + "' is neither a workflow name ([a-z0-9_-]+) nor a path to a .zip");
  }
  if (c.has("model_from")) {
    auto& from = c.str("model_from");
    auto* d = f.find(from);
    if (c.has("train"))
      report("model_from", "model_from and train exclude each other: a workflow either "
                           "trains its models or serves another's");
    else if (!d)
      report("model_from", "model_from names no actor: '" + from + "'");
    else if (d->k->name != "workflow" || d->name == a.name)
      report("model_from", "model_from '" + from + "' must be another workflow actor");
  }
  if (c.has("train")) {
    auto& t = c.object("train");
    auto& storage = t.str("storage");
    auto* d = f.find(storage);
    if (!d)
      report("train", "train.storage names no actor: '" + storage + "'");
    else if (d->k->name != "storage")
      report("train",
             "train.storage '" + storage + "' is a " + std::string{d->k->name} + ", not a storage");
    if (auto w = parse_when(t.str("when")); !w)
      report("train", w.err().message);
    for (const char* key : {"from", "to"})
      if (t.has(key))
        if (auto x = parse_time(t.str(key)); !x)
          report("train", "train." + std::string{key} + ": " + x.err().message);
    if (info && info->manifest.kind == workflow_kind::process_input)
      report("train", "package " + info->manifest.name
                        + " is predict-only (process_input): it cannot train");
  }
  if (c.has("window")) {
    auto& w = c.object("window");
    if (w.has("size") == w.has("span"))
      report("window", "window needs either size (records) or span (time), not both or neither");
    if (w.has("span") && w.has("step"))
      report("window", "window.step counts records; a time window (span) takes every");
    if (w.has("size") && w.has("every"))
      report("window", "window.every is for time windows (span); a count window takes step");
  }
  if (!info)
    return;
  if (c.has("window") && !info->manifest.images.empty())
    report("window", "package " + info->manifest.name
                       + " takes images, which go with samples of one record: remove window");
  if (c.has("params")) {
    std::vector<std::string> errors;
    effective_params(info->manifest, c.scalar_map("params"), errors);
    for (auto& e : errors)
      report("params", e);
  }
  if (c.has("window") && c.object("window").has("size")) {
    auto it = info->manifest.parameters.find("window");
    auto size = c.object("window").integer("size");
    if (it != info->manifest.parameters.end())
      if (auto* n = std::get_if<int64_t>(&it->second); n && *n != size)
        report("window",
               "window.size " + std::to_string(size)
                 + " differs from the package's window parameter " + std::to_string(*n),
               true);
  }
}

const kind workflow_kind_decl{
  .name = "workflow",
  .summary = "runs a Python workflow package: trains it on stored records, predicts on live ones",
  .role = kind_role::stage,
  .settings = &workflow_settings,
  .spawn = &spawn_workflow,
  .details = "The package runs in its own fabrik-worker process (CPython embedded); a crash, hang "
             "or memory blow-up there fails that call and restarts the worker, never the engine. "
             "For every incoming sample the actor emits a prediction record on stream "
             "ACTOR/INPUT_STREAM with the workflow's outputs plus workflow, version, model and "
             "compute_ms (time inside the worker). A new version (a zip dropped into the watched "
             "directory) or a retrained model is prepared in a second worker and swapped in "
             "between two batches. Records that arrive before the first model get no prediction "
             "(counted as unserved in the status); a workflow that does not train holds them "
             "while its package deploys. Every training run is stored with its "
             "measurements: `fabrik runs`.",
  .check = &check_workflow,
};

FABRIK_REGISTER_KIND(workflow_kind_decl);

} // namespace
} // namespace fabrik

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fabrik::job_done)
