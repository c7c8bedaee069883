#!/usr/bin/python3
"""Virtual IMU asset: a worker with a 6-axis IMU on each hand, publishing in simatic-v1.

Simulates the paper's second workflow (IMU action classification): a worker wears an
inertial measurement unit on the back of each hand (accelerometer x/y/z in m/s²,
including gravity; gyroscope x/y/z in deg/s), sampled at --hz, and a connector
publishes every sample on the Industrial Edge databus (simatic-v1; see
docs/records.md):

  ie/s/j/simatic/v1/APP/status                status: birth "available" (retained), last
                                              will "unavailable" (retained)
  ie/m/j/simatic/v1/APP/dp                    metadata (retained, QoS 1): connection
                                              "Worker1", collection "imu", ids "1".."13"
  ie/d/j/simatic/v1/APP/dp/r/Worker1/imu      one data message per sample:
      {"seq":N,"vals":[{"id":"1","val":0.412,"ts":"2022-07-21T13:01:50.160Z","qc":3},...]}

Each sample carries 12 values, ids "1".."12": left_acc_x, left_acc_y, left_acc_z,
left_gyr_x, left_gyr_y, left_gyr_z, then the same for the right hand; and, unless
--no-labels, a String datapoint `label` (id "13"): the activity the worker is doing,
one of hammering, screwing, sawing, drilling, idle. Activities follow each other in
random order (never the same twice in a row) and last 3-10 s each.

Sensor frame, the same on both hands: x along the forearm towards the fingers, y to the
thumb side, z out of the back of the hand; a hand lying flat and still reads
(0, 0, +9.81) m/s². The worker is right-handed. What each activity looks like:

  hammering  right hand swings the hammer at 2-3 Hz (pitch rotation of a few hundred
             deg/s), every stroke ends in an impact: a sharp +z acceleration spike of
             4-8 g; the left hand holds the nail and feels a weak echo of each impact.
  screwing   right wrist twists back and forth at 1-2 Hz (roll, gyro x, ±25-45°), small
             linear acceleration (gravity turns with the wrist); left hand holds the part.
  sawing     both hands move back and forth along x at 1-1.5 Hz (strokes of 20-35 cm:
             ±5-14 m/s²), with tooth chatter on the push stroke.
  drilling   both hands hold a drill in a steady posture (right: pistol grip, hand turned
             on its side); ~20 Hz vibration (18-22 Hz, 2-5 m/s²; weaker on the left).
  idle       hands resting on the bench or hanging: gravity, slow sway and noise.

Every episode draws its own frequency, amplitude, posture and phase; a new activity
ramps in over ~0.5 s while the hands move to the new posture. On top: a slow sway of
both hands, white noise (0.05 m/s², 0.5 deg/s), a constant bias per axis, and the
sensors' range (±16 g, ±2000 deg/s). So a classifier on windows of ~1 s learns the
activities from per-axis statistics and spectra, with some confusion at the
boundaries. --seed makes the values reproducible.

Timestamps are the sensor's clock: sample n is stamped t0 + n/HZ (ms resolution), so
windows by time and by count agree. At --rate = --hz (the default) t0 is the start
time and the stream runs in real time; at another rate with a --count, the run is a
recorded history replayed, stamped so that its last sample is "now".

Usage (Debian's python3, which has python3-paho-mqtt 1.6):
  bench/assets/imu_publisher.py                                # real time, 50 Hz, forever
  bench/assets/imu_publisher.py --count 30000 --rate 0 --port 1884   # 10 min, at full speed
  bench/assets/imu_publisher.py --count 30000 --seed 1 --csv imu.csv # offline, no broker

With QoS 1 or 2 it waits for every acknowledgement before it exits and prints
"published N samples in S s (R msg/s)". At --rate 0 it keeps at most --window publishes
unacknowledged instead of waiting for each. SIGINT/SIGTERM stop it cleanly (acks are
still awaited). Exit status: 0 ok, 1 connection or acknowledgement failure (or a CSV
that cannot be written), 2 usage.

The connector side (status, metadata, window, paced loop, common options, clean stop) is
simatic_asset.py's, shared with pcb_publisher.py; bench/assets/README.md has both.
"""

import argparse
import math
import random
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import simatic_asset as asset  # noqa: E402  (bench/assets/simatic_asset.py)

CONNECTION = "Worker1"
COLLECTION = "imu"

G = 9.80665
ACC_RANGE = 16 * G      # m/s², the accelerometer saturates beyond
GYR_RANGE = 2000.0      # deg/s
ACC_NOISE = 0.05        # m/s², white
GYR_NOISE = 0.5         # deg/s, white
DEG = math.pi / 180.0
TAU = 2.0 * math.pi

# (name, dataType, unit, decimals). Ids are "1".."12" in this order, the label is "13".
AXES = [(f"{hand}_{sensor}_{axis}", "Real", unit, dec)
        for hand in ("left", "right")
        for sensor, unit, dec in (("acc", "m/s2", 3), ("gyr", "deg/s", 2))
        for axis in "xyz"]
AXIS_NAMES = [a[0] for a in AXES]
LABEL_ID = str(len(AXES) + 1)
ACTIVITIES = ("hammering", "screwing", "sawing", "drilling", "idle")
EPISODE_S = (3.0, 10.0)
RAMP_S = 0.5            # a new activity's motion fades in over this time


def smoothstep(x):
    """0 -> 1 on [0, 1] with zero slope at both ends; returns (value, slope)."""
    if x <= 0.0:
        return 0.0, 0.0
    if x >= 1.0:
        return 1.0, 0.0
    return x * x * (3.0 - 2.0 * x), 6.0 * x * (1.0 - x)


class Motion:
    """One hand's motion at an instant, on top of its posture (all in the sensor frame):
    roll/pitch offsets (rad) and their rates, yaw rate (rad/s), linear acceleration."""
    __slots__ = ("roll", "pitch", "droll", "dpitch", "dyaw", "ax", "ay", "az")

    def __init__(self):
        self.clear()

    def clear(self):
        self.roll = self.pitch = self.droll = self.dpitch = self.dyaw = 0.0
        self.ax = self.ay = self.az = 0.0


class Episode:
    """One activity episode: draws its parameters and postures, and moves both hands.

    posture: {side: (roll, pitch)} in rad; move(tau, left, right) fills both Motions for
    time tau (s) since the episode started, before the fade-in envelope is applied."""

    def __init__(self, label, rng, hz):
        self.label = label
        self.rng = rng
        self.hz = hz
        self.posture = {}

    def _posture(self, side, roll_deg, pitch_deg, sd=10.0):
        g = self.rng.gauss
        self.posture[side] = (g(roll_deg, sd) * DEG, g(pitch_deg, sd) * DEG)


class Idle(Episode):
    def __init__(self, rng, hz):
        super().__init__("idle", rng, hz)
        for side in ("left", "right"):
            if rng.random() < 0.6:   # resting on the bench
                self._posture(side, 0.0, 0.0)
            else:                    # hanging at the side: fingers (x) point down
                self._posture(side, rng.choice((-1, 1)) * 90.0, 75.0, 8.0)

    def move(self, tau, left, right):
        left.clear()
        right.clear()


class Hammering(Episode):
    def __init__(self, rng, hz):
        super().__init__("hammering", rng, hz)
        u = rng.uniform
        self.w = TAU * u(2.0, 3.0)
        self.phase = u(0.0, TAU)
        self.swing = u(20.0, 35.0) * DEG       # pitch amplitude of the swing
        self.radius = u(0.10, 0.20)            # m, wrist to sensor lever
        self.impact = u(40.0, 80.0)            # m/s², peak of the impact spike
        self.decay = u(0.012, 0.025)           # s
        self.echo = u(0.03, 0.08)              # share of the impact the left hand feels
        self.strokes = {}                      # stroke index -> its strength
        self._posture("right", 0.0, 10.0)
        self._posture("left", 0.0, -20.0)

    def _strength(self, k):
        s = self.strokes.get(k)
        if s is None:
            if len(self.strokes) > 64:
                self.strokes.clear()
            s = self.strokes[k] = max(0.3, self.rng.gauss(1.0, 0.15))
        return s

    def move(self, tau, left, right):
        a = self.w * tau + self.phase
        s, c = math.sin(a), math.cos(a)
        right.clear()
        right.pitch = self.swing * s
        right.dpitch = self.swing * self.w * c
        right.az = self.radius * self.swing * self.w * self.w * s   # tangential
        right.ax = -self.radius * (self.swing * self.w * c) ** 2     # centripetal
        # The head strikes when the downward swing is fastest (phase pi); the hand
        # decelerates sharply (+z) and the wrist's rotation stops for a moment.
        k = math.floor((a - math.pi) / TAU)
        since = (a - math.pi - k * TAU) / self.w
        spike = self.impact * self._strength(k) * math.exp(-since / self.decay)
        right.az += spike
        right.ax -= 0.3 * spike
        right.dpitch += 0.02 * spike  # rebound
        left.clear()
        left.az = self.echo * spike
        left.dpitch = 3.0 * DEG * left.az  # ~3 deg/s per m/s²


class Screwing(Episode):
    def __init__(self, rng, hz):
        super().__init__("screwing", rng, hz)
        u = rng.uniform
        self.w = TAU * u(1.0, 2.0)
        self.phase = u(0.0, TAU)
        self.phase2 = u(0.0, TAU)
        self.twist = u(25.0, 45.0) * DEG       # roll amplitude
        self.push = u(0.1, 0.5)                # m/s² along x, pressing the screwdriver
        self.reaction = u(0.02, 0.08)          # the left hand feels the torque
        if rng.random() < 0.5:                 # into the bench (pointing down) or a wall
            self._posture("right", 0.0, -35.0)
        else:
            self._posture("right", 0.0, 0.0)
        self._posture("left", 0.0, -10.0)

    def move(self, tau, left, right):
        a = self.w * tau + self.phase
        b = 2.0 * a + self.phase2
        w, t = self.w, self.twist
        right.clear()
        right.roll = t * (math.sin(a) + 0.2 * math.sin(b))
        right.droll = t * w * (math.cos(a) + 0.4 * math.cos(b))
        right.ax = self.push + 0.2 * math.sin(a)
        right.ay = 0.15 * math.cos(a)
        left.clear()
        left.droll = -self.reaction * right.droll
        left.roll = -self.reaction * right.roll


class Sawing(Episode):
    def __init__(self, rng, hz):
        super().__init__("sawing", rng, hz)
        u = rng.uniform
        self.w = TAU * u(1.0, 1.5)
        self.phase = u(0.0, TAU)
        stroke = u(0.20, 0.35)                 # m
        self.amp = stroke / 2.0 * self.w * self.w
        self.tilt = u(3.0, 8.0) * DEG          # elbow-driven pitch rocking
        self.chatter = u(0.5, 1.5)             # m/s², teeth catching on the push stroke
        self.chatter_w = TAU * u(8.0, 12.0)
        self.share = u(0.4, 0.8)               # left hand's share of the stroke
        self.lag = u(0.0, 0.3)                 # rad
        self._posture("right", 10.0, -10.0, 8.0)
        self._posture("left", -10.0, -10.0, 8.0)

    def move(self, tau, left, right):
        a = self.w * tau + self.phase
        s, c = math.sin(a), math.cos(a)
        chat = self.chatter * math.sin(self.chatter_w * tau) if c > 0.0 else 0.0
        right.clear()
        right.ax = -self.amp * s + chat
        right.az = 0.5 * chat
        right.pitch = self.tilt * c
        right.dpitch = -self.tilt * self.w * s
        right.dyaw = 0.3 * self.tilt * self.w * c
        a2 = a - self.lag
        s2, c2 = math.sin(a2), math.cos(a2)
        left.clear()
        left.ax = -self.share * self.amp * s2 + 0.5 * chat
        left.pitch = 0.5 * self.tilt * c2
        left.dpitch = -0.5 * self.tilt * self.w * s2


class Drilling(Episode):
    def __init__(self, rng, hz):
        super().__init__("drilling", rng, hz)
        u = rng.uniform
        self.w = TAU * u(18.0, 22.0)
        self.wobble = TAU * u(0.2, 0.5)        # motor speed varies a little under load
        self.amp = u(2.0, 5.0)                 # m/s² along the drill's axis (x)
        self.gyr = u(5.0, 15.0) * DEG          # rad/s
        self.share = u(0.4, 0.8)               # the side handle gets less
        self.push = u(0.3, 1.0)                # m/s², leaning into the drill
        self.ph = [u(0.0, TAU) for _ in range(6)]
        self._posture("right", 80.0, 0.0, 8.0)
        self._posture("left", -10.0, 0.0, 8.0)

    def move(self, tau, left, right):
        a = self.w * tau + 0.8 * math.sin(self.wobble * tau)
        p, amp, gyr = self.ph, self.amp, self.gyr
        right.clear()
        right.ax = self.push + amp * math.sin(a + p[0])
        right.ay = 0.5 * amp * math.sin(a + p[1])
        right.az = 0.3 * amp * math.sin(a + p[2])
        right.dpitch = gyr * math.sin(a + p[3])
        right.dyaw = gyr * math.sin(a + p[4])
        k = self.share
        left.clear()
        left.ax = k * (self.push + amp * math.sin(a + p[5]))
        left.ay = 0.5 * k * amp * math.sin(a + p[0])
        left.az = 0.3 * k * amp * math.sin(a + p[1])
        left.dpitch = k * gyr * math.sin(a + p[2])
        left.dyaw = 0.5 * k * gyr * math.sin(a + p[3])


EPISODES = {"hammering": Hammering, "screwing": Screwing, "sawing": Sawing,
            "drilling": Drilling, "idle": Idle}


class Sway:
    """Slow, smooth sway of one hand, running across episodes: angles (rad) as sums of
    two sinusoids, and a small linear acceleration."""

    def __init__(self, rng):
        u = rng.uniform
        self.angle = [[(u(0.5, 2.0) * DEG, TAU * u(0.08, 0.4), u(0.0, TAU)) for _ in range(2)]
                      for _ in range(3)]
        self.lin = [(u(0.02, 0.08), TAU * u(0.3, 1.5), u(0.0, TAU)) for _ in range(3)]

    def at(self, t):
        """(roll, pitch, droll, dpitch, dyaw, ax, ay, az)"""
        out = []
        rates = []
        for terms in self.angle:
            out.append(sum(a * math.sin(w * t + p) for a, w, p in terms))
            rates.append(sum(a * w * math.cos(w * t + p) for a, w, p in terms))
        lin = [a * math.sin(w * t + p) for a, w, p in self.lin]
        return (out[0], out[1], rates[0], rates[1], rates[2], lin[0], lin[1], lin[2])


class ImuSimulator:
    """The worker and both IMUs. next() returns (values, label) for the next sample:
    values in AXES order (m/s², deg/s), label the current activity."""

    def __init__(self, rng, hz):
        self.rng = rng
        self.hz = hz
        self.n = 0
        g = rng.gauss
        self.bias = [g(0.0, 0.05) if i % 6 < 3 else g(0.0, 0.5) for i in range(12)]
        self.sway = {"left": Sway(rng), "right": Sway(rng)}
        self.motion = {"left": Motion(), "right": Motion()}
        self.episode = None
        self.end = 0            # sample index where the current episode ends
        self.start = 0
        self.prev_posture = {"left": (0.0, 0.0), "right": (0.0, 0.0)}
        self.previous = None

    def _next_episode(self):
        rng = self.rng
        if self.episode is not None:
            self.prev_posture = self.episode.posture
        label = rng.choice([a for a in ACTIVITIES if a != self.previous])
        self.previous = label
        self.episode = EPISODES[label](rng, self.hz)
        self.start = self.n
        self.end = self.n + max(1, round(rng.uniform(*EPISODE_S) * self.hz))

    def next(self):
        if self.n >= self.end:
            self._next_episode()
        ep = self.episode
        t = self.n / self.hz
        tau = (self.n - self.start) / self.hz
        env, denv = smoothstep(tau / RAMP_S)
        denv /= RAMP_S
        left, right = self.motion["left"], self.motion["right"]
        ep.move(tau, left, right)
        gauss = self.rng.gauss
        values = []
        for side, m in (("left", left), ("right", right)):
            r0, p0 = self.prev_posture[side]
            r1, p1 = ep.posture[side]
            sw = self.sway[side].at(t)
            # Posture glides from the last episode's to this one's while the motion
            # fades in; rates are the derivatives of the same angles.
            roll = r0 + (r1 - r0) * env + env * m.roll + sw[0]
            pitch = p0 + (p1 - p0) * env + env * m.pitch + sw[1]
            droll = (r1 - r0 + m.roll) * denv + env * m.droll + sw[2]
            dpitch = (p1 - p0 + m.pitch) * denv + env * m.dpitch + sw[3]
            dyaw = env * m.dyaw + sw[4]
            # Specific force: linear acceleration minus gravity, in the sensor frame.
            cp = math.cos(pitch)
            acc = (-G * math.sin(pitch) + env * m.ax + sw[5],
                   G * math.sin(roll) * cp + env * m.ay + sw[6],
                   G * math.cos(roll) * cp + env * m.az + sw[7])
            for v in acc:
                v += gauss(0.0, ACC_NOISE)
                values.append(ACC_RANGE if v > ACC_RANGE else -ACC_RANGE if v < -ACC_RANGE
                              else v)
            for v in (droll, dpitch, dyaw):
                v = v / DEG + gauss(0.0, GYR_NOISE)
                values.append(GYR_RANGE if v > GYR_RANGE else -GYR_RANGE if v < -GYR_RANGE
                              else v)
        bias = self.bias
        self.n += 1
        return [v + b for v, b in zip(values, bias)], ep.label


def metadata(app, labels):
    defs = [{"name": name, "id": str(i + 1), "dataType": dtype}
            for i, (name, dtype, _unit, _dec) in enumerate(AXES)]
    if labels:
        defs.append({"name": "label", "id": LABEL_ID, "dataType": "String"})
    return asset.metadata(app, "fabrik IMU simulator V1.0", CONNECTION, COLLECTION, defs)


def start_ms(a):
    """The timestamp of sample 0, in ms since the epoch (see the module's docstring)."""
    now = int(time.time() * 1000)
    if a.csv is None and a.rate == a.hz:
        return now
    if a.count:
        return now - round((a.count - 1) * 1000.0 / a.hz)
    return now


def sample_payloads(a):
    """make_payload(n) for Publisher.run: sample n as a simatic-v1 data message."""
    sim = ImuSimulator(random.Random(a.seed), a.hz)
    stamps = asset.Timestamps()
    fmts = ['{"id":"%d","val":%%.%df,"ts":"%%s","qc":3}' % (i + 1, dec)
            for i, (_n, _t, _u, dec) in enumerate(AXES)]
    label_fmt = '{"id":"%s","val":"%%s","ts":"%%s","qc":3}' % LABEL_ID
    labels, start_seq, hz = a.labels, a.start_seq, a.hz
    t0 = []

    def make_payload(n):
        if not t0:
            t0.append(start_ms(a))
        vals, label = sim.next()
        ts = stamps.at_ms(t0[0] + round(n * 1000.0 / hz))
        parts = [f % (v, ts) for f, v in zip(fmts, vals)]
        if labels:
            parts.append(label_fmt % (label, ts))
        return '{"seq":%d,"vals":[%s]}' % (start_seq + n, ",".join(parts))

    return make_payload


def write_csv(a, stop):
    """--csv: the samples as CSV (header ts,t,AXES...,label), no broker involved."""
    out = sys.stdout if a.csv == "-" else None
    try:
        if out is None:
            out = open(a.csv, "w", encoding="utf-8", newline="")
    except OSError as e:
        print(f"imu_publisher: cannot write {a.csv}: {e}", file=sys.stderr)
        return 1
    sim = ImuSimulator(random.Random(a.seed), a.hz)
    stamps = asset.Timestamps()
    t0 = start_ms(a)
    fmt = ",".join("%%.%df" % dec for _n, _t, _u, dec in AXES)
    header = ["ts", "t"] + AXIS_NAMES + (["label"] if a.labels else [])
    n = 0
    start = time.monotonic()
    try:
        out.write(",".join(header) + "\n")
        while not stop.stop and (a.count == 0 or n < a.count):
            vals, label = sim.next()
            ms = round(n * 1000.0 / a.hz)
            line = "%s,%.3f,%s" % (stamps.at_ms(t0 + ms), ms / 1000.0, fmt % tuple(vals))
            out.write(line + ("," + label + "\n" if a.labels else "\n"))
            n += 1
        out.flush()
        if out is not sys.stdout:
            out.close()
    except OSError as e:
        print(f"imu_publisher: cannot write {a.csv}: {e}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - start
    print(f"wrote {n} samples ({n / a.hz:.1f} s at {a.hz:g} Hz) to "
          f"{'stdout' if out is sys.stdout else a.csv} in {elapsed:.2f} s",
          file=sys.stderr if out is sys.stdout else sys.stdout, flush=True)
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Simulated worker with an IMU on each hand (hammering, screwing, "
                    "sawing, drilling, idle) publishing simatic-v1 (Industrial Edge "
                    "databus) messages over MQTT.")
    asset.add_connection_arguments(p, "imu1")
    p.add_argument("--hz", type=float, default=50.0,
                   help="sample rate of the IMUs, samples per second (default 50)")
    p.add_argument("--rate", type=float, default=None,
                   help="samples published per second; 0 = as fast as possible "
                        "(default: --hz, real time)")
    p.add_argument("--count", type=int, default=0,
                   help="samples to publish; 0 = forever (default)")
    p.add_argument("--csv", metavar="FILE", default=None,
                   help="write the samples to FILE as CSV (- for stdout) instead of "
                        "publishing; needs no broker")
    asset.add_publish_arguments(p, "imu_publisher", "sample", LABEL_ID)
    a = p.parse_args(argv)
    if a.rate is None:
        a.rate = a.hz
    if not 0 < a.hz <= 1000:
        p.error("--hz must be > 0 and <= 1000 (timestamps have ms resolution)")
    if a.rate < 0 or a.count < 0 or a.window < 1:
        p.error("--rate and --count must be >= 0, --window >= 1")
    if a.csv is not None and a.count == 0 and a.csv != "-":
        p.error("--csv FILE needs --count")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.csv is not None:
        class Stop:
            stop = False
        stop = Stop()
        asset.stop_on_signals(stop)
        return write_csv(a, stop)
    pub = asset.Publisher(a, "imu_publisher", CONNECTION, COLLECTION, metadata(a.app, a.labels))
    asset.stop_on_signals(pub)
    rate = "real time" if a.rate == a.hz else f"{a.rate:g}/s" if a.rate else "max"
    banner = (f"{a.app} -> {a.host}:{a.port} {pub.data_topic} "
              f"({a.hz:g} Hz, rate {rate}, count {a.count or 'forever'}, qos {a.qos})")
    if a.count == 0 and (a.rate == 0 or a.rate > a.hz) and not a.quiet:
        print("imu_publisher: publishing faster than --hz forever: timestamps run ahead "
              "of the clock", file=sys.stderr)
    return pub.run(sample_payloads(a), a.rate, a.count, "samples", banner)


if __name__ == "__main__":
    sys.exit(main())
