#!/usr/bin/python3
"""Offline learnability check of the IMU workflow, without fabrik.

Generates labelled data with the virtual asset (bench/assets/imu_publisher.py --csv),
trains this package's own train() on one run, then classifies every window of a second
run with another seed through predict_batch(), as fabrik's workflow actor would hand
the windows over (rows x 12 inputs, in the manifest's order), and prints the accuracy
per activity, the confusion matrix and the overall accuracy.

  examples/imu-classifier/check.py                  # 10 min to train, 5 min to test
  examples/imu-classifier/check.py --train-min 3 --test-min 3 --seed 7

Every window of the test run counts, also those spanning an activity change (their
label is the one most of their rows have); the accuracy on windows within a single
activity is printed as well. Exit status 0 when the overall accuracy reaches
--min-accuracy (default 0.8), 1 when not, 2 on a usage or setup error.
Run it with Debian's /usr/bin/python3 (numpy, scikit-learn).
"""

import argparse
import csv
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PUBLISHER = ROOT / "bench" / "assets" / "imu_publisher.py"
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ in the package source

import model  # noqa: E402  (this package's entry module)


class Dataset:
    """What train() gets from fabrik: X (rows x inputs, in time order), y, columns."""

    def __init__(self, X, y, columns, timestamps):
        self.X, self.y, self.columns, self.timestamps = X, y, columns, timestamps

    def __len__(self):
        return self.X.shape[0]


def manifest():
    text = (HERE / "fabrik-workflow.yaml").read_text()
    try:
        import yaml
        return yaml.safe_load(text)
    except ImportError:  # python3-yaml missing: the defaults model.py has anyway
        return {"inputs": model_axes(), "label": "label", "parameters": {}}


def model_axes():
    return [f"{h}_{s}_{a}" for h in ("left", "right") for s in ("acc", "gyr") for a in "xyz"]


def generate(path, minutes, seed, hz):
    count = int(round(minutes * 60 * hz))
    cmd = [sys.executable, str(PUBLISHER), "--csv", str(path), "--count", str(count),
           "--seed", str(seed), "--hz", f"{hz:g}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check: {' '.join(cmd)} failed:\n{r.stderr}")


def load(path, inputs, label):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        cols = [header.index(name) for name in inputs]
        li, ti = header.index(label), header.index("t")
        X, y, t = [], [], []
        for r in rows:
            X.append([float(r[c]) for c in cols])
            y.append(r[li])
            t.append(float(r[ti]))
    return Dataset(np.array(X), np.array(y), list(inputs), np.array(t))


def test_windows(data, size, step):
    """Every window of the run: (windows, majority label, whether it is one activity,
    label of the newest row)."""
    wins, labels, pure, newest = [], [], [], []
    for s in range(0, len(data) - size + 1, step):
        ys = data.y[s:s + size]
        values, counts = np.unique(ys, return_counts=True)
        wins.append({"window": data.X[s:s + size]})
        labels.append(values[counts.argmax()])
        pure.append(counts.max() == size)
        newest.append(ys[-1])
    return wins, np.array(labels), np.array(pure), np.array(newest)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-min", type=float, default=10.0,
                   help="minutes of training data (default 10)")
    p.add_argument("--test-min", type=float, default=5.0,
                   help="minutes of test data (default 5)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the training run; the test run uses seed+1000 (default 1)")
    p.add_argument("--hz", type=float, default=50.0, help="IMU sample rate (default 50)")
    p.add_argument("--min-accuracy", type=float, default=0.8,
                   help="exit 1 below this overall accuracy (default 0.8)")
    a = p.parse_args()
    if not PUBLISHER.exists():
        print(f"check: {PUBLISHER} not found", file=sys.stderr)
        return 2

    m = manifest()
    inputs, label = m["inputs"], m.get("label", "label")
    params = dict(m.get("parameters") or {})
    size = int(params.get("window", 50))
    with tempfile.TemporaryDirectory(prefix="imu-check-") as tmp:
        train_csv, test_csv = Path(tmp, "train.csv"), Path(tmp, "test.csv")
        generate(train_csv, a.train_min, a.seed, a.hz)
        generate(test_csv, a.test_min, a.seed + 1000, a.hz)
        train_data = load(train_csv, inputs, label)
        test_data = load(test_csv, inputs, label)

    t0 = time.perf_counter()
    c0 = time.process_time()
    trained = model.train(train_data, params)
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    blob = pickle.dumps(trained)
    trained = pickle.loads(blob)  # what fabrik stores and loads
    print(f"train: {len(train_data)} samples ({a.train_min:g} min at {a.hz:g} Hz, seed "
          f"{a.seed}) -> {trained['windows']} windows of {size}, step {trained['step']}; "
          f"{train_s:.2f} s wall, {train_cpu:.2f} s CPU; model {len(blob) / 1e6:.1f} MB pickled")

    wins, truth, pure, newest = test_windows(test_data, size, max(1, size // 2))
    t0 = time.perf_counter()
    results = model.predict_batch(trained, wins)
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    singles = [model.predict(trained, w) for w in wins[:50]]
    single_ms = (time.perf_counter() - t0) / len(singles) * 1000
    if any(s != r for s, r in zip(singles, results)):
        print("check: predict() and predict_batch() disagree", file=sys.stderr)
        return 1
    pred = np.array([r["activity"] for r in results])
    conf = np.array([r["confidence"] for r in results])
    print(f"test: {len(test_data)} samples ({a.test_min:g} min, seed {a.seed + 1000}) -> "
          f"{len(wins)} windows; predict_batch {batch_s / len(wins) * 1000:.2f} ms/window, "
          f"predict {single_ms:.2f} ms/window")

    classes = sorted(set(truth) | set(pred))
    print()
    print(f"{'activity':<10} {'windows':>7} {'accuracy':>8}   confusion (columns: predicted "
          f"{' '.join(c[:5] for c in classes)})")
    for c in classes:
        sel = truth == c
        if not sel.any():
            continue
        row = " ".join(f"{int(((pred == d) & sel).sum()):5d}" for d in classes)
        print(f"{c:<10} {int(sel.sum()):7d} {float((pred[sel] == c).mean()):8.3f}   {row}")
    overall = float((pred == truth).mean())
    pure_acc = float((pred[pure] == truth[pure]).mean()) if pure.any() else float("nan")
    mixed_acc = float((pred[~pure] == truth[~pure]).mean()) if (~pure).any() else float("nan")
    print()
    print(f"overall accuracy: {overall:.3f} ({len(wins)} windows; within one activity "
          f"{pure_acc:.3f} of {int(pure.sum())}, across a change {mixed_acc:.3f} of "
          f"{int((~pure).sum())}); mean confidence {conf.mean():.2f}")
    print(f"scored against the newest row's label instead of the majority (what a live "
          f"consumer sees at a change): {float((pred == newest).mean()):.3f}")
    ok = overall >= a.min_accuracy
    print(f"{'PASS' if ok else 'FAIL'}: overall accuracy {overall:.3f} "
          f"{'>=' if ok else '<'} {a.min_accuracy}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
