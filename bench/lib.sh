# shellcheck shell=bash disable=SC2034,SC2016
# Shared shell helpers for fabrik's benchmarks and demo. Source it, do not run it:
#
#   source "$(dirname "$0")/../lib.sh"      # or bench/lib.sh from the repo root
#   bench_install_trap                      # kill tracked processes, remove temp dirs on exit
#   bench_tmpdir tmp                        # tmp=a new temp dir, removed on exit
#   port=$(bench_free_port)
#   bench_mosquitto_start "$tmp/broker" "$port" "max_inflight_messages 100"
#   "$BENCH_PYTHON" "$BENCH_ROOT/bench/assets/pcb_publisher.py" --port "$port" --count 100 --rate 0
#   bench_mosquitto_stop
#
# Works under `set -euo pipefail`; sourcing it only defines functions and BENCH_* variables.
# Functions print errors to stderr and return non-zero; they do not exit.
#
#   bench_log MSG...                 message to stderr, prefixed with the script's name
#   bench_die MSG...                 bench_log, then exit 1
#   bench_count DEFAULT ARGS...      BENCH_N = the one positive count argument (default
#                                    DEFAULT); -h/--help: the script's header, exit 0
#   bench_install_trap               on EXIT/INT/TERM: bench_cleanup (and exit 130/143 on signals)
#   bench_cleanup                    stop tracked processes (TERM, then KILL after 5 s),
#                                    remove tracked temp dirs; safe to call twice
#   bench_track_pid PID              stop PID in bench_cleanup
#   bench_untrack_pid PID            forget PID (it was stopped some other way)
#   bench_tmpdir VAR                 set VAR to a new temp dir that bench_cleanup removes
#                                    (BENCH_KEEP_TMP=1 keeps it, for post-mortems)
#   bench_free_port                  print a free TCP port on 127.0.0.1
#   bench_port_open PORT [HOST]      true when something accepts connections there
#   bench_wait_for TIMEOUT_S CMD...  run CMD every BENCH_POLL s (default 0.1) until it
#                                    succeeds; returns 1 after TIMEOUT_S seconds
#   bench_stop_pid PID [TIMEOUT_S]   SIGTERM, wait up to TIMEOUT_S (default 30) for exit,
#                                    then SIGKILL; returns 1 if it had to kill. For a child
#                                    of this shell, its exit status ends up in BENCH_STOP_RC
#                                    (127 if it was reaped before)
#   bench_now                        wall time in seconds with microseconds ($EPOCHREALTIME)
#   bench_elapsed START [END]        END - START in seconds, 3 decimals (END defaults to now)
#   bench_rss_anon_kib PID           current RssAnon of PID in KiB (from /proc/PID/status)
#   bench_rss_sampler_start PID FILE [INTERVAL_S]
#                                    sample RssAnon every INTERVAL_S (default 0.05) in the
#                                    background while PID lives; FILE holds the peak (KiB)
#   bench_rss_sampler_stop FILE      stop that sampler; print the peak in KiB
#   bench_mosquitto_start DIR PORT [CONFIG_LINE...]
#                                    write DIR/mosquitto.conf, start mosquitto on
#                                    127.0.0.1:PORT (log in DIR/mosquitto.log), wait until it
#                                    listens; sets BENCH_MOSQ_PID, BENCH_MOSQ_PORT, BENCH_MOSQ_LOG
#   bench_mosquitto_stop             stop the broker started by bench_mosquitto_start
#   bench_mosquitto_wait_subscribed CLIENT_ID TOPIC [TIMEOUT_S]
#                                    wait until the broker's log shows CLIENT_ID subscribing
#                                    to TOPIC (exactly as written in the SUBSCRIBE)
#   bench_persistent_session PORT CLIENT_ID TOPIC...
#                                    create a persistent QoS 1 session (clean session off)
#                                    with mosquitto_sub, checking the broker granted every
#                                    subscription; messages published afterwards queue for
#                                    CLIENT_ID until it reconnects
#
# The broker config written by bench_mosquitto_start (see TOOLCHAIN.md, MQTT):
#   listener PORT 127.0.0.1, allow_anonymous true, set_tcp_nodelay true (Nagle off),
#   persistence false, max_queued_messages 0 and max_queued_bytes 0 (no limit: an offline
#   persistent session keeps everything), log_type subscribe on top of the defaults (for
#   bench_mosquitto_wait_subscribed), `user root` when running as root. Extra lines given
#   as CONFIG_LINE arguments are appended (a later line wins for single-valued options).

BENCH_ROOT=${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# Debian's python3 has python3-paho-mqtt; a pyenv python3 earlier on PATH may not.
BENCH_PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
BENCH_POLL=${BENCH_POLL:-0.1}
BENCH_MOSQUITTO=${BENCH_MOSQUITTO:-$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)}
BENCH_MOSQ_PID=""
BENCH_MOSQ_PORT=""
BENCH_MOSQ_LOG=""
BENCH_STOP_RC=0
BENCH_PIDS=()
BENCH_DIRS=()
BENCH_SAMPLERS=()

bench_log() {
  printf '%s: %s\n' "${BENCH_NAME:-$(basename "$0")}" "$*" >&2
}

bench_die() {
  bench_log "$@"
  exit 1
}

# bench_count DEFAULT ARGS...: the benchmark's one argument, a positive count. -h/--help
# prints the calling script's header comment (up to `set -euo`) and exits 0; anything
# else prints it to stderr and exits 2. Sets BENCH_N.
bench_usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
bench_count() {
  local default=$1
  shift
  case ${1:-} in
    -h | --help) bench_usage; exit 0 ;;
  esac
  BENCH_N=${1:-$default}
  if ! [[ $BENCH_N =~ ^[1-9][0-9]*$ ]] || [ $# -gt 1 ]; then
    bench_usage >&2
    exit 2
  fi
}

bench_track_pid() {
  BENCH_PIDS+=("$1")
}

bench_untrack_pid() {
  local p keep=()
  for p in "${BENCH_PIDS[@]+"${BENCH_PIDS[@]}"}"; do
    [ "$p" = "$1" ] || keep+=("$p")
  done
  BENCH_PIDS=("${keep[@]+"${keep[@]}"}")
}

bench_tmpdir() {
  # Sets the variable named $1 (not a $(...) call: a subshell could not register the dir).
  local _d
  _d=$(mktemp -d "${TMPDIR:-/tmp}/fabrik-bench.XXXXXX") || return 1
  BENCH_DIRS+=("$_d")
  printf -v "$1" '%s' "$_d"
}

bench_cleanup() {
  local p d
  for p in "${BENCH_SAMPLERS[@]+"${BENCH_SAMPLERS[@]}"}"; do
    kill "$p" 2>/dev/null || true
  done
  BENCH_SAMPLERS=()
  # Newest first: clients before the broker they talk to.
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    p=${BENCH_PIDS[i]}
    if kill -0 "$p" 2>/dev/null; then bench_stop_pid "$p" 5 >/dev/null 2>&1 || true; fi
  done
  BENCH_PIDS=()
  BENCH_MOSQ_PID=""
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
    for d in "${BENCH_DIRS[@]+"${BENCH_DIRS[@]}"}"; do bench_log "kept $d"; done
  else
    for d in "${BENCH_DIRS[@]+"${BENCH_DIRS[@]}"}"; do
      case $d in
        */fabrik-bench.*) rm -rf -- "$d" ;;
      esac
    done
  fi
  BENCH_DIRS=()
  return 0
}

bench_install_trap() {
  trap 'bench_cleanup' EXIT
  trap 'bench_log "interrupted"; exit 130' INT
  trap 'bench_log "terminated"; exit 143' TERM
}

bench_free_port() {
  "$BENCH_PYTHON" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

bench_port_open() {
  # bash's /dev/tcp: no external tool needed; the connection is closed at once.
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

bench_usec() { # $EPOCHREALTIME as integer microseconds, without forking
  local t=${EPOCHREALTIME/[.,]/}
  printf -v "$1" '%s' "$((10#$t))"
}

bench_wait_for() {
  local timeout_us now deadline
  timeout_us=$(awk -v d="$1" 'BEGIN { printf "%d", d * 1000000 }')
  shift
  bench_usec now
  deadline=$((now + timeout_us))
  while true; do
    "$@" && return 0
    bench_usec now
    ((now < deadline)) || return 1
    sleep "$BENCH_POLL"
  done
}

bench_stop_pid() {
  local pid=$1 timeout=${2:-30} i
  kill -TERM "$pid" 2>/dev/null || { bench_untrack_pid "$pid"; return 0; }
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  local rc=0
  if kill -0 "$pid" 2>/dev/null; then
    bench_log "pid $pid did not stop within ${timeout}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rc=1
  fi
  # Reap it if it is our child; its exit status is left in BENCH_STOP_RC.
  BENCH_STOP_RC=0
  wait "$pid" 2>/dev/null || BENCH_STOP_RC=$?
  bench_untrack_pid "$pid"
  return $rc
}

bench_now() {
  printf '%s\n' "$EPOCHREALTIME"
}

bench_elapsed() {
  awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.3f\n", b - a }'
}

bench_rss_anon_kib() {
  local k v _
  while read -r k v _; do
    if [ "$k" = "RssAnon:" ]; then
      printf '%s\n' "$v"
      return 0
    fi
  done <"/proc/$1/status" 2>/dev/null
  return 1
}

bench_rss_sampler_start() {
  local pid=$1 file=$2 interval=${3:-0.05}
  printf '0\n' >"$file"
  (
    peak=0
    while true; do
      v=""
      if [ -r "/proc/$pid/status" ]; then
        while read -r k val _; do
          if [ "$k" = "RssAnon:" ]; then
            v=$val
            break
          fi
        done <"/proc/$pid/status" 2>/dev/null
      fi
      [ -n "$v" ] || break # gone, or a zombie (no RssAnon)
      if ((v > peak)); then
        peak=$v
        printf '%s\n' "$peak" >"$file.tmp" && mv -f "$file.tmp" "$file"
      fi
      sleep "$interval"
    done
  ) &
  BENCH_SAMPLERS+=("$!")
  printf '%s\n' "$!" >"$file.pid"
}

bench_rss_sampler_stop() {
  local file=$1 spid keep=() p
  if [ -f "$file.pid" ]; then
    spid=$(<"$file.pid")
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    rm -f "$file.pid"
    for p in "${BENCH_SAMPLERS[@]+"${BENCH_SAMPLERS[@]}"}"; do
      [ "$p" = "$spid" ] || keep+=("$p")
    done
    BENCH_SAMPLERS=("${keep[@]+"${keep[@]}"}")
  fi
  cat "$file" 2>/dev/null || echo 0
}

bench_mosquitto_start() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir" || return 1
  {
    echo "# written by bench/lib.sh"
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "set_tcp_nodelay true"
    echo "persistence false"
    echo "max_queued_messages 0"
    echo "max_queued_bytes 0"
    echo "log_dest stderr"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
    echo "log_type subscribe"
    # mosquitto started as root drops to user `mosquitto` unless told otherwise.
    [ "$(id -u)" -eq 0 ] && echo "user root"
    local line
    for line in "$@"; do echo "$line"; done
  } >"$dir/mosquitto.conf"
  BENCH_MOSQ_LOG=$dir/mosquitto.log
  "$BENCH_MOSQUITTO" -c "$dir/mosquitto.conf" >"$BENCH_MOSQ_LOG" 2>&1 &
  BENCH_MOSQ_PID=$!
  BENCH_MOSQ_PORT=$port
  bench_track_pid "$BENCH_MOSQ_PID"
  if ! bench_wait_for 10 bench_port_open "$port"; then
    bench_log "mosquitto did not start listening on 127.0.0.1:$port; its log:"
    sed 's/^/  /' "$BENCH_MOSQ_LOG" >&2
    return 1
  fi
  if ! kill -0 "$BENCH_MOSQ_PID" 2>/dev/null; then
    bench_log "mosquitto exited (port $port taken by someone else?); its log:"
    sed 's/^/  /' "$BENCH_MOSQ_LOG" >&2
    return 1
  fi
}

bench_mosquitto_stop() {
  [ -n "$BENCH_MOSQ_PID" ] || return 0
  bench_stop_pid "$BENCH_MOSQ_PID" 10
  BENCH_MOSQ_PID=""
}

bench_mosquitto_wait_subscribed() {
  local id=$1 topic=$2 timeout=${3:-15}
  # mosquitto logs each subscription as "TIME: CLIENT_ID QOS TOPIC" (log_type subscribe).
  bench_wait_for "$timeout" awk -v id="$id" -v t="$topic" \
    '$2 == id && $3 ~ /^[0-2]$/ && $4 == t { found = 1; exit } END { exit !found }' \
    "$BENCH_MOSQ_LOG"
}

bench_persistent_session() {
  local port=$1 id=$2
  shift 2
  local args=() t out
  for t in "$@"; do args+=(-t "$t"); done
  # -E: exit once every subscription is acknowledged; -d shows the granted QoS
  # ("Subscribed (mid: 1): 1, 1"); 128 would mean the broker refused a subscription.
  if ! out=$(timeout 15 mosquitto_sub -h 127.0.0.1 -p "$port" -c -i "$id" -q 1 -E -d \
               "${args[@]}" 2>&1); then
    bench_log "mosquitto_sub could not create the session $id:"
    printf '%s\n' "$out" | sed 's/^/  /' >&2
    return 1
  fi
  local granted
  granted=$(printf '%s\n' "$out" | sed -n 's/.*Subscribed (mid: [0-9]*): //p' | head -1)
  if [ -z "$granted" ] || printf '%s\n' "$granted" | grep -Eq '(^|[ ,])128'; then
    bench_log "session $id: subscription not granted (${granted:-no SUBACK}):"
    printf '%s\n' "$out" | sed 's/^/  /' >&2
    return 1
  fi
}
