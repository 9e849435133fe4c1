"""The benchmark runs and reports every number it promises (values are not asserted: speed is not a test)."""

from __future__ import annotations

import json


def test_bench_reports_numbers(data_dir, tmp_path, capsys):
    from cxrtriage.cli.main import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--repeats", "3", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    for key in ("end_to_end", "model_int8_onnx"):
        assert r[key]["p50_ms"] > 0 and r[key]["p95_ms"] >= r[key]["p50_ms"]
    assert 0 < r["model_int8_size_mb"] < 10
    assert r["peak_rss_mb_total"] > 0
    assert {"decode", "model", "crops", "neighbours", "total"} <= set(r["end_to_end_breakdown_p50_ms"])
    printed = capsys.readouterr().out
    assert "end_to_end" in printed and "peak RSS" in printed
