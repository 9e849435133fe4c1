"""`cxrtriage evaluate` keeps an earlier fp32-vs-int8 comparison only for the same int8 model, and says so."""

from __future__ import annotations

import json
from pathlib import Path

from cxrtriage.evaluation.evaluate import _carried_fp32_comparison


def test_fp32_comparison_is_carried_over_only_for_the_same_model(tmp_path: Path) -> None:
    old = tmp_path / "metrics.json"
    q = {"n": 105, "auc_fp32": 0.904, "auc_int8": 0.900, "auc_change": -0.004}
    old.write_text(
        json.dumps({"created": "2026-11-29T05:33:46+00:00", "model": {"sha256": "abc"}, "fp32_vs_int8_nih_test": q})
    )
    carried = _carried_fp32_comparison(old, "abc")
    assert carried is not None and carried["auc_int8"] == 0.900
    assert carried["measured"] == "2026-11-29T05:33:46+00:00" and "not re-measured" in carried["note"]
    assert _carried_fp32_comparison(old, "another-model") is None
    assert _carried_fp32_comparison(tmp_path / "missing.json", "abc") is None
