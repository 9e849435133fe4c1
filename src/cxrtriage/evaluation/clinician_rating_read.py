"""Reading a filled rating sheet back (:mod:`cxrtriage.evaluation.clinician_rating`): every row is validated against
the allowed values and, when given, the exported sheet; all problems are reported together, each as
``file:row:column: ...``, and a sheet with no ratings is an error, not a result."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrtriage.evaluation.clinician_rating_sheet import (
    CROPS_VALUES,
    RATER_ROLES,
    RATING_COLUMNS,
    YES_NO,
    RatingSheetError,
)

#: Columns a returned sheet must still have to be read back.
_REQUIRED_COLUMNS = ("case_id", "image_id", "label", "needs_review", "crop_boxes", *RATING_COLUMNS)
_MAX_ERRORS = 20


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
