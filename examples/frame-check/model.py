"""Brightness check on camera frames: mean brightness as a fraction of full scale.

sample["image"] is a numpy view over the frame fabrik received (no copy);
samples["image"] in predict_batch is the list of a batch's frames.
"""
import numpy as np

_params = {"dark": 0.2, "bright": 0.8}


def update_parameters(params):
    _params.update(params)


def _check(img):
    full = np.iinfo(img.dtype).max if img.dtype.kind == "u" else 1.0
    b = float(img.mean()) / full
    verdict = "dark" if b < _params["dark"] else "bright" if b > _params["bright"] else "ok"
    # shape as text (240x320): a prediction's fields are scalars
    return {"verdict": verdict, "brightness": round(b, 6),
            "shape": "x".join(str(n) for n in img.shape), "dtype": str(img.dtype)}


def predict(model, sample):
    return _check(sample["image"])


def predict_batch(model, samples):
    return [_check(img) for img in samples["image"]]
