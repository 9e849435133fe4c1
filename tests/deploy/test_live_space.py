"""The Hugging Face Space layout: its header matches what is installed, its requirements cover the package's, and the
assembled folder serves the UI and API with the command the Space runs (``python app.py``)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "demo_app" / "live_space"
IMAGE_SUFFIXES = (".png", ".jpeg", ".jpg", ".dcm")
SAMPLES = json.loads((REPO / "src" / "cxrtriage" / "samples" / "samples.json").read_text(encoding="utf-8"))
sys.path.insert(0, str(SPACE))
from build_space import build_space  # noqa: E402


def _header() -> dict:
    text = (SPACE / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "a Space README starts with its YAML header"
    return yaml.safe_load(text.split("---\n")[1])


def _pins() -> dict[str, str]:
    pins = {}
    for line in (SPACE / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return pins


def test_space_header_names_the_installed_gradio_and_an_existing_app_file():
    h = _header()
    assert h["sdk"] == "gradio" and h["sdk_version"] == importlib.metadata.version("gradio")
    assert (SPACE / h["app_file"]).is_file()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert h["license"] == pyproject["project"]["license"].lower()


def test_requirements_pin_every_runtime_and_demo_dependency_within_the_package_ranges():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for line in pyproject["dependencies"] + pyproject["optional-dependencies"]["demo"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} is missing from demo_app/live_space/requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"


def test_building_into_a_folder_that_holds_files_needs_force(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_space(tmp_path)
    out = build_space(tmp_path, force=True)
    assert not (out / "keep.txt").exists() and (out / "src" / "cxrtriage" / "weights" / "model.onnx").is_file()
    assert not list(out.rglob("__pycache__"))  # no caches
    # no dataset image except the bundled samples (redistributable, documented in SAMPLES.md), which the Space offers
    package = out / "src" / "cxrtriage"
    pictures = {p.relative_to(package).as_posix() for p in out.rglob("*") if p.suffix in IMAGE_SUFFIXES}
    assert pictures == {f"samples/{e['file']}" for e in SAMPLES["samples"]}
    attributes = (out / ".gitattributes").read_text()
    assert all(f"*{suffix} filter=lfs" in attributes for suffix in IMAGE_SUFFIXES)  # the Hub takes binaries via LFS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_assembled_space_serves_the_ui_and_triages_with_the_spaces_own_command(tmp_path, data_dir):
    space = build_space(tmp_path / "space")
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "CXRTRIAGE_DATA_DIR": str(tmp_path / "no-data"),
        "CXRTRIAGE_CROPS_DIR": str(tmp_path / "crops"),
    }
    log = (tmp_path / "space.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "space.log").read_text()
            assert time.monotonic() < deadline, "the Space did not become ready in 120 s"
            time.sleep(1)
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:  # the Space opens "/": it lands on the UI
            assert r.url.endswith("/ui/") or r.url.endswith("/ui")
        image = (data_dir / "nih" / "images" / "00000150_002.png").read_bytes()
        boundary = "cxrtriage-space-test"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="chest.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        req = urllib.request.Request(
            f"{base}/predict", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            pred = json.loads(r.read())
        assert pred["label"] in ("Urgent", "Non-Urgent") and pred["disclaimer"].startswith(
            "For clinical decision support"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert f"from {space / 'src' / 'cxrtriage'}" in (tmp_path / "space.log").read_text()  # the copy, not the checkout
