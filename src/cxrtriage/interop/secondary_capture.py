"""A triage result burned into a picture of its radiograph: a DICOM Secondary Capture (highdicom, the ``[interop]``
extra) for viewers that cannot show the SR's regions.

The source is decoded by cxrtriage's own loader, so the picture is what the model saw: the same LUTs, MONOCHROME1
handling, transfer syntaxes and working resolution, flipped when the prediction says its polarity was flipped. The
evidence boxes (original pixels) are scaled to that grid and drawn, numbered, in colour (RGB), and a banner *above*
the image (so no anatomy is covered) states the category and score, the review flag, that this is AI decision
support and not a diagnosis, and what the boxes are. Small images are enlarged first so the text stays legible.
The text uses Pillow's bundled font (present wherever Pillow is), which has Latin-1 glyphs only: no dashes beyond
the hyphen. Patient and study attributes are copied from the source (the picture files with its study), the source
instance is referenced, and nothing here logs them.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import numpy as np

from cxrtriage.schema import Prediction

if TYPE_CHECKING:
    import pydicom
    from PIL import Image, ImageDraw, ImageFont

SERIES_DESCRIPTION = "cxrtriage AI evidence (burned in, preliminary)"
#: narrower decoded images are enlarged to this width: the banner text needs pixels to be readable
MIN_WIDTH = 1024
BOX_COLOUR = (255, 210, 0)
URGENT_COLOUR = (255, 90, 90)
REVIEW_COLOUR = (255, 170, 0)
TEXT_COLOUR = (235, 235, 235)
#: DICOM CID 7202: why the source is referenced
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def secondary_capture(pred: Prediction, source: pydicom.Dataset, *, series_number: int = 902,
                      instance_number: int = 1) -> pydicom.Dataset:
    """The Secondary Capture (a highdicom ``SCImage``) of ``source`` (the full dataset, pixels included) with the
    evidence boxes of ``pred`` and its label burned in, in the source's patient and study."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    from cxrtriage.interop.sr import complete_source, sr_module

    hd = sr_module("DICOM Secondary Capture output")
    picture = burned_in_picture(pred, source)
    completed = complete_source(source)
    with warnings.catch_warnings():
        # highdicom warns about unusual person names by quoting them: a patient identifier must never reach a log
        warnings.simplefilter("ignore", UserWarning)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=completed, pixel_array=np.asarray(picture), photometric_interpretation="RGB",
            bits_allocated=8, coordinate_system="PATIENT",
            # highdicom insists on a value; the source's own (or empty, Type 2) replaces it below
            patient_orientation=("L", "F"),
            series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(),
            instance_number=instance_number, manufacturer="cxrtriage", transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=SERIES_DESCRIPTION,
            specific_character_set="ISO_IR 192")  # UTF-8: names decoded from any source character set fit
    # the picture keeps the source's orientation (a banner is added above, nothing is flipped or rotated)
    sc.PatientOrientation = completed.get("PatientOrientation") or ""
    sc.Laterality = completed.get("Laterality") or ""  # Type 2C: dciodvfy asks for it, a chest is not paired
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"  # made by software on a workstation, not captured from another device
    sc.DerivationDescription = "cxrtriage AI triage label and evidence boxes burned into the source image"
    if completed.get("LossyImageCompression") == "01":  # once lossy, every derived image says so
        sc.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in completed:
                setattr(sc, keyword, completed[keyword].value)
    reference = Dataset()
    reference.ReferencedSOPClassUID = completed.SOPClassUID
    reference.ReferencedSOPInstanceUID = completed.SOPInstanceUID
    reference.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept(*SOURCE_PURPOSE)]
    sc.SourceImageSequence = [reference]
    return sc


def burned_in_picture(pred: Prediction, source: pydicom.Dataset) -> Image.Image:
    """The RGB picture: banner on top, then the source as the model saw it with the numbered boxes drawn on it."""
    from PIL import Image, ImageDraw

    grey, original_width = _analysed_grey(pred, source)
    if grey.width < MIN_WIDTH:
        grey = grey.resize((MIN_WIDTH, round(grey.height * MIN_WIDTH / grey.width)), Image.Resampling.BICUBIC)
    scale = grey.width / original_width
    lines = _banner_lines(pred)
    fonts = [_fitted_font(" ".join(t for t, _ in segments), size, grey.width) for segments, size in
             zip(lines, [grey.width // 26] + [grey.width // 44] * (len(lines) - 1))]
    pad = max(4, grey.width // 100)
    heights = [round(font.size * 1.3) for font in fonts]
    top = 2 * pad + sum(heights)
    picture = Image.new("RGB", (grey.width, grey.height + top), (0, 0, 0))
    picture.paste(grey.convert("RGB"), (0, top))
    draw = ImageDraw.Draw(picture)
    y = pad
    for segments, font, height in zip(lines, fonts, heights):
        x = pad
        for text, colour in segments:
            draw.text((x, y), text, fill=colour, font=font)
            x += font.getlength(text + " ")
        y += height
    draw.line([(0, top - 1), (grey.width, top - 1)], fill=BOX_COLOUR, width=max(1, pad // 3))
    _draw_boxes(draw, pred, scale, top, grey.width)
    return picture


def _analysed_grey(pred: Prediction, source: pydicom.Dataset) -> tuple[Image.Image, int]:
    """The source as 8-bit grey through cxrtriage's own loader (serialised back to bytes, so the decode is the
    prediction's, working resolution included), and the source's original width (the crops' grid)."""
    import pydicom
    from PIL import Image

    from cxrtriage.imaging.load import load_image
    from cxrtriage.imaging.polarity import FLIP_WARNING

    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, source)
    loaded = load_image(buffer.getvalue())
    pixels = 1.0 - loaded.pixels if FLIP_WARNING in pred.warnings else loaded.pixels
    grey = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L"), loaded.meta.width


def _banner_lines(pred: Prediction) -> list[list[tuple[str, tuple[int, int, int]]]]:
    """The banner, line by line, as (text, colour) segments: the result first, then what it is and is not."""
    first = [(pred.label.upper(), URGENT_COLOUR if pred.label == "Urgent" else TEXT_COLOUR),
             (f"score {pred.score:.2f} (threshold {pred.threshold:.2f})", TEXT_COLOUR)]
    if pred.needs_review:
        first.append(("- NEEDS REVIEW", REVIEW_COLOUR))
    n = len(pred.crops)
    boxes = ("No AI evidence regions were marked" if not n else
             "Numbered yellow box 1: AI evidence region (where the model looked), not a finding" if n == 1 else
             f"Numbered yellow boxes 1-{n}: AI evidence regions (where the model looked), not findings")
    return [first,
            [("AI triage - decision support only, not for diagnosis. Preliminary, not verified.", TEXT_COLOUR)],
            [(boxes, BOX_COLOUR)],
            [(f"cxrtriage model {pred.model.name} {pred.model.version}", TEXT_COLOUR)]]


def _fitted_font(text: str, size: int, width: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels, smaller until ``text`` fits the picture's width."""
    from PIL import ImageFont

    size = max(10, size)
    font = ImageFont.load_default(size=size)
    while size > 10 and font.getlength(text) > width * 0.96:
        size -= 1
        font = ImageFont.load_default(size=size)
    return font


def _draw_boxes(draw: ImageDraw.ImageDraw, pred: Prediction, scale: float, top: int, width: int) -> None:
    """Each crop (original pixels) as a rectangle on the picture (``scale``, below the banner of height ``top``),
    its number in a filled tag above its top-left corner (inside when there is no room above)."""
    from PIL import ImageFont

    line = max(2, round(width / 300))
    font = ImageFont.load_default(size=max(16, width // 32))
    for number, crop in enumerate(pred.crops, start=1):
        x0, y0 = round(crop.x * scale), round(crop.y * scale) + top
        x1, y1 = round((crop.x + crop.w) * scale) - 1, round((crop.y + crop.h) * scale) + top - 1
        draw.rectangle([x0, y0, x1, y1], outline=BOX_COLOUR, width=line)
        _, _, right, lower = font.getbbox(str(number))
        tag_w, tag_h = right + 3 * line, lower + 2 * line
        tag_y = y0 - tag_h if y0 - tag_h >= top else y0
        draw.rectangle([x0, tag_y, x0 + tag_w, tag_y + tag_h], fill=BOX_COLOUR)
        draw.text((x0 + 1.5 * line, tag_y + line), str(number), fill=(0, 0, 0), font=font)
