"""Import an optional dependency on first use, with an error that says which extra installs it.

Heavy libraries (matplotlib, papermill, torch, ...) live in extras so that serving stays small; a caller that
needs one asks for it here instead of importing at module level.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingDependency` naming ``pip install 'cxrtriage[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependency(
            f"{module} is needed{what} but cannot be imported ({exc}): pip install 'cxrtriage[{extra}]'"
        ) from exc
