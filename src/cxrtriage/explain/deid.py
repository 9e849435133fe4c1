"""Identifiers in prior-report text, redacted from everything a result quotes: names, record numbers, dates, phone
numbers, e-mail and street addresses.

The report is *analysed* as written (:func:`cxrtriage.explain.report.analyze_prior_report` needs the findings, and
never keeps the text); what a result *quotes* of it (the provenance snippets, and so the worklist, FHIR and DICOM SR
that carry them) goes through :class:`Redactor` first, and each identifier becomes a placeholder that says what was
there (``[name redacted]``, ``[MRN redacted]``, ...), so a reader knows the quote was changed.

Why rules and not a library: the well-kept de-identification libraries find names with a statistical NER model that
this offline service cannot get: Presidio downloads a spaCy English model when it starts (it failed here without
network), spaCy's English models are not on the package index, and scrubadub and philter need NLTK or spaCy data
downloaded the same way. So this is a small rule set, tested in ``tests/explain/test_deid.py``, and it has the
limits of rules:

* a **name** is found after a cue (``Patient``, ``Pt``, ``Name:``, ``Mr``/``Mrs``/``Ms``/``Dr``, ``signed by``,
  ``referring physician``, ...), or before a degree (``Jane Roe, MD``), or in the ``DOE, JOHN`` / ``DOE^JOHN`` form
  after a cue; every word of a name found anywhere in the report is then redacted wherever it appears. A name with
  no cue anywhere in the report ("John Doe has an effusion") is **not** found;
* **record numbers** (MRN, patient ID, NHS number, accession, SSN) are found after their cue, or as a run of 7 or
  more digits; **dates** in numeric (``01/02/1960``, ``1960-02-01``) and written (``1 Feb 1960``, ``February 1,
  1960``) forms, whatever their meaning (a date of birth, a study date); **phone numbers** of 10 or more digits in
  the usual groupings; **e-mail** addresses; **street addresses** with a street word (``12 Main Street``) or after
  ``Address:``;
* ages, cities, and free-form identifiers without a cue are left as written.

The redaction errs on the side of removing: a capitalised word after a cue is taken as a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PLACEHOLDERS", "Redacted", "Redactor", "describe"]

#: what each kind of identifier becomes in a quote
PLACEHOLDERS = {
    "name": "[name redacted]",
    "mrn": "[MRN redacted]",
    "id": "[ID redacted]",
    "date": "[date redacted]",
    "phone": "[phone redacted]",
    "email": "[e-mail redacted]",
    "address": "[address redacted]",
}
#: how a warning names each kind
KIND_WORDS = {
    "name": "names",
    "mrn": "record numbers",
    "id": "ID numbers",
    "date": "dates",
    "phone": "phone numbers",
    "email": "e-mail addresses",
    "address": "addresses",
}

_I = re.IGNORECASE
# one word of a name: Doe, O'Brien, Smith-Jones, McDonald, Doe's, J. (an initial); capitalised, case-sensitive
_WORD = r"(?:(?:[A-Z]['’])?[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:['’-][A-Z]?[a-z]+)*|[A-Z]\.?)(?![\w'’-])"
_NAME = rf"{_WORD}(?:[ \t]+{_WORD}){{0,3}}"
_CAPS_NAME = r"[A-Z][A-Z'’-]+(?:\s*[,^]\s*[A-Z][A-Z'’-]+){1,2}"  # DOE, JOHN / DOE^JOHN (DICOM's form)
_CUE_NAME = (
    r"patient(?:'s)?(?:\s+name)?|pt|name|surname|forename|signed(?:\s+by)?|dictated(?:\s+by)?|reported\s+by|"
    r"read\s+by|referr(?:ed|ing)(?:\s+by)?(?:\s+(?:physician|doctor|clinician))?|physician|radiologist|attending|"
    r"ordered\s+by|requested\s+by|next\s+of\s+kin|nok|mother|father|spouse|wife|husband"
)
_TITLES = r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sr|Sister|Nurse"
_MONTH = (
    r"Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|"
    r"Nov(?:ember)?|Dec(?:ember)?"
)
_CUE_MRN = (
    r"MRN|M\.R\.N\.|MR\s*(?:#|no\.?|number)|(?:medical\s+)?record\s*(?:#|no\.?|number)|hospital\s*(?:#|no\.?|number)"
)
_CUE_ID = (
    r"patient\s*(?:id|#|no\.?|number)|pt\s*(?:id|#|no\.?)|NHS\s*(?:#|no\.?|number)|SSN|social\s+security(?:\s+number)?|"
    r"accession(?:\s*(?:#|no\.?|number))?|acc\s*(?:#|no\.?)|ID"
)
_CUE_PHONE = r"tel(?:ephone)?|phone|ph|mobile|mob|cell|fax|contact(?:\s+number)?|pager|bleep|ext"
_STREET = r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Close|Crescent|Terrace"
_SEP = r"\s*(?:[:#=]|\bis\b)?\s*"

#: (kind, pattern, the group that is the identifier: 0 = the whole match), applied in this order
_RULES: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), 0),
    ("mrn", re.compile(rf"(?<!\w)(?:{_CUE_MRN}){_SEP}([A-Z0-9][A-Z0-9/-]*\d[A-Z0-9/-]*)", _I), 1),
    ("id", re.compile(rf"(?<!\w)(?:{_CUE_ID}){_SEP}([A-Z0-9][A-Z0-9/-]*\d[A-Z0-9/-]*)", _I), 1),
    ("id", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), 0),  # a US social security number
    ("date", re.compile(r"(?<![\w/.-])\d{4}-\d{1,2}-\d{1,2}(?![\w/-])"), 0),
    ("date", re.compile(r"(?<![\w/.-])\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})(?![\w/-]|\.\d)"), 0),
    ("date", re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH})\.?,?\s+\d{{4}}\b", _I), 0),
    ("date", re.compile(rf"\b(?:{_MONTH})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b", _I), 0),
    ("phone", re.compile(rf"(?<!\w)(?:{_CUE_PHONE})\.?{_SEP}(\+?[\d()][\d() .-]{{5,}}\d)", _I), 1),
    (
        "phone",
        re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,5}\)[ .-]?|\d{2,5}[ .-])\d{3,4}[ .-]\d{3,4}(?!\w)"),
        0,
    ),
    ("address", re.compile(rf"\b\d{{1,5}}[A-Za-z]?\s+(?:{_WORD}\s+){{1,3}}(?:{_STREET})\b"), 0),
    ("address", re.compile(r"(?<!\w)(?i:address)\s*:\s*([^\n.;]+)"), 1),
    ("id", re.compile(r"(?<![\w.])\d{7,}(?![\w.])"), 0),  # a long number: an ID more often than a measurement
    ("name", re.compile(rf"(?<!\w)(?i:{_CUE_NAME})\.?\s*[:,]?\s*({_CAPS_NAME})"), 1),
    ("name", re.compile(rf"(?<!\w)(?i:{_CUE_NAME})\.?\s*[:,]?[ \t]*({_NAME})"), 1),
    ("name", re.compile(rf"\b(?:{_TITLES})\.?[ \t]+({_NAME})"), 1),
    ("name", re.compile(rf"\b({_NAME}),?[ \t]+(?:MD|M\.D\.|DO|MBBS|FRCR|FRCP|PhD|RN|NP|PA-C)\b"), 1),
)
#: capitalised words that a cue may be followed by and are not names (a sentence's first word, a heading)
_NOT_NAMES = frozenset(
    "The A An No Not Is Was Has Had Have With Without And Or Of In On At For To From By As Left Right Bilateral "
    "Chest Lungs Lung Heart History Findings Impression Comparison Indication Technique Clinical Report Study Exam "
    "Examination Positioning Position Portable Frontal Lateral Upright Supine Erect PA AP Unknown None Other "
    "Mr Mrs Ms Miss Mx Dr Prof Sr Sister Nurse".split()
)
_INITIAL = re.compile(r"[A-Z]\.?")


@dataclass(frozen=True)
class Redacted:
    """A text with its identifiers replaced, and the kinds replaced (:data:`PLACEHOLDERS`' keys)."""

    text: str
    kinds: frozenset[str] = frozenset()


def _name_runs(start: int, end: int, text: str) -> list[tuple[int, int]]:
    """The runs of name words in ``text[start:end]``, without the capitalised words that are not names (``Patient
    The ...``, ``Reviewed By Jane Roe``: ``Reviewed`` and ``Jane Roe``)."""
    runs: list[tuple[int, int]] = []
    for m in re.finditer(r"\S+", text[start:end]):
        if m.group().rstrip(",") in _NOT_NAMES:  # "A." is an initial, "A" an article
            runs.append((-1, -1))  # a break
        elif runs and runs[-1][0] >= 0:
            runs[-1] = (runs[-1][0], start + m.end())
        else:
            runs.append((start + m.start(), start + m.end()))
    return [r for r in runs if r[0] >= 0]


def _merge(spans: list[tuple[int, int, str]], text: str) -> list[tuple[int, int, str]]:
    """Spans in text order with overlaps merged; two names apart only by spaces are one name (one placeholder)."""
    spans = sorted(spans, key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in spans:
        if merged:
            last = merged[-1]
            touching = last[2] == kind == "name" and not text[last[1] : start].strip(" \t")
            if start < last[1] or (start >= last[1] and touching):
                merged[-1] = (last[0], max(last[1], end), last[2])
                continue
        merged.append((start, end, kind))
    return merged


def _spans(text: str) -> list[tuple[int, int, str]]:
    """Every identifier the rules find in ``text``: ``(start, end, kind)``, overlaps merged, in text order."""
    found: list[tuple[int, int, str]] = []
    for kind, pattern, group in _RULES:
        for m in pattern.finditer(text):
            start, end = m.span(group)
            if kind == "name":
                found += [(a, b, kind) for a, b in _name_runs(start, end, text)]
            elif end > start:
                found.append((start, end, kind))
    return _merge(found, text)


def _replace(text: str, spans: list[tuple[int, int, str]]) -> Redacted:
    if not spans:
        return Redacted(text)
    out, at = [], 0
    for start, end, kind in spans:
        out += [text[at:start], PLACEHOLDERS[kind]]
        at = end
    out.append(text[at:])
    return Redacted("".join(out), frozenset(kind for _, _, kind in spans))


@dataclass(frozen=True)
class Redactor:
    """The rules, plus the name words found anywhere in one report: a name given once with a cue ("Patient: John
    Doe") is also redacted where it appears without one ("Mr Doe's effusion", "Doe: small effusion")."""

    names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, report: str | None) -> Redactor:
        """The redactor of one report (its names); an empty one for no report."""
        if not report:
            return cls()
        words: set[str] = set()
        for start, end, kind in _spans(report):
            if kind == "name":
                for word in re.split(r"[\s,^]+", report[start:end]):
                    word = re.sub(r"['’]s$", "", word)
                    if word and not _INITIAL.fullmatch(word):
                        words.add(word)
        words -= _NOT_NAMES
        return cls(frozenset(v for w in words for v in (w, w.upper(), w.capitalize())))  # DOE, JOHN and Mr Doe

    def redact(self, text: str) -> Redacted:
        """``text`` with every identifier the rules find, and every known name word, replaced by its placeholder."""
        spans = _spans(text)
        if self.names:
            known = re.compile(r"(?<![\w'’-])(?:" + "|".join(map(re.escape, sorted(self.names))) + r")(?![\w’-])")
            spans = _merge(spans + [(m.start(), m.end(), "name") for m in known.finditer(text)], text)
        return _replace(text, spans)


def describe(kinds: frozenset[str]) -> str:
    """``names, record numbers and dates``: the kinds of :data:`KIND_WORDS`, in its order."""
    words = [KIND_WORDS[k] for k in KIND_WORDS if k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
