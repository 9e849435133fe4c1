"""Compare a recent window of monitor records with a reference, figure by figure, each against its limit.

The reference is a site profile's commissioning sample (``SITE_DIR/reference.jsonl``) when a site is in use, or a
file given by the user, else the first results of use (:meth:`MonitorStore.first_use`); every report says which
(:class:`Reference.description`). The figures (:func:`compare`): the score's distribution (population stability
index on fixed bins, and a two-sample Kolmogorov-Smirnov test naming its implementation), the urgent, review and
refusal rates (a change of at least a set number of points that a two-proportion test also finds, p < 0.01), the
highest similarity to a training case and the films' mean and spread of grey (a standardised mean difference of at
least 0.5), and reader agreement when the caller passes the rates (the feedback's ``agreement`` dict: overall,
urgent, non_urgent, n). A figure past its limit is an **alert** with one sentence that says what moved, by how much,
against what, and what to check. With too few results on either side a figure says so instead of judging.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cxrtriage.monitoring.figures import Figure, Limits, Reference, Report, window_words
from cxrtriage.monitoring.record import record_time
from cxrtriage.monitoring.stats import ks_two_sample, psi, psi_p_value, smd, two_proportion_p

__all__ = ["Figure", "Limits", "Reference", "Report", "compare", "records_between", "window_words"]


def compare(
    reference: Reference,
    recent: Sequence[Mapping[str, Any]],
    *,
    window_start: dt.datetime,
    window_end: dt.datetime,
    agreement: Mapping[str, Any] | None = None,
    reference_agreement: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> Report:
    """Every figure of ``recent`` against ``reference`` (records as :func:`parse_record` returns them)."""
    words = window_words(window_end - window_start)
    report = Report(reference, window_start, window_end, words, [dict(r) for r in recent])
    judge = _Judge(reference, report.recent, words, limits or Limits())
    report.figures += judge.score_distribution(report)
    report.figures += [judge.urgent_rate(), judge.review_rate(), judge.refusal_rate()]
    report.figures += judge.continuous()
    if agreement:
        report.figures += judge.agreement(agreement, reference_agreement)
    if not reference.complete:
        report.notes.append(
            f"the reference is still being collected ({len(reference.records)} results so far): figures are "
            "judged once it is complete"
        )
    models = {r["model_sha256"] for r in report.recent} | {r["model_sha256"] for r in reference.records}
    if len(models - {""}) > 1:
        report.notes.append(f"the records come from {len(models - {''})} different models: compare with care")
    return report


class _Judge:
    """The figures of one comparison (shared inputs kept once)."""

    def __init__(self, reference: Reference, recent: list[dict[str, Any]], words: str, limits: Limits) -> None:
        self.ref_all, self.new_all = reference.records, recent
        self.ref = [r for r in reference.records if r["outcome"] == "triaged"]
        self.new = [r for r in recent if r["outcome"] == "triaged"]
        self.reference, self.words, self.limits = reference, words, limits

    def _enough(self, n_ref: int, n_new: int, minimum: int | None = None) -> bool:
        need = self.limits.min_results if minimum is None else minimum
        return self.reference.complete and n_ref >= need and n_new >= need

    def _too_few(self, key: str, name: str, limit: str, n_ref: int, n_new: int, ref: Any, new: Any) -> Figure:
        why = (
            "the reference is still being collected"
            if not self.reference.complete
            else f"{n_new} in the window, {n_ref} in the reference; {self.limits.min_results} needed in each"
        )
        return Figure(
            key,
            name,
            ref,
            new,
            limit,
            "too_few",
            f"{name}: too few results to judge ({why})",
            n_reference=n_ref,
            n_recent=n_new,
        )

    def score_distribution(self, report: Report) -> list[Figure]:
        ref, new = [r["score"] for r in self.ref], [r["score"] for r in self.new]
        lim = self.limits
        psi_limit = f"PSI under {lim.score_psi:g} (or within sampling noise, p >= {lim.ks_p:g})"
        ks_limit = f"KS p >= {lim.ks_p:g} or D < {lim.ks_d:g}"
        mean_ref, mean_new = _mean(ref), _mean(new)
        if not self._enough(len(ref), len(new)):
            return [
                self._too_few(
                    "score_psi", "score distribution (PSI)", psi_limit, len(ref), len(new), mean_ref, mean_new
                ),
                self._too_few(
                    "score_ks", "score distribution (KS test)", ks_limit, len(ref), len(new), mean_ref, mean_new
                ),
            ]
        value = psi(ref, new)
        psi_p = psi_p_value(value, len(ref), len(new))
        ks = ks_two_sample(ref, new)
        report.ks_method = ks.method
        advice = "the model is seeing different films; check the source, the modality and the protocol"
        moved = f"mean score {mean_new:.2f} {self.words} against {mean_ref:.2f} {self.reference.words}"
        psi_alert = value >= lim.score_psi and psi_p < lim.ks_p
        ks_alert = ks.p_value < lim.ks_p and ks.statistic >= lim.ks_d
        return [
            Figure(
                "score_psi",
                "score distribution (PSI)",
                mean_ref,
                mean_new,
                psi_limit,
                "alert" if psi_alert else "ok",
                f"score distribution moved (PSI {value:.2f}, limit {lim.score_psi:g}; {moved}): {advice}"
                if psi_alert
                else f"score distribution within the limit (PSI {value:.2f}, p {psi_p:.2g}; {moved})",
                statistic=value,
                p_value=psi_p,
                n_reference=len(ref),
                n_recent=len(new),
            ),
            Figure(
                "score_ks",
                "score distribution (KS test)",
                mean_ref,
                mean_new,
                ks_limit,
                "alert" if ks_alert else "ok",
                f"score distribution differs from the reference (KS D {ks.statistic:.2f}, p {ks.p_value:.1g}): {advice}"
                if ks_alert
                else f"score distribution: KS D {ks.statistic:.2f}, p {ks.p_value:.2g}",
                statistic=ks.statistic,
                p_value=ks.p_value,
                n_reference=len(ref),
                n_recent=len(new),
            ),
        ]

    def _rate(
        self,
        key: str,
        name: str,
        hits: tuple[int, int, int, int],
        points: float,
        advice: tuple[str, str],
        minimum: int | None = None,
    ) -> Figure:
        k_ref, n_ref, k_new, n_new = hits
        ref = k_ref / n_ref if n_ref else None
        new = k_new / n_new if n_new else None
        limit = f"a change under {points * 100:g} points (or not significant, p >= {self.limits.rate_p:g})"
        if not self._enough(n_ref, n_new, minimum) or ref is None or new is None:
            return self._too_few(key, name, limit, n_ref, n_new, ref, new)
        p = two_proportion_p(k_ref, n_ref, k_new, n_new)
        alert = abs(new - ref) >= points and p < self.limits.rate_p
        text = f"{name} {new:.0%} {self.words} against {ref:.0%} {self.reference.words}"
        message = f"{text}: {advice[0] if new > ref else advice[1]}" if alert else f"{text}: within the limit"
        return Figure(
            key,
            name,
            ref,
            new,
            limit,
            "alert" if alert else "ok",
            message,
            statistic=new - ref,
            p_value=p,
            n_reference=n_ref,
            n_recent=n_new,
        )

    def _hits(self, key: str, value: Any, *, refusals: bool = False) -> tuple[int, int, int, int]:
        """(matches, records) in the reference and in the window: triaged results, or every record with refusals."""
        ref, new = (self.ref_all, self.new_all) if refusals else (self.ref, self.new)
        return _count(ref, key, value), len(ref), _count(new, key, value), len(new)

    def urgent_rate(self) -> Figure:
        hits = self._hits("label", "Urgent")
        return self._rate(
            "urgent_rate",
            "urgent rate",
            hits,
            self.limits.urgent_points,
            (
                "check for a new modality or protocol, or a change in which patients are sent",
                "check that urgent studies still reach triage, and for a new modality or protocol",
            ),
        )

    def review_rate(self) -> Figure:
        hits = self._hits("needs_review", True)
        return self._rate(
            "review_rate",
            "review rate",
            hits,
            self.limits.review_points,
            (
                "more borderline or atypical films than before; check the image source and the acquisition",
                "fewer borderline or atypical films than before; check for a change in the image source",
            ),
        )

    def refusal_rate(self) -> Figure:
        hits = self._hits("outcome", "refused", refusals=True)
        return self._rate(
            "refusal_rate",
            "refusal rate",
            hits,
            self.limits.refusal_points,
            (
                "check what is being sent (lateral views, other body parts, a new modality or image processing)",
                "the gate refuses less than before; check what is being sent",
            ),
        )

    def continuous(self) -> list[Figure]:
        specs = (
            (
                "similarity",
                "similarity to training cases",
                lambda r: r["similarity"],
                "the films resemble the training cases more than before; check what changed in the source",
                "the films resemble the training cases less than before: a new population, device or image processing, "
                "on which the model was never measured",
            ),
            (
                "image_mean",
                "mean grey of the films",
                lambda r: (r["image"] or {}).get("mean"),
                "the films are brighter than before; check the modality's processing and export (windowing, inversion)",
                "the films are darker than before; check the modality's processing and export (windowing, inversion)",
            ),
            (
                "image_std",
                "contrast (spread of grey) of the films",
                lambda r: (r["image"] or {}).get("std"),
                "the films have more contrast than before; check the modality's processing and export",
                "the films have less contrast than before; check the modality's processing and export",
            ),
            (
                "image_size",
                "image size (longest side, pixels)",
                lambda r: max((r["image"] or {}).get("width", 0), (r["image"] or {}).get("height", 0)) or None,
                "the films are larger than before: a new device or export setting",
                "the films are smaller than before: a new device, or images downsampled before they reach triage",
            ),
        )
        return [self._shift(*spec) for spec in specs]

    def _shift(self, key: str, name: str, get: Any, up: str, down: str) -> Figure:
        ref = [v for v in map(get, self.ref) if v is not None]
        new = [v for v in map(get, self.new) if v is not None]
        limit = f"a shift under {self.limits.smd:g} pooled standard deviations"
        mean_ref, mean_new = _mean(ref), _mean(new)
        if not self._enough(len(ref), len(new)):
            return self._too_few(key, name, limit, len(ref), len(new), mean_ref, mean_new)
        d = smd(ref, new)
        alert = abs(d) >= self.limits.smd
        digits = 0 if key == "image_size" else 2  # pixels are whole
        text = f"{name} {mean_new:.{digits}f} {self.words} against {mean_ref:.{digits}f} {self.reference.words}"
        shift = f"shift {d:+.1f} SD" if math.isfinite(d) else "the reference never varied"
        message = f"{text} ({shift}): {up if d > 0 else down}" if alert else f"{text}: within the limit"
        return Figure(
            key,
            name,
            mean_ref,
            mean_new,
            limit,
            "alert" if alert else "ok",
            message,
            statistic=d,
            n_reference=len(ref),
            n_recent=len(new),
        )

    def agreement(self, now: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[Figure]:
        """Reader agreement (the feedback's ``agreement`` dict): Non-Urgent calls readers disagree with are possible
        missed urgent films, so that rate has an absolute floor; every rate is also judged against the reference's
        when one is given."""
        n = int(now.get("n") or 0)
        figures = []
        for key, name in (
            ("overall", "reader agreement"),
            ("urgent", "reader agreement with Urgent calls"),
            ("non_urgent", "reader agreement with Non-Urgent calls"),
        ):
            value, old = now.get(key), (before or {}).get(key)
            if value is None:
                continue
            floor = self.limits.non_urgent_agreement if key == "non_urgent" else None
            limit = (
                " and ".join(
                    x
                    for x in (
                        f"at least {floor:.0%}" if floor else "",
                        f"a fall under {self.limits.agreement_points * 100:g} points" if old is not None else "",
                    )
                    if x
                )
                or "reported only"
            )
            fig = Figure(
                f"agreement_{key}",
                name,
                old,
                float(value),
                limit,
                "ok",
                f"{name} {float(value):.0%} ({n} assessments)",
                n_recent=n,
            )
            if n < self.limits.min_assessments:
                fig.status, fig.message = (
                    "too_few",
                    (f"{name}: too few assessments to judge ({n}; {self.limits.min_assessments} needed)"),
                )
            elif (floor is not None and value < floor) or (
                old is not None and float(old) - float(value) >= self.limits.agreement_points
            ):
                against = f" against {float(old):.0%} {self.reference.words}" if old is not None else ""
                fig.status, fig.message = (
                    "alert",
                    (
                        f"{name} {float(value):.0%} {self.words}{against} ({n} assessments): readers disagree with the "
                        "model more often; review the disagreements and consider re-commissioning on the readers' "
                        "labels (cxrtriage feedback export)"
                    ),
                )
            figures.append(fig)
        return figures


def _count(records: Sequence[Mapping[str, Any]], key: str, value: Any) -> int:
    return sum(1 for r in records if r.get(key) == value)


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def records_between(records: Sequence[Mapping[str, Any]], start: dt.datetime, end: dt.datetime) -> list[dict]:
    """The records with start < time <= end."""
    return [dict(r) for r in records if start < record_time(r) <= end]
