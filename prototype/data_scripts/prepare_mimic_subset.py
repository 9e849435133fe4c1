#!/usr/bin/env python3
"""Build a labelled, patient-disjoint subset of MIMIC-CXR-JPG for cxrtriage.

For users who have credentialed access to MIMIC-CXR-JPG (PhysioNet). The script reads the
official tables in ``--mimic-root``::

    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, Rows, Columns, StudyDate, ...
    mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, 14 CheXpert labeler observations
    mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train / validate / test)
    files/p10/p10000032/s50414267/<dicom_id>.jpg

(plain ``.csv`` versions are accepted too) and writes to ``--out``:

* ``labels.csv`` with the columns of the project's ``nih/labels.csv``
  (file, image_index, patient_id, follow_up, age, sex, view, folder_label, nih_labels,
  google2019, urgency, width, height, sha256), filled where MIMIC has the information and
  left empty otherwise, followed by study_id, split, chexpert_positive,
  chexpert_uncertain and urgency_reason;
* ``README.md`` describing provenance, the urgency rule and the counts.

Urgency rule (mirrors the project's NIH rule): a study is ``urgent`` if any of
Pneumothorax, Pneumonia, Consolidation, Edema, Pleural Effusion or Lung Lesion (the
CheXpert counterpart of NIH "Mass") is positive (1.0). Uncertain mentions (-1.0) of those
findings are treated as urgent by default: for triage a missed urgent study costs more
than an extra review (safety first). ``--uncertain`` changes this. Everything else,
including "No Finding", chronic findings and blank (not mentioned) labels, is
``non_urgent``. Studies with no CheXpert row are skipped.

Sampling: frontal views only (``--views``, default PA,AP), at most one image per study,
at most ``--max-per-patient`` images per patient (default 1), stratified by the official
split and urgency (proportional, or balanced urgency with ``--balance-urgency``). The
official split is patient-level; the script also enforces it: a patient never appears in
two splits of the output.

Images are never copied unless ``--copy-images`` is given: ``file`` is then relative to
``--mimic-root`` (recorded in README.md). With ``--copy-images`` the images are copied to
``OUT/images/`` and ``file`` is relative to ``OUT`` (the layout of ``nih/``).

MIMIC-CXR-JPG is licensed under the PhysioNet Credentialed Health Data License 1.5.0:
keep the output out of any repository, do not share it and do not send it to online
services. The script refuses to write inside this repository.

Only the Python standard library is used. Exit codes: 0 ok, 2 missing/invalid input or
usage error.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

METADATA = "mimic-cxr-2.0.0-metadata.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"

DEFAULT_URGENT_FINDINGS = (
    "Pneumothorax",
    "Pneumonia",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
    "Lung Lesion",
)
CHEXPERT_OBSERVATIONS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
SPLITS = ("train", "validate", "test")
# When the tables disagree about a patient's split, the patient goes to the most held-out one.
SPLIT_PRIORITY = {"test": 2, "validate": 1, "train": 0}

NIH_COLUMNS = [
    "file",
    "image_index",
    "patient_id",
    "follow_up",
    "age",
    "sex",
    "view",
    "folder_label",
    "nih_labels",
    "google2019",
    "urgency",
    "width",
    "height",
    "sha256",
]
EXTRA_COLUMNS = ["study_id", "split", "chexpert_positive", "chexpert_uncertain", "urgency_reason"]
OUTPUT_COLUMNS = NIH_COLUMNS + EXTRA_COLUMNS


class InputProblem(Exception):
    """Missing or malformed input; reported as one sentence with exit code 2."""


@dataclass
class Candidate:
    dicom_id: str
    subject_id: str
    study_id: str
    view: str
    width: str
    height: str
    split: str
    urgency: str
    reason: str
    positive: list[str]
    uncertain: list[str]
    follow_up: int = 0

    @property
    def rel_path(self) -> str:
        return f"files/p{self.subject_id[:2]}/p{self.subject_id}/s{self.study_id}/{self.dicom_id}.jpg"


# --------------------------------------------------------------------------- reading


def find_table(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise InputProblem(
        f"{stem}.gz was not found in {root}; download it from "
        "https://physionet.org/content/mimic-cxr-jpg/2.1.0/ (see download_datasets.sh --info mimic)."
    )


def read_rows(path: Path, required: Sequence[str]) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.DictReader(text)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise InputProblem(
                    f"{path.name} lacks the column(s) {', '.join(missing)}; is it the official MIMIC-CXR-JPG table?"
                )
            yield from reader
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, csv.Error) as exc:
        raise InputProblem(f"{path.name} could not be read ({exc.__class__.__name__}: {exc}).") from exc


def parse_label(value: str | None) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def urgency_of(
    labels: dict[str, str], findings: Sequence[str], uncertain_policy: str
) -> tuple[str | None, str, list[str], list[str]]:
    """Return (urgency or None to exclude, reason, positive findings, uncertain findings)."""
    positive = [f for f in findings if parse_label(labels.get(f)) == 1.0]
    uncertain = [f for f in findings if parse_label(labels.get(f)) == -1.0]
    if positive:
        return "urgent", "positive: " + "|".join(positive), positive, uncertain
    if uncertain:
        if uncertain_policy == "urgent":
            return "urgent", "uncertain treated as urgent: " + "|".join(uncertain), positive, uncertain
        if uncertain_policy == "exclude":
            return None, "uncertain excluded", positive, uncertain
        return "non_urgent", "uncertain treated as non-urgent: " + "|".join(uncertain), positive, uncertain
    return "non_urgent", "no urgent finding", positive, uncertain


def load_candidates(args: argparse.Namespace, stats: Counter) -> list[Candidate]:
    root: Path = args.mimic_root
    meta_path = find_table(root, METADATA)
    chex_path = find_table(root, CHEXPERT)
    split_path = find_table(root, SPLIT)

    findings = args.urgent_findings
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for row in read_rows(chex_path, ["subject_id", "study_id", *findings]):
        labels[(row["subject_id"].strip(), row["study_id"].strip())] = row

    split_of_dicom: dict[str, str] = {}
    for row in read_rows(split_path, ["dicom_id", "split"]):
        split_of_dicom[row["dicom_id"].strip()] = row["split"].strip().lower()

    views = set(args.views)
    wanted_splits = set(args.splits)
    study_times: dict[str, dict[str, str]] = defaultdict(dict)  # subject -> study -> sortable time
    per_study: dict[tuple[str, str], Candidate] = {}
    for row in read_rows(meta_path, ["dicom_id", "subject_id", "study_id", "ViewPosition"]):
        stats["metadata_images"] += 1
        subject, study, dicom = row["subject_id"].strip(), row["study_id"].strip(), row["dicom_id"].strip()
        stamp = f"{row.get('StudyDate', '') or ''}:{(row.get('StudyTime', '') or '').zfill(13)}"
        prev = study_times[subject].get(study)
        if prev is None or stamp < prev:
            study_times[subject][study] = stamp
        view = (row.get("ViewPosition") or "").strip().upper()
        if view not in views:
            stats["skipped_not_requested_view"] += 1
            continue
        split = split_of_dicom.get(dicom)
        if split not in SPLITS:
            stats["skipped_no_split"] += 1
            continue
        study_labels = labels.get((subject, study))
        if study_labels is None:
            stats["skipped_no_chexpert_label"] += 1
            continue
        urgency, reason, positive, uncertain = urgency_of(study_labels, findings, args.uncertain)
        if urgency is None:
            stats["skipped_uncertain_excluded"] += 1
            continue
        key = (subject, study)
        cand = Candidate(
            dicom_id=dicom,
            subject_id=subject,
            study_id=study,
            view=view,
            width=(row.get("Columns") or "").strip(),
            height=(row.get("Rows") or "").strip(),
            split=split,
            urgency=urgency,
            reason=reason,
            positive=positive,
            uncertain=uncertain,
        )
        # One image per study: prefer PA over AP (listed order of --views), then dicom_id.
        rank = (args.views.index(view), dicom)
        if key in per_study:
            stats["skipped_extra_image_of_study"] += 1
            old = per_study[key]
            if rank >= (args.views.index(old.view), old.dicom_id):
                continue
        per_study[key] = cand

    # follow_up: 0-based index of the study among the patient's studies (NIH convention).
    follow_up: dict[tuple[str, str], int] = {}
    for subject, studies in study_times.items():
        for i, study in enumerate(sorted(studies, key=lambda s: (studies[s], s))):
            follow_up[(subject, study)] = i

    # Enforce patient-level splits.
    split_of_subject: dict[str, str] = {}
    for cand in per_study.values():
        prev = split_of_subject.get(cand.subject_id)
        if prev is None or SPLIT_PRIORITY[cand.split] > SPLIT_PRIORITY[prev]:
            split_of_subject[cand.subject_id] = cand.split
    candidates = []
    for cand in per_study.values():
        if split_of_subject[cand.subject_id] != cand.split:
            stats["moved_to_patient_split"] += 1
            cand.split = split_of_subject[cand.subject_id]
        cand.follow_up = follow_up.get((cand.subject_id, cand.study_id), 0)
        if cand.split not in wanted_splits:
            continue
        if not args.labels_only and not (root / cand.rel_path).is_file():
            stats["skipped_image_not_on_disk"] += 1
            continue
        candidates.append(cand)
    return candidates


# --------------------------------------------------------------------------- sampling


def allocate(total: int, sizes: dict[tuple[str, str], int], balance: bool) -> dict[tuple[str, str], int]:
    """Split ``total`` over strata (split, urgency): proportional to stratum size, or, with
    ``balance``, proportional per split and then half urgent / half non-urgent. Largest
    remainder rounding; never more than a stratum holds."""
    if balance:
        weights = {}
        split_sizes = Counter()
        for (split, _), n in sizes.items():
            split_sizes[split] += n
        for (split, urg), n in sizes.items():
            present = [u for (s, u), m in sizes.items() if s == split and m > 0]
            weights[(split, urg)] = split_sizes[split] / max(len(present), 1) if n > 0 else 0.0
    else:
        weights = {k: float(n) for k, n in sizes.items()}
    wsum = sum(weights.values())
    if wsum <= 0:
        return {k: 0 for k in sizes}
    exact = {k: total * w / wsum for k, w in weights.items()}
    quota = {k: min(int(v), sizes[k]) for k, v in exact.items()}
    order = sorted(sizes, key=lambda k: (-(exact[k] - int(exact[k])), k))
    remaining = total - sum(quota.values())
    while remaining > 0:
        progressed = False
        for k in order:
            if remaining > 0 and quota[k] < sizes[k]:
                quota[k] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    return quota


def sample(candidates: list[Candidate], args: argparse.Namespace, stats: Counter) -> list[Candidate]:
    rng = random.Random(args.seed)  # noqa: S311 - seeded for a reproducible sample, not a secret
    pool = sorted(candidates, key=lambda c: (c.subject_id, c.study_id, c.dicom_id))
    rng.shuffle(pool)
    # Stratum sizes as reachable under the per-patient cap (approximate: count patients).
    sizes: Counter = Counter()
    seen_per_stratum: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for c in pool:
        key = (c.split, c.urgency)
        if args.max_per_patient <= 0 or seen_per_stratum[key][c.subject_id] < args.max_per_patient:
            seen_per_stratum[key][c.subject_id] += 1
            sizes[key] += 1
    quota = allocate(args.n, dict(sizes), args.balance_urgency)
    taken: Counter = Counter()
    per_patient: Counter = Counter()
    chosen: list[Candidate] = []
    for c in pool:
        key = (c.split, c.urgency)
        if taken[key] >= quota.get(key, 0):
            continue
        if args.max_per_patient > 0 and per_patient[c.subject_id] >= args.max_per_patient:
            continue
        chosen.append(c)
        taken[key] += 1
        per_patient[c.subject_id] += 1
    # Top up from any stratum if the per-patient cap left quotas unfilled.
    if len(chosen) < args.n:
        chosen_ids = {c.dicom_id for c in chosen}
        for c in pool:
            if len(chosen) >= args.n:
                break
            if c.dicom_id in chosen_ids:
                continue
            if args.max_per_patient > 0 and per_patient[c.subject_id] >= args.max_per_patient:
                continue
            chosen.append(c)
            chosen_ids.add(c.dicom_id)
            per_patient[c.subject_id] += 1
            stats["topped_up"] += 1
    return sorted(chosen, key=lambda c: (SPLITS.index(c.split), c.subject_id, c.study_id, c.dicom_id))


# --------------------------------------------------------------------------- writing


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_outputs(chosen: list[Candidate], args: argparse.Namespace, stats: Counter) -> None:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in chosen:
        src = args.mimic_root / c.rel_path
        if args.copy_images:
            rel = f"images/{c.dicom_id}.jpg"
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            hashed = dest
        else:
            rel = c.rel_path
            hashed = src
        digest = sha256_file(hashed) if (not args.no_sha256 and hashed.is_file()) else ""
        rows.append(
            {
                "file": rel,
                "image_index": f"{c.dicom_id}.jpg",
                "patient_id": c.subject_id,
                "follow_up": c.follow_up,
                "age": "",
                "sex": "",
                "view": c.view,
                "folder_label": "",
                "nih_labels": "",
                "google2019": "",
                "urgency": c.urgency,
                "width": c.width,
                "height": c.height,
                "sha256": digest,
                "study_id": c.study_id,
                "split": c.split,
                "chexpert_positive": "|".join(c.positive),
                "chexpert_uncertain": "|".join(c.uncertain),
                "urgency_reason": c.reason,
            }
        )
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=OUTPUT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    counts = Counter((c.split, c.urgency) for c in chosen)
    patients = {c.subject_id for c in chosen}
    manifest = {
        "source": "MIMIC-CXR-JPG (PhysioNet), credentialed access",
        "mimic_root": str(args.mimic_root.resolve()),
        "file_paths_relative_to": "out" if args.copy_images else "mimic_root",
        "n_requested": args.n,
        "n_written": len(chosen),
        "n_patients": len(patients),
        "seed": args.seed,
        "views": args.views,
        "splits": args.splits,
        "max_per_patient": args.max_per_patient,
        "balance_urgency": args.balance_urgency,
        "uncertain_policy": args.uncertain,
        "urgent_findings": list(args.urgent_findings),
        "counts": {f"{s}/{u}": counts[(s, u)] for s in SPLITS for u in ("urgent", "non_urgent") if counts[(s, u)]},
        "filtering": dict(sorted(stats.items())),
    }
    (out / "subset.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    table = "\n".join(
        f"| {s} | {counts[(s, 'urgent')]} | {counts[(s, 'non_urgent')]} |"
        for s in SPLITS
        if counts[(s, "urgent")] + counts[(s, "non_urgent")]
    )
    where = (
        "`file` is relative to this folder (images copied with `--copy-images`)."
        if args.copy_images
        else f"`file` is relative to the MIMIC-CXR-JPG root `{args.mimic_root.resolve()}`; no image was copied."
    )
    uncertain_text = {
        "urgent": "Uncertain mentions (-1.0) of these findings count as **urgent** (safety first: a missed urgent "
        "study costs more than an extra review).",
        "non_urgent": "Uncertain mentions (-1.0) of these findings count as non-urgent (`--uncertain non_urgent`).",
        "exclude": "Studies whose only evidence is an uncertain mention (-1.0) were excluded (`--uncertain exclude`).",
    }[args.uncertain]
    per_patient = args.max_per_patient if args.max_per_patient > 0 else "any number of"
    views = ", ".join(args.views)
    readme = f"""# MIMIC-CXR-JPG subset for cxrtriage

Generated by `prototype/data_scripts/prepare_mimic_subset.py` (seed {args.seed}).

**This folder is derived from MIMIC-CXR-JPG, a PhysioNet credentialed-access dataset
(PhysioNet Credentialed Health Data License 1.5.0 and data use agreement). Do not
commit, share or upload it, and do not send its content to online services or APIs.
Only people with their own credentialed access may use it.**

- {len(chosen)} frontal images ({views}), {len(patients)} patients, at most {per_patient} image(s) per patient
  and one image per study.
- {where}
- Columns: those of the project's `nih/labels.csv` (`{",".join(NIH_COLUMNS)}`),
  then `{",".join(EXTRA_COLUMNS)}`. `age`, `sex`, `folder_label`, `nih_labels` and `google2019`
  are empty (not part of MIMIC-CXR-JPG). `width`/`height` come from the metadata table
  (DICOM Columns/Rows). `follow_up` is the 0-based order of the study among the patient's
  studies. `patient_id` is the MIMIC `subject_id` (already de-identified by PhysioNet).
- Splits: the official MIMIC-CXR-JPG split (patient-level); a patient never appears in two splits.

## Urgency rule

A study is **urgent** if the CheXpert labeler marks any of {", ".join(args.urgent_findings)}
as positive (1.0). {uncertain_text} Everything else, including "No Finding", chronic or
incidental findings and unmentioned (blank) labels, is **non_urgent**. Labels come from
report text (CheXpert labeler), not from image review, and are noisy.

| split | urgent | non_urgent |
|---|---|---|
{table}

Cite MIMIC-CXR-JPG and MIMIC-CXR (Johnson et al.) and PhysioNet; see CITATION.md in the repository.
"""
    (out / "README.md").write_text(readme, encoding="utf-8")


# --------------------------------------------------------------------------- CLI


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prepare_mimic_subset.py",
        description="Build a labelled, patient-disjoint MIMIC-CXR-JPG subset in the layout of nih/labels.csv "
        "(paths only; images are copied only with --copy-images).",
        epilog="MIMIC-CXR-JPG requires PhysioNet credentialed access; never commit or share the output.",
    )
    p.add_argument(
        "--mimic-root",
        type=Path,
        required=True,
        help="MIMIC-CXR-JPG root holding the mimic-cxr-2.0.0-*.csv.gz tables and files/",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (outside this repository), e.g. $CXRTRIAGE_DATA_DIR/mimic",
    )
    p.add_argument("--n", type=int, default=2000, help="number of images in the subset (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--views",
        default="PA,AP",
        help="comma-separated ViewPosition values to keep, in order of preference (default PA,AP)",
    )
    p.add_argument(
        "--splits", default="train,validate,test", help="official splits to draw from (default train,validate,test)"
    )
    p.add_argument(
        "--max-per-patient", type=int, default=1, help="images per patient at most; 0 = no limit (default 1)"
    )
    p.add_argument(
        "--balance-urgency",
        action="store_true",
        help="draw urgent and non-urgent equally within each split instead of proportionally",
    )
    p.add_argument(
        "--uncertain",
        choices=("urgent", "non_urgent", "exclude"),
        default="urgent",
        help="how to treat uncertain (-1.0) urgent findings (default urgent: safety first)",
    )
    p.add_argument(
        "--urgent-findings",
        default=",".join(DEFAULT_URGENT_FINDINGS),
        help="comma-separated CheXpert observations that make a study urgent (default: %(default)s)",
    )
    p.add_argument(
        "--copy-images", action="store_true", help="copy the selected JPGs to OUT/images/ (default: write paths only)"
    )
    p.add_argument(
        "--labels-only",
        action="store_true",
        help="do not require files/ (plan a subset before downloading images); sha256 stays empty",
    )
    p.add_argument("--no-sha256", action="store_true", help="do not hash the selected images")
    return p


def validate(args: argparse.Namespace) -> None:
    if args.n <= 0:
        raise InputProblem("--n must be a positive number of images.")
    if args.max_per_patient < 0:
        raise InputProblem("--max-per-patient must be 0 (no limit) or positive.")
    args.views = [v.upper() for v in _csv_list(args.views)]
    if not args.views:
        raise InputProblem("--views must name at least one view, e.g. PA,AP.")
    args.splits = [s.lower() for s in _csv_list(args.splits)]
    bad = [s for s in args.splits if s not in SPLITS]
    if not args.splits or bad:
        raise InputProblem(f"--splits must be a subset of {','.join(SPLITS)} (got {','.join(bad) or 'nothing'}).")
    args.urgent_findings = _csv_list(args.urgent_findings)
    unknown = [f for f in args.urgent_findings if f not in CHEXPERT_OBSERVATIONS]
    if not args.urgent_findings or unknown:
        raise InputProblem(
            f"--urgent-findings must be CheXpert observations ({', '.join(CHEXPERT_OBSERVATIONS)}); "
            f"unknown: {', '.join(unknown) or 'none given'}."
        )
    if args.copy_images and args.labels_only:
        raise InputProblem("--copy-images needs the images, so it cannot be combined with --labels-only.")
    root: Path = args.mimic_root
    if not root.is_dir():
        raise InputProblem(f"--mimic-root {root} is not a directory.")
    if not args.labels_only and not (root / "files").is_dir():
        raise InputProblem(
            f"{root} has no files/ folder with the MIMIC-CXR-JPG images; download them, or use --labels-only to plan "
            "a subset from the tables alone."
        )
    out = args.out.resolve()
    if out == REPO_ROOT or REPO_ROOT in out.parents:
        raise InputProblem(
            f"refusing to write MIMIC-derived files inside the repository ({REPO_ROOT}); choose an --out folder "
            "outside it, e.g. $CXRTRIAGE_DATA_DIR/mimic."
        )
    if out.exists() and not out.is_dir():
        raise InputProblem(f"--out {args.out} exists and is not a directory.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        validate(args)
        stats: Counter = Counter()
        candidates = load_candidates(args, stats)
        if not candidates:
            raise InputProblem("no image matched the requested views, splits and labels; nothing was written.")
        chosen = sample(candidates, args, stats)
        write_outputs(chosen, args, stats)
    except InputProblem as exc:
        print(f"prepare_mimic_subset.py: error: {exc}", file=sys.stderr)
        return 2
    counts = Counter((c.split, c.urgency) for c in chosen)
    print(
        f"Wrote {len(chosen)} images from {len({c.subject_id for c in chosen})} patients to {args.out / 'labels.csv'}"
    )
    for s in SPLITS:
        if counts[(s, "urgent")] + counts[(s, "non_urgent")]:
            print(f"  {s:<9} urgent {counts[(s, 'urgent')]:>6}  non_urgent {counts[(s, 'non_urgent')]:>6}")
    if len(chosen) < args.n:
        print(f"  note: only {len(chosen)} of the {args.n} requested images were available under these constraints.")
    for key, value in sorted(stats.items()):
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
