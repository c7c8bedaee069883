#!/usr/bin/env bash
# GenICam benchmark: frames/s and MB/s from aravis's fake GigE Vision camera through
# fabrik (genicam.source) into storage, and into a workflow (examples/frame-check), against
# aravis's own arv-camera-test-0.8 on the same camera in the same run. Counts the frames
# fabrik dropped (its queue full) and the ones aravis lost (incomplete, underruns).
# See bench/genicam/README.md.
#
# usage: bench/genicam/run.sh [SECONDS]      measured seconds per consumer, default 20
#
# environment:
#   FABRIK            fabrik binary (default: build/fabrik in the repository)
#   BENCH_RATE        AcquisitionFrameRate asked of the camera (default 100)
#   BENCH_WIDTH       frame width (default 512, the fake camera's full width)
#   BENCH_HEIGHT      frame height (default 512)
#   BENCH_CONSUMERS   which to run, in order (default "arv-camera-test storage workflow")
#   BENCH_KEEP_TMP=1  keep the temp dir (logs, data dirs)
#
# Exit status: 0 when every consumer ran (drops are reported, not failed), 1 when
# something failed to run, 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BENCH_NAME=genicam
export BENCH_NAME
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

bench_count 20 "$@"
D=$BENCH_N
FABRIK=${FABRIK:-$root/build/fabrik}
RATE=${BENCH_RATE:-100}
W=${BENCH_WIDTH:-512}
H=${BENCH_HEIGHT:-512}
CONSUMERS=${BENCH_CONSUMERS:-arv-camera-test storage workflow}
CAMERA=Aravis-Fake-GV01
WARMUP_S=3

command -v arv-fake-gv-camera-0.8 >/dev/null || bench_die "arv-fake-gv-camera-0.8 missing: run scripts/setup.sh (aravis-tools)"
bench_install_trap
bench_tmpdir tmp

# -- the camera -------------------------------------------------------------------------
# It always listens on 127.0.0.1:3956 (GVCP has no port option): one at a time.
if ss -Hlun 'sport = :3956' | grep -q '127.0.0.1:3956'; then
  bench_die "another GigE Vision camera listens on 127.0.0.1:3956: stop it first"
fi
arv-fake-gv-camera-0.8 -i 127.0.0.1 >"$tmp/camera.log" 2>&1 &
cam_pid=$!
bench_track_pid "$cam_pid"
bench_wait_for 10 sh -c "ss -Hlun 'sport = :3956' | grep -q 127.0.0.1:3956" \
  || bench_die "the fake camera did not start: $(cat "$tmp/camera.log")"

results=()
frame_mb=$(awk -v w="$W" -v h="$H" 'BEGIN { printf "%.6f", w * h / 1048576 }')

# -- arv-camera-test: aravis alone, frames received and thrown away ---------------------
run_arv() {
  local log=$tmp/arv-camera-test.log
  # -a: socket buffer sized to the payload; no packet socket: it cannot see loopback.
  timeout -s INT $((D + WARMUP_S)) stdbuf -oL arv-camera-test-0.8 -n "$CAMERA" -a \
    --no-packet-socket -f "$RATE" -w "$W" -h "$H" >"$log" 2>&1 || true
  # One line per second: "100 frames/s -    26.2 MiB/s"; skip the warm-up seconds.
  local fps mbs
  fps=$(awk -v skip="$WARMUP_S" '/frames?\/s/ { if (++n > skip) { s += $1; c++ } } END { if (c) printf "%.1f", s / c; else print 0 }' "$log")
  mbs=$(awk -v f="$fps" -v m="$frame_mb" 'BEGIN { printf "%.1f", f * m }')
  local lost
  lost=$(awk '/n_failures|n_underruns/ { s += $3 } END { print s + 0 }' "$log")
  results+=("arv-camera-test|$fps|$mbs|0|$lost|$fps")
  bench_log "arv-camera-test: $fps frames/s, $mbs MiB/s, lost by aravis $lost"
  ARV_FPS=$fps
}

# -- fabrik: status lines every second give the counters --------------------------------
# "SECONDS VALUE" of the newest status line of ACTOR in LOG that has KEY=N: the line's own
# time (seconds of the day) and N, so rates are exact whatever the polling.
status_at() {
  grep "status $2 " "$1" | tail -1 | awk -v k="$3" '{
    split(substr($1, 12), t, ":"); secs = t[1] * 3600 + t[2] * 60 + t[3]; v = 0
    for (i = 2; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) v = substr($i, n + 1) }
    printf "%.3f %d\n", secs, v }'
}
status_value() { status_at "$@" | awk '{ print $2 }'; }

run_fabrik() { # NAME: storage | workflow
  local name=$1 dir=$tmp/$1
  mkdir -p "$dir/workflows"
  local consumer wires
  if [ "$name" = storage ]; then
    consumer="  sink: {kind: storage, max_age: 1h}"
  else
    "$FABRIK" package "$root/examples/frame-check" -o "$dir/frame-check.zip" >/dev/null
    consumer="  sink: {kind: workflow, package: frame-check.zip}"
  fi
  cat >"$dir/flow.yaml" <<YAML
name: genicam-bench
actors:
  cam:
    kind: genicam.source
    camera: $CAMERA
    width: $W
    height: $H
    frame_rate: $RATE
    queue: 64
$consumer
wires:
  - cam -> sink
YAML
  "$FABRIK" run "$dir/flow.yaml" --data-dir "$dir/data" --status-interval 1s >"$dir/fabrik.log" 2>&1 &
  local pid=$!
  bench_track_pid "$pid"
  bench_wait_for 60 sh -c "grep -q 'status sink .* out=[1-9]' '$dir/fabrik.log'" \
    || bench_die "$name: no frame arrived in 60 s: $(tail -5 "$dir/fabrik.log")"
  sleep "$WARMUP_S"
  local a0 a1 r0 r1 drop0 drop1
  a0=$(status_at "$dir/fabrik.log" sink out); r0=$(status_value "$dir/fabrik.log" cam received)
  drop0=$(status_value "$dir/fabrik.log" cam dropped)
  sleep "$D"
  a1=$(status_at "$dir/fabrik.log" sink out); r1=$(status_value "$dir/fabrik.log" cam received)
  drop1=$(status_value "$dir/fabrik.log" cam dropped)
  local incomplete underruns
  incomplete=$(status_value "$dir/fabrik.log" cam incomplete)
  underruns=$(status_value "$dir/fabrik.log" cam underruns)
  bench_stop_pid "$pid" 30 || true
  bench_untrack_pid "$pid"
  # A workflow's `out` counts predictions; a storage's counts stored frames. `received` is
  # what the camera delivered meanwhile (same lines, same interval).
  local fps cam_fps mbs dropped lost
  read -r fps cam_fps < <(awk -v a="$a0" -v b="$a1" -v r0="$r0" -v r1="$r1" 'BEGIN {
    split(a, x, " "); split(b, y, " "); dt = y[1] - x[1]; if (dt <= 0) dt = 1
    printf "%.1f %.1f\n", (y[2] - x[2]) / dt, (r1 - r0) / dt }')
  mbs=$(awk -v f="$fps" -v m="$frame_mb" 'BEGIN { printf "%.1f", f * m }')
  dropped=$(( ${drop1:-0} - ${drop0:-0} ))
  lost=$(( ${incomplete:-0} + ${underruns:-0} ))
  results+=("fabrik → $name|$fps|$mbs|$dropped|$lost|$cam_fps")
  bench_log "fabrik → $name: $fps frames/s ($cam_fps from the camera), $mbs MiB/s, dropped $dropped, lost by aravis $lost"
}

ARV_FPS=
for c in $CONSUMERS; do
  case $c in
    arv-camera-test) run_arv ;;
    storage | workflow)
      [ -x "$FABRIK" ] || bench_die "no fabrik binary at $FABRIK: build it (scripts/build.sh)"
      run_fabrik "$c" ;;
    *) bench_die "unknown consumer '$c'" ;;
  esac
  sleep 4 # the camera frees its control channel after a heartbeat timeout
done

echo
echo "GenICam: fake GigE Vision camera, ${W}x${H} Mono8, asked ${RATE} frames/s, ${D} s measured"
printf '%-20s %10s %10s %9s %9s %14s %8s\n' consumer frames/s camera_f/s MiB/s dropped lost_by_aravis "vs arv"
for r in "${results[@]}"; do
  IFS='|' read -r name fps mbs dropped lost cam_fps <<<"$r"
  ratio=-
  [ -n "$ARV_FPS" ] && ratio=$(awk -v a="$fps" -v b="$ARV_FPS" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  printf '%-20s %10s %10s %9s %9s %14s %8s\n' "$name" "$fps" "$cam_fps" "$mbs" "$dropped" "$lost" "$ratio"
done
