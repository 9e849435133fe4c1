"""Import thinc, spaCy's ML layer, so that it does not import torch.

thinc imports torch in one place, ``thinc/compat.py`` (``try: import torch ... except ImportError``), whenever torch is
installed, and has no setting to skip it. The prior-report pipeline is rule-based and never uses torch, and torch is
expensive to load. Measured on a shared 2-core machine, fresh process each, ``get_nlp()`` (import and build the
medspaCy pipeline), 8 interleaved runs each, minimum / median:

* thinc without torch: 2.3 / 3.0 s, peak RSS 224 MiB;
* thinc with torch (torch 2.13 CPU): 3.7 / 4.6 s, peak RSS 400 MiB (``import torch`` alone: 1.1 s, 223 MiB).

The serving image does not install torch, so there this module changes nothing; it matters where torch is installed
(development, training), where it keeps the server warm-up and CLI start-up at the numbers above and the inference path
torch-free (``tests/cli/test_cli.py::test_runtime_path_does_not_import_torch``).

How: ``thinc.compat`` is executed once with its own ``__import__`` that declines torch; nothing process-wide changes
(no import hook, no ``sys.modules["torch"]`` entry), so a torch import from another thread at the same moment works
as usual. The module is then registered under its normal name, as any import would. Whenever that is not possible
(thinc already imported, torch already imported, a thinc without ``compat.py``) thinc is imported the ordinary way.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["import_thinc_without_torch"]


def _import_declining_torch(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    if level == 0 and (name == "torch" or name.startswith("torch.")):
        raise ModuleNotFoundError(f"No module named {name!r} (not offered to thinc by cxrtriage)", name=name)
    return builtins.__import__(name, globals, locals, fromlist, level)


def _load_thinc_compat_without_torch() -> None:
    if "thinc" in sys.modules or "thinc.compat" in sys.modules or "torch" in sys.modules:
        return  # thinc is already decided, or torch is loaded anyway (then there is nothing to save)
    thinc_spec = importlib.util.find_spec("thinc")  # finds the package without importing it
    if thinc_spec is None or thinc_spec.origin is None:
        return
    path = Path(thinc_spec.origin).with_name("compat.py")
    spec = importlib.util.spec_from_file_location("thinc.compat", path)
    if not path.is_file() or spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    module.__dict__["__builtins__"] = {**vars(builtins), "__import__": _import_declining_torch}
    spec.loader.exec_module(module)
    # setdefault: if another thread imported thinc meanwhile, its thinc.compat stays the one in use
    sys.modules.setdefault("thinc.compat", module)


def import_thinc_without_torch() -> None:
    """Import thinc without torch when possible; spaCy and medspaCy imported afterwards use that thinc."""
    _load_thinc_compat_without_torch()
    import thinc

    compat = sys.modules.get("thinc.compat")
    if compat is not None and not hasattr(thinc, "compat"):
        thinc.compat = compat  # the attribute a regular import of the submodule sets on its package
