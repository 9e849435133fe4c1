"""Shenzhen, the third adult site: its table read as a source (tuberculosis = Urgent), and its committed split, which
must be reproducible from the file names and the seed, keep the TB / normal mix in every part, and name only films
that are in the data folder."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from cxrtriage import data
from cxrtriage.data import (
    SHENZHEN_SPLIT_FILE,
    SPLIT_FILE,
    make_shenzhen_split,
    read_all_splits,
    read_split,
    shenzhen_records,
    stratified_split,
)


def _fake_shenzhen(root: Path, n_normal: int, n_tb: int) -> Path:
    """A labels.csv shaped like the real one (no images: the records only read the table)."""
    folder = root / "shenzhen"
    folder.mkdir(parents=True)
    fields = ["file", "study_id", "site", "label", "urgency", "finding", "sex", "age", "sha256", "licence"]
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for i in range(n_normal + n_tb):
            tb = i >= n_normal
            study = f"CHNCXR_{i + 1:04d}_{int(tb)}"
            w.writerow(
                {
                    "file": f"images/{study}.png",
                    "study_id": study,
                    "site": "Shenzhen",
                    "label": "abnormal" if tb else "normal",
                    "urgency": "urgent" if tb else "non_urgent",
                    "finding": "STB" if tb else "normal",
                    "sex": "Male",
                    "age": "40",
                    "sha256": "0" * 64,
                    "licence": "NLM",
                }
            )
    return root


def test_shenzhen_records_mark_tuberculosis_urgent_and_each_film_its_own_patient(tmp_path: Path) -> None:
    recs = shenzhen_records(_fake_shenzhen(tmp_path, 3, 2))
    assert [r.urgent for r in recs] == [0, 0, 0, 1, 1]
    assert len({r.patient for r in recs}) == 5  # no patient IDs are published: never pooled across films
    r = recs[-1]
    assert r.dataset == "shenzhen" and r.key == "shenzhen/images/CHNCXR_0005_1.png"
    assert r.path == tmp_path / "shenzhen" / "images" / "CHNCXR_0005_1.png"
    assert (r.view, r.findings) == ("PA", "STB")


def test_shenzhen_split_is_deterministic_and_stratified(tmp_path: Path) -> None:
    root = _fake_shenzhen(tmp_path, 100, 60)
    split = make_shenzhen_split(root)
    assert split == make_shenzhen_split(root)  # the seed and the names decide it, nothing else
    assert set(split) == {r.key for r in shenzhen_records(root)}  # every film exactly once
    urgent = {r.key: r.urgent for r in shenzhen_records(root)}
    counts = Counter((part, urgent[k]) for k, part in split.items())
    # 70/15/15 within each class, so every part keeps the TB / normal mix
    assert [counts[(p, 0)] for p in ("train", "val", "test")] == [70, 15, 15]
    assert [counts[(p, 1)] for p in ("train", "val", "test")] == [42, 9, 9]


def test_stratified_split_changes_with_the_seed() -> None:
    class Item:
        def __init__(self, i: int) -> None:
            self.image_id, self.y = f"{i:03d}", i % 2

    items = [Item(i) for i in range(60)]
    a = stratified_split(items, lambda r: r.y, 1, (0.7, 0.15, 0.15))
    b = stratified_split(items, lambda r: r.y, 2, (0.7, 0.15, 0.15))
    assert [r.image_id for r in a["test"]] != [r.image_id for r in b["test"]]
    assert sorted(r.image_id for part in a.values() for r in part) == sorted(r.image_id for r in items)


def test_shenzhen_assignments_live_beside_the_pinned_split_file() -> None:
    """split.csv is what the shipped model's split_sha256 describes: Shenzhen is not in it, only in its own file,
    and the two are read together."""
    assert not any(k.startswith("shenzhen/") for k in read_split(SPLIT_FILE))
    own = read_split(SHENZHEN_SPLIT_FILE)
    assert own and all(k.startswith("shenzhen/images/") for k in own)
    assert read_all_splits() == {**read_split(SPLIT_FILE), **own}


def test_load_split_records_reads_shenzhen_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_shenzhen(tmp_path, 10, 10)
    fake_split = tmp_path / "shenzhen_split.csv"
    data.write_split(make_shenzhen_split(root), fake_split)
    monkeypatch.setattr(data, "SHENZHEN_SPLIT_FILE", fake_split)
    parts = data.load_split_records(root, ("shenzhen",))
    assert sum(len(v) for v in parts.values()) == 20
    assert {r.dataset for v in parts.values() for r in v} == {"shenzhen"}


def test_committed_shenzhen_split_names_films_of_the_data_folder(data_dir: Path) -> None:
    if not (data_dir / "shenzhen" / "labels.csv").is_file():
        pytest.skip("no shenzhen/ in the data directory")
    committed = read_split(SHENZHEN_SPLIT_FILE)
    assert committed == make_shenzhen_split(data_dir)  # reproducible from the data's names and the seed
    for key in committed:
        assert (data_dir / key).is_file(), key
    recs = {r.key: r for r in shenzhen_records(data_dir)}
    test = [recs[k] for k, part in committed.items() if part == "test"]
    assert 60 <= len(test) <= 80 and 0.4 <= sum(r.urgent for r in test) / len(test) <= 0.6
