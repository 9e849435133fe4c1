"""The evaluation files (input_files, gold, prediction_files, reference_boxes), the join by image id, the report's
extra sections (eval_report, eval_report_text), localisation, held_out, eval_metrics_cli (no data needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrtriage.evaluation import eval_metrics_cli, eval_report, eval_report_text, held_out, input_files, reference_boxes
from cxrtriage.evaluation import metrics as M


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _files(
    tmp_path: Path, n: int = 30, seed: int = 0, crops: bool = False
) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Gold in the test_examples.jsonl format, predictions as `cxrtriage predict --out` rows (absolute paths)."""
    rng = np.random.default_rng(seed)
    y = np.array([i % 2 for i in range(n)])
    s = np.round(np.clip(0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.2, n), 0, 1), 4)
    gold = [
        {
            "dataset": "nih",
            "image_id": f"im{i:03d}.png",
            "path": f"nih/images/im{i:03d}.png",
            "label": "Urgent" if y[i] else "Non-Urgent",
            "view": "AP",
            "sex": "F",
            "patient_id": f"nih-{i}",
        }
        for i in range(n)
    ]
    preds = []
    for i in range(n):
        row = {
            "path": f"/data/nih/images/im{i:03d}.png",
            "label": "Urgent" if s[i] >= 0.5 else "Non-Urgent",
            "score": float(s[i]),
            "threshold": 0.5,
            "image": {"width": 512, "height": 512},
        }
        if crops:
            row["crops"] = [{"x": 10 * i, "y": 20, "w": 100, "h": 80, "thumb_path": "/tmp/x.png"}] if i % 3 else []
        preds.append(row)
    return _jsonl(tmp_path / "gold.jsonl", gold), _jsonl(tmp_path / "preds.jsonl", preds), y, s


def test_gold_in_test_examples_format_joins_predictions_by_file_name(tmp_path: Path) -> None:
    g, p, y, s = _files(tmp_path)
    r = eval_report.evaluate_files(p, g, n_boot=50)
    assert r["inputs"]["matched"] == len(y) and r["auc"] == pytest.approx(M.roc_auc(y, s))
    assert r["not_scored"]["n"] == 0 and r["unmatched"] == {
        "gold_without_prediction": [],
        "predictions_without_gold": [],
    }


def test_target_recall_reports_the_threshold_and_its_operating_point(tmp_path: Path) -> None:
    g, p, y, s = _files(tmp_path)
    r = eval_report.evaluate_files(p, g, target_recall=0.9, n_boot=20)
    t = M.threshold_for_sensitivity(y, s, 0.9)
    assert r["target_recall"]["threshold"] == pytest.approx(t)
    assert r["target_recall"]["operating_point"] == M.operating_point(y, s, t).to_dict()
    assert r["target_recall"]["operating_point"]["sensitivity"] >= 0.9
    assert r["target_sensitivity"] == 0.9  # the old key stays
    assert r["specificity_at_target_sensitivity"] == pytest.approx(M.specificity_at_sensitivity(y, s, 0.9))
    assert f"{t:.4f}" in eval_report_text.format_report(r)


def test_target_sensitivity_is_an_alias_of_target_recall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g, p, *_ = _files(tmp_path)
    outs = []
    for flag in ("--target-recall", "--target-sensitivity"):
        out = tmp_path / f"{flag}.json"
        assert (
            eval_metrics_cli.main(
                ["--preds", str(p), "--gold", str(g), flag, "0.8", "--n-boot", "20", "--out", str(out)]
            )
            == 0
        )
        outs.append(json.loads(out.read_text()))
    assert outs[0]["target_recall"] == outs[1]["target_recall"] and outs[0]["target_recall"]["target"] == 0.8


def test_ids_in_only_one_file_are_an_error_listing_them(tmp_path: Path) -> None:
    g, p, *_ = _files(tmp_path, n=30)
    lines = p.read_text().splitlines()
    short = tmp_path / "short.jsonl"
    short.write_text(
        "\n".join(lines[:12]) + "\n" + json.dumps({"path": "x/extra.png", "score": 0.1, "threshold": 0.5}) + "\n"
    )
    with pytest.raises(input_files.InputProblem) as exc:
        eval_report.evaluate_files(short, g, n_boot=10)
    msg = str(exc.value)
    assert "18 gold image id(s) have no row in" in msg and str(short) in msg
    assert "im012.png" in msg and "... and 8 more" in msg  # the first ten, then the count
    assert "1 prediction image id(s) have no row in" in msg and "extra.png" in msg and str(g) in msg
    assert "--allow-unmatched" in msg
    r = eval_report.evaluate_files(short, g, n_boot=10, allow_unmatched=True)
    assert r["inputs"]["gold_without_prediction"] == 18 and r["inputs"]["pred_unmatched"] == 1
    assert r["unmatched"]["predictions_without_gold"] == ["extra.png"]
    assert "unmatched (gold ids without a prediction" in eval_report_text.format_report(r)


def test_rejected_images_are_reported_not_dropped(tmp_path: Path) -> None:
    g, p, y, s = _files(tmp_path, n=20)
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    for i in (1, 3, 4):  # two gold-urgent (odd) and one non-urgent image rejected by the gate
        rows[i] = {
            "path": rows[i]["path"],
            "error": "not a frontal chest radiograph",
            "error_type": "NotAChestXrayError",
        }
    _jsonl(p, rows)
    r = eval_report.evaluate_files(p, g, n_boot=10)
    keep = [i for i in range(20) if i not in (1, 3, 4)]
    assert r["n"] == 17 and r["auc"] == pytest.approx(M.roc_auc(y[keep], s[keep]))
    assert r["inputs"]["pred_errors_in_gold"] == 3 and r["inputs"]["gold_without_prediction"] == 0
    ns = r["not_scored"]
    assert (ns["n"], ns["n_urgent"], ns["n_non_urgent"]) == (3, 2, 1)
    assert ns["urgent_ids"] == ["im001.png", "im003.png"] and ns["error_types"] == {"NotAChestXrayError": 3}
    text = eval_report_text.format_report(r)
    assert "2 of them are gold-Urgent: they went to a human as errors" in text and "im003.png" in text


@pytest.mark.parametrize(
    ("which", "content", "message"),
    [
        ("gold", "", "contains no rows (empty gold file)"),
        ("preds", "\n\n", "contains no rows (empty predictions file)"),
        ("preds", json.dumps({"path": "im000.png", "label": "Urgent"}), ":1: missing field 'score'"),
        ("preds", json.dumps({"path": "im000.png", "score": "high"}), "'score' is not a number"),
        ("preds", json.dumps({"score": 0.3}), "neither 'path' nor 'id'"),
        ("gold", json.dumps({"path": "a/im000.png", "image_id": "im999.png", "y": 1}), "name different images"),
        (
            "preds",
            json.dumps({"path": "im000.png", "score": 0.3, "crops": [{"x": 1, "y": 2}]}),
            "crops[0] has no numeric 'w', 'h'",
        ),
    ],
)
def test_input_errors_name_the_file_line_and_field(tmp_path: Path, which: str, content: str, message: str) -> None:
    g, p, *_ = _files(tmp_path, n=4)
    target = g if which == "gold" else p
    target.write_text(content + "\n" if content else "", encoding="utf-8")
    with pytest.raises(input_files.InputProblem) as exc:
        eval_report.evaluate_files(p, g, n_boot=10)
    assert message in str(exc.value) and str(target) in str(exc.value)


def test_scores_tied_with_the_rounded_threshold_are_flagged(tmp_path: Path) -> None:
    g, p, *_ = _files(tmp_path, n=10)
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    rows[0]["score"] = 0.5
    _jsonl(p, rows)
    r = eval_report.evaluate_files(p, g, n_boot=10)
    assert r["n_scores_equal_threshold"] == 1 and "equal the threshold as written" in eval_report_text.format_report(r)


# --------------------------------------------------------------------------- boxes


@pytest.mark.parametrize(
    "header",
    [
        "file,image_index,finding,x,y,w,h",  # nih/boxes.csv and nih/rsna_boxes.csv
        "Image Index,Finding Label,Bbox [x,y,w,h],,,",  # NIH BBox_List_2017.csv
        "path,x,y,w,h",
    ],
)
def test_boxes_csv_headers(tmp_path: Path, header: str) -> None:
    f = tmp_path / "boxes.csv"
    body = {
        "file,image_index,finding,x,y,w,h": "images/a.png,a.png,Pneumonia,1.5,2,30,40\nimages/a.png,a.png,P,5,5,5,5\n",
        "Image Index,Finding Label,Bbox [x,y,w,h],,,": "a.png,Pneumonia,1.5,2,30,40\na.png,P,5,5,5,5\n",
        "path,x,y,w,h": "/x/a.png,1.5,2,30,40\n/x/a.png,5,5,5,5\n",
    }[header]
    f.write_text(header + "\n" + body, encoding="utf-8")
    assert reference_boxes.load_boxes(f) == {"a.png": [(1.5, 2.0, 30.0, 40.0), (5.0, 5.0, 5.0, 5.0)]}


def test_boxes_jsonl_and_errors(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "b.jsonl", [{"image_id": "a.png", "x": 1, "y": 2, "w": 3, "h": 4}])
    assert reference_boxes.load_boxes(f) == {"a.png": [(1.0, 2.0, 3.0, 4.0)]}
    bad = {
        "missing field 'w'": "image_index,x,y,h\na.png,1,2,3\n",
        "field 'x' is not a number": "image_index,x,y,w,h\na.png,left,2,3,4\n",
        "missing image id field": "finding,x,y,w,h\nP,1,2,3,4\n",
        "positive w, h": "image_index,x,y,w,h\na.png,1,2,0,4\n",
        "is empty": "",
        "contains no boxes": "image_index,x,y,w,h\n",
    }
    for message, text in bad.items():
        f = tmp_path / "bad.csv"
        f.write_text(text, encoding="utf-8")
        with pytest.raises(input_files.InputProblem, match=message):
            reference_boxes.load_boxes(f)


def test_localisation_matches_metrics(tmp_path: Path) -> None:
    g, p, *_ = _files(tmp_path, n=12, crops=True)
    boxes_rows = ["image_index,x,y,w,h"]
    ref = {}
    for i in (1, 2, 3, 6):  # im003/im006 have no crop (i % 3 == 0): IoU 0 and a miss
        ref[f"im{i:03d}.png"] = [(10.0 * i + 20, 30.0, 100.0, 80.0)]
        boxes_rows.append(f"im{i:03d}.png,{10 * i + 20},30,100,80")
    boxes_rows.append("elsewhere.png,1,1,10,10")
    boxes_rows.append("im005.png,500,500,60,60")  # beyond the 512 px image
    ref["im005.png"] = [(500.0, 500.0, 60.0, 60.0)]
    bf = tmp_path / "boxes.csv"
    bf.write_text("\n".join(boxes_rows) + "\n", encoding="utf-8")
    r = eval_report.evaluate_files(p, g, n_boot=10, boxes_path=bf)
    loc = r["localisation"]
    ious, hits = [], []
    for k in sorted(ref):
        i = int(k[2:5])
        pred = [(10.0 * i, 20.0, 100.0, 80.0)] if i % 3 else []
        ious.append(M.best_box_iou(pred, ref[k]))
        hits.append(bool(pred) and M.pointing_hit((pred[0][0] + 50, pred[0][1] + 40), ref[k]))
    assert loc["n"] == 5 and loc["n_without_crop"] == 2
    assert loc["mean_best_iou"] == pytest.approx(np.mean(ious))
    assert loc["iou_ge_0.3"] == pytest.approx(np.mean(np.array(ious) >= 0.3))
    assert loc["pointing_game"] == pytest.approx(np.mean(hits)) and loc["n_pointing_hits"] == sum(hits)
    assert loc["boxes_ids_without_prediction"] == ["elsewhere.png"]
    assert any("another pixel space" in w for w in loc["warnings"])
    text = eval_report_text.format_report(r)
    assert "pointing game" in text and "elsewhere.png" in text


def test_boxes_without_any_prediction_are_fatal(tmp_path: Path) -> None:
    g, p, *_ = _files(tmp_path, n=4)
    bf = tmp_path / "boxes.csv"
    bf.write_text("image_index,x,y,w,h\nother.png,1,1,10,10\n", encoding="utf-8")
    with pytest.raises(input_files.InputProblem, match="none of the 1 image ids"):
        eval_report.evaluate_files(p, g, n_boot=10, boxes_path=bf)


# --------------------------------------------------------------------------- examples -> paths


def test_example_paths_resolve_against_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "d" / "nih").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        (tmp_path / "d" / "nih" / name).write_bytes(b"x")
    ex = _jsonl(
        tmp_path / "ex.jsonl",
        [
            {"path": "nih/a.png", "label": "Urgent"},
            {"path": "nih/b.png", "label": "Urgent"},
            {"path": str(tmp_path / "d" / "nih" / "a.png"), "y": 1},
        ],
    )
    assert held_out.example_paths(ex, tmp_path / "d") == [
        tmp_path / "d" / "nih" / "a.png",
        tmp_path / "d" / "nih" / "b.png",
        tmp_path / "d" / "nih" / "a.png",
    ]
    assert held_out.example_paths(ex, tmp_path / "d", limit=1) == [tmp_path / "d" / "nih" / "a.png"]
    with pytest.raises(input_files.InputProblem, match=r"2 of 3 image\(s\) listed in .* are missing under .*nih/a.png"):
        held_out.example_paths(ex, tmp_path / "elsewhere")
    with pytest.raises(input_files.InputProblem, match="needs a data directory"):
        held_out.example_paths(ex, None)
    bad = _jsonl(tmp_path / "bad.jsonl", [{"image_id": "a.png", "y": 1}])
    with pytest.raises(input_files.InputProblem, match=r"bad.jsonl:1: missing field 'path'"):
        held_out.example_paths(bad, tmp_path / "d")


def test_age_bands_for_the_subgroup_table() -> None:
    from cxrtriage.evaluation.gold import age_band

    assert [age_band(a) for a in (4, "17", 18, "45", 60, 88)] == ["0-17", "0-17", "18-39", "40-59", "60+", "60+"]
    assert [age_band(a) for a in (None, "", "unknown", -1, 412)] == [None] * 5
