"""A triage result burned into a picture of its radiograph: a DICOM Secondary Capture (highdicom, the ``[interop]``
extra) for viewers that cannot show the SR's regions.

The picture is what the model saw: the pixels it analysed (:class:`~cxrtriage.interop.context.OutputContext`, from
the pipeline run: the loader's LUTs, MONOCHROME1 handling and working resolution, already flipped when an inverted
film was detected), so the source is never decoded again. The evidence boxes (original pixels) are scaled to that
grid and drawn, numbered, in colour (RGB), and a banner *above*
the image (so no anatomy is covered) states the category and score, the review flag, that this is AI decision
support and not a diagnosis, and what the boxes are. Small images are enlarged first so the text stays legible.
The text uses Pillow's bundled font (present wherever Pillow is), which has Latin-1 glyphs only: no dashes beyond
the hyphen. Patient and study attributes are copied from the source (the picture files with its study), the source
instance is referenced, and nothing here logs them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from cxrtriage.interop.context import OutputContext
from cxrtriage.interop.dicom_output import MANUFACTURER, complete_source, highdicom_module
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


def from_context(context: OutputContext) -> pydicom.Dataset:
    """The output format ``sc``: the picture of a triaged DICOM input, drawn on the pixels the model analysed."""
    if context.source is None or context.image is None or context.pixels is None:
        raise ValueError("a Secondary Capture needs a DICOM source and the analysed pixels")
    return secondary_capture(
        context.prediction,
        context.source.dataset,
        context.pixels,
        original_width=context.image.meta.width,
        polarity_flipped=context.polarity_flipped,
    )


def secondary_capture(
    pred: Prediction,
    source: pydicom.Dataset,
    analysed: np.ndarray,
    *,
    original_width: int,
    polarity_flipped: bool = False,
    series_number: int = 902,
    instance_number: int = 1,
) -> pydicom.Dataset:
    """The Secondary Capture (a highdicom ``SCImage``) of ``source`` (its header is enough) with the evidence boxes of
    ``pred`` and its label burned in on ``analysed`` (the pixels the model analysed: ``[0, 1]`` grey, display
    polarity, flipped already when ``polarity_flipped``; ``original_width`` is the source's, the crops' grid), in the
    source's patient and study."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    hd = highdicom_module("DICOM Secondary Capture output")
    picture = burned_in_picture(pred, analysed, original_width)
    completed = complete_source(source)
    with warnings.catch_warnings():
        # highdicom warns about unusual person names by quoting them: a patient identifier must never reach a log
        warnings.simplefilter("ignore", UserWarning)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=completed,
            pixel_array=np.asarray(picture),
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            # highdicom insists on a value; the source's own (or empty, Type 2) replaces it below
            patient_orientation=("L", "F"),
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=SERIES_DESCRIPTION,
            specific_character_set="ISO_IR 192",
        )  # UTF-8: names decoded from any source character set fit
    # the picture keeps the source's orientation (a banner is added above, nothing is flipped or rotated)
    sc.PatientOrientation = completed.get("PatientOrientation") or ""
    sc.Laterality = completed.get("Laterality") or ""  # Type 2C: dciodvfy asks for it, a chest is not paired
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.ConversionType = "WSD"  # made by software on a workstation, not captured from another device
    sc.DerivationDescription = "cxrtriage AI triage label and evidence boxes burned into the source image" + (
        "; the source's inverted grey scale was corrected (shown as the model analysed it)" if polarity_flipped else ""
    )
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


def burned_in_picture(pred: Prediction, analysed: np.ndarray, original_width: int) -> Image.Image:
    """The RGB picture: banner on top, then the source as the model saw it (``analysed``) with the numbered boxes
    (``original_width``: the grid of the crops) drawn on it."""
    from PIL import Image, ImageDraw

    grey = Image.fromarray(np.clip(np.rint(analysed * 255.0), 0, 255).astype(np.uint8), mode="L")
    if grey.width < MIN_WIDTH:
        grey = grey.resize((MIN_WIDTH, round(grey.height * MIN_WIDTH / grey.width)), Image.Resampling.BICUBIC)
    scale = grey.width / original_width
    lines = _banner_lines(pred)
    fonts = [
        _fitted_font(" ".join(t for t, _ in segments), size, grey.width)
        for segments, size in zip(lines, [grey.width // 26] + [grey.width // 44] * (len(lines) - 1))
    ]
    pad = max(4, grey.width // 100)
    heights = [round(getattr(font, "size", 10) * 1.3) for font in fonts]  # load_default(size=) is a FreeTypeFont
    top = 2 * pad + sum(heights)
    picture = Image.new("RGB", (grey.width, grey.height + top), (0, 0, 0))
    picture.paste(grey.convert("RGB"), (0, top))
    draw = ImageDraw.Draw(picture)
    y = pad
    for segments, font, height in zip(lines, fonts, heights):
        x: float = pad
        for text, colour in segments:
            draw.text((x, y), text, fill=colour, font=font)
            x += font.getlength(text + " ")
        y += height
    draw.line([(0, top - 1), (grey.width, top - 1)], fill=BOX_COLOUR, width=max(1, pad // 3))
    _draw_boxes(draw, pred, scale, top, grey.width)
    return picture


def _banner_lines(pred: Prediction) -> list[list[tuple[str, tuple[int, int, int]]]]:
    """The banner, line by line, as (text, colour) segments: the result first, then what it is and is not."""
    first = [
        (pred.label.upper(), URGENT_COLOUR if pred.label == "Urgent" else TEXT_COLOUR),
        (f"score {pred.score:.2f} (threshold {pred.threshold:.2f})", TEXT_COLOUR),
    ]
    if pred.needs_review:
        first.append(("- NEEDS REVIEW", REVIEW_COLOUR))
    n = len(pred.crops)
    boxes = (
        "No AI evidence regions were marked"
        if not n
        else "Numbered yellow box 1: AI evidence region (where the model looked), not a finding"
        if n == 1
        else f"Numbered yellow boxes 1-{n}: AI evidence regions (where the model looked), not findings"
    )
    return [
        first,
        [("AI triage - decision support only, not for diagnosis. Preliminary, not verified.", TEXT_COLOUR)],
        [(boxes, BOX_COLOUR)],
        [(f"cxrtriage model {pred.model.name} {pred.model.version}", TEXT_COLOUR)],
    ]


def _fitted_font(text: str, size: int, width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
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
