"""The held-out test list (cxrtriage test-set, prototype/eval/test_examples.jsonl) and the specification's command
chain:

cxrtriage test-set --dataset nih --out test_labels.jsonl
cxrtriage predict --examples test_labels.jsonl --out demo_outputs.jsonl
python prototype/eval/eval_metrics.py --preds demo_outputs.jsonl --gold test_labels.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cxrtriage.cli import main as cli
from cxrtriage.evaluation import held_out, input_files
from cxrtriage.evaluation import metrics as M
from cxrtriage.evaluation.gold import load_gold

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "prototype" / "eval" / "test_examples.jsonl"
METRICS_JSON = ROOT / "prototype" / "eval" / "metrics.json"


@pytest.fixture(scope="module")
def eval_metrics(eval_metrics_script: ModuleType) -> ModuleType:
    return eval_metrics_script


def _fake_data_dir(root: Path) -> Path:
    """Label tables only (no images), with ids taken from the committed split: 2 NIH test, 1 NIH train, 1 pediatric
    test."""
    (root / "nih").mkdir(parents=True)
    (root / "kermany").mkdir()
    (root / "nih" / "labels.csv").write_text(
        "file,image_index,patient_id,age,sex,view,nih_labels,urgency\n"
        "images/00000211_013.png,00000211_013.png,211,59,F,AP,Edema,urgent\n"
        "images/00000150_002.png,00000150_002.png,150,55,F,AP,Pneumonia,urgent\n"
        "images/00000165_001.png,00000165_001.png,165,76,M,PA,No Finding,non_urgent\n",
        encoding="utf-8",
    )
    (root / "kermany" / "labels.csv").write_text(
        "file,label,subtype,patient_key,urgency\n"
        "images/PNEUMONIA/person1017_bacteria_2948.jpeg,PNEUMONIA,bacteria,person1017,urgent\n",
        encoding="utf-8",
    )
    return root


def test_held_out_examples_lists_only_test_images_in_a_fixed_order(tmp_path: Path) -> None:
    data = _fake_data_dir(tmp_path / "data")
    rows = held_out.held_out_examples(data)
    assert rows == [
        {
            "dataset": "nih",
            "image_id": "00000165_001.png",
            "path": "nih/images/00000165_001.png",
            "label": "Non-Urgent",
            "view": "PA",
            "sex": "M",
            "age": 76,
            "patient_id": "nih-165",
        },
        {
            "dataset": "nih",
            "image_id": "00000211_013.png",
            "path": "nih/images/00000211_013.png",
            "label": "Urgent",
            "view": "AP",
            "sex": "F",
            "age": 59,
            "patient_id": "nih-211",
        },
        {
            "dataset": "kermany",
            "image_id": "person1017_bacteria_2948.jpeg",
            "path": "kermany/images/PNEUMONIA/person1017_bacteria_2948.jpeg",
            "label": "Urgent",
            "patient_id": "kermany-person1017",
        },
    ]  # 00000150_002.png is a training image
    assert [r["dataset"] for r in held_out.held_out_examples(data, "kermany")] == ["kermany"]
    with pytest.raises(input_files.InputProblem, match="unknown dataset"):
        held_out.held_out_examples(data, "mimic")


def test_test_set_cli_writes_a_valid_gold_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _fake_data_dir(tmp_path / "data")
    out = tmp_path / "test_labels.jsonl"
    assert cli.main(["test-set", "--dataset", "nih", "--data-dir", str(data), "--out", str(out)]) == 0
    assert "wrote 2 test images (1 Urgent)" in capsys.readouterr().err
    gold = load_gold(out)
    assert {k: v["y"] for k, v in gold.items()} == {"00000165_001.png": 0, "00000211_013.png": 1}


def test_predict_examples_reports_missing_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _fake_data_dir(tmp_path / "data")  # label tables but no images
    gold = tmp_path / "gold.jsonl"
    input_files.write_jsonl(held_out.held_out_examples(data), gold)
    rc = cli.main(["predict", "--examples", str(gold), "--data-dir", str(data), "--out", str(tmp_path / "p.jsonl")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "3 of 3 image(s) listed in" in err and "nih/images/00000165_001.png" in err and "CXRTRIAGE_DATA_DIR" in err
    assert not (tmp_path / "p.jsonl").exists()
    assert cli.main(["predict"]) == 2
    assert "give image paths or --examples" in capsys.readouterr().err


# --------------------------------------------------------------------------- on the real data


@pytest.mark.data
def test_committed_test_examples_are_what_the_command_writes(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    assert cli.main(["test-set", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert out.read_bytes() == COMMITTED.read_bytes(), (
        "regenerate: cxrtriage test-set --out prototype/eval/test_examples.jsonl"
    )


def test_committed_test_examples_are_a_gold_file_without_images() -> None:
    rows = [json.loads(line) for line in COMMITTED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(load_gold(COMMITTED))  # every row joins, no duplicate ids
    assert {r["dataset"] for r in rows} == {"nih", "kermany"}
    for r in rows:
        assert {"dataset", "image_id", "path", "label"} <= set(r) and r["label"] in ("Urgent", "Non-Urgent")
        assert r["path"].startswith(f"{r['dataset']}/") and r["path"].endswith("/" + r["image_id"])
        assert set(r) <= {"dataset", "image_id", "path", "label", "view", "sex", "age", "patient_id"}
    # the committed split's test part, nothing else
    split = (ROOT / "src" / "cxrtriage" / "splits" / "split.csv").read_text().splitlines()
    assert len(rows) == sum(line.endswith(",test") for line in split)


def _subset(src: Path, dst: Path, n_each: int) -> Path:
    """The first ``n_each`` Urgent and ``n_each`` Non-Urgent rows: small, but both classes for an AUC."""
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    pick = [r for r in rows if r["label"] == "Urgent"][:n_each] + [r for r in rows if r["label"] == "Non-Urgent"][
        :n_each
    ]
    input_files.write_jsonl(pick, dst)
    return dst


@pytest.mark.data
def test_spec_command_chain_on_a_few_nih_test_images(
    data_dir: Path, tmp_path: Path, eval_metrics: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "test_labels.jsonl"
    assert cli.main(["test-set", "--dataset", "nih", "--data-dir", str(data_dir), "--out", str(labels)]) == 0
    small = _subset(labels, tmp_path / "small_labels.jsonl", 4)
    outputs = tmp_path / "demo_outputs.jsonl"
    assert cli.main(["predict", "--examples", str(small), "--data-dir", str(data_dir), "--out", str(outputs)]) == 0
    preds = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert len(preds) == 8 and all(
        Path(p["path"]).name == json.loads(g)["image_id"] for p, g in zip(preds, small.read_text().splitlines())
    )
    capsys.readouterr()

    # the full NIH gold against 8 predictions: the ids without a prediction are listed
    assert eval_metrics.main(["--preds", str(outputs), "--gold", str(labels), "--n-boot", "20"]) == 2
    assert "97 gold image id(s) have no row in" in capsys.readouterr().err

    report = tmp_path / "report.json"
    assert (
        eval_metrics.main(["--preds", str(outputs), "--gold", str(small), "--n-boot", "50", "--out", str(report)]) == 0
    )
    r = json.loads(report.read_text())
    y = np.array([json.loads(line)["label"] == "Urgent" for line in small.read_text().splitlines()], dtype=int)
    s = np.array([p["score"] for p in preds])
    order = np.argsort([Path(p["path"]).name for p in preds])  # the report's rows are sorted by image id
    assert r["n"] == 8 and r["auc"] == pytest.approx(M.roc_auc(y[order], s[order]))
    assert r["threshold"] == preds[0]["threshold"] and r["bootstrap_unit"] == "patient_id"
    assert f"{r['auc']:.3f}" in capsys.readouterr().out


@pytest.mark.data
@pytest.mark.slow
def test_spec_command_chain_on_the_whole_nih_test_set_agrees_with_metrics_json(
    data_dir: Path, tmp_path: Path, eval_metrics: ModuleType
) -> None:
    labels = tmp_path / "test_labels.jsonl"
    outputs = tmp_path / "demo_outputs.jsonl"
    assert cli.main(["test-set", "--dataset", "nih", "--data-dir", str(data_dir), "--out", str(labels)]) == 0
    assert cli.main(["predict", "--examples", str(labels), "--data-dir", str(data_dir), "--out", str(outputs)]) == 0
    report = tmp_path / "report.json"
    assert eval_metrics.main(["--preds", str(outputs), "--gold", str(labels), "--out", str(report)]) == 0
    r = json.loads(report.read_text())
    ref = json.loads(METRICS_JSON.read_text())["nih_test"]
    assert r["n"] == ref["n"] and r["n_pos"] == ref["n_pos"]
    assert r["auc"] == pytest.approx(ref["auc"], abs=1e-3)  # scores are written with 4 decimals
    # the pipeline decides on the reported 4-decimal values, so the operating point is exactly the same
    assert {k: r["operating_point"][k] for k in ("tp", "fp", "tn", "fn")} == {
        k: ref["operating_point"][k] for k in ("tp", "fp", "tn", "fn")
    }


def test_readme_documents_the_chain_and_quotes_metrics_json() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in (
        "cxrtriage test-set --dataset nih --out test_labels.jsonl",
        "cxrtriage predict --examples test_labels.jsonl --out demo_outputs.jsonl",
        "python prototype/eval/eval_metrics.py --preds demo_outputs.jsonl --gold test_labels.jsonl",
    ):
        assert command in readme
    ref = json.loads(METRICS_JSON.read_text())["nih_test"]
    lo, hi = ref["auc_ci95"]
    assert f"AUC {ref['auc']:.3f} [{lo:.3f}, {hi:.3f}]" in readme
