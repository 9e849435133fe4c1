"""Import an optional dependency on first use, with an error that says which extra installs it.

Heavy libraries (matplotlib, papermill, torch, ...) live in extras so that serving stays small; a caller that
needs one asks for it here instead of importing at module level.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: import name -> the name pip installs it under, where they differ
PIP_NAMES = {"sklearn": "scikit-learn", "llama_cpp": "llama-cpp-python", "PIL": "pillow"}
#: llama-cpp-python must be built with portable flags: the default native build crashes on CPUs with AMX
EDGE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


class MissingDependency(ImportError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def install_command(extras: str | set[str]) -> str:
    """``pip install 'cxrtriage[a,b]'`` (built from source with portable flags when the edge extra is among them)."""
    names = ",".join(sorted({extras} if isinstance(extras, str) else extras))
    if "edge" in names.split(","):
        return f"CMAKE_ARGS=\"{EDGE_CMAKE_ARGS}\" pip install --no-binary llama-cpp-python 'cxrtriage[{names}]'"
    return f"pip install 'cxrtriage[{names}]'"


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or :class:`MissingDependency` naming ``pip install 'cxrtriage[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependency(
            f"{module} is needed{what} but cannot be imported ({exc}): {install_command(extra)}"
        ) from exc


def require_all(modules: dict[str, str], *, purpose: str) -> list[ModuleType]:
    """Import every ``module -> extra``; one :class:`MissingDependency` naming all that are missing and the one
    pip command that installs them (``purpose`` starts the sentence, e.g. "`cxrtriage hai-def finetune`")."""
    loaded, missing = [], []
    for name, extra in modules.items():
        try:
            loaded.append(importlib.import_module(name))
        except ImportError as exc:
            missing.append((name, extra, exc))
    if missing:
        names = ", ".join(PIP_NAMES.get(n, n) for n, _, _ in missing)
        raise MissingDependency(
            f"{purpose} needs {names}, which cannot be imported: "
            f"{install_command({e for _, e, _ in missing})} ({missing[0][2]})"
        )
    return loaded
