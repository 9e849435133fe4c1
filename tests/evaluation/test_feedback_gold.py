"""The readers' export (``cxrtriage feedback export``) is read by ``cxrtriage commission --gold``'s own reader: every
line's truth is the reader's label. Its ``path`` is ``worklist:KEY`` (the service keeps no image path), so
commission reads the stored result the reader assessed; one filed by another model is refused with the reason."""

from __future__ import annotations

from pathlib import Path

from fake_prediction import fake_prediction

from cxrtriage.cli.main import main
from cxrtriage.evaluation.commissioning import triage_sample
from cxrtriage.evaluation.gold import gold_label, gold_rows
from cxrtriage.worklist import Worklist
from cxrtriage.worklist.feedback import FeedbackStore


def test_commission_reads_the_export(tmp_path: Path) -> None:
    worklist = Worklist(tmp_path / "wl.sqlite")
    store = FeedbackStore(worklist)
    for i, label in enumerate(("Urgent", "Non-Urgent", "Urgent")):
        worklist.add(fake_prediction(label), f"ACC-{i}")
        store.record(f"ACC-{i}", agrees=i != 2, reader="dr-a")
    out = tmp_path / "gold.jsonl"
    assert main(["feedback", "export", "--worklist", str(worklist.path), "--out", str(out)]) == 0
    rows = gold_rows(out)
    assert [(row["path"], gold_label(row, str(n))) for n, row in rows] == [
        ("worklist:ACC-0", 1),
        ("worklist:ACC-1", 0),
        ("worklist:ACC-2", 0),  # the reader disagreed with Urgent: their label is the truth
    ]
    engine = type("Engine", (), {"info": type("Info", (), {"sha256": "f" * 64, "backend": "bundled"})()})()
    sample = triage_sample(engine, out, tmp_path, worklist=worklist)  # type: ignore[arg-type]
    assert len(sample.unreadable) == 3 and "filed by model" in sample.unreadable[0]
    assert "no worklist was given" in triage_sample(engine, out, tmp_path).unreadable[0]  # type: ignore[arg-type]
