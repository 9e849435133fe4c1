"""prototype/eval/eval_metrics.py: joins files correctly and reports exactly cxrtriage.evaluation.metrics' numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cxrtriage.evaluation import metrics as M

SCRIPT = Path(__file__).resolve().parents[2] / "prototype" / "eval" / "eval_metrics.py"


@pytest.fixture(scope="module")
def cli(eval_metrics_script: ModuleType) -> ModuleType:
    return eval_metrics_script


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _dataset(n: int = 40, seed: int = 0):
    """Gold + preds with 2 images per patient, mixed gold label formats, one error and strays."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.25, n), 0, 1), 3)
    views = ["AP" if i % 3 else "PA" for i in range(n)]
    sexes = ["F" if i % 2 else "M" for i in range(n)]
    pids = [f"pt{i // 2}" for i in range(n)]
    gold, preds = [], []
    for i in range(n):
        name = f"img{i:03d}.png"
        fmt = i % 3
        truth = (
            {"urgency": "urgent" if y[i] else "non_urgent"}
            if fmt == 0
            else {"label": "Urgent" if y[i] else "Non-Urgent"}
            if fmt == 1
            else {"y": int(y[i])}
        )
        gold.append(
            {
                "path": name if i % 2 else f"test/{name}",
                **truth,
                "view": views[i],
                "sex": sexes[i],
                "patient_id": pids[i],
            }
        )
        label = "Urgent" if s[i] >= 0.4 else "Non-Urgent"
        preds.append({"path": f"/mnt/cxr/{name}", "score": float(s[i]), "label": label, "threshold": 0.45})
    # an inference error on a gold image, a prediction without gold, a gold row without prediction
    gold.append({"id": "broken.png", "urgency": "urgent"})
    preds.append({"path": "/mnt/cxr/broken.png", "error": "InvalidImageError: truncated file"})
    preds.append({"path": "/mnt/cxr/stray.png", "score": 0.7, "label": "Urgent", "threshold": 0.45})
    gold.append({"path": "never_predicted.png", "y": 1})
    return y, s, views, sexes, pids, gold, preds


def test_report_matches_metrics_module(cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y, s, views, sexes, pids, gold, preds = _dataset()
    g = _write_jsonl(tmp_path / "gold.jsonl", gold)
    p = _write_jsonl(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "m" / "metrics.json"

    # The strays (a gold row never predicted, a prediction without gold) stop the run unless allowed.
    assert cli.main(["--preds", str(p), "--gold", str(g), "--n-boot", "10"]) == 2
    assert "never_predicted.png" in capsys.readouterr().err
    rc = cli.main(
        ["--preds", str(p), "--gold", str(g), "--out", str(out), "--n-boot", "300", "--seed", "4", "--allow-unmatched"]
    )
    assert rc == 0
    r = json.loads(out.read_text())

    assert r["inputs"] == {
        "preds": str(p),
        "gold": str(g),
        "pred_rows": len(preds),
        "pred_errors": 1,
        "pred_errors_in_gold": 1,
        "pred_unmatched": 1,
        "gold_rows": len(gold),
        "gold_without_prediction": 1,
        "matched": len(y),
    }
    assert r["threshold"] == 0.45 and r["threshold_source"] == "predictions"
    assert r["bootstrap_unit"] == "patient_id"
    assert r["n"] == len(y) and r["n_pos"] == int(y.sum())
    assert r["prevalence"] == pytest.approx(y.mean())
    assert r["auc"] == pytest.approx(M.roc_auc(y, s))
    assert r["auc_ci95"] == pytest.approx(list(M.bootstrap_auc_ci(y, s, n_boot=300, seed=4, groups=pids)))
    assert r["operating_point"] == M.operating_point(y, s, 0.45).to_dict()
    assert r["ece"] == pytest.approx(M.expected_calibration_error(y, s))
    assert r["specificity_at_target_sensitivity"] == pytest.approx(M.specificity_at_sensitivity(y, s, 0.95))
    assert r["sensitivity_at_target_specificity"] == pytest.approx(M.sensitivity_at_specificity(y, s, 0.95))
    called = (s >= 0.4).astype(float)  # the labels in the preds file used 0.4 (a review band)
    assert r["label_operating_point"] == M.operating_point(y, called, 0.5).to_dict()
    assert r["subgroups"]["view"] == M.to_jsonable(M.subgroup_metrics(y, s, views, 0.45))
    assert r["subgroups"]["sex"] == M.to_jsonable(M.subgroup_metrics(y, s, sexes, 0.45))

    printed = capsys.readouterr().out
    assert "AUC" in printed and "by view:" in printed and "by sex:" in printed
    assert f"{r['auc']:.3f}" in printed


def test_threshold_flag_overrides_and_no_patient_ids(cli: ModuleType, tmp_path: Path) -> None:
    y, s, *_ = _dataset(n=12, seed=2)
    gold = [{"path": f"i{i}.png", "y": int(v)} for i, v in enumerate(y)]
    preds = [{"path": f"i{i}.png", "score": float(v), "threshold": 0.1 * (i % 2)} for i, v in enumerate(s)]
    g = _write_jsonl(tmp_path / "gold.jsonl", gold)
    p = _write_jsonl(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "m.json"
    assert (
        cli.main(["--preds", str(p), "--gold", str(g), "--threshold", "0.6", "--n-boot", "50", "--out", str(out)]) == 0
    )
    r = json.loads(out.read_text())
    assert r["threshold"] == 0.6 and r["threshold_source"] == "--threshold"
    assert r["bootstrap_unit"] == "image" and r["subgroups"] == {}
    assert "label_operating_point" not in r  # the preds had no labels
    keys = sorted(f"i{i}.png" for i in range(len(y)))
    order = [int(k[1:-4]) for k in keys]
    assert r["auc_ci95"] == pytest.approx(list(M.bootstrap_auc_ci(y[order], s[order], n_boot=50, seed=0)))


def test_inconsistent_thresholds_need_flag(cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = _write_jsonl(tmp_path / "gold.jsonl", [{"path": "a.png", "y": 1}, {"path": "b.png", "y": 0}])
    p = _write_jsonl(
        tmp_path / "preds.jsonl",
        [{"path": "a.png", "score": 0.9, "threshold": 0.3}, {"path": "b.png", "score": 0.1, "threshold": 0.5}],
    )
    assert cli.main(["--preds", str(p), "--gold", str(g), "--n-boot", "10"]) == 2
    assert "different thresholds" in capsys.readouterr().err


def test_no_match_exits_2_with_clear_message(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    g = _write_jsonl(tmp_path / "gold.jsonl", [{"path": "a.png", "urgency": "urgent"}])
    p = _write_jsonl(
        tmp_path / "preds.jsonl",
        [{"path": "/x/b.png", "score": 0.9, "threshold": 0.5}, {"path": "/x/a.png", "error": "unreadable"}],
    )
    assert cli.main(["--preds", str(p), "--gold", str(g)]) == 2
    err = capsys.readouterr().err
    assert "no prediction matches a gold row by file name" in err
    assert "2 prediction rows, 1 of them errors" in err


@pytest.mark.parametrize(
    ("gold_line", "message"),
    [
        ('{"path": "a.png", "urgency": "maybe"}', "unknown truth value"),
        ('{"path": "a.png"}', "no truth field"),
        ('{"urgency": "urgent"}', "neither 'path' nor 'id'"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_gold_rows_exit_2(
    cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], gold_line: str, message: str
) -> None:
    g = tmp_path / "gold.jsonl"
    g.write_text(gold_line + "\n", encoding="utf-8")
    p = _write_jsonl(tmp_path / "preds.jsonl", [{"path": "a.png", "score": 0.9, "threshold": 0.5}])
    assert cli.main(["--preds", str(p), "--gold", str(g)]) == 2
    assert message in capsys.readouterr().err


def test_duplicate_basenames_are_refused(cli: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = _write_jsonl(tmp_path / "gold.jsonl", [{"path": "a.png", "y": 1}])
    p = _write_jsonl(tmp_path / "preds.jsonl", [{"path": "s1/a.png", "score": 0.9}, {"path": "s2/a.png", "score": 0.1}])
    assert cli.main(["--preds", str(p), "--gold", str(g), "--threshold", "0.5"]) == 2
    assert "appears twice" in capsys.readouterr().err


def test_runs_as_a_script(tmp_path: Path) -> None:
    g = _write_jsonl(tmp_path / "gold.jsonl", [{"path": "a.png", "y": 1}, {"path": "b.png", "y": 0}])
    p = _write_jsonl(
        tmp_path / "preds.jsonl",
        [{"path": "a.png", "score": 0.8, "threshold": 0.5}, {"path": "b.png", "score": 0.2, "threshold": 0.5}],
    )
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--preds", str(p), "--gold", str(g), "--n-boot", "20"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "sensitivity" in res.stdout
