"""Candidate calibrations of the urgency logit, fitted on validation logits (issue 24: ECE <= 0.08 on every source).

The shipped calibration is Platt scaling pooled over every source's validation part
(:mod:`cxrtriage.train.operating_point`). The candidates here are what ``scripts/calibrator_trial.py`` compares with
it by cross-validation within the validation sources, then once on test:

* ``platt``: ``sigmoid(a z + b)``, the shipped form (:func:`cxrtriage.backends.calibration.fit_platt`);
* ``temperature``: ``sigmoid(z / T)``, one parameter, no shift;
* ``isotonic``: a monotonic step function of ``z`` (a table of knots; flat steps tie films, so AUC can move);
* ``beta``: Kull et al. 2017, a logistic fit on ``log p`` and ``-log(1 - p)`` with ``p = sigmoid(z)``, both slopes
  kept >= 0 so it stays monotonic (a negative one is dropped and the fit repeated on the other);
* ``platt_view``: Platt plus an offset per view (PA, AP, unknown), the only film feature here that a deployment
  knows at inference without the source's name (DICOM ViewPosition; a PNG or JPEG is ``unknown``). In this data
  every pediatric film is ``unknown`` and every Shenzhen and JSRT film PA, so the view is partly a proxy for the
  source: its figures must be read with that in mind.

Every calibrator maps (logits, views) to P(Urgent); none changes the model or its ranking within a view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cxrtriage.backends.calibration import fit_platt, platt

#: the views a calibration may use; anything else (PNG, JPEG, a DICOM without ViewPosition) is "unknown"
VIEWS = ("PA", "AP", "unknown")
#: an unregularised logistic fit, as :func:`~cxrtriage.backends.calibration.fit_platt`
_C = 1e6


def view_of(view: str) -> str:
    v = str(view or "").upper()
    return v if v in VIEWS else "unknown"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logistic(x: np.ndarray, y: np.ndarray, intercept: bool = True) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=_C, max_iter=2000, fit_intercept=intercept).fit(x, y)
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0]) if intercept else 0.0


def fit_temperature(z: np.ndarray, y: np.ndarray, views: Sequence[str]) -> dict:
    (w,), _ = _logistic(z[:, None], y, intercept=False)
    return {"t": float(1.0 / w) if w > 0 else float("inf")}


def apply_temperature(params: dict, z: np.ndarray, views: Sequence[str]) -> np.ndarray:
    return _sigmoid(z / params["t"]) if np.isfinite(params["t"]) else np.full(len(z), 0.5)


def fit_platt_params(z: np.ndarray, y: np.ndarray, views: Sequence[str]) -> dict:
    a, b = fit_platt(z, y)
    return {"a": a, "b": b}


def apply_platt(params: dict, z: np.ndarray, views: Sequence[str]) -> np.ndarray:
    return platt(z, params["a"], params["b"])


def fit_isotonic(z: np.ndarray, y: np.ndarray, views: Sequence[str]) -> dict:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(z, y)
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def apply_isotonic(params: dict, z: np.ndarray, views: Sequence[str]) -> np.ndarray:
    return np.interp(z, params["x"], params["y"])


def _beta_features(z: np.ndarray) -> np.ndarray:
    # log p and -log(1 - p) of p = sigmoid(z), computed without overflow
    return np.stack([-np.logaddexp(0.0, -z), np.logaddexp(0.0, z)], axis=1)


def fit_beta(z: np.ndarray, y: np.ndarray, views: Sequence[str]) -> dict:
    f = _beta_features(z)
    w, c = _logistic(f, y)
    if w.min() < 0:  # keep it monotonic: drop the feature with the negative slope and refit on the other
        keep = int(np.argmax(w))
        (wk,), c = _logistic(f[:, [keep]], y)
        w = np.zeros(2)
        w[keep] = max(wk, 0.0)
    return {"a": float(w[0]), "b": float(w[1]), "c": c}


def apply_beta(params: dict, z: np.ndarray, views: Sequence[str]) -> np.ndarray:
    f = _beta_features(z)
    return _sigmoid(params["a"] * f[:, 0] + params["b"] * f[:, 1] + params["c"])


def _view_features(z: np.ndarray, views: Sequence[str]) -> np.ndarray:
    v = [view_of(x) for x in views]
    return np.stack([z] + [np.array([x == name for x in v], np.float64) for name in VIEWS[1:]], axis=1)


def fit_platt_view(z: np.ndarray, y: np.ndarray, views: Sequence[str]) -> dict:
    w, c = _logistic(_view_features(z, views), y)
    return {"a": float(w[0]), "b": c, **{f"offset_{name}": float(o) for name, o in zip(VIEWS[1:], w[1:])}}


def apply_platt_view(params: dict, z: np.ndarray, views: Sequence[str]) -> np.ndarray:
    f = _view_features(z, views)
    offsets = np.array([params[f"offset_{name}"] for name in VIEWS[1:]])
    return _sigmoid(params["a"] * f[:, 0] + params["b"] + f[:, 1:] @ offsets)


@dataclass(frozen=True)
class Calibrator:
    """A calibration form: how it is fitted and applied, and in words what it is."""

    name: str
    what: str
    fit: Callable[[np.ndarray, np.ndarray, Sequence[str]], dict]
    apply: Callable[[dict, np.ndarray, Sequence[str]], np.ndarray]


CALIBRATORS = {
    c.name: c
    for c in (
        Calibrator("platt", "Platt scaling sigmoid(a z + b), pooled (shipped)", fit_platt_params, apply_platt),
        Calibrator("temperature", "temperature only, sigmoid(z / T)", fit_temperature, apply_temperature),
        Calibrator("isotonic", "isotonic regression of the logit (monotonic steps)", fit_isotonic, apply_isotonic),
        Calibrator(
            "beta", "beta calibration: logistic fit on log p and -log(1 - p), slopes >= 0", fit_beta, apply_beta
        ),
        Calibrator(
            "platt_view",
            "Platt plus an offset per view (PA / AP / unknown: DICOM ViewPosition, unknown for PNG and JPEG)",
            fit_platt_view,
            apply_platt_view,
        ),
    )
}
