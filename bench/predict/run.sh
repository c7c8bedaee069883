#!/usr/bin/env bash
# Prediction latency benchmark: publish -> prediction for single PCB boards, fabrik's
# workflow actor (flows/examples/pcb-classify.yaml, package examples/pcb-classifier)
# against a hand-written paho-mqtt + scikit-learn script (bench/predict/baseline.py)
# serving the same model. See bench/predict/README.md.
#
# usage: bench/predict/run.sh [N]          N boards measured per consumer, default 1000
#
# One mosquitto (loopback, set_tcp_nodelay true), then:
#   1. fabrik run on a copy of pcb-classify.yaml (this broker, min_records 3000, its
#      watched directory empty); 3000 labelled boards (pcb_publisher.py --seed 1), stored
#   2. latency_probe.py against fabrik's prediction topic: first it moves the package zip
#      into the watched directory and times zip -> first prediction (deploy, imports,
#      training on the 3000 boards, first answer); then boards one at a time, QoS 1
#   3. fabrik stopped; its stored boards read back with `fabrik store` (JSON lines);
#      baseline.py trains model.py's train() on the same 3000 boards and serves them;
#      the same probe (same boards) against the baseline's topic
#   4. a table: e2e / model (compute_ms) / overhead (e2e - compute_ms) p50 and p99
#
# environment:
#   FABRIK            fabrik binary (default: build/fabrik in the repository)
#   BENCH_WARMUP      boards sent first and left out of the statistics (default 20)
#   BENCH_GAP_MS      pause between a prediction and the next board (default 2)
#   BENCH_KEEP_TMP=1  keep the temp dir (broker, fabrik and baseline logs, samples)
#   BENCH_PYTHON      Python with paho-mqtt, numpy, scikit-learn (default /usr/bin/python3)
#
# Exit status: 0 when both consumers were measured, 1 when something failed, 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BENCH_NAME=predict
export BENCH_NAME
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

bench_count 1000 "$@"
N=$BENCH_N

FABRIK=${FABRIK:-$root/build/fabrik}
WARMUP=${BENCH_WARMUP:-20}
GAP_MS=${BENCH_GAP_MS:-2}
TRAIN_N=3000
FLOW_NAME=pcb-classify
SOURCE_CID=fabrik-$FLOW_NAME-local-pcb_in # the mqtt.source's default client id
DATA_TOPIC='ie/d/j/simatic/v1/+/dp/r/#'
STREAM=pcb_in/Line1/default
FABRIK_TOPIC=fabrik/$FLOW_NAME/classifier/$STREAM
BASELINE_TOPIC=baseline/$FLOW_NAME/Line1/default
PROBE_ARGS=(--count "$N" --warmup "$WARMUP" --gap-ms "$GAP_MS" --seed 2 --start-seq 100001 --qos 1)

[ -x "$FABRIK" ] || bench_die "no fabrik binary at $FABRIK: build it (scripts/build.sh) or set FABRIK"
[ -x "$BENCH_MOSQUITTO" ] || bench_die "mosquitto not found (apt-get install mosquitto)"
"$BENCH_PYTHON" -c 'import paho.mqtt, numpy, sklearn, yaml' 2>/dev/null ||
  bench_die "$BENCH_PYTHON lacks paho-mqtt, numpy, scikit-learn or yaml (Debian's python3-* packages)"

bench_install_trap
tmp=""
bench_tmpdir tmp

# VmHWM (peak resident set, KiB) of a live process; 0 when it is gone.
vmhwm_kib() { awk '$1 == "VmHWM:" { print $2; f = 1 } END { if (!f) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }
stored() { "$FABRIK" store "$tmp/data/storage/store" 2>/dev/null |
  awk -v s="$STREAM" -v n="$TRAIN_N" '$1 == s && $2 >= n { f = 1 } END { exit !f }'; }
baseline_ready() { grep -q '^ready$' "$tmp/baseline.out"; }

# --- broker, package, flow -------------------------------------------------------------
port=$(bench_free_port)
bench_log "mosquitto on 127.0.0.1:$port, N=$N (+$WARMUP warm-up) boards per consumer"
bench_mosquitto_start "$tmp/broker" "$port" || exit 1

"$FABRIK" package "$root/examples/pcb-classifier" -o "$tmp/pcb-classifier.zip" >"$tmp/package.log" 2>&1 ||
  { sed 's/^/  /' "$tmp/package.log" >&2; bench_die "fabrik package failed"; }
flow=$tmp/pcb-classify.yaml
sed -e "s#url: tcp://127.0.0.1:1883#url: tcp://127.0.0.1:$port#" \
  -e "s#^\( *\)last: 20000\$#&\n\1min_records: $TRAIN_N#" \
  "$root/flows/examples/pcb-classify.yaml" >"$flow"
if ! grep -q "127.0.0.1:$port" "$flow" || ! grep -q "package: pcb-classifier" "$flow" ||
  ! grep -q "min_records: $TRAIN_N" "$flow" || ! grep -q "^name: $FLOW_NAME\$" "$flow"; then
  bench_die "flows/examples/pcb-classify.yaml no longer has the lines run.sh edits" \
    "(name, url tcp://127.0.0.1:1883, package: pcb-classifier, last: 20000)"
fi
check=$("$FABRIK" check "$flow" 2>&1) || { printf '%s\n' "$check" | sed 's/^/  /' >&2; bench_die "fabrik check refused the flow"; }

# --- 1. fabrik: start, 3000 labelled boards stored ---------------------------------------
bench_log "fabrik: starting (no package yet), publishing $TRAIN_N labelled boards"
"$FABRIK" run "$flow" --data-dir "$tmp/data" >"$tmp/fabrik.log" 2>&1 &
fpid=$!
bench_track_pid "$fpid"
bench_rss_sampler_start "$fpid" "$tmp/fabrik.rss"
bench_mosquitto_wait_subscribed "$SOURCE_CID" "$DATA_TOPIC" 30 ||
  { tail -n 20 "$tmp/fabrik.log" | sed 's/^/  /' >&2; bench_die "fabrik did not subscribe within 30 s"; }
pub_line=$("$BENCH_PYTHON" "$root/bench/assets/pcb_publisher.py" --port "$port" --count "$TRAIN_N" \
  --rate 0 --qos 1 --seed 1 --quiet 2>"$tmp/publisher.err") ||
  { sed 's/^/  /' "$tmp/publisher.err" >&2; bench_die "the publisher failed"; }
bench_log "publisher: $pub_line"
bench_wait_for 60 stored ||
  { tail -n 20 "$tmp/fabrik.log" | sed 's/^/  /' >&2; bench_die "the boards were not stored within 60 s"; }

# --- 2. zip -> first prediction, then fabrik latency ------------------------------------
bench_log "probe: dropping pcb-classifier.zip into $tmp/workflows, then fabrik ($FABRIK_TOPIC)"
"$BENCH_PYTHON" "$here/latency_probe.py" --port "$port" --topic "$FABRIK_TOPIC" --label fabrik \
  --drop "$tmp/pcb-classifier.zip:$tmp/workflows" \
  "${PROBE_ARGS[@]}" --out "$tmp/fabrik.samples.json" >"$tmp/fabrik.json" 2>"$tmp/fabrik.probe.err" &
probe=$!
bench_track_pid "$probe"
wpid=""
bench_wait_for 30 eval 'wpid=$(pgrep -P "$fpid" fabrik-worker)' ||
  { tail -n 20 "$tmp/fabrik.log" | sed 's/^/  /' >&2; bench_die "no fabrik-worker child within 30 s of the drop"; }
bench_rss_sampler_start "$wpid" "$tmp/worker.rss"
wait "$probe" ||
  { sed 's/^/  /' "$tmp/fabrik.probe.err" >&2; tail -n 20 "$tmp/fabrik.log" | sed 's/^/  /' >&2; bench_die "the fabrik probe failed"; }
bench_untrack_pid "$probe"
train_line=$("$FABRIK" runs --data-dir "$tmp/data" --limit 1 2>&1 | head -1)
f_hwm=$(vmhwm_kib "$fpid")
w_hwm=$(vmhwm_kib "$wpid")
bench_stop_pid "$fpid" 30 || bench_die "fabrik did not stop on SIGTERM within 30 s"
f_anon=$(bench_rss_sampler_stop "$tmp/fabrik.rss")
w_anon=$(bench_rss_sampler_stop "$tmp/worker.rss")

# --- 3. baseline: same boards, same model, fabrik stopped -------------------------------
"$FABRIK" store "$tmp/data/storage/store" "$STREAM" >"$tmp/train.jsonl" 2>"$tmp/store.err" ||
  { sed 's/^/  /' "$tmp/store.err" >&2; bench_die "fabrik store failed"; }
bench_log "baseline: training on the first $TRAIN_N stored boards ($(wc -l <"$tmp/train.jsonl") in the store)"
"$BENCH_PYTHON" "$here/baseline.py" --port "$port" --package "$root/examples/pcb-classifier" \
  --train "$tmp/train.jsonl" --train-count "$TRAIN_N" --topic "$BASELINE_TOPIC" \
  >"$tmp/baseline.out" 2>"$tmp/baseline.err" &
bpid=$!
bench_track_pid "$bpid"
bench_wait_for 120 baseline_ready ||
  { sed 's/^/  /' "$tmp/baseline.err" >&2; bench_die "the baseline did not get ready within 120 s"; }
bench_log "probe: baseline ($BASELINE_TOPIC)"
"$BENCH_PYTHON" "$here/latency_probe.py" --port "$port" --topic "$BASELINE_TOPIC" --label baseline \
  "${PROBE_ARGS[@]}" --out "$tmp/baseline.samples.json" >"$tmp/baseline.json" 2>"$tmp/baseline.probe.err" ||
  { sed 's/^/  /' "$tmp/baseline.probe.err" "$tmp/baseline.err" >&2; bench_die "the baseline probe failed"; }
bench_stop_pid "$bpid" 10 || true
b_hwm=$("$BENCH_PYTHON" -c 'import json, sys
for l in open(sys.argv[1]):
    if l.startswith("{"): print(json.loads(l)["vmhwm_kib"])' "$tmp/baseline.out" | tail -1)
bench_mosquitto_stop || true

# --- 4. report --------------------------------------------------------------------------
echo
echo "prediction latency: $N PCB boards one at a time (QoS 1, +$WARMUP warm-up, ${GAP_MS} ms gap), loopback mosquitto"
echo "training data: $pub_line"
echo "fabrik's run: $train_line"
"$BENCH_PYTHON" - "$tmp" "$f_hwm" "$w_hwm" "$f_anon" "$w_anon" "${b_hwm:-0}" <<'EOF'
import json, sys
tmp, f_hwm, w_hwm, f_anon, w_anon, b_hwm = sys.argv[1], *map(int, sys.argv[2:])
res = {c: json.load(open(f"{tmp}/{c}.samples.json")) for c in ("fabrik", "baseline")}
fmt = "{:<9} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}"
print(fmt.format("consumer", "boards", "lost", "e2e p50", "e2e p99", "model50", "model99",
                 "over50", "over99", "acc"))
for c, r in res.items():
    s = r["summary"]
    g = lambda k, q: f"{s[k][q]:.3f}" if s[k] else "-"
    print(fmt.format(c, s["answered"], s["lost"], g("e2e_ms", "p50"), g("e2e_ms", "p99"),
                     g("model_ms", "p50"), g("model_ms", "p99"), g("overhead_ms", "p50"),
                     g("overhead_ms", "p99"), f"{s['accuracy']:.3f}" if s["accuracy"] is not None else "-"))
f, b = res["fabrik"]["summary"], res["baseline"]["summary"]
if f.get("first_prediction_s") is not None:
    print(f"zip moved into the watched directory -> first prediction: {f['first_prediction_s']:.2f} s"
          " (validate, store, start a worker, import, train on the stored boards, predict)")
if f["e2e_ms"] and b["e2e_ms"]:
    print(f"ratio fabrik / baseline e2e p50: {f['e2e_ms']['p50'] / b['e2e_ms']['p50']:.2f}"
          f"  (p99: {f['e2e_ms']['p99'] / b['e2e_ms']['p99']:.2f})")
pf = {x["seq"]: x["prediction"] for x in res["fabrik"]["samples"]}
pb = {x["seq"]: x["prediction"] for x in res["baseline"]["samples"]}
both = [k for k in pf if k in pb]
if both:
    same = sum(1 for k in both if pf[k] == pb[k])
    print(f"same prediction from both: {same}/{len(both)} boards")
mib = lambda k: f"{k / 1024:.1f} MiB"
print(f"peak RSS (VmHWM): fabrik {mib(f_hwm)} + fabrik-worker {mib(w_hwm)} = {mib(f_hwm + w_hwm)}"
      f"; baseline.py {mib(b_hwm)}")
print(f"peak RssAnon (sampled every 50 ms): fabrik {mib(f_anon)} + fabrik-worker {mib(w_anon)}"
      f" = {mib(f_anon + w_anon)}")
print("ms; e2e = probe's publish -> prediction received; model = the consumer's own timing of "
      "the model call (compute_ms); overhead = e2e - model, per board; acc = vs the boards' labels")
EOF
if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then echo "logs and data: $tmp"; fi
