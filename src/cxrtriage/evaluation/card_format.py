"""How the model card writes a number: ``n/a`` for a missing value, 3 decimals unless told."""

from __future__ import annotations

from typing import Any


def number(x: Any, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)
