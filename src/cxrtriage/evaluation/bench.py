"""``cxrtriage bench``: speed and memory of the bundled model, printed as numbers.

End-to-end predict on a 1024x1024 PNG (decode, preprocess, model, map, crops, neighbours, thumbnails), then the
model alone as int8 ONNX, fp32 ONNX and torch (when available), model size and peak RSS. With a baseline bundle
(``--baseline-model DIR``, e.g. the previous generation) both are timed in one run, their calls interleaved. With
``--before REF`` (default :data:`~cxrtriage.evaluation.trees.DEFAULT_BEFORE`) the end-to-end predict of that commit's
``src/`` and of this tree run in two worker processes pinned to one CPU with one ONNX thread, calls alternating:
the before/after of one run on one machine (``one_core``), with this tree's stage breakdown on that core.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtriage import config
from cxrtriage.backends.bundled import DEFAULT_FP32_PATH, INDEX_FILE
from cxrtriage.data import load_split_records
from cxrtriage.evaluation import trees
from cxrtriage.graph_manifest import CLASSIFY_FULL_FILE, SEGMENT_FULL_FILE
from cxrtriage.imaging.load import load_image
from cxrtriage.imaging.preprocess import to_model_input
from cxrtriage.pipeline import Triage

MODEL_REPEAT_FACTOR = 4


def times_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Wall time of ``repeats`` calls of ``fn`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2), "n": len(ms)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _bench_image(tmp: Path) -> Path:
    """A real NIH test radiograph upsampled to 1024x1024 (the native NIH size), written as PNG."""
    data = config.Settings().find_data_dir(required=True)
    rec = next(r for r in load_split_records(data, ("nih",))["test"])
    pixels = load_image(rec.path).pixels
    img = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).resize((1024, 1024), Image.BILINEAR)
    path = tmp / "bench_1024.png"
    img.save(path)
    return path


def interleaved_ms(fns: list[Callable[[], object]], repeats: int, warmup: int = 3) -> list[list[float]]:
    """Wall times (ms) of ``repeats`` rounds in which each of ``fns`` is called once, in turn: two models measured
    this way share the machine's state (load, clock, caches) instead of running minutes apart."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            out[i].append((time.perf_counter() - t) * 1e3)
    return out


def bench_against(engine: Triage, baseline_dir: Path, image: Path, repeats: int, crops: Path) -> dict:
    """The end-to-end predict and model-only times of ``engine`` and of the bundle in ``baseline_dir`` (an earlier
    generation), interleaved in one run."""
    base = Triage(model_dir=baseline_dir, crops_dir=crops)
    e2e_new, e2e_old = interleaved_ms([lambda: engine.predict(image), lambda: base.predict(image)], repeats)
    pixels = load_image(image).pixels
    x_new = to_model_input(pixels, engine.backend.preprocess_cfg)
    x_old = to_model_input(pixels, base.backend.preprocess_cfg)
    n = repeats * MODEL_REPEAT_FACTOR
    m_new, m_old = interleaved_ms([lambda: engine.backend.run(x_new), lambda: base.backend.run(x_old)], n)
    return {
        "model_dir": baseline_dir.name,
        "model_sha256": base.backend.info.sha256,
        "model_int8_size_mb": round(base.backend.footprint_mb(), 3),
        "end_to_end": _stats(e2e_old),
        "model_int8_onnx": _stats(m_old),
        "this_model_interleaved": {"end_to_end": _stats(e2e_new), "model_int8_onnx": _stats(m_new)},
    }


def bench_before_after(before: str, image: Path, repeats: int, tmp: Path) -> dict:
    """``one_core``: ``before``'s tree and this one, pinned to one CPU, calls alternating (see
    :mod:`cxrtriage.evaluation.trees`); a note instead when this is no git checkout or git does not know ``before``."""
    repo = trees.repo_root()
    if repo is None:
        return {"skipped": "not a git checkout: the earlier commit's source cannot be unpacked"}
    try:
        commit = trees.short_commit(before, repo)
    except ValueError as exc:
        return {"skipped": str(exc)}
    (tmp / "before").mkdir()
    src = trees.unpack_src(before, tmp / "before", repo)
    cpu = trees.pick_cpu()
    load = [round(v, 2) for v in os.getloadavg()]
    timed = trees.time_trees({"before": src, "after": Path(trees.__file__).resolve().parents[2]}, image, repeats, cpu)
    after, earlier = timed["after"], timed["before"]
    return {
        "what": "end-to-end predict of the 1024 px PNG by the commit before and by this tree, each in its own "
        "process pinned to one CPU with one ONNX Runtime thread, calls alternating",
        "cpu": cpu,
        "load_average_at_start": load,
        "before": {"ref": before, "commit": commit, **earlier},
        "after": after,
        "speedup_p50": round(earlier["end_to_end"]["p50_ms"] / after["end_to_end"]["p50_ms"], 2),
    }


def run_bench(
    *,
    repeats: int = 50,
    onnx_fp32: str | None = None,
    checkpoint: str | None = None,
    out: str | None = None,
    update_card: bool = False,
    baseline_model: str | None = None,
    before: str | None = None,
) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="cxrtriage-bench-"))
    try:
        image = _bench_image(tmp)
        engine = Triage(crops_dir=tmp / "crops")
        backend = engine.backend
        results: dict = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model_sha256": backend.info.sha256,
            "image": "1024x1024 8-bit PNG (NIH test image upsampled)",
            "command": f"cxrtriage bench --repeats {repeats}"
            + (f" --checkpoint {checkpoint}" if checkpoint else "")
            + (f" --baseline-model {baseline_model}" if baseline_model else "")
            + (f" --before {before}" if before else ""),
        }
        results["end_to_end"] = _stats(times_ms(lambda: engine.predict(image), repeats))
        parts = {}
        for _ in range(repeats):
            for k, v in engine.predict(image).timings_ms.items():
                parts.setdefault(k, []).append(v)
        results["end_to_end_breakdown_p50_ms"] = {k: round(statistics.median(v), 2) for k, v in parts.items()}
        x = to_model_input(load_image(image).pixels, backend.preprocess_cfg)
        model_repeats = repeats * MODEL_REPEAT_FACTOR  # a model call takes a few ms: more calls, steadier medians
        results["model_int8_onnx"] = _stats(times_ms(lambda: backend.run(x), model_repeats))
        results["model_int8_size_mb"] = round(backend.footprint_mb(), 3)
        seg = engine.segmenter
        index = backend.model_dir / INDEX_FILE
        graphs = [backend.model_dir / CLASSIFY_FULL_FILE, *([seg.model_dir / SEGMENT_FULL_FILE] if seg else [])]
        files = [
            backend.model_path,
            *([index] if index.is_file() else []),
            *([seg.model_path] if seg is not None else []),
            *(g for g in graphs if g.is_file()),  # the same models with their numeric path inside (graph_manifest)
        ]
        results["bundled_model_files_mb"] = round(sum(f.stat().st_size for f in files) / 1e6, 3)
        results["bundled_model_files"] = [f.name for f in files]
        results["peak_rss_mb_onnx_path"] = round(peak_rss_mb(), 1)
        fp32 = Path(onnx_fp32) if onnx_fp32 else DEFAULT_FP32_PATH
        if fp32.is_file():
            import onnxruntime as ort

            sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
            results["model_fp32_onnx"] = _stats(times_ms(lambda: sess.run(None, {"image": x}), model_repeats))
            results["model_fp32_size_mb"] = round(fp32.stat().st_size / 1e6, 3)
            results["int8_speedup_vs_fp32"] = round(
                results["model_fp32_onnx"]["p50_ms"] / results["model_int8_onnx"]["p50_ms"], 2
            )
        else:
            results["model_fp32_onnx"] = f"skipped: {fp32} not found (run `cxrtriage export`)"
        if checkpoint and Path(checkpoint).is_file():
            try:
                import torch

                from cxrtriage.train.export import load_checkpoint
            except ImportError:
                results["model_torch"] = "skipped: torch not installed (pip install 'cxrtriage[train]')"
            else:
                model, _ = load_checkpoint(Path(checkpoint))
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    results["model_torch_fp32"] = _stats(times_ms(lambda: model(xt), model_repeats))
        else:
            results["model_torch_fp32"] = "skipped: no --checkpoint given or found"
        if baseline_model:
            results["baseline"] = bench_against(engine, Path(baseline_model), image, repeats, tmp / "crops")
        if before:
            results["one_core"] = bench_before_after(before, image, repeats, tmp)
        results["peak_rss_mb_total"] = round(peak_rss_mb(), 1)
        if out:
            carry_comparisons(results, Path(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _print(results)
    if update_card:
        from cxrtriage.evaluation.model_card import update_bundle_bench

        update_bundle_bench(results)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results


COMPARISON_KEYS = ("model_fp32_onnx", "model_fp32_size_mb", "int8_speedup_vs_fp32", "model_torch_fp32")


def carry_comparisons(results: dict, previous: Path) -> None:
    """Keep the fp32 ONNX / torch timings of the previous run in ``previous`` when this checkout lacks those models
    (they are built by training and export, not shipped), marked as carried, for the same int8 model only (a
    previous file without a sha256 predates this check and is taken as the same model)."""
    if all(isinstance(results.get(k), dict) for k in ("model_fp32_onnx", "model_torch_fp32")) or not previous.is_file():
        return
    try:
        old = json.loads(previous.read_text())
    except (OSError, ValueError):
        return
    if old.get("model_sha256") not in (None, results["model_sha256"]):
        return
    carried = [
        k
        for k in COMPARISON_KEYS
        if k in old
        and not isinstance(results.get(k), dict)
        and (isinstance(old[k], dict) or k in ("model_fp32_size_mb", "int8_speedup_vs_fp32"))
    ]
    for k in carried:
        results[k] = old[k]
    if carried:
        results["carried_from_previous_run"] = {
            "keys": carried,
            "created": old.get("created"),
            "why": "the fp32 ONNX model and torch checkpoint are not in this checkout",
        }


def _print(r: dict) -> None:
    print(f"cxrtriage bench on {r['machine']['cpus']} CPU(s), {r['machine']['platform']}")
    print(f"input: {r['image']}")
    for key in ("end_to_end", "model_int8_onnx", "model_fp32_onnx", "model_torch_fp32"):
        v = r.get(key)
        if isinstance(v, dict):
            print(f"  {key:<20} p50 {v['p50_ms']:8.2f} ms   p95 {v['p95_ms']:8.2f} ms   (n={v['n']})")
        elif v:
            print(f"  {key:<20} {v}")
    print(f"  breakdown p50 (ms): {r['end_to_end_breakdown_p50_ms']}")
    b = r.get("baseline")
    if b:
        now = b["this_model_interleaved"]
        print(
            f"  interleaved with {b['model_dir']} ({b['model_sha256'][:12]}): end-to-end p50 "
            f"{now['end_to_end']['p50_ms']} vs {b['end_to_end']['p50_ms']} ms, model p50 "
            f"{now['model_int8_onnx']['p50_ms']} vs {b['model_int8_onnx']['p50_ms']} ms"
        )
    one = r.get("one_core") or {}
    if "after" in one:
        print(
            f"  one core (CPU {one['cpu']}), alternating: {one['before']['ref']} ({one['before']['commit']}) p50 "
            f"{one['before']['end_to_end']['p50_ms']} ms -> this tree {one['after']['end_to_end']['p50_ms']} ms "
            f"({one['speedup_p50']}x)"
        )
        print(f"  one-core breakdown p50 (ms): {one['after']['breakdown_p50_ms']}")
    elif one:
        print(f"  one core: {one['skipped']}")
    if "int8_speedup_vs_fp32" in r:
        print(f"  int8 speed-up vs fp32 ONNX: {r['int8_speedup_vs_fp32']}x")
    print(
        f"  model size int8: {r['model_int8_size_mb']} MB"
        + (f", fp32: {r['model_fp32_size_mb']} MB" if "model_fp32_size_mb" in r else "")
    )
    if "bundled_model_files_mb" in r:
        print(
            f"  bundled model files together: {r['bundled_model_files_mb']} MB ({', '.join(r['bundled_model_files'])})"
        )
    print(
        f"  peak RSS: {r['peak_rss_mb_onnx_path']} MB (ONNX path), {r['peak_rss_mb_total']} MB (after all comparisons)"
    )
