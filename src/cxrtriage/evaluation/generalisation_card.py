"""The model card's "seed spread and leave-one-source-out" section, from the ``generalisation`` block that
``cxrtriage evaluate-generalisation --update-card`` stores in card.json. Blocks written before Shenzhen, the
leave-one-source-out table or the previous generation existed still render (without those parts), because the card
is rebuilt from whatever card.json holds."""

from __future__ import annotations

from cxrtriage.evaluation.card_format import number as _f

SPEC = "specificity_at_sensitivity_0.95"
TARGETS = ("0.95", "0.98", "0.99")
NAMES = {"nih": "NIH", "kermany": "pediatric", "shenzhen": "Shenzhen", "jsrt": "JSRT"}


def _name(src: str) -> str:
    return NAMES.get(src, src)


def _cells(t: dict, shenzhen: bool) -> str:
    n, p, j = t.get("nih", {}), t.get("kermany", {}), t.get("jsrt", {})
    cells = [
        f"{_f(n.get('auc'))} | {_f(n.get(SPEC))} | "
        f"{_f(n.get('sensitivity_at_threshold'))} / {_f(n.get('specificity_at_threshold'))}",
        f"{_f(p.get('auc'))} | {_f(p.get(SPEC))} | "
        f"{_f(p.get('sensitivity_at_threshold'))} / {_f(p.get('specificity_at_threshold'))}",
    ]
    if shenzhen:
        z = t.get("shenzhen", {})
        cells.append(f"{_f(z.get('auc'))} | {_f(z.get(SPEC))}")
    cells.append(f"{_f(j.get('specificity_at_threshold'))} ({_f(j.get('median_score'))})")
    return " | ".join(cells)


def _header(shenzhen: bool) -> list[str]:
    cols = [
        "run",
        "seed",
        "trained on",
        "NIH AUC",
        "NIH spec @ sens 0.95",
        "NIH sens / spec at threshold",
        "pediatric AUC",
        "pediatric spec @ sens 0.95",
        "pediatric sens / spec at threshold",
        *(("Shenzhen AUC", "Shenzhen spec @ sens 0.95") if shenzhen else ()),
        "JSRT normals Non-Urgent (median)",
    ]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def _tag(name: str, r: dict, shipped: str) -> str:
    notes = ["shipped"] if name == shipped else [] if r["same_recipe_as_shipped"] else ["ablation"]
    members = (r.get("ensemble") or {}).get("members")
    if members:
        notes.append(f"ensemble of {members} seeds")
    return f" ({', '.join(notes)})" if notes else ""


def _range(s: dict | None) -> str:
    if not s or not s.get("n"):
        return "n/a"
    sd = f" ± {s['sd']:.3f}" if s.get("sd") is not None else ""
    return f"{s['mean']:.3f}{sd} ({s['min']:.3f}-{s['max']:.3f})"


def _table_lines(block: dict) -> list[str]:
    shz = "shenzhen" in (block.get("sources") or {})
    lines = _header(shz)
    for name, r in block["runs"].items():
        trained = ", ".join(_name(s) for s in r["trained_on"])
        lines.append(
            f"| {name}{_tag(name, r, block['shipped'])} | {r['seed']} | {trained} | {_cells(r['test'], shz)} |"
        )
    prev = block.get("previous_generation")
    if prev:
        same = ", the same model as shipped" if prev.get("same_model_as_shipped") else ""
        trained = ", ".join(_name(s) for s in prev.get("trained_on") or [])
        lines.append(
            f"| {prev['name']} (previous{same}) | {prev.get('seed')} | {trained} | {_cells(prev['test'], shz)} |"
        )
    return lines


def _high_sensitivity_line(block: dict) -> list[str]:
    """Specificity at sensitivity 0.95 / 0.98 / 0.99 of the shipped run (reports before they were recorded: none)."""
    test = block["runs"][block["shipped"]]["test"]
    parts = [
        f"{_name(src)} {' / '.join(_f(t.get(f'specificity_at_sensitivity_{k}')) for k in TARGETS)}"
        for src, t in test.items()
        if "specificity_at_sensitivity_0.98" in t
    ]
    if not parts:
        return []
    return [
        "",
        "Shipped run, specificity at sensitivity 0.95 / 0.98 / 0.99 (threshold set on the same test films, an "
        "oracle figure): " + "; ".join(parts) + ".",
    ]


def _seed_lines(block: dict) -> list[str]:
    sp = block["seed_spread"]
    runs = block["seed_runs"]

    def src(key: str) -> dict:
        return sp.get(key) or {}

    shz = (
        f"; Shenzhen AUC {_range(src('shenzhen').get('auc'))}, Shenzhen spec @ sens 0.95 "
        f"{_range(src('shenzhen').get(SPEC))}"
        if "shenzhen" in sp
        else ""
    )
    lines = [
        "",
        f"Seed spread over the {len(runs)} runs of the shipped recipe ({', '.join(runs)}), mean ± sd (min-max): "
        f"NIH AUC {_range(src('nih').get('auc'))}, NIH spec @ sens 0.95 {_range(src('nih').get(SPEC))}, "
        f"NIH spec at threshold {_range(src('nih').get('specificity_at_threshold'))}; pediatric AUC "
        f"{_range(src('kermany').get('auc'))}, pediatric spec @ sens 0.95 {_range(src('kermany').get(SPEC))}{shz}; "
        f"JSRT normals Non-Urgent {_range(src('jsrt').get('specificity_at_threshold'))}.",
    ]
    ens = block.get("ensemble_of_seed_runs")
    if ens:
        figures = [
            f"{_name(s)} AUC {_f(ens[s].get('auc'))}, spec @ sens 0.95 {_f(ens[s].get(SPEC))}"
            for s in ("nih", "kermany", "shenzhen")
            if s in ens
        ]
        shipped_ens = (block["runs"][block["shipped"]].get("ensemble") or {}).get("members")
        what = "an ensemble of the seed runs" if shipped_ens else "an ensemble, not shipped"
        lines.append(f"Mean score of those runs ({what}; threshold-free figures): " + "; ".join(figures) + ".")
    return lines


def _left_out_lines(block: dict) -> list[str]:
    lines = []
    for name, lo in block.get("leave_one_source_out", {}).items():
        without = ", ".join(_name(s) for s in lo["left_out"])
        for left in lo["left_out"]:
            t = lo["test"].get(left)
            if t is None:
                continue
            lines.append(
                f"Leave-one-source-out `{name}` (trained without {without}): on {_name(left)} test AUC "
                f"{_f(t.get('auc', {}).get('left_out_run'))} vs {_f(t.get('auc', {}).get('seed_mean'))} (seed "
                f"mean), spec @ sens 0.95 {_f(t.get(SPEC, {}).get('left_out_run'))} vs "
                f"{_f(t.get(SPEC, {}).get('seed_mean'))}, sens / spec at its own threshold "
                f"{_f(t.get('sensitivity_at_threshold', {}).get('left_out_run'))} / "
                f"{_f(t.get('specificity_at_threshold', {}).get('left_out_run'))}."
            )
    return lines


def loso_lines(table: dict | None) -> list[str]:
    """The leave-one-source-out table and the worst left-out adult source against the target."""
    if not table:
        return []
    target = table["target"]
    lines = [
        "",
        "Leave-one-source-out table: each run was trained without the source of its row and scored on that "
        f"source's test part. Target: specificity at sensitivity 0.95 >= {_f(target, 2)} on every left-out adult "
        "source.",
        "",
        "| left-out source | run | trained on | n (urgent) | AUC | spec @ sens 0.95 |",
        "|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        kind = "" if r["adult"] else " (not adult: not judged)"
        trained = ", ".join(_name(s) for s in r["trained_on"])
        lines.append(
            f"| {_name(r['left_out'])}{kind} | {r['run']} | {trained} | {r['n']} ({r['n_urgent']}) | "
            f"{_f(r['auc'])} | {_f(r[table['metric']])} |"
        )
    worst = table.get("worst_adult")
    verdict = {True: "meets the target", False: "misses the target", None: "target not judged"}[table["passes"]]
    missing = table.get("not_measured") or []
    gap = f" (no run left out {', '.join(_name(s) for s in missing)})" if missing else ""
    lines.append("")
    if worst:
        lines.append(
            f"Worst left-out adult source: {_name(worst['source'])} (`{worst['run']}`), spec @ sens 0.95 "
            f"{_f(worst['value'])} vs target {_f(target, 2)}: {verdict}{gap}."
        )
    else:
        lines.append(f"Worst left-out adult source: n/a vs target {_f(target, 2)}: {verdict}{gap}.")
    return lines


def generalisation_lines(block: dict | None) -> list[str]:
    if not block:
        return []
    shz = "Shenzhen: the adult tuberculosis test films. " if "shenzhen" in (block.get("sources") or {}) else ""
    n = ((block["runs"][block["shipped"]]["test"].get("jsrt")) or {}).get("n")
    n_jsrt = f"{n} " if n else ""
    prev = block.get("previous_generation")
    prev_note = (
        f" `{prev['name']} (previous)`: the shipped run of `{prev['file']}` ({prev.get('created')}), measured the "
        "same way."
        if prev
        else ""
    )
    lines = [
        "## Seed spread and leave-one-source-out (held-out test patients)",
        f"Measured by `{block['command']}` on {block['created']}: every run is an exported int8 bundle scored "
        f"through the user-facing pipeline with its own calibration and threshold. {shz}JSRT: the {n_jsrt}normal "
        f"test films of a site no run trains on (share Non-Urgent, median score).{prev_note}",
        "",
        *_table_lines(block),
    ]
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
    lines += _high_sensitivity_line(block)
    lines += _seed_lines(block)
    lines += _left_out_lines(block)
    lines += loso_lines(block.get("loso_table"))
    lines.append("")
    return lines
