"""The model card's "seed spread and leave-one-source-out" section, from the ``generalisation`` block that
``cxrtriage evaluate-generalisation --update-card`` stores in card.json."""

from __future__ import annotations

from cxrtriage.evaluation.card_format import number as _f

SPEC = "specificity_at_sensitivity_0.95"
NAMES = {"nih": "NIH", "kermany": "pediatric", "jsrt": "JSRT"}


def _cells(t: dict) -> str:
    n, p, j = t.get("nih", {}), t.get("kermany", {}), t.get("jsrt", {})
    return (
        f"{_f(n.get('auc'))} | {_f(n.get(SPEC))} | "
        f"{_f(n.get('sensitivity_at_threshold'))} / {_f(n.get('specificity_at_threshold'))} | "
        f"{_f(p.get('auc'))} | {_f(p.get(SPEC))} | "
        f"{_f(p.get('sensitivity_at_threshold'))} / {_f(p.get('specificity_at_threshold'))} | "
        f"{_f(j.get('specificity_at_threshold'))} ({_f(j.get('median_score'))})"
    )


def _range(s: dict) -> str:
    if not s or not s.get("n"):
        return "n/a"
    sd = f" ± {s['sd']:.3f}" if s.get("sd") is not None else ""
    return f"{s['mean']:.3f}{sd} ({s['min']:.3f}-{s['max']:.3f})"


def generalisation_lines(block: dict | None) -> list[str]:
    if not block:
        return []
    lines = [
        "## Seed spread and leave-one-source-out (held-out test patients)",
        f"Measured by `{block['command']}` on {block['created']}: every run is an exported int8 bundle scored "
        "through the user-facing pipeline with its own calibration and threshold. JSRT: the 14 normal test "
        "films of a site no run trains on (share Non-Urgent, median score).",
        "",
        "| run | seed | trained on | NIH AUC | NIH spec @ sens 0.95 | NIH sens / spec at threshold | pediatric AUC | "
        "pediatric spec @ sens 0.95 | pediatric sens / spec at threshold | JSRT normals Non-Urgent (median) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in block["runs"].items():
        tag = " (shipped)" if name == block["shipped"] else "" if r["same_recipe_as_shipped"] else " (ablation)"
        lines.append(
            f"| {name}{tag} | {r['seed']} | {', '.join(NAMES[s] for s in r['trained_on'])} | {_cells(r['test'])} |"
        )
    quant = [
        f"{name} {_f(r['int8_vs_fp32_nih_test']['auc_int8'])} vs {_f(r['int8_vs_fp32_nih_test']['auc_fp32'])}"
        for name, r in block["runs"].items()
        if r.get("int8_vs_fp32_nih_test")
    ]
    if quant:
        lines += [
            "",
            "Static int8 quantisation, NIH test AUC int8 vs fp32 ONNX of the same run (the shipped run's fp32 "
            "model is not in this checkout): " + "; ".join(quant) + ".",
        ]
    sp = block["seed_spread"]
    runs = block["seed_runs"]
    lines += [
        "",
        f"Seed spread over the {len(runs)} runs of the shipped recipe ({', '.join(runs)}), mean ± sd (min-max): "
        f"NIH AUC {_range(sp['nih'].get('auc'))}, NIH spec @ sens 0.95 {_range(sp['nih'].get(SPEC))}, "
        f"NIH spec at threshold {_range(sp['nih'].get('specificity_at_threshold'))}; pediatric AUC "
        f"{_range(sp['kermany'].get('auc'))}, pediatric spec @ sens 0.95 {_range(sp['kermany'].get(SPEC))}; "
        f"JSRT normals Non-Urgent {_range(sp['jsrt'].get('specificity_at_threshold'))}.",
    ]
    ens = block.get("ensemble_of_seed_runs")
    if ens:
        lines.append(
            f"Mean score of those runs (an ensemble, not shipped; threshold-free figures): NIH AUC "
            f"{_f(ens['nih'].get('auc'))}, spec @ sens 0.95 {_f(ens['nih'].get(SPEC))}; pediatric AUC "
            f"{_f(ens['kermany'].get('auc'))}, spec @ sens 0.95 {_f(ens['kermany'].get(SPEC))}."
        )
    for name, lo in block.get("leave_one_source_out", {}).items():
        left = lo["left_out"][0]
        t = lo["test"][left]
        lines.append(
            f"Leave-one-source-out `{name}` (trained without {NAMES[left]}): on {NAMES[left]} test AUC "
            f"{_f(t.get('auc', {}).get('left_out_run'))} vs {_f(t.get('auc', {}).get('seed_mean'))} (seed mean), "
            f"spec @ sens 0.95 {_f(t.get(SPEC, {}).get('left_out_run'))} vs {_f(t.get(SPEC, {}).get('seed_mean'))}, "
            f"sens / spec at its own threshold {_f(t.get('sensitivity_at_threshold', {}).get('left_out_run'))} / "
            f"{_f(t.get('specificity_at_threshold', {}).get('left_out_run'))}."
        )
    lines.append("")
    return lines
