"""IMU action classification: hammering / screwing / sawing / drilling / idle from windows
of two 6-axis IMUs (left and right hand).

A fabrik workflow (docs/workflows.md), the paper's second example. fabrik calls train()
with the labelled samples it selected from storage, pickles the returned model, and
calls predict_batch() (or predict()) for live data. One prediction is about a *window*
of consecutive samples, not a single sample: the flow's workflow actor collects them
(its `window:` setting) and hands over the window as a 2-D array.

The window contract (README.md has the long form):
  * a window is a 2-D float array, one row per sample (record) in time order, one column
    per input of fabrik-workflow.yaml in that order (left_acc_x ... right_gyr_z);
  * predict(model, sample) finds it as sample.x (fabrik's Sample for a windowed
    workflow: window x inputs; sample.X is the same with a leading axis of 1), or
    sample["window"] (a plain dict {"window": array}), or, for a dict of input name ->
    1-D array over the window, by the input names;
  * predict_batch(model, samples) takes fabrik's Dataset of windows (samples.X is
    windows x rows x inputs), a 3-D array, or a list of samples as above, and returns
    one result per window, in order;
  * train(dataset, params) takes consecutive samples (dataset.X is rows x inputs, one
    label per row in dataset.y) and cuts the windows itself; a dataset of windows
    (dataset.X is windows x rows x inputs, one label per window) is used as it is;
  * a window should hold as many rows as the model was trained with (parameter
    `window`, default 50 = 1 s at 50 Hz) at the training sample rate; shorter windows
    (>= MIN_ROWS rows) still work, less reliably;
  * missing values (NaN) are filled from the rest of their column.
Results: {"activity": one of the trained labels, "confidence": the forest's vote share}.
"""

import numpy as np
from sklearn.ensemble import RandomForestClassifier

FEATURES_VERSION = 1
MIN_ROWS = 8
# The inputs of fabrik-workflow.yaml, in its order: the columns of every window.
INPUTS = [f"{hand}_{sensor}_{axis}" for hand in ("left", "right")
          for sensor in ("acc", "gyr") for axis in "xyz"]
N_AXES = len(INPUTS)
# Spectral bands as fractions of the Nyquist frequency: at 50 Hz < 3 Hz, 3-10 Hz, > 10 Hz.
BANDS = ((0.0, 0.12), (0.12, 0.4), (0.4, 1.01))


# -- features --------------------------------------------------------------------------

def _fill_nan(w):
    """NaN or inf (a missing value) -> the mean of the rest of its column, or 0."""
    bad = ~np.isfinite(w)
    if not bad.any():
        return w
    w = w.copy()
    for j in np.nonzero(bad.any(axis=0))[0]:
        ok = ~bad[:, j]
        w[bad[:, j], j] = w[ok, j].mean() if ok.any() else 0.0
    return w


def _channels(w):
    """The 12 axes plus the magnitudes of each hand's acceleration and rotation rate
    (the magnitudes do not depend on how the sensor sits on the hand)."""
    mags = [np.linalg.norm(w[:, i:i + 3], axis=1) for i in (0, 3, 6, 9)]
    return np.column_stack([w] + mags)


def features(window):
    """One window (rows x 12) -> a 1-D feature vector.

    Per channel (12 axes + 4 magnitudes): mean, standard deviation, minimum, maximum,
    dominant frequency (as a fraction of Nyquist), the dominant frequency's share of the
    signal's energy, and the log energy in three frequency bands. Plus the correlation of
    the two hands' x and z accelerations (sawing and drilling move both hands together).
    """
    w = np.asarray(window, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != N_AXES:
        raise ValueError(f"a window must be a 2-D array of rows x {N_AXES} inputs "
                         f"(left_acc_x ... right_gyr_z), got shape {w.shape}")
    n = w.shape[0]
    if n < MIN_ROWS:
        raise ValueError(f"a window needs at least {MIN_ROWS} rows (samples), got {n}")
    w = _fill_nan(w)
    c = _channels(w)
    mean = c.mean(axis=0)
    std = c.std(axis=0)
    ac = c - mean
    power = np.abs(np.fft.rfft(ac, axis=0)) ** 2 / (n * n)   # per-sample power per bin
    power[0] = 0.0
    nbins = power.shape[0]
    freq = np.arange(nbins) / (n / 2.0)                      # fraction of Nyquist
    total = power.sum(axis=0) + 1e-12
    dom = power.argmax(axis=0)
    dom_share = power[dom, np.arange(power.shape[1])] / total
    bands = [np.log(power[(freq >= lo) & (freq < hi)].sum(axis=0) + 1e-6) for lo, hi in BANDS]

    def corr(i, j):
        si, sj = std[i], std[j]
        if si < 1e-9 or sj < 1e-9:
            return 0.0
        return float((ac[:, i] * ac[:, j]).mean() / (si * sj))

    cross = [corr(0, 6), corr(2, 8)]
    return np.concatenate([mean, std, c.min(axis=0), c.max(axis=0), freq[dom], dom_share]
                          + bands + [np.array(cross)])


# -- training --------------------------------------------------------------------------

def _in_order(X, columns):
    """X with its last axis in INPUTS order, when `columns` names the inputs in another
    order (fabrik passes them in the manifest's order, which is INPUTS)."""
    columns = list(columns or [])
    if columns == INPUTS or sorted(columns) != sorted(INPUTS):
        return X
    return X[..., [columns.index(name) for name in INPUTS]]


def _param(params, name, default, kind=int):
    v = (params or {}).get(name)
    return default if v is None else kind(v)


def _segments(dataset, n):
    """Row ranges [a, b) without a gap in time, when the dataset has timestamps."""
    t = None
    for attr in ("timestamps", "t", "time"):
        t = getattr(dataset, attr, None)
        if t is not None:
            break
    if t is None:
        return [(0, n)]
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if t.shape[0] != n or n < 3:
        return [(0, n)]
    dt = np.diff(t)
    typical = np.median(dt)
    if not typical > 0:
        return [(0, n)]
    cuts = np.nonzero(dt > 5.0 * typical)[0] + 1
    edges = [0] + cuts.tolist() + [n]
    return list(zip(edges[:-1], edges[1:]))


def windows_of(X, y, size, step, min_purity=0.6, segments=None):
    """Cuts rows into windows of `size` rows every `step` rows (within each segment).

    Returns (feature matrix, labels): a window's label is the label most of its rows
    have; windows where that label covers less than min_purity of the rows (an activity
    change in the middle) or whose rows are mostly unlabelled are left out."""
    feats, labels = [], []
    for a, b in segments or [(0, X.shape[0])]:
        for s in range(a, b - size + 1, step):
            ys = y[s:s + size]
            ys = ys[(ys != "") & (ys != "None") & (ys != "nan")]
            if ys.shape[0] * 2 < size:
                continue
            values, counts = np.unique(ys, return_counts=True)
            best = counts.argmax()
            if counts[best] < min_purity * size:
                continue
            feats.append(features(X[s:s + size]))
            labels.append(values[best])
    return feats, labels


def train(dataset, params):
    """dataset.X: samples x 12 inputs, consecutive rows in time order (as stored);
    dataset.y: the activity of every row. Windows of `window` rows every window/2 rows
    (parameter `step` to change it) become the training examples of a random forest.
    A dataset of windows (windows x rows x 12, a label per window) is used as it is."""
    if getattr(dataset, "y", None) is None:
        raise ValueError("imu-classifier is supervised: the training data needs labels")
    X = _in_order(np.asarray(dataset.X, dtype=np.float64), getattr(dataset, "columns", None))
    y = np.array([("" if v is None else str(v)) for v in dataset.y], dtype=object).astype(str)
    if X.ndim == 3 and X.shape[2] == N_AXES:
        # Windows already cut by fabrik (a flow with `window:` on the training data too):
        # one label per window.
        size, step = X.shape[1], 0
        keep = [i for i in range(X.shape[0]) if y[i] not in ("", "None", "nan")]
        feats = [features(X[i]) for i in keep]
        labels = [y[i] for i in keep]
    elif X.ndim == 2 and X.shape[1] == N_AXES:
        size = _param(params, "window", 50)
        if size < MIN_ROWS:
            raise ValueError(f"parameter window must be >= {MIN_ROWS}, got {size}")
        step = _param(params, "step", 0) or max(1, size // 2)
        feats, labels = windows_of(X, y, size, step,
                                   min_purity=_param(params, "min_purity", 0.6, float),
                                   segments=_segments(dataset, X.shape[0]))
    else:
        raise ValueError(f"expected samples x {N_AXES} inputs (or windows x rows x "
                         f"{N_AXES}), got shape {X.shape}")
    if len(feats) < 2:
        raise ValueError(f"{X.shape[0]} samples give {len(feats)} labelled windows of "
                         f"{size}; need more data")
    if len(set(labels)) < 2:
        raise ValueError(f"the training data has only one activity ({labels[0]})")
    max_depth = (params or {}).get("max_depth")
    forest = RandomForestClassifier(
        n_estimators=_param(params, "n_estimators", 100),
        max_depth=None if max_depth is None else int(max_depth),
        min_samples_leaf=_param(params, "min_samples_leaf", 1),
        random_state=(params or {}).get("random_state"),
        n_jobs=1,
    )
    forest.fit(np.vstack(feats), np.array(labels))
    return {"forest": forest, "window": size, "step": step,
            "features": FEATURES_VERSION, "windows": len(feats),
            "columns": list(getattr(dataset, "columns", None) or [])}


# -- prediction ------------------------------------------------------------------------

_NOT_A_WINDOW = ("imu-classifier predicts on windows of samples, but this sample is a "
                 "single record: set `window:` (e.g. 50) on the flow's workflow actor")


def _window_of(sample):
    """The rows x 12 window of one sample, in any of the forms the contract allows."""
    x = getattr(sample, "x", None)                      # fabrik's Sample
    if x is not None:
        if np.ndim(x) != 2:
            raise ValueError(_NOT_A_WINDOW)
        return _in_order(x, getattr(sample, "columns", None))
    w = getattr(sample, "window", None)
    if w is not None:
        return w
    if isinstance(sample, dict):
        if "window" in sample:
            return sample["window"]
        if all(name in sample and np.ndim(sample[name]) == 1 for name in INPUTS):
            # input name -> 1-D array over the window
            return np.column_stack([np.asarray(sample[n], dtype=np.float64) for n in INPUTS])
        raise ValueError(_NOT_A_WINDOW)
    return sample                                       # the window itself


def _result(forest, probabilities):
    best = int(np.argmax(probabilities))
    return {"activity": str(forest.classes_[best]),
            "confidence": round(float(probabilities[best]), 4)}


def predict(model, sample):
    """One window: sample.x or sample["window"] is rows x 12 (see the module's
    docstring)."""
    forest = model["forest"]
    f = features(_window_of(sample))
    return _result(forest, forest.predict_proba(f[np.newaxis, :])[0])


def predict_batch(model, samples):
    """Many windows at once (fabrik's Dataset with X windows x rows x 12, a 3-D array,
    or a list of samples): one predict_proba call instead of one per window."""
    forest = model["forest"]
    X = samples if isinstance(samples, np.ndarray) else getattr(samples, "X", None)
    if X is not None and np.ndim(X) == 3:               # fabrik's Dataset of windows
        wins = list(_in_order(X, getattr(samples, "columns", None)))
    elif X is not None and np.ndim(X) == 2:
        raise ValueError(_NOT_A_WINDOW)
    else:
        wins = [_window_of(s) for s in samples]
    if not wins:
        return []
    F = np.vstack([features(w) for w in wins])
    return [_result(forest, p) for p in forest.predict_proba(F)]
