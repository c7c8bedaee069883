#!/usr/bin/python3
"""Virtual PCB asset: a solder-paste inspection (SPI) line publishing in simatic-v1.

Simulates the paper's PCB workflow: after printing, an SPI machine measures the solder
paste deposit of every board and a connector publishes the result on the Industrial
Edge databus (the "common databus payload format", simatic-v1; see
docs/records.md):

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

The connector side (status, metadata, the window of unacknowledged publishes, the paced
loop, the common options, the clean stop) is simatic_asset.py's, shared with the IMU
asset (imu_publisher.py); this file holds what is PCB-specific. bench/assets/README.md
describes both assets.
"""

import argparse
import json
import math
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import simatic_asset as asset  # noqa: E402  (bench/assets/simatic_asset.py)

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
    return asset.metadata(app, "fabrik PCB SPI simulator V1.0", CONNECTION, COLLECTION, defs)


def board_payloads(a):
    """make_payload(n) for Publisher.run: board n as a simatic-v1 data message."""
    rng = random.Random(a.seed)
    board = Board(rng)
    stamps = asset.Timestamps()
    # Field formats, fixed per id: '{"id":"3","val":%.5f,"ts":"%s","qc":3}'.
    fmts = ['{"id":"%d","val":%%.%df,"ts":"%%s","qc":3}' % (i + 1, dec)
            for i, (_n, _t, _u, dec) in enumerate(MEASUREMENTS)]
    label_fmt = '{"id":"%s","val":"%%s","ts":"%%s","qc":3}' % LABEL_ID
    labels, start_seq = a.labels, a.start_seq
    choices = rng.choices

    def make_payload(n):
        label = choices(LABELS, LABEL_WEIGHTS)[0]
        vals = board.draw(label, n)
        ts = stamps.at(time.time())
        parts = [f % (v, ts) for f, v in zip(fmts, vals)]
        if labels:
            parts.append(label_fmt % (label, ts))
        return '{"seq":%d,"vals":[%s]}' % (start_seq + n, ",".join(parts))

    return make_payload


def print_boards(a):
    """--jsonl: boards as JSON lines on stdout, {"height": 118.2, ..., "label": "OK"}, for
    simulators of other protocols (tests/opcua/server.mjs --boards)."""
    rng = random.Random(a.seed)
    board = Board(rng)
    start, n = time.monotonic(), 0
    try:
        while not a.count or n < a.count:
            label = rng.choices(LABELS, LABEL_WEIGHTS)[0]
            vals = board.draw(label, n)
            row = {name: round(v, dec) for (name, _t, _u, dec), v in zip(MEASUREMENTS, vals)}
            if a.labels:
                row["label"] = label
            print(json.dumps(row), flush=True)
            n += 1
            if a.rate:
                time.sleep(max(0.0, start + n / a.rate - time.monotonic()))
    except (BrokenPipeError, KeyboardInterrupt):
        pass  # the reader went away: done
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Simulated PCB solder-paste inspection line publishing simatic-v1 "
                    "(Industrial Edge databus) messages over MQTT.")
    asset.add_connection_arguments(p, "pcb1")
    p.add_argument("--rate", type=float, default=10.0,
                   help="boards per second; 0 = as fast as possible (default 10)")
    p.add_argument("--count", type=int, default=0, help="boards to publish; 0 = forever (default)")
    asset.add_publish_arguments(p, "pcb_publisher", "board", LABEL_ID)
    p.add_argument("--jsonl", action="store_true",
                   help="print boards as JSON lines on stdout instead of publishing them")
    a = p.parse_args(argv)
    if a.rate < 0 or a.count < 0 or a.window < 1:
        p.error("--rate and --count must be >= 0, --window >= 1")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.jsonl:
        return print_boards(a)
    pub = asset.Publisher(a, "pcb_publisher", CONNECTION, COLLECTION, metadata(a.app, a.labels))
    asset.stop_on_signals(pub)
    rate = f"{a.rate:g}/s" if a.rate else "max"
    banner = (f"{a.app} -> {a.host}:{a.port} {pub.data_topic} "
              f"(rate {rate}, count {a.count or 'forever'}, qos {a.qos})")
    return pub.run(board_payloads(a), a.rate, a.count, "boards", banner)


if __name__ == "__main__":
    sys.exit(main())
