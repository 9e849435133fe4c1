"""A seed ensemble exported as one graph: the members must fit together, and its CAM head gives its logit.

The full train -> export -> predict loop of an ensemble is in test_training.py (it reuses the tiny training run).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the ensemble needs the [train] extra")

from cxrtriage.train.ensemble import SeedEnsemble, check_preprocessing  # noqa: E402
from cxrtriage.train.model import ArchConfig, CXRNet  # noqa: E402

ARCH = ArchConfig(name="t", stem=(4, 4), widths=(4, 4, 4, 8), dropout=0.0, findings=("lung_opacity",))
PRE = {"input_size": 64, "resize": "squash-bilinear", "channels": 1, "quantize": "uint8", "mean": 0.5, "std": 0.25}


def _member(seed: int, arch: ArchConfig = ARCH) -> CXRNet:
    torch.manual_seed(seed)
    return CXRNet(arch).eval()


def test_the_equivalent_head_turns_the_concatenated_map_into_the_mean_logit():
    """The engine's CAM (head weight . feature map, mean + bias) must equal the ensemble's logit, and that logit the
    mean of the members' logits; the finding logits are averaged too."""
    from cxrtriage.backends.cam import class_activation_map

    members = [_member(s) for s in (1, 2, 3)]
    ens = SeedEnsemble(members).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logit, fmap, finding = ens(x)
        outs = [m(x) for m in members]
    assert fmap.shape[1] == 3 * ARCH.widths[-1]
    assert torch.allclose(logit, torch.stack([o[0] for o in outs]).mean(0), atol=1e-6)
    assert torch.allclose(finding, torch.stack([o[2] for o in outs]).mean(0), atol=1e-6)
    assert not torch.allclose(outs[0][0], outs[1][0])  # different seeds: the mean is not one member's logit
    head = ens.head
    for i in range(2):
        cam = class_activation_map(fmap[i].numpy(), head.weight.detach()[0].numpy())
        assert cam.mean() + float(head.bias.detach()[0]) == pytest.approx(float(logit[i, 0]), abs=1e-5)


def test_members_of_another_architecture_are_refused():
    other = ArchConfig(name="t", stem=(4, 4), widths=(4, 4, 4, 16), dropout=0.0, findings=("lung_opacity",))
    with pytest.raises(ValueError, match="architecture"):
        SeedEnsemble([_member(1), _member(2, other)])


def test_members_of_another_input_size_or_window_are_refused():
    with pytest.raises(ValueError, match="input_size"):
        check_preprocessing([PRE, {**PRE, "input_size": 96}], ["a.pt", "b.pt"])
    with pytest.raises(ValueError, match="window"):
        check_preprocessing([PRE, {**PRE, "window": "percentile-1-99"}], ["a.pt", "b.pt"])


def test_each_member_sees_the_input_it_was_trained_on_when_their_normalisations_differ():
    """Each run measures its input mean/std on its own training sample (seeds differ in the 4th decimal): the
    ensemble's one input is normalised with the first member's, and the graph restores each member's own."""
    from cxrtriage.train.ensemble import combine

    a, b = _member(1), _member(2)
    pres = [PRE, {**PRE, "mean": 0.55, "std": 0.2}]
    ens = combine([a, b], pres, ["a.pt", "b.pt"])
    image = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        logit = ens((image - 0.5) / 0.25)[0]
        own = [a((image - 0.5) / 0.25)[0], b((image - 0.55) / 0.2)[0]]
    assert torch.allclose(logit, torch.stack(own).mean(0), atol=1e-5)


def _save(path, model: CXRNet, pre: dict) -> str:
    torch.save({"arch": model.cfg.to_dict(), "state_dict": model.state_dict(), "preprocess": pre, "best": {}}, path)
    return str(path)


def test_export_of_mismatched_checkpoints_is_one_error_line_and_exit_2(tmp_path, capsys):
    """Refused before any data is read or anything is written."""
    from cxrtriage.cli.main import main

    a = _save(tmp_path / "a.pt", _member(1), PRE)
    b = _save(tmp_path / "b.pt", _member(2), {**PRE, "input_size": 96})
    out = tmp_path / "bundle"
    args = ["export", "--checkpoint", a, "--checkpoint", b, "--out", str(out), "--data-dir", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "input_size" in err and "b.pt" in err
    assert not out.exists()


def test_one_checkpoint_is_exported_bare_and_several_as_an_ensemble(tmp_path):
    from cxrtriage.train.export import load_members

    a = tmp_path / "a" / "checkpoint.pt"
    b = tmp_path / "b" / "checkpoint.pt"
    for path, seed in ((a, 1), (b, 2)):
        path.parent.mkdir()
        _save(path, _member(seed), PRE)
        (path.parent / "train_log.json").write_text(f'{{"command": "train {seed}", "config": {{"seed": {seed}}}}}')
    model, _, logs = load_members([a], None)
    assert type(model) is CXRNet and logs[0]["config"]["seed"] == 1
    model, ckpts, logs = load_members([a, b], None)
    assert isinstance(model, SeedEnsemble) and [log["config"]["seed"] for log in logs] == [1, 2]
    assert len(ckpts) == 2 and ckpts[1]["preprocess"]["input_size"] == 64


def test_shenzhen_is_named_in_the_training_data_only_when_a_member_trained_on_it():
    from cxrtriage.data import SHENZHEN_SPLIT_FILE, split_sha256
    from cxrtriage.train.export_provenance import training_data

    without = {"counts": {"tr_nih": 10, "tr_shz": 0}}
    trained = {"counts": {"tr_nih": 10, "tr_shz": 8}}
    none = training_data([without], shenzhen_validation=False)
    assert not any("Shenzhen" in d for d in none["datasets"]) and "shenzhen_split_sha256" not in none
    calibrated = training_data([without], shenzhen_validation=True)  # calibrated on its validation part only
    assert not any("Shenzhen" in d for d in calibrated["datasets"])
    assert calibrated["shenzhen_split_sha256"] == split_sha256(SHENZHEN_SPLIT_FILE)
    both = training_data([without, trained], shenzhen_validation=True)
    assert any("Shenzhen" in d for d in both["datasets"]) and SHENZHEN_SPLIT_FILE.name in both["split"]
