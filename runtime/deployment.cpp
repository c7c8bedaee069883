#include "runtime/deployment.hpp"

#include "core/time.hpp"
#include "runtime/measure.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <thread>
#include <unistd.h>

namespace fabrik {

// -- inputs ----------------------------------------------------------------------------

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

void append_inputs(const workflow_manifest& m, const record& r, std::vector<double>& out) {
  for (auto& name : m.inputs)
    out.push_back(as_number(r.find(name)));
}

void append_images(const workflow_manifest& m, const record& r, std::vector<worker::image>& out) {
  auto integer = [&](const char* name) -> int64_t {
    auto* v = r.find(name);
    return v && std::holds_alternative<int64_t>(*v) ? std::get<int64_t>(*v) : 0;
  };
  for (auto& name : m.images) {
    worker::image img;
    if (auto* v = r.find(name); v && std::holds_alternative<bytes>(*v)) {
      img.data = std::get<bytes>(*v).data;
      img.width = integer("width");
      img.height = integer("height");
      if (auto* f = r.find("pixel_format"); f && std::holds_alternative<std::string>(*f))
        img.pixel_format = std::get<std::string>(*f);
      img.present = true;
    }
    out.push_back(std::move(img));
  }
}

worker::dataset to_dataset(const workflow_manifest& m, const std::vector<record>& records) {
  worker::dataset d;
  d.columns = m.inputs;
  d.image_names = m.images;
  std::vector<double> row;
  for (auto& r : records) {
    row.clear();
    append_inputs(m, r, row);
    d.add_row(row);
    append_images(m, r, d.images);
  }
  return d;
}

namespace {

/// Labels of `records` in the label field's own type: text when any is text, integers when
/// all are, else numbers.
worker::labels labels_of(const std::vector<const value*>& vs) {
  bool any_text = false, all_int = true;
  for (auto* v : vs) {
    any_text |= std::holds_alternative<std::string>(*v);
    all_int &= std::holds_alternative<int64_t>(*v) || std::holds_alternative<bool>(*v);
  }
  if (any_text) {
    std::vector<std::string> out;
    for (auto* v : vs)
      out.push_back(std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v)
                                                            : nlohmann::json(as_number(v)).dump());
    return out;
  }
  if (all_int) {
    std::vector<int64_t> out;
    for (auto* v : vs)
      out.push_back(static_cast<int64_t>(as_number(v)));
    return out;
  }
  std::vector<double> out;
  for (auto* v : vs)
    out.push_back(as_number(v));
  return out;
}

} // namespace

nlohmann::json effective_params(const workflow_manifest& m,
                                const std::map<std::string, std::string>& overrides,
                                std::vector<std::string>& errors) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& [name, v] : m.parameters)
    std::visit(
      [&, &name = name](auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>)
          out[name] = nullptr;
        else
          out[name] = x;
      },
      v);
  for (auto& [name, text] : overrides) {
    auto it = m.parameters.find(name);
    if (it == m.parameters.end()) {
      std::string valid;
      for (auto& [n, _] : m.parameters)
        valid += (valid.empty() ? "" : ", ") + n;
      errors.push_back("params." + name + ": " + m.name + " has no parameter '" + name + "'"
                       + (valid.empty() ? " (it has none)" : "; it has: " + valid));
      continue;
    }
    // The default's type decides; a parameter whose default is null takes any scalar.
    auto bad = [&](const char* type) {
      errors.push_back("params." + name + ": '" + text + "' is not " + type
                       + " (the type of the package's default)");
    };
    if (text == "null" || text == "~") {
      out[name] = nullptr;
    } else if (std::holds_alternative<bool>(it->second)) {
      if (text == "true" || text == "false")
        out[name] = text == "true";
      else
        bad("true or false");
    } else if (std::holds_alternative<int64_t>(it->second)) {
      char* end = nullptr;
      errno = 0;
      long long n = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno == ERANGE)
        bad("an integer");
      else
        out[name] = static_cast<int64_t>(n);
    } else if (std::holds_alternative<double>(it->second)) {
      char* end = nullptr;
      double d = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0')
        bad("a number");
      else
        out[name] = d;
    } else if (std::holds_alternative<std::string>(it->second)) {
      out[name] = text;
    } else {
      // null default: read the text as YAML would (number, boolean, else text)
      char* end = nullptr;
      long long n = std::strtoll(text.c_str(), &end, 10);
      if (!text.empty() && *end == '\0') {
        out[name] = static_cast<int64_t>(n);
        continue;
      }
      double d = std::strtod(text.c_str(), &end);
      if (!text.empty() && *end == '\0')
        out[name] = d;
      else if (text == "true" || text == "false")
        out[name] = text == "true";
      else
        out[name] = text;
    }
  }
  return out;
}

expected<train_selection> with_overrides(train_selection base, const nlohmann::json& j) {
  if (j.is_null())
    return base;
  if (!j.is_object())
    return make_error(ec::invalid_argument, "a data selection is a JSON object");
  auto bad = [](const std::string& key, const std::string& why) {
    return make_error(ec::invalid_argument, key + ": " + why);
  };
  for (auto& [key, v] : j.items()) {
    if (key == "stream") {
      std::vector<std::string> streams;
      if (v.is_string())
        streams.push_back(v.get<std::string>());
      else if (v.is_array())
        for (auto& x : v)
          if (x.is_string())
            streams.push_back(x.get<std::string>());
      if (streams.empty() || (v.is_array() && streams.size() != v.size()))
        return bad(key, "a stream name or a list of them");
      base.streams = std::move(streams);
    } else if (key == "last" || key == "min_records") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() == 0)
        return bad(key, "a positive number of records");
      (key == "last" ? base.last : base.min_records) = v.get<uint64_t>();
    } else if (key == "since") {
      auto d = v.is_string() ? parse_duration(v.get<std::string>())
                             : expected<int64_t>{make_error(ec::invalid_argument, "not text")};
      if (!d || *d <= 0)
        return bad(key, "a duration such as 7d or 12h");
      base.since = *d;
    } else if (key == "from" || key == "to") {
      auto t = v.is_string() ? parse_time(v.get<std::string>())
                             : expected<int64_t>{make_error(ec::invalid_argument, "not text")};
      if (!t)
        return bad(key, v.is_string() ? t.err().message : "an RFC 3339 time");
      (key == "from" ? base.from : base.to) = *t;
    } else if (key == "label") {
      if (!v.is_string() || v.get<std::string>().empty())
        return bad(key, "the name of the label field");
      base.label = v.get<std::string>();
    } else {
      return make_error(ec::invalid_argument, "unknown key '" + key
                                                + "'; a data selection takes stream, last, "
                                                  "since, from, to, label, min_records");
    }
  }
  return base;
}

std::string train_selection::describe() const {
  std::string out;
  for (auto& s : streams)
    out += (out.empty() ? "" : ", ") + s;
  out += " last " + std::to_string(last);
  if (since > 0)
    out += " since " + format_duration(since);
  if (from != INT64_MIN)
    out += " from " + format_time(from);
  if (to != INT64_MAX)
    out += " to " + format_time(to);
  if (!label.empty())
    out += " label " + label;
  return out;
}

// -- jobs ------------------------------------------------------------------------------

namespace {

int64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now()
                                                              - since)
    .count();
}

std::string with_traceback(const worker_client& w, const error& e) {
  auto& f = w.last_failure();
  return f.traceback.empty() ? e.message : e.message + "\n" + f.traceback;
}

void add_logs(run_record& run, const call_report& rep) {
  constexpr size_t max_logs = 1000; // the worker bounds each call; this bounds the run
  for (auto& l : rep.logs)
    if (run.logs.size() < max_logs)
      run.logs.push_back(l);
  if (rep.logs_dropped > 0)
    run.logs.push_back("(" + std::to_string(rep.logs_dropped) + " lines dropped)");
}

/// The package extracted under work_dir/SHA16, once: a complete extraction is renamed into
/// place, so a crash mid-way never leaves a half package that looks whole.
expected<std::filesystem::path> extracted(const job_request& req, std::string_view zip) {
  auto dir = req.work_dir / req.version.sha256.substr(0, 16);
  std::error_code ec_;
  if (std::filesystem::is_directory(dir, ec_))
    return dir;
  std::filesystem::create_directories(req.work_dir, ec_);
  auto tmp = dir;
  tmp += ".tmp" + std::to_string(::getpid());
  std::filesystem::remove_all(tmp, ec_);
  auto x = extract_package_bytes(zip, req.version.name + ".zip", tmp);
  if (!x)
    return x.err();
  std::filesystem::rename(tmp, dir, ec_);
  if (ec_)
    return make_error(ec::io_error,
                      "cannot move " + tmp.string() + " into place: " + ec_.message());
  return dir;
}

expected<std::unique_ptr<deployment>> deploy(job_request& req) {
  auto t0 = std::chrono::steady_clock::now();
  auto bytes = req.reg->package_bytes(req.version.sha256);
  if (!bytes)
    return bytes.err();
  auto info = read_package_bytes(*bytes, req.version.name + ".zip");
  if (!info)
    return info.err();
  std::vector<std::string> errors;
  auto params = effective_params(info->manifest, req.params, errors);
  if (!errors.empty()) {
    std::string all;
    for (auto& e : errors)
      all += (all.empty() ? "" : "; ") + e;
    return make_error(ec::invalid_argument, all);
  }
  auto dir = extracted(req, *bytes);
  if (!dir)
    return dir.err();
  auto w = worker_client::start(req.worker);
  if (!w)
    return w.err();
  auto d =
    std::make_unique<deployment>(deployment{req.version, info->manifest, std::move(*w), {}, {}});
  if (req.pid)
    req.pid->store(d->worker.pid());
  load_request lr;
  lr.package_dir = *dir;
  lr.entry = d->manifest.entry;
  lr.kind = d->manifest.kind;
  lr.params = std::move(params);
  auto loaded = d->worker.load(lr, req.load_timeout);
  if (!loaded)
    return make_error(loaded.err().code, with_traceback(d->worker, loaded.err()));
  d->deployed.deploy_wall = elapsed_ns(t0);
  d->deployed.deploy_cpu = process_cpu_ns(d->worker.pid()).value_or(0);
  d->deployed.peak_rss = loaded->report.stats.peak_rss;
  d->deployed.peak_cpu = loaded->report.stats.peak_cpu;
  return d;
}

/// The stored model for (actor, version), loaded into the worker; false when there is
/// none or it does not fit this worker (then it is trained again, and the log says why).
bool load_stored_model(job_request& req, deployment& d) {
  auto id = req.reg->serving(req.actor, d.version.sha256);
  if (!id || !*id)
    return false;
  auto m = req.reg->model(**id);
  if (!m) {
    spdlog::warn("{}: stored model {} is unreadable: {}", req.actor, id->value().substr(0, 12),
                 m.err().message);
    return false;
  }
  if (auto ok = d.worker.load_model(m->artifact, req.load_timeout); !ok) {
    spdlog::warn("{}: cannot serve stored model {}: {}", req.actor, m->id.substr(0, 12),
                 ok.err().message);
    return false;
  }
  d.model_id = m->id;
  return true;
}

/// Reads the selection, stream after stream; rows without a label are left out when the
/// workflow has a label field (unlabelled live records share streams with labelled ones).
expected<worker::dataset> training_data(job_request& req, workflow_manifest m) {
  if (!req.data.label.empty())
    m.label = req.data.label;
  std::vector<record> rows;
  int64_t from = req.data.from;
  if (req.data.since > 0)
    from = std::max(from, now_ns() - req.data.since);
  for (auto& s : req.data.streams) {
    auto got = req.fetch(s, from, req.data.to, req.data.last);
    if (!got)
      return make_error(got.err().code, "cannot read stream " + s + " from " + req.data.storage
                                          + ": " + got.err().message);
    for (auto& r : *got)
      if (m.label.empty() || r.find(m.label))
        rows.push_back(std::move(r));
  }
  // The dataset's images are views into the records: it keeps them.
  auto kept = std::make_shared<const std::vector<record>>(std::move(rows));
  auto d = to_dataset(m, *kept);
  if (!m.label.empty()) {
    std::vector<const value*> ls;
    for (auto& r : *kept)
      ls.push_back(r.find(m.label));
    d.y = labels_of(ls);
  }
  d.keep_alive = std::move(kept);
  return d;
}

} // namespace

job_result run_job(job_request req) {
  job_result out;
  run_record run;
  auto t_train = std::chrono::steady_clock::now();
  auto finish_run = [&](const std::string& status, const std::string& error) {
    if (run.id == 0)
      return;
    run.status = status;
    run.error = error;
    run.finished = now_ns();
    if (auto ok = req.reg->update_run(run); !ok)
      spdlog::error("{}: cannot store run {}: {}", req.actor, run.id, ok.err().message);
  };
  if (req.run_id != 0) {
    if (auto r = req.reg->run(req.run_id))
      run = std::move(*r);
  }
  auto fail = [&](std::string why) {
    out.result = job_result::outcome::failed;
    out.message = why;
    finish_run("failed", why);
    return std::move(out);
  };
  try {
    if (req.reuse) {
      out.deployed = std::move(req.reuse);
      out.deployed->deployed = {}; // its deploy was measured by the run that made it
      if (req.pid)
        req.pid->store(out.deployed->worker.pid());
    } else {
      auto d = deploy(req);
      if (!d)
        return fail("cannot deploy " + req.version.name + " " + req.version.version + " (#"
                    + std::to_string(req.version.seq) + "): " + d.err().message);
      out.deployed = std::move(*d);
    }
    auto& d = *out.deployed;
    run.m = d.deployed;
    bool needs_model = d.manifest.kind == workflow_kind::fabrik && req.train;
    if (!needs_model || (req.stored_model && req.run_id == 0 && load_stored_model(req, d))) {
      out.result = job_result::outcome::ready;
      out.message = d.model_id.empty() ? "deployed, predict-only"
                                       : "serving stored model " + d.model_id.substr(0, 12);
      return out;
    }
    if (!req.train_now) {
      out.result = job_result::outcome::waiting;
      out.message = "deployed " + d.version.name + " " + d.version.version
                    + " without a model; it serves once a run trains one (fabrik train)";
      return out;
    }
    // Training: read the data first; an automatic run waits for enough of it without
    // storing a run each time it looks.
    auto rapl0 = read_rapl_joules();
    t_train = std::chrono::steady_clock::now();
    auto data = training_data(req, d.manifest);
    // A storage that cannot answer now (on a node that is away) is waited for, like data
    // that is not there yet; a manual run says so at once.
    if (!data && data.err().code == ec::unavailable && req.run_id == 0) {
      out.result = job_result::outcome::waiting;
      out.message = data.err().message;
      return out;
    }
    if (!data)
      return fail(data.err().message);
    if (data->rows() < req.data.min_records) {
      auto why = std::to_string(data->rows()) + " of " + std::to_string(req.data.min_records)
                 + " records to train on in " + req.data.describe();
      if (req.run_id != 0)
        return fail("not enough data: " + why);
      out.result = job_result::outcome::waiting;
      out.message = why;
      return out;
    }
    if (run.id == 0) {
      run.actor = req.actor;
      run.trigger = req.trigger;
      run.started = now_ns();
      auto id = req.reg->begin_run(run);
      if (!id)
        return fail("cannot store the run: " + id.err().message);
      run.id = *id;
    }
    out.run_id = run.id;
    run.workflow = d.version.name;
    run.version = d.version.version;
    run.package_sha256 = d.version.sha256;
    run.data = req.data.describe();
    run.rows = data->rows();
    auto trained = d.worker.train(*data, req.train_timeout);
    auto& stats = trained ? trained->report.stats : d.worker.last_failure().report.stats;
    add_logs(run, trained ? trained->report : d.worker.last_failure().report);
    run.m.train_cpu = stats.cpu.count();
    run.m.peak_cpu = std::max(run.m.peak_cpu, stats.peak_cpu);
    run.m.peak_rss = std::max(run.m.peak_rss, stats.peak_rss);
    auto measure = [&] {
      run.m.train_wall = elapsed_ns(t_train);
      energy_inputs e;
      e.wall_s = static_cast<double>(run.m.deploy_wall + run.m.train_wall) / 1e9;
      e.cpu_s = static_cast<double>(run.m.deploy_cpu + run.m.train_cpu) / 1e9;
      e.rss_gib = static_cast<double>(run.m.peak_rss) / static_cast<double>(1ull << 30);
      e.tdp_w = req.tdp_w;
      e.cores = std::max(1u, std::thread::hardware_concurrency());
      if (auto rapl1 = read_rapl_joules(); rapl0 && rapl1)
        e.rapl_j = rapl_delta(*rapl0, *rapl1, read_rapl_range_joules().value_or(0));
      run.m.energy_j = estimate_energy(e, run.m.energy_method);
    };
    if (!trained) {
      measure();
      auto why = "training failed: " + with_traceback(d.worker, trained.err());
      if (!d.worker.alive())
        out.deployed.reset(); // a dead worker is of no use to anyone
      return fail(why);
    }
    if (auto ok = d.worker.load_model(trained->model, req.load_timeout); !ok) {
      measure();
      return fail("cannot load the trained model: " + ok.err().message);
    }
    measure();
    model_record m;
    m.workflow = d.version.name;
    m.package_sha256 = d.version.sha256;
    m.actor = req.actor;
    m.run = run.id;
    m.created = now_ns();
    m.artifact = std::move(trained->model);
    auto id = req.reg->put_model(std::move(m));
    if (!id)
      return fail("cannot store the model: " + id.err().message);
    d.model_id = *id;
    run.model_id = *id;
    if (auto ok = req.reg->set_serving(req.actor, d.version.sha256, *id); !ok)
      spdlog::warn("{}: cannot record the serving model: {}", req.actor, ok.err().message);
    finish_run("succeeded", "");
    out.result = job_result::outcome::ready;
    out.message = describe_run(run);
    return out;
  } catch (const std::exception& e) {
    return fail(std::string{"internal error: "} + e.what());
  }
}

} // namespace fabrik
