// The worker contract against the real fabrik-worker binary (built beside this test), with
// Debian's CPython 3.11, numpy and scikit-learn: tiny packages are written to temp dirs.

#include "runtime/package.hpp"
#include "runtime/protocol.hpp"
#include "runtime/worker_client.hpp"
#include "tests/support/support.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>

using namespace fabrik;
using namespace std::chrono_literals;

namespace {

using test_support::scratch_dir;
using test_support::write_file;

// Generous: the test machine is shared. No test asserts how long anything took.
constexpr auto call_timeout = 120s;

/// The 1-based line of the first line of `text` that contains `needle`.
int line_of(const std::string& text, const std::string& needle) {
  auto pos = text.find(needle);
  REQUIRE(pos != std::string::npos);
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + pos, '\n'));
}

worker_client start_worker(worker_options opts = {}) {
  auto w = worker_client::start(std::move(opts));
  if (!w)
    FAIL("cannot start the worker: " << w.err().what());
  return std::move(*w);
}

load_request request_for(const scratch_dir& pkg, const std::string& entry,
                         workflow_kind kind = workflow_kind::fabrik,
                         nlohmann::json params = nlohmann::json::object()) {
  return {pkg.path(), entry, kind, std::move(params)};
}

void load_ok(worker_client& w, const load_request& r) {
  auto loaded = w.load(r, call_timeout);
  if (!loaded)
    FAIL("load failed: " << loaded.err().what() << "\n" << w.last_failure().traceback);
}

/// One sample with the given values.
worker::dataset one_row(std::vector<std::string> columns, std::vector<double> values) {
  worker::dataset d;
  d.columns = std::move(columns);
  d.values = std::move(values);
  return d;
}

/// Three classes in 16 dimensions with learnable structure: each class shifts a different
/// subset of the measurements, plus noise; labels as strings.
worker::dataset pcb_like(size_t rows, uint32_t seed) {
  static const char* names[] = {"OK", "error", "pseudo_error"};
  std::mt19937 rng{seed};
  std::normal_distribution<double> noise{0.0, 1.0};
  worker::dataset d;
  for (int i = 0; i < 16; ++i)
    d.columns.push_back("m" + std::to_string(i));
  std::vector<std::string> y;
  for (size_t r = 0; r < rows; ++r) {
    auto cls = static_cast<int>(r % 3);
    for (int i = 0; i < 16; ++i) {
      double shift = (cls == 1 && i < 5) ? 2.5 : (cls == 2 && i >= 10) ? -2.5 : 0.0;
      d.values.push_back(10.0 + shift + noise(rng));
    }
    y.push_back(names[cls]);
  }
  d.y = std::move(y);
  return d;
}

const std::string forest_py = R"(import numpy as np
from sklearn.ensemble import RandomForestClassifier


def train(dataset, params):
    assert dataset.X.dtype == np.float64 and dataset.X.flags.c_contiguous
    assert dataset.X.shape == (len(dataset), len(dataset.columns))
    print("training on %d rows of %d columns" % dataset.X.shape)
    clf = RandomForestClassifier(n_estimators=params.get("trees", 50), random_state=0)
    clf.fit(dataset.X, dataset.y)
    return clf


def predict(model, sample):
    return {"label": model.predict(sample.X)[0], "via": "predict"}


def predict_batch(model, samples):
    return [{"label": label, "via": "batch"} for label in model.predict(samples.X)]
)";

// Every way user code can misbehave, chosen by the sample's "mode".
const std::string misbehave_py = R"(import ctypes
import os
import sys


def predict(model, sample):
    mode = int(sample["mode"])
    if mode == 1:
        return fail(mode)
    if mode == 2:
        ctypes.string_at(0)
    if mode == 3:
        while True:
            pass
    if mode == 4:
        hog = []
        while True:
            hog.append(bytearray(64 << 20))
    if mode == 5:
        sys.exit(3)
    if mode == 6:
        os._exit(5)
    if mode == 7:
        return [1, 2]
    if mode == 8:
        for i in range(5000):
            print("line", i)
        os.write(2, b"written to fd 2 by C code\n")
        return {"printed": 5000}
    return {"mode": mode, "pid": os.getpid()}


def fail(mode):
    raise ValueError("mode %d is broken" % mode)
)";

worker::dataset mode(int m) { return one_row({"mode"}, {static_cast<double>(m)}); }

} // namespace

// -- protocol -------------------------------------------------------------------------

TEST_CASE("frames and datasets survive encoding", "[worker][protocol]") {
  worker::dataset d;
  d.columns = {"a", "b"};
  d.window = 2;
  d.values = {1, 2, 3, 4, 5, 6, 7, 8, std::nan(""), 10, 11, 12};
  d.y = std::vector<int64_t>{7, -1, 3};
  REQUIRE(d.rows() == 3);
  REQUIRE(d.check());
  std::string model = "model bytes";
  worker::message_builder b{worker::message_type::predict};
  b.header()["model"] = b.add_blob(model);
  b.header()["samples"] = worker::encode_dataset(d, b);
  auto out = b.build();
  REQUIRE(out);
  auto bytes = worker::to_bytes(*out);
  REQUIRE(bytes.size() == out->size());
  auto prefix = worker::parse_frame_prefix(reinterpret_cast<const unsigned char*>(bytes.data()));
  REQUIRE(prefix);
  CHECK(prefix->first == bytes.size() - worker::frame_prefix_size);
  CHECK(prefix->second == worker::message_type::predict);
  auto m = worker::decode_message(prefix->second, bytes.substr(worker::frame_prefix_size));
  REQUIRE(m);
  auto slice = m->blob_slice(m->header["model"]);
  REQUIRE(slice);
  CHECK(*slice == model);
  auto back = worker::decode_dataset(m->header["samples"], *m);
  REQUIRE(back);
  CHECK(back->columns == d.columns);
  CHECK(back->window == 2);
  CHECK(std::get<std::vector<int64_t>>(back->y) == std::get<std::vector<int64_t>>(d.y));
  REQUIRE(back->values.size() == d.values.size());
  CHECK(std::isnan(back->values[8]));
  CHECK(back->values[11] == 12);

  SECTION("string labels travel as JSON") {
    d.y = std::vector<std::string>{"x", "y", "z"};
    worker::message_builder b2{worker::message_type::train};
    b2.header()["dataset"] = worker::encode_dataset(d, b2);
    auto m2 =
      worker::decode_message(worker::message_type::train, worker::to_bytes(*b2.build()).substr(5));
    REQUIRE(m2);
    auto d2 = worker::decode_dataset(m2->header["dataset"], *m2);
    REQUIRE(d2);
    CHECK(std::get<std::vector<std::string>>(d2->y) == std::vector<std::string>{"x", "y", "z"});
  }
}

TEST_CASE("malformed frames and datasets are refused", "[worker][protocol]") {
  unsigned char unknown[5] = {0, 0, 0, 0, 42};
  CHECK_FALSE(worker::parse_frame_prefix(unknown));
  unsigned char huge[5] = {0xff, 0xff, 0xff, 0xff, 5};
  CHECK_FALSE(worker::parse_frame_prefix(huge));
  CHECK_FALSE(worker::decode_message(worker::message_type::result, "ab"));
  CHECK_FALSE(worker::decode_message(worker::message_type::result, std::string("\x09\0\0\0{}", 6)));
  worker::dataset d = one_row({"a", "b"}, {1, 2, 3});
  CHECK(d.check().err().code == ec::invalid_argument);
  d.values.push_back(4);
  d.y = std::vector<double>{1.0};
  CHECK(d.check().err().code == ec::invalid_argument); // 2 rows, 1 label
}

TEST_CASE("a model from other library versions is named as such", "[worker][protocol]") {
  worker::versions running{"3.11.2", "1.24.2", "1.2.1"};
  CHECK_FALSE(worker::version_conflict({"3.11.4", "1.24.2", "1.2.1"}, running));
  auto c = worker::version_conflict({"3.12.1", "1.24.2", "1.3.0"}, running);
  REQUIRE(c);
  CHECK_THAT(*c, Catch::Contains("Python 3.12.1 (this worker: 3.11.2)"));
  CHECK_THAT(*c, Catch::Contains("scikit-learn 1.3.0 (this worker: 1.2.1)"));
  CHECK_THAT(*c, !Catch::Contains("numpy"));
}

// -- the worker -----------------------------------------------------------------------

TEST_CASE("hello reports the protocol and the library versions", "[worker]") {
  auto w = start_worker();
  auto& info = w.info();
  CHECK(info.protocol == worker::protocol_version);
  CHECK(info.pid == w.pid());
  CHECK_THAT(info.versions.python, Catch::StartsWith("3.11."));
  CHECK_FALSE(info.versions.numpy.empty());
  CHECK_FALSE(info.versions.sklearn.empty());
  auto again = w.hello(call_timeout);
  REQUIRE(again);
  CHECK(again->versions == info.versions);
}

TEST_CASE("a protocol version mismatch is refused naming both versions", "[worker]") {
  SECTION("the engine speaks another version") {
    worker_options o;
    o.test_client_protocol = 99;
    auto w = worker_client::start(o);
    REQUIRE_FALSE(w);
    CHECK(w.err().code == ec::version_mismatch);
    CHECK_THAT(w.err().message, Catch::Contains("engine speaks version 99"));
    CHECK_THAT(w.err().message,
               Catch::Contains("speaks version " + std::to_string(worker::protocol_version)));
  }
  SECTION("the worker speaks another version") {
    worker_options o;
    o.test_worker_protocol = 7;
    auto w = worker_client::start(o);
    REQUIRE_FALSE(w);
    CHECK(w.err().code == ec::version_mismatch);
    CHECK_THAT(w.err().message, Catch::Contains("worker speaks version 7"));
    auto ours = std::to_string(worker::protocol_version);
    CHECK_THAT(w.err().message, Catch::Contains("engine speaks version " + ours));
  }
}

TEST_CASE("a missing worker binary is a clear error", "[worker]") {
  worker_options o;
  o.binary = "/nonexistent/fabrik-worker";
  auto w = worker_client::start(o);
  REQUIRE_FALSE(w);
  CHECK(w.err().code == ec::not_found);
  CHECK_THAT(w.err().message, Catch::Contains("/nonexistent/fabrik-worker"));
}

TEST_CASE("a RandomForest trains and travels as bytes to predict in another worker",
          "[worker][sklearn]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", forest_py);
  auto trainer = start_worker();
  load_ok(trainer, request_for(pkg, "model", workflow_kind::fabrik, {{"trees", 40}}));
  auto train_set = pcb_like(600, 1);
  auto trained = trainer.train(train_set, call_timeout);
  REQUIRE(trained);
  CHECK(trained->model.format == worker::model_format::pickle);
  CHECK(trained->model.trained_with == trainer.info().versions);
  CHECK(trained->model.bytes.size() > 1000);
  CHECK(trained->report.logs == std::vector<std::string>{"training on 600 rows of 16 columns"});
  CHECK(trained->report.stats.cpu.count() > 0);
  CHECK(trained->report.stats.peak_rss > 10u << 20);

  // A fresh worker serves the artifact: nothing but the bytes carries the model over.
  auto server = start_worker();
  load_ok(server, request_for(pkg, "model"));
  REQUIRE(server.load_model(trained->model, call_timeout));
  auto test_set = pcb_like(300, 2);
  auto predicted = server.predict(test_set, call_timeout);
  REQUIRE(predicted);
  CHECK(predicted->batch);
  REQUIRE(predicted->outputs.size() == 300);
  auto& truth = std::get<std::vector<std::string>>(test_set.y);
  size_t right = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    CHECK(predicted->outputs[i]["via"] == "batch");
    right += predicted->outputs[i]["label"] == truth[i];
  }
  // Chance is 1/3; a pipeline that scrambles columns, rows or labels stays near it.
  CHECK(static_cast<double>(right) / truth.size() > 0.9);

  // One sample goes through predict(), and agrees with the batch.
  for (size_t i = 0; i < 5; ++i) {
    auto first = test_set.values.begin() + static_cast<std::ptrdiff_t>(i * 16);
    std::vector<double> row(first, first + 16);
    auto one = server.predict(one_row(test_set.columns, row), call_timeout);
    REQUIRE(one);
    CHECK_FALSE(one->batch);
    CHECK(one->outputs.at(0)["via"] == "predict");
    CHECK(one->outputs.at(0)["label"] == predicted->outputs[i]["label"]);
  }

  SECTION("a model of other library versions is refused before it is sent") {
    auto foreign = trained->model;
    foreign.trained_with.sklearn = "0.24.2";
    auto r = server.load_model(foreign, call_timeout);
    REQUIRE_FALSE(r);
    CHECK(r.err().code == ec::version_mismatch);
    CHECK_THAT(r.err().message, Catch::Contains("scikit-learn 0.24.2 (this worker: "
                                                + server.info().versions.sklearn + ")"));
    CHECK(server.predict(one_row(test_set.columns, std::vector<double>(16, 10.0)),
                         call_timeout)); // the loaded model still serves
  }
}

TEST_CASE("the dataset and sample objects follow the documented contract", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "shapes.py", R"(import numpy as np


def train(dataset, params):
    if params.get("raw"):
        return b"\x00raw model"
    return {"shape": list(dataset.X.shape), "dtype": str(dataset.X.dtype),
            "columns": dataset.columns, "window": dataset.window,
            "b": dataset["b"].tolist(), "y": None if dataset.y is None else dataset.y.tolist(),
            "y_dtype": None if dataset.y is None else str(dataset.y.dtype),
            "writable": bool(dataset.X.flags.writeable)}


def predict(model, sample):
    a = sample["a"]
    return {"model": model if not isinstance(model, bytes) else model.decode("latin-1"),
            "keys": sorted(sample), "x": list(sample.x.shape), "X": list(sample.X.shape),
            "a": a if isinstance(a, float) else a.tolist(),
            "nan": float("nan"), "np": np.int64(7), "arr": np.arange(3)}
)");
  auto w = start_worker();
  load_ok(w, request_for(pkg, "shapes"));

  worker::dataset d;
  d.columns = {"a", "b"};
  d.values = {1, 2, 3, 4, 5, 6};
  d.y = std::vector<double>{0.5, 1.5, 2.5};
  auto t = w.train(d, call_timeout);
  REQUIRE(t);
  REQUIRE(w.load_model(t->model, call_timeout));
  auto p = w.predict(one_row({"a", "b"}, {1, 2}), call_timeout);
  REQUIRE(p);
  auto& out = p->outputs.at(0);
  auto& model = out["model"];
  CHECK(model["shape"] == nlohmann::json::array({3, 2}));
  CHECK(model["dtype"] == "float64");
  CHECK(model["columns"] == nlohmann::json::array({"a", "b"}));
  CHECK(model["window"] == 0);
  CHECK(model["b"] == nlohmann::json::array({2.0, 4.0, 6.0}));
  CHECK(model["y"] == nlohmann::json::array({0.5, 1.5, 2.5}));
  CHECK(model["y_dtype"] == "float64");
  CHECK(model["writable"] == true);
  CHECK(out["keys"] == nlohmann::json::array({"a", "b"}));
  CHECK(out["x"] == nlohmann::json::array({2}));
  CHECK(out["X"] == nlohmann::json::array({1, 2}));
  CHECK(out["a"] == 1.0);
  CHECK(out["nan"].is_null()); // NaN is not JSON
  CHECK(out["np"] == 7);
  CHECK(out["arr"] == nlohmann::json::array({0, 1, 2}));

  SECTION("windows: X is rows x window x columns, a sample's value is the window") {
    worker::dataset win;
    win.columns = {"a", "b"};
    win.window = 3;
    win.values = {1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60};
    win.y = std::vector<std::string>{"left", "right"};
    auto tw = w.train(win, call_timeout);
    REQUIRE(tw);
    REQUIRE(w.load_model(tw->model, call_timeout));
    auto pw = w.predict(one_row({"a", "b"}, {0, 0}), call_timeout);
    REQUIRE(pw);
    auto& m = pw->outputs.at(0)["model"];
    CHECK(m["shape"] == nlohmann::json::array({2, 3, 2}));
    CHECK(m["window"] == 3);
    CHECK(m["b"] == nlohmann::json::parse("[[10,20,30],[40,50,60]]"));
    CHECK(m["y"] == nlohmann::json::array({"left", "right"}));
    CHECK(m["y_dtype"] == "object");
    win.values.resize(6);
    win.y = {};
    auto one = w.predict(win, call_timeout);
    REQUIRE(one);
    CHECK(one->outputs.at(0)["x"] == nlohmann::json::array({3, 2}));
    CHECK(one->outputs.at(0)["a"] == nlohmann::json::array({1.0, 2.0, 3.0}));
  }

  SECTION("bytes returned by train() are the model, as they are") {
    REQUIRE(w.update_parameters({{"raw", true}}, call_timeout));
    auto raw = w.train(d, call_timeout);
    REQUIRE(raw);
    CHECK(raw->model.format == worker::model_format::bytes);
    CHECK(raw->model.bytes == std::string("\0raw model", 10));
    REQUIRE(w.load_model(raw->model, call_timeout));
    auto pr = w.predict(one_row({"a", "b"}, {1, 2}), call_timeout);
    REQUIRE(pr);
    CHECK(pr->outputs.at(0)["model"] == std::string("\0raw model", 10));
  }
}

TEST_CASE("predict_batch is used for batches when present and predict() otherwise", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "both.py", R"(
def predict(model, sample):
    return {"via": "predict", "a": sample["a"]}


def predict_batch(model, samples):
    return [{"via": "batch", "a": float(a), "n": len(samples)} for a in samples["a"]]
)");
  write_file(pkg / "single.py", R"(
calls = []


def predict(model, sample):
    calls.append(sample["a"])
    return {"via": "predict", "calls": len(calls)}
)");
  worker::dataset three = one_row({"a"}, {1, 2, 3});

  auto both = start_worker();
  load_ok(both, request_for(pkg, "both"));
  auto batch = both.predict(three, call_timeout);
  REQUIRE(batch);
  CHECK(batch->batch);
  REQUIRE(batch->outputs.size() == 3);
  CHECK(batch->outputs[2]["via"] == "batch");
  CHECK(batch->outputs[2]["a"] == 3.0);
  CHECK(batch->outputs[2]["n"] == 3);
  auto one = both.predict(one_row({"a"}, {5}), call_timeout);
  REQUIRE(one);
  CHECK_FALSE(one->batch);
  CHECK(one->outputs.at(0)["via"] == "predict");

  auto single = start_worker();
  load_ok(single, request_for(pkg, "single"));
  auto looped = single.predict(three, call_timeout);
  REQUIRE(looped);
  CHECK_FALSE(looped->batch);
  REQUIRE(looped->outputs.size() == 3);
  CHECK(looped->outputs[2]["calls"] == 3);
}

TEST_CASE("an exception comes back with its type and message and traceback", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto r = w.predict(mode(1), call_timeout);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::invalid_argument);
  CHECK(r.err().message == "predict raised ValueError: mode 1 is broken");
  auto& f = w.last_failure();
  CHECK(f.kind == failure_kind::python_error);
  CHECK(f.type == "ValueError");
  CHECK(f.message == "mode 1 is broken");
  auto file = (pkg.path() / "model.py").string();
  auto raise_line = line_of(misbehave_py, "raise ValueError");
  auto call_line = line_of(misbehave_py, "return fail(mode)");
  CHECK_THAT(f.traceback, Catch::StartsWith("Traceback (most recent call last):"));
  CHECK_THAT(f.traceback, Catch::Contains("File \"" + file + "\", line " + std::to_string(call_line)
                                          + ", in predict"));
  CHECK_THAT(f.traceback, Catch::Contains("File \"" + file + "\", line "
                                          + std::to_string(raise_line) + ", in fail"));
  CHECK_THAT(f.traceback, Catch::EndsWith("ValueError: mode 1 is broken\n"));
  CHECK_THAT(f.traceback, !Catch::Contains("<fabrik-worker>")); // the worker's frames are hidden
  // The worker lives on.
  CHECK(w.alive());
  auto ok = w.predict(mode(0), call_timeout);
  REQUIRE(ok);
  CHECK(ok->outputs.at(0)["pid"] == w.pid());

  SECTION("a wrong return type is an error that says what was expected") {
    auto bad = w.predict(mode(7), call_timeout);
    REQUIRE_FALSE(bad);
    CHECK(w.last_failure().type == "TypeError");
    CHECK(w.last_failure().message == "predict() must return a dict, got list");
  }
}

TEST_CASE("an import error in the entry module comes back with its traceback", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "broken.py", "import helper\n");
  write_file(pkg / "lib/helper.py", "X = 1\nraise RuntimeError('vendored helper refuses')\n");
  auto w = start_worker();
  auto r = w.load(request_for(pkg, "broken"), call_timeout);
  REQUIRE_FALSE(r);
  auto& f = w.last_failure();
  CHECK(f.type == "RuntimeError");
  CHECK_THAT(f.traceback, Catch::Contains((pkg.path() / "lib/helper.py").string() + "\", line 2"));
  CHECK_THAT(f.traceback, !Catch::Contains("<frozen importlib"));
  CHECK(w.alive());
}

TEST_CASE("a segfault kills the worker and not the engine and restart brings it back", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto before = w.pid();
  auto r = w.predict(mode(2), call_timeout);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::unavailable);
  CHECK_THAT(r.err().message,
             Catch::StartsWith("worker killed by signal 11 (SIGSEGV) during predict"));
  // faulthandler's dump names the line in the package.
  CHECK_THAT(r.err().message,
             Catch::Contains("(at model.py:" + std::to_string(line_of(misbehave_py, "string_at"))
                             + " in predict)"));
  CHECK(w.last_failure().kind == failure_kind::crashed);
  CHECK(w.last_failure().signal == SIGSEGV);
  CHECK_THAT(w.last_failure().traceback, Catch::Contains("Segmentation fault"));
  CHECK_FALSE(w.alive());
  CHECK(::kill(before, 0) != 0); // reaped

  auto dead = w.predict(mode(0), call_timeout);
  REQUIRE_FALSE(dead);
  CHECK(w.last_failure().kind == failure_kind::not_running);

  REQUIRE(w.restart(call_timeout));
  CHECK(w.alive());
  CHECK(w.pid() != before);
  auto ok = w.predict(mode(0), call_timeout);
  REQUIRE(ok);
  CHECK(ok->outputs.at(0)["pid"] == w.pid());
}

TEST_CASE("an infinite loop times out and the worker is killed and restarts", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto before = w.pid();
  auto r = w.predict(mode(3), 1500ms);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::unavailable);
  CHECK_THAT(r.err().message, Catch::StartsWith("timeout after 1500ms during predict"));
  CHECK_THAT(r.err().message, Catch::EndsWith("worker killed"));
  auto& f = w.last_failure();
  CHECK(f.kind == failure_kind::timeout);
  // The stack dump taken before the kill says where it hung.
  CHECK_THAT(f.traceback, Catch::Contains((pkg.path() / "model.py").string()));
  CHECK_THAT(r.err().message, Catch::Contains("(at model.py:"));
  CHECK_FALSE(w.alive());
  CHECK(::kill(before, 0) != 0);
  REQUIRE(w.restart(call_timeout));
  auto ok = w.predict(mode(0), call_timeout);
  REQUIRE(ok);
  CHECK(ok->outputs.at(0)["pid"] == w.pid());
}

TEST_CASE("a memory hog gets MemoryError under the limit and the engine is unaffected",
          "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  worker_options o;
  o.memory_limit = 768ull << 20;
  auto w = start_worker(o);
  load_ok(w, request_for(pkg, "model"));
  auto r = w.predict(mode(4), call_timeout);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::invalid_argument);
  CHECK(w.last_failure().type == "MemoryError");
  CHECK_THAT(w.last_failure().traceback, Catch::Contains("in predict"));
  // After a MemoryError the worker restarts: its memory may stay held or fragmented.
  CHECK_FALSE(w.alive());
  REQUIRE(w.restart(call_timeout));
  auto ok = w.predict(mode(0), call_timeout);
  REQUIRE(ok);
}

TEST_CASE("sys.exit is an error and not an exit", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto r = w.predict(mode(5), call_timeout);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::invalid_argument);
  CHECK(w.last_failure().type == "SystemExit");
  CHECK_THAT(w.last_failure().message, Catch::Contains("sys.exit(3)"));
  CHECK(w.alive());
  CHECK(w.predict(mode(0), call_timeout));
}

TEST_CASE("os._exit ends the worker with its status", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto r = w.predict(mode(6), call_timeout);
  REQUIRE_FALSE(r);
  CHECK(r.err().code == ec::unavailable);
  CHECK(r.err().message == "worker exited with status 5 during predict");
  CHECK(w.last_failure().kind == failure_kind::exited);
  CHECK(w.last_failure().exit_status == 5);
  CHECK_FALSE(w.alive());
  REQUIRE(w.restart(call_timeout));
  CHECK(w.predict(mode(0), call_timeout));
}

TEST_CASE("print output is returned with the reply and bounded and fd 2 output apart", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "model.py", misbehave_py);
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto r = w.predict(mode(8), call_timeout);
  REQUIRE(r);
  REQUIRE(r->report.logs.size() == 1000);
  CHECK(r->report.logs.front() == "line 0");
  CHECK(r->report.logs.back() == "line 999");
  CHECK(r->report.logs_dropped == 4000);
  CHECK_THAT(r->report.stderr_output, Catch::Contains("written to fd 2 by C code"));
  auto quiet = w.predict(mode(0), call_timeout);
  REQUIRE(quiet);
  CHECK(quiet->report.logs.empty());
}

TEST_CASE("a busy train call reports the worker's peak CPU", "[worker][measure]") {
  scratch_dir pkg{"worker"};
  // A second of CPU time, however long the shared machine takes to give it.
  write_file(pkg / "model.py", R"(import time


def train(dataset, params):
    end = time.process_time() + 1.0
    n = 0
    while time.process_time() < end:
        n += 1
    return {"loops": n}


def predict(model, sample):
    return {}
)");
  auto w = start_worker();
  load_ok(w, request_for(pkg, "model"));
  auto trained = w.train(pcb_like(30, 1), call_timeout);
  REQUIRE(trained);
  CHECK(trained->report.stats.cpu.count() > 0);
  // A spinning worker uses a whole core when it has one; these machines are shared, so
  // only a clear share of one is asserted (an unmeasured peak reads 0).
  CHECK(trained->report.stats.peak_cpu > 0.25);
  // A call of microseconds has its average, not 10 ms ticks over microseconds.
  auto quick = w.predict(one_row({"a"}, {1.0}), call_timeout);
  REQUIRE(quick);
  CHECK(quick->report.stats.peak_cpu >= 0);
  CHECK(quick->report.stats.peak_cpu <= std::thread::hardware_concurrency() + 0.5);
}

TEST_CASE("a Siemens process_input package gets parameters first and None emits nothing",
          "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "entrypoint.py", R"(
calls = []
factor = None


def update_parameters(params):
    global factor
    calls.append("update")
    factor = params["factor"]


def process_input(data):
    calls.append("input")
    if data["x"] < 0:
        return None
    return {"y": data["x"] * factor, "calls": calls}
)");
  auto w = start_worker();
  auto loaded = w.load(
    request_for(pkg, "entrypoint", workflow_kind::process_input, {{"factor", 2}}), call_timeout);
  REQUIRE(loaded);
  CHECK(loaded->functions == std::vector<std::string>{"process_input", "update_parameters"});
  auto a = w.process_input({{"x", 3}}, call_timeout);
  REQUIRE(a);
  REQUIRE(a->output);
  CHECK((*a->output)["y"] == 6);
  CHECK((*a->output)["calls"] == nlohmann::json::array({"update", "input"}));
  auto none = w.process_input({{"x", -1}}, call_timeout);
  REQUIRE(none);
  CHECK_FALSE(none->output);
  auto b = w.process_input({{"x", 4}}, call_timeout);
  REQUIRE(b);
  CHECK((*b->output)["calls"] == nlohmann::json::array({"update", "input", "input", "input"}));

  REQUIRE(w.update_parameters({{"factor", 10}}, call_timeout));
  auto c = w.process_input({{"x", 4}}, call_timeout);
  REQUIRE(c);
  CHECK((*c->output)["y"] == 40);

  SECTION("restart replays the load with the current parameters, once") {
    REQUIRE(w.restart(call_timeout));
    auto d = w.process_input({{"x", 1}}, call_timeout);
    REQUIRE(d);
    CHECK((*d->output)["y"] == 10);
    CHECK((*d->output)["calls"] == nlohmann::json::array({"update", "input"}));
  }
  SECTION("predict is refused for a process_input package") {
    auto p = w.predict(one_row({"x"}, {1}), call_timeout);
    REQUIRE_FALSE(p);
    CHECK(w.last_failure().type == "TypeError");
  }
}

TEST_CASE("stopping a worker also ends the processes its code started", "[worker]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "spawner.py", R"(import subprocess
child = subprocess.Popen(["sleep", "600"])


def predict(model, sample):
    return {"child": child.pid}
)");
  auto w = start_worker();
  load_ok(w, request_for(pkg, "spawner"));
  auto r = w.predict(one_row({"a"}, {0}), call_timeout);
  REQUIRE(r);
  auto child = r->outputs.at(0)["child"].get<pid_t>();
  auto worker_pid = w.pid();
  w.stop();
  CHECK_FALSE(w.alive());
  CHECK(::kill(worker_pid, 0) != 0);
  // The orphaned sleep was killed with the group (it may linger as a zombie of init).
  std::string state;
  for (int i = 0; i < 200; ++i) {
    std::ifstream stat{"/proc/" + std::to_string(child) + "/stat"};
    std::string line;
    if (!std::getline(stat, line)) {
      state = "gone";
      break;
    }
    auto close = line.rfind(')');
    state = line.substr(close + 2, 1);
    if (state == "Z")
      break;
    std::this_thread::sleep_for(10ms);
  }
  CHECK((state == "gone" || state == "Z"));
}

// -- images ---------------------------------------------------------------------------

namespace {

/// A dataset of image inputs only: one image per row, bytes kept by `keep`.
worker::dataset images_of(std::vector<std::string>& keep,
                          const std::vector<std::tuple<int, int, std::string, int>>& frames) {
  worker::dataset d;
  d.image_names = {"image"};
  keep.reserve(frames.size());
  for (auto& [w, h, format, bytes_per_pixel] : frames) {
    std::string data(static_cast<size_t>(w * h * bytes_per_pixel), '\0');
    for (size_t i = 0; i < data.size(); ++i)
      data[i] = static_cast<char>(i % 251);
    keep.push_back(std::move(data));
    d.images.push_back({keep.back(), w, h, format, true});
  }
  return d;
}

} // namespace

TEST_CASE("image inputs reach Python as numpy views (no copy) of the right shape and dtype",
          "[worker][images]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "probe.py", R"(import numpy as np


def describe(img):
    if img is None:
        return {"missing": True}
    return {"shape": list(img.shape), "dtype": str(img.dtype), "owndata": bool(img.flags.owndata),
            "writeable": bool(img.flags.writeable), "first": img.reshape(-1)[:3].tolist()}


def predict(model, sample):
    return describe(sample["image"])


def predict_batch(model, samples):
    assert samples.X.shape == (len(samples), 0)
    return [describe(img) for img in samples["image"]]
)");
  auto w = start_worker();
  load_ok(w, request_for(pkg, "probe"));
  std::vector<std::string> keep;
  auto d = images_of(
    keep, {{4, 3, "Mono8", 1}, {2, 2, "Mono16", 2}, {3, 2, "RGB8", 3}, {5, 1, "Mono12Packed", 1}});
  d.images.push_back({}); // a record without the field
  d.images.back().present = false;
  REQUIRE(d.check());
  auto p = w.predict(d, call_timeout);
  if (!p)
    FAIL(p.err().what() << "\n" << w.last_failure().traceback);
  REQUIRE(p->outputs.size() == 5);
  auto& o = p->outputs;
  CHECK(o[0]["shape"] == nlohmann::json::array({3, 4}));
  CHECK(o[0]["dtype"] == "uint8");
  CHECK(o[0]["first"] == nlohmann::json::array({0, 1, 2}));
  CHECK(o[1]["shape"] == nlohmann::json::array({2, 2}));
  CHECK(o[1]["dtype"] == "uint16");
  CHECK(o[1]["first"] == nlohmann::json::array({0x0100, 0x0302, 0x0504})); // little-endian
  CHECK(o[2]["shape"] == nlohmann::json::array({2, 3, 3}));
  CHECK(o[2]["dtype"] == "uint8");
  // A packed format has no numpy shape: the raw bytes.
  CHECK(o[3]["shape"] == nlohmann::json::array({5}));
  CHECK(o[4]["missing"] == true);
  for (size_t i = 0; i < 4; ++i) {
    // Views over the message the worker received: no copy, and like X writable (the
    // message is the call's own).
    CHECK(o[i]["owndata"] == false);
    CHECK(o[i]["writeable"] == true);
  }
  // One sample goes to predict(), through the Sample dict.
  std::vector<std::string> keep1;
  auto one = images_of(keep1, {{8, 6, "Mono8", 1}});
  auto p1 = w.predict(one, call_timeout);
  REQUIRE(p1);
  CHECK_FALSE(p1->batch);
  CHECK(p1->outputs[0]["shape"] == nlohmann::json::array({6, 8}));
}

TEST_CASE("a dataset whose images do not match its rows is refused before sending",
          "[worker][images]") {
  worker::dataset d;
  d.columns = {"a"};
  d.values = {1.0, 2.0};
  d.image_names = {"image"};
  d.images.push_back({});
  auto ok = d.check();
  REQUIRE_FALSE(ok);
  CHECK(ok.err().message == "dataset has 2 rows and 1 image inputs but 1 images");
}

// -- the shipped examples ---------------------------------------------------------------

namespace {

/// The manifest of examples/NAME, and its parameters as the JSON the worker gets.
std::pair<workflow_manifest, nlohmann::json> example(const std::string& name) {
  auto dir = std::filesystem::path{FABRIK_SOURCE_DIR} / "examples" / name;
  std::ifstream in{dir / "fabrik-workflow.yaml"};
  std::stringstream text;
  text << in.rdbuf();
  std::vector<diagnostic> diags;
  auto m = parse_manifest(text.str(), name, diags);
  REQUIRE(m);
  nlohmann::json params = nlohmann::json::object();
  for (auto& [key, v] : m->parameters)
    std::visit(
      [&, k = key](const auto& x) {
        if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::monostate>)
          params[k] = nullptr;
        else
          params[k] = x;
      },
      v);
  return {*m, params};
}

} // namespace

TEST_CASE("the PCB example workflow honours the worker contract", "[worker][examples]") {
  auto [manifest, params] = example("pcb-classifier");
  REQUIRE(manifest.inputs.size() == 16);
  auto w = start_worker();
  load_ok(w, {std::filesystem::path{FABRIK_SOURCE_DIR} / "examples" / "pcb-classifier",
              manifest.entry, manifest.kind, params});
  auto train_set = pcb_like(600, 5);
  train_set.columns = manifest.inputs;
  auto trained = w.train(train_set, call_timeout);
  if (!trained)
    FAIL(trained.err().what() << "\n" << w.last_failure().traceback);
  REQUIRE(w.load_model(trained->model, call_timeout));
  auto test_set = pcb_like(300, 6);
  test_set.columns = manifest.inputs;
  test_set.values[7] = std::nan(""); // a missing measurement must not stop a prediction
  auto p = w.predict(test_set, call_timeout);
  REQUIRE(p);
  CHECK(p->batch);
  auto& truth = std::get<std::vector<std::string>>(test_set.y);
  size_t right = 0;
  for (size_t i = 0; i < truth.size(); ++i)
    right += p->outputs[i]["prediction"] == truth[i];
  CHECK(static_cast<double>(right) / truth.size() > 0.9);
  CHECK(p->outputs[0]["confidence"].is_number());
}

TEST_CASE("the IMU example workflow honours the worker contract for windows",
          "[worker][examples]") {
  auto [manifest, params] = example("imu-classifier");
  REQUIRE(manifest.inputs.size() == 12);
  const std::vector<std::string> activities = {"idle", "hammering", "screwing", "sawing",
                                               "drilling"};
  constexpr double pi = 3.14159265358979323846;
  std::mt19937 rng{7};
  std::normal_distribution<double> noise{0.0, 0.3};
  // 50 Hz samples of two hands: each activity moves other axes at its own frequency.
  auto row = [&](size_t activity, size_t t) {
    std::vector<double> v(12);
    double s = static_cast<double>(t) / 50.0;
    for (auto& x : v)
      x = noise(rng);
    v[2] += 9.81;
    v[8] += 9.81;
    auto wave = [&](double hz) { return std::sin(2 * pi * hz * s); };
    if (activities[activity] == "hammering") {
      v[2] += 15 * std::max(0.0, wave(2)); // blows along the left forearm
    } else if (activities[activity] == "screwing") {
      v[3] += 120 * wave(1); // the left wrist turns
    } else if (activities[activity] == "sawing") {
      v[0] += 6 * wave(1.5); // both hands push and pull
      v[6] += 3 * wave(1.5);
    } else if (activities[activity] == "drilling") {
      for (int a : {0, 1, 2, 6, 7, 8})
        v[a] += 2 * wave(15); // vibration
    }
    return v;
  };
  worker::dataset train_set;
  train_set.columns = manifest.inputs;
  std::vector<std::string> labels;
  for (size_t a = 0; a < activities.size(); ++a)
    for (size_t t = 0; t < 1500; ++t) {
      train_set.add_row(row(a, t));
      labels.push_back(activities[a]);
    }
  train_set.y = labels;
  auto w = start_worker();
  load_ok(w, {std::filesystem::path{FABRIK_SOURCE_DIR} / "examples" / "imu-classifier",
              manifest.entry, manifest.kind, params});
  auto trained = w.train(train_set, call_timeout);
  if (!trained)
    FAIL(trained.err().what() << "\n" << w.last_failure().traceback);
  REQUIRE(w.load_model(trained->model, call_timeout));

  worker::dataset windows;
  windows.columns = manifest.inputs;
  windows.window = 50;
  std::vector<std::string> truth;
  for (size_t a = 0; a < activities.size(); ++a)
    for (size_t k = 0; k < 8; ++k) {
      for (size_t t = 0; t < 50; ++t)
        windows.add_row(row(a, 5000 + k * 50 + t));
      truth.push_back(activities[a]);
    }
  auto p = w.predict(windows, call_timeout);
  if (!p)
    FAIL(p.err().what() << "\n" << w.last_failure().traceback);
  REQUIRE(p->outputs.size() == truth.size());
  size_t right = 0;
  for (size_t i = 0; i < truth.size(); ++i)
    right += p->outputs[i]["activity"] == truth[i];
  CHECK(static_cast<double>(right) / truth.size() > 0.8);
}

TEST_CASE("the frame-check example workflow tells dark, ok and bright frames apart",
          "[worker][examples][images]") {
  auto [manifest, params] = example("frame-check");
  REQUIRE(manifest.images == std::vector<std::string>{"image"});
  REQUIRE(manifest.inputs.empty());
  auto w = start_worker();
  load_ok(w, {std::filesystem::path{FABRIK_SOURCE_DIR} / "examples" / "frame-check", manifest.entry,
              manifest.kind, params});
  // Uniform frames: 10, 128 and 250 of 255 (Mono8), and 60000 of 65535 (Mono16).
  std::vector<std::string> keep{std::string(64 * 48, char(10)), std::string(64 * 48, char(128)),
                                std::string(64 * 48, char(250)), std::string(32 * 16 * 2, '\0')};
  for (size_t i = 0; i < keep[3].size(); i += 2) {
    keep[3][i] = static_cast<char>(60000 & 0xff);
    keep[3][i + 1] = static_cast<char>(60000 >> 8);
  }
  worker::dataset d;
  d.image_names = manifest.images;
  for (size_t i = 0; i < 3; ++i)
    d.images.push_back({keep[i], 64, 48, "Mono8", true});
  d.images.push_back({keep[3], 32, 16, "Mono16", true});
  auto p = w.predict(d, call_timeout);
  if (!p)
    FAIL(p.err().what() << "\n" << w.last_failure().traceback);
  REQUIRE(p->outputs.size() == 4);
  CHECK(p->outputs[0]["verdict"] == "dark");
  CHECK(p->outputs[1]["verdict"] == "ok");
  CHECK(p->outputs[2]["verdict"] == "bright");
  CHECK(p->outputs[3]["verdict"] == "bright");
  CHECK(p->outputs[3]["dtype"] == "uint16");
  CHECK(p->outputs[3]["shape"] == "16x32");
  CHECK(p->outputs[1]["brightness"].get<double>() == Approx(128.0 / 255).epsilon(1e-4));
}

// -- measurements ---------------------------------------------------------------------

TEST_CASE("per-call overhead of the worker round trip", "[.][bench][worker_bench]") {
  scratch_dir pkg{"worker"};
  write_file(pkg / "trivial.py",
             "def train(dataset, params):\n    return float(dataset.X.sum())\n\n\n"
             "def predict(model, sample):\n    return {\"y\": 1.0}\n");
  write_file(pkg / "forest.py", R"(import time
from sklearn.ensemble import RandomForestClassifier


def train(dataset, params):
    return RandomForestClassifier(n_estimators=100, random_state=0).fit(dataset.X, dataset.y)


def predict(model, sample):
    t = time.perf_counter_ns()
    label = model.predict(sample.X)[0]
    return {"label": label, "model_ns": time.perf_counter_ns() - t}
)");
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto sample = pcb_like(1, 3);
  sample.y = {};
  {
    auto w = start_worker();
    load_ok(w, request_for(pkg, "trivial"));
    std::vector<double> client, inside;
    for (int i = 0; i < 3200; ++i) {
      auto r = w.predict(sample, call_timeout);
      REQUIRE(r);
      if (i >= 200) {
        client.push_back(r->report.stats.wall.count() / 1000.0);
        inside.push_back(r->report.stats.worker_wall.count() / 1000.0);
      }
    }
    std::cout << "trivial predict, 16 inputs: round trip p50 " << median(client)
              << " us, inside the worker p50 " << median(inside) << " us\n";
    worker::dataset big;
    big.columns = sample.columns;
    big.values.assign(1'000'000 * 16, 0.5);
    big.y = std::vector<double>(1'000'000, 1.0);
    auto t = w.train(big, call_timeout);
    REQUIRE(t);
    std::cout << "train on 1M rows x 16 (128 MB): round trip " << t->report.stats.wall.count() / 1e6
              << " ms, inside the worker " << t->report.stats.worker_wall.count() / 1e6
              << " ms, worker peak RSS " << (t->report.stats.peak_rss >> 20) << " MiB\n";
  }
  {
    auto w = start_worker();
    load_ok(w, request_for(pkg, "forest"));
    auto t = w.train(pcb_like(600, 1), call_timeout);
    REQUIRE(t);
    REQUIRE(w.load_model(t->model, call_timeout));
    std::vector<double> client, model;
    for (int i = 0; i < 550; ++i) {
      auto r = w.predict(sample, call_timeout);
      REQUIRE(r);
      if (i >= 50) {
        client.push_back(r->report.stats.wall.count() / 1000.0);
        model.push_back(r->outputs.at(0)["model_ns"].get<double>() / 1000.0);
      }
    }
    std::cout << "RandomForest(100) predict, 1 row: round trip p50 " << median(client)
              << " us, model.predict p50 " << median(model) << " us\n";
    auto batch = pcb_like(1000, 4);
    batch.y = {};
    auto b = w.predict(batch, call_timeout);
    REQUIRE(b);
    std::cout << "RandomForest(100) predict(), 1000 rows one by one: "
              << b->report.stats.wall.count() / 1e6 << " ms\n";
  }
}
