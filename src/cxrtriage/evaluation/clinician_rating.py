"""Clinician rating loop: export model outputs to a CSV sheet, read the filled sheet back, summarise agreement.

Why a CSV: raters open it in any spreadsheet, nothing to install, and the filled file is the record of what
they said. The sheet holds the model's output for each case (label, score, explanation, evidence boxes,
provenance) and five EMPTY columns for the rater. Nothing here ever fills a rating in: a summary is made only
from what a person typed, and a sheet with no ratings is an error, not a result.

Used by notebook 03 and by ``cxrtriage ratings export|summarise``. Only the standard library (csv): the core
install must not need pandas.
"""

from __future__ import annotations

import csv
import io
import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.input_files import image_id

__all__ = [
    "CASE_COLUMNS",
    "CROPS_VALUES",
    "RATER_ROLES",
    "RATING_COLUMNS",
    "Rating",
    "RatingSheetError",
    "export_rating_sheet",
    "format_summary",
    "pick_cases",
    "read_ratings",
    "summarise_ratings",
    "wilson_interval",
]

#: What the model said about each case (filled by :func:`export_rating_sheet`).
CASE_COLUMNS = (
    "case_id",
    "image_id",
    "image_path",
    "label",
    "score",
    "threshold",
    "needs_review",
    "explanation",
    "crop_boxes",
    "crop_thumb_paths",
    "provenance",
    "model",
)
#: What the rater says (always exported empty).
RATING_COLUMNS = ("rater_role", "agrees_with_label", "explanation_quality_1to5", "crops_useful", "comment")
RATER_ROLES = (
    "radiologist",
    "radiology_trainee",
    "emergency_physician",
    "other_physician",
    "radiographer",
    "nurse",
    "other",
)
YES_NO = ("yes", "no")
CROPS_VALUES = ("yes", "no", "no_crops")
#: Columns a returned sheet must still have to be read back.
_REQUIRED_COLUMNS = ("case_id", "image_id", "label", "needs_review", "crop_boxes", *RATING_COLUMNS)
_MAX_ERRORS = 20
_Z95 = 1.959963984540054


class RatingSheetError(ValueError):
    """A rating sheet cannot be read or summarised; the message names file, row and column."""


# --------------------------------------------------------------------------- export


def _as_row(pred: Any) -> dict[str, Any]:
    """A Prediction (pydantic) or a ``cxrtriage predict --out`` row, as a plain dict."""
    if hasattr(pred, "model_dump"):
        return pred.model_dump(mode="json")
    if isinstance(pred, Mapping):
        return dict(pred)
    raise TypeError(f"expected a Prediction or a prediction dict, got {type(pred).__name__}")


def _image_id(row: dict[str, Any]) -> str:
    return image_id(str(row.get("image_id") or row.get("path") or ""))


def pick_cases(predictions: Sequence[Any], n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` scored predictions, stratified so that raters see both labels, review-flagged cases, and both
    datasets when the paths say ``nih/`` or ``kermany/``: round-robin over (dataset, label, needs_review)
    groups, shuffled within a group by ``seed``.
    Rows with an ``error`` (rejected images) are skipped: there is no label to agree with."""
    rows = [_as_row(p) for p in predictions]
    rows = [r for r in rows if not r.get("error") and r.get("label")]
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if len(rows) < n:
        raise ValueError(f"asked for {n} cases but only {len(rows)} scored predictions were given")
    groups: dict[tuple[str, str, bool], list[dict[str, Any]]] = {}
    for r in rows:
        parts = str(r.get("path", "")).replace("\\", "/").split("/")
        dataset = next((d for d in ("nih", "kermany") if d in parts), "")
        groups.setdefault((dataset, str(r["label"]), bool(r.get("needs_review"))), []).append(r)
    rng = random.Random(seed)
    queues = []
    order = ("nih", "kermany", "")  # adults first: with an odd share they get the extra case
    for key in sorted(groups, key=lambda k: (order.index(k[0]), k[1], k[2])):
        members = sorted(groups[key], key=_image_id)
        rng.shuffle(members)
        queues.append(members)
    picked: list[dict[str, Any]] = []
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def _relative(path: str, data_dir: Path | None) -> str:
    if not path or data_dir is None:
        return path
    try:
        return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()
    except ValueError:
        return path


def _case_cells(
    row: dict[str, Any], case_id: str, image_id: str, *, data_dir: Path | None, thumb_paths: bool
) -> dict[str, str]:
    crops = row.get("crops") or []
    boxes = "; ".join(
        f"x={c['x']} y={c['y']} w={c['w']} h={c['h']}" + (f" ({c['region']})" if c.get("region") else "") for c in crops
    )
    prov = " | ".join(f"{p.get('source', '')}: {p.get('snippet', '')}" for p in row.get("provenance") or [])
    model = row.get("model") or {}
    return {
        "case_id": case_id,
        "image_id": image_id,
        "image_path": _relative(str(row.get("path", "")), data_dir),
        "label": str(row["label"]),
        "score": f"{float(row['score']):.4f}",
        "threshold": f"{float(row['threshold']):.4f}" if row.get("threshold") is not None else "",
        "needs_review": "yes" if row.get("needs_review") else "no",
        "explanation": str(row.get("explanation", "")),
        "crop_boxes": boxes,
        "crop_thumb_paths": ";".join(str(c.get("thumb_path", "")) for c in crops) if thumb_paths else "",
        "provenance": prov,
        "model": " ".join(str(model.get(k, "")) for k in ("name", "version")).strip()
        + (f" sha256:{str(model['sha256'])[:12]}" if model.get("sha256") else ""),
    }


def export_rating_sheet(
    predictions: Sequence[Any],
    path: Path | str,
    *,
    case_ids: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    thumb_paths: bool = True,
) -> Path:
    """Write a rating sheet: one row per prediction, the model's output then EMPTY rating columns.

    ``predictions``: Prediction objects or ``cxrtriage predict --out`` rows. ``n``: export only ``n`` cases,
    chosen by :func:`pick_cases` (``seed``). ``case_ids``: default ``case-001``, ``case-002``, ...
    ``image_ids``: needed for Prediction objects (which carry no path); dict rows use ``image_id`` or the file
    name of ``path``. ``data_dir``: write image paths relative to it. ``thumb_paths=False`` leaves the
    thumbnail column empty (for a sheet shared elsewhere: thumbnails are temporary local files; the image id
    and the boxes say what to look at).
    """
    rows = pick_cases(predictions, n, seed=seed) if n is not None else [_as_row(p) for p in predictions]
    if not rows:
        raise ValueError("no predictions to export")
    if image_ids is not None and len(image_ids) != len(rows):
        raise ValueError(f"image_ids has {len(image_ids)} entries for {len(rows)} predictions")
    if case_ids is not None and len(case_ids) != len(rows):
        raise ValueError(f"case_ids has {len(case_ids)} entries for {len(rows)} predictions")
    cases = list(case_ids) if case_ids is not None else [f"case-{i:03d}" for i in range(1, len(rows) + 1)]
    if len(set(cases)) != len(cases) or any(not str(c).strip() for c in cases):
        raise ValueError("case_ids must be unique and non-empty")
    out_rows = []
    for i, row in enumerate(rows):
        if row.get("error"):
            raise ValueError(f"prediction {i} is an error row ({row.get('error_type', 'error')}): no label to rate")
        iid = image_ids[i] if image_ids is not None else _image_id(row)
        if not iid:
            raise ValueError(f"prediction {i} has no image id: pass image_ids= for Prediction objects")
        cells = _case_cells(row, str(cases[i]), str(iid), data_dir=data_dir, thumb_paths=thumb_paths)
        out_rows.append({**cells, **{c: "" for c in RATING_COLUMNS}})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CASE_COLUMNS, *RATING_COLUMNS])
        writer.writeheader()
        writer.writerows(out_rows)
    return path


# --------------------------------------------------------------------------- read back


@dataclass(frozen=True)
class Rating:
    """One row of a returned sheet; the rating fields are None where the rater left them empty."""

    case_id: str
    image_id: str
    label: str  # the model's label the rater judged
    needs_review: bool
    n_crops: int
    rater_role: str | None
    agrees_with_label: bool | None
    explanation_quality: int | None
    crops_useful: str | None  # yes / no / no_crops
    comment: str
    source: str  # "sheet.csv:row"

    @property
    def rated(self) -> bool:
        return self.agrees_with_label is not None


def _read_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a sheet re-saved by a spreadsheet may carry a BOM
    except OSError as exc:
        raise RatingSheetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RatingSheetError(f"{path}: not UTF-8 text (save the sheet as 'CSV UTF-8')") from exc
    if not text.strip():
        raise RatingSheetError(f"{path} is empty")
    first = text.splitlines()[0]
    # Spreadsheets in some locales save CSV with ';' (or tabs): accept whichever separates the header.
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        rows.append((reader.line_num, {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header)}))
    return header, rows


def _reference_cases(reference: Path | str | Iterable[str] | None) -> dict[str, str | None] | None:
    """case id -> model label (None when only ids were given)."""
    if reference is None:
        return None
    if isinstance(reference, (str, Path)):
        _, rows = _read_table(Path(reference))
        return {r.get("case_id", ""): r.get("label") for _, r in rows}
    return {str(c): None for c in reference}


def _choice(value: str, allowed: Sequence[str]) -> str | None:
    v = value.strip().lower().replace(" ", "_").replace("-", "_")
    return v if v in allowed else None


def read_ratings(path: Path | str, *, reference: Path | str | Iterable[str] | None = None) -> list[Rating]:
    """Read and validate a filled sheet; every row is returned (unrated rows have ``rated == False``).

    Allowed values (case-insensitive): ``rater_role`` one of :data:`RATER_ROLES`; ``agrees_with_label``
    yes / no; ``explanation_quality_1to5`` 1-5; ``crops_useful`` yes / no / no_crops (no_crops exactly when the
    case has no crop); ``comment`` free text. A rated row needs ``rater_role`` and ``agrees_with_label``.
    ``reference``: the exported sheet (or its case ids): unknown case ids, and a changed model label, are errors.
    All problems are reported together (first 20), each as ``file:row:column: ...``.
    """
    path = Path(path)
    header, rows = _read_table(path)
    missing = [c for c in _REQUIRED_COLUMNS if c not in header]
    if missing:
        raise RatingSheetError(
            f"{path}: missing column(s) {', '.join(missing)}; rate a sheet written by "
            "export_rating_sheet / `cxrtriage ratings export` and keep its header row"
        )
    if not rows:
        raise RatingSheetError(f"{path}: the sheet has a header but no cases")
    ref = _reference_cases(reference)
    errors: list[str] = []
    seen: dict[str, int] = {}
    out: list[Rating] = []
    for line, r in rows:

        def err(column: str, msg: str, line: int = line) -> None:
            errors.append(f"{path}:{line}:{column}: {msg}")

        case = r["case_id"]
        if not case:
            err("case_id", "empty case id")
            continue
        if case in seen:
            err(
                "case_id",
                f"case id {case!r} appears twice (also row {seen[case]}); one sheet per rater, one row per case",
            )
            continue
        seen[case] = line
        if ref is not None:
            if case not in ref:
                err("case_id", f"unknown case id {case!r}: not in the exported sheet")
            elif ref[case] is not None and ref[case] != r["label"]:
                err("label", f"model label changed from {ref[case]!r} to {r['label']!r}; rate the label as exported")
        n_crops = len([b for b in r["crop_boxes"].split(";") if b.strip()])
        role = agrees = crops = None
        quality: int | None = None
        if r["rater_role"]:
            role = _choice(r["rater_role"], RATER_ROLES)
            if role is None:
                err("rater_role", f"{r['rater_role']!r} is not allowed; use one of {', '.join(RATER_ROLES)}")
        if r["agrees_with_label"]:
            choice = _choice(r["agrees_with_label"], YES_NO)
            if choice is None:
                err("agrees_with_label", f"{r['agrees_with_label']!r} is not allowed; use yes or no")
            else:
                agrees = choice == "yes"
        if r["explanation_quality_1to5"]:
            raw = r["explanation_quality_1to5"]
            try:
                q = float(raw)
            except ValueError:
                q = math.nan
            if q not in (1, 2, 3, 4, 5):
                err("explanation_quality_1to5", f"{raw!r} is not allowed; use a whole number 1 (poor) to 5 (excellent)")
            else:
                quality = int(q)
        if r["crops_useful"]:
            crops = _choice(r["crops_useful"], CROPS_VALUES)
            if crops is None:
                err("crops_useful", f"{r['crops_useful']!r} is not allowed; use yes, no or no_crops")
            elif crops == "no_crops" and n_crops:
                err("crops_useful", f"'no_crops' but this case has {n_crops} crop(s); use yes or no")
            elif crops != "no_crops" and not n_crops:
                err("crops_useful", f"{crops!r} but this case has no crop; use no_crops")
        any_filled = any(r[c] for c in RATING_COLUMNS)
        if any_filled and not r["agrees_with_label"]:
            err("agrees_with_label", "empty in a rated row; every rated case needs yes or no")
        if any_filled and not r["rater_role"]:
            err("rater_role", f"empty in a rated row; use one of {', '.join(RATER_ROLES)}")
        needs_review = _choice(r["needs_review"], YES_NO)
        out.append(
            Rating(
                case_id=case,
                image_id=r["image_id"],
                label=r["label"],
                needs_review=needs_review == "yes",
                n_crops=n_crops,
                rater_role=role,
                agrees_with_label=agrees,
                explanation_quality=quality,
                crops_useful=crops,
                comment=r["comment"],
                source=f"{path}:{line}",
            )
        )
    if errors:
        more = f"\n... and {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
        raise RatingSheetError(f"{len(errors)} problem(s) in {path}:\n" + "\n".join(errors[:_MAX_ERRORS]) + more)
    if not any(x.rated for x in out):
        raise RatingSheetError(
            f"{path}: no ratings filled in ({len(out)} cases, every rating column empty); "
            "a summary needs ratings given by a clinician"
        )
    return out


# --------------------------------------------------------------------------- summary


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
