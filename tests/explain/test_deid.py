"""Identifiers in prior-report text are redacted from what a result quotes (explain/deid.py, a rule set: no
de-identification library with a name model works offline here), each shown as a placeholder that says what was
there; clinical words and measurements stay; the result says it was redacted."""

from __future__ import annotations

import pytest

from cxrtriage.explain.deid import Redactor
from cxrtriage.explain.provenance import redact_quotes
from cxrtriage.schema import Provenance


def _redact(text: str) -> str:
    return Redactor.of(text).redact(text).text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Patient John Doe, MRN 12345, DOB 01/02/1960, tel 555-123-4567. Small right pleural effusion.",
            "Patient [name redacted], MRN [MRN redacted], DOB [date redacted], tel [phone redacted]. Small right "
            "pleural effusion.",
        ),
        (
            "Patient John Doe (MRN 12345) has a small right pleural effusion.",
            "Patient [name redacted] (MRN [MRN redacted]) has a small right pleural effusion.",
        ),
        (
            "Name: DOE, JOHN. Mr Doe has a large left pneumothorax.",
            "Name: [name redacted]. Mr [name redacted] has a large left pneumothorax.",
        ),
        (
            "Electronically signed by: Jane Roe, MD on 2024-03-05. Contact jane.roe@hospital.org or +44 20 7946 0958.",
            "Electronically signed by: [name redacted], MD on [date redacted]. Contact [e-mail redacted] or "
            "[phone redacted].",
        ),
        (
            "Pt. Maria O'Brien-Smith, Patient ID: A123456, lives at 12 Main Street. No pneumothorax.",
            "Pt. [name redacted], Patient ID: [ID redacted], lives at [address redacted]. No pneumothorax.",
        ),
        (
            "Compared with 3 March 2021 and February 1, 2020, the effusion is larger. Accession 99887766.",
            "Compared with [date redacted] and [date redacted], the effusion is larger. Accession [ID redacted].",
        ),
        (
            "Referring physician: Dr. A. Smith. Address: 4 Elm Road, Springfield. SSN 123-45-6789. Effusion.",
            "Referring physician: Dr. [name redacted]. Address: [address redacted]. SSN [ID redacted]. Effusion.",
        ),
    ],
)
def test_identifiers_become_placeholders_that_say_what_was_there(text, expected):
    assert _redact(text) == expected


@pytest.mark.parametrize(
    "clinical",
    [
        "Right lower lobe consolidation measuring 3.2 x 4.1 cm; 200 cc aspirated; T10 vertebra; 1.5-2.0 cm nodule.",
        "Patient has a small left pleural effusion. No pneumothorax.",
        "The lungs are clear. No acute cardiopulmonary abnormality. Heart size is normal (CTR 0.48).",
        "Patient The lungs are clear.",
        "FINDINGS: Large right pneumothorax. IMPRESSION: Right pneumothorax, 2 cm apical rim.",
    ],
)
def test_clinical_text_is_left_as_written(clinical):
    assert _redact(clinical) == clinical


def test_a_name_given_once_with_a_cue_is_redacted_wherever_it_appears():
    report = "Patient: John Doe.\nFINDINGS: Doe's right lung shows a pneumothorax. JOHN tolerated the exam."
    redactor = Redactor.of(report)
    assert (
        redactor.redact("Doe's right lung shows a pneumothorax.").text
        == "[name redacted]'s right lung shows a pneumothorax."
    )
    assert redactor.redact("JOHN tolerated the exam.").text == "[name redacted] tolerated the exam."
    assert Redactor.of(None).redact("John Doe").text == "John Doe"  # no cue anywhere: a known limit, documented


def test_quotes_and_an_explainers_words_are_redacted_and_the_result_says_so():
    report = "Patient John Doe (MRN 12345) has a small right pleural effusion."
    provenance = [
        Provenance(source="prior_report", snippet=report, relation="supports"),
        Provenance(source="medgemma", snippet="MedGemma: John Doe has an effusion.", relation="second_opinion"),
        Provenance(source="training_case:nih/x.png", snippet="similar training image", relation="similar_case"),
    ]
    out, explanation, warning = redact_quotes(report, provenance, "Urgent: effusion, as Mr Doe's report says.")
    assert out[0].snippet == "Patient [name redacted] (MRN [MRN redacted]) has a small right pleural effusion."
    assert out[1].snippet == "MedGemma: [name redacted] has an effusion." and out[2] == provenance[2]
    assert explanation == "Urgent: effusion, as Mr [name redacted] report says."
    assert warning is not None and "(names and record numbers)" in warning and "[name redacted]" in warning
    assert redact_quotes("Small effusion.", provenance[2:], "Urgent.") == (provenance[2:], "Urgent.", None)
    assert redact_quotes(None, provenance, "x") == (provenance, "x", None)
