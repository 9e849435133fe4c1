"""The model card's "Site commissioning" section, from ``card.json``'s ``commissioning`` block (the report of
:mod:`cxrtriage.evaluation.commissioning_holdout`, also in ``prototype/eval/commissioning_<source>.json``): what a
site profile changed on films it never saw."""

from __future__ import annotations

from typing import Any

from cxrtriage.evaluation.card_format import number as _f


def _ci(row: dict[str, Any], key: str) -> str:
    lo, hi = row[f"{key}_ci95"]
    return f"{_f(row[key])} ({_f(lo)}-{_f(hi)})"


def commissioning_lines(card: dict[str, Any]) -> list[str]:
    block = card.get("commissioning")
    if not block:
        return []
    held, cv = block["held_out_half"], block["commissioning_figures"]
    rows = [
        f"| {when} | {_f(m['threshold'], 4)} | {_ci(m, 'sensitivity')} | {_ci(m, 'specificity')} "
        f"| {_f(m['review_rate'])} |"
        for when, m in (("bundled operating point", held["before"]), ("site profile", held["after"]))
    ]
    adopted = cv[block["adopted"]]
    return [
        "## Site commissioning",
        f"`cxrtriage commission` fits a site's own calibration, threshold and review band. Measured: {block['what']} "
        f"(half A {block['commission_half']['n']} films, {block['commission_half']['urgent']} urgent; half B "
        f"{block['measure_half']['n']} films, {block['measure_half']['urgent']} urgent). Caveat: {block['caveat']}.",
        "",
        "| on half B (never seen by the profile) | threshold | sensitivity (exact 95% CI) | specificity (exact 95% CI) "
        "| review rate |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"On half A itself, {cv['folds']}-fold cross-validated: the profile adopted {block['adopted']} (a site head is "
        "adopted only when nested cross-validation shows it beats recalibration alone); specificity "
        f"{_f(adopted['specificity'])} against {_f(cv['base']['specificity'])} at the bundled point, sensitivity "
        f"{cv['sensitivity']['found']}/{cv['sensitivity']['urgent']}, ECE {_f(cv['base']['ece'])} -> "
        f"{_f(adopted['ece'])}. Command: `{block['command']}`.",
        "",
    ]
