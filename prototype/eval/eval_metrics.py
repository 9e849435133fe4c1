#!/usr/bin/env python
"""Reproduce the triage metrics from a predictions file and a gold-label file.

    python prototype/eval/eval_metrics.py --preds preds.jsonl --gold test_labels.jsonl \
        [--threshold T] [--target-sensitivity 0.95] [--out metrics.json]

``preds.jsonl`` is what ``cxrtriage predict --out preds.jsonl`` writes: one object per
image with "path" and either "score" (+ "label", "threshold") or "error".
``test_labels.jsonl`` has "path" or "id", the truth as "urgency" (urgent / non_urgent),
"label" (Urgent / Non-Urgent) or "y" (0 / 1), and optionally "view", "sex", "patient_id".
Rows are joined on the file name (basename).

This script only reads, joins and prints: every number comes from ``cxrtriage.metrics``,
so the report and the package can never disagree. Exit code 0 on success, 2 when the
inputs cannot be evaluated (unreadable file, unknown label, no matching rows, ...).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

try:
    from cxrtriage import metrics
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from cxrtriage import metrics

SUBGROUP_FIELDS = ("view", "sex")


class InputProblem(Exception):
    """The inputs cannot be evaluated; the message is shown to the user as is."""


# --------------------------------------------------------------------------- reading


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; malformed lines are fatal, not skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputProblem(f"cannot read {path}: {exc.strerror or exc}") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputProblem(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InputProblem(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append((lineno, obj))
    return rows


def join_key(row: dict[str, Any], where: str) -> str:
    """File name of "path" (or "id"), so that preds and gold written on different machines match."""
    ref = row.get("path", row.get("id"))
    if ref is None or str(ref).strip() == "":
        raise InputProblem(f"{where}: has neither 'path' nor 'id'")
    return re.split(r"[\\/]", str(ref).strip())[-1]


def gold_label(row: dict[str, Any], where: str) -> int:
    """1 = urgent, 0 = non-urgent, from whichever of "urgency", "label", "y" is present."""
    if "urgency" in row:
        value = str(row["urgency"]).strip().lower().replace("-", "_")
        mapping: dict[Any, int] = {"urgent": 1, "non_urgent": 0}
    elif "label" in row:
        value = str(row["label"]).strip().lower()
        mapping = {"urgent": 1, "non-urgent": 0}
    elif "y" in row:
        value = row["y"]
        mapping = {0: 0, 1: 1} if not isinstance(value, bool) and isinstance(value, (int, float)) else {}
    else:
        raise InputProblem(f"{where}: no truth field ('urgency', 'label' or 'y')")
    if value not in mapping:
        raise InputProblem(f"{where}: unknown truth value {value!r}")
    return mapping[value]


def load_gold(path: Path) -> dict[str, dict[str, Any]]:
    gold: dict[str, dict[str, Any]] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        key = join_key(row, where)
        if key in gold:
            raise InputProblem(f"{where}: file name {key!r} appears twice in the gold file; the join is by file name")
        gold[key] = {"y": gold_label(row, where), **{f: row.get(f) for f in (*SUBGROUP_FIELDS, "patient_id")}}
    if not gold:
        raise InputProblem(f"{path} contains no rows")
    return gold


def load_preds(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(usable predictions by file name, error message by file name)."""
    preds: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for lineno, row in read_jsonl(path):
        where = f"{path}:{lineno}"
        key = join_key(row, where)
        if key in preds or key in errors:
            raise InputProblem(f"{where}: file name {key!r} appears twice in the predictions; the join is by file name")
        if row.get("error"):
            errors[key] = str(row["error"])
            continue
        score = row.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InputProblem(f"{where}: has neither a numeric 'score' nor an 'error'")
        preds[key] = {"score": float(score), "threshold": row.get("threshold"), "label": row.get("label")}
    return preds, errors


# --------------------------------------------------------------------------- evaluation


def choose_threshold(cli_threshold: float | None, matched: list[dict[str, Any]]) -> tuple[float, str]:
    if cli_threshold is not None:
        return cli_threshold, "--threshold"
    values = {p["threshold"] for p in matched}
    if None in values:
        raise InputProblem("some predictions have no 'threshold' field; pass --threshold")
    if len(values) != 1:
        shown = ", ".join(str(v) for v in sorted(values)[:5])
        raise InputProblem(f"predictions use different thresholds ({shown}); pass --threshold")
    value = values.pop()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputProblem(f"the predictions' 'threshold' is not a number: {value!r}; pass --threshold")
    return float(value), "predictions"


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    gold = load_gold(args.gold)
    preds, pred_errors = load_preds(args.preds)

    keys = sorted(k for k in gold if k in preds)
    counts = {
        "pred_rows": len(preds) + len(pred_errors),
        "pred_errors": len(pred_errors),
        "pred_errors_in_gold": sum(k in gold for k in pred_errors),
        "pred_unmatched": sum(k not in gold for k in preds),
        "gold_rows": len(gold),
        "gold_without_prediction": sum(k not in preds and k not in pred_errors for k in gold),
        "matched": len(keys),
    }
    if not keys:
        raise InputProblem(
            f"no prediction matches a gold row by file name ({counts['pred_rows']} prediction rows, "
            f"{counts['pred_errors']} of them errors; {counts['gold_rows']} gold rows); "
            "check that both files refer to the same images"
        )

    threshold, source = choose_threshold(args.threshold, [preds[k] for k in keys])
    y = np.array([gold[k]["y"] for k in keys])
    s = np.array([preds[k]["score"] for k in keys])
    # Images without a patient id are their own cluster.
    has_pid = any(gold[k]["patient_id"] is not None for k in keys)
    clusters = [str(gold[k]["patient_id"]) if gold[k]["patient_id"] is not None else f"image:{k}" for k in keys] if has_pid else None

    report: dict[str, Any] = {
        "inputs": {"preds": str(args.preds), "gold": str(args.gold), **counts},
        "threshold": threshold,
        "threshold_source": source,
        "bootstrap_unit": "patient_id" if has_pid else "image",
        **metrics.summarize(y, s, threshold, groups=clusters, n_boot=args.n_boot, seed=args.seed),
        "target_sensitivity": args.target_sensitivity,
        "specificity_at_target_sensitivity": metrics.specificity_at_sensitivity(y, s, args.target_sensitivity),
        "target_specificity": args.target_specificity,
        "sensitivity_at_target_specificity": metrics.sensitivity_at_specificity(y, s, args.target_specificity),
    }
    # The emitted label can differ from score >= threshold (the review band is labelled Urgent).
    labels = [preds[k]["label"] for k in keys]
    if all(lab in ("Urgent", "Non-Urgent") for lab in labels):
        called = np.array([lab == "Urgent" for lab in labels], dtype=float)
        report["label_operating_point"] = metrics.operating_point(y, called, 0.5).to_dict()
    report["subgroups"] = {
        field: metrics.subgroup_metrics(y, s, [str(gold[k][field] or "unknown") for k in keys], threshold)
        for field in SUBGROUP_FIELDS
        if any(gold[k][field] is not None for k in keys)
    }
    return metrics.to_jsonable(report)


# --------------------------------------------------------------------------- output


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(r: dict[str, Any]) -> str:
    inp, op = r["inputs"], r["operating_point"]
    lo, hi = r["auc_ci95"]
    lines = [
        f"rows: {inp['matched']} matched | predictions: {inp['pred_rows']} ({inp['pred_errors']} with an error, "
        f"{inp['pred_unmatched']} not in gold) | gold: {inp['gold_rows']} ({inp['gold_without_prediction']} without prediction)",
        "",
        f"{'n':<40}{r['n']}",
        f"{'prevalence (urgent)':<40}{_f(r['prevalence'])}  ({r['n_pos']} urgent)",
        f"{'AUC [95% CI, ' + r['bootstrap_unit'] + ' bootstrap]':<40}{_f(r['auc'])}  [{_f(lo)}, {_f(hi)}]",
        f"{'threshold (' + r['threshold_source'] + ')':<40}{r['threshold']:.4f}",
        f"{'sensitivity':<40}{_f(op['sensitivity'])}  (TP {op['tp']}, FN {op['fn']})",
        f"{'specificity':<40}{_f(op['specificity'])}  (TN {op['tn']}, FP {op['fp']})",
        f"{'PPV':<40}{_f(op['ppv'])}",
        f"{'NPV':<40}{_f(op['npv'])}",
        f"{'sensitivity @ specificity ' + str(r['target_specificity']):<40}{_f(r['sensitivity_at_target_specificity'])}",
        f"{'specificity @ sensitivity ' + str(r['target_sensitivity']):<40}{_f(r['specificity_at_target_sensitivity'])}",
        f"{'ECE (10 bins)':<40}{_f(r['ece'], 4)}",
    ]
    if "label_operating_point" in r:
        lop = r["label_operating_point"]
        lines.append(
            f"{'emitted label (incl. review band)':<40}sens {_f(lop['sensitivity'])}, spec {_f(lop['specificity'])}, "
            f"PPV {_f(lop['ppv'])}, NPV {_f(lop['npv'])}"
        )
    for field, groups in r["subgroups"].items():
        lines += ["", f"by {field}:", f"  {'group':<12}{'n':>6}{'n_pos':>7}{'AUC':>8}{'sens':>8}{'spec':>8}"]
        for name, g in groups.items():
            lines.append(
                f"  {name:<12}{g['n']:>6}{g['n_pos']:>7}{_f(g['auc']):>8}{_f(g['sensitivity']):>8}{_f(g['specificity']):>8}"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Triage metrics from cxrtriage predictions and gold labels.")
    p.add_argument("--preds", type=Path, required=True, help="predictions JSONL (cxrtriage predict --out)")
    p.add_argument("--gold", type=Path, required=True, help="gold labels JSONL")
    p.add_argument("--threshold", type=float, help="operating threshold (default: the predictions' 'threshold')")
    p.add_argument("--target-sensitivity", type=float, default=0.95, help="for specificity @ sensitivity (default 0.95)")
    p.add_argument("--target-specificity", type=float, default=0.95, help="for sensitivity @ specificity (default 0.95)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the AUC CI (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, help="also write the report as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(args)
    except (InputProblem, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
