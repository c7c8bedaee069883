// The `workflow` kind: runs a Python workflow package in its own worker process
// (runtime/worker_client.hpp), trains it on records from a storage actor, and emits one
// prediction record per incoming record.
//
// This increment deploys a package named by path; the watched directory, versions in
// LMDB, windows, schedules and `fabrik train` come next (issue 3).

#include "actors/emitter.hpp"
#include "actors/graph.hpp"
#include "actors/kind.hpp"
#include "actors/log.hpp"
#include "actors/time.hpp"
#include "runtime/package.hpp"
#include "runtime/worker_client.hpp"

#include <caf/all.hpp>

#include <cmath>
#include <deque>
#include <map>

namespace fabrik {
namespace {

const settings_table train_settings{{
  {.name = "storage", .type = setting_type::string, .doc = "the storage actor to train from",
   .required = true},
  {.name = "stream", .type = setting_type::string, .doc = "the stream holding labelled records",
   .required = true},
  {.name = "last", .type = setting_type::integer, .default_value = "100000",
   .doc = "train on the newest N records of the stream", .min = 1, .max = 100000000},
  {.name = "min_records", .type = setting_type::integer, .default_value = "1000",
   .doc = "train only once the stream holds at least this many records (checked every 10 s)",
   .min = 1, .max = 100000000},
  {.name = "when", .type = setting_type::choice, .default_value = "on_deploy",
   .doc = "on_deploy: train when the actor starts (the only choice in this version)",
   .choices = {"on_deploy"}},
}};

const settings_table window_settings{{
  {.name = "size", .type = setting_type::integer, .doc = "records per window", .required = true,
   .min = 1, .max = 100000},
  {.name = "step", .type = setting_type::integer,
   .doc = "records between the starts of two windows; default: size (no overlap)", .min = 1,
   .max = 100000},
}};

const settings_table workflow_settings{{
  {.name = "package", .type = setting_type::string,
   .doc = "the workflow package (a zip made by `fabrik package`); a relative path resolves "
          "against the flow file's folder",
   .required = true},
  {.name = "train", .type = setting_type::object,
   .doc = "where and when to train; without it the package must be predict-only",
   .children = &train_settings},
  {.name = "window", .type = setting_type::object,
   .doc = "make one sample of several consecutive records of a stream (e.g. IMU windows)",
   .children = &window_settings},
  {.name = "predict_timeout", .type = setting_type::duration, .default_value = "10s",
   .doc = "longest a batch of predictions may take before the worker is restarted",
   .min = 1e6},
  {.name = "train_timeout", .type = setting_type::duration, .default_value = "10m",
   .doc = "longest a training run may take", .min = 1e9},
  {.name = "memory_limit", .type = setting_type::size, .default_value = "2GiB",
   .doc = "address-space limit of the worker process (RLIMIT_AS)", .min = 64 << 20},
  {.name = "max_in_flight", .type = setting_type::integer, .default_value = "4",
   .doc = "prediction batches sent downstream and not yet acknowledged", .min = 1,
   .max = 1000},
}};

struct workflow_params {
  std::filesystem::path package;
  std::filesystem::path work_dir; ///< DATA_DIR/workflows/ACTOR
  bool train = false;
  std::string train_storage;
  std::string train_stream;
  int64_t train_last = 0;
  int64_t train_min = 1;
  std::chrono::milliseconds predict_timeout{10000};
  std::chrono::milliseconds train_timeout{600000};
  uint64_t memory_limit = 0;
  size_t max_in_flight = 4;
  size_t window = 0;      ///< records per sample; 0: every record is a sample
  size_t window_step = 1; ///< records between two windows of a stream
  caf::actor storage;     ///< resolved at spawn
};

struct workflow_state {
  static inline const char* name = "workflow";
  workflow_params p;
  std::optional<worker_client> worker;
  workflow_manifest manifest;
  std::string package_hash;
  std::string model_id; ///< empty until a model serves
  emitter em;
  uint64_t unserved = 0; ///< records that arrived before the first model
  std::map<std::string, std::deque<record>> windows; ///< the newest records per stream
  std::map<std::string, size_t> since_window;        ///< records since a stream's last window
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
  std::string out = e.message;
  if (!f.traceback.empty())
    out += "\n" + f.traceback;
  return out;
}

double as_number(const value* v) {
  if (!v)
    return std::nan("");
  if (auto* d = std::get_if<double>(v))
    return *d;
  if (auto* i = std::get_if<int64_t>(v))
    return static_cast<double>(*i);
  if (auto* b = std::get_if<bool>(v))
    return *b ? 1.0 : 0.0;
  return std::nan("");
}

/// Appends the manifest's inputs of `r` to `out` (missing or non-numeric values: NaN).
void append_inputs(const workflow_manifest& m, const record& r, std::vector<double>& out) {
  for (auto& name : m.inputs)
    out.push_back(as_number(r.find(name)));
}

/// The records as consecutive rows of a dataset (training, and samples without windows).
worker::dataset to_dataset(const workflow_manifest& m, const std::vector<record>& records) {
  worker::dataset d;
  d.columns = m.inputs;
  std::vector<double> row;
  for (auto& r : records) {
    row.clear();
    append_inputs(m, r, row);
    d.add_row(row);
  }
  return d;
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

/// Extracts the package (once per content hash) and starts a worker serving it.
expected<void> deploy(workflow_state& s) {
  auto info = read_package(s.p.package);
  if (!info)
    return info.err();
  s.manifest = info->manifest;
  s.package_hash = info->sha256;
  auto dir = s.p.work_dir / s.package_hash.substr(0, 16);
  if (!std::filesystem::exists(dir / std::string{manifest_file_name})
      && !std::filesystem::exists(dir / info->entry_file)) {
    std::error_code ec_ignored;
    std::filesystem::remove_all(dir, ec_ignored);
    std::filesystem::create_directories(dir.parent_path());
    if (auto x = extract_package(s.p.package, dir); !x)
      return x.err();
  }
  worker_options wo;
  wo.memory_limit = s.p.memory_limit;
  auto w = worker_client::start(wo);
  if (!w)
    return w.err();
  s.worker.emplace(std::move(*w));
  load_request lr;
  lr.package_dir = dir;
  lr.entry = s.manifest.entry;
  lr.kind = s.manifest.kind;
  if (auto ok = s.worker->load(lr, s.p.train_timeout); !ok)
    return make_error(ok.err().code, describe(*s.worker, ok.err()));
  spdlog::info("{}: deployed {} {} (sha256 {}) in worker {}", s.st.name, s.manifest.name,
               s.manifest.version, s.package_hash.substr(0, 12), s.worker->pid());
  return {};
}

/// Trains on the newest records of the training stream, then serves the new model.
void train(workflow_pointer self) {
  auto& s = self->state;
  scan_request q;
  q.stream = s.p.train_stream;
  q.limit = static_cast<uint64_t>(s.p.train_last);
  q.newest_first = true;
  s.st.state = "training";
  self->request(caf::actor_cast<storage_actor>(s.p.storage), std::chrono::minutes{5},
                query_atom::value, q)
    .then(
      [self](const record_batch& data) {
        auto& s = self->state;
        auto d = to_dataset(s.manifest, data.records);
        std::vector<std::string> labels;
        for (auto& r : data.records) {
          auto* v = r.find(s.manifest.label);
          labels.push_back(!v ? "" : std::holds_alternative<std::string>(*v)
                                       ? std::get<std::string>(*v)
                                       : std::to_string(as_number(v)));
        }
        d.y = labels;
        if (d.rows() < static_cast<size_t>(s.p.train_min)) {
          // A flow may start before there is data enough: look again later.
          s.st.state = "waiting";
          s.st.last_error = std::to_string(d.rows()) + " of " + std::to_string(s.p.train_min)
                            + " records to train on in stream " + s.p.train_stream;
          spdlog::info("{}: {}; trying again in 10 s", s.st.name, s.st.last_error);
          self->delayed_send(self, std::chrono::seconds{10}, tick_atom::value);
          return;
        }
        auto trained = s.worker->train(d, s.p.train_timeout);
        if (!trained) {
          fail(s, "training failed: " + describe(*s.worker, trained.err()), true);
          return;
        }
        auto& rep = trained->report.stats;
        if (auto ok = s.worker->load_model(trained->model, s.p.train_timeout); !ok) {
          fail(s, "cannot load the trained model: " + ok.err().message, true);
          return;
        }
        s.model_id = sha256_hex(trained->model.bytes).substr(0, 12);
        s.st.state = "running";
        s.st.last_error.clear();
        s.st.details["model"] = s.model_id;
        s.st.details["trained_rows"] = std::to_string(d.rows());
        spdlog::info("{}: trained model {} on {} records of {} in {:.0f} ms (worker CPU "
                     "{:.0f} ms, peak RSS {})",
                     s.st.name, s.model_id, d.rows(), s.p.train_stream,
                     std::chrono::duration<double, std::milli>(rep.wall).count(),
                     std::chrono::duration<double, std::milli>(rep.cpu).count(),
                     format_size_approx(rep.peak_rss));
      },
      [self](caf::error& err) {
        fail(self->state, "cannot read training data: " + caf::to_string(err), true);
      });
}

/// The prediction record for input `in`: the outputs plus where they came from.
record prediction(const workflow_state& s, const record& in, const nlohmann::json& outputs,
                  double compute_ms) {
  record r;
  r.stream = s.st.name + "/" + in.stream;
  r.time = in.time;
  r.ingest_time = now_ns();
  r.seq = in.seq;
  r.quality = in.quality;
  for (auto& [k, v] : outputs.items())
    r.fields.push_back({k, to_value(v)});
  r.fields.push_back({"workflow", s.manifest.name});
  r.fields.push_back({"version", s.manifest.version});
  r.fields.push_back({"model", s.model_id});
  r.fields.push_back({"compute_ms", compute_ms});
  return r;
}

void handle_failure(workflow_state& s, const error& e, caf::response_promise& rp) {
  fail(s, "prediction failed: " + describe(*s.worker, e), false);
  if (!s.worker->alive())
    if (auto ok = s.worker->restart(s.p.train_timeout); !ok)
      fail(s, "cannot restart the worker: " + ok.err().message, false);
  rp.deliver(caf::make_error(caf::sec::runtime_error, e.message));
}

void emit(workflow_pointer self, record_batch predictions, uint64_t inputs,
          caf::response_promise rp) {
  auto& s = self->state;
  s.st.out += predictions.records.size();
  s.em.send(std::move(predictions), [rp, inputs]() mutable { rp.deliver(inputs); });
}

/// Siemens AI Inference Server style: process_input(dict) per record; None emits nothing.
void serve_process_input(workflow_pointer self, const record_batch& batch,
                         caf::response_promise rp) {
  auto& s = self->state;
  record_batch predictions;
  for (auto& in : batch.records) {
    nlohmann::json data = nlohmann::json::object();
    for (auto& f : in.fields)
      std::visit([&](auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bytes>)
          data[f.name] = nullptr; // binary values are not passed to process_input
        else
          data[f.name] = v;
      }, f.v);
    auto out = s.worker->process_input(data, s.p.predict_timeout);
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

void serve(workflow_pointer self, const record_batch& batch, caf::response_promise rp) {
  auto& s = self->state;
  if (s.model_id.empty() && s.p.train) {
    // No model yet: nothing to predict with. Holding the batch would also stall the
    // storage the training data comes from (one source feeds both), so it is counted.
    s.unserved += batch.records.size();
    rp.deliver(static_cast<uint64_t>(batch.records.size()));
    return;
  }
  if (s.manifest.kind == workflow_kind::process_input) {
    serve_process_input(self, batch, std::move(rp));
    return;
  }
  // The samples of this batch, each with the record its prediction answers.
  std::vector<const record*> answers;
  worker::dataset samples;
  if (s.p.window == 0) {
    samples = to_dataset(s.manifest, batch.records);
    for (auto& r : batch.records)
      answers.push_back(&r);
  } else {
    samples.columns = s.manifest.inputs;
    samples.window = s.p.window;
    std::vector<double> flat;
    for (auto& r : batch.records) {
      auto& buf = s.windows[r.stream];
      buf.push_back(r);
      if (buf.size() > s.p.window)
        buf.pop_front();
      auto& since = s.since_window[r.stream];
      if (++since < s.p.window_step || buf.size() < s.p.window)
        continue;
      since = 0;
      flat.clear();
      for (auto& w : buf)
        append_inputs(s.manifest, w, flat);
      samples.add_row(flat);
      answers.push_back(&r); // a window's prediction answers its newest record
    }
  }
  auto inputs = static_cast<uint64_t>(batch.records.size());
  if (answers.empty()) {
    emit(self, {}, inputs, std::move(rp));
    return;
  }
  auto out = s.worker->predict(samples, s.p.predict_timeout);
  if (!out) {
    handle_failure(s, out.err(), rp);
    return;
  }
  // compute_ms: time spent inside the worker (the model plus its Python glue), shared by
  // the batch's samples; end-to-end latency minus this is fabrik's own part.
  auto compute_ms = std::chrono::duration<double, std::milli>(out->report.stats.worker_wall).count()
                    / static_cast<double>(answers.size());
  record_batch predictions;
  for (size_t i = 0; i < answers.size() && i < out->outputs.size(); ++i)
    predictions.records.push_back(prediction(s, *answers[i], out->outputs[i], compute_ms));
  emit(self, std::move(predictions), inputs, std::move(rp));
}

caf::behavior workflow(workflow_pointer self, workflow_params p, actor_status st,
                       std::vector<consumer_actor> downstream) {
  auto& s = self->state;
  s.p = std::move(p);
  s.st = std::move(st);
  s.em = emitter{self, std::move(downstream), s.p.max_in_flight, s.st.name};
  if (s.st.state == "failed") {
    // spawn_workflow found the flow unusable and said why.
  } else if (auto ok = deploy(s); !ok) {
    fail(s, "cannot deploy " + s.p.package.string() + ": " + ok.err().message, true);
  } else if (s.p.train) {
    train(self);
  } else {
    s.model_id = "none";
    s.st.state = "running";
  }
  return {
    [=](const record_batch& batch) -> caf::result<uint64_t> {
      auto& s = self->state;
      s.st.in += batch.records.size();
      if (s.st.state == "failed")
        return caf::make_error(caf::sec::runtime_error, s.st.last_error);
      auto rp = self->make_response_promise<uint64_t>();
      serve(self, batch, rp);
      return rp;
    },
    [=](emitter::retry_fn& r) { r.fn(); },
    [=](tick_atom) { train(self); },
    [=](status_atom) {
      auto& s = self->state;
      auto st = s.st;
      st.queue = s.em.in_flight();
      st.details["unserved"] = std::to_string(s.unserved);
      if (s.worker)
        st.details["worker_pid"] = std::to_string(s.worker->pid());
      return st;
    },
  };
}

caf::actor spawn_workflow(spawn_context& ctx) {
  auto& c = ctx.decl.settings;
  workflow_params p;
  p.package = ctx.f.resolve(c.str("package"));
  p.work_dir = ctx.state_dir("workflows");
  p.predict_timeout = std::chrono::milliseconds{c.integer("predict_timeout") / 1'000'000};
  p.train_timeout = std::chrono::milliseconds{c.integer("train_timeout") / 1'000'000};
  p.memory_limit = static_cast<uint64_t>(c.integer("memory_limit"));
  p.max_in_flight = static_cast<size_t>(c.integer("max_in_flight"));
  if (c.has("window")) {
    auto& w = c.object("window");
    p.window = static_cast<size_t>(w.integer("size"));
    p.window_step = w.has("step") ? static_cast<size_t>(w.integer("step")) : p.window;
  }
  actor_status st;
  st.name = ctx.decl.name;
  st.kind = "workflow";
  if (c.has("train")) {
    auto& t = c.object("train");
    p.train = true;
    p.train_storage = t.str("storage");
    p.train_stream = t.str("stream");
    p.train_last = t.integer("last");
    p.train_min = t.integer("min_records");
    p.storage = ctx.lookup(p.train_storage);
    auto* decl = ctx.f.find(p.train_storage);
    if (!p.storage || !decl || decl->k->name != "storage") {
      st.state = "failed";
      st.last_error = "train.storage '" + p.train_storage + "' is not a storage actor";
      spdlog::error("{}: {}", st.name, st.last_error);
    }
  }
  // Detached: calls into the worker block until it answers.
  return ctx.sys.spawn<caf::detached>(workflow, std::move(p), std::move(st), ctx.downstream);
}

/// What `fabrik check` can know before running: the package is valid, the training
/// storage is a storage actor, the window matches the package's own window parameter.
void check_workflow(const flow& f, const actor_decl& a, const std::string& file,
                    std::vector<diagnostic>& diags) {
  auto report = [&](std::string message, bool warning = false) {
    diags.push_back({file, a.line, a.column, "actor '" + a.name + "': " + message, warning});
  };
  auto& c = a.settings;
  auto info = read_package(f.resolve(c.str("package")));
  if (!info)
    report("package " + c.str("package") + ": " + info.err().message);
  if (c.has("train")) {
    auto& storage = c.object("train").str("storage");
    auto* d = f.find(storage);
    if (!d)
      report("train.storage names no actor: '" + storage + "'");
    else if (d->k->name != "storage")
      report("train.storage '" + storage + "' is a " + std::string{d->k->name}
             + ", not a storage");
    if (info && info->manifest.kind == workflow_kind::process_input)
      report("package " + info->manifest.name + " is predict-only (process_input): it cannot "
             "train");
  }
  if (info && c.has("window")) {
    auto it = info->manifest.parameters.find("window");
    auto size = c.object("window").integer("size");
    if (it != info->manifest.parameters.end())
      if (auto* n = std::get_if<int64_t>(&it->second); n && *n != size)
        report("window.size " + std::to_string(size) + " differs from the package's window "
               "parameter " + std::to_string(*n), true);
  }
}

const kind workflow_kind_decl{
  .name = "workflow",
  .summary = "runs a Python workflow package: trains it on stored records, predicts on live ones",
  .role = kind_role::stage,
  .settings = &workflow_settings,
  .spawn = &spawn_workflow,
  .details =
    "The package runs in its own fabrik-worker process (CPython embedded); a crash, hang "
    "or memory blow-up there fails that call and restarts the worker, never the engine. "
    "For every incoming record the actor emits a prediction record on stream "
    "ACTOR/INPUT_STREAM with the workflow's outputs plus workflow, version, model and "
    "compute_ms (time inside the worker). Records that arrive before the first model get no prediction (counted as "
    "unserved in the status); a training run with no data yet is retried every 10 s.",
  .check = &check_workflow,
};

FABRIK_REGISTER_KIND(workflow_kind_decl);

} // namespace
} // namespace fabrik
