"""``cxrtriage segment IMAGE... --out DIR`` as a user runs it: 0/255 masks at the original size, one JSON line per
image (errors included, never a traceback), no file left behind for a failed input, meaningful exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrtriage.cli.main import main


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _nih(data_dir: Path, n: int = 1) -> list[Path]:
    images = sorted((data_dir / "nih" / "images").glob("*.png"))[:n]
    if len(images) < n:
        pytest.skip("not enough NIH images in the data directory")
    return images


def _kermany_jpeg(data_dir: Path) -> Path:
    images = sorted((data_dir / "kermany" / "images").rglob("*.jpeg"))
    if not images:
        pytest.skip("no Kermany JPEG in the data directory")
    return images[0]


def _original_size(path: Path) -> tuple[int, int]:
    """(height, width) of the file as stored."""
    if path.suffix.lower() == ".dcm":
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    width, height = Image.open(path).size
    return height, width


def _mask(path: str | Path) -> np.ndarray:
    img = Image.open(path)
    assert img.mode == "L", img.mode
    return np.asarray(img)


@pytest.fixture(scope="module")
def three_formats(data_dir: Path) -> list[Path]:
    dicom = data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    assert dicom.is_file()
    return [_nih(data_dir)[0], _kermany_jpeg(data_dir), dicom]


def test_png_jpeg_and_dicom_give_binary_masks_at_original_size(three_formats, tmp_path, capsys):
    out = tmp_path / "masks"
    assert main(["segment", *map(str, three_formats), "--out", str(out)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [str(p) for p in three_formats]
    for src, row in zip(three_formats, rows):
        assert "error" not in row, row
        stem = src.stem
        lungs_path, heart_path = out / f"{stem}_lungs.png", out / f"{stem}_heart.png"
        assert row["lungs_mask"] == str(lungs_path) and row["heart_mask"] == str(heart_path)
        shape = _original_size(src)
        lungs, heart = _mask(lungs_path), _mask(heart_path)
        for name, m in (("lungs", lungs), ("heart", heart)):
            assert m.shape == shape, (src.name, name, m.shape, shape)
            assert set(np.unique(m).tolist()) == {0, 255}, (src.name, name)  # both values: a real mask, binary
        assert (row["height"], row["width"]) == shape
        # the JSON measurements describe the masks that were written
        assert row["lungs_found"] == ["right", "left"]
        ctr = row["cardiothoracic_ratio"]
        assert isinstance(ctr, float) and 0.3 < ctr < 0.7, (src.name, ctr)
        assert row["right_lung_area_px"] > 0 and row["left_lung_area_px"] > 0
        assert int((lungs > 0).sum()) == row["right_lung_area_px"] + row["left_lung_area_px"]
        assert int((heart > 0).sum()) == row["heart_area_px"]
        assert row["segmenter"]
    # the DICOM carries a pixel spacing: lung areas in cm² as well
    assert rows[2]["right_lung_area_cm2"] > 0 and rows[2]["left_lung_area_cm2"] > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}_{k}.png" for p in three_formats for k in ("lungs", "heart")
    )


def test_non_image_gives_error_row_exit_1_and_no_mask(data_dir, tmp_path, capsys):
    good = _nih(data_dir)[0]
    bad = tmp_path / "notes.png"
    bad.write_bytes(bytes(range(256)) * 12)
    out = tmp_path / "masks"
    assert main(["segment", str(bad), str(good), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    rows = _rows(captured.out)  # every stdout line is JSON, no traceback
    assert [r["path"] for r in rows] == [str(bad), str(good)]
    assert rows[0]["error"] and rows[0]["error_type"]
    assert "lungs_mask" not in rows[0]
    assert "error" not in rows[1] and Path(rows[1]["lungs_mask"]).is_file()
    assert not list(out.glob("notes*")), list(out.iterdir())
    assert not list(out.glob(".tmp-*"))
    assert "failed" in captured.err and "Traceback" not in captured.err


def test_same_stem_inputs_do_not_overwrite_each_other(data_dir, tmp_path, capsys):
    first, second = _nih(data_dir, 2)
    for folder, src in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "film.png").symlink_to(src)
    inputs = [str(tmp_path / "a" / "film.png"), str(tmp_path / "b" / "film.png")]
    out = tmp_path / "masks"
    assert main(["segment", *inputs, "--out", str(out)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 2
    lungs = [r["lungs_mask"] for r in rows]
    hearts = [r["heart_mask"] for r in rows]
    assert len(set(lungs)) == 2 and len(set(hearts)) == 2
    assert all(Path(p).is_file() for p in lungs + hearts)
    assert len(list(out.glob("*.png"))) == 4
    # each file holds its own image's mask
    for row in rows:
        assert int((_mask(row["lungs_mask"]) > 0).sum()) == row["right_lung_area_px"] + row["left_lung_area_px"]
    assert not np.array_equal(_mask(lungs[0]), _mask(lungs[1]))


def test_out_folder_that_cannot_be_created_exits_2(data_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["segment", str(_nih(data_dir)[0]), "--out", str(blocker / "masks")])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out.strip() == ""
    assert "output folder" in captured.err
    assert blocker.is_file()


def test_missing_segmentation_model_exits_2(data_dir, tmp_path, capsys):
    empty = tmp_path / "no-model"
    empty.mkdir()
    out = tmp_path / "masks"
    code = main(["segment", str(_nih(data_dir)[0]), "--out", str(out), "--model-dir", str(empty)])
    assert code == 2
    captured = capsys.readouterr()
    assert "segmentation model not found" in captured.err and captured.out.strip() == ""
    assert not out.exists() or not list(out.iterdir())


def test_missing_input_file_is_an_error_row(tmp_path, capsys):
    out = tmp_path / "masks"
    assert main(["segment", str(tmp_path / "gone.png"), "--out", str(out)]) == 1
    (row,) = _rows(capsys.readouterr().out)
    assert row["error_type"] == "InvalidImageError" and "not found" in row["error"]
    assert not list(out.glob("gone*"))


def test_mask_write_failure_is_an_error_row_and_leaves_no_file(data_dir, tmp_path, capsys):
    first, second = _nih(data_dir, 2)
    out = tmp_path / "masks"
    (out / f"{first.stem}_heart.png").mkdir(parents=True)  # the heart mask cannot be written there
    code = main(["segment", str(first), str(second), "--out", str(out)])
    rows = _rows(capsys.readouterr().out)
    assert code == 1
    assert [r["path"] for r in rows] == [str(first), str(second)]
    assert rows[0]["error"] and "error" not in rows[1]
    assert not (out / f"{first.stem}_lungs.png").exists()
    assert Path(rows[1]["lungs_mask"]).is_file()


def test_masks_keep_the_original_size_when_the_image_is_decoded_reduced(data_dir, tmp_path, capsys, monkeypatch):
    dicom = data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm"
    height, width = _original_size(dicom)
    monkeypatch.setenv("CXRTRIAGE_MAX_WORKING_PIXELS", str(height * width // 4))  # decoded at half size
    out = tmp_path / "masks"
    assert main(["segment", str(dicom), "--out", str(out)]) == 0
    (row,) = _rows(capsys.readouterr().out)
    assert (row["height"], row["width"]) == (height, width)
    assert _mask(row["lungs_mask"]).shape == (height, width)
    assert _mask(row["heart_mask"]).shape == (height, width)
