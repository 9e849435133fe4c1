"""What ``model.json`` records about how the exported model was trained: the datasets, the split files with their
hashes, the training logs of the chosen run (and of every member of a seed ensemble) and of the alternatives.

Kept apart from :mod:`cxrtriage.train.export` (which converts and calibrates) so that the provenance rules read in
one place: which data a bundle was trained on is read from the members' logs, never assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

from cxrtriage.data import SHENZHEN_FRACTIONS, SHENZHEN_SEED, SHENZHEN_SPLIT_FILE, split_sha256
from cxrtriage.train.ensemble import ensemble_block

#: the train_log.json keys copied into ``model.json`` ``training``
TRAINING_KEYS = ("command", "config", "best_epoch", "wall_seconds", "counts", "torch", "threads")


def run_summary(log: dict) -> dict:
    """Best-epoch validation numbers of one training run, for the data decision in the model card."""
    hist = log.get("history", [])
    best = max(hist, key=lambda r: r["val_auc_nih"] if r["val_auc_nih"] == r["val_auc_nih"] else -1) if hist else {}
    cfg = log.get("config", {})
    return {
        "command": log.get("command"),
        "pediatric_per_epoch": cfg.get("kermany_per_epoch"),
        "epochs": cfg.get("epochs"),
        "best_epoch": best.get("epoch"),
        "val_auc_nih": best.get("val_auc_nih"),
        "val_auc_pediatric": best.get("val_auc_pediatric"),
        "wall_seconds": log.get("wall_seconds"),
    }


def _trained_on(logs: Sequence[dict], count: str) -> bool:
    """True when any member's log counts training images under ``count`` (e.g. ``tr_shz``)."""
    return any((log.get("counts") or {}).get(count) for log in logs)


def training_data(logs: Sequence[dict], shenzhen_validation: bool) -> dict:
    """``training_data``: the datasets the members were trained on and the split files. Shenzhen's split file and
    hash are named whenever its films were trained on or calibrated on (``shenzhen_validation``)."""
    datasets = [
        "NIH ChestX-ray14 (subset at ../shared/data/nih)",
        "Kermany pediatric CXR train split (../shared/data/kermany)",
    ]
    if _trained_on(logs, "tr_jsrt"):
        datasets.append(
            "JSRT films without a nodule as normal adults "
            "(../shared/data/jsrt_scr, train part of cxrtriage.data.jsrt_split)"
        )
    trained_shz = _trained_on(logs, "tr_shz")
    shz_file = f"src/cxrtriage/splits/{SHENZHEN_SPLIT_FILE.name}"
    if trained_shz:
        datasets.append(
            "Shenzhen No.3 People's Hospital films, tuberculosis = urgent "
            f"(../shared/data/shenzhen, train part of {shz_file})"
        )
    block: dict = {
        "datasets": datasets,
        "split": "patient-level, seed 1129: NIH 70/15/15, pediatric 80/10/10 (src/cxrtriage/splits/split.csv)",
        "split_sha256": split_sha256(),
    }
    if trained_shz or shenzhen_validation:
        fractions = "/".join(f"{round(f * 100)}" for f in SHENZHEN_FRACTIONS)
        block["split"] += (
            f"; Shenzhen image-level (one film per patient), stratified by tuberculosis, seed {SHENZHEN_SEED}: "
            f"{fractions} ({shz_file})"
        )
        block["shenzhen_split_sha256"] = split_sha256(SHENZHEN_SPLIT_FILE)
    return block


def training_blocks(ckpts: Sequence[dict], logs: Sequence[dict]) -> dict:
    """``training`` (the first member's log; with several members also each member's summary), ``training_chosen``
    and, for a seed ensemble only, ``ensemble``: one model exports exactly as before."""
    first = logs[0]
    training = {k: first.get(k) for k in TRAINING_KEYS}
    out: dict = {"training": training, "training_chosen": run_summary(first) if first else None}
    if len(ckpts) > 1:
        training["members"] = [run_summary(log) if log else None for log in logs]
        out["ensemble"] = ensemble_block(ckpts, logs)
    return out
