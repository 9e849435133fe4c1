"""What every metric module shares: input validation, the lazy scikit-learn import and the JSON conversion.

Every metric validates its inputs (1-D, same length, labels in {0, 1}, finite scores) and raises
:class:`ValueError` with a readable message, because a silently broadcast or NaN-polluted metric is worse than a
crash in a safety report.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cxrtriage.optional import require

__all__ = [
    "as_labels",
    "as_scores",
    "check_alpha",
    "check_fraction",
    "check_n_boot",
    "check_pair",
    "check_threshold",
    "safe_div",
    "sklearn_metrics",
    "to_jsonable",
]


def sklearn_metrics() -> Any:
    """Import ``sklearn.metrics`` on first use (it is in the optional 'eval' extra)."""
    # The package first: it is what is missing when scikit-learn is not installed (or blocked in sys.modules),
    # and importing the submodule alone would hand back an already-loaded sklearn.metrics regardless.
    require("sklearn", extra="eval", purpose="evaluation metrics")
    return require("sklearn.metrics", extra="eval", purpose="evaluation metrics")


def as_labels(y_true: ArrayLike, name: str = "y_true") -> np.ndarray:
    """Return labels as a 1-D int array, refusing anything that is not 0/1."""
    try:
        y = np.asarray(y_true)
    except Exception as exc:  # ragged nested lists, etc.
        raise ValueError(f"{name} could not be read as a 1-D array: {exc}") from exc
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric 0/1 labels (1 = Urgent), got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite values")
    bad = ~np.isin(y, (0, 1))
    if np.any(bad):
        examples = ", ".join(repr(v) for v in np.unique(y[bad])[:5].tolist())
        raise ValueError(f"{name} must contain only 0 and 1 (1 = Urgent); found {examples}")
    return y.astype(np.int64)


def as_scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """Return scores as a 1-D float array, refusing NaN/inf (they would sort arbitrarily)."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(s)):
        n_bad = int(np.sum(~np.isfinite(s)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s)")
    return s


def check_pair(y_true: ArrayLike, scores: ArrayLike, score_name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels, scores) of the same length."""
    y = as_labels(y_true)
    s = as_scores(scores, score_name)
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true and {score_name} must have the same length, got {y.shape[0]} and {s.shape[0]}")
    return y, s


def check_fraction(value: float, name: str, *, open_low: bool = False) -> float:
    """``value`` as a float in [0, 1] (or (0, 1] with ``open_low``)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    low_ok = v > 0.0 if open_low else v >= 0.0
    if not (low_ok and v <= 1.0):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_threshold(threshold: float) -> float:
    """``threshold`` as a finite float."""
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a number, got {threshold!r}") from exc
    if not math.isfinite(t):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return t


def check_alpha(alpha: float) -> float:
    """``alpha`` (one minus the interval's coverage) as a float in (0, 1)."""
    a = float(alpha)
    if not (0.0 < a < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def check_n_boot(n_boot: int) -> int:
    """``n_boot`` as a positive int (bools refused)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


def safe_div(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is zero (an undefined rate is not a bad one)."""
    return float(num) / float(den) if den else math.nan


def to_jsonable(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python types and NaN/inf into None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj
