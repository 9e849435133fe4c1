"""The write-up's ROC and calibration figures: every test set of the results table is drawn (Shenzhen included, from
the files ``cxrtriage evaluate-operating-points`` writes), each with its operating point, and a curve is never drawn
from per-image scores that give another n or AUC than the report the table quotes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.evaluation import metrics, writeup, writeup_numbers
from cxrtriage.evaluation.operating_points import per_image_files

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

RNG = np.random.default_rng(3)


def _set(n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([1, 0] * (n // 2))
    return y, np.clip(0.35 * y + RNG.uniform(0, 0.65, size=n), 0, 1)


def _write(root: Path, stem: str, y: np.ndarray, s: np.ndarray) -> None:
    (root / stem).parent.mkdir(parents=True, exist_ok=True)
    with open(root / f"{stem}_preds.jsonl", "w") as fp, open(root / f"{stem}_gold.jsonl", "w") as fg:
        for i, (yi, si) in enumerate(zip(y, s)):
            fp.write(json.dumps({"path": f"{stem}/{i}.png", "score": float(si), "threshold": 0.3}) + "\n")
            fg.write(json.dumps({"path": f"{stem}/{i}.png", "urgency": "urgent" if yi else "non_urgent"}) + "\n")


def stand_in(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-image files of the three sets and the two reports, each block holding the files' own n and AUC."""
    sets = {name: _set(n) for (name, *_), n in zip(writeup.CURVE_SETS, (40, 60, 20))}
    reports: dict[str, dict] = {}
    for name, stem, report, key in writeup.CURVE_SETS:
        y, s = sets[name]
        _write(root, stem, y, s)
        block = {"n": len(y), "auc": metrics.roc_auc(y, s)}
        parent, _, leaf = key.rpartition("/")
        target = reports.setdefault(report, {})
        for part in filter(None, parent.split("/")):
            target = target.setdefault(part, {})
        target[leaf] = block
    for report, data in reports.items():
        (root / report).parent.mkdir(parents=True, exist_ok=True)
        (root / report).write_text(json.dumps(data))
    return sets


def test_the_curves_show_every_test_set_of_the_table_shenzhen_from_the_operating_points_run(tmp_path):
    sets = stand_in(tmp_path)
    assert list(writeup.CURVE_SETS[2][:1]) == ["Shenzhen adults"]
    preds, gold = per_image_files(Path(writeup_numbers.OP), "shenzhen")  # where evaluate-operating-points writes
    assert f"{writeup.CURVE_SETS[2][1]}_preds.jsonl" == str(preds) and str(gold).endswith("shenzhen_test_gold.jsonl")
    curves = writeup.curve_sets(tmp_path)
    assert list(curves) == ["NIH adults", "pediatric", "Shenzhen adults"]
    for name, (y, s) in curves.items():
        assert sorted(zip(y, s)) == sorted(zip(*sets[name]))
    roc, cal = writeup.curve_figures(tmp_path, tmp_path, threshold=0.3)
    assert roc.is_file() and cal.is_file()


def test_per_image_scores_of_another_run_are_refused(tmp_path):
    stand_in(tmp_path)
    op = tmp_path / writeup_numbers.OP
    report = json.loads(op.read_text())
    report["sets"]["shenzhen"]["auc"] += 0.01  # the table quotes a newer run than the per-image files hold
    op.write_text(json.dumps(report))
    with pytest.raises(RuntimeError, match="evaluate-operating-points"):
        writeup.curve_sets(tmp_path)
    (tmp_path / "runs/eval/operating_points/shenzhen_test_preds.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="evaluate-operating-points"):
        writeup.curve_sets(tmp_path)


def test_another_bundle_s_report_keeps_its_per_image_files_apart():
    shipped = per_image_files(Path("prototype/eval/operating_points.json"), "shenzhen")
    gen2 = per_image_files(Path("prototype/eval/operating_points_gen2.json"), "shenzhen")
    assert shipped[0].parent != gen2[0].parent and shipped[0].parent == Path("runs/eval/operating_points")
