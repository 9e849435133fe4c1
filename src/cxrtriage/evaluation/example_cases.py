"""Pick a small, varied set of cases to show or to send to raters: hits, misses and borderline calls.

A page of ten true positives says little; a reader (or a rater) needs to see what the model gets wrong and what it
sends to review. Deterministic: the same predictions always give the same cases.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Categories in the order they are filled, then cycled until ``n`` cases are picked.
CATEGORIES = ("true_positive", "true_negative", "false_positive", "false_negative", "needs_review")


def outcome(truth_urgent: bool, label: str, needs_review: bool) -> str:
    """The category of one case: needs_review first (what the reader sees), then the confusion-matrix cell."""
    if needs_review:
        return "needs_review"
    called = label == "Urgent"
    if called:
        return "true_positive" if truth_urgent else "false_positive"
    return "false_negative" if truth_urgent else "true_negative"


def pick_cases(
    case_ids: Sequence[str],
    truth_urgent: Sequence[bool],
    labels: Sequence[str],
    needs_review: Sequence[bool],
    groups: Sequence[str],
    n: int = 10,
) -> list[tuple[str, str]]:
    """Up to ``n`` (case id, category) pairs, spread over groups (e.g. datasets) and categories.

    Round-robin over (group, category) cells in input order, so each group contributes its hits, misses and
    review cases before any cell gives a second case.
    """
    if not (len(case_ids) == len(truth_urgent) == len(labels) == len(needs_review) == len(groups)):
        raise ValueError("case_ids, truth_urgent, labels, needs_review and groups must have the same length")
    cells: dict[tuple[str, str], list[str]] = {}
    group_order: list[str] = []
    for cid, t, lab, rev, g in zip(case_ids, truth_urgent, labels, needs_review, groups):
        if g not in group_order:
            group_order.append(g)
        cells.setdefault((g, outcome(bool(t), lab, bool(rev))), []).append(cid)
    order = [(g, c) for c in CATEGORIES for g in group_order]
    picked: list[tuple[str, str]] = []
    depth = 0
    while len(picked) < n and any(len(cells.get(k, [])) > depth for k in order):
        for key in order:
            ids = cells.get(key, [])
            if len(ids) > depth and len(picked) < n:
                picked.append((ids[depth], key[1]))
        depth += 1
    return picked
