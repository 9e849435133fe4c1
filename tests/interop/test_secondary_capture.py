"""The DICOM Secondary Capture with the evidence boxes burned in (for viewers that cannot show SR regions): it files
with the source's patient and study, references the source, says it has burned-in text, draws each box where the
crop says (scaled when the source was decoded at reduced resolution), is never a negative, and is valid DICOM."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

hd = pytest.importorskip("highdicom", reason="DICOM Secondary Capture output needs the [interop] extra")

from cxrtriage.imaging.load import load_image  # noqa: E402
from cxrtriage.imaging.polarity import polarity_contrast  # noqa: E402
from cxrtriage.interop.context import OutputContext  # noqa: E402
from cxrtriage.interop.formats import get_format  # noqa: E402
from cxrtriage.interop.secondary_capture import secondary_capture  # noqa: E402

pytestmark = pytest.mark.data

SIIM = "SIIM_CR_chest_PA_jpegbaseline.dcm"
SIIM_MONO1 = "SIIM_CR_chest_PA_jpegbaseline_MONOCHROME1-modified.dcm"  # MONOCHROME2 pixels tagged MONOCHROME1
OLD_CR = "CR-MONO1-10-chest.dcm"  # a real MONOCHROME1 file, no preamble, no Patient ID
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _write_and_read(sc: pydicom.Dataset) -> pydicom.Dataset:
    """What a PACS gets: the dataset as a file, read back by pydicom."""
    buffer = io.BytesIO()
    sc.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _image_part(sc: pydicom.Dataset, source: pydicom.Dataset) -> tuple[np.ndarray, float, int]:
    """The SC's pixels below the banner, the scale from source pixels to SC pixels and the banner's height."""
    scale = sc.Columns / source.Columns
    top = sc.Rows - round(source.Rows * scale)
    return sc.pixel_array[top:], scale, top


def _outline_points(crop, scale: float) -> list[tuple[int, int]]:
    """(row, column) of the middle of each edge of a crop's box on the image part, one pixel inside the edge."""
    x0, y0 = round(crop.x * scale), round(crop.y * scale)
    x1, y1 = round((crop.x + crop.w) * scale) - 1, round((crop.y + crop.h) * scale) - 1
    xm, ym = (x0 + x1) // 2, (y0 + y1) // 2
    return [(y0 + 1, xm), (y1 - 1, xm), (ym, x0 + 1), (ym, x1 - 1)]


def _is_box_colour(rgb: np.ndarray) -> bool:
    """The boxes are yellow; the radiograph is grey (R = G = B)."""
    r, g, b = (int(v) for v in rgb)
    return r > 200 and g > 150 and b < 80


@pytest.fixture(scope="module")
def runs(data_dir, engine) -> dict[str, object]:
    """Per shared DICOM: the pipeline run (prediction, decoded image with its header, analysed pixels)."""
    return {name: engine.run(str(data_dir / "dicom" / name)) for name in (SIIM, SIIM_MONO1, OLD_CR)}


@pytest.fixture(scope="module")
def captures(data_dir, runs) -> dict[str, tuple]:
    """Per shared DICOM: (prediction, source dataset, SC as read back from its file), the SC built by the registry's
    ``sc`` format from the run."""
    out = {}
    for name, triaged in runs.items():
        source = pydicom.dcmread(data_dir / "dicom" / name, force=True)
        sc = get_format("sc").render(OutputContext.of(triaged))
        out[name] = triaged.prediction, source, _write_and_read(sc)
    return out


def test_sc_files_with_the_source_study_and_references_the_source(captures):
    for name, (_, source, sc) in captures.items():
        assert sc.SOPClassUID == SECONDARY_CAPTURE, name
        assert sc.StudyInstanceUID == source.StudyInstanceUID
        assert sc.PatientID == source.get("PatientID", "")  # the old CR has none: present and empty (Type 2)
        assert sc.SeriesInstanceUID != source.SeriesInstanceUID and sc.SOPInstanceUID != source.SOPInstanceUID
        reference = sc.SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert reference.ReferencedSOPClassUID == source.SOPClassUID
        assert sc.BurnedInAnnotation == "YES"
        assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "burned in" in sc.SeriesDescription and "preliminary" in sc.SeriesDescription


def test_sc_pixels_are_the_whole_radiograph_under_a_banner(captures):
    for name, (_, source, sc) in captures.items():
        pixels = sc.pixel_array
        assert pixels.dtype == np.uint8 and pixels.shape == (sc.Rows, sc.Columns, 3), name
        assert sc.PhotometricInterpretation == "RGB"
        assert sc.Columns >= min(source.Columns, 1024)
        image, _, top = _image_part(sc, source)
        assert 0.05 * sc.Rows < top < 0.3 * sc.Rows  # a banner above, not over, the anatomy
        assert image.shape[0] == pytest.approx(sc.Columns * source.Rows / source.Columns, abs=1)
        assert (pixels[:top] > 128).any(axis=2).mean() > 0.01  # the banner holds light text on black


def test_each_box_is_drawn_where_its_crop_is(captures):
    for name, (pred, source, sc) in captures.items():
        assert pred.crops, f"{name}: the shared DICOMs all have evidence boxes"
        image, scale, _ = _image_part(sc, source)
        for crop in pred.crops:
            for row, col in _outline_points(crop, scale):
                assert _is_box_colour(image[row, col]), (name, crop, row, col, image[row, col])
        grey = (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])
        assert grey.mean() > 0.9  # only the outlines and their numbers are coloured


def test_sc_is_never_a_negative(captures):
    """The mis-tagged twin was analysed flipped: its picture is the original's; every picture is a positive film
    (mediastinum brighter than the lung fields)."""
    original, _ = _image_part(captures[SIIM][2], captures[SIIM][1])[:2]
    twin, _ = _image_part(captures[SIIM_MONO1][2], captures[SIIM_MONO1][1])[:2]
    assert np.abs(original.astype(int) - twin.astype(int)).mean() < 1.0
    for name, (_, source, sc) in captures.items():
        image = _image_part(sc, source)[0].astype(np.float32) / 255.0
        grey = image[..., 0].copy()
        coloured = (image[..., 0] != image[..., 1]) | (image[..., 1] != image[..., 2])
        grey[coloured] = np.median(grey[~coloured])  # the yellow boxes are not anatomy
        assert polarity_contrast(grey) > 0.05, name


def test_boxes_are_scaled_when_a_large_source_is_decoded_at_reduced_resolution(captures):
    """A 2560-pixel source is decoded at half size: the picture is that size and the boxes (in original pixels) are
    scaled onto it."""
    pred, source, _ = captures[SIIM]
    big = pydicom.dcmread(io.BytesIO(_encoded(source)), force=True)
    side = 2560
    pixels = np.asarray(Image.fromarray(source.pixel_array).resize((side, side), Image.Resampling.BILINEAR))
    big.PixelData, big.Rows, big.Columns = pixels.tobytes(), side, side
    big.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    loaded = load_image(_encoded(big))
    assert loaded.meta.reduction == 2.0  # the premise: decoded at half size
    factor = side / source.Columns
    crops = [
        c.model_copy(
            update=dict(x=round(c.x * factor), y=round(c.y * factor), w=round(c.w * factor), h=round(c.h * factor))
        )
        for c in pred.crops
    ]
    sc = _write_and_read(
        secondary_capture(
            pred.model_copy(update={"crops": crops}),
            loaded.source.dataset,
            loaded.pixels,
            original_width=loaded.meta.width,
        )
    )
    assert sc.Columns == side // 2
    image, scale, _ = _image_part(sc, big)
    assert scale == 0.5
    for crop in crops:
        for row, col in _outline_points(crop, scale):
            assert _is_box_colour(image[row, col]), (crop, row, col)


def _encoded(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def test_every_sc_passes_dciodvfy(captures, dciodvfy_errors, tmp_path):
    for name, (_, _, sc) in captures.items():
        path = tmp_path / f"{name}.sc.dcm"
        sc.save_as(path, enforce_file_format=True)
        errors = dciodvfy_errors(path)
        assert not errors, (name, errors)


def test_the_picture_is_the_pixels_the_model_analysed_and_nothing_is_decoded_again(runs, monkeypatch):
    """The SC draws on the run's pixels (flipped already for the mis-tagged twin): the grey part of its image is
    those pixels as 8 bits, with no second decode of the source and no reading of warning texts."""
    import cxrtriage.imaging.load

    monkeypatch.setattr(cxrtriage.imaging.load, "load_image", lambda *a, **k: pytest.fail("decoded again"))
    for name in (SIIM, SIIM_MONO1):  # 1024 wide: drawn at the analysed size, not enlarged
        triaged = runs[name]
        sc = _write_and_read(get_format("sc").render(OutputContext.of(triaged)))
        top = sc.Rows - triaged.pixels.shape[0]
        image = sc.pixel_array[top:]
        expected = np.clip(np.rint(triaged.pixels * 255.0), 0, 255).astype(np.uint8)
        grey = (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])
        differ = grey & (image[..., 0] != expected)  # only the boxes' numbers, black on their yellow tags
        assert grey.mean() > 0.9 and differ.mean() < 0.005 and not image[..., 0][differ].any(), name
    assert runs[SIIM_MONO1].polarity_flipped and not runs[SIIM].polarity_flipped


def test_building_the_results_leaves_the_source_header_as_it_was(runs):
    """The SR and SC copy the source's header by reference (no deep copy): what they add or drop is their own."""
    for name, triaged in runs.items():
        header = triaged.image.source.dataset
        before = _encoded(header)
        for fmt in ("sr", "sc"):
            get_format(fmt).render(OutputContext.of(triaged))
        assert _encoded(header) == before, name
        assert "PixelData" not in header  # the decoded pixels are not kept twice


def test_predict_sr_writes_the_sc_beside_the_sr_without_overwriting(data_dir, tmp_path):
    from cxrtriage.cli.main import main

    source = tmp_path / SIIM
    shutil.copy(data_dir / "dicom" / SIIM, source)
    png = tmp_path / "plain.png"
    shutil.copy(next(data_dir.joinpath("nih").rglob("*.png")), png)
    out = tmp_path / "rows.jsonl"
    folder = tmp_path / "dicom-out"
    assert main(["predict", str(source), str(source), str(png), "--sr", str(folder), "--out", str(out)]) == 0
    first, second, plain = [json.loads(line) for line in out.read_text().splitlines()]
    stem = Path(SIIM).stem
    assert first["sc_path"] == str(folder / f"{stem}.sc.dcm") and first["sr_path"] == str(folder / f"{stem}.sr.dcm")
    assert second["sc_path"] == str(folder / f"{stem}-2.sc.dcm")  # the same name twice: nothing overwritten
    for row in (first, second):
        sc = pydicom.dcmread(row["sc_path"])
        assert sc.SOPClassUID == SECONDARY_CAPTURE and sc.BurnedInAnnotation == "YES"
        assert pydicom.dcmread(row["sr_path"]).StudyInstanceUID == sc.StudyInstanceUID
    assert "sc_path" not in plain and "sr_path" not in plain and "DICOM" in plain["sr_skipped"]
    assert not list(folder.glob(".tmp-*"))  # atomic writes leave no temp files
