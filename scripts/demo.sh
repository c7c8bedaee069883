#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs the PCB flow with a simulated
# solder-paste inspection line publishing simatic-v1 data to MQTT: fabrik stores the
# boards, trains the pcb-classifier workflow on them and publishes a prediction per board.
#
#   bash scripts/demo.sh              runs until Ctrl-C
#   DEMO_SECONDS=30 bash scripts/demo.sh   runs 30 s, then stops by itself
#
# State goes to build/demo/ (broker persistence, fabrik's data directory, logs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh

BENCH_NAME=demo
export BENCH_NAME
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
bench_install_trap

fabrik="$root/build/fabrik"
flow="$root/flows/examples/pcb-classify.yaml"
demo="$root/build/demo"
data="$demo/data"
mkdir -p "$demo"

if bench_port_open 1883; then
  bench_log "an MQTT broker already listens on 127.0.0.1:1883; using it"
else
  bench_mosquitto_start "$demo/broker" 1883
  bench_log "started mosquitto on 127.0.0.1:1883 (log: $BENCH_MOSQ_LOG)"
fi

"$fabrik" package "$root/examples/pcb-classifier" -o "$root/build/pcb-classifier.zip"
"$fabrik" check "$flow"
watched="$root/flows/examples/workflows" # the flow's watched directory (git ignores it)
bench_log "starting: fabrik run $flow --data-dir $data"
"$fabrik" run "$flow" --data-dir "$data" --status-interval 10s >"$demo/fabrik.log" 2>&1 &
fabrik_pid=$!
bench_track_pid "$fabrik_pid"
tail -n +1 -f "$demo/fabrik.log" &  # the operator's view: each actor's state
bench_track_pid $!
bench_wait_for 20 grep -q "pcb_in: connected" "$demo/fabrik.log" 2>/dev/null ||
  bench_die "fabrik did not connect to the broker; see $demo/fabrik.log"

# A shift's worth of labelled history first (the workflow trains on it), then live boards.
"$BENCH_PYTHON" "$root/bench/assets/pcb_publisher.py" --port 1883 --count 3000 --rate 0 -q \
  --seed "$RANDOM" --start-seq 1 >"$demo/publisher.log" 2>&1
# The data scientist's step: drop the package into the watched directory.
mkdir -p "$watched"
cp "$root/build/pcb-classifier.zip" "$watched/"
bench_log "copied pcb-classifier.zip into $watched: fabrik deploys and trains it"
"$BENCH_PYTHON" "$root/bench/assets/pcb_publisher.py" --port 1883 --rate 10 -q \
  --seed "$RANDOM" --start-seq 1000000 >>"$demo/publisher.log" 2>&1 &
bench_track_pid $!

store="build/demo/data/storage/store" # relative to the repository, as the user types it
ui=$(grep -o 'http: web UI on http://[^ ]*' "$demo/fabrik.log" | head -1 | sed 's/^http: web UI on //')
token=$(cat "$data/http-token" 2>/dev/null || true)
cat <<EOT

  fabrik is ingesting simulated PCB inspection data (3000 boards of history, then 10
  boards/s, 16 measurements and the operator's label each) from MQTT into LMDB. The
  pcb-classifier package was just dropped into flows/examples/workflows/: fabrik stores
  it as a version, trains it on the stored boards in a Python worker ("classifier:
  serving pcb-classifier" below), then every new board gets a prediction (OK / error /
  pseudo-error). Status lines appear every 10 s.

  The operator pages: ${ui:-(no web UI: see the log)}#token=$token

  In another terminal:

    mosquitto_sub -t 'fabrik/pcb-classify/#' -v          # predictions, live
    build/fabrik train flows/examples/pcb-classify.yaml classifier --data-dir build/demo/data
    build/fabrik runs --data-dir build/demo/data         # training runs, measured
    build/fabrik store $store pcb_in/Line1/default --limit 3

  Ctrl-C stops the demo; the stored data stays in build/demo/data.

EOT

if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
  kill -TERM "$fabrik_pid"
fi
# Ctrl-C reaches fabrik too (same process group): it stops cleanly, then the summary.
trap 'bench_log "stopping"' INT
while kill -0 "$fabrik_pid" 2>/dev/null; do wait "$fabrik_pid" || true; done
bench_untrack_pid "$fabrik_pid"
bench_cleanup
echo
"$fabrik" store "$store"
"$fabrik" runs --data-dir "$data" --limit 5
