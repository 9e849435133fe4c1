"""Leave-one-source-out: which runs were trained without exactly one source, and the table that judges the
generation-3 target on them.

Why a table of its own: the issue selects recipes by the *worst* left-out adult source (a model must keep working
at a hospital it never saw), so the figure to read is the minimum, over the adult sources, of the specificity at
sensitivity 0.95 that a run trained without that source reaches on its test part. The pass / fail beside the
target is computed from those numbers; an adult source no run left out leaves the target unjudged (None), never
passed.
"""

from __future__ import annotations

import math

#: the sources a run can be trained without (JSRT normals are never trained on, so never left out)
TRAINABLE = ("nih", "kermany", "shenzhen")
#: the adult sources the target is about (pediatric rows may appear in the table, but are not judged)
ADULT = ("nih", "shenzhen")
METRIC = "specificity_at_sensitivity_0.95"
#: the issue's target: on every left-out adult source, specificity at sensitivity 0.95 >= this
TARGET = 0.25


def left_out(trained: list[str], reference: list[str]) -> list[str]:
    """The sources of ``reference`` (what the shipped run trained on) a run with ``trained`` sources lacks."""
    return [s for s in TRAINABLE if s in reference and s not in trained]


def _value(row: dict) -> float | None:
    v = row.get(METRIC)
    return v if isinstance(v, (int, float)) and not math.isnan(v) else None


def loso_table(runs: dict[str, dict], leave_out: dict[str, dict]) -> dict:
    """One row per run trained without exactly one source whose test part was scored; the worst adult row.

    ``runs`` are the report's run blocks (``trained_on``, ``test``), ``leave_out`` its ``leave_one_source_out``
    entries (``left_out``). Several runs leaving out the same source each get a row; the worst takes them all."""
    rows = []
    for name, lo in leave_out.items():
        test = runs[name]["test"]
        if len(lo["left_out"]) != 1 or lo["left_out"][0] not in test:
            continue
        src = lo["left_out"][0]
        t = test[src]
        rows.append(
            {
                "left_out": src,
                "adult": src in ADULT,
                "run": name,
                "trained_on": runs[name]["trained_on"],
                "n": t.get("n"),
                "n_urgent": t.get("n_urgent"),
                "auc": t.get("auc"),
                METRIC: t.get(METRIC),
            }
        )
    scored = {src for r in runs.values() for src in r["test"]}
    adult = [s for s in ADULT if s in scored]
    measured = [r for r in rows if r["adult"] and _value(r) is not None]
    not_measured = [s for s in adult if not any(r["left_out"] == s for r in measured)]
    worst = min(measured, key=lambda r: _value(r) or 0.0, default=None)
    value = _value(worst) if worst else None
    if value is not None and value < TARGET:
        passes: bool | None = False
    elif value is None or not_measured:
        passes = None
    else:
        passes = True
    return {
        "metric": METRIC,
        "target": TARGET,
        "adult_sources": adult,
        "rows": rows,
        "not_measured": not_measured,
        "worst_adult": {"source": worst["left_out"], "run": worst["run"], "value": value} if worst else None,
        "passes": passes,
    }
