#!/usr/bin/env bash
# Ingest benchmark: how fast does a consumer drain N queued QoS 1 simatic-v1 messages
# from a persistent MQTT session? fabrik (MQTT -> spool -> LMDB storage, durability
# process and power) against mosquitto_sub (receive and throw away) as the baseline.
# See bench/ingest/README.md.
#
# usage: bench/ingest/run.sh [N]          N boards (messages), default 200000
#
# environment:
#   FABRIK            fabrik binary (default: build/fabrik in the repository)
#   BENCH_CONSUMERS   which consumers to run, in order (default:
#                     "mosquitto_sub fabrik fabrik-power"); "mosquitto_sub" alone needs no
#                     fabrik binary
#   BENCH_STALL_S     give up on a consumer when its count has not grown for this many
#                     seconds (default 30); what is missing is reported as lost
#   BENCH_STORE_POLL  seconds between `fabrik store` polls (default 0.2)
#   BENCH_KEEP_TMP=1  keep the temp dir (broker and fabrik logs, data dirs)
#   BENCH_PYTHON      Python with paho-mqtt (default /usr/bin/python3)
#
# Exit status: 0 when every consumer ran (lost messages are reported, not failed), 1 when
# something failed to run (broker, publisher, a consumer crashing or not starting), 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BENCH_NAME=ingest # prefix of bench_log's messages
export BENCH_NAME
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

bench_count 200000 "$@"
N=$BENCH_N

FABRIK=${FABRIK:-$root/build/fabrik}
CONSUMERS=${BENCH_CONSUMERS:-mosquitto_sub fabrik fabrik-power}
STALL_S=${BENCH_STALL_S:-30}
STORE_POLL=${BENCH_STORE_POLL:-0.2}
DATA_TOPIC='ie/d/j/simatic/v1/+/dp/r/#'
META_TOPIC='ie/m/j/simatic/v1/+/dp'
STREAM=pcb_in/Line1/default # the flow's source actor / connection / collection
STORE_ACTOR=store
SUB_ID=bench-sub
# A consumer that takes longer than this is stopped (generous: 60 s + 1 ms per message).
TIMEOUT_S=$((60 + N / 1000))

for c in $CONSUMERS; do
  case $c in
    mosquitto_sub) ;;
    fabrik | fabrik-power)
      [ -x "$FABRIK" ] || bench_die "no fabrik binary at $FABRIK: build it (scripts/build.sh)," \
        "set FABRIK, or run the baseline alone with BENCH_CONSUMERS=mosquitto_sub" ;;
    *) bench_die "unknown consumer '$c' in BENCH_CONSUMERS; known: mosquitto_sub fabrik fabrik-power" ;;
  esac
done
command -v mosquitto_sub >/dev/null || bench_die "mosquitto_sub not found (apt-get install mosquitto-clients)"
[ -x "$BENCH_MOSQUITTO" ] || bench_die "mosquitto not found (apt-get install mosquitto)"
"$BENCH_PYTHON" -c 'import paho.mqtt' 2>/dev/null ||
  bench_die "$BENCH_PYTHON has no paho-mqtt (apt-get install python3-paho-mqtt)"

bench_install_trap
tmp="" # set by bench_tmpdir
bench_tmpdir tmp
failed=0

# ---------------------------------------------------------------------------------------
# The one place that knows `fabrik store`'s output. Prints how many records stream $2
# holds in the storage at $1; 0 when the store or the stream does not exist yet.
# Tolerant of the table's layout: it takes the line that names the stream (as a column
# of its own, separators such as '|' or ':' ignored) and the first whole number after it
# (thousands separators ',', '_' or "'" removed). `fabrik store`'s exit status and stderr
# are kept in $tmp/store.rc and $tmp/store.err for the report.
fabrik_stored_count() {
  local out rc=0
  out=$("$FABRIK" store "$1" 2>"$tmp/store.err") || rc=$?
  echo "$rc" >"$tmp/store.rc"
  printf '%s\n' "$out" >"$tmp/store.out"
  printf '%s\n' "$out" | awk -v s="$2" '
    {
      for (i = 1; i <= NF; i++) {
        f = $i
        gsub(/^[|:]+|[|:,]+$/, "", f)
        if (f != s) continue
        for (j = i + 1; j <= NF; j++) {
          v = $j
          gsub(/[,_'\''|]/, "", v)
          if (v ~ /^[0-9]+$/) { print v; found = 1; exit }
        }
      }
    }
    END { if (!found) print 0 }'
}
# ---------------------------------------------------------------------------------------

# Results, one entry per consumer, filled by the drain functions.
declare -A R_SECONDS R_DONE R_RSS R_NOTE R_FIRST

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# The flow for one fabrik run: the port, and for the power run durability and client id.
write_flow() { # OUT DURABILITY CLIENT_ID
  local out=$1 durability=$2 cid=$3
  sed -e "s/\${BENCH_PORT}/$port/g" \
    -e "s/durability: process/durability: $durability/" \
    -e "s/client_id: bench-fabrik\b/client_id: $cid/" "$here/flow.yaml" >"$out"
  if ! grep -q "127.0.0.1:$port" "$out" || ! grep -q "durability: $durability" "$out" ||
    ! grep -q "client_id: $cid\b" "$out"; then
    bench_log "bench/ingest/flow.yaml no longer has the lines run.sh edits" \
      "(\${BENCH_PORT}, durability: process, client_id: bench-fabrik)"
    return 1
  fi
  local check
  if ! check=$("$FABRIK" check "$out" 2>&1); then
    bench_log "fabrik check refused the benchmark flow:"
    printf '%s\n' "$check" | sed 's/^/  /' >&2
    return 1
  fi
}

consumer_flow() { echo "$tmp/$1.yaml"; }
consumer_data() { echo "$tmp/$1.data"; }
consumer_cid() { [ "$1" = fabrik ] && echo bench-fabrik || echo bench-fabrik-power; }

# Starts fabrik once so that its source subscribes (creating its persistent session),
# then stops it again: the publish that follows queues at the broker for it.
prepare_fabrik() { # CONSUMER
  local c=$1 flow data cid pid
  flow=$(consumer_flow "$c")
  data=$(consumer_data "$c")
  cid=$(consumer_cid "$c")
  local durability=process
  [ "$c" = fabrik-power ] && durability=power
  write_flow "$flow" "$durability" "$cid" || return 1
  "$FABRIK" run "$flow" --data-dir "$data" >"$tmp/$c.subscribe.log" 2>&1 &
  pid=$!
  bench_track_pid "$pid"
  if ! bench_mosquitto_wait_subscribed "$cid" "$DATA_TOPIC" 30 ||
    ! bench_mosquitto_wait_subscribed "$cid" "$META_TOPIC" 5; then
    bench_log "$c: fabrik did not subscribe as $cid within 30 s; its log:"
    tail -n 20 "$tmp/$c.subscribe.log" | sed 's/^/  /' >&2
    bench_stop_pid "$pid" 10 || true
    return 1
  fi
  if ! bench_stop_pid "$pid" 30; then
    bench_log "$c: fabrik did not stop on SIGTERM within 30 s"
    return 1
  fi
  if [ "$BENCH_STOP_RC" -ne 0 ] && [ "$BENCH_STOP_RC" -ne 143 ]; then
    bench_log "$c: fabrik exited with status $BENCH_STOP_RC after SIGTERM; its log:"
    tail -n 20 "$tmp/$c.subscribe.log" | sed 's/^/  /' >&2
    return 1
  fi
}

drain_mosquitto_sub() {
  local c=mosquitto_sub start end pid rc=0 got
  start=$(bench_now)
  # -F . prints one short line per message: the count costs nothing and stays exact.
  mosquitto_sub -h 127.0.0.1 -p "$port" -c -i "$SUB_ID" -q 1 -t "$DATA_TOPIC" -C "$N" \
    -W "$TIMEOUT_S" -F . >"$tmp/$c.out" 2>"$tmp/$c.err" &
  pid=$!
  bench_track_pid "$pid"
  bench_rss_sampler_start "$pid" "$tmp/$c.rss"
  wait "$pid" || rc=$?
  end=$(bench_now)
  bench_untrack_pid "$pid"
  R_RSS[$c]=$(bench_rss_sampler_stop "$tmp/$c.rss")
  got=$(wc -l <"$tmp/$c.out")
  R_DONE[$c]=$got
  R_SECONDS[$c]=$(bench_elapsed "$start" "$end")
  if [ "$rc" -eq 27 ]; then
    R_NOTE[$c]="timed out after ${TIMEOUT_S}s"
  elif [ "$rc" -ne 0 ]; then
    R_NOTE[$c]="FAILED: exit status $rc"
    sed 's/^/  /' "$tmp/$c.err" >&2
    return 1
  fi
}

drain_fabrik() { # CONSUMER
  local c=$1 flow data store pid start now count last=0 last_t first="" t_done=""
  flow=$(consumer_flow "$c")
  data=$(consumer_data "$c")
  store=$data/storage/$STORE_ACTOR
  start=$(bench_now)
  "$FABRIK" run "$flow" --data-dir "$data" >"$tmp/$c.log" 2>&1 &
  pid=$!
  bench_track_pid "$pid"
  bench_rss_sampler_start "$pid" "$tmp/$c.rss"
  last_t=$start
  while true; do
    count=$(fabrik_stored_count "$store" "$STREAM")
    now=$(bench_now)
    if [ "$count" -gt 0 ] && [ -z "$first" ]; then first=$(bench_elapsed "$start" "$now"); fi
    if [ "$count" -ge "$N" ]; then
      t_done=$now
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      R_NOTE[$c]="FAILED: fabrik exited during the drain"
      break
    fi
    if [ "$count" -gt "$last" ]; then
      last=$count
      last_t=$now
    elif awk -v a="$last_t" -v b="$now" -v s="$STALL_S" 'BEGIN { exit !(b - a > s) }'; then
      R_NOTE[$c]="stalled: no progress for ${STALL_S}s"
      break
    fi
    if awk -v a="$start" -v b="$now" -v s="$TIMEOUT_S" 'BEGIN { exit !(b - a > s) }'; then
      R_NOTE[$c]="timed out after ${TIMEOUT_S}s"
      break
    fi
    sleep "$STORE_POLL"
  done
  # Incomplete: the time until the last progress, so msg/s is still what it managed.
  R_SECONDS[$c]=$(bench_elapsed "$start" "${t_done:-$last_t}")
  R_DONE[$c]=$count
  R_FIRST[$c]=${first:--}
  if kill -0 "$pid" 2>/dev/null; then
    bench_stop_pid "$pid" 60 || R_NOTE[$c]="FAILED: did not stop on SIGTERM within 60s"
    if [ "$BENCH_STOP_RC" -ne 0 ] && [ "$BENCH_STOP_RC" -ne 143 ] && [ -z "${R_NOTE[$c]:-}" ]; then
      R_NOTE[$c]="FAILED: exit status $BENCH_STOP_RC after SIGTERM"
    fi
  else
    BENCH_STOP_RC=0
    wait "$pid" 2>/dev/null || BENCH_STOP_RC=$?
    bench_untrack_pid "$pid"
    R_NOTE[$c]="${R_NOTE[$c]:-FAILED: fabrik exited} (status $BENCH_STOP_RC)"
  fi
  R_RSS[$c]=$(bench_rss_sampler_stop "$tmp/$c.rss")
  # After the stop the store is complete: a final count catches records committed late.
  [ "$count" -ge "$N" ] || R_DONE[$c]=$(fabrik_stored_count "$store" "$STREAM")
  if [ "${R_DONE[$c]}" -eq 0 ] && [ "$(cat "$tmp/store.rc")" -ne 0 ]; then
    R_NOTE[$c]="${R_NOTE[$c]:+${R_NOTE[$c]}; }fabrik store failed: $(head -c 200 "$tmp/store.err")"
  fi
  case ${R_NOTE[$c]:-} in
    FAILED*)
      bench_log "$c: ${R_NOTE[$c]}; the end of its log:"
      tail -n 20 "$tmp/$c.log" | sed 's/^/  /' >&2
      return 1
      ;;
  esac
  return 0
}

# --- 1. broker, sessions ----------------------------------------------------------------
port=$(bench_free_port)
bench_log "mosquitto on 127.0.0.1:$port, N=$N, consumers: $CONSUMERS"
bench_mosquitto_start "$tmp/broker" "$port" || exit 1

declare -A READY
for c in $CONSUMERS; do
  case $c in
    mosquitto_sub)
      if bench_persistent_session "$port" "$SUB_ID" "$DATA_TOPIC"; then READY[$c]=1; else
        R_NOTE[$c]="FAILED: could not create the session"; failed=1; fi ;;
    fabrik | fabrik-power)
      if prepare_fabrik "$c"; then READY[$c]=1; else
        R_NOTE[$c]=${R_NOTE[$c]:-"FAILED: could not subscribe (see above)"}; failed=1; fi ;;
  esac
done

# --- 2. publish N boards while no consumer is connected ----------------------------------
bench_log "publishing $N boards (QoS 1, as fast as possible)"
if ! pub_line=$("$BENCH_PYTHON" "$root/bench/assets/pcb_publisher.py" --port "$port" \
  --count "$N" --rate 0 --qos 1 --seed 1 --quiet 2>"$tmp/publisher.err"); then
  bench_log "the publisher failed:"
  sed 's/^/  /' "$tmp/publisher.err" >&2
  exit 1
fi
bench_log "publisher: $pub_line"

# --- 3. drain, one consumer after the other ----------------------------------------------
for c in $CONSUMERS; do
  [ -n "${READY[$c]:-}" ] || continue
  bench_log "draining: $c"
  case $c in
    mosquitto_sub) drain_mosquitto_sub || failed=1 ;;
    fabrik | fabrik-power) drain_fabrik "$c" || failed=1 ;;
  esac
done
bench_mosquitto_stop || true

# --- 4. report ---------------------------------------------------------------------------
base_rate=""
if [ -n "${R_SECONDS[mosquitto_sub]:-}" ]; then
  base_rate=$(awk -v n="${R_DONE[mosquitto_sub]}" -v s="${R_SECONDS[mosquitto_sub]}" \
    'BEGIN { if (s > 0) printf "%.6f", n / s }')
fi
echo
echo "ingest benchmark: $N simatic-v1 boards (QoS 1, ~1 KB each) queued in a persistent session"
echo "publisher: $pub_line"
printf '%-14s %9s %9s %10s %9s %9s %10s  %s\n' consumer messages seconds msg/s ratio lost \
  "RssAnon" note
for c in $CONSUMERS; do
  label=$c
  [ "$c" = fabrik ] && label="fabrik-process"
  if [ -z "${R_SECONDS[$c]:-}" ]; then
    printf '%-14s %9s %9s %10s %9s %9s %10s  %s\n' "$label" "$N" - - - - - "${R_NOTE[$c]:-not run}"
    continue
  fi
  done_n=${R_DONE[$c]}
  secs=${R_SECONDS[$c]}
  rate=$(awk -v n="$done_n" -v s="$secs" 'BEGIN { r = s > 0 ? n / s : 0; printf "%.0f", r }')
  ratio=-
  if [ -n "$base_rate" ]; then
    ratio=$(awk -v n="$done_n" -v s="$secs" -v b="$base_rate" \
      'BEGIN { printf "%.2fx", (s > 0 && b > 0) ? n / s / b : 0 }')
  fi
  lost=$((N - done_n))
  ((lost >= 0)) || lost="+$((-lost))" # more than N: duplicates stored
  note=${R_NOTE[$c]:-}
  [ -n "${R_FIRST[$c]:-}" ] && note="first record after ${R_FIRST[$c]}s${note:+; $note}"
  printf '%-14s %9s %9s %10s %9s %9s %7s MiB  %s\n' "$label" "$N" "$secs" "$rate" "$ratio" \
    "$lost" "$(kib_to_mib "${R_RSS[$c]}")" "$note"
done
echo "msg/s = messages stored (received) / seconds; ratio = msg/s / mosquitto_sub's msg/s;"
echo "seconds include the consumer's start-up; RssAnon = peak anonymous resident memory."
if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then echo "logs and data: $tmp"; fi

exit $failed
