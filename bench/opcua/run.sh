#!/usr/bin/env bash
# OPC UA ingest benchmark: VARS variables on a node-opcua server (tests/opcua/server.mjs),
# each changing every PERIOD ms. fabrik (opcua.source -> storage) and a node-opcua client
# script (bench/opcua/client.mjs, counts values) subscribe to all of them at the same time
# with the same intervals; over a window of SECONDS both are measured: values/s received
# and CPU used (utime + stime from /proc). See bench/opcua/README.md.
#
# usage: bench/opcua/run.sh [SECONDS]       measuring window, default 30
#
# environment:
#   FABRIK            fabrik binary (default: build/fabrik in the repository)
#   VARS              variables (default 1000)
#   PERIOD_MS         how often each changes (default 100)
#   PUBLISHING_MS     publishing interval of both subscriptions (default 100)
#   BENCH_KEEP_TMP=1  keep the temp dir (server, fabrik and client logs)
#
# Exit status: 0 when both ran (a consumer that falls behind is reported, not failed), 1
# when something failed to run, 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BENCH_NAME=opcua
export BENCH_NAME
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

bench_count 30 "$@"
SECONDS_=$BENCH_N
FABRIK=${FABRIK:-$root/build/fabrik}
VARS=${VARS:-1000}
PERIOD_MS=${PERIOD_MS:-100}
PUBLISHING_MS=${PUBLISHING_MS:-100}
[ -x "$FABRIK" ] || bench_die "no fabrik binary at $FABRIK: build it (scripts/build.sh)"
[ -d "$root/tests/opcua/node_modules" ] || bench_die "tests/opcua/node_modules missing: run scripts/setup.sh"

bench_install_trap
bench_tmpdir tmp
port=$(bench_free_port)
endpoint="opc.tcp://127.0.0.1:$port/fabrik"

XDG_CONFIG_HOME="$tmp/xdg" node "$root/tests/opcua/server.mjs" --port "$port" \
  --vars "$VARS" --period "$PERIOD_MS" >"$tmp/server.log" 2>&1 &
server=$!
bench_track_pid "$server"
bench_wait_for 60 grep -q '^ready' "$tmp/server.log" || bench_die "server did not start: $(cat "$tmp/server.log")"

cat >"$tmp/flow.yaml" <<FLOW
name: bench-opcua
actors:
  bench:
    kind: opcua.source
    endpoint: "$endpoint"
    folders: [Bench]
    sampling_interval: 0s
    publishing_interval: ${PUBLISHING_MS}ms
    queue_size: 10
  store: {kind: storage}
wires: [bench -> store]
FLOW
"$FABRIK" run "$tmp/flow.yaml" --data-dir "$tmp/data" --http off --status-interval 1s \
  >"$tmp/fabrik.log" 2>&1 &
fabrik=$!
bench_track_pid "$fabrik"
node "$here/client.mjs" "$endpoint" "$VARS" "$PUBLISHING_MS" >"$tmp/client.log" 2>&1 &
client=$!
bench_track_pid "$client"

bench_wait_for 60 grep -q 'bench: subscribed' "$tmp/fabrik.log" || bench_die "fabrik did not subscribe: $(tail -5 "$tmp/fabrik.log")"
bench_wait_for 60 grep -q '^subscribed' "$tmp/client.log" || bench_die "client did not subscribe: $(tail -5 "$tmp/client.log")"
sleep 3 # past the initial values

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# "COUNT SECONDS": the last count and when it was taken (a status line's time, the client's).
fabrik_values() {
  grep 'bench (opcua.source) .*values=' "$tmp/fabrik.log" | tail -1 |
    sed -E 's/^([0-9T:.-]+) .*values=([0-9]+).*/\2 \1/' |
    { read -r n t; echo "$n $(date -u -d "${t/T/ } UTC" +%s.%N)"; }
}
client_values() { grep '^values ' "$tmp/client.log" | tail -1 | cut -d' ' -f2,3; }

f0=$(fabrik_values); c0=$(client_values); ft0=$(cpu_ticks "$fabrik"); ct0=$(cpu_ticks "$client")
st0=$(cpu_ticks "$server"); t0=$(bench_now)
sleep "$SECONDS_"
sleep 1.1 # one more status line / count line covering the window's end
f1=$(fabrik_values); c1=$(client_values); ft1=$(cpu_ticks "$fabrik"); ct1=$(cpu_ticks "$client")
st1=$(cpu_ticks "$server"); t1=$(bench_now)

hz=$(getconf CLK_TCK)
python3 - "$VARS" "$PERIOD_MS" "$(bench_elapsed "$t0" "$t1")" "$hz" \
  $f0 $f1 "$ft0" "$ft1" $c0 $c1 "$ct0" "$ct1" "$st0" "$st1" <<'PY'
import sys
vars_, period, secs, hz = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
# Counts with the time they were taken: rates over those times, CPU over the window.
f0, f0t, f1, f1t = int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
ft0, ft1 = int(sys.argv[9]), int(sys.argv[10])
c0, c0t, c1, c1t = int(sys.argv[11]), float(sys.argv[12]), int(sys.argv[13]), float(sys.argv[14])
ct0, ct1, st0, st1 = map(int, sys.argv[15:19])
expected = vars_ * 1000.0 / period
def row(name, values, counted, ticks):
    rate = values / counted
    cpu = ticks / hz / secs * 100
    print(f"{name:<20} {rate:>10.0f} values/s ({rate / expected * 100:5.1f} % of changes)   CPU {cpu:5.1f} %")
    return rate, cpu
print(f"{vars_} variables every {period:g} ms: {expected:.0f} changes/s, window {secs:.1f} s")
fr, fc = row("fabrik (-> storage)", f1 - f0, f1t - f0t, ft1 - ft0)
cr, cc = row("node-opcua client", c1 - c0, c1t - c0t, ct1 - ct0)
print(f"{'server (node-opcua)':<20} {'':>10}                              CPU {(st1 - st0) / hz / secs * 100:5.1f} %")
print(f"ratio fabrik/client: values {fr / cr:.2f}x, CPU {fc / cc:.2f}x" if cr and cc else "ratio: n/a")
print("fabrik keeps up with every change" if fr >= 0.99 * expected else "fabrik FELL BEHIND")
PY
