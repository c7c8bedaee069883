#!/usr/bin/python3
"""Virtual PCB asset: a solder-paste inspection (SPI) line publishing in simatic-v1.

Simulates the paper's PCB workflow: after printing, an SPI machine measures the solder
paste deposit of every board and a connector publishes the result on the Industrial
Edge databus (the "common databus payload format", simatic-v1; see
../shared/payload-format.md in the project notes or docs/records.md):

  ie/s/j/simatic/v1/APP/status                status: birth "available" (retained), last
                                              will "unavailable" (retained)
  ie/m/j/simatic/v1/APP/dp                    metadata (retained, QoS 1): connection
                                              "Line1", collection "default", ids "1".."17"
  ie/d/j/simatic/v1/APP/dp/r/Line1/default    one data message per board:
      {"seq":N,"vals":[{"id":"1","val":118.2,"ts":"2022-07-21T13:01:50.159Z","qc":3},...]}

Each board carries 16 measurements (see MEASUREMENTS below: paste height, area, volume,
offsets, ... with realistic units) and, unless --no-labels, a String datapoint `label`
with the operator's verdict: "OK" (~85 %), "error" (~10 %: insufficient or excess
paste, large offset, bridge, smeared shape) or "pseudo-error" (~5 %: borderline values
the machine flagged but the operator passed). The classes are generated from the
measurements' distributions, so a classifier can learn them (with some overlap, as in
real data).

Usage (Debian's python3, which has python3-paho-mqtt 1.6):
  bench/assets/pcb_publisher.py --rate 10                     # demo: 10 boards/s, forever
  bench/assets/pcb_publisher.py --count 200000 --rate 0 --port 1884   # as fast as possible

With QoS 1 or 2 it waits for every acknowledgement before it exits and prints
"published N boards in S s (R msg/s)". At --rate 0 it keeps at most --window publishes
unacknowledged instead of waiting for each. SIGINT/SIGTERM stop it cleanly (acks are
still awaited). Exit status: 0 ok, 1 connection or acknowledgement failure, 2 usage.
"""

import argparse
import json
import math
import random
import signal
import socket
import sys
import threading
import time
import zlib

import paho.mqtt.client as mqtt

CONNECTION = "Line1"
COLLECTION = "default"

# (name, dataType, unit, decimals). Ids are "1".."16" in this order, the label is "17".
MEASUREMENTS = [
    ("height", "Real", "um", 2),         # paste deposit height; stencil 120 um
    ("area", "Real", "mm2", 4),          # deposit area
    ("volume", "Real", "mm3", 5),        # deposit volume
    ("offset_x", "Real", "um", 1),       # deposit centre vs pad centre
    ("offset_y", "Real", "um", 1),
    ("position_x", "LReal", "mm", 3),    # pad position on the board
    ("position_y", "LReal", "mm", 3),
    ("height_pct", "Real", "%", 2),      # of nominal (stencil thickness)
    ("area_pct", "Real", "%", 2),        # of nominal (aperture area)
    ("volume_pct", "Real", "%", 2),      # of nominal
    ("bridge_len", "Real", "um", 1),     # paste bridge to the neighbouring pad, 0 = none
    ("shape_dev", "Real", "%", 2),       # deviation from the aperture's shape
    ("pad_size_x", "Real", "mm", 3),
    ("pad_size_y", "Real", "mm", 3),
    ("temperature", "Real", "degC", 2),  # printer enclosure
    ("humidity", "Real", "%RH", 2),
]
LABEL_ID = str(len(MEASUREMENTS) + 1)
LABELS = ("OK", "error", "pseudo-error")
LABEL_WEIGHTS = (0.85, 0.10, 0.05)

STENCIL_UM = 120.0
# Pad footprints (x, y in mm) found on a typical board.
PADS = [(0.50, 0.60), (0.80, 0.90), (1.20, 1.30), (0.30, 1.50), (0.35, 0.35), (1.60, 2.00)]
BOARD_MM = (250.0, 200.0)

# Tolerances the simulated SPI machine and operator work with.
#   OK:            volume 80..120 %, |offset| < 40 um, no bridge, shape_dev < 12 %
#   pseudo-error:  volume 66..80 or 120..134 %, |offset| 40..75 um, shape_dev 12..25 %
#   error:         volume < 65 or > 135 %, |offset| > 80 um, bridge > 40 um, shape > 25 %


class Board:
    """Draws one board's measurements for a given label."""

    def __init__(self, rng):
        self.rng = rng

    def _clip(self, v, lo, hi):
        return lo if v < lo else hi if v > hi else v

    def draw(self, label, n):
        r = self.rng
        g = r.gauss
        pad_x, pad_y = r.choice(PADS)
        pad_x *= g(1.0, 0.005)
        pad_y *= g(1.0, 0.005)
        # Nominal print.
        height_pct = g(100.0, 4.0)
        area_pct = g(100.0, 3.5)
        off_x, off_y = g(0.0, 10.0), g(0.0, 10.0)
        bridge = 0.0
        shape = abs(g(0.0, 4.0))
        if label == "error":
            mode = r.choices(("insufficient", "excess", "offset", "bridge", "shape"),
                             (0.35, 0.15, 0.25, 0.15, 0.10))[0]
            if mode == "insufficient":
                height_pct = g(72.0, 8.0)
                area_pct = g(75.0, 9.0)
            elif mode == "excess":
                height_pct = g(122.0, 6.0)
                area_pct = g(118.0, 6.0)
                bridge = abs(g(0.0, 25.0)) if r.random() < 0.3 else 0.0
            elif mode == "offset":
                a = r.uniform(0, 2 * math.pi)
                d = r.uniform(85.0, 220.0)
                off_x, off_y = d * math.cos(a), d * math.sin(a)
            elif mode == "bridge":
                bridge = r.uniform(45.0, 300.0)
                height_pct = g(110.0, 6.0)
                area_pct = g(112.0, 6.0)
            else:
                shape = r.uniform(26.0, 55.0)
                area_pct = g(92.0, 6.0)
        elif label == "pseudo-error":
            mode = r.choices(("volume", "offset", "shape"), (0.5, 0.3, 0.2))[0]
            if mode == "volume":
                if r.random() < 0.7:
                    height_pct = g(86.0, 3.0)
                    area_pct = g(88.0, 3.0)
                else:
                    height_pct = g(111.0, 3.0)
                    area_pct = g(112.0, 3.0)
            elif mode == "offset":
                a = r.uniform(0, 2 * math.pi)
                d = r.uniform(42.0, 75.0)
                off_x, off_y = d * math.cos(a), d * math.sin(a)
            else:
                shape = r.uniform(12.0, 25.0)
        height_pct = self._clip(height_pct, 5.0, 200.0)
        area_pct = self._clip(area_pct, 5.0, 200.0)
        volume_pct = height_pct * area_pct / 100.0 * g(1.0, 0.01)
        height = STENCIL_UM * height_pct / 100.0
        nominal_area = pad_x * pad_y
        area = nominal_area * area_pct / 100.0
        volume = nominal_area * STENCIL_UM / 1000.0 * volume_pct / 100.0
        # Slow drift of the printer's environment over the run (simulated time).
        hours = n / 3600.0
        temperature = 23.5 + 1.2 * math.sin(hours * 0.7) + g(0.0, 0.15)
        humidity = 45.0 + 6.0 * math.sin(hours * 0.3 + 1.0) + g(0.0, 0.5)
        pos_x = r.uniform(5.0, BOARD_MM[0] - 5.0)
        pos_y = r.uniform(5.0, BOARD_MM[1] - 5.0)
        return (height, area, volume, off_x, off_y, pos_x, pos_y, height_pct, area_pct,
                volume_pct, bridge, shape, pad_x, pad_y, temperature, humidity)


def metadata(app, labels):
    defs = [{"name": name, "id": str(i + 1), "dataType": dtype}
            for i, (name, dtype, _unit, _dec) in enumerate(MEASUREMENTS)]
    if labels:
        defs.append({"name": "label", "id": LABEL_ID, "dataType": "String"})
    hash_version = zlib.crc32(json.dumps(defs, sort_keys=True).encode()) & 0x7FFFFFFF
    return {
        "seq": 1,
        "hashVersion": hash_version,
        "applicationName": "fabrik PCB SPI simulator V1.0",
        "statustopic": f"ie/s/j/simatic/v1/{app}/status",
        "connections": [{
            "name": CONNECTION,
            "type": "simulated",
            "dataPoints": [{
                "name": COLLECTION,
                "topic": f"ie/d/j/simatic/v1/{app}/dp/r/{CONNECTION}/{COLLECTION}",
                "publishType": "bulk",
                "dataPointDefinitions": defs,
            }],
        }],
    }


class Timestamps:
    """ISO 8601 UTC with milliseconds; the second's prefix is cached."""

    def __init__(self):
        self.sec = -1
        self.prefix = ""

    def at(self, t):
        ms = int(t * 1000)
        sec, frac = divmod(ms, 1000)
        if sec != self.sec:
            self.sec = sec
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self.prefix}.{frac:03d}Z"


def status_payload(seq, status, conn_status, ts):
    return json.dumps({"seq": seq, "ts": ts, "connector": {"status": status},
                       "connections": [{"name": CONNECTION, "status": conn_status}]},
                      separators=(",", ":"))


class Publisher:
    def __init__(self, args):
        self.args = args
        self.cond = threading.Condition()
        self.sent = 0      # publishes issued (data, metadata and status)
        self.acked = 0     # on_publish callbacks
        self.connected = threading.Event()
        self.connect_rc = None
        self.stop = False
        cid = args.client_id or f"pcb-publisher-{args.app}"
        self.client = mqtt.Client(client_id=cid, clean_session=True)
        self.client.on_connect = self.on_connect
        self.client.on_publish = self.on_publish
        self.client.on_disconnect = self.on_disconnect
        self.client.on_socket_open = self.on_socket_open
        # Paho's own queue stays unbounded; the window below bounds what is outstanding.
        self.client.max_inflight_messages_set(args.window)
        self.client.max_queued_messages_set(0)
        self.status_topic = f"ie/s/j/simatic/v1/{args.app}/status"
        self.meta_topic = f"ie/m/j/simatic/v1/{args.app}/dp"
        self.data_topic = f"ie/d/j/simatic/v1/{args.app}/dp/r/{CONNECTION}/{COLLECTION}"
        self.ts = Timestamps()
        self.client.will_set(self.status_topic,
                             status_payload(0, "unavailable", "bad", self.ts.at(time.time())),
                             qos=1, retain=True)

    # Paho callbacks (network thread).
    def on_socket_open(self, client, userdata, sock):
        try:  # Nagle would delay small publishes at low rates (see TOOLCHAIN.md, MQTT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def on_connect(self, client, userdata, flags, rc):
        self.connect_rc = rc
        self.connected.set()

    def on_disconnect(self, client, userdata, rc):
        if rc != 0 and not self.stop:
            print(f"pcb_publisher: connection lost ({mqtt.error_string(rc)}); reconnecting",
                  file=sys.stderr)

    def on_publish(self, client, userdata, mid):
        with self.cond:
            self.acked += 1
            self.cond.notify_all()

    # Main thread.
    def publish(self, topic, payload, qos, retain=False):
        # Bounded window: at most --window publishes not yet acknowledged (QoS 1/2) or
        # not yet written to the socket (QoS 0; Paho calls on_publish after the write).
        with self.cond:
            while self.sent - self.acked >= self.args.window:
                self.cond.wait(1.0)
            self.sent += 1
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos == 0:
            with self.cond:  # dropped by Paho while reconnecting: no on_publish will come
                self.acked += 1
        elif info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        return info

    def wait_acks(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.acked < self.sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def run(self):
        a = self.args
        try:
            self.client.connect(a.host, a.port, keepalive=30)
        except OSError as e:
            print(f"pcb_publisher: cannot connect to {a.host}:{a.port}: {e}", file=sys.stderr)
            return 1
        self.client.loop_start()
        try:
            return self._run()
        finally:
            self.client.loop_stop()

    def _run(self):
        a = self.args
        if not self.connected.wait(10) or self.connect_rc != 0:
            why = "timeout" if self.connect_rc is None else mqtt.connack_string(self.connect_rc)
            print(f"pcb_publisher: no CONNACK from {a.host}:{a.port}: {why}", file=sys.stderr)
            return 1
        sq = max(a.qos, 1)
        now = self.ts.at(time.time())
        self.publish(self.status_topic, status_payload(1, "available", "good", now), sq,
                     retain=True)
        self.publish(self.meta_topic, json.dumps(metadata(a.app, a.labels),
                                                 separators=(",", ":")), sq, retain=True)
        if not a.quiet:
            print(f"pcb_publisher: {a.app} -> {a.host}:{a.port} {self.data_topic} "
                  f"(rate {f'{a.rate:g}/s' if a.rate else 'max'}, count {a.count or 'forever'}, "
                  f"qos {a.qos})",
                  file=sys.stderr)

        rng = random.Random(a.seed)
        board = Board(rng)
        # Field formats, fixed per id: '{"id":"3","val":%.5f,"ts":"%s","qc":3}'.
        fmts = ['{"id":"%d","val":%%.%df,"ts":"%%s","qc":3}' % (i + 1, dec)
                for i, (_n, _t, _u, dec) in enumerate(MEASUREMENTS)]
        label_fmt = '{"id":"%s","val":"%%s","ts":"%%s","qc":3}' % LABEL_ID
        topic, qos, rate, count = self.data_topic, a.qos, a.rate, a.count
        labels = a.labels
        choices = rng.choices
        n = 0
        start = time.monotonic()
        next_t = start
        last_report = start
        while not self.stop and (count == 0 or n < count):
            if rate > 0:
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_t += 1.0 / rate
            label = choices(LABELS, LABEL_WEIGHTS)[0]
            vals = board.draw(label, n)
            ts = self.ts.at(time.time())
            parts = [f % (v, ts) for f, v in zip(fmts, vals)]
            if labels:
                parts.append(label_fmt % (label, ts))
            payload = '{"seq":%d,"vals":[%s]}' % (a.start_seq + n, ",".join(parts))
            self.publish(topic, payload, qos)
            n += 1
            if a.progress and not a.quiet:
                t = time.monotonic()
                if t - last_report >= a.progress:
                    last_report = t
                    print(f"pcb_publisher: {n} boards, {n / (t - start):.0f}/s", file=sys.stderr)
        ok = self.wait_acks(a.ack_timeout)
        elapsed = time.monotonic() - start
        # Clean stop: say so on the status topic (the last will covers crashes).
        self.publish(self.status_topic,
                     status_payload(2, "unavailable", "stopped", self.ts.at(time.time())), sq,
                     retain=True)
        ok = self.wait_acks(5) and ok
        self.client.disconnect()
        rate_done = n / elapsed if elapsed > 0 else 0.0
        print(f"published {n} boards in {elapsed:.2f} s ({rate_done:.0f} msg/s)", flush=True)
        if not ok:
            print(f"pcb_publisher: {self.sent - self.acked} publishes not acknowledged "
                  f"within {a.ack_timeout} s", file=sys.stderr)
            return 1
        return 0


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Simulated PCB solder-paste inspection line publishing simatic-v1 "
                    "(Industrial Edge databus) messages over MQTT.")
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--app", default="pcb1",
                   help="providerAppInstanceId in the topics (default pcb1)")
    p.add_argument("--rate", type=float, default=10.0,
                   help="boards per second; 0 = as fast as possible (default 10)")
    p.add_argument("--count", type=int, default=0, help="boards to publish; 0 = forever (default)")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1,
                   help="QoS of data messages (default 1); metadata and status use QoS >= 1")
    p.add_argument("--seed", type=int, default=None, help="random seed, for reproducible values")
    p.add_argument("--start-seq", type=int, default=1, help="seq of the first board (default 1)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=True,
                   help="publish the `label` datapoint (id 17; default on)")
    p.add_argument("--window", type=int, default=1000,
                   help="most publishes awaiting their ack (QoS 0: their write) (default 1000)")
    p.add_argument("--ack-timeout", type=float, default=60.0,
                   help="seconds to wait for outstanding acks at the end (default 60)")
    p.add_argument("--client-id", default=None, help="MQTT client id (default pcb-publisher-APP)")
    p.add_argument("--progress", type=float, default=0.0,
                   help="print progress to stderr every this many seconds (default off)")
    p.add_argument("-q", "--quiet", action="store_true", help="only print the summary line")
    a = p.parse_args(argv)
    if a.rate < 0 or a.count < 0 or a.window < 1:
        p.error("--rate and --count must be >= 0, --window >= 1")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    pub = Publisher(args)

    def on_signal(signum, frame):
        if pub.stop:  # second signal: give up
            sys.exit(130)
        pub.stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return pub.run()


if __name__ == "__main__":
    sys.exit(main())
