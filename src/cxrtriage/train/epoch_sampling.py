"""Which training films an epoch sees (``TrainConfig.balance``).

Why: the sources differ in size by an order of magnitude (4,159 pediatric films, 585 NIH, 324 Shenzhen, 65 JSRT
normals) and in their share of urgent films (pediatric about three quarters). ``source`` (generations 2 and 3)
takes every NIH film and a fixed random quota of each other source per epoch. ``source_label`` (issue 24's "sampling
balanced by source and label") draws each source's quota half from its urgent and half from its non-urgent films,
so no site and no site's label prevalence dominates what the network learns to separate; a cell smaller than its
share is drawn with replacement.
"""

from __future__ import annotations

import numpy as np

BALANCES = ("source", "source_label")


def draw_epoch(rng: np.random.Generator, labels: np.ndarray, quota: int | None, balance: str = "source") -> np.ndarray:
    """Indices into one source's training films for one epoch. ``quota`` None takes them all (``source``) or, with
    ``source_label``, as many as the source has, split evenly between its labels."""
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got {balance!r}")
    n = len(labels)
    if n == 0 or quota == 0:
        return np.zeros(0, dtype=np.int64)
    if balance == "source":
        return np.arange(n) if quota is None else rng.choice(n, min(quota, n), replace=False)
    want = n if quota is None else quota
    cells = [np.flatnonzero(labels == v) for v in (0, 1)]
    cells = [c for c in cells if len(c)]  # JSRT normals: one label only, the whole quota from it
    shares = [want // len(cells) + (1 if i < want % len(cells) else 0) for i in range(len(cells))]
    picked = [rng.choice(c, k, replace=k > len(c)) for c, k in zip(cells, shares, strict=True)]
    return np.concatenate(picked).astype(np.int64)
