"""The fits of ``cxrtriage commission`` and their honest figures, on arrays (no images: the runner in
:mod:`cxrtriage.evaluation.commissioning` triages the films and hands over their base logits and embeddings).

A site's operating point is fitted exactly as the bundled model's (:mod:`cxrtriage.train.operating_point`): Platt
scaling (:func:`cxrtriage.backends.calibration.fit_platt`) on the base logit, the highest threshold keeping the
site's sensitivity at the target (:func:`metrics.threshold_for_sensitivity`), and the review band of
:func:`cxrtriage.train.operating_point.review_band`. The optional site head is a strongly regularised logistic
regression on the frozen embedding and the logit, calibrated and thresholded on its own out-of-fold outputs (a head
scores its own training films too well), and adopted only when the nested cross-validation below says it beats
recalibration alone.

Every figure of a fitted rule is measured by stratified K-fold cross-validation inside the sample: each fold's
films are labelled by a calibration, threshold and review band fitted on the other folds (labels as results give
them: :func:`cxrtriage.decision.decide`), and the folds' decisions are pooled. The base model's figures need no
fit and use the whole sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrtriage import decision
from cxrtriage.backends.calibration import fit_platt, platt
from cxrtriage.evaluation import metrics
from cxrtriage.site.profile import SiteHead
from cxrtriage.train.operating_point import review_band

#: fewer labelled films than this in either class is an error, not a profile (a threshold for 95 % sensitivity on
#: 19 urgent films is set by a single film)
MIN_PER_CLASS = 20
N_FOLDS = 5
#: inverse regularisation strengths the head may choose from (standardised features, 385 of them): strong only
HEAD_CS = (0.0003, 0.001, 0.003, 0.01, 0.03)
#: the specificities reported at these sensitivities
HIGH_SENSITIVITIES = (0.95, 0.98, 0.99)


class TooFewCases(ValueError):
    """Fewer than :data:`MIN_PER_CLASS` films of a class: no profile is written (the CLI exits 2)."""


@dataclass(frozen=True)
class Cases:
    """The triaged films of a sample: base logit, bundled score, embedding (None: the model gives none), truth."""

    logits: np.ndarray
    base_scores: np.ndarray
    embeddings: np.ndarray | None
    labels: np.ndarray

    def take(self, idx: np.ndarray) -> Cases:
        emb = self.embeddings[idx] if self.embeddings is not None else None
        return Cases(self.logits[idx], self.base_scores[idx], emb, self.labels[idx])


@dataclass(frozen=True)
class SiteFit:
    """A fitted operating point: Platt ``a``, ``b`` on the base logit (or on ``head``'s decision value), threshold,
    review band."""

    a: float
    b: float
    threshold: float
    review_band: tuple[float, float]
    head: SiteHead | None = None

    def scores(self, cases: Cases) -> np.ndarray:
        raw = cases.logits if self.head is None else head_values(self.head, cases)
        return np.asarray(platt(raw, self.a, self.b), dtype=np.float64)


def check_sample(labels: np.ndarray) -> None:
    n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        raise TooFewCases(
            f"the sample has {n_pos} urgent and {n_neg} non-urgent films that could be triaged; commissioning needs "
            f"at least {MIN_PER_CLASS} of each (label more of the site's films): no profile was written"
        )


def head_values(head: SiteHead, cases: Cases) -> np.ndarray:
    if cases.embeddings is None:
        raise ValueError("a site head needs the classifier's embeddings")
    return np.array([head.logit(e, float(z)) for e, z in zip(cases.embeddings, cases.logits)])


def _operating_point(raw: np.ndarray, labels: np.ndarray, target: float) -> tuple[float, float, float, list[float]]:
    a, b = fit_platt(raw, labels)
    scores = np.asarray(platt(raw, a, b))
    threshold = metrics.threshold_for_sensitivity(labels, scores, target)
    return a, b, threshold, review_band(labels, scores, threshold, target=target)


def _folds(labels: np.ndarray, n_folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    k = int(min(n_folds, labels.sum(), len(labels) - labels.sum()))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)


def fit_site(cases: Cases, target: float, *, head: bool = False, seed: int = 0) -> SiteFit:
    """The site's operating point on ``cases``: recalibration alone, or (``head``) a site head first."""
    if not head:
        a, b, threshold, band = _operating_point(cases.logits, cases.labels, target)
        return SiteFit(a, b, threshold, (band[0], band[1]))
    from sklearn.linear_model import LogisticRegression

    if cases.embeddings is None:
        raise ValueError("the classifier gives no embedding: no site head can be fitted")
    x = np.column_stack([cases.embeddings, cases.logits]).astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z, y = (x - mean) / scale, cases.labels
    folds = list(_folds(y, N_FOLDS, seed))

    def out_of_fold(c: float) -> np.ndarray:
        values = np.empty(len(y))
        for tr, te in folds:
            values[te] = LogisticRegression(C=c, max_iter=2000).fit(z[tr], y[tr]).decision_function(z[te])
        return values

    def log_loss(values: np.ndarray) -> float:
        return float(np.mean(np.logaddexp(0.0, np.where(y == 1, -values, values))))

    # the inner choice of the strength and the head's out-of-fold decision values, which Platt is fitted to
    tried = {c: out_of_fold(c) for c in HEAD_CS}
    c = min(tried, key=lambda k: log_loss(tried[k]))
    oof = tried[c]
    final = LogisticRegression(C=c, max_iter=2000).fit(z, y)
    site_head = SiteHead(mean=mean, scale=scale, weights=final.coef_[0].astype(np.float64), bias=final.intercept_[0])
    a, b, threshold, band = _operating_point(oof, y, target)
    return SiteFit(a, b, threshold, (band[0], band[1]), site_head)


@dataclass(frozen=True)
class OutOfFold:
    """Each film scored and labelled by the fit of the other folds."""

    scores: np.ndarray
    urgent: np.ndarray  # labelled Urgent (threshold or review band)
    review: np.ndarray  # needs_review (in the review band)
    thresholds: list[float]


def cross_validate(cases: Cases, target: float, *, head: bool = False, seed: int = 0) -> OutOfFold:
    n = len(cases.labels)
    scores, urgent, review = np.empty(n), np.zeros(n, bool), np.zeros(n, bool)
    thresholds = []
    for tr, te in _folds(cases.labels, N_FOLDS, seed):
        fit = fit_site(cases.take(tr), target, head=head, seed=seed)
        scores[te] = fit.scores(cases.take(te))
        for i in te:
            d = decision.decide(float(scores[i]), fit.threshold, fit.review_band)
            urgent[i], review[i] = d.label == decision.URGENT, d.needs_review
        thresholds.append(fit.threshold)
    return OutOfFold(scores, urgent, review, thresholds)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a proportion k / n."""
    from scipy.stats import beta

    alpha = 1.0 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def more_urgent_needed(found: int, n_urgent: int, target: float, *, limit: int = 100_000) -> dict:
    """How many more urgent films the sample needs for the exact lower bound of the sensitivity to reach
    ``target``: if every new one is found (the least it can take), and if they are found at the observed rate
    (None when that rate is not above the target: no sample size would do)."""

    def needed(rate: float | None) -> int | None:
        for extra in range(limit + 1):
            n = n_urgent + extra
            k = found + extra if rate is None else int(np.floor(rate * n))
            if clopper_pearson(k, n)[0] >= target:
                return extra
        return None

    rate = found / n_urgent
    return {
        "if_all_found": needed(None),
        "at_observed_rate": needed(rate) if rate > target else None,
        "observed_rate": rate,
    }


def _rates(labels: np.ndarray, urgent: np.ndarray, review: np.ndarray | None = None) -> dict:
    op = metrics.operating_point(labels, urgent.astype(np.float64), 0.5).to_dict()
    tp, fn, tn, fp = (int(op[k] or 0) for k in ("tp", "fn", "tn", "fp"))
    op.pop("threshold")
    op["sensitivity_ci95"] = list(clopper_pearson(tp, tp + fn))
    op["specificity_ci95"] = list(clopper_pearson(tn, tn + fp))
    op["urgent_rate"] = float(urgent.mean())
    if review is not None:
        op["review_rate"] = float(review.mean())
    return op


def _ranking(labels: np.ndarray, scores: np.ndarray, seed: int, order: np.ndarray | None = None) -> dict:
    """AUC (bootstrap CI) and specificity at high sensitivities of ``order`` (default ``scores``: what ranks the
    films), ECE of ``scores`` (the calibrated probabilities)."""
    rank = scores if order is None else order
    lo, hi = metrics.bootstrap_auc_ci(labels, rank, n_boot=2000, seed=seed)
    return {
        "auc": metrics.roc_auc(labels, rank),
        "auc_ci95": [lo, hi],
        "specificity_at_sensitivity": {
            f"{t:.2f}": metrics.specificity_at_sensitivity(labels, rank, t) for t in HIGH_SENSITIVITIES
        },
        "ece": metrics.expected_calibration_error(labels, scores),
    }


def figures(
    cases: Cases, base: tuple[float, tuple[float, float]], target: float, *, head: str, seed: int = 0
) -> tuple[dict, dict[str, OutOfFold]]:
    """The commissioning figures: the base model's operating point (``base``: threshold, review band) on the whole
    sample, recalibration alone and (``head`` = "auto") the site head cross-validated, which of the two the profile
    adopts, and the sensitivity's interval with the urgent films the lower bound still needs; and each candidate's
    out-of-fold scores and labels (for the report's plots)."""
    y = cases.labels
    base_labels = [decision.decide(float(s), base[0], base[1]) for s in cases.base_scores]
    out: dict = {
        "n": int(len(y)),
        "n_urgent": int(y.sum()),
        "n_non_urgent": int(len(y) - y.sum()),
        "target_sensitivity": target,
        "folds": int(min(N_FOLDS, y.sum(), len(y) - y.sum())),
        "base": {
            "how": "the bundled operating point on every film of the sample (nothing fitted here)",
            "threshold": base[0],
            "review_band": list(base[1]),
            **_ranking(y, cases.base_scores, seed),
            **_rates(
                y,
                np.array([d.label == decision.URGENT for d in base_labels]),
                np.array([d.needs_review for d in base_labels]),
            ),
        },
    }
    candidates = {"recalibration": False} | ({"site_head": True} if head == "auto" else {})
    folds: dict[str, OutOfFold] = {}
    for name, with_head in candidates.items():
        oof = folds[name] = cross_validate(cases, target, head=with_head, seed=seed)
        out[name] = {
            "how": f"{out['folds']}-fold stratified cross-validation inside the sample: each fold labelled by a "
            "calibration, threshold and review band fitted on the other folds",
            "fold_thresholds": oof.thresholds,
            # recalibration is a monotone map of the logit, so it ranks the films as the base model does; pooling
            # the folds' separately fitted maps would mix five scales and blur that ranking, so it is not pooled
            "ranking": "the base model's (recalibration keeps its order)"
            if not with_head
            else "the folds' out-of-fold scores, pooled",
            **_ranking(y, oof.scores, seed, order=None if with_head else cases.logits),
            **_rates(y, oof.urgent, oof.review),
        }
    out["adopted"] = _adopted(out)
    chosen = out[out["adopted"]]
    tp, n_pos = int(chosen["tp"]), int(y.sum())
    out["sensitivity"] = {
        "of": f"{out['adopted']}, cross-validated",
        "found": tp,
        "urgent": n_pos,
        "value": tp / n_pos,
        "ci95": list(clopper_pearson(tp, n_pos)),
        "lower_bound_reaches_target": clopper_pearson(tp, n_pos)[0] >= target,
        "more_urgent_needed": more_urgent_needed(tp, n_pos, target),
    }
    return out, folds


def _adopted(out: dict) -> str:
    """The site head only when, cross-validated, it ranks better (AUC) and labels at least as specifically at the
    site's own operating point as recalibration alone, and misses no more urgent films."""
    if "site_head" not in out:
        return "recalibration"
    head, recal = out["site_head"], out["recalibration"]
    better = head["auc"] > recal["auc"] and head["specificity"] >= recal["specificity"] and head["fn"] <= recal["fn"]
    return "site_head" if better else "recalibration"
