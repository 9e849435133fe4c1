"""The Hugging Face Space layout: its header matches what is installed, its requirements cover the package's, and the
assembled folder serves the UI and API with the command the Space runs (``python app.py``), only with the key its
owner gives it as a Space secret (``CXRTRIAGE_SPACE_KEY``, registered as a reader key under ``CXRTRIAGE_SPACE_USER``):
without it the Space does not start, and the key is never in its output."""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from types import ModuleType

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cxrtriage.cli.main import main as cli
from cxrtriage.security.keys import KeyStore, new_key

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "demo_app" / "live_space"
IMAGE_SUFFIXES = (".png", ".jpeg", ".jpg", ".dcm")
SAMPLES = json.loads((REPO / "src" / "cxrtriage" / "samples" / "samples.json").read_text(encoding="utf-8"))
sys.path.insert(0, str(SPACE))
from build_space import build_space  # noqa: E402


def _space_app() -> ModuleType:
    """The Space's app.py as a module (its name, ``app``, is too common to import from sys.path)."""
    spec = importlib.util.spec_from_file_location("cxrtriage_space_app", SPACE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


space_app = _space_app()


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


@pytest.fixture
def space_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The Space's state folder in tmp, and neither secret set."""
    monkeypatch.setenv("CXRTRIAGE_WORKLIST_PATH", str(tmp_path / "state" / "worklist.sqlite"))
    monkeypatch.delenv(space_app.KEY_VAR, raising=False)
    monkeypatch.delenv(space_app.USER_VAR, raising=False)
    return tmp_path / "state"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list:
    """``cxrtriage serve`` up to the server: the settings it would run with (nothing listens)."""
    import cxrtriage.serve.server as server

    runs: list = []
    monkeypatch.setattr(server, "run_server", lambda settings, **_: runs.append(settings) or 0)
    return runs


def test_without_the_key_secret_the_space_does_not_start_and_says_how_to_set_it(
    space_state: Path, served: list, capsys
) -> None:
    assert space_app.main([]) == 2 and not served
    err = capsys.readouterr().err
    assert "CXRTRIAGE_SPACE_KEY is not set" in err and "Settings -> Variables and secrets" in err
    assert "python app.py --new-key" in err
    assert not (space_state / "keys.json").exists()


def test_on_a_space_it_serves_with_authentication_behind_the_https_proxy(
    space_state: Path, served: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FORWARDED_ALLOW_IPS", "CXRTRIAGE_SESSION_COOKIE_SECURE"):  # what app.py sets, undone afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("SPACE_HOST", "someone-cxrtriage.hf.space")
    monkeypatch.setenv(space_app.KEY_VAR, new_key())
    assert space_app.main([]) == 0
    (settings,) = served
    assert settings.host == "0.0.0.0" and "someone-cxrtriage.hf.space" in settings.allowed_host_list  # noqa: S104
    assert settings.session_cookie_secure == "true" and os.environ["FORWARDED_ALLOW_IPS"] == "*"
    assert KeyStore(settings.keys_path).has_active()  # so the service requires a credential


def test_the_key_secret_is_registered_once_as_a_reader_key_and_never_shown(
    space_state: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert space_app.main(["--new-key"]) == 0
    key = capsys.readouterr().out.strip()
    monkeypatch.setenv(space_app.KEY_VAR, key)
    assert space_app.register_space_key(cli) == 0
    assert space_app.register_space_key(cli) == 0  # a restart with persistent storage: nothing changes
    store = KeyStore(space_state / "keys.json")
    assert store.verify(key).name == "judge" and store.verify(key).role.value == "reader"
    assert [k.name for k in store.list()] == ["judge"]
    out, err = capsys.readouterr()
    assert key not in out + err and key.split("_", 2)[2] not in out + err
    assert "registered already as 'judge'" in err


def test_a_changed_secret_revokes_the_old_key_and_asks_for_a_new_name(
    space_state: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = new_key(), new_key()
    monkeypatch.setenv(space_app.KEY_VAR, old)
    assert space_app.register_space_key(cli) == 0
    monkeypatch.setenv(space_app.KEY_VAR, new)
    assert space_app.register_space_key(cli) == 2
    err = capsys.readouterr().err
    assert "was revoked" in err and "set CXRTRIAGE_SPACE_USER to a new name" in err
    store = KeyStore(space_state / "keys.json")
    assert store.verify(old) is None and store.verify(new) is None  # whoever held the old key lost access
    monkeypatch.setenv(space_app.USER_VAR, "jury")
    assert space_app.register_space_key(cli) == 0 and store.verify(new).name == "jury"
    weak = "cxt_0123abcd_" + "ab" * 30
    monkeypatch.setenv(space_app.USER_VAR, "panel")
    monkeypatch.setenv(space_app.KEY_VAR, weak)
    assert space_app.register_space_key(cli) == 2
    out, err = capsys.readouterr()
    assert "not a strong cxrtriage key" in err and "not started" in err and weak not in out + err
    assert old not in out + err and new not in out + err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, body: bytes | None = None, **headers: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _multipart(image: bytes) -> tuple[bytes, str]:
    boundary = "cxrtriage-space-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="chest.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    return head.encode() + image + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_the_assembled_space_serves_the_ui_and_triages_only_with_its_key(tmp_path: Path) -> None:
    space = build_space(tmp_path / "space")
    port, key = _free_port(), new_key()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "CXRTRIAGE_DATA_DIR": str(tmp_path / "no-data"),
        "CXRTRIAGE_CROPS_DIR": str(tmp_path / "crops"),
        "CXRTRIAGE_WORKLIST_PATH": str(tmp_path / "state" / "worklist.sqlite"),
        space_app.KEY_VAR: key,
        space_app.USER_VAR: "judge",
    }
    log = (tmp_path / "space.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _request(port, "GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "space.log").read_text()
            assert time.monotonic() < deadline, "the Space did not become ready in 120 s"
            time.sleep(1)
        # a visitor without a credential: 401 for the API, the sign-in page for a browser
        assert _request(port, "GET", "/worklist")[0] == 401
        image = (REPO / "src" / "cxrtriage" / "samples" / SAMPLES["samples"][0]["file"]).read_bytes()
        body, content_type = _multipart(image)
        assert _request(port, "POST", "/predict", body, **{"Content-Type": content_type})[0] == 401
        status, headers, _ = _request(port, "GET", "/ui/", Accept="text/html")
        assert status == 303 and headers["location"].startswith("/login")
        # the key the owner gave, as an API key and at the sign-in page
        status, _, answer = _request(port, "POST", "/predict", body, **{"Content-Type": content_type, "X-API-Key": key})
        assert status == 200, answer
        pred = json.loads(answer)
        assert pred["label"] in ("Urgent", "Non-Urgent") and pred["disclaimer"].startswith("For clinical decision")
        assert _request(port, "GET", "/worklist", Authorization=f"Bearer {key}")[0] == 200
        form = urllib.parse.urlencode({"name": "judge", "key": "cxt_00000000_wrong", "next": "/ui/"}).encode()
        assert _request(port, "POST", "/login", form, **{"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
        form = urllib.parse.urlencode({"name": "judge", "key": key, "next": "/ui/"}).encode()
        status, headers, _ = _request(
            port, "POST", "/login", form, **{"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert status == 303 and headers["location"] == "/ui/"
        cookie = headers["set-cookie"].split(";")[0]
        assert _request(port, "GET", "/ui/", Accept="text/html", Cookie=cookie)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "space.log").read_text()
    assert f"from {space / 'src' / 'cxrtriage'}" in output  # the copy, not the checkout
    assert "Registered the API key in CXRTRIAGE_SPACE_KEY as 'judge' (role reader" in output
    assert "WITHOUT authentication" not in output and "runs OPEN" not in output
    assert key not in output and key.split("_", 2)[2] not in output  # nor in the audit trail
    assert key.split("_", 2)[2] not in (tmp_path / "state" / "audit.jsonl").read_text()
