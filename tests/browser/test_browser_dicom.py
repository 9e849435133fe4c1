"""The page reads a DICOM as the engine does where real hospital files differ from the three shared ones: a film above
``CXRTRIAGE_MAX_WORKING_PIXELS`` (box-averaged before its LUTs) and a VOI LUT Sequence instead of a window.

The files are made in a temporary folder from the shared SIIM sample (a public DICOM), upsampled to 2600 x 2600 and
stored as uncompressed 12-bit; one carries Window Center/Width, one a VOI LUT (a gamma curve). The page and
``Triage.predict`` must give the same label, score (to its 4 decimals), boxes in original pixels and warnings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cxrtriage.browser.build import build
from cxrtriage.browser.parity import compare, page_skip_reason, run_page, serve_folder

ROOT = Path(__file__).resolve().parents[2]
SIDE = 2600  # above the default 2048 x 2048 working pixels: decoded at 1/2
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def _dicom(path: Path, pixels: np.ndarray, voi_lut: np.ndarray | None = None) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "CR", "PA", "CHEST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    if voi_lut is None:
        ds.WindowCenter, ds.WindowWidth = 1900, 3200
    else:
        item = Dataset()
        item.add_new(0x00283002, "US", [len(voi_lut), 0, 12])
        item.add_new(0x00283006, "US", voi_lut.astype(int).tolist())
        ds.VOILUTSequence = [item]
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def results(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    reason = page_skip_reason(ROOT)
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("dicoms")
    sample = pydicom.dcmread(data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm", force=True).pixel_array
    big = np.asarray(Image.fromarray(sample).resize((SIDE, SIDE), Image.Resampling.BILINEAR)).astype(np.uint16) * 16
    gamma = np.round(4095 * (np.arange(4096) / 4095) ** 0.6)
    files = [_dicom(tmp / "large_window.dcm", big), _dicom(tmp / "large_voi_lut.dcm", big, gamma)]
    folder = build(tmp_path_factory.mktemp("page") / "browser", ROOT)
    with serve_folder(folder) as url:
        page, _, _ = run_page(url, files)
    return page, compare(files, page)


def test_large_dicoms_give_the_engines_answer(results) -> None:
    page, rows = results
    for row, result in zip(rows, page):
        assert row["same_label"], row
        assert row["score_diff"] <= 1e-4, row  # the same pixels: only the 4-decimal rounding may differ
        assert row["boxes"][0] == row["boxes"][1] and row.get("top_box_iou", 1.0) >= 0.99, row
        assert result["image"]["width"] == SIDE and result["image"]["reduction"] == 2.0
        assert any("analysed at 1/2 resolution" in w for w in result["warnings"])
        for crop in result["crops"]:  # in the original file's pixels, inside it
            assert 0 <= crop["x"] < SIDE and crop["x"] + crop["w"] <= SIDE


def test_the_voi_lut_is_applied_not_replaced_by_min_max(results) -> None:
    page, _ = results
    window, lut = page
    assert not any("VOI LUT" in w for w in lut["warnings"])
    assert window["score"] != lut["score"]  # the gamma LUT changes what the model sees
