"""Clinician rating loop: export -> (a rater fills it) -> read back with validation -> summary.

Every "filled" sheet in this file is SYNTHETIC TEST DATA written by the test itself to exercise the reader; none
is shipped, and none is a clinician's rating.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cxrtriage.cli import main as cli
from cxrtriage.evaluation import clinician_rating as cr

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "prototype" / "eval" / "clinician_ratings_template.csv"
INSTRUCTIONS = ROOT / "prototype" / "eval" / "CLINICIAN_RATING.md"


def _pred(i: int, label: str, crops: int = 1, dataset: str = "nih") -> dict:
    return {
        "path": f"/data/{dataset}/images/im{i:03d}.png",
        "label": label,
        "score": 0.8 if label == "Urgent" else 0.1,
        "threshold": 0.2155,
        "needs_review": i % 4 == 0,
        "explanation": f"{label}: synthetic explanation {i}",
        "crops": [
            {"x": 10, "y": 20, "w": 30, "h": 40, "thumb_path": f"/tmp/c/{i}-{k}.png", "region": "right lower zone"}
            for k in range(crops)
        ],
        "provenance": [
            {"source": "prior_report", "snippet": "Small effusion."},
            {"source": "training_case:nih/x.png", "snippet": "similar training image"},
        ],
        "model": {"name": "cxrtriage-bundled-cxrnet", "version": "0.1.0", "sha256": "d08300e0bd4d9cc190d1"},
    }


def _preds() -> list[dict]:
    return [_pred(i, "Urgent" if i % 2 else "Non-Urgent", crops=0 if i == 2 else 1) for i in range(1, 9)]


def _sheet(tmp_path: Path, name: str = "sheet.csv") -> Path:
    return cr.export_rating_sheet(_preds(), tmp_path / name, data_dir=Path("/data"))


def _fill(
    sheet: Path, out: Path, ratings: dict[str, dict[str, str]], delimiter: str = ",", encoding: str = "utf-8"
) -> Path:
    """SYNTHETIC TEST DATA: put the given values into the rating columns of an exported sheet."""
    with sheet.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row.update(ratings.get(row["case_id"], {}))
    with out.open("w", newline="", encoding=encoding) as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return out


def _rate(role: str, agrees: str, quality: str = "", crops: str = "", comment: str = "") -> dict[str, str]:
    return {
        "rater_role": role,
        "agrees_with_label": agrees,
        "explanation_quality_1to5": quality,
        "crops_useful": crops,
        "comment": comment,
    }


def test_export_writes_the_model_output_and_empty_rating_columns(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path)
    with sheet.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == [*cr.CASE_COLUMNS, *cr.RATING_COLUMNS]
    assert [r["case_id"] for r in rows] == [f"case-{i:03d}" for i in range(1, 9)]
    first = rows[0]
    assert first["image_id"] == "im001.png" and first["image_path"] == "nih/images/im001.png"
    assert (first["label"], first["score"], first["threshold"], first["needs_review"]) == (
        "Urgent",
        "0.8000",
        "0.2155",
        "no",
    )
    assert first["crop_boxes"] == "x=10 y=20 w=30 h=40 (right lower zone)"
    assert first["crop_thumb_paths"] == "/tmp/c/1-0.png"
    assert first["provenance"] == "prior_report: Small effusion. | training_case:nih/x.png: similar training image"
    assert first["model"] == "cxrtriage-bundled-cxrnet 0.1.0 sha256:d08300e0bd4d"
    assert all(r[c] == "" for r in rows for c in cr.RATING_COLUMNS)
    assert rows[1]["crop_boxes"] == "" and rows[1]["crop_thumb_paths"] == ""
    no_thumbs = cr.export_rating_sheet(_preds(), tmp_path / "nt.csv", thumb_paths=False)
    assert "/tmp/c/" not in no_thumbs.read_text()


def test_export_from_prediction_objects_needs_image_ids(tmp_path: Path) -> None:
    from cxrtriage.schema import Prediction

    row = _pred(1, "Urgent")
    pred = Prediction(**{k: v for k, v in row.items() if k != "path"}, review_band=(0.18, 0.3))
    with pytest.raises(ValueError, match="pass image_ids="):
        cr.export_rating_sheet([pred], tmp_path / "x.csv")
    out = cr.export_rating_sheet([pred], tmp_path / "x.csv", image_ids=["a.png"], case_ids=["A"])
    assert next(csv.DictReader(out.open()))["image_id"] == "a.png"
    with pytest.raises(ValueError, match="error row"):
        cr.export_rating_sheet(
            [{"path": "b.png", "error": "bad", "error_type": "InvalidImageError"}], tmp_path / "y.csv"
        )


def test_pick_cases_mixes_labels_and_datasets_deterministically() -> None:
    preds = [_pred(i, "Urgent" if i < 12 else "Non-Urgent", dataset="nih" if i % 2 else "kermany") for i in range(16)]
    preds.append({"path": "/data/nih/images/rejected.png", "error": "not a chest x-ray"})
    picked = cr.pick_cases(preds, 8, seed=3)
    assert picked == cr.pick_cases(preds, 8, seed=3)
    labels = [p["label"] for p in picked]
    assert labels.count("Urgent") == 4 and labels.count("Non-Urgent") == 4
    assert sum("/kermany/" in p["path"] for p in picked) == 4
    with pytest.raises(ValueError, match="only 16 scored"):
        cr.pick_cases(preds, 17)


def test_unfilled_sheet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(cr.RatingSheetError, match="no ratings filled in"):
        cr.read_ratings(_sheet(tmp_path))


def test_summary_of_a_synthetic_filled_sheet(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path)
    filled = _fill(
        sheet,
        tmp_path / "filled.csv",
        {  # SYNTHETIC TEST DATA
            "case-001": _rate("radiologist", "yes", "4", "yes"),
            "case-002": _rate("Radiologist", "YES", "5", "no_crops"),  # case-002 has no crop; case-insensitive
            "case-003": _rate("radiologist", "no", "2", "no", comment="synthetic disagreement"),
            "case-004": _rate("emergency_physician", "yes", "3.0", ""),
            "case-005": _rate("emergency_physician", "yes", "", "yes"),
        },
    )
    ratings = cr.read_ratings(filled, reference=sheet)
    assert len(ratings) == 8 and sum(r.rated for r in ratings) == 5
    s = cr.summarise_ratings(ratings)
    assert (s["n_rows"], s["n_rated"], s["n_unrated"], s["n_sheets"]) == (8, 5, 3, 1)
    assert s["agreement"]["k"] == 4 and s["agreement"]["rate"] == pytest.approx(0.8)
    assert s["agreement"]["ci95_wilson"] == pytest.approx(list(cr.wilson_interval(4, 5)))
    q = s["explanation_quality"]
    assert (q["n"], q["mean"], q["median"]) == (4, pytest.approx(3.5), 3.5)
    assert q["counts"] == {"1": 0, "2": 1, "3": 1, "4": 1, "5": 1}
    c = s["crops_useful"]
    assert (c["n"], c["k"], c["n_no_crops"], c["n_unanswered"]) == (3, 2, 1, 1)
    assert s["by_rater_role"]["radiologist"]["agreement"]["k"] == 2
    assert s["by_rater_role"]["emergency_physician"]["agreement"]["rate"] == 1.0
    # case-001/003/005 are Urgent, case-002/004 Non-Urgent
    assert s["by_model_label"]["Urgent"]["agreement"]["n"] == 3 and s["by_model_label"]["Urgent"]["agreement"]["k"] == 2
    assert s["by_model_label"]["Non-Urgent"]["agreement"]["rate"] == 1.0
    assert s["by_needs_review"]["needs_review"]["n_rated"] == 1  # case-004
    assert s["disagreements"] == [
        {
            "case_id": "case-003",
            "image_id": "im003.png",
            "label": "Urgent",
            "rater_role": "radiologist",
            "comment": "synthetic disagreement",
        }
    ]
    text = cr.format_summary(s)
    assert "4/5 = 80%" in text and "case-003" in text and "by rater role" in text


def test_wilson_interval_known_values() -> None:
    assert cr.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    lo, hi = cr.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    assert cr.wilson_interval(0, 0) == (None, None)


@pytest.mark.parametrize(
    ("ratings", "messages"),
    [
        ({"case-001": _rate("radiologist", "maybe")}, [":2:agrees_with_label: 'maybe' is not allowed; use yes or no"]),
        ({"case-001": _rate("surgeon", "yes")}, [":2:rater_role: 'surgeon' is not allowed; use one of radiologist"]),
        ({"case-001": _rate("radiologist", "yes", "6")}, [":2:explanation_quality_1to5: '6' is not allowed"]),
        ({"case-001": _rate("radiologist", "yes", "3.5")}, [":2:explanation_quality_1to5: '3.5' is not allowed"]),
        ({"case-001": _rate("radiologist", "yes", "", "sometimes")}, [":2:crops_useful: 'sometimes' is not allowed"]),
        ({"case-002": _rate("radiologist", "yes", "", "yes")}, [":3:crops_useful: 'yes' but this case has no crop"]),
        (
            {"case-001": _rate("radiologist", "yes", "", "no_crops")},
            [":2:crops_useful: 'no_crops' but this case has 1 crop"],
        ),
        (
            {"case-001": _rate("", "", "4")},
            [":2:agrees_with_label: empty in a rated row", ":2:rater_role: empty in a rated row"],
        ),
        ({"case-001": {"label": "Non-Urgent", **_rate("radiologist", "yes")}}, [":2:label: model label changed"]),
        (
            {"case-001": {"case_id": "case-999", **_rate("radiologist", "yes")}},
            [":2:case_id: unknown case id 'case-999'"],
        ),
        (
            {"case-001": {"case_id": "case-002", **_rate("radiologist", "yes")}},
            [":3:case_id: case id 'case-002' appears twice (also row 2)"],
        ),
    ],
)
def test_invalid_sheets_give_file_row_column_errors(tmp_path: Path, ratings: dict, messages: list[str]) -> None:
    sheet = _sheet(tmp_path)
    filled = _fill(sheet, tmp_path / "filled.csv", ratings)  # SYNTHETIC TEST DATA
    with pytest.raises(cr.RatingSheetError) as exc:
        cr.read_ratings(filled, reference=sheet)
    for message in messages:
        assert f"{filled}{message}" in str(exc.value)


def test_missing_columns_and_spreadsheet_dialects(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path)
    bad = tmp_path / "cut.csv"
    bad.write_text("case_id,label\ncase-001,Urgent\n", encoding="utf-8")
    with pytest.raises(cr.RatingSheetError, match="missing column.*agrees_with_label"):
        cr.read_ratings(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(cr.RatingSheetError, match="is empty"):
        cr.read_ratings(empty)
    # a sheet re-saved by a spreadsheet: ';'-separated, with a byte-order mark
    resaved = _fill(
        sheet, tmp_path / "resaved.csv", {"case-001": _rate("nurse", "no")}, delimiter=";", encoding="utf-8-sig"
    )
    [rated] = [r for r in cr.read_ratings(resaved) if r.rated]
    assert (rated.case_id, rated.rater_role, rated.agrees_with_label) == ("case-001", "nurse", False)


def test_ratings_cli_export_and_summarise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "preds.jsonl"
    rows = _preds() + [{"path": "/data/nih/images/bad.png", "error": "truncated", "error_type": "InvalidImageError"}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    sheet = tmp_path / "sheet.csv"
    assert (
        cli.main(["ratings", "export", "--preds", str(preds), "--out", str(sheet), "--n", "4", "--no-thumb-paths"]) == 0
    )
    assert "1 error rows skipped" in capsys.readouterr().err
    assert cli.main(["ratings", "summarise", str(sheet)]) == 2
    assert "no ratings filled in" in capsys.readouterr().err
    filled = _fill(sheet, tmp_path / "filled.csv", {"case-001": _rate("radiologist", "yes", "4")})  # SYNTHETIC
    out = tmp_path / "summary.json"
    assert cli.main(["ratings", "summarize", str(filled), "--reference", str(sheet), "--out", str(out)]) == 0
    assert "1/1 = 100%" in capsys.readouterr().out
    assert json.loads(out.read_text())["n_rated"] == 1


# --------------------------------------------------------------------------- the shipped template


def test_shipped_template_has_ten_real_cases_and_no_ratings() -> None:
    with TEMPLATE.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == [*cr.CASE_COLUMNS, *cr.RATING_COLUMNS]
    assert len(rows) == 10 and len({r["case_id"] for r in rows}) == 10
    assert all(r[c] == "" for r in rows for c in cr.RATING_COLUMNS), "the template must ship with EMPTY ratings"
    assert {r["label"] for r in rows} == {"Urgent", "Non-Urgent"}
    test_ids = {json.loads(line)["image_id"] for line in (ROOT / "prototype/eval/test_examples.jsonl").open()}
    assert all(r["image_id"] in test_ids for r in rows)  # held-out test cases only
    assert all(r["image_path"].split("/")[0] in ("nih", "kermany") for r in rows)  # relative to the data directory
    assert "/tmp" not in TEMPLATE.read_text() and all(r["crop_thumb_paths"] == "" for r in rows)
    with pytest.raises(cr.RatingSheetError, match="no ratings filled in"):
        cr.read_ratings(TEMPLATE)
    text = INSTRUCTIONS.read_text(encoding="utf-8")
    n_nih = sum(r["image_path"].startswith("nih/") for r in rows)
    n_review = sum(r["needs_review"] == "yes" for r in rows)
    assert (
        f"{n_nih} adult NIH ChestX-ray14, {10 - n_nih} pediatric" in text
        and f"{n_review} flagged for human review" in text
    )
    for word in (*cr.RATING_COLUMNS, *cr.RATER_ROLES, "no_crops", "read_ratings", "summarise_ratings"):
        assert word in text
