"""``cxrtriage evaluate-generalisation``: how much of the shipped model's result is luck of the seed, and what a
source the model never trained on does to it.

Every run is an exported bundle (``cxrtriage export --out DIR``) scored through the user-facing pipeline (gate,
segmentation, calibration, threshold of that bundle) on the held-out test patients of each source: NIH adults,
pediatric films, Shenzhen adults (tuberculosis Urgent; when ``data/shenzhen`` is there) and the JSRT normal adults
(a site no run trains on). Single runs trained with the shipped recipe and other seeds give the seed spread (a
shipped seed ensemble is scored, but is not one of them); runs trained
without one of the shipped run's sources (``--pediatric-per-epoch 0``: no children; ``--no-nih``; no Shenzhen)
give leave-one-source-out and its table (:mod:`cxrtriage.evaluation.loso`: the worst left-out adult source against
the target). The mean of the seed runs' scores is reported as an ensemble (threshold-free figures only: it has no
fitted threshold). ``previous`` carries the previous generation's shipped figures from its own report, so they stay
beside this generation's in the card. Only aggregates are written: no image name, no label.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxrtriage.backends.bundle_config import META_FILE, BundleConfig
from cxrtriage.backends.bundled import FP32_FILE
from cxrtriage.data import Record
from cxrtriage.errors import InputError
from cxrtriage.evaluation import metrics
from cxrtriage.evaluation.loso import left_out, loso_table
from cxrtriage.evaluation.operating_points import TARGETS, held_out_records

#: config keys that do not change the recipe (a run with other values of only these is "the shipped recipe")
NOT_RECIPE = ("seed", "out_dir", "data_dir", "threads", "limit")
#: defaults of config keys that bundles exported before the key existed do not record
RECIPE_DEFAULTS = {"nih_train": True}
SOURCES = {
    "nih": "NIH adult test",
    "kermany": "pediatric test",
    "shenzhen": "Shenzhen adult TB test",
    "jsrt": "JSRT normal adult test (never trained on)",
}
#: model.json ``training.counts`` key of each source a run can train on
COUNT_KEYS = (("nih", "tr_nih"), ("kermany", "tr_ker"), ("shenzhen", "tr_shz"), ("jsrt", "tr_jsrt"))


def spec_key(target: float) -> str:
    return f"specificity_at_sensitivity_{target}"


@dataclass(frozen=True)
class RunScores:
    """One bundle's scores on every test source, keyed by record key (gate refusals left out and counted), and
    the int8-vs-fp32 AUC on NIH test when the run's fp32 ONNX model sits beside its bundle."""

    name: str
    meta: dict  # the run's model.json (BundleConfig.to_dict)
    scores: dict[str, dict[str, float]]
    refused: dict[str, int]
    threshold: float
    quantisation: dict | None = None


def test_sets(data_dir: Path) -> dict[str, list[Record]]:
    """The committed test part of every source present in ``data_dir`` (the same sets as the operating points)."""
    return held_out_records(Path(data_dir))


def score_run(name: str, model_dir: Path, sets: dict[str, list[Record]]) -> RunScores:
    from cxrtriage import decision
    from cxrtriage.evaluation.evaluate import fp32_vs_int8
    from cxrtriage.pipeline import Triage

    engine = Triage(backend_name="bundled", model_dir=model_dir)
    scores: dict[str, dict[str, float]] = {}
    refused: dict[str, int] = {}
    for source, recs in sets.items():
        scores[source], refused[source] = {}, 0
        for rec in tqdm(recs, desc=f"{name} {source}", unit="img", leave=False, mininterval=5.0):
            try:
                scores[source][rec.key] = engine.predict(rec.path, save_crops=False).score
            except InputError:
                refused[source] += 1
    meta = BundleConfig.load(Path(model_dir) / META_FILE).to_dict()  # training provenance: seed, recipe, sources
    fp32 = Path(model_dir).parent / FP32_FILE  # cxrtriage export keeps it next to the checkpoint (runs/<run>/)
    quant = fp32_vs_int8(engine, sets["nih"], fp32) if fp32.is_file() and sets.get("nih") else None
    if quant:
        quant["fp32_model"] = f"{Path(model_dir).parent.name}/{FP32_FILE}"
    return RunScores(name, meta, scores, refused, decision.reported(engine.backend.threshold), quant)


def source_metrics(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict:
    """AUC and specificity at sensitivity 0.95 / 0.98 / 0.99 (threshold-free), and the operating point at the run's
    own threshold; for a negatives-only source the share labelled Non-Urgent and the median score."""
    out: dict = {"n": int(len(y)), "n_urgent": int(y.sum())}
    if len(set(y.tolist())) == 2:
        out["auc"] = metrics.roc_auc(y, s)
        for target in TARGETS:
            out[spec_key(target)] = metrics.specificity_at_sensitivity(y, s, target)
        if threshold is not None:
            op = metrics.operating_point(y, s, threshold)
            out["sensitivity_at_threshold"], out["specificity_at_threshold"] = op.sensitivity, op.specificity
            out["ece"] = metrics.expected_calibration_error(y, s)
    else:
        out["median_score"] = float(np.median(s)) if len(s) else None
        if threshold is not None:
            out["specificity_at_threshold"] = float(np.mean(s < threshold)) if len(s) else None
    return out


def trained_on(meta: dict) -> list[str]:
    counts = (meta.get("training") or {}).get("counts") or {}
    return [src for src, key in COUNT_KEYS if counts.get(key)]


def recipe(meta: dict) -> dict:
    cfg = (meta.get("training") or {}).get("config") or {}
    return {**RECIPE_DEFAULTS, **{k: v for k, v in cfg.items() if k not in NOT_RECIPE}}


def _labels(sets: dict[str, list[Record]]) -> dict[str, dict[str, int]]:
    return {src: {r.key: int(r.urgent) for r in recs} for src, recs in sets.items()}


def run_block(run: RunScores, labels: dict[str, dict[str, int]], shipped_recipe: dict) -> dict:
    cfg = (run.meta.get("training") or {}).get("config") or {}
    block: dict = {
        "model_sha256": run.meta.get("sha256"),
        "seed": cfg.get("seed"),
        "trained_on": trained_on(run.meta),
        "same_recipe_as_shipped": recipe(run.meta) == shipped_recipe,
        "ensemble": run.meta.get("ensemble"),  # {"members": K, ...} when the bundle averages K seeds
        "command": (run.meta.get("training") or {}).get("command"),
        "threshold": run.threshold,
        "refused_by_gate": run.refused,
        "int8_vs_fp32_nih_test": run.quantisation,
        "test": {},
    }
    for src, sc in run.scores.items():
        keys = sorted(sc)
        y = np.array([labels[src][k] for k in keys])
        block["test"][src] = source_metrics(y, np.array([sc[k] for k in keys]), run.threshold)
    return block


def spread(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return {"n": 0}
    return {
        "n": len(vals),
        "mean": statistics.fmean(vals),
        "sd": statistics.stdev(vals) if len(vals) > 1 else None,
        "min": min(vals),
        "max": max(vals),
    }


def ensemble_block(runs: list[RunScores], labels: dict[str, dict[str, int]]) -> dict:
    """Mean calibrated score of ``runs`` on the images every one of them triaged."""
    out = {}
    for src in labels:
        keys = sorted(set.intersection(*(set(r.scores[src]) for r in runs)))
        y = np.array([labels[src][k] for k in keys])
        s = np.array([np.mean([r.scores[src][k] for r in runs]) for k in keys])
        out[src] = source_metrics(y, s, None)
    return out


def summarise(runs: list[RunScores], labels: dict[str, dict[str, int]], shipped: str) -> dict:
    ship = next(r for r in runs if r.name == shipped)
    shipped_recipe = recipe(ship.meta)
    blocks = {r.name: run_block(r, labels, shipped_recipe) for r in runs}
    # single models only: a seed ensemble (model.json ``ensemble``) records its first member's recipe, yet it is the
    # mean of several seeds, not one more seed, and would widen the spread it is compared with
    seeds = [r for r in runs if blocks[r.name]["same_recipe_as_shipped"] and not blocks[r.name]["ensemble"]]
    keys = (
        "auc",
        *(spec_key(t) for t in TARGETS),
        "sensitivity_at_threshold",
        "specificity_at_threshold",
        "ece",
        "median_score",
    )
    seed_spread = {
        src: {
            k: spread([blocks[r.name]["test"][src].get(k) for r in seeds])
            for k in keys
            if any(k in blocks[r.name]["test"][src] for r in seeds)
        }
        for src in labels
    }
    leave_out = {}
    reference = blocks[shipped]["trained_on"]
    for r in runs:
        missing = left_out(blocks[r.name]["trained_on"], reference)
        if blocks[r.name]["same_recipe_as_shipped"] or not missing:
            continue
        leave_out[r.name] = {
            "left_out": missing,
            "test": {
                src: {
                    k: {
                        "left_out_run": blocks[r.name]["test"][src].get(k),
                        "seed_mean": seed_spread[src].get(k, {}).get("mean"),
                    }
                    for k in keys
                    if k in blocks[r.name]["test"][src]
                }
                for src in labels
            },
        }
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "shipped": shipped,
        "seed_runs": [r.name for r in seeds],
        "sources": {src: SOURCES.get(src, src) for src in labels},
        "runs": blocks,
        "seed_spread": seed_spread,
        "ensemble_of_seed_runs": ensemble_block(seeds, labels) if len(seeds) > 1 else None,
        "leave_one_source_out": leave_out,
        "loso_table": loso_table(blocks, leave_out),
    }


def generation_name(path: Path) -> str:
    """``generalisation_gen2.json`` -> ``generation 2``; any other file name -> its stem."""
    m = re.search(r"gen(?:eration)?_?(\d+)", Path(path).stem)
    return f"generation {m.group(1)}" if m else Path(path).stem


def previous_generation(path: Path, name: str | None = None) -> dict:
    """The shipped run of an earlier ``evaluate-generalisation`` report: its name, model and test figures per
    source. Raises ``ValueError`` for a file that is not such a report (checked before any scoring starts)."""
    try:
        prev = json.loads(Path(path).read_text(encoding="utf-8"))
        ship = prev["runs"][prev["shipped"]]
        test = ship["test"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a generalisation report with a shipped run ({exc!r})") from exc
    return {
        "name": name or generation_name(Path(path)),
        "file": str(path),
        "run": prev["shipped"],
        "created": prev.get("created"),
        "model_sha256": ship.get("model_sha256"),
        "seed": ship.get("seed"),
        "trained_on": ship.get("trained_on", []),
        "ensemble": ship.get("ensemble"),
        "test": test,
    }


def run_generalisation(
    data_dir: Path, runs: dict[str, Path], out: Path, shipped: str = "shipped", previous: dict | None = None
) -> dict:
    """Score every run's bundle on every test source and write the report to ``out``; ``previous`` (from
    :func:`previous_generation`) is stored beside it as ``previous_generation``."""
    sets = test_sets(Path(data_dir))
    scored = [score_run(name, Path(d), sets) for name, d in runs.items()]
    report = metrics.to_jsonable(summarise(scored, _labels(sets), shipped))
    report["previous_generation"] = previous
    if previous:
        report["previous_generation"]["same_model_as_shipped"] = (
            previous["model_sha256"] == report["runs"][shipped]["model_sha256"]
        )
    report["command"] = "cxrtriage evaluate-generalisation " + " ".join(f"--run {k}={v}" for k, v in runs.items())
    if previous:
        report["command"] += f" --previous {previous['file']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report
