"""The summary of filled rating sheets (:mod:`cxrtriage.evaluation.clinician_rating`): agreement with the model's
label with Wilson 95 % intervals (sensible at the small counts a rating round gives), explanation quality and
crops-useful rate, overall and by rater role, model label and review flag."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from cxrtriage.evaluation.clinician_rating_read import Rating
from cxrtriage.evaluation.clinician_rating_sheet import RatingSheetError

_Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion k/n: sensible at small n and at 0 % or 100 %, unlike k/n +- 2 SE."""
    if n <= 0:
        return (None, None)
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n], got k={k}, n={n}")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _proportion(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"n": n, "k": k, "rate": k / n if n else None, "ci95_wilson": [lo, hi]}


def _block(rs: list[Rating]) -> dict[str, Any]:
    quality = [r.explanation_quality for r in rs if r.explanation_quality is not None]
    crops = [r.crops_useful for r in rs if r.crops_useful in ("yes", "no")]
    return {
        "n_rated": len(rs),
        "agreement": _proportion(sum(bool(r.agrees_with_label) for r in rs), len(rs)),
        "explanation_quality": {
            "n": len(quality),
            "mean": statistics.fmean(quality) if quality else None,
            "median": statistics.median(quality) if quality else None,
            "counts": {str(v): quality.count(v) for v in range(1, 6)},
        },
        "crops_useful": {
            **_proportion(crops.count("yes"), len(crops)),
            "n_no_crops": sum(r.crops_useful == "no_crops" for r in rs),
            "n_unanswered": sum(r.crops_useful is None for r in rs),
        },
    }


def summarise_ratings(ratings: Iterable[Rating]) -> dict[str, Any]:
    """Counts, agreement with the model's label (Wilson 95 % CI), explanation quality (mean, median, counts),
    crops-useful rate, each overall, by rater role, by model label and by needs_review; disagreeing case ids.

    Pass the ratings of several sheets (several raters) together; agreement is per rating, not per case.
    """
    allr = list(ratings)
    rated = [r for r in allr if r.rated]
    if not rated:
        raise RatingSheetError("no ratings filled in: nothing to summarise")

    def by(key: Any) -> dict[str, Any]:
        groups: dict[str, list[Rating]] = {}
        for r in rated:
            groups.setdefault(key(r), []).append(r)
        return {g: _block(groups[g]) for g in sorted(groups)}

    return {
        "n_rows": len(allr),
        "n_rated": len(rated),
        "n_unrated": len(allr) - len(rated),
        "n_cases_rated": len({r.case_id for r in rated}),
        "n_sheets": len({r.source.rsplit(":", 1)[0] for r in allr}),
        **_block(rated),
        "by_rater_role": by(lambda r: r.rater_role or "unknown"),
        "by_model_label": by(lambda r: r.label),
        "by_needs_review": by(lambda r: "needs_review" if r.needs_review else "no_review_flag"),
        "disagreements": [
            {
                "case_id": r.case_id,
                "image_id": r.image_id,
                "label": r.label,
                "rater_role": r.rater_role,
                "comment": r.comment,
            }
            for r in rated
            if r.agrees_with_label is False
        ],
    }


def _pct(p: dict[str, Any]) -> str:
    if p["rate"] is None:
        return "n/a (0 answers)"
    lo, hi = p["ci95_wilson"]
    return f"{p['k']}/{p['n']} = {p['rate']:.0%}  [95% CI {lo:.0%}-{hi:.0%}]"


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text (``cxrtriage ratings summarise``)."""
    q = s["explanation_quality"]
    lines = [
        f"rated rows: {s['n_rated']} of {s['n_rows']} ({s['n_unrated']} unrated) from {s['n_sheets']} sheet(s)",
        f"{'agrees with the model label':<32}{_pct(s['agreement'])}",
        f"{'explanation quality (1-5)':<32}"
        + (
            f"mean {q['mean']:.2f}, median {q['median']:g} (n {q['n']}; "
            + ", ".join(f"{k}: {v}" for k, v in q["counts"].items())
            + ")"
            if q["n"]
            else "no answers"
        ),
        f"{'crops useful':<32}{_pct(s['crops_useful'])}  ({s['crops_useful']['n_no_crops']} cases without crops)",
    ]
    for title, key in (
        ("by rater role", "by_rater_role"),
        ("by model label", "by_model_label"),
        ("by review flag", "by_needs_review"),
    ):
        lines += ["", f"{title}:"]
        for g, b in s[key].items():
            lines.append(f"  {g:<22}agreement {_pct(b['agreement'])}")
    if s["disagreements"]:
        lines += ["", f"disagreements ({len(s['disagreements'])}):"]
        lines += [
            f"  {d['case_id']} ({d['image_id']}, model: {d['label']}, {d['rater_role']}): {d['comment'] or '-'}"
            for d in s["disagreements"]
        ]
    return "\n".join(lines)
