"""``cxrtriage evaluate-operating-points``: the figures a radiology department compares, per source and per view.

Every test film of every source (NIH adults, and separately their PA and AP films; pediatric; Shenzhen; the JSRT
normal films) goes through ``Triage.predict`` as a user's would (gate, segmentation, calibration, threshold and
review band of the bundle). Per set: n, AUC with a patient-bootstrap 95% CI, the specificity at sensitivity 0.95 /
0.98 / 0.99 with its bootstrap CI and the threshold that reaches it (chosen on that same set: an *oracle* figure,
what a site could reach if it set its own threshold on these very films, not what the shipped threshold gives), the
sensitivity and specificity at the shipped threshold and as labelled (review band counted Urgent), ECE (the ten
equal-width bins of :func:`~cxrtriage.evaluation.metrics.expected_calibration_error`, as ``metrics.json``) with its
bootstrap CI and the ECE a perfectly calibrated score would show on the same films
(:func:`~cxrtriage.evaluation.metrics.ece_if_calibrated`: small sets have a sizeable floor), the review rate
(share of triaged films with ``needs_review``) and the share of films the gate refused. Only aggregates are written:
no image name, no label.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cxrtriage.data import Record, jsrt_urgency_parts, load_split_records
from cxrtriage.evaluation import metrics

#: the sensitivity targets of commercial rule-out products (issue 24)
TARGETS = (0.95, 0.98, 0.99)
#: the sets of the report, in its order: key -> what it is
SETS = {
    "nih": "NIH adults, test patients",
    "nih_PA": "NIH adults, test patients, PA films",
    "nih_AP": "NIH adults, test patients, AP films",
    "kermany": "pediatric (Guangzhou), test patients",
    "shenzhen": "Shenzhen adults (TB vs normal), test films",
    "jsrt": "JSRT adults, normal test films (no urgent film: specificity, review and refusals only)",
}
ORACLE_NOTE = (
    "specificity_at_sensitivity: threshold chosen on this same set (the highest score keeping sensitivity >= the "
    "target), an oracle figure a site reaches only by setting its own threshold on its own films; at_threshold and "
    "as_labelled use the bundle's shipped threshold and review band"
)


def held_out_records(data_dir: Path) -> dict[str, list[Record]]:
    """The committed test part of every source (sources missing from the data directory are left out)."""
    data_dir = Path(data_dir)
    present = tuple(s for s in ("nih", "kermany", "shenzhen") if (data_dir / s / "labels.csv").is_file())
    test = load_split_records(data_dir, present)["test"]
    sets = {s: [r for r in test if r.dataset == s] for s in present}
    if (data_dir / "jsrt_scr" / "labels.csv").is_file():
        sets["jsrt"] = jsrt_urgency_parts(data_dir)["test"]
    return sets


def _oracle(y: np.ndarray, s: np.ndarray, target: float, groups: list[str], n_boot: int) -> dict:
    def spec(yb: np.ndarray, sb: np.ndarray) -> float:
        return metrics.specificity_at_sensitivity(yb, sb, target)

    threshold = metrics.threshold_for_sensitivity(y, s, target)
    ci = metrics.bootstrap_statistic_ci(y, s, spec, n_boot=n_boot, seed=0, groups=groups)
    return {
        "specificity": spec(y, s),
        "specificity_ci95": list(ci),
        "threshold": threshold,
        "sensitivity": metrics.operating_point(y, s, threshold).sensitivity,
    }


def set_metrics(res: dict, threshold: float, n_boot: int = 1000) -> dict:
    """The report's block of one set, from a :func:`cxrtriage.evaluation.evaluate.score_set` result (``scores``,
    ``labels``, ``review``, ``y``, ``records``, ``rejected``). Undefined figures (AUC of a one-class set, the
    sensitivity of a set without urgent films) are None."""
    y, s = np.asarray(res["y"], dtype=np.int64), np.asarray(res["scores"], dtype=np.float64)
    labels, review = np.asarray(res["labels"], dtype=np.float64), np.asarray(res["review"])
    groups = [r.patient for r in res["records"]]
    n, refused = int(y.shape[0]), len(res["rejected"])
    out: dict = {
        "n": n,
        "n_urgent": int(y.sum()),
        "refused_by_gate": refused,
        "refused_share": refused / (n + refused) if n + refused else None,
        "review_rate": float(review.mean()) if n else None,
    }
    if n == 0:
        return out
    two_classes = 0 < int(y.sum()) < n
    out["auc"] = metrics.roc_auc(y, s)
    out["auc_ci95"] = list(metrics.bootstrap_auc_ci(y, s, n_boot=n_boot, seed=0, groups=groups))
    out["specificity_at_sensitivity"] = (
        {str(t): _oracle(y, s, t, groups, n_boot) for t in TARGETS} if two_classes else None
    )
    for key, values, t in (("at_threshold", s, threshold), ("as_labelled", labels, 0.5)):
        op = metrics.operating_point(y, values, t)
        out[key] = {"sensitivity": op.sensitivity, "specificity": op.specificity, "tp": op.tp, "fp": op.fp}
        out[key].update({"tn": op.tn, "fn": op.fn})
    out["ece"] = metrics.expected_calibration_error(y, s)
    out["ece_ci95"] = list(
        metrics.bootstrap_statistic_ci(
            y, s, metrics.expected_calibration_error, n_boot=n_boot, seed=0, groups=groups, one_class_ok=True
        )
    )
    out["ece_if_calibrated"] = metrics.ece_if_calibrated(s, out["ece"], n_draws=max(n_boot, 1000), seed=0)
    out["mean_score"] = float(s.mean())
    return metrics.to_jsonable(out)


def subset(res: dict, keep: Callable[[Record], bool]) -> dict:
    """The part of a scored set whose records satisfy ``keep`` (refusals too, found by record key)."""
    idx = [i for i, r in enumerate(res["records"]) if keep(r)]
    keys = {r.key for r in res.get("all_records", res["records"]) if keep(r)}
    return {
        **{k: np.asarray(res[k])[idx] for k in ("scores", "labels", "review", "y")},
        "records": [res["records"][i] for i in idx],
        "rejected": [x for x in res["rejected"] if x["key"] in keys],
    }


def _view_is(view: str) -> Callable[[Record], bool]:
    return lambda r: r.view == view


def build_report(scored: dict[str, dict], threshold: float, n_boot: int) -> dict[str, dict]:
    """Blocks of every set in :data:`SETS` order; NIH is also split by view (``nih_PA``, ``nih_AP``)."""
    out: dict[str, dict] = {}
    for key in SETS:
        source, _, view = key.partition("_")
        if source not in scored:
            continue
        res = subset(scored[source], _view_is(view)) if view else scored[source]
        out[key] = {"set": SETS[key], **set_metrics(res, threshold, n_boot)}
    return out


def per_image_files(report: Path, source: str, jsonl_dir: Path = Path("runs/eval")) -> tuple[Path, Path]:
    """The per-image predictions and gold labels behind ``report``'s block of ``source`` (``<jsonl_dir>/<report
    stem>/<source>_test_{preds,gold}.jsonl``): one folder per report, so measuring another bundle (``--out
    operating_points_gen2.json``) never overwrites the files the shipped model's figures are drawn from."""
    folder = Path(jsonl_dir) / Path(report).stem
    return folder / f"{source}_test_preds.jsonl", folder / f"{source}_test_gold.jsonl"


def run_operating_points(
    data_dir: Path,
    *,
    out: Path,
    model_dir: str | None = None,
    generation: str = "",
    n_boot: int = 1000,
    jsonl_dir: Path | None = Path("runs/eval"),
) -> dict:
    """Score every source's test films with the bundle in ``model_dir`` (default the bundled model) and write the
    report to ``out``; each source's per-image predictions and gold labels go to :func:`per_image_files` (kept out
    of the repository: they name dataset files and copy their labels; the write-up draws its curves from them)."""
    from cxrtriage import decision
    from cxrtriage.evaluation.evaluate import score_set, write_jsonl
    from cxrtriage.pipeline import Triage

    engine = Triage(model_dir=model_dir)
    threshold = decision.reported(engine.backend.threshold)
    scored = {}
    for source, recs in held_out_records(Path(data_dir)).items():
        scored[source] = {**score_set(engine, recs, f"{source} test"), "all_records": recs}
    meta_path = Path(str(model_dir or getattr(engine.backend, "model_dir", "."))) / "model.json"
    counts = (json.loads(meta_path.read_text()).get("training") or {}).get("counts") if meta_path.is_file() else None
    command = f"cxrtriage evaluate-operating-points --n-boot {n_boot}"
    report = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command
        + (f" --model-dir {model_dir}" if model_dir else "")
        + f" --generation '{generation}' --out {out}",
        "generation": generation,
        "model": engine.backend.info.model_dump(),
        "model_training_counts": counts,
        "threshold": threshold,
        "review_band": list(engine.backend.review_band),
        "targets": [str(t) for t in TARGETS],
        "notes": {
            "oracle": ORACLE_NOTE,
            "small_sets": "a target keeps ceil(target x urgent films): under 50 urgent films 0.98 and 0.99 both "
            "mean every urgent film, so they coincide",
            "ci": f"95% percentile bootstrap over patients, {n_boot} resamples, seed 0",
            "ece": "10 equal-width bins of the calibrated score (metrics.expected_calibration_error), with its "
            "95% patient-bootstrap CI",
            "ece_if_calibrated": "the ECE the same scores show if they were perfectly calibrated (labels drawn as "
            f"Bernoulli(score), {max(n_boot, 1000)} draws, seed 0): mean and 90% range, the floor sample noise alone "
            "gives at this set's size; p = share of those draws at or above the measured ECE",
            "review_rate": "share of the films the gate let through that carry needs_review",
            "refused_share": "share of the set's films the gate refused (not triaged)",
        },
        "sets": build_report(scored, threshold, n_boot),
    }
    report = metrics.to_jsonable(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if jsonl_dir is not None:
        for source, res in scored.items():
            preds, gold = per_image_files(out, source, jsonl_dir)
            preds.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(res, threshold, preds, gold)
    return report
