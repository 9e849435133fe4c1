"""The Makefile's two installs: `make demo` (and demo-cli, smoke) gets only what the service needs, with no torch,
transformers or scikit-learn; `make test` and every other target get every extra, into the same .venv. Checked
statically from the Makefile and pyproject.toml (scripts/measure_install.sh measures the real environments, and the
README quotes what it wrote)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = (REPO / "Makefile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HEAVY = {"torch", "transformers", "scikit-learn", "peft", "accelerate"}
LIGHT_TARGETS = ("demo", "demo-cli", "smoke")


def _var(name: str) -> str:
    match = re.search(rf"(?m)^{name}\s*:?=\s*(.+)$", MAKEFILE)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1).strip()


def _prerequisites(target: str) -> list[str]:
    match = re.search(rf"(?m)^{re.escape(target)}:(.*)$", MAKEFILE)
    assert match, f"no target {target}"
    return match.group(1).split()


def _requirements(extras: list[str]) -> set[str]:
    lines = PYPROJECT["project"]["dependencies"] + [
        r for e in extras for r in PYPROJECT["project"]["optional-dependencies"][e]
    ]
    return {Requirement(line).name.lower() for line in lines}


def test_the_demo_install_has_no_training_or_hai_def_libraries() -> None:
    extras = _var("DEMO_EXTRAS").split(",")
    assert "demo" in extras
    assert not _requirements(extras) & HEAVY, _requirements(extras) & HEAVY


def test_demo_targets_use_the_light_install_and_the_rest_the_full_one() -> None:
    for target in LIGHT_TARGETS:
        assert _prerequisites(target) == ["install-demo"], target
    for target in ("test", "lint", "qa", "evaluate", "notebooks", "train", "pacs-demo"):
        assert _prerequisites(target) == ["install"], target
    every = set(_var("ALL_EXTRAS").split(","))
    assert set(_var("DEMO_EXTRAS").split(",")) <= every
    assert every == set(PYPROJECT["project"]["optional-dependencies"]) - {"edge", "eval"}
    # separate stamps: make demo then make test upgrades the same .venv; the full install also satisfies make demo
    assert _var("DEMO_STAMP") != _var("STAMP")
    assert re.search(r"(?m)^\ttouch \$\(STAMP\) \$\(DEMO_STAMP\)$", MAKEFILE)


def test_the_container_installs_what_make_demo_installs() -> None:
    dockerfile = (REPO / "demo_app" / "docker" / "Dockerfile").read_text()
    assert f'pip install --no-cache-dir ".[{_var("DEMO_EXTRAS")}]"' in dockerfile


def test_make_demo_says_what_it_installs(tmp_path: Path) -> None:
    make = subprocess.run(["which", "make"], capture_output=True, text=True)
    if make.returncode != 0:
        pytest.skip("make not installed")
    dry = subprocess.run(
        ["make", "-n", "demo", f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert dry.returncode == 0, dry.stderr
    assert "only what the service needs" in dry.stdout and "no torch" in dry.stdout
    assert "-e '.[demo,interop]'" in dry.stdout and "hai-def" not in dry.stdout


def test_the_readme_quotes_the_measured_install_sizes_and_times() -> None:
    """The quick start's sizes and times are those scripts/measure_install.sh wrote: rerunning it without updating
    the README (or typing a figure by hand) fails here."""
    envs = json.loads((REPO / "prototype" / "eval" / "install_footprint.json").read_text())["environments"]
    demo, full = envs["demo"], envs["full"]
    assert not demo["importable"]["torch"] and full["importable"]["torch"]
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    for quoted in (
        f"a {demo['venv_mb']:,.0f} MB environment in {demo['install_s']:.0f} s",
        f"the same `.venv`, {full['venv_mb']:,.0f} MB in {full['install_s']:.0f} s",
    ):
        assert quoted in readme, f"README.md should say {quoted!r} (prototype/eval/install_footprint.json)"
