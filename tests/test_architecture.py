"""The package's layering (ARCHITECTURE.md), checked from the source: no stage imports one above it, no import
cycles between modules, no private names imported across modules, and run-time code never imports train/ or
hai_def/. Function-level (lazy) imports count too: a lazy import upward is still an upward dependency."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "cxrtriage"

BASE = {
    "errors",
    "config",
    "optional",
    "schema",
    "decision",
    "files",
    "log_text",
    "crop_urls",
    "memory",
    "graph_manifest",
}
#: stage -> the stages it may import (besides itself and BASE)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": set(),
    "optional": set(),
    "schema": set(),
    "decision": set(),
    "files": set(),
    "graph_manifest": set(),  # which bundled graph was built from which model file (the engine and the page's build)
    "memory": set(),
    "log_text": set(),  # loggable(): outside text escaped before it reaches a log line
    "crop_urls": set(),  # the crop URL rule, shared by the service and the DICOM node (no web imports)
    "data": set(),
    "security": set(),  # roles, API keys, OIDC tokens, UI sessions, the audit trail: base modules, PyJWT, itsdangerous
    "worklist": set(),  # the reading worklist: the base modules only, so the DICOM node needs no web layer
    "monitoring": set(),  # drift monitoring (records, store, figures, report): the base modules only
    "imaging": {"worklist"},  # imaging/study.py builds the worklist's StudyInfo from the DICOM header
    "anatomy": {"imaging"},
    "backends": {"imaging"},
    "explain": {"imaging", "backends", "anatomy"},
    "site": {"backends"},  # a site profile (cxrtriage commission): loaded and applied around the classifier
    "case": {"imaging", "anatomy", "backends", "explain"},  # the record a radiograph carries through the pipeline
    "pipeline": {"imaging", "anatomy", "backends", "explain", "data", "site", "case"},
    "interop": {"imaging"},
    "serve": {
        "imaging",
        "anatomy",
        "backends",
        "explain",
        "pipeline",
        "data",
        "interop",
        "worklist",
        "security",
        "site",
    },
    "pacs": {"imaging", "pipeline", "interop", "worklist", "data"},
    "train": {"imaging", "anatomy", "backends", "explain", "data", "evaluation"},
    "evaluation": {
        "imaging",
        "anatomy",
        "backends",
        "explain",
        "pipeline",
        "data",
        "serve",
        "train",
        "pacs",
        "worklist",
        "security",  # the video's audit card reads and verifies its scratch audit trail
        "site",  # commissioning writes the site profile the run-time code loads
    },
    "hai_def": {"imaging", "anatomy", "backends", "explain", "data", "evaluation", "train"},
    # cxrtriage batch on Ray Data: the pipeline per actor, the output formats as predict writes them, the bench's data
    "archive": {"imaging", "pipeline", "interop", "data"},
    # the static browser page's build: config.json from the run-time stages' constants and the two bundled ONNX
    # graphs it runs (copied, never built: no onnx); serve mounts what it built
    "browser": {"imaging", "anatomy", "backends", "explain", "pipeline"},
    "cli": {
        "imaging",
        "anatomy",
        "backends",
        "explain",
        "pipeline",
        "data",
        "serve",
        "evaluation",
        "train",
        "hai_def",
        "interop",
        "pacs",
        "archive",
        "worklist",
        "security",
        "site",
    },
    "__init__": {"imaging", "pipeline"},
}
# drift monitoring is recorded by the service and the DICOM node, reported by the CLI, and its reference written by
# commissioning (one block, kept apart)
for _user in ("serve", "pacs", "cli", "evaluation"):
    ALLOWED[_user].add("monitoring")
for _user in ("serve", "cli"):
    ALLOWED[_user].add("browser")
RUN_TIME = {
    "imaging",
    "anatomy",
    "backends",
    "explain",
    "case",
    "pipeline",
    "serve",
    "data",
    "interop",
    "pacs",
    "worklist",
    "security",
    "site",
    "monitoring",
    *BASE,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    return ".".join(("cxrtriage",) + parts).removesuffix(".__init__")


def _stage(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports() -> dict[str, list[tuple[str, list[str]]]]:
    """module -> [(imported module, imported names)] for every ``cxrtriage`` import, lazy ones included."""
    found: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for path in PKG.rglob("*.py"):
        mod = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found[mod] += [(a.name, []) for a in node.names if a.name.startswith("cxrtriage")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("cxrtriage"):
                found[mod].append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                found[mod].append(("<relative>", []))
    return found


def _target_modules(module: str, names: list[str], known: set[str]) -> list[str]:
    """``from cxrtriage.x import y``: the submodule ``cxrtriage.x.y`` when it is one, else ``cxrtriage.x``."""
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
    return subs or [module]


def test_no_relative_imports() -> None:
    bad = [m for m, imps in _imports().items() if any(t == "<relative>" for t, _ in imps)]
    assert not bad, f"relative imports (they break when a module moves): {bad}"


def test_no_stage_imports_one_above_it() -> None:
    known = {_module_name(p) for p in PKG.rglob("*.py")}
    bad = []
    for mod, imps in _imports().items():
        stage = _stage(mod)
        allowed = ALLOWED[stage] | BASE | {stage}
        for target, names in imps:
            for t in _target_modules(target, names, known):
                if t == "cxrtriage":
                    continue
                if _stage(t) not in allowed:
                    bad.append(f"{mod} -> {t}")
    assert not bad, "imports that go up the layers (see ARCHITECTURE.md):\n" + "\n".join(sorted(bad))


def test_run_time_code_never_imports_offline_tools() -> None:
    known = {_module_name(p) for p in PKG.rglob("*.py")}
    bad = [
        f"{mod} -> {t}"
        for mod, imps in _imports().items()
        if _stage(mod) in RUN_TIME
        for target, names in imps
        for t in _target_modules(target, names, known)
        if _stage(t) in {"train", "hai_def", "evaluation", "cli"}
    ]
    assert not bad, bad


def test_no_import_cycles_between_modules() -> None:
    known = {_module_name(p) for p in PKG.rglob("*.py")}
    graph = {
        m: {t for target, names in imps for t in _target_modules(target, names, known) if t in known and t != m}
        for m, imps in _imports().items()
    }
    # a package's __init__ is imported with any of its submodules: an edge into a subpackage is not a cycle by itself
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_private_names_are_not_imported_across_modules() -> None:
    bad = [
        f"{mod}: from {target} import {n}"
        for mod, imps in _imports().items()
        for target, names in imps
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, bad


def test_only_the_dependencies_module_reads_the_apps_state() -> None:
    """The service's routes declare what they need (``serve/deps.py``, FastAPI's ``Depends``): ``request.app.state``
    (where ``create_app`` keeps the runtime) is read in one place, so a route's signature says what it uses."""
    readers = sorted(
        {
            str(path.relative_to(PKG))
            for path, tree in _src_trees()
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr == "state"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "app"
        }
    )
    assert readers == ["serve/deps.py"], f"modules that read request.app.state: {readers}"


def test_every_stage_has_a_line_in_architecture_md() -> None:
    text = (PKG.parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    stages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    stages |= {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    missing = [s for s in sorted(stages) if f"`{s}" not in text]
    assert not missing, f"ARCHITECTURE.md does not name: {missing}"


def _src_trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PKG.rglob("*.py"))]


def test_the_pipeline_never_probes_its_stages() -> None:
    """The pipeline uses what ``backends.base`` declares: no getattr / hasattr on a stage (a new backend that lacks
    an attribute must fail the protocol, not silently lose a safety check)."""
    tree = ast.parse((PKG / "pipeline.py").read_text(encoding="utf-8"))
    probes = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
    ]
    assert not probes, f"pipeline.py probes attributes at lines {probes}"


def test_only_decision_sets_needs_review() -> None:
    """Every escalation to a human goes through ``decision`` (one review policy): elsewhere ``needs_review`` is only
    copied from a Decision or a Prediction (``x.needs_review``), never assigned or computed. Run-time code only:
    the offline tools read review flags from files (a rating sheet), they decide nothing."""
    offenders = []
    for path, tree in _src_trees():
        if path.name in ("decision.py", "schema.py") or _stage(_module_name(path)) not in RUN_TIME:
            continue
        for node in ast.walk(tree):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AugAssign)
                else []
            )
            for target in targets:
                for t in ast.walk(target):
                    if (isinstance(t, ast.Name) and t.id == "needs_review") or (
                        isinstance(t, ast.Attribute) and t.attr == "needs_review"
                    ):
                        offenders.append(f"{path.relative_to(PKG)}:{node.lineno}")
            if (
                isinstance(node, ast.keyword)
                and node.arg == "needs_review"
                and not (isinstance(node.value, ast.Attribute) and node.value.attr == "needs_review")
            ):
                offenders.append(f"{path.relative_to(PKG)}:{node.value.lineno}")
    assert not offenders, f"needs_review set outside decision.py: {offenders}"


#: the longest a module may grow before it is split (a god file hides its rules)
MAX_MODULE_LINES = 450


def test_no_module_is_a_god_file() -> None:
    long = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_the_worklist_is_importable_without_the_web_layer() -> None:
    """The DICOM node files results on the worklist: importing it must not pull in FastAPI, Gradio or serve/."""
    import subprocess
    import sys

    code = (
        "import sys, cxrtriage.worklist; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'gradio', 'starlette', 'uvicorn') "
        "or m.startswith('cxrtriage.serve')); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PKG.parents[1])
