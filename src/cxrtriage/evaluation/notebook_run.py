"""What every prototype notebook does first and last: resolve its profile and locations, and time itself.

The notebooks in ``prototype/notebooks/`` stay thin: their parameters cell (papermill style) sets ``PROFILE``,
``DATA_DIR`` and ``MODEL``; the next cell calls :func:`start` and the last one ``run.finish()``, which prints how
long the notebook took on this machine. Locations fall back to the package configuration
(``CXRTRIAGE_DATA_DIR``, ``CXRTRIAGE_MODEL``), so a notebook, the CLI and the service read the same settings.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrtriage import config

PROFILES = ("smoke", "full")
#: written by :meth:`NotebookRun.finish` into the notebook's output folder
FACTS_FILE = "last_run.json"


def machine_description() -> str:
    """One line naming this machine's CPU count, memory and accelerator (for the timing figure)."""
    cores = os.cpu_count() or 0
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * page_size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        mem = ""
    gpu = "no GPU"
    try:  # torch is imported (about a second) only when it is installed: a GPU can only be named through it
        import importlib.util

        if importlib.util.find_spec("torch") is not None:
            import torch

            if torch.cuda.is_available():
                gpu = f"GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001, S110 - a description must never fail the notebook
        pass
    return f"{platform.machine()}, {cores} CPU cores{mem}, {gpu}, Python {platform.python_version()}"


@dataclass
class NotebookRun:
    """The resolved parameters of one notebook execution, and its clock."""

    name: str
    profile: str
    data_dir: Path | None
    model: str | None
    started: float = field(default_factory=time.perf_counter)
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return self.profile == "full"

    def require_data(self) -> Path:
        """The data directory, or an error that says how to provide it."""
        if self.data_dir is None or not self.data_dir.is_dir():
            raise FileNotFoundError(
                f"{self.name}: no data directory. Set DATA_DIR in the parameters cell or CXRTRIAGE_DATA_DIR "
                "(in a container: -v /path/to/data:/data -e CXRTRIAGE_DATA_DIR=/data); "
                "prototype/data_scripts/download_datasets.sh says how to obtain the public datasets."
            )
        return self.data_dir

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def record(self, key: str, value: str) -> None:
        """Note a fact a reader of the timing needs (e.g. ``medgemma``: ``random-weight stand-in``); ``finish``
        saves it beside the notebook's outputs and ``make notebooks`` copies it into the timings file."""
        self.facts[str(key)] = str(value)

    def finish(self) -> float:
        """Print (and return) the wall time of the whole notebook on this machine; save it with the facts."""
        import json

        seconds = self.elapsed_s()
        (output_dir(self.name) / FACTS_FILE).write_text(
            json.dumps({"profile": self.profile, "seconds": round(seconds, 1), "facts": self.facts}, indent=2),
            encoding="utf-8",
        )
        print(
            f"{self.name} ({self.profile} profile) took {seconds:.0f} s ({seconds / 60:.1f} min) "
            f"on this machine: {machine_description()}"
        )
        return seconds


def project_root(start_dir: Path | None = None) -> Path | None:
    """The cxrtriage checkout the notebook runs in (found upwards from the working directory), if any."""
    here = (start_dir or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "cxrtriage"' in pyproject.read_text(encoding="utf-8", errors="replace"):
            return folder
    return None


def output_dir(name: str, start_dir: Path | None = None) -> Path:
    """Where a notebook writes what it builds (checkpoints, stand-ins, CSVs): ``runs/notebooks/<name>`` in the
    checkout (ignored by git), or under the system temp directory when run outside one (e.g. in a container)."""
    root = project_root(start_dir)
    base = root / "runs" if root else Path(tempfile.gettempdir()) / "cxrtriage-runs"
    path = base / "notebooks" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def start(
    name: str, profile: str = "smoke", data_dir: str | Path | None = None, model: str | None = None
) -> NotebookRun:
    """Validate the parameters cell and resolve locations from the package configuration."""
    profile = str(profile).strip().lower()
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {', '.join(PROFILES)}, got {profile!r}")
    settings = config.Settings()
    resolved = Path(data_dir).expanduser() if data_dir else settings.find_data_dir()
    model = model or settings.model
    run = NotebookRun(name=name, profile=profile, data_dir=resolved, model=model)
    print(
        f"{name}: profile {profile}; data {resolved if resolved else 'not found'}; "
        f"model {model or 'the backend default'}; {machine_description()}"
    )
    return run


# --------------------------------------------------------------------------- execution (make notebooks)


@dataclass
class ExecutionResult:
    """One executed notebook: where its outputs went and how long it took."""

    notebook: str
    profile: str
    seconds: float
    executed: Path
    html: Path
    facts: dict[str, str] = field(default_factory=dict)


def execute_notebook(
    path: str | Path,
    out_dir: str | Path,
    profile: str = "smoke",
    *,
    parameters: dict | None = None,
    timeout_s: int = 3600,
) -> ExecutionResult:
    """Run one notebook with papermill (parameters injected after the ``parameters`` cell), in its own folder,
    then export the executed copy to HTML. Raises papermill's execution error (naming the failing cell) when a
    cell fails, so ``make notebooks`` and CI fail on any error."""
    from cxrtriage.optional import require

    papermill = require("papermill", extra="notebooks")
    nbconvert = require("nbconvert", extra="notebooks")
    nbformat = require("nbformat", extra="notebooks")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    path = Path(path).resolve()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    executed = out / path.name
    facts_file = output_dir(path.stem, path.parent) / FACTS_FILE  # the kernel runs in the notebook's folder
    facts_file.unlink(missing_ok=True)  # whatever is there afterwards was written by this execution
    started = time.perf_counter()
    papermill.execute_notebook(
        str(path),
        str(executed),
        parameters={"PROFILE": profile, **(parameters or {})},
        cwd=str(path.parent),
        kernel_name="python3",
        execution_timeout=timeout_s,
        progress_bar=False,
    )
    seconds = time.perf_counter() - started
    exporter = nbconvert.HTMLExporter()
    # progress bars redraw with "\r": merge stream chunks and keep only each line's last state
    exporter.register_preprocessor(nbconvert.preprocessors.CoalesceStreamsPreprocessor(), enabled=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4))
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return ExecutionResult(
        notebook=path.name,
        profile=profile,
        seconds=seconds,
        executed=executed,
        html=html,
        facts=_saved_facts(facts_file),
    )


def _saved_facts(path: Path) -> dict[str, str]:
    """The facts the notebook saved in :meth:`NotebookRun.finish` ({} when it saved none)."""
    import json

    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("facts") or {})
    except (OSError, ValueError):
        return {}


def record_timing(result: ExecutionResult, path: str | Path) -> dict:
    """Merge one notebook's wall time into the timings JSON (per notebook and profile, with the machine)."""
    import datetime as _dt
    import json

    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.setdefault("notebooks", {}).setdefault(result.notebook, {})[result.profile] = {
        "seconds": round(result.seconds, 1),
        "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "command": f"make notebooks PROFILE={result.profile}",
        "facts": result.facts,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return data


#: what papermill and nbclient add to an executed notebook that says nothing to a reader (and changes every run)
_RUN_METADATA = ("papermill", "execution", "widgets")


def save_for_commit(executed: str | Path, dest: str | Path, replacements: dict[str, str] | None = None) -> Path:
    """Write the executed notebook to ``dest`` (the committed copy) with its outputs, without the per-run metadata
    (timestamps, durations, absolute input and output paths), and with each ``replacements`` key (e.g. the data
    directory, the checkout) replaced by its value in every output, so the committed file shows no local paths."""
    from cxrtriage.optional import require

    nbformat = require("nbformat", extra="notebooks")
    nbconvert = require("nbconvert", extra="notebooks")
    nb = nbformat.read(str(executed), as_version=4)
    # progress bars redraw with "\r": one stream output per cell, each line in its last state (as the HTML shows it)
    nb, _ = nbconvert.preprocessors.CoalesceStreamsPreprocessor().preprocess(nb, {})
    pairs = sorted((replacements or {}).items(), key=lambda kv: -len(kv[0]))  # longest first: /a/b before /a

    def scrub(text: Any) -> Any:
        if isinstance(text, list):
            return [scrub(t) for t in text]
        if not isinstance(text, str):
            return text
        for old, new in pairs:
            if old:
                text = text.replace(old, new)
        return text

    for key in _RUN_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in _RUN_METADATA:
            cell.metadata.pop(key, None)
        cell.source = cell.source.rstrip("\n")  # papermill's injected cell ends in a newline; ruff format drops it
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = scrub(out["text"])
            for mime in list(out.get("data", {})):
                if mime.startswith("text/") or mime == "application/json":
                    out["data"][mime] = scrub(out["data"][mime])
            if "traceback" in out:
                out["traceback"] = scrub(out["traceback"])
    dest = Path(dest)
    nbformat.write(nb, str(dest))
    return dest
