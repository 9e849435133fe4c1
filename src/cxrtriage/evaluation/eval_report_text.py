"""The evaluation report (:func:`cxrtriage.evaluation.eval_report.evaluate_files`) as the text ``eval_metrics.py``
prints."""

from __future__ import annotations

from typing import Any

from cxrtriage.evaluation.input_files import listed_ids

__all__ = [
    "format_report",
]


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _op_line(op: dict[str, Any]) -> str:
    return (
        f"sens {_f(op['sensitivity'])} (TP {op['tp']}, FN {op['fn']}), spec {_f(op['specificity'])} "
        f"(TN {op['tn']}, FP {op['fp']}), PPV {_f(op['ppv'])}, NPV {_f(op['npv'])}"
    )


def format_report(r: dict[str, Any]) -> str:
    """The report as the text ``eval_metrics.py`` prints (no patient ids; image ids only where asked for)."""
    inp, op = r["inputs"], r["operating_point"]
    lo, hi = r["auc_ci95"]
    lines = [
        f"rows: {inp['matched']} matched | predictions: {inp['pred_rows']} ({inp['pred_errors']} with an error, "
        f"{inp['pred_unmatched']} not in gold) | gold: {inp['gold_rows']} "
        f"({inp['gold_without_prediction']} without prediction)",
        "",
        f"{'n':<40}{r['n']}",
        f"{'prevalence (urgent)':<40}{_f(r['prevalence'])}  ({r['n_pos']} urgent)",
        f"{'AUC [95% CI, ' + r['bootstrap_unit'] + ' bootstrap]':<40}{_f(r['auc'])}  [{_f(lo)}, {_f(hi)}]",
        f"{'threshold (' + r['threshold_source'] + ')':<40}{r['threshold']:.4f}",
        f"{'sensitivity':<40}{_f(op['sensitivity'])}  (TP {op['tp']}, FN {op['fn']})",
        f"{'specificity':<40}{_f(op['specificity'])}  (TN {op['tn']}, FP {op['fp']})",
        f"{'PPV':<40}{_f(op['ppv'])}",
        f"{'NPV':<40}{_f(op['npv'])}",
        f"{'sensitivity @ specificity ' + str(r['target_specificity']):<40}"
        f"{_f(r['sensitivity_at_target_specificity'])}",
        f"{'specificity @ sensitivity ' + str(r['target_sensitivity']):<40}"
        f"{_f(r['specificity_at_target_sensitivity'])}",
        f"{'ECE (10 bins)':<40}{_f(r['ece'], 4)}",
    ]
    if "label_operating_point" in r:
        lop = r["label_operating_point"]
        lines.append(
            f"{'emitted label (incl. review band)':<40}sens {_f(lop['sensitivity'])}, spec {_f(lop['specificity'])}, "
            f"PPV {_f(lop['ppv'])}, NPV {_f(lop['npv'])}"
        )
    if r.get("n_scores_equal_threshold"):
        lines.append(
            f"note: {r['n_scores_equal_threshold']} score(s) equal the threshold as written; they count "
            "as Urgent (score >= threshold), as the pipeline decides on the reported 4-decimal values"
        )
    tr = r.get("target_recall")
    if tr:
        name = f"threshold for recall >= {tr['target']}"
        if tr["threshold"] is None:
            lines.append(f"{name:<40}n/a ({tr.get('note', 'no urgent case')})")
        else:
            lines += [
                f"{name:<40}{tr['threshold']:.4f}  (chosen on these cases: optimistic)",
                f"{'  at that threshold':<40}{_op_line(tr['operating_point'])}",
            ]
    ns = r.get("not_scored")
    if ns and ns["n"]:
        kinds = ", ".join(f"{k} {v}" for k, v in ns["error_types"].items())
        lines += [
            "",
            f"not scored: {ns['n']} gold image(s) have an error row instead of a score ({kinds}); "
            "they are in no number above",
        ]
        if ns["n_urgent"]:
            lines.append(
                f"  {ns['n_urgent']} of them are gold-Urgent: they went to a human as errors, not as "
                f"triaged cases: {listed_ids(ns['urgent_ids'])}"
            )
    um = r.get("unmatched") or {}
    for what, ids in (
        ("gold ids without a prediction", um.get("gold_without_prediction")),
        ("prediction ids without gold", um.get("predictions_without_gold")),
    ):
        if ids:
            lines.append(f"unmatched ({what}, --allow-unmatched): {len(ids)}: {listed_ids(ids)}")
    for fld, groups in r["subgroups"].items():
        lines += ["", f"by {fld}:", f"  {'group':<12}{'n':>6}{'n_pos':>7}{'AUC':>8}{'sens':>8}{'spec':>8}"]
        for name, g in groups.items():
            lines.append(
                f"  {name:<12}{g['n']:>6}{g['n_pos']:>7}{_f(g['auc']):>8}"
                f"{_f(g['sensitivity']):>8}{_f(g['specificity']):>8}"
            )
    loc = r.get("localisation")
    if loc:
        lines += [
            "",
            f"localisation vs {loc['boxes_file']}: {loc['n']} image(s) with a reference box and a score "
            f"({loc['n_without_crop']} without any crop: IoU 0, miss)",
            f"  {'mean best-box IoU':<38}{_f(loc['mean_best_iou'])}  (median {_f(loc['median_best_iou'])})",
            f"  {'IoU >= ' + str(loc['iou_hit_threshold']):<38}{_f(loc['iou_ge_' + str(loc['iou_hit_threshold'])])}  "
            f"({loc['n_iou_hit']} of {loc['n']})",
            f"  {'pointing game (first crop centre)':<38}{_f(loc['pointing_game'])}  "
            f"({loc['n_pointing_hits']} of {loc['n']})",
        ]
        if loc["boxes_ids_without_prediction"]:
            ids = loc["boxes_ids_without_prediction"]
            lines.append(f"  boxes-file ids without a prediction: {len(ids)}: {listed_ids(ids)}")
        if loc["boxes_ids_not_scored"]:
            lines.append(f"  boxes-file ids with an error row: {len(loc['boxes_ids_not_scored'])}")
        lines += [f"  warning: {w}" for w in loc["warnings"]]
    return "\n".join(lines)
