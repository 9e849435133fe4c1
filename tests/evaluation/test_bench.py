"""The benchmark runs and reports every number it promises (values are not asserted: speed is not a test)."""

from __future__ import annotations

import json

import pytest


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
    one = r["one_core"]  # the default --before: the commit before issue 26, pinned to one CPU with this tree
    printed = capsys.readouterr().out
    assert "end_to_end" in printed and "peak RSS" in printed
    if "skipped" in one:  # an installed package, or a clone without that commit: said, not failed
        assert "git" in one["skipped"] and "one core:" in printed
        return
    assert one["before"]["ref"] == "bbadd9b" and one["before"]["end_to_end"]["n"] == 3
    assert one["after"]["end_to_end"]["n"] == 3 and one["speedup_p50"] > 0
    assert {"decode", "segment", "model", "crops", "total"} <= set(one["after"]["breakdown_p50_ms"])
    assert "one core (CPU" in printed


def test_bench_before_none_skips_the_one_core_comparison(data_dir, tmp_path):
    from cxrtriage.cli.main import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--repeats", "2", "--before", "none", "--out", str(out)]) == 0
    assert "one_core" not in json.loads(out.read_text())


def test_trees_summarise_stage_medians_and_the_end_to_end_spread():
    from cxrtriage.evaluation.trees import summarise

    calls = [{"ms": ms, "timings": {"decode": d, "total": ms - 1}} for ms, d in ((10.0, 2.0), (30.0, 4.0), (20.0, 9.0))]
    out = summarise(calls)
    assert out["end_to_end"] == {"p50_ms": 20.0, "p95_ms": 30.0, "n": 3}
    assert out["breakdown_p50_ms"] == {"decode": 4.0, "total": 19.0}


def test_trees_unpack_an_earlier_commit_source(tmp_path):
    from cxrtriage.evaluation.trees import DEFAULT_BEFORE, repo_root, short_commit, unpack_src

    repo = repo_root()
    if repo is None:
        pytest.skip("not a git checkout")
    src = unpack_src(DEFAULT_BEFORE, tmp_path, repo)
    assert (src / "cxrtriage" / "pipeline.py").is_file()
    assert not (src / "cxrtriage" / "memory.py").exists()  # it came with issue 26's speed-up, after that commit
    assert short_commit(DEFAULT_BEFORE, repo) == DEFAULT_BEFORE


def test_model_comparisons_are_carried_only_for_the_same_model_and_say_so(tmp_path):
    from cxrtriage.evaluation.bench import carry_comparisons

    prev = tmp_path / "bench.json"
    old = {
        "created": "2026-11-30T10:00:00+00:00",
        "model_sha256": "abc",
        "model_fp32_onnx": {"p50_ms": 4.0, "p95_ms": 4.3, "n": 200},
        "model_fp32_size_mb": 3.6,
        "int8_speedup_vs_fp32": 1.7,
        "model_torch_fp32": {"p50_ms": 7.4, "p95_ms": 8.1, "n": 200},
    }
    prev.write_text(json.dumps(old))
    fresh = {
        "model_sha256": "abc",
        "model_fp32_onnx": "skipped: not found",
        "model_torch_fp32": "skipped: no --checkpoint",
    }
    carry_comparisons(fresh, prev)
    assert fresh["model_fp32_onnx"] == old["model_fp32_onnx"] and fresh["int8_speedup_vs_fp32"] == 1.7
    assert fresh["carried_from_previous_run"]["created"] == old["created"]
    other = {"model_sha256": "def", "model_fp32_onnx": "skipped: not found", "model_torch_fp32": "skipped"}
    carry_comparisons(other, prev)
    assert other["model_fp32_onnx"] == "skipped: not found" and "carried_from_previous_run" not in other


def test_a_baseline_bundle_is_timed_in_the_same_run(data_dir, tmp_path, capsys):
    """``--baseline-model``: the previous generation's bundle timed beside this one, named by its sha256."""
    import shutil

    from cxrtriage.cli.main import main
    from cxrtriage.config import BUNDLED_WEIGHTS_DIR

    base = tmp_path / "gen_prev"
    shutil.copytree(BUNDLED_WEIGHTS_DIR, base)
    out = tmp_path / "bench.json"
    assert main(["bench", "--repeats", "3", "--out", str(out), "--baseline-model", str(base)]) == 0
    r = json.loads(out.read_text())
    b = r["baseline"]
    assert b["model_dir"] == "gen_prev" and b["model_sha256"] == r["model_sha256"]
    for block in (b, b["this_model_interleaved"]):
        assert block["end_to_end"]["n"] == 3 and block["model_int8_onnx"]["p50_ms"] > 0
    assert "--baseline-model" in r["command"] and "interleaved with gen_prev" in capsys.readouterr().out
