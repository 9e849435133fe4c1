"""One Parquet row per input: the fixed schema every part file has (so any reader can open the whole folder), and
the rows of a result and of a failure.

Flattened for queries: ``label``, ``score``, ``needs_review``, ``threshold``, ``warnings``, the image's format and
size, the model's identity, the failure's ``error_type`` and ``error``, and ``refused`` (the input gate refused the
image as not a frontal chest film: a different thing from a file that could not be read). ``prediction`` holds the
whole result as ``cxrtriage predict`` prints it (without ``path``), so nothing is lost by the flattening.
``sha256`` is the content's hash: with ``path`` it is what ``--resume`` recognises a finished input by.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from cxrtriage.errors import NotAChestXrayError

#: the Parquet schema of every part file
RESULT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("accession", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("needs_review", pa.bool_()),
        ("threshold", pa.float64()),
        ("warnings", pa.list_(pa.string())),
        ("refused", pa.bool_()),
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("source_format", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("model_sha256", pa.string()),
        ("total_ms", pa.float64()),
        ("outputs", pa.string()),  # JSON: each requested format's file (<format>_path) or why not (<format>_skipped)
        ("worker", pa.string()),  # host:pid of the actor that triaged it
        ("prediction", pa.string()),  # JSON: the whole result, as `cxrtriage predict` prints it (without path)
    ]
)
#: the error types that are the gate's refusal of the image, not a failure to read it
REFUSALS = frozenset({NotAChestXrayError.__name__})


def _empty(path: str, sha256: str | None, accession: str | None, worker: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_SCHEMA.names)
    row.update(path=path, sha256=sha256, accession=accession, worker=worker, warnings=[])
    return row


def result_row(
    path: str, sha256: str | None, accession: str | None, prediction: dict[str, Any], outputs: dict, worker: str
) -> dict[str, Any]:
    """The row of a triaged input; ``prediction`` is ``Prediction.model_dump(mode="json")``."""
    row = _empty(path, sha256, accession, worker)
    image, model = prediction.get("image") or {}, prediction.get("model") or {}
    row.update(
        label=prediction["label"],
        score=prediction["score"],
        needs_review=prediction["needs_review"],
        threshold=prediction.get("threshold"),
        warnings=list(prediction.get("warnings") or []),
        refused=False,
        source_format=image.get("source_format"),
        width=image.get("width"),
        height=image.get("height"),
        model_sha256=model.get("sha256"),
        total_ms=(prediction.get("timings_ms") or {}).get("total"),
        outputs=json.dumps(outputs, ensure_ascii=False) if outputs else None,
        prediction=json.dumps(prediction, ensure_ascii=False),
    )
    return row


def error_row(path: str, sha256: str | None, accession: str | None, exc: BaseException, worker: str) -> dict[str, Any]:
    """The row of an input that could not be triaged: its error's type and message, as ``cxrtriage predict`` gives
    them; ``needs_review`` is True (a film nobody triaged is a film a human must look at)."""
    row = _empty(path, sha256, accession, worker)
    kind = type(exc).__name__
    row.update(error_type=kind, error=str(exc), refused=kind in REFUSALS, needs_review=True)
    return row


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def predict_line(row: dict[str, Any]) -> dict[str, Any]:
    """A result row as the line ``cxrtriage predict`` prints for the same input (``--jsonl``): ``path`` and the whole
    prediction with each written format's ``<format>_path``, or ``path``, ``error`` and ``error_type``."""
    if row.get("prediction") is None:
        return {"path": row["path"], "error": row["error"], "error_type": row["error_type"]}
    return {"path": row["path"], **json.loads(row["prediction"]), **json.loads(row.get("outputs") or "{}")}
