"""What fabrik's virtual assets share: a simatic-v1 connector publishing over MQTT.

A virtual asset (pcb_publisher.py, imu_publisher.py) behaves like an Industrial Edge
connector with one connection and one collection (see docs/records.md):

  ie/s/j/simatic/v1/APP/status                      birth "available" (retained), last
                                                    will "unavailable" (retained), a
                                                    clean stop says "unavailable"/"stopped"
  ie/m/j/simatic/v1/APP/dp                          metadata (retained, QoS >= 1)
  ie/d/j/simatic/v1/APP/dp/r/CONNECTION/COLLECTION  the asset's data messages

This module holds that part: the metadata and status payloads, ISO 8601 timestamps, the
MQTT client with its bounded window of unacknowledged publishes, the paced publish loop
with progress and summary lines, the command-line options every asset has, and the
signal handling for a clean stop. An asset supplies its datapoints and a function that
makes the payload of data message number n.

Not a program: import it from a script in this folder (the script's folder is on
sys.path when run as bench/assets/NAME.py).
"""

import argparse
import json
import signal
import socket
import sys
import threading
import time
import zlib

import paho.mqtt.client as mqtt


def metadata(app, application_name, connection, collection, defs):
    """The metadata message of a connector with one connection and one collection.

    defs: [{"name": ..., "id": ..., "dataType": ...}, ...]; hashVersion follows them."""
    hash_version = zlib.crc32(json.dumps(defs, sort_keys=True).encode()) & 0x7FFFFFFF
    return {
        "seq": 1,
        "hashVersion": hash_version,
        "applicationName": application_name,
        "statustopic": f"ie/s/j/simatic/v1/{app}/status",
        "connections": [{
            "name": connection,
            "type": "simulated",
            "dataPoints": [{
                "name": collection,
                "topic": f"ie/d/j/simatic/v1/{app}/dp/r/{connection}/{collection}",
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
        """t: seconds since the epoch (float)."""
        return self.at_ms(int(t * 1000))

    def at_ms(self, ms):
        """ms: whole milliseconds since the epoch."""
        sec, frac = divmod(ms, 1000)
        if sec != self.sec:
            self.sec = sec
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self.prefix}.{frac:03d}Z"


def status_payload(seq, status, conn_status, ts, connection):
    return json.dumps({"seq": seq, "ts": ts, "connector": {"status": status},
                       "connections": [{"name": connection, "status": conn_status}]},
                      separators=(",", ":"))


def start_client(client, args, name):
    """Connects `client` to args.host:args.port and starts its network loop; False (after
    saying why on stderr) when the broker cannot be reached."""
    try:
        client.connect(args.host, args.port, keepalive=30)
    except OSError as e:
        print(f"{name}: cannot connect to {args.host}:{args.port}: {e}", file=sys.stderr)
        return False
    client.loop_start()
    return True


class Publisher:
    """One asset's MQTT connection: status, metadata, then paced data messages.

    args: the parsed options of add_connection_arguments and add_publish_arguments.
    name: the program's name in messages ("pcb_publisher").
    meta: the metadata message (a dict, see metadata())."""

    def __init__(self, args, name, connection, collection, meta):
        self.args = args
        self.name = name
        self.connection = connection
        self.meta = meta
        self.cond = threading.Condition()
        self.sent = 0      # publishes issued (data, metadata and status)
        self.acked = 0     # on_publish callbacks
        self.connected = threading.Event()
        self.connect_rc = None
        self.stop = False
        cid = args.client_id or f"{name.replace('_', '-')}-{args.app}"
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
        self.data_topic = f"ie/d/j/simatic/v1/{args.app}/dp/r/{connection}/{collection}"
        self.ts = Timestamps()
        self.client.will_set(self.status_topic, self._status(0, "unavailable", "bad"),
                             qos=1, retain=True)

    def _status(self, seq, status, conn_status):
        return status_payload(seq, status, conn_status, self.ts.at(time.time()),
                              self.connection)

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
            print(f"{self.name}: connection lost ({mqtt.error_string(rc)}); reconnecting",
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

    def run(self, make_payload, rate, count, unit, banner):
        """Connects, announces the asset, publishes `count` data messages (0 = until
        stopped) at `rate` per second (0 = as fast as the window allows), then waits for
        the acknowledgements and says goodbye on the status topic.

        make_payload(n) returns the payload of data message n (0-based); it is called
        when the message is due. unit names the messages in the summary ("boards");
        banner goes after "NAME: " on stderr before the first message unless --quiet.
        Returns the exit status: 0 ok, 1 connection or acknowledgement failure."""
        if not start_client(self.client, self.args, self.name):
            return 1
        try:
            return self._run(make_payload, rate, count, unit, banner)
        finally:
            self.client.loop_stop()

    def _run(self, make_payload, rate, count, unit, banner):
        a = self.args
        if not self.connected.wait(10) or self.connect_rc != 0:
            why = "timeout" if self.connect_rc is None else mqtt.connack_string(self.connect_rc)
            print(f"{self.name}: no CONNACK from {a.host}:{a.port}: {why}", file=sys.stderr)
            return 1
        sq = max(a.qos, 1)
        self.publish(self.status_topic, self._status(1, "available", "good"), sq, retain=True)
        self.publish(self.meta_topic, json.dumps(self.meta, separators=(",", ":")), sq,
                     retain=True)
        if not a.quiet:
            print(f"{self.name}: {banner}", file=sys.stderr)

        publish, topic, qos = self.publish, self.data_topic, a.qos
        progress = a.progress if not a.quiet else 0
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
            publish(topic, make_payload(n), qos)
            n += 1
            if progress:
                t = time.monotonic()
                if t - last_report >= progress:
                    last_report = t
                    print(f"{self.name}: {n} {unit}, {n / (t - start):.0f}/s", file=sys.stderr)
        ok = self.wait_acks(a.ack_timeout)
        elapsed = time.monotonic() - start
        # Clean stop: say so on the status topic (the last will covers crashes).
        self.publish(self.status_topic, self._status(2, "unavailable", "stopped"), sq,
                     retain=True)
        ok = self.wait_acks(5) and ok
        self.client.disconnect()
        rate_done = n / elapsed if elapsed > 0 else 0.0
        print(f"published {n} {unit} in {elapsed:.2f} s ({rate_done:.0f} msg/s)", flush=True)
        if not ok:
            print(f"{self.name}: {self.sent - self.acked} publishes not acknowledged "
                  f"within {a.ack_timeout} s", file=sys.stderr)
            return 1
        return 0


# -- command line -----------------------------------------------------------------------

def add_connection_arguments(p, app):
    """--host, --port, --app (default `app`)."""
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--app", default=app,
                   help=f"providerAppInstanceId in the topics (default {app})")


def add_publish_arguments(p, name, unit, label_id):
    """--qos, --seed, --start-seq, --labels, --window, --ack-timeout, --client-id,
    --progress, -q. unit: what one data message is ("board"); name: the program's."""
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1,
                   help="QoS of data messages (default 1); metadata and status use QoS >= 1")
    p.add_argument("--seed", type=int, default=None, help="random seed, for reproducible values")
    p.add_argument("--start-seq", type=int, default=1,
                   help=f"seq of the first {unit} (default 1)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=True,
                   help=f"publish the `label` datapoint (id {label_id}; default on)")
    p.add_argument("--window", type=int, default=1000,
                   help="most publishes awaiting their ack (QoS 0: their write) (default 1000)")
    p.add_argument("--ack-timeout", type=float, default=60.0,
                   help="seconds to wait for outstanding acks at the end (default 60)")
    p.add_argument("--client-id", default=None,
                   help=f"MQTT client id (default {name.replace('_', '-')}-APP)")
    p.add_argument("--progress", type=float, default=0.0,
                   help="print progress to stderr every this many seconds (default off)")
    p.add_argument("-q", "--quiet", action="store_true", help="only print the summary line")


def stop_on_signals(target):
    """SIGINT/SIGTERM set target.stop (a clean stop: acks are still awaited); a second
    signal exits at once with status 130."""

    def on_signal(signum, frame):
        if target.stop:  # second signal: give up
            sys.exit(130)
        target.stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
