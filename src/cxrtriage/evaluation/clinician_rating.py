"""Clinician rating loop: export model outputs to a CSV sheet, read the filled sheet back, summarise agreement.

Why a CSV: raters open it in any spreadsheet, nothing to install, and the filled file is the record of what
they said. The sheet holds the model's output for each case (label, score, explanation, evidence boxes,
provenance) and five EMPTY columns for the rater. Nothing here ever fills a rating in: a summary is made only
from what a person typed, and a sheet with no ratings is an error, not a result.

Used by notebook 03 and by ``cxrtriage ratings export|summarise``. Only the standard library (csv): the core
install must not need pandas.

This module is the loop's one entry point (``from cxrtriage.evaluation import clinician_rating as cr``); the code
lives in :mod:`~cxrtriage.evaluation.clinician_rating_sheet` (the columns and the export),
:mod:`~cxrtriage.evaluation.clinician_rating_read` (reading a filled sheet back) and
:mod:`~cxrtriage.evaluation.clinician_rating_summary` (agreement and the text summary).
"""

from __future__ import annotations

from cxrtriage.evaluation.clinician_rating_read import Rating, read_ratings
from cxrtriage.evaluation.clinician_rating_sheet import (
    CASE_COLUMNS,
    CROPS_VALUES,
    RATER_ROLES,
    RATING_COLUMNS,
    RatingSheetError,
    export_rating_sheet,
    pick_cases,
)
from cxrtriage.evaluation.clinician_rating_summary import format_summary, summarise_ratings, wilson_interval

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
