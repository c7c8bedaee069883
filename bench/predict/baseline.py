#!/usr/bin/python3
"""The hand-written baseline for bench/predict: a PCB prediction service in plain Python.

What someone would write without fabrik: paho-mqtt + scikit-learn in one process.
  - trains the pcb-classifier package's own model (examples/pcb-classifier/model.py,
    train() with the manifest's parameters) on labelled boards given as JSON lines in
    `fabrik store` format ({"seq":..,"fields":{name: value, ...}}, one record a line),
    the first --train-count of them in the file's (oldest first) order;
  - subscribes to the simatic-v1 metadata (ie/m/j/simatic/v1/+/dp, for the id -> name
    map) and data topics (ie/d/j/simatic/v1/+/dp/r/#);
  - per data message: decodes it, builds the 1 x 16 input row in the manifest's `inputs`
    order (a missing value is NaN, as fabrik does), calls model.predict() and times that
    call with perf_counter_ns, publishes
      {"seq":N,"prediction":..,"confidence":..,"compute_ms":..}
    as JSON, QoS 1 (fabrik's sink's default), on --topic.

Everything runs on Paho's network thread: the simplest service, and no queueing between
threads. TCP_NODELAY is set on its socket (see TOOLCHAIN.md, MQTT). Prints "ready" on
stdout once subscribed (after training); SIGTERM/SIGINT stop it and print
{"trained_ms":..,"predictions":..,"vmhwm_kib":..} on stdout.

Usage (Debian's python3: paho-mqtt, numpy, scikit-learn):
  bench/predict/baseline.py --port 1884 --train boards.jsonl --package examples/pcb-classifier
"""

import argparse
import importlib.util
import json
import math
import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402  (python3-yaml)

META_TOPIC = "ie/m/j/simatic/v1/+/dp"
DATA_TOPIC = "ie/d/j/simatic/v1/+/dp/r/#"


class Rows:
    """The dataset / sample object model.py expects (X, y, columns, len)."""

    def __init__(self, X, y, columns):
        self.X, self.y, self.columns = X, y, columns

    def __len__(self):
        return len(self.X)


def load_package(path):
    with open(os.path.join(path, "fabrik-workflow.yaml")) as f:
        manifest = yaml.safe_load(f)
    spec = importlib.util.spec_from_file_location(
        "pcb_model", os.path.join(path, manifest.get("entry", "model") + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return manifest, module


def number(v):
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return math.nan


def read_training(path, inputs, label, count):
    recs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    # `fabrik store` prints oldest first, the order fabrik's training reads them in; rows
    # in the same order give the same forest (its bootstrap samples by row index).
    recs = [r for r in recs if label in r.get("fields", {})][:count]
    X = np.array([[number(r["fields"].get(n)) for n in inputs] for r in recs], dtype=np.float64)
    y = np.array([str(r["fields"][label]) for r in recs], dtype=object)
    return X, y


def main(argv=None):
    p = argparse.ArgumentParser(description="Hand-written PCB prediction service (baseline).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--package", required=True, help="the workflow package's folder")
    p.add_argument("--train", required=True, help="labelled boards, `fabrik store` JSON lines")
    p.add_argument("--train-count", type=int, default=3000,
                   help="train on the first N labelled boards of the file (default 3000)")
    p.add_argument("--topic", default="baseline/pcb-classify/Line1/default",
                   help="where predictions go")
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    a = p.parse_args(sys.argv[1:] if argv is None else argv)

    manifest, model_py = load_package(a.package)
    inputs, label = list(manifest["inputs"]), manifest.get("label")
    X, y = read_training(a.train, inputs, label, a.train_count)
    t0 = time.perf_counter()
    model = model_py.train(Rows(X, y, inputs), dict(manifest.get("parameters") or {}))
    trained_ms = (time.perf_counter() - t0) * 1000
    print(f"baseline: trained on {len(X)} boards in {trained_ms:.0f} ms", file=sys.stderr)

    ids = {}  # data topic -> {id: column index}
    col = {n: i for i, n in enumerate(inputs)}
    done = threading.Event()
    count = [0]

    def on_socket_open(client, userdata, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(client, userdata, flags, rc):
        client.subscribe([(META_TOPIC, 1), (DATA_TOPIC, 1)])

    def on_subscribe(client, userdata, mid, granted):
        print("ready", flush=True)

    def on_message(client, userdata, msg):
        if msg.topic.startswith("ie/m/"):
            meta = json.loads(msg.payload)
            for c in meta.get("connections", []):
                for dp in c.get("dataPoints", []):
                    ids[dp["topic"]] = {d["id"]: col[d["name"]]
                                        for d in dp.get("dataPointDefinitions", [])
                                        if d["name"] in col}
            return
        m = ids.get(msg.topic)
        if m is None:
            return  # no metadata yet (fabrik parks these; the baseline drops them)
        data = json.loads(msg.payload)
        row = np.full((1, len(inputs)), np.nan)
        for v in data["vals"]:
            j = m.get(v["id"])
            if j is not None:
                row[0, j] = number(v["val"])
        t = time.perf_counter_ns()
        out = model_py.predict(model, Rows(row, None, inputs))
        compute_ms = (time.perf_counter_ns() - t) / 1e6
        out = dict(out, seq=data.get("seq"), compute_ms=round(compute_ms, 6))
        client.publish(a.topic, json.dumps(out, separators=(",", ":")), qos=a.qos)
        count[0] += 1

    client = mqtt.Client(client_id=f"baseline-pcb-{os.getpid()}", clean_session=True)
    client.on_socket_open = on_socket_open
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.max_inflight_messages_set(1000)
    signal.signal(signal.SIGTERM, lambda s, f: done.set())
    signal.signal(signal.SIGINT, lambda s, f: done.set())
    client.connect(a.host, a.port, keepalive=30)
    client.loop_start()
    while not done.wait(0.5):
        pass
    client.loop_stop()
    client.disconnect()
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    print(json.dumps({"trained_ms": round(trained_ms, 1), "predictions": count[0],
                      "vmhwm_kib": hwm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
