#!/usr/bin/python3
"""Prediction latency probe: publish PCB boards one at a time, time each prediction.

Publishes simulated PCB boards (simatic-v1 data messages, QoS 1, made by
bench/assets/pcb_publisher.py's own code) on ie/d/j/simatic/v1/APP/dp/r/Line1/default
and subscribes to a prediction topic. Each prediction is matched to its board by `seq`;
the latency is perf_counter_ns at the prediction's arrival minus perf_counter_ns just
before the board's publish. The next board is sent only after the prediction of the
previous one arrived (or --timeout passed), so nothing queues anywhere: every board
meets an idle consumer.

A prediction is a JSON object with at least `seq`; `compute_ms` (the model call, as the
consumer measured it) and `prediction` are used when present. fabrik's workflow actor
and bench/predict/baseline.py both publish that shape.

Prints one JSON object on stdout (the summary; with --out also the per-board samples
go there): boards, answered, lost, e2e/model/overhead percentiles in ms, and
accuracy against the boards' labels. Exit status: 0 ok (lost predictions are
reported, not failed), 1 connection failure or no prediction at all, 2 usage.

Usage (Debian's python3, which has python3-paho-mqtt 1.6):
  bench/predict/latency_probe.py --port 1884 --topic fabrik/pcb-classify/classifier/pcb_in/Line1/default
"""

import argparse
import copy
import json
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets"))
import paho.mqtt.client as mqtt  # noqa: E402
import pcb_publisher  # noqa: E402  (bench/assets/pcb_publisher.py)
import simatic_asset as asset  # noqa: E402  (bench/assets/simatic_asset.py)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Publish PCB boards one at a time and measure "
                                            "publish -> prediction latency.")
    asset.add_connection_arguments(p, "pcb1")
    p.add_argument("--topic", required=True, help="the prediction topic to subscribe to")
    p.add_argument("--count", type=int, default=1000, help="boards measured (default 1000)")
    p.add_argument("--warmup", type=int, default=20,
                   help="boards sent first and left out of the statistics (default 20)")
    p.add_argument("--gap-ms", type=float, default=2.0,
                   help="pause between a prediction and the next board (default 2)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait for one prediction before counting it lost (default 5)")
    p.add_argument("--label", default="", help="name of the consumer in messages")
    p.add_argument("--out", default="", help="write the per-board samples here as JSON")
    p.add_argument("--drop", default="", metavar="ZIP:DIR",
                   help="first move a copy of ZIP into the watched directory DIR and time "
                        "until the first prediction (boards every 20 ms meanwhile)")
    # --qos, --seed, --start-seq, --labels, --window, ... as pcb_publisher has them.
    asset.add_publish_arguments(p, "latency_probe", "board", pcb_publisher.LABEL_ID)
    a = p.parse_args(argv)
    if a.count < 1 or a.warmup < 0 or a.timeout <= 0:
        p.error("--count must be >= 1, --warmup >= 0, --timeout > 0")
    return a


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def stats(values):
    if not values:
        return None
    return {"p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values), "mean": sum(values) / len(values)}


class Receiver:
    """The subscriber side: its own connection, so receiving never waits for publishing."""

    def __init__(self, a):
        self.cond = threading.Condition()
        self.got = {}  # seq -> (perf_counter_ns at arrival, decoded prediction)
        self.subscribed = threading.Event()
        self.client = mqtt.Client(client_id=f"latency-probe-sub-{os.getpid()}",
                                  clean_session=True)
        self.client.on_socket_open = self.on_socket_open
        self.client.on_connect = lambda c, u, f, rc: c.subscribe(a.topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, granted: self.subscribed.set()
        self.client.on_message = self.on_message

    def on_socket_open(self, client, userdata, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_message(self, client, userdata, msg):
        t = time.perf_counter_ns()
        try:
            rec = json.loads(msg.payload)
            seq = int(rec["seq"])
        except (ValueError, KeyError, TypeError):
            return
        with self.cond:
            self.got.setdefault(seq, (t, rec))
            self.cond.notify_all()

    def wait_for(self, seq, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while seq not in self.got:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.got[seq]


def drop_and_wait(a, rx, pub, name, timeout=120.0):
    """Seconds from the zip appearing in the watched directory (renamed into place, as a
    careful copy does) to the first prediction of any board; None after `timeout`."""
    zip_path, _, into = a.drop.partition(":")
    dest = os.path.join(into, os.path.basename(zip_path))
    os.makedirs(into, exist_ok=True)
    with open(zip_path, "rb") as f:
        data = f.read()
    with open(dest + ".part", "wb") as f:
        f.write(data)
    t_drop = time.perf_counter_ns()
    os.rename(dest + ".part", dest)
    # Boards of their own (seqs below the measured ones, their own generator), so the
    # measured boards stay the same with or without --drop.
    own = copy.copy(a)
    own.start_seq = base = a.start_seq - 50000
    own.seed = a.seed + 1
    make_own = pcb_publisher.board_payloads(own)
    for k in range(int(timeout / 0.02)):
        pub.publish(pub.data_topic, make_own(k), a.qos)
        with rx.cond:
            rx.cond.wait(0.02)
            arrived = [t for seq, (t, _) in rx.got.items() if base <= seq < a.start_seq]
        if arrived:
            return (min(arrived) - t_drop) / 1e9
    print(f"{name}: no prediction within {timeout} s of dropping {zip_path}", file=sys.stderr)
    return None


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    name = a.label or "latency_probe"
    a.count_total = a.warmup + a.count

    rx = Receiver(a)
    if not asset.start_client(rx.client, a, name):
        return 1
    if not rx.subscribed.wait(10):
        print(f"{name}: no SUBACK for {a.topic}", file=sys.stderr)
        return 1

    # The publisher side is pcb_publisher's connector: status, metadata, then boards.
    pub = asset.Publisher(a, "latency_probe", pcb_publisher.CONNECTION,
                          pcb_publisher.COLLECTION, pcb_publisher.metadata(a.app, a.labels))
    make_payload = pcb_publisher.board_payloads(a)
    if not asset.start_client(pub.client, a, name):
        return 1
    if not pub.connected.wait(10) or pub.connect_rc != 0:
        print(f"{name}: no CONNACK", file=sys.stderr)
        return 1
    sq = max(a.qos, 1)
    pub.publish(pub.status_topic, pub._status(1, "available", "good"), sq, retain=True)
    pub.publish(pub.meta_topic, json.dumps(pub.meta, separators=(",", ":")), sq, retain=True)
    pub.wait_acks(10)

    first_prediction_s = drop_and_wait(a, rx, pub, name) if a.drop else None
    if a.drop and first_prediction_s is None:
        return 1

    samples = []  # (seq, e2e_ms, compute_ms or None, label, prediction)
    lost = 0
    for n in range(a.count_total):
        payload = make_payload(n)
        seq = a.start_seq + n
        label = None
        if a.labels:  # the board's own label: the last value of the message
            label = json.loads(payload)["vals"][-1]["val"]
        t0 = time.perf_counter_ns()
        pub.publish(pub.data_topic, payload, a.qos)
        r = rx.wait_for(seq, a.timeout)
        if r is None:
            lost += 1
            if n >= a.warmup:
                print(f"{name}: no prediction for seq {seq} within {a.timeout} s",
                      file=sys.stderr)
            continue
        t1, rec = r
        if n >= a.warmup:
            cm = rec.get("compute_ms")
            samples.append((seq, (t1 - t0) / 1e6, None if cm is None else float(cm),
                            label, rec.get("prediction")))
        if a.gap_ms > 0:
            time.sleep(a.gap_ms / 1000.0)
    pub.wait_acks(10)
    pub.client.loop_stop()
    pub.client.disconnect()
    rx.client.loop_stop()
    rx.client.disconnect()

    e2e = [s[1] for s in samples]
    model = [s[2] for s in samples if s[2] is not None]
    overhead = [s[1] - s[2] for s in samples if s[2] is not None]
    labelled = [s for s in samples if s[3] is not None and s[4] is not None]
    summary = {
        "consumer": name, "topic": a.topic, "boards": a.count, "warmup": a.warmup,
        "answered": len(samples), "lost": lost,
        "e2e_ms": stats(e2e), "model_ms": stats(model), "overhead_ms": stats(overhead),
        "accuracy": (sum(1 for s in labelled if s[3] == s[4]) / len(labelled)
                     if labelled else None),
        "first_prediction_s": first_prediction_s,
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"summary": summary,
                       "samples": [{"seq": s[0], "e2e_ms": s[1], "compute_ms": s[2],
                                    "label": s[3], "prediction": s[4]} for s in samples]},
                      f)
    print(json.dumps(summary), flush=True)
    return 0 if samples else 1


if __name__ == "__main__":
    sys.exit(main())
