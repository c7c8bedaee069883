#!/usr/bin/env bash
# The demo: installs what is missing, builds, and runs the PCB ingest flow with a
# simulated solder-paste inspection line publishing simatic-v1 data to MQTT.
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
flow="$root/flows/examples/pcb-ingest.yaml"
demo="$root/build/demo"
data="$demo/data"
mkdir -p "$demo"

if bench_port_open 1883; then
  bench_log "an MQTT broker already listens on 127.0.0.1:1883; using it"
else
  bench_mosquitto_start "$demo/broker" 1883
  bench_log "started mosquitto on 127.0.0.1:1883 (log: $BENCH_MOSQ_LOG)"
fi

"$fabrik" check "$flow"
bench_log "starting: fabrik run $flow --data-dir $data"
"$fabrik" run "$flow" --data-dir "$data" --status-interval 10s >"$demo/fabrik.log" 2>&1 &
fabrik_pid=$!
bench_track_pid "$fabrik_pid"
tail -n +1 -f "$demo/fabrik.log" &  # the operator's view: each actor's state
bench_track_pid $!
bench_wait_for 20 grep -q "pcb_in: connected" "$demo/fabrik.log" 2>/dev/null ||
  bench_die "fabrik did not connect to the broker; see $demo/fabrik.log"

"$BENCH_PYTHON" "$root/bench/assets/pcb_publisher.py" --port 1883 --rate 10 -q \
  >"$demo/publisher.log" 2>&1 &
bench_track_pid $!

store="build/demo/data/storage/store" # relative to the repository, as the user types it
cat <<EOT

  fabrik is ingesting simulated PCB inspection data (10 boards/s, 16 measurements and a
  label each) from MQTT into LMDB. Status lines appear every 10 s. In another terminal:

    build/fabrik store $store
    build/fabrik store $store pcb_in/Line1/default --limit 3
    build/fabrik store $store pcb_in/Line1/default --from -1m | wc -l
    mosquitto_sub -t 'fabrik/pcb/#' -v -C 3     # the JSON copy for the plant

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
