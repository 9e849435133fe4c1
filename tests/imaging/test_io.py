"""Tests for cxrtriage.imaging.load: format sniffing, PNG/JPEG/DICOM decoding, normalisation, privacy, bad input."""

from __future__ import annotations

import io
import json
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from cxrtriage import config
from cxrtriage.errors import (
    ImageTooLargeError,
    InputError,
    InvalidImageError,
    UnsupportedFormatError,
)
from cxrtriage.imaging.load import ImageMeta, LoadedImage, load_image
from cxrtriage.imaging.sniff import sniff_format

PHI = ("Doe^John", "SECRET123", "19700101", "ACC98765", "St Elsewhere Hospital", "Doe")
MONO1_CHEST = "CR-MONO1-10-chest.dcm"
SIIM_MONO2 = "SIIM_CR_chest_PA_jpegbaseline.dcm"
SIIM_MONO1 = "SIIM_CR_chest_PA_jpegbaseline_MONOCHROME1-modified.dcm"


# --------------------------------------------------------------------------- helpers


def data_path(*parts: str) -> Path:
    """A file in the shared data folder, or skip the test when the data is not available."""
    root = config.Settings().find_data_dir()
    if root is None:
        pytest.skip("shared CXR data directory not available")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{'/'.join(parts)} not present in the data directory")
    return path


def assert_valid(result: LoadedImage) -> np.ndarray:
    """Every load must return finite float32 (H, W) pixels in [0, 1] matching the metadata."""
    px = result.pixels
    assert isinstance(result.meta, ImageMeta)
    assert px.dtype == np.float32 and px.ndim == 2
    assert np.isfinite(px).all()
    assert px.min() >= 0.0 and px.max() <= 1.0
    assert px.shape == (result.meta.height, result.meta.width)
    json.dumps(result.meta.to_dict())
    return px


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def make_dicom(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    frames: int | None = None,
    with_pixel_data: bool = True,
    **tags,
) -> Dataset:
    """A small, valid Part 10 DX dataset around ``pixels`` ((H, W), (F, H, W) or (H, W, 3))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    colour = photometric == "RGB"
    shape = pixels.shape[:2] if colour else pixels.shape[-2:]
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if frames:
        ds.NumberOfFrames = frames
    if with_pixel_data:
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset, **kwargs) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, **kwargs)
    return buf.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (1-bit grey) with a tiny, bogus IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def lungs_and_spine(px: np.ndarray) -> tuple[float, float]:
    """Mean of two central lung-field patches and of the mediastinum/spine column of a PA film."""
    h, w = px.shape

    def patch(r0: float, r1: float, c0: float, c1: float) -> float:
        return float(px[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())

    lungs = (patch(0.30, 0.50, 0.22, 0.34) + patch(0.30, 0.50, 0.64, 0.76)) / 2
    spine = patch(0.30, 0.70, 0.47, 0.53)
    return lungs, spine


# --------------------------------------------------------------------------- sniff_format


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 20, "jpeg"),
        (b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00", "dicom"),
        (b"\x08\x00\x00\x00\x04\x00\x00\x00\x1e\x01\x00\x00", "dicom"),  # implicit VR, (0008,0000)
        (b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100", "dicom"),  # explicit VR little endian, no preamble
        (b"\x00\x08\x00\x05CS\x00\x0aISO_IR 100", "dicom"),  # explicit VR big endian, no preamble
        (b"GIF89a" + b"\0" * 20, None),
        (b"hello, this is text\n", None),
        (b"", None),
        (b"\x08\x00", None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_sniff_real_preambleless_dicom() -> None:
    head = data_path("dicom", MONO1_CHEST).read_bytes()[:132]
    assert sniff_format(head) == "dicom"


# --------------------------------------------------------------------------- real chest DICOMs


def test_cr_mono1_preambleless_is_inverted_to_display_polarity() -> None:
    result = load_image(data_path("dicom", MONO1_CHEST))
    px = assert_valid(result)
    meta = result.meta
    assert (meta.width, meta.height) == (440, 440)
    assert meta.source_format == "dicom"
    assert meta.modality == "CR"
    assert meta.photometric_interpretation == "MONOCHROME1"
    assert meta.bits_stored == 10
    assert meta.view_position == "PA" and meta.body_part == "CHEST"
    assert any("transfer syntax" in w for w in meta.warnings)
    lungs, spine = lungs_and_spine(px)
    assert lungs < spine - 0.15, (lungs, spine)


def test_siim_jpeg_baseline_monochrome2() -> None:
    result = load_image(data_path("dicom", SIIM_MONO2))
    px = assert_valid(result)
    meta = result.meta
    assert (meta.width, meta.height) == (1024, 1024)
    assert (meta.modality, meta.photometric_interpretation, meta.bits_stored) == ("CR", "MONOCHROME2", 8)
    assert meta.pixel_spacing_mm == pytest.approx((0.168, 0.168))
    assert meta.pixel_spacing_tag == "PixelSpacing"
    assert meta.warnings == ()
    lungs, spine = lungs_and_spine(px)
    assert lungs < spine - 0.15, (lungs, spine)


def test_siim_monochrome1_retag_is_inverted() -> None:
    """The retagged file has the SAME stored pixels with PhotometricInterpretation MONOCHROME1.

    DICOM says MONOCHROME1 means "minimum value is white", so the correct display of this file is the
    exact inverse of the MONOCHROME2 original (lungs bright): the loader must honour the tag.
    """
    original = load_image(data_path("dicom", SIIM_MONO2)).pixels
    retagged = load_image(data_path("dicom", SIIM_MONO1))
    px = assert_valid(retagged)
    assert retagged.meta.photometric_interpretation == "MONOCHROME1"
    corr = np.corrcoef(original.ravel(), px.ravel())[0, 1]
    assert corr < -0.99
    np.testing.assert_allclose(px, 1.0 - original, atol=1e-6)
    lungs, spine = lungs_and_spine(px)
    assert lungs > spine + 0.15


# --------------------------------------------------------------------------- synthetic DICOM: pixel pipeline


def test_dicom_window_center_width_exact(tmp_path: Path) -> None:
    ramp = np.array([[0, 1500, 1750, 2000, 2250, 2500, 4095]], dtype=np.uint16)
    # LINEAR window (PS3.3 C.11.2.1.2): centre 2000.5 / width 1001 maps 1500..2500 onto the full range.
    ds = make_dicom(ramp, bits_stored=12, WindowCenter=2000.5, WindowWidth=1001)
    path = tmp_path / "window.dcm"
    path.write_bytes(dicom_bytes(ds))
    px = assert_valid(load_image(path))
    np.testing.assert_allclose(px[0], [0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)


def test_dicom_rescale_before_window_exact() -> None:
    stored = np.array([[0, 100, 200, 300, 400]], dtype=np.uint16)
    # modality values: -100, 100, 300, 500, 700; window 100..500 is in modality units
    ds = make_dicom(stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=300.5, WindowWidth=401)
    px = assert_valid(load_image(dicom_bytes(ds)))
    np.testing.assert_allclose(px[0], [0, 0, 0.5, 1, 1], atol=1e-6)


def test_dicom_rescale_without_window_uses_min_max() -> None:
    stored = np.array([[10, 20, 30, 50]], dtype=np.int16)
    ds = make_dicom(stored, RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")
    px = assert_valid(load_image(dicom_bytes(ds)))
    np.testing.assert_allclose(px[0], [0, 0.25, 0.5, 1], atol=1e-6)


def _voi_lut_item(entries: list[int], first_map: int, bits: int) -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", [len(entries), first_map, bits])  # LUTDescriptor
    item.add_new(0x00283006, "US", entries)  # LUTData
    return item


def test_dicom_voi_lut_sequence_preferred_over_window_exact() -> None:
    stored = np.array([[5, 10, 11, 12, 13, 20]], dtype=np.uint16)
    lut = _voi_lut_item([0, 1000, 3000, 4095], first_map=10, bits=16)
    # The window alone would give a very different result (everything bright).
    ds = make_dicom(stored, bits_stored=12, VOILUTSequence=Sequence([lut]), WindowCenter=0, WindowWidth=2)
    px = assert_valid(load_image(dicom_bytes(ds)))
    # values below first_map take the first entry, above the last entry; normalised by the LUT's range
    np.testing.assert_allclose(px[0], [0, 0, 1000 / 4095, 3000 / 4095, 1, 1], atol=1e-6)


def test_dicom_monochrome1_min_max_inverted_exact() -> None:
    stored = np.array([[0, 256, 512, 1023]], dtype=np.uint16)
    ds = make_dicom(stored, photometric="MONOCHROME1", bits_stored=10)
    result = load_image(dicom_bytes(ds))
    px = assert_valid(result)
    np.testing.assert_allclose(px[0], [1, 1 - 256 / 1023, 1 - 512 / 1023, 0], atol=1e-6)
    assert result.meta.photometric_interpretation == "MONOCHROME1"
    assert result.meta.bits_stored == 10


def test_dicom_monochrome1_inverted_after_window() -> None:
    stored = np.array([[1500, 1750, 2000, 2500]], dtype=np.uint16)
    ds = make_dicom(stored, photometric="MONOCHROME1", bits_stored=12, WindowCenter=2000.5, WindowWidth=1001)
    px = assert_valid(load_image(dicom_bytes(ds)))
    np.testing.assert_allclose(px[0], [1, 0.75, 0.5, 0], atol=1e-6)


def test_dicom_invalid_window_falls_back_to_min_max() -> None:
    stored = np.array([[0, 50, 100]], dtype=np.uint16)
    ds = make_dicom(stored, WindowCenter=50, WindowWidth=0)
    result = load_image(dicom_bytes(ds))
    np.testing.assert_allclose(assert_valid(result)[0], [0, 0.5, 1], atol=1e-6)
    assert any("window" in w for w in result.meta.warnings)


def test_dicom_constant_image_is_returned_finite() -> None:
    ds = make_dicom(np.full((4, 4), 7, dtype=np.uint16), photometric="MONOCHROME1")
    px = assert_valid(load_image(dicom_bytes(ds)))
    assert np.all(px == px[0, 0])


def test_dicom_multiframe_returns_first_frame_with_warning() -> None:
    frames = np.stack([np.full((4, 5), v, dtype=np.uint8) for v in (0, 128, 255)])
    frames[0, 0, 0] = 255  # the first frame has a bright pixel; min-max makes it exactly 1
    ds = make_dicom(frames, frames=3)
    result = load_image(dicom_bytes(ds))
    px = assert_valid(result)
    assert px.shape == (4, 5)
    assert px[0, 0] == 1.0 and px[1:, :].max() == 0.0
    assert result.meta.frames == 3
    assert "multi-frame DICOM (3 frames): only the first frame was used" in result.meta.warnings


def test_dicom_rgb_converted_with_luma() -> None:
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    result = load_image(dicom_bytes(make_dicom(rgb, photometric="RGB")))
    np.testing.assert_allclose(assert_valid(result)[0], [0.299, 0.587, 0.114], atol=1e-6)
    assert result.meta.photometric_interpretation == "RGB"


@pytest.mark.parametrize("name", ["examples_ybr_color.dcm", "examples_palette.dcm", "SC_rgb_rle.dcm"])
def test_pydicom_colour_samples_load_as_grey(name: str) -> None:
    result = load_image(get_testdata_file(name))
    px = assert_valid(result)
    assert px.std() > 0.01


def test_dicom_pixel_spacing_fallback_order() -> None:
    img = np.zeros((2, 2), dtype=np.uint8)
    ds = make_dicom(img, ImagerPixelSpacing=[0.2, 0.15], NominalScannedPixelSpacing=[0.5, 0.5])
    meta = load_image(dicom_bytes(ds)).meta
    assert meta.pixel_spacing_mm == pytest.approx((0.2, 0.15))
    assert meta.pixel_spacing_tag == "ImagerPixelSpacing"
    ds = make_dicom(img, NominalScannedPixelSpacing=[0.5, 0.4])
    meta = load_image(dicom_bytes(ds)).meta
    assert meta.pixel_spacing_mm == pytest.approx((0.5, 0.4))
    assert meta.pixel_spacing_tag == "NominalScannedPixelSpacing"
    meta = load_image(dicom_bytes(make_dicom(img))).meta
    assert meta.pixel_spacing_mm is None and meta.pixel_spacing_tag is None


@pytest.mark.parametrize(("name", "modality"), [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_non_chest_dicoms_load_and_report_modality(name: str, modality: str) -> None:
    result = load_image(get_testdata_file(name))
    assert_valid(result)
    assert result.meta.modality == modality


# --------------------------------------------------------------------------- synthetic DICOM: errors


def test_dicom_without_pixel_data() -> None:
    ds = make_dicom(np.zeros((4, 4), dtype=np.uint8), with_pixel_data=False)
    with pytest.raises(InvalidImageError, match="DICOM file has no pixel data"):
        load_image(dicom_bytes(ds))


def test_dicom_truncated_pixel_data_element() -> None:
    ds = make_dicom(np.zeros((8, 8), dtype=np.uint16))
    ds.PixelData = ds.PixelData[:50]
    with pytest.raises(InvalidImageError, match="pixel data"):
        load_image(dicom_bytes(ds))


def test_dicom_truncated_file() -> None:
    data = dicom_bytes(make_dicom(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)))
    with pytest.raises(InvalidImageError):
        load_image(data[: len(data) - 3000])


def test_dicom_pixel_limit_checked_before_decoding() -> None:
    # The header claims 60000 x 60000 x 2 frames but holds almost no data: the size check must fire
    # first (ImageTooLargeError), not a decoding error.
    ds = make_dicom(np.zeros((2, 2), dtype=np.uint8), frames=2)
    ds.Rows = ds.Columns = 60000
    with pytest.raises(ImageTooLargeError, match="7200000000.*50000000"):
        load_image(dicom_bytes(ds), max_pixels=50_000_000)


def test_dicom_unsupported_transfer_syntax_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # the [interop] extra installs a JPEG-LS decoder (pyjpegls, through highdicom): the machine without one is
    # simulated, so that the error a user without it sees is checked everywhere
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: False))
    with pytest.raises(UnsupportedFormatError, match="JPEG-LS Lossless"):
        load_image(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))


def test_dicom_transfer_syntax_without_any_decoder() -> None:
    ds = make_dicom(np.zeros((4, 4), dtype=np.uint8))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.PixelData = encapsulate([b"\0" * 16])
    with pytest.raises(UnsupportedFormatError, match="MPEG2"):
        load_image(dicom_bytes(ds))


# --------------------------------------------------------------------------- privacy


def _phi_dataset(**kwargs) -> Dataset:
    ds = make_dicom(np.arange(16, dtype=np.uint16).reshape(4, 4), bits_stored=12, **kwargs)
    ds.PatientName = "Doe^John"
    ds.PatientID = "SECRET123"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC98765"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.StudyDate = "20200101"
    return ds


def _assert_no_phi(text: str) -> None:
    for secret in PHI + ("20200101",):
        assert secret not in text


def test_identifiers_never_leave_the_loader(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ds = _phi_dataset()
    uids = (str(ds.SOPInstanceUID), str(ds.file_meta.MediaStorageSOPInstanceUID))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_image(dicom_bytes(ds))
    assert_valid(result)
    texts = [repr(result), repr(result.meta), json.dumps(result.meta.to_dict()), caplog.text]
    texts += [str(w.message) for w in caught]
    for text in texts:
        _assert_no_phi(text)
        for uid in uids:
            assert uid not in text
    assert set(result.meta.to_dict()) == {
        "source_format", "width", "height", "modality", "view_position", "body_part",
        "photometric_interpretation", "bits_stored", "pixel_spacing_mm", "pixel_spacing_tag", "frames",
        "colourfulness", "warnings", "reduction",
    }  # fmt: skip


@pytest.mark.parametrize("breakage", ["no_pixels", "truncated_pixels", "too_large", "bad_syntax", "cut_file"])
def test_identifiers_not_in_error_messages(breakage: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ds = _phi_dataset()
    if breakage == "no_pixels":
        del ds.PixelData
    elif breakage == "truncated_pixels":
        ds.PixelData = ds.PixelData[:6]
    elif breakage == "too_large":
        ds.Rows = 10000
    elif breakage == "bad_syntax":
        ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
        ds.PixelData = encapsulate([ds.PixelData])
    if breakage == "bad_syntax":  # a private syntax needs the encoding spelled out for writing
        data = dicom_bytes(ds, implicit_vr=False, little_endian=True)
    else:
        data = dicom_bytes(ds)
    if breakage == "cut_file":
        data = data[: data.index(b"SECRET123") + 4]
    with pytest.raises(InputError) as info:
        load_image(data, max_pixels=1000)
    _assert_no_phi(str(info.value))
    _assert_no_phi(repr(info.value))
    assert "1.2.3.4.5.6" not in str(info.value)
    _assert_no_phi(caplog.text)


# --------------------------------------------------------------------------- PNG / JPEG


def test_png_8bit_grey_exact(tmp_path: Path) -> None:
    arr = np.array([[0, 51, 102], [153, 204, 255]], dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(arr).save(path)
    result = load_image(path)
    np.testing.assert_allclose(assert_valid(result), arr / 255.0, atol=1e-6)
    assert (result.meta.source_format, result.meta.width, result.meta.height, result.meta.bits_stored) == (
        "png", 3, 2, 8,
    )  # fmt: skip


def test_png_16bit_grey_min_max() -> None:
    arr = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    result = load_image(encode(Image.fromarray(arr), "PNG"))
    np.testing.assert_allclose(assert_valid(result), [[0, 0.25], [0.5, 1]], atol=1e-6)
    assert result.meta.bits_stored == 16


def test_png_rgb_uses_bt601_luma() -> None:
    arr = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    px = assert_valid(load_image(encode(Image.fromarray(arr, "RGB"), "PNG")))
    np.testing.assert_allclose(px[0], [0.299, 0.587, 0.114, 1.0], atol=1e-6)


def test_png_rgba_composited_over_black() -> None:
    arr = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [255, 255, 255, 51]]], dtype=np.uint8)
    px = assert_valid(load_image(encode(Image.fromarray(arr, "RGBA"), "PNG")))
    np.testing.assert_allclose(px[0], [1.0, 0.0, 0.2], atol=1e-6)


def test_png_la_composited_over_black() -> None:
    img = Image.fromarray(np.array([[[200, 255], [200, 0]]], dtype=np.uint8), "LA")
    px = assert_valid(load_image(encode(img, "PNG")))
    np.testing.assert_allclose(px[0], [200 / 255, 0.0], atol=1e-6)


def test_png_palette() -> None:
    img = Image.new("P", (3, 1))
    img.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    px = assert_valid(load_image(encode(img, "PNG")))
    np.testing.assert_allclose(px[0], [0.0, 1.0, 0.299], atol=1e-6)


def test_png_palette_with_transparency() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 255, 255, 128, 128, 128] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    px = assert_valid(load_image(encode(img, "PNG", transparency=0)))
    np.testing.assert_allclose(px[0], [0.0, 128 / 255], atol=1e-6)


def test_png_1bit() -> None:
    img = Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1")
    result = load_image(encode(img, "PNG"))
    np.testing.assert_allclose(assert_valid(result)[0], [0, 1, 0])
    assert result.meta.bits_stored == 1


def test_jpeg_grey_and_rgb(tmp_path: Path) -> None:
    grey = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (16, 1))
    path = tmp_path / "grey.jpg"
    Image.fromarray(grey).save(path, quality=95)
    result = load_image(path)
    px = assert_valid(result)
    assert result.meta.source_format == "jpeg" and px.shape == (16, 32)
    np.testing.assert_allclose(px, grey / 255.0, atol=0.05)
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 1] = 255
    px = assert_valid(load_image(encode(Image.fromarray(rgb), "JPEG", quality=95)))
    assert px.mean() == pytest.approx(0.587, abs=0.02)


def test_cmyk_jpeg() -> None:
    img = Image.new("CMYK", (16, 8), (0, 0, 0, 0))  # white
    img.paste((0, 0, 0, 255), (0, 0, 8, 8))  # black left half
    result = load_image(encode(img, "JPEG", quality=95))
    px = assert_valid(result)
    assert px.shape == (8, 16)
    assert px[:, :6].mean() < 0.1 and px[:, 10:].mean() > 0.9


def test_exif_orientation_applied() -> None:
    arr = np.zeros((20, 40), dtype=np.uint8)  # width 40, height 20
    arr[:, :20] = 255  # left half bright
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())
    result = load_image(data)
    px = assert_valid(result)
    assert (result.meta.width, result.meta.height) == (20, 40)
    assert px.shape == (40, 20)
    assert px[:20].mean() > 0.9 and px[20:].mean() < 0.1  # the bright left half is now on top


def test_format_detected_from_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "actually_png.dcm"
    Image.new("L", (5, 4), 255).save(path, format="PNG")
    result = load_image(path)
    assert result.meta.source_format == "png"
    assert_valid(result)


# --------------------------------------------------------------------------- other input types


def test_bytes_bytearray_and_memoryview_input() -> None:
    data = encode(Image.new("L", (6, 3), 128), "PNG")
    for src in (data, bytearray(data), memoryview(data)):
        px = assert_valid(load_image(src))
        np.testing.assert_allclose(px, 128 / 255, atol=1e-6)


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([[0, 255]], dtype=np.uint8), [0, 1]),
        (np.array([[100, 300, 500]], dtype=np.uint16), [0, 0.5, 1]),
        (np.array([[0.25, 0.5]], dtype=np.float32), [0.25, 0.5]),
        (np.array([[-10.0, 0.0, 10.0]]), [0, 0.5, 1]),
        (np.array([[True, False]]), [1, 0]),
        (np.array([[[255, 0, 0]]], dtype=np.uint8), [0.299]),
        (np.array([[[255, 255, 255, 0]]], dtype=np.uint8), [0.0]),
        (np.array([[[51], [102]]], dtype=np.uint8), [0.2, 0.4]),
    ],
)
def test_ndarray_input(arr: np.ndarray, expected: list[float]) -> None:
    result = load_image(arr)
    np.testing.assert_allclose(assert_valid(result)[0], expected, atol=1e-6)
    assert result.meta.source_format == "array"


@pytest.mark.parametrize("bad", [np.array([[0.0, np.nan]]), np.array([[np.inf, 0.0]])])
def test_ndarray_with_nan_or_inf_rejected(bad: np.ndarray) -> None:
    with pytest.raises(InvalidImageError, match="NaN or infinite"):
        load_image(bad)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 3)), np.zeros((2, 2, 5)), np.array([["a"]])])
def test_ndarray_bad_shape_or_dtype(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        load_image(bad)


def test_pil_image_input() -> None:
    result = load_image(Image.new("L", (4, 2), 255))
    assert result.meta.source_format == "array"
    np.testing.assert_allclose(assert_valid(result), 1.0)
    opened = Image.open(io.BytesIO(encode(Image.new("L", (4, 2), 0), "PNG")))
    assert load_image(opened).meta.source_format == "png"
    gif = Image.open(io.BytesIO(encode(Image.new("L", (4, 2)), "GIF")))
    with pytest.raises(UnsupportedFormatError, match="GIF"):
        load_image(gif)


def test_unsupported_python_type() -> None:
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real PNG / JPEG data


def test_nih_png_loads() -> None:
    folder = data_path("nih", "images")
    path = sorted(folder.glob("*.png"))[0]
    result = load_image(path)
    px = assert_valid(result)
    assert px.shape == (512, 512) and result.meta.source_format == "png"
    assert px.std() > 0.05


def test_kermany_jpeg_loads() -> None:
    folder = data_path("kermany", "images")
    path = next(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in (".jpeg", ".jpg"))
    result = load_image(path)
    px = assert_valid(result)
    assert px.shape == (224, 224) and result.meta.source_format == "jpeg"


# --------------------------------------------------------------------------- bad input


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty file"):
        load_image(path)
    with pytest.raises(InvalidImageError, match="empty file"):
        load_image(b"")


def noise_image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))


def test_truncated_png(tmp_path: Path) -> None:
    data = encode(noise_image(), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[:100])
    with pytest.raises(InvalidImageError, match="PNG"):
        load_image(path)


def test_truncated_jpeg() -> None:
    data = encode(noise_image(), "JPEG")
    for cut in (len(data) // 2, 300):
        with pytest.raises(InvalidImageError, match="JPEG"):
            load_image(data[:cut])


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("this is not an image\n")
    with pytest.raises(UnsupportedFormatError, match=r"not a PNG, JPEG or DICOM file \(detected: text\)"):
        load_image(path)


@pytest.mark.parametrize(("fmt", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF"), ("WEBP", "WebP")])
def test_other_raster_formats_rejected_by_name(fmt: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path, format=fmt)
    with pytest.raises(UnsupportedFormatError, match=f"detected: {name}"):
        load_image(path)


def test_pixel_limit_small_image() -> None:
    data = encode(Image.new("L", (100, 50)), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"5000 pixels.*limit of 1000"):
        load_image(data, max_pixels=1000)
    assert load_image(data, max_pixels=5000).pixels.shape == (50, 100)


def test_pixel_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXRTRIAGE_MAX_PIXELS", "100")
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((20, 20), dtype=np.uint8))


def test_huge_png_header_is_refused_without_decoding() -> None:
    before = Image.MAX_IMAGE_PIXELS
    # Below Pillow's own bomb limit: our check on the lazily opened header fires.
    with pytest.raises(ImageTooLargeError, match=r"64000000 pixels.*50000000"):
        load_image(png_with_header(8000, 8000), max_pixels=50_000_000)
    # Far above it: Pillow's DecompressionBombError is mapped to the same error.
    with pytest.raises(ImageTooLargeError, match=r"10000000000 pixels.*50000000"):
        load_image(png_with_header(100_000, 100_000), max_pixels=50_000_000)
    assert Image.MAX_IMAGE_PIXELS == before  # global Pillow state untouched


def test_oversized_file_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.dcm"
    with path.open("wb") as fh:
        fh.truncate(20 * 1024 * 1024)  # sparse 20 MiB file
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(path, max_pixels=10)


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "Doe_John_chest.png"
    with pytest.raises(InvalidImageError, match="file not found") as info:
        load_image(missing)
    assert "Doe" not in str(info.value)  # file names can carry patient names
    with pytest.raises(InvalidImageError):
        load_image(str(missing))


def test_directory_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError, match="directory"):
        load_image(tmp_path)


def test_invalid_max_pixels() -> None:
    with pytest.raises(ValueError):
        load_image(np.zeros((2, 2)), max_pixels=0)


def test_colourfulness_separates_grey_from_colour():
    grey_rgb = np.repeat(np.linspace(0, 255, 64 * 64, dtype=np.uint8).reshape(64, 64, 1), 3, axis=2)
    colour = grey_rgb.copy()
    colour[..., 0] = 255 - colour[..., 0]
    assert load_image(grey_rgb).meta.colourfulness == 0.0
    assert load_image(colour).meta.colourfulness > 0.3
    assert load_image(grey_rgb[..., 0]).meta.colourfulness is None


# ----------------------------------------------------------------------------- issue 9.3: large images


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_raster_is_decoded_at_reduced_resolution_with_its_original_size(fmt: str) -> None:
    """A 6000 x 4000 image becomes at most CXRTRIAGE_MAX_WORKING_PIXELS pixels; meta keeps the original size."""
    from cxrtriage import config

    arr = np.full((4000, 6000), 40, dtype=np.uint8)
    arr[1000:2000, 3000:4500] = 220  # a bright block whose place must survive the reduction
    loaded = load_image(encode(Image.fromarray(arr), fmt))
    h, w = loaded.pixels.shape
    assert h * w <= config.Settings().max_working_pixels and (loaded.meta.width, loaded.meta.height) == (6000, 4000)
    assert loaded.meta.reduction == pytest.approx(6000 / w, rel=1e-3) and loaded.meta.reduction >= 2
    assert any("reduced resolution" in x or "1/" in x for x in loaded.meta.warnings)
    r = loaded.meta.reduction
    block = loaded.pixels[int(1100 / r) : int(1900 / r), int(3100 / r) : int(4400 / r)]
    assert block.mean() > 0.8 and loaded.pixels[: int(900 / r), : int(2900 / r)].mean() < 0.2


def test_large_dicom_is_reduced_before_its_luts() -> None:
    arr = np.full((3000, 4000), 500, dtype=np.uint16)
    arr[:1500] = 3000
    loaded = load_image(dicom_bytes(make_dicom(arr, bits_stored=12)))
    assert (loaded.meta.width, loaded.meta.height) == (4000, 3000) and loaded.meta.reduction == 2.0
    assert loaded.pixels.shape == (1500, 2000)
    assert loaded.pixels[:700].mean() > 0.9 and loaded.pixels[800:].mean() < 0.1


def test_small_images_are_untouched_by_the_working_limit() -> None:
    arr = (np.arange(512 * 512) % 251).astype(np.uint8).reshape(512, 512)
    loaded = load_image(encode(Image.fromarray(arr), "PNG"))
    assert loaded.meta.reduction == 1.0 and loaded.pixels.shape == (512, 512)
    np.testing.assert_array_equal(loaded.pixels, arr / np.float32(255))


def test_caller_pil_image_is_not_closed_by_a_reduced_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXRTRIAGE_MAX_WORKING_PIXELS", str(100 * 100))
    img = Image.fromarray(np.full((400, 400), 128, dtype=np.uint8))
    assert load_image(img).pixels.shape == (100, 100)
    assert img.getpixel((0, 0)) == 128  # still usable by the caller


def test_default_pixel_limit_refuses_the_issue_bomb_with_the_limit_in_the_message() -> None:
    with pytest.raises(ImageTooLargeError, match=r"49999041 pixels \(7071 x 7071\).*limit of 36000000"):
        load_image(png_with_header(7071, 7071))
