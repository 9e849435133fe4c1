"""The quickstart's five inputs and the offline MedGemma lookup it starts from."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrtriage.errors import ModelError


@pytest.mark.data
def test_quickstart_examples_cover_five_input_paths(data_dir: Path) -> None:
    from cxrtriage.data import quickstart_examples

    examples = quickstart_examples(data_dir)
    suffixes = [e.path.suffix.lower() for e in examples]
    assert suffixes == [".png", ".jpeg", ".dcm", ".dcm", ".png"]
    assert [e.prior_report is not None for e in examples] == [False] * 4 + [True]
    assert all(e.path.is_file() for e in examples)


def test_find_local_medgemma_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_medgemma: Path
) -> None:
    from cxrtriage.backends.model_source import find_local_medgemma

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert find_local_medgemma(None) is None  # nothing cached: the notebook falls back to the stand-in
    assert find_local_medgemma(str(tiny_medgemma)) == str(tiny_medgemma)
    with pytest.raises(ModelError, match="does not exist"):
        find_local_medgemma(str(tmp_path / "nope"))


def test_stand_ins_are_recognised_as_such(tiny_medgemma: Path, tiny_siglip: Path, tmp_path: Path) -> None:
    """Outputs of a tiny checkpoint must be labelled as meaningless: the notebooks key their banner on this."""
    from cxrtriage.backends.model_source import checkpoint_shape, is_stand_in

    assert checkpoint_shape(tiny_medgemma, "MedGemma")[0] == "gemma3"
    assert is_stand_in(tiny_medgemma, "MedGemma") and is_stand_in(tiny_siglip, "MedSigLIP")
    assert is_stand_in(tmp_path, "MedGemma")  # no config at all: never presented as the real model
    (tmp_path / "config.json").write_text('{"model_type": "gemma3", "text_config": {"hidden_size": 2560}}')
    assert not is_stand_in(tmp_path, "MedGemma")
