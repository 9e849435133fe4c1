"""A site profile at run time: results name it, its threshold and calibration are the ones applied, a profile
fitted for another model is refused with a sentence naming both, and without one results say the bundled
operating point is not validated at this site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrtriage.config import BUNDLED_WEIGHTS_DIR, Settings
from cxrtriage.errors import ConfigurationError
from cxrtriage.pipeline import Triage
from cxrtriage.schema import UNVALIDATED_SITE_NOTE
from cxrtriage.site import SiteProfile

SAMPLE = BUNDLED_WEIGHTS_DIR.parent / "samples" / "nih" / "00001323_001.png"  # Non-Urgent at the bundled point


def write_profile(folder: Path, sha256: str, *, threshold: float = 0.001, a: float = 1.0, b: float = 8.0) -> Path:
    """A site.json whose calibration pushes every score up (b = 8): a film the bundled point calls Non-Urgent is
    Urgent under it, so the test sees the profile applied, not just named."""
    profile = SiteProfile(
        name="St Elsewhere",
        created="2026-12-07",
        n_cases=64,
        directory=folder,
        base_model={"name": "cxrtriage-bundled-cxrnet", "version": "x", "sha256": sha256},
        a=a,
        b=b,
        threshold=threshold,
        review_band=(threshold, threshold),
        threshold_rule="site rule",
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.json").write_text(json.dumps(profile.to_dict()), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def base_engine(tmp_path_factory: pytest.TempPathFactory) -> Triage:
    return Triage(crops_dir=tmp_path_factory.mktemp("crops"))


def test_without_a_profile_results_say_the_operating_point_is_not_validated_here(base_engine: Triage) -> None:
    p = base_engine.predict(SAMPLE, save_crops=False)
    assert base_engine.site is None
    assert p.site.name is None and p.site.validated is False and p.site.note == UNVALIDATED_SITE_NOTE
    assert p.label == "Non-Urgent"


def test_a_profile_sets_score_threshold_and_band_and_every_result_names_it(base_engine: Triage, tmp_path: Path) -> None:
    folder = write_profile(tmp_path / "site", base_engine.info.sha256)
    engine = Triage(settings=Settings(site_dir=folder), crops_dir=tmp_path / "crops")
    assert engine.site is not None and engine.site.name == "St Elsewhere" and engine.site.directory == folder
    base = base_engine.predict(SAMPLE, save_crops=False)
    p = engine.predict(SAMPLE, save_crops=False)
    assert p.site.name == "St Elsewhere" and p.site.created == "2026-12-07" and p.site.n_cases == 64
    assert p.site.validated is True
    assert p.threshold == pytest.approx(0.001)
    assert p.score > base.score  # the site's calibration, not the bundled one
    assert p.label == "Urgent"
    assert p.model == base.model  # the model is the same; only its operating point is the site's


def test_a_profile_fitted_for_another_model_is_refused_naming_both(base_engine: Triage, tmp_path: Path) -> None:
    folder = write_profile(tmp_path / "other", "0" * 64)
    with pytest.raises(ConfigurationError) as err:
        Triage(settings=Settings(site_dir=folder))
    message = str(err.value)
    assert "fitted for the model cxrtriage-bundled-cxrnet" in message and "000000000000" in message
    assert f"loaded model {base_engine.info.name}" in message and base_engine.info.sha256[:12] in message


def test_a_missing_profile_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cxrtriage commission"):
        Triage(settings=Settings(site_dir=tmp_path / "nowhere"))


def test_the_cli_refuses_another_models_profile_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cxrtriage.cli.main import main

    folder = write_profile(tmp_path / "other", "f" * 64)
    assert main(["predict", "--site", str(folder), str(SAMPLE)]) == 2
    assert "was fitted for the model" in capsys.readouterr().err


def test_the_footer_names_the_profile_or_the_bundled_point() -> None:
    from cxrtriage.serve.ui.render import footer_html

    site = {"name": "St Elsewhere", "created": "2026-12-07", "n_cases": 64, "validated": True, "note": "x"}
    assert "Site profile St Elsewhere (commissioned 2026-12-07 on 64 films)" in footer_html({"site": site})
    assert UNVALIDATED_SITE_NOTE in footer_html({})


def test_serve_refuses_another_models_profile_before_it_starts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cxrtriage.cli.main import main

    folder = write_profile(tmp_path / "other", "e" * 64)
    assert main(["serve", "--site", str(folder), "--port", "0"]) == 2
    assert "not for the loaded model" in capsys.readouterr().err


def test_status_names_the_profile_in_use(base_engine: Triage, tmp_path: Path) -> None:
    from cxrtriage.serve.runtime import ServiceRuntime

    folder = write_profile(tmp_path / "site", base_engine.info.sha256)
    runtime = ServiceRuntime(Settings(site_dir=folder, worklist_path=tmp_path / "w.sqlite"))
    runtime.state.set_ready(Triage(settings=Settings(site_dir=folder), crops_dir=tmp_path / "crops"))
    assert runtime.status()["site"]["name"] == "St Elsewhere"
    runtime.state.set_ready(base_engine)
    assert runtime.status()["site"]["note"] == UNVALIDATED_SITE_NOTE


def test_a_site_head_scores_from_the_embedding_and_logit(base_engine: Triage, tmp_path: Path) -> None:
    """A profile with a site head: its decision value on the (standardised) embedding and logit is what the site's
    calibration turns into the score; a head whose size does not fit the model's embedding is refused."""
    import numpy as np

    from cxrtriage.site.profile import SiteHead

    run = base_engine.run(SAMPLE, save_crops=False)
    assert run.output is not None and run.output.embedding is not None
    d = run.output.embedding.size + 1
    weights = np.zeros(d)
    weights[-1] = -1.0  # the head reverses the logit: a Non-Urgent film scores high
    head = SiteHead(mean=np.zeros(d), scale=np.ones(d), weights=weights, bias=0.0)
    folder = write_profile(tmp_path / "site", base_engine.info.sha256, threshold=0.5, a=1.0, b=0.0)
    site = json.loads((folder / "site.json").read_text())
    (folder / "site.json").write_text(json.dumps({**site, "site_head": head.to_dict()}))
    p = Triage(settings=Settings(site_dir=folder), crops_dir=tmp_path / "crops").predict(SAMPLE, save_crops=False)
    assert p.score == pytest.approx(1 / (1 + np.exp(run.output.logit)), abs=1e-4) and p.label == "Urgent"
    assert "site head" in p.site.note
    small = SiteHead(mean=np.zeros(3), scale=np.ones(3), weights=np.ones(3), bias=0.0)
    with pytest.raises(Exception, match="fitted for another model"):
        small.logit(run.output.embedding, run.output.logit)
