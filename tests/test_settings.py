"""The one configuration (cxrtriage.config.Settings): read once at the entry point, passed down, never written to
the environment; a bad value is refused with its variable named; nothing else reads CXRTRIAGE_* variables."""

from __future__ import annotations

import ast
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxrtriage.config import BUNDLED_WEIGHTS_DIR, ENV_PREFIX, Settings, variables_table
from cxrtriage.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "cxrtriage"


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No CXRTRIAGE_* variable of the user's shell (the conftest's crops and worklist folders are put back)."""
    kept = ("CXRTRIAGE_CROPS_DIR", "CXRTRIAGE_WORKLIST_PATH")
    for name in [k for k in os.environ if k.startswith(ENV_PREFIX) and k not in kept]:
        monkeypatch.delenv(name)
    return monkeypatch


def _a_png(tmp_path: Path) -> str:
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(path)
    return str(path)


# ----------------------------------------------------------------------------- reading


def test_values_given_win_over_the_environment_and_empty_is_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CXRTRIAGE_PORT", "8123")
    clean_env.setenv("CXRTRIAGE_MODEL", "")
    clean_env.setenv("CXRTRIAGE_CLASSIFIER", "bundled")
    clean_env.setenv("CXRTRIAGE_4BIT", "1")
    clean_env.setenv("CXRTRIAGE_DATA_DIR", "~/somewhere")
    s = Settings(max_queue=3)
    assert (s.port, s.max_queue, s.model, s.classifier, s.four_bit) == (8123, 3, None, None, True)
    assert s.data_dir == Path.home() / "somewhere"
    assert Settings(port=1).port == 1
    assert Settings.env_name("four_bit") == "CXRTRIAGE_4BIT"
    assert Settings.env_name("max_pixels") == "CXRTRIAGE_MAX_PIXELS"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("CXRTRIAGE_MAX_PIXELS", "lots"),
        ("CXRTRIAGE_MAX_QUEUE", "-1"),
        ("CXRTRIAGE_4BIT", "maybe"),
        ("CXRTRIAGE_THREADS", "-2"),
        ("CXRTRIAGE_PORT", "70000"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(clean_env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"{variable}='{value}'"):
        Settings()


def test_the_cli_exits_2_naming_a_bad_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxrtriage.cli.main import main

    clean_env.setenv("CXRTRIAGE_MAX_WORKING_PIXELS", "0")
    assert main(["predict", _a_png(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "CXRTRIAGE_MAX_WORKING_PIXELS='0'" in err and "Traceback" not in err


def test_the_environment_of_a_child_process_gives_back_the_same_settings(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What pacs-demo gives the servers it starts: every value, read back equal."""
    s = Settings(
        backend="medsiglip",
        model="some/model",
        port=9,
        four_bit=True,
        worklist_path=tmp_path / "w.sqlite",
        max_upload_mb=1.5,
        crops_dir=tmp_path,
    )
    for name, value in s.environment().items():
        clean_env.setenv(name, value)
    assert Settings() == s


def test_with_model_names_the_model_of_each_backend() -> None:
    s = Settings(model_dir=None, model=None)
    assert s.with_model("bundled", "/b").model_for() == Path("/b")
    assert s.with_model("medgemma", "/g").model_for() == "/g" and s.with_model("medgemma", "/g").model_dir is None
    only_dir = Settings(backend="medsiglip", model_dir="/bundle")
    assert only_dir.model_for() == Path("/bundle")  # an exported MedSigLIP bundle given as the model directory
    assert Settings(backend="medgemma", model_dir="/cnn").model_for() is None  # medgemma wraps that classifier


# ----------------------------------------------------------------------------- one reader, no writes


def _environment_accesses(tree: ast.AST) -> list[tuple[int, str]]:
    """``os.environ[...]``, ``os.environ.get/pop/setdefault(...)``, ``os.getenv(...)`` with a CXRTRIAGE_ name."""
    found = []
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            name = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
            "os.environ.get",
            "os.environ.pop",
            "os.environ.setdefault",
            "os.getenv",
            "os.putenv",
        ):
            name = node.args[0] if node.args else None
        if isinstance(name, ast.Constant) and str(name.value).startswith(ENV_PREFIX):
            found.append((node.lineno, str(name.value)))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "os.environ.update":
            found.append((node.lineno, "os.environ.update"))
    return found


def test_only_the_settings_read_cxrtriage_variables_and_nothing_writes_them() -> None:
    bad = [
        f"{path.relative_to(PKG)}:{line}: {what}"
        for path in sorted(PKG.rglob("*.py"))
        for line, what in _environment_accesses(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not bad, "read CXRTRIAGE_* through cxrtriage.config.Settings, and pass options as settings:\n" + "\n".join(
        bad
    )
    assert "cache_clear" not in (PKG / "cli" / "main.py").read_text()


def test_cli_backend_and_model_dir_reach_the_engine_without_touching_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cxrtriage.cli.main import main
    from cxrtriage.pipeline import Triage

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLED_WEIGHTS_DIR, bundle)
    built: list[Triage] = []
    real = Triage.from_config.__func__  # type: ignore[attr-defined]

    def recording(cls: type[Triage], settings: Settings) -> Triage:
        built.append(real(cls, settings))
        return built[-1]

    clean_env.setattr(Triage, "from_config", classmethod(recording))
    before = dict(os.environ)
    main(
        [
            "predict",
            "--backend",
            "bundled",
            "--model-dir",
            str(bundle),
            _a_png(tmp_path),
            "--out",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert dict(os.environ) == before
    (engine,) = built
    assert engine.settings.backend == "bundled" and engine.backend.model_dir == bundle


def test_cli_model_of_a_hai_def_backend_reaches_its_loader(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--backend medsiglip --model X`: the medsiglip loader gets X and the command's settings; the environment is
    untouched (here the loader is a stand-in that serves the bundled classifier)."""
    from cxrtriage.backends import BACKENDS, Stages
    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.cli.main import main

    seen: list[tuple[Any, Settings]] = []

    def loader(model: Any, settings: Settings) -> Stages:
        seen.append((model, settings))
        return Stages(BundledOnnxBackend(None))

    clean_env.setitem(BACKENDS, "medsiglip", loader)
    clean_env.setenv("CXRTRIAGE_CLASSIFIER", str(tmp_path / "probe.json"))
    before = dict(os.environ)
    main(
        [
            "predict",
            "--backend",
            "medsiglip",
            "--model",
            "some/medsiglip",
            _a_png(tmp_path),
            "--out",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert dict(os.environ) == before
    ((model, settings),) = seen
    assert model == "some/medsiglip" and settings.backend == "medsiglip"
    assert settings.classifier == str(tmp_path / "probe.json")


# ----------------------------------------------------------------------------- passed down


def test_from_config_builds_the_engine_from_the_settings(tmp_path: Path) -> None:
    from cxrtriage.pipeline import Triage

    settings = Settings(crops_dir=tmp_path / "crops", segmenter_dir=tmp_path / "no-segmenter", threads=1)
    engine = Triage.from_config(settings)
    assert engine.settings is settings and engine.crops_dir == tmp_path / "crops" and engine.segmenter is None
    assert engine.backend.model_dir == BUNDLED_WEIGHTS_DIR
    # the keyword arguments still work and win over the settings
    again = Triage(engine.backend, crops_dir=tmp_path / "other", segmenter=None, settings=settings)
    assert again.crops_dir == tmp_path / "other" and again.backend is engine.backend


def test_one_settings_object_reaches_the_service_its_engine_and_the_ui(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cxrtriage.pipeline import Triage
    from cxrtriage.serve.app import create_app
    from cxrtriage.serve.ui import app as webui

    seen: dict[str, Any] = {}

    class Engine:
        backend = None
        info = None

        def footprint_mb(self) -> float:
            return 0.0

    def from_config(cls: type, settings: Settings) -> Engine:
        seen["engine"] = settings
        return Engine()

    monkeypatch.setattr(Triage, "from_config", classmethod(from_config))
    monkeypatch.setattr(webui, "mount_ui", lambda app, get_engine, get_status, settings, **kw: seen.update(ui=settings))
    settings = Settings(crops_dir=tmp_path / "crops", worklist_path=tmp_path / "wl.sqlite", warmup=False, ui=True)
    app = create_app(settings)
    with TestClient(app):  # the lifespan loads the engine in the background
        for _ in range(200):
            if app.state.runtime.state.ready:
                break
            time.sleep(0.02)
    assert app.state.runtime.settings is settings
    assert seen["engine"] is settings and seen["ui"] is settings
    assert app.state.runtime.worklist.path == tmp_path / "wl.sqlite"


def test_the_library_entry_point_reads_the_environment_at_each_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """cxrtriage.predict(): settings from the environment at the call; an engine per distinct settings, cached."""
    from cxrtriage import pipeline

    built: list[Settings] = []

    class Engine:
        def __init__(self, settings: Settings) -> None:
            self.settings = settings

        def predict(self, image: Any, prior: Any = None, *, save_crops: bool = True) -> Settings:
            return self.settings

    monkeypatch.setattr(pipeline.Triage, "from_config", classmethod(lambda cls, s: built.append(s) or Engine(s)))
    pipeline.get_triage.cache_clear()
    try:
        monkeypatch.setenv("CXRTRIAGE_CROPS_DIR", str(tmp_path / "a"))
        first = pipeline.predict("x.png")
        assert pipeline.predict("y.png") is first  # same settings: the same cached engine
        monkeypatch.setenv("CXRTRIAGE_CROPS_DIR", str(tmp_path / "b"))
        second = pipeline.predict("x.png", backend="bundled", model_dir=tmp_path / "m")
    finally:
        pipeline.get_triage.cache_clear()
    assert [s.crops_dir for s in built] == [tmp_path / "a", tmp_path / "b"]
    assert first.crops_dir == tmp_path / "a" and second.model_dir == tmp_path / "m"


# ----------------------------------------------------------------------------- documented in one place


def test_the_readme_configuration_table_is_the_settings_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert variables_table() in readme, (
        "README.md's configuration table must be the table of the docstring of "
        "src/cxrtriage/config.py (cxrtriage.config.variables_table())"
    )


def test_every_setting_is_in_the_table() -> None:
    table = variables_table()
    missing = [Settings.env_name(f) for f in Settings.model_fields if f"`{Settings.env_name(f)}`" not in table]
    assert not missing, missing


def test_paths_inside_the_checkout_are_shown_relative_to_it_and_others_as_given(tmp_path: Path) -> None:
    """What committed logs print (``cxrtriage export --trace``): the bundled weights as ``src/cxrtriage/...``, never
    the folder this checkout happens to sit in; a path outside the checkout as the user gave it."""
    from cxrtriage.config import REPO_ROOT, repo_relative

    assert repo_relative(BUNDLED_WEIGHTS_DIR / "model.json") == "src/cxrtriage/weights/model.json"
    assert str(REPO_ROOT) not in repo_relative(BUNDLED_WEIGHTS_DIR)
    assert repo_relative(tmp_path / "bundle") == str(tmp_path / "bundle")
    assert repo_relative(Path("runs/seed_1/checkpoint.pt")) == "runs/seed_1/checkpoint.pt"
