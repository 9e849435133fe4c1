"""``cxrtriage commission``: a site's labelled films -> a site profile (``SITE_DIR``) for the loaded model.

Every film goes through the normal pipeline (:meth:`cxrtriage.pipeline.Triage.run`, with the bundled operating
point: the engine is built without a profile), which keeps the classifier's own output (base logit, embedding)
beside the result. Films the gate refuses are counted, kept out of the fit and recorded as refused in
``reference.jsonl``; rows whose image cannot be opened are counted and named. The fits and the cross-validated
figures are in :mod:`~cxrtriage.evaluation.commissioning_fit`, the files in
:mod:`~cxrtriage.evaluation.commissioning_report`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrtriage.errors import InputError
from cxrtriage.evaluation.commissioning_fit import Cases, OutOfFold, SiteFit, check_sample, figures, fit_site
from cxrtriage.evaluation.commissioning_stored import is_stored, stored_case
from cxrtriage.evaluation.gold import gold_label, gold_rows
from cxrtriage.evaluation.input_files import InputProblem, listed_ids
from cxrtriage.monitoring.record import RECORD_KEYS
from cxrtriage.pipeline import Triage
from cxrtriage.site.profile import SiteProfile
from cxrtriage.worklist import Worklist

#: the keys of one monitor record (issue 25): the commissioning films are the monitor's reference
REFERENCE_KEYS = RECORD_KEYS


@dataclass
class Sample:
    """The triaged films of a gold file, in its order, and what could not be used."""

    labels: list[int] = field(default_factory=list)
    logits: list[float] = field(default_factory=list)
    base_scores: list[float] = field(default_factory=list)
    embeddings: list[np.ndarray | None] = field(default_factory=list)
    similarity: list[float | None] = field(default_factory=list)
    images: list[dict[str, Any] | None] = field(default_factory=list)  # None: a stored result (no pixels)
    refused: list[dict[str, Any]] = field(default_factory=list)  # image stats of each refused film
    unreadable: list[str] = field(default_factory=list)  # "file:line: why"

    def add(
        self,
        label: int,
        logit: float,
        base_score: float,
        embedding: np.ndarray | None,
        similarity: float | None,
        image: dict[str, Any] | None,
    ) -> None:
        """One usable film (or stored result), into every parallel list at once."""
        self.labels.append(label)
        self.logits.append(logit)
        self.base_scores.append(base_score)
        self.embeddings.append(embedding)
        self.similarity.append(similarity)
        self.images.append(image)

    def cases(self) -> Cases:
        usable = all(e is not None for e in self.embeddings) and self.embeddings
        return Cases(
            logits=np.asarray(self.logits, np.float64),
            base_scores=np.asarray(self.base_scores, np.float64),
            embeddings=np.stack([np.asarray(e, np.float64) for e in self.embeddings]) if usable else None,  # type: ignore[arg-type]
            labels=np.asarray(self.labels, np.int64),
        )


def image_stats(pixels: np.ndarray, width: int, height: int) -> dict[str, Any]:
    """A monitor record's ``image``: mean and spread of the analysed grey pixels, the decoded image's size."""
    return {
        "mean": round(float(pixels.mean()), 4),
        "std": round(float(pixels.std()), 4),
        "width": width,
        "height": height,
    }


def resolve(ref: str, data_dir: Path | None) -> Path | None:
    path = Path(ref).expanduser()
    return path if path.is_absolute() or data_dir is None else Path(data_dir) / path


def triage_sample(
    engine: Triage, gold: Path, data_dir: Path | None, *, progress: Any = None, worklist: Worklist | None = None
) -> Sample:
    """Every row of ``gold`` through ``engine``: its truth, base logit, bundled score, embedding, similarity and
    image statistics; refused films and rows that cannot be opened counted apart. A ``worklist:KEY`` row (a
    reader's assessment, ``cxrtriage feedback export``) is read from ``worklist``'s stored result instead."""
    sample = Sample()
    rows = gold_rows(gold)
    if not rows:
        raise InputProblem(f"{gold} contains no rows (empty gold file)")
    for i, (lineno, row) in enumerate(rows, start=1):
        where = f"{gold}:{lineno}"
        y = gold_label(row, where)
        if is_stored(str(row.get("path", ""))):
            got = stored_case(str(row["path"]), row, worklist, engine)
            if isinstance(got, str):
                sample.unreadable.append(f"{where}: {got}")
                continue
            sample.add(y, got.logit, got.base_score, None, got.similarity, None)
            continue
        path = resolve(str(row.get("path", "")), data_dir) if row.get("path") else None
        if path is None or not path.is_file():
            sample.unreadable.append(f"{where}: {'no path' if path is None else 'no such file ' + str(path)}")
            continue
        try:
            loaded = engine.load(path)
        except (InputError, OSError) as exc:
            sample.unreadable.append(f"{where}: {exc}")
            continue
        try:
            run = engine.run(loaded, save_crops=False)
        except InputError:  # the gate refused it: not a frontal chest film, as far as the engine can tell
            sample.refused.append(image_stats(loaded.pixels, loaded.meta.width, loaded.meta.height))
            continue
        if run.output is None:  # run() always sets it; a check that survives python -O
            raise RuntimeError("the pipeline returned no classifier output")
        p = run.prediction
        sim = p.image.get("knn_similarity")
        sample.add(
            y,
            float(run.output.logit),
            float(run.output.score),
            run.output.embedding,
            float(sim) if isinstance(sim, (int, float)) else None,
            image_stats(run.pixels, loaded.meta.width, loaded.meta.height),
        )
        if progress is not None:
            progress(i, len(rows))
    return sample


@dataclass(frozen=True)
class Commissioned:
    """What ``commission`` made: the profile, its fit, the figures and the sample they came from."""

    profile: SiteProfile
    fit: SiteFit
    figures: dict[str, Any]
    sample: Sample
    in_sample: dict[str, Any]
    out_of_fold: OutOfFold  # the adopted fit's cross-validated scores (the report's plots)


def commission(
    engine: Triage,
    gold: Path,
    *,
    name: str,
    out: Path,
    data_dir: Path | None = None,
    target: float = 0.95,
    site_head: str = "auto",
    seed: int = 0,
    progress: Any = None,
    worklist: Worklist | None = None,
) -> Commissioned:
    """Triage the site's sample, fit and cross-validate its operating point, and return the profile for
    ``out`` (written by :func:`cxrtriage.evaluation.commissioning_report.write_site`). Raises
    :class:`~cxrtriage.evaluation.commissioning_fit.TooFewCases` (fewer than 20 films of a class) or
    :class:`InputProblem` (the gold file) before anything is written."""
    if engine.site is not None:
        raise ValueError("commission an engine without a site profile: the fit starts from the bundled operating point")
    if not 0.5 < target < 1.0:
        raise InputProblem(f"--target-sensitivity must lie between 0.5 and 1, got {target}")
    sample = triage_sample(engine, gold, data_dir, progress=progress, worklist=worklist)
    cases = sample.cases()
    try:
        check_sample(cases.labels)
    except ValueError as exc:  # TooFewCases: say which rows were lost on the way
        lost = _lost(sample)
        raise type(exc)(f"{exc}{'; ' + lost if lost else ''}") from None
    head = site_head if cases.embeddings is not None else "off"
    numbers, folds = figures(
        cases, (engine.backend.threshold, engine.backend.review_band), target, head=head, seed=seed
    )
    fit = fit_site(cases, target, head=numbers["adopted"] == "site_head", seed=seed)
    info = engine.info
    profile = SiteProfile(
        name=name,
        created=dt.datetime.now(dt.timezone.utc).date().isoformat(),
        n_cases=len(cases.labels),
        directory=Path(out),
        base_model={"name": info.name, "version": info.version, "sha256": info.sha256},
        a=fit.a,
        b=fit.b,
        threshold=fit.threshold,
        review_band=fit.review_band,
        head=fit.head,
        threshold_rule=f"highest calibrated score with sensitivity >= {target:g} on the site's {len(cases.labels)} "
        f"films ({'site head, then ' if fit.head else ''}Platt scaling fitted on them)",
        review_band_rule="central 50% bootstrap interval of the site's threshold, widened to contain it; scores in "
        "[low, high) carry needs_review and are labelled Urgent (safety-first), as the bundled model's",
    )
    return Commissioned(profile, fit, numbers, sample, _in_sample(cases, fit), folds[numbers["adopted"]])


def _lost(sample: Sample) -> str:
    parts = []
    if sample.refused:
        parts.append(f"{len(sample.refused)} film(s) refused by the input gate")
    if sample.unreadable:
        parts.append(
            f"{len(sample.unreadable)} row(s) whose image could not be opened ({listed_ids(sample.unreadable, 3)})"
        )
    return ", ".join(parts)


def _in_sample(cases: Cases, fit: SiteFit) -> dict[str, Any]:
    """The final profile on the very films it was fitted to: optimistic by construction, and labelled so."""
    from cxrtriage import decision

    scores = fit.scores(cases)
    decided = [decision.decide(float(s), fit.threshold, fit.review_band) for s in scores]
    urgent = np.array([d.label == decision.URGENT for d in decided])
    y = cases.labels
    tp, fn = int((urgent & (y == 1)).sum()), int((~urgent & (y == 1)).sum())
    tn, fp = int((~urgent & (y == 0)).sum()), int((urgent & (y == 0)).sum())
    return {
        "how": "the final profile on the same films it was fitted to (optimistic: the threshold was chosen on them)",
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "review_rate": float(np.mean([d.needs_review for d in decided])),
        "urgent_rate": float(urgent.mean()),
    }
