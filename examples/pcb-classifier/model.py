"""PCB solder-paste inspection: OK / error / pseudo-error from 16 SPI measurements.

A fabrik workflow (docs/workflows.md). fabrik calls train() with the labelled boards it
selected from storage, pickles the returned model, and calls predict_batch() (or
predict() for a single board) for live boards. Inputs arrive in the order of `inputs`
in fabrik-workflow.yaml; a missing measurement is NaN.
"""

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def _clean(X):
    # A missing measurement (NaN) must not stop a prediction; 0 is outside every
    # class's range, so the forest treats it as unusual rather than as a typical board.
    return np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def train(dataset, params):
    """dataset.X: boards x 16 measurements; dataset.y: their labels."""
    if dataset.y is None:
        raise ValueError("pcb-classifier is supervised: the training data needs labels")
    if len(dataset) == 0:
        raise ValueError("no boards to train on")
    max_depth = params.get("max_depth")
    n_estimators = int(params.get("n_estimators", 100))
    print(f"training {n_estimators} trees on {len(dataset)} boards")  # kept in the run's log
    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=None if max_depth is None else int(max_depth),
        min_samples_leaf=int(params.get("min_samples_leaf", 1)),
        random_state=params.get("random_state"),
        n_jobs=1,
    )
    forest.fit(_clean(dataset.X), np.asarray(dataset.y).astype(str))
    return {"forest": forest, "columns": list(dataset.columns)}


def _outputs(forest, probabilities):
    best = int(np.argmax(probabilities))
    return {"prediction": str(forest.classes_[best]),
            "confidence": round(float(probabilities[best]), 4)}


def predict(model, sample):
    """One board: sample.X is a 1 x 16 array (sample[name] gives one measurement)."""
    forest = model["forest"]
    return _outputs(forest, forest.predict_proba(_clean(sample.X))[0])


def predict_batch(model, samples):
    """Many boards at once: one predict_proba call instead of one per board."""
    forest = model["forest"]
    return [_outputs(forest, p) for p in forest.predict_proba(_clean(samples.X))]
