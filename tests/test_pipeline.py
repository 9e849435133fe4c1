"""End-to-end behaviour of cxrtriage.predict on real radiographs with the bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from cxrtriage import decision
from cxrtriage.errors import InvalidImageError, NotAChestXrayError, UnsupportedFormatError
from cxrtriage.schema import DISCLAIMER, Prediction, prediction_json_schema

SPEC_FIELDS = ["label", "score", "explanation", "crops", "provenance"]


def _schema_valid(pred: Prediction) -> dict:
    doc = json.loads(pred.model_dump_json())
    jsonschema.validate(doc, prediction_json_schema())
    assert list(doc)[:5] == SPEC_FIELDS
    for crop in doc["crops"]:
        assert {"x", "y", "w", "h", "thumb_path"} <= set(crop)
    for prov in doc["provenance"]:
        assert {"source", "snippet"} <= set(prov)
    return doc


def test_nih_test_images_give_schema_valid_results(engine, test_records):
    nih = [r for r in test_records if r.dataset == "nih"][:6]
    for rec in nih:
        pred = engine.predict(rec.path)
        doc = _schema_valid(pred)
        assert doc["label"] in ("Urgent", "Non-Urgent")
        assert 0.0 <= doc["score"] <= 1.0
        assert doc["disclaimer"] == DISCLAIMER
        assert doc["model"]["sha256"] and len(doc["model"]["sha256"]) == 64
        assert doc["explanation"].startswith(doc["label"])
        # every crop is inside the original image and its thumbnail exists
        width, height = doc["image"]["width"], doc["image"]["height"]
        if doc["label"] == "Urgent":  # a clinician sent an Urgent result must be shown where the evidence is
            assert doc["crops"], f"{rec.path.name}: Urgent without an evidence crop"
            zone = doc["crops"][0]["region"]
            assert zone and zone in doc["explanation"], (zone, doc["explanation"])
        for c in doc["crops"]:
            assert c["x"] + c["w"] <= width and c["y"] + c["h"] <= height
            assert Path(c["thumb_path"]).is_file()
        # similar training cases are IDs of training images, never test images
        cases = [p for p in doc["provenance"] if p["source"].startswith("training_case:")]
        assert cases and all(p["source"].startswith(("training_case:nih/", "training_case:kermany/")) for p in cases)


def test_label_follows_threshold_and_review_band(engine, test_records):
    for rec in [r for r in test_records if r.dataset == "nih"][:10]:
        pred = engine.predict(rec.path, save_crops=False)
        low, high = pred.review_band
        assert low <= pred.threshold <= high
        atypical = [w for w in pred.warnings if w.startswith("atypical frontal radiograph: ")]
        if pred.score >= pred.threshold or low <= pred.score < high or atypical:
            assert pred.label == "Urgent"  # an atypical frontal film goes to a human as Urgent, whatever its score
        else:
            assert pred.label == "Non-Urgent"
        assert pred.needs_review == (low <= pred.score < high or bool(atypical))


def test_every_dicom_in_data_is_triaged(engine, data_dir):
    files = sorted((data_dir / "dicom").glob("*.dcm"))
    assert len(files) == 3
    for f in files:
        _schema_valid(engine.predict(f))


def test_mislabelled_monochrome1_is_analysed_with_positive_polarity(engine, data_dir):
    original = engine.predict(data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline.dcm", save_crops=False)
    retagged = engine.predict(
        data_dir / "dicom" / "SIIM_CR_chest_PA_jpegbaseline_MONOCHROME1-modified.dcm", save_crops=False
    )
    assert any("MONOCHROME1" in w for w in retagged.warnings)
    assert retagged.score == pytest.approx(original.score, abs=1e-4)
    correct_mono1 = engine.predict(data_dir / "dicom" / "CR-MONO1-10-chest.dcm", save_crops=False)
    assert not any("MONOCHROME1" in w for w in correct_mono1.warnings)


def test_boxes_are_in_original_pixels(engine, data_dir, tmp_path):
    """The same image at two sizes gives boxes that scale with the image."""
    src = data_dir / "nih" / "images" / "00000150_002.png"
    big = tmp_path / "big.png"
    Image.open(src).resize((1024, 1024), Image.BILINEAR).save(big)
    small_pred, big_pred = engine.predict(src), engine.predict(big)
    assert small_pred.crops and big_pred.crops
    a, b = small_pred.crops[0], big_pred.crops[0]
    assert abs(b.x - 2 * a.x) <= 24 and abs(b.w - 2 * a.w) <= 24


def test_a_large_film_is_analysed_reduced_and_cropped_at_full_resolution(engine, data_dir, tmp_path):
    """A film of 1024 px or more is analysed box-averaged (imaging/analysis_size.py): the answer of a 512 px NIH film
    stays when the same film arrives at 2048 px, while its thumbnails are cut from the 2048 px pixels."""
    from cxrtriage.explain.evidence import EvidenceBox, save_crop_thumbnails

    src = data_dir / "nih" / "images" / "00000150_002.png"
    big = tmp_path / "big.png"
    Image.open(src).resize((2048, 2048), Image.BILINEAR).save(big)
    small_pred = engine.predict(src)
    triaged = engine.run(big)
    big_pred = triaged.prediction
    assert big_pred.label == small_pred.label and big_pred.score == pytest.approx(small_pred.score, abs=0.02)
    assert triaged.pixels.shape == (2048, 2048)  # what Secondary Capture gets: the decoded resolution
    assert big_pred.crops
    for crop in big_pred.crops:
        assert crop.x % 4 == 0 and crop.w % 4 == 0  # a box of the 512 px analysis image, scaled by 4
        box = EvidenceBox(crop.x, crop.y, crop.w, crop.h, None, (crop.x, crop.y), crop.region)
        (again,) = save_crop_thumbnails(triaged.pixels, [box], tmp_path / "again")
        assert np.array_equal(np.asarray(Image.open(crop.thumb_path)), np.asarray(Image.open(again.thumb_path)))


def test_prior_report_is_quoted_verbatim_and_never_downgrades(engine, test_records):
    rec = next(r for r in test_records if r.dataset == "nih")
    report = "FINDINGS: Large right pneumothorax. No pleural effusion.\nIMPRESSION: Right pneumothorax."
    without = engine.predict(rec.path, save_crops=False)
    with_report = engine.predict(rec.path, report, save_crops=False)
    assert with_report.score == without.score  # the report never changes the score
    quotes = [p for p in with_report.provenance if p.source == "prior_report"]
    assert quotes and all(p.snippet in report for p in quotes)
    assert any(p.relation == "supports" for p in quotes)
    assert any(p.relation == "contradicts" and "effusion" in p.snippet for p in quotes)
    if without.label == "Non-Urgent":
        assert with_report.label == "Non-Urgent" and with_report.needs_review
        assert any("prior report" in w for w in with_report.warnings)
    else:
        assert with_report.label == "Urgent"


def test_prior_report_rule_flags_disagreement(engine, test_records):
    """A Non-Urgent image with a prior report affirming an urgent finding is flagged for review; a negated
    mention ("no pneumothorax") does not count as support."""
    for rec in [r for r in test_records if r.dataset == "nih" and not r.urgent]:
        base = engine.predict(rec.path, save_crops=False)
        if base.label == "Non-Urgent" and not base.needs_review:
            break
    else:
        pytest.skip("no confidently Non-Urgent NIH test image")
    negated = engine.predict(rec.path, "No pneumothorax. No pleural effusion.", save_crops=False)
    assert negated.label == "Non-Urgent" and not negated.needs_review
    affirmed = engine.predict(rec.path, "Moderate left pleural effusion.", save_crops=False)
    assert affirmed.label == "Non-Urgent" and affirmed.needs_review
    assert affirmed.explanation.startswith("Non-Urgent — needs a radiologist's review: the prior report describes an")
    assert affirmed.warnings[-1] == decision.PRIOR_REPORT_WARNING


NORMAL_PRIOR_REPORT = (
    "FINDINGS: The lungs are clear. No focal consolidation, pleural effusion or pneumothorax.\n"
    "IMPRESSION: No acute cardiopulmonary abnormality."
)


def test_a_normal_prior_report_on_an_urgent_film_is_flagged_for_review(engine, test_records):
    """The other direction: a film the model labels Urgent (confidently, outside the review band) with a prior
    report that describes no urgent finding keeps its label, goes to review and says why in plain words; an
    agreeing report (an affirmed finding) leaves it as it was."""
    for rec in [r for r in test_records if r.dataset == "nih" and r.urgent]:
        base = engine.predict(rec.path, save_crops=False)
        if base.label == "Urgent" and not base.needs_review:
            break
    else:
        pytest.skip("no confidently Urgent NIH test image")
    normal = engine.predict(rec.path, NORMAL_PRIOR_REPORT, save_crops=False)
    assert (normal.label, normal.score, normal.needs_review) == ("Urgent", base.score, True)
    assert decision.PRIOR_REPORT_NORMAL_WARNING in normal.warnings
    assert normal.explanation.startswith(
        "Urgent — needs a radiologist's review: the prior report describes no urgent finding"
    )
    assert {p.relation for p in normal.provenance if p.source == "prior_report"} == {"contradicts"}
    agreeing = engine.predict(rec.path, "Moderate left pleural effusion.", save_crops=False)
    assert (agreeing.label, agreeing.needs_review) == ("Urgent", False)
    assert decision.PRIOR_REPORT_NORMAL_WARNING not in agreeing.warnings
    assert agreeing.explanation.startswith("Urgent — likely abnormal")


def test_explanation_names_no_finding(engine, test_records):
    findings = ("pneumonia", "pneumothorax", "effusion", "edema", "consolidation", "mass", "infiltrat", "cardiomegaly")
    for rec in [r for r in test_records if r.dataset == "nih"][:8]:
        text = engine.predict(rec.path, save_crops=False).explanation.lower()
        assert not any(f in text for f in findings), text


@pytest.mark.parametrize(
    "name",
    [
        "astronaut",
        "coffee",
        "chelsea",
        "camera",
        "moon",
        "text",
        "brick",
        "coins",
        "page",
        "horse",
        "clock",
        "checkerboard",
    ],
)
def test_photographs_are_rejected(engine, name):
    import skimage.data

    img = getattr(skimage.data, name)()
    with pytest.raises(NotAChestXrayError):
        engine.predict(img, save_crops=False)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_ct_and_mr_are_rejected(engine, name):
    import pydicom.data

    with pytest.raises(NotAChestXrayError, match="not a chest radiograph"):
        engine.predict(pydicom.data.get_testdata_file(name), save_crops=False)


@pytest.mark.parametrize("kind", ["black", "white", "grey", "noise", "gradient"])
def test_synthetic_non_images_are_rejected(engine, kind):
    rng = np.random.default_rng(0)
    arr = {
        "black": np.zeros((512, 512)),
        "white": np.ones((512, 512)),
        "grey": np.full((400, 400), 0.5),
        "noise": rng.random((512, 512)),
        "gradient": np.tile(np.linspace(0, 1, 512), (512, 1)),
    }[kind].astype(np.float32)
    with pytest.raises(NotAChestXrayError):
        engine.predict(arr, save_crops=False)


def test_bad_files_raise_typed_errors(engine, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(InvalidImageError):
        engine.predict(empty)
    with pytest.raises(UnsupportedFormatError):
        engine.predict(text)


def test_no_stray_files_after_rejection(engine, tmp_path):
    crops = Path(engine.crops_dir)
    before = set(crops.iterdir()) if crops.exists() else set()
    with pytest.raises(NotAChestXrayError):
        engine.predict(np.zeros((256, 256), np.float32))
    after = set(crops.iterdir()) if crops.exists() else set()
    assert after == before


def test_no_pydicom_sample_file_is_triaged(engine):
    """None of pydicom's bundled DICOMs (CT, MR, US, NM, RT dose, segmentations, colour secondary captures...)
    is a chest radiograph: each must end in a typed input error, never a result and never a crash."""
    import warnings

    import pydicom.data

    from cxrtriage.errors import InputError

    triaged = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in pydicom.data.get_testdata_files("*.dcm"):
            try:
                engine.predict(f, save_crops=False)
                triaged.append(Path(f).name)
            except InputError:
                pass
    assert triaged == []


def test_layout_gate_reads_the_classifier_graphs_resized_image(engine, data_dir) -> None:
    """With classify_full.onnx the classifier runs before the layout gate and the gate reads the graph's ``resized``:
    exactly the squash the gate would make itself. Without the graph (numpy path) the pipeline hands the gate's
    squashed copy to the model (one resize instead of two), whose output is exactly what the full image gives."""
    from cxrtriage.backends.bundled import BundledOnnxBackend
    from cxrtriage.imaging.load import load_image
    from cxrtriage.imaging.preprocess import resize_square

    backend = engine.backend
    size = backend.layout.input_size
    assert backend.returns_resized(size) and not backend.accepts_squashed(size)
    path = sorted((data_dir / "nih" / "images").glob("*.png"))[0]
    pixels = load_image(path).pixels
    graph = backend.analyze(pixels)
    assert np.array_equal(graph.resized, resize_square(pixels, size))
    numpy_path = BundledOnnxBackend(graphs=False)
    assert numpy_path.accepts_squashed(size) and not numpy_path.accepts_squashed(size + 1)
    assert not numpy_path.returns_resized(size)
    full, squashed = numpy_path.analyze(pixels), numpy_path.analyze(resize_square(pixels, size))
    assert full.logit == squashed.logit and (full.cam == squashed.cam).all()
    assert (full.embedding == squashed.embedding).all()
    assert graph.logit == full.logit and abs(graph.score - full.score) < 1e-12
    assert np.array_equal(graph.cam, full.cam) and np.allclose(graph.embedding, full.embedding, atol=1e-6)


class _PinnedScore:
    """The bundled backend with its threshold and score pinned, to probe the decision at the 4th decimal."""

    def __init__(self, inner, score: float, threshold: float, band: tuple[float, float]) -> None:
        self._inner, self._score, self.threshold, self.review_band = inner, score, threshold, band

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def analyze(self, pixels):
        from dataclasses import replace

        return replace(self._inner.analyze(pixels), score=self._score)


@pytest.mark.parametrize("raw_score, label", [(0.215505, "Urgent"), (0.21544, "Non-Urgent"), (0.2156, "Urgent")])
def test_decision_is_made_on_the_reported_values(engine, data_dir, raw_score: float, label: str) -> None:
    """A score within 1e-4 of the threshold: the JSON (score, threshold, label) must agree with itself, so that
    re-scoring predictions files (eval_metrics.py) reproduces the pipeline's decisions exactly."""
    from cxrtriage.pipeline import Triage

    path = sorted((data_dir / "nih" / "images").glob("*.png"))[0]
    pinned = Triage(_PinnedScore(engine.backend, raw_score, threshold=0.215513, band=(0.1, 0.12)))
    pred = pinned.predict(path, save_crops=False)
    assert (pred.score, pred.threshold) == (round(raw_score, 4), 0.2155)
    assert pred.label == label == ("Urgent" if pred.score >= pred.threshold else "Non-Urgent")


def test_a_report_past_the_analysed_length_is_flagged(engine, data_dir) -> None:
    """Issue 9.3: the analysed length of a prior report is bounded; the result tells the reader to read the rest."""
    from cxrtriage.explain.report import DEFAULT_MAX_CHARS

    path = sorted((data_dir / "nih" / "images").glob("*.png"))[0]
    long_report = "No pneumothorax. " * (DEFAULT_MAX_CHARS // 17 + 10)
    pred = engine.predict(path, long_report, save_crops=False)
    assert any(f"only the first {DEFAULT_MAX_CHARS} were analysed" in w for w in pred.warnings)
    assert not any("were analysed" in w for w in engine.predict(path, "No pneumothorax.", save_crops=False).warnings)


def test_boxes_of_a_reduced_decode_are_reported_in_original_pixels() -> None:
    """Issue 9.3: a large image is analysed at reduced resolution, but the crops say where to look in the original."""
    from cxrtriage.pipeline import to_original_pixels
    from cxrtriage.schema import Crop

    crop = Crop(x=100, y=50, w=200, h=100, thumb_path="t.png")
    (out,) = to_original_pixels([crop], (1500, 1000), (6000, 4000))
    assert (out.x, out.y, out.w, out.h) == (400, 200, 800, 400)
    assert to_original_pixels([crop], (1500, 1000), (1500, 1000)) == [crop]
    (edge,) = to_original_pixels([Crop(x=1400, y=900, w=100, h=100, thumb_path="t.png")], (1500, 1000), (4501, 3001))
    assert edge.x + edge.w <= 4501 and edge.y + edge.h <= 3001
