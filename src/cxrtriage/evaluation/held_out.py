"""The held-out test images of the committed split as gold / examples rows (``cxrtriage test-set``), and such a
file turned back into image paths (``cxrtriage predict --examples``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cxrtriage.evaluation.input_files import InputProblem, listed_ids, read_jsonl

__all__ = [
    "DATASETS",
    "example_paths",
    "held_out_examples",
]


DATASETS = ("nih", "kermany")


def held_out_examples(data_dir: Path, dataset: str = "all") -> list[dict[str, Any]]:
    """Every held-out TEST image of the committed split, as gold rows (labels and dataset IDs, no images).

    Fields: ``dataset``, ``image_id`` (file name: the join key), ``path`` (relative to the data directory),
    ``label`` (Urgent / Non-Urgent), then ``view``, ``sex``, ``age``, ``patient_id`` where the dataset has them.
    Ordered by dataset (NIH first), then path, so the file is reproducible byte for byte.
    """
    from cxrtriage.data import load_split_records

    if dataset not in (*DATASETS, "all"):
        raise InputProblem(f"unknown dataset {dataset!r}; choose one of {', '.join((*DATASETS, 'all'))}")
    wanted = DATASETS if dataset == "all" else (dataset,)
    root = Path(data_dir)
    records = load_split_records(root, datasets=wanted)["test"]
    rows: list[dict[str, Any]] = []
    for rec in sorted(records, key=lambda r: (DATASETS.index(r.dataset), r.path.as_posix())):
        row: dict[str, Any] = {
            "dataset": rec.dataset,
            "image_id": rec.path.name,
            "path": rec.path.relative_to(root).as_posix(),
            "label": "Urgent" if rec.urgent else "Non-Urgent",
        }
        age: int | str = int(rec.age) if rec.age.isdigit() else rec.age
        row.update({k: v for k, v in (("view", rec.view), ("sex", rec.sex), ("age", age)) if v != ""})
        row["patient_id"] = rec.patient
        rows.append(row)
    seen = Counter(r["image_id"] for r in rows)
    dup = [k for k, c in seen.items() if c > 1]
    if dup:
        raise InputProblem(
            f"test images share a file name ({listed_ids(dup)}); the join by file name would be ambiguous"
        )
    if not rows:
        raise InputProblem(f"no test images of {dataset} found under {root} (is it the data directory?)")
    return rows


def example_paths(examples: Path, data_dir: Path | None, *, limit: int | None = None) -> list[Path]:
    """Image paths of a test-examples / gold file: ``path`` resolved against ``data_dir`` (absolute kept).

    Every file must exist before anything runs: a half-predicted test set would fail the join later anyway,
    and the message here can say which files and where they were looked for.
    """
    examples = Path(examples)
    rows = read_jsonl(examples)
    if not rows:
        raise InputProblem(f"{examples} contains no rows (empty examples file)")
    if limit is not None:
        if limit < 1:
            raise InputProblem(f"--limit must be a positive number, got {limit}")
        rows = rows[:limit]
    paths, missing = [], []
    for lineno, row in rows:
        ref = row.get("path")
        if not isinstance(ref, str) or not ref.strip():
            raise InputProblem(
                f"{examples}:{lineno}: missing field 'path' (the image path, relative to the data directory)"
            )
        p = Path(ref)
        if not p.is_absolute():
            if data_dir is None:
                raise InputProblem(
                    f"{examples}:{lineno}: relative path {ref!r} needs a data directory "
                    "(--data-dir or CXRTRIAGE_DATA_DIR)"
                )
            p = Path(data_dir) / p
        (paths if p.is_file() else missing).append(p)
    if missing:
        raise InputProblem(
            f"{len(missing)} of {len(rows)} image(s) listed in {examples} are missing under "
            f"{data_dir}: {listed_ids(str(m) for m in missing)} (set --data-dir or CXRTRIAGE_DATA_DIR "
            "to the folder holding nih/ and kermany/)"
        )
    return paths
