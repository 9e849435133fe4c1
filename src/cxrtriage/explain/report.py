"""Find urgent-finding mentions in prior radiology-report text and classify them.

A prior report is *context* for the image model, never a diagnosis: each sentence that mentions an
urgent finding (:data:`URGENT_FINDINGS`: pneumothorax, pneumonia, consolidation, edema, effusion,
mass, infiltrate, airspace opacity) is quoted verbatim with its character offsets so a
reviewer can check the quote against the original text.

Pipeline (medspaCy, built once and lazily by :func:`get_nlp`):

* medspaCy tokenizer + PyRuSH sentence splitter;
* a ``TargetMatcher`` with the rules of ``rules/target_rules.json`` (token patterns, so "massive" or
  "masseter" never match "mass");
* ConText with medspaCy's default rules, minus a few that are wrong for radiology (e.g. the default
  calls "evaluate for" a negation), plus the radiology cues of ``rules/context_rules.json``;
* the sentence-level normal statements of ``rules/normal_statements.json``.

The rule files are medspaCy JSON (``TargetRule.from_json`` / ``ConTextRule.from_json``), read by
:mod:`cxrtriage.explain.report_rules`.

Decisions worth knowing (all deliberate, tested in ``tests/explain/test_report.py``):

* **Resolved findings are negated.** "Resolved pneumonia", "interval resolution of the effusion",
  "the pneumothorax has resolved" / "is no longer seen" describe a finding that is absent *now*, so
  they are ``negated`` and their sentence ``contradicts`` urgency (medspaCy's default rules already
  treat "resolved" as a negation; we add the other wordings).
* **Hedges are uncertain.** Following the CheXpert labeler convention, "possible", "probable",
  "likely", "may represent", "cannot be excluded", "versus", "suspicious/concerning for"... make a
  mention ``uncertain``. Requests ("evaluate for", "rule out", "to exclude", "INDICATION:", "if")
  are hypothetical and also reported as ``uncertain``.
* **Signs that only suggest a finding are uncertain by construction.** Pulmonary/vascular
  congestion is mapped to ``edema`` (as the CheXpert labeler does) and costophrenic-angle blunting to
  ``effusion``, but both are flagged uncertain: they raise the question, they do not establish it.
  "Mass-like" is an uncertain ``mass``.
* **Excluded on purpose:** a bare "opacity" (mostly atelectasis or scar in practice), pericardial or
  joint effusions, soft-tissue/subcutaneous edema, "body mass (index)", "mass effect",
  "infiltrative" (chronic interstitial disease) — these are matched as a non-urgent category so
  that they also shadow the shorter urgent match.
* "History of X" is ``historical``; a sentence whose only mentions are historical is ``neutral``.
  Family-history mentions are dropped (they are not about this patient).
* A sentence-level normal statement ("no acute cardiopulmonary abnormality", "lungs are clear",
  "normal chest") makes a sentence ``contradicts`` unless it also holds an affirmed or uncertain
  urgent mention.
"""

from __future__ import annotations

import functools
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxrtriage.explain.report_rules import context_rules, normal_statement_pattern, target_rules
from cxrtriage.explain.thinc_without_torch import import_thinc_without_torch

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps import light
    from spacy.language import Language

__all__ = [
    "URGENT_FINDINGS",
    "Mention",
    "ReportSentence",
    "ReportAnalysis",
    "analyze_prior_report",
    "get_nlp",
]

URGENT_FINDINGS: tuple[str, ...] = (
    "pneumothorax",
    "pneumonia",
    "consolidation",
    "edema",
    "effusion",
    "mass",
    "infiltrate",
    "airspace opacity",
)

AFFIRMED, NEGATED, UNCERTAIN, HISTORICAL = "affirmed", "negated", "uncertain", "historical"
SUPPORTS, CONTRADICTS, UNCERTAIN_REL, NEUTRAL = "supports", "contradicts", "uncertain", "neutral"

#: PyRuSH splits sentences longer than this many characters: a run-on text without periods must not
#: give one negation cue a scope of thousands of characters.
_MAX_SENTENCE_CHARS = 1000

#: Characters of a prior report that are analysed. ConText's cost grows with the square of the number of cues
#: (measured: 4,000 characters of "no no no ..." about 1 s, 8,000 about 2.6 s, 20,000 about 17 s on 2 cores), so a
#: request's cost is bounded here; a real prior report is a few hundred characters. Longer text is cut, and the
#: result says so (:attr:`ReportAnalysis.truncated`) so that the reader reviews the rest.
DEFAULT_MAX_CHARS = 4000

#: medspaCy's PyRuSH sentence splitter keeps state per call and is not thread-safe (concurrent calls raised
#: IndexError in 54 of 80 parallel analyses of a 1,000-character report): one analysis at a time per process.
_NLP_LOCK = threading.Lock()

_SPAN_GROUP = "cxrtriage_findings"


# --------------------------------------------------------------------------------------------- #
# Result types
# --------------------------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Mention:
    """One mention of an urgent finding.

    ``finding`` is the canonical name (one of :data:`URGENT_FINDINGS`), ``text`` the matched words,
    ``status`` one of ``affirmed``, ``negated``, ``uncertain``, ``historical``.
    """

    finding: str
    text: str
    status: str


@dataclass(frozen=True)
class ReportSentence:
    """A sentence of the input, quoted verbatim: ``input[start:end] == text``.

    ``relation`` says how the sentence bears on urgency: ``supports`` (at least one affirmed urgent
    finding), ``uncertain`` (only hedged/hypothetical mentions), ``contradicts`` (only negated or
    resolved mentions, or an explicit normal statement) or ``neutral``.
    """

    text: str
    start: int
    end: int
    mentions: tuple[Mention, ...]
    relation: str


@dataclass(frozen=True)
class ReportAnalysis:
    """The non-neutral sentences of one report, in text order."""

    sentences: tuple[ReportSentence, ...] = ()
    #: characters past the analysed length that were not read (0 when the whole report was analysed)
    unanalysed_chars: int = 0

    @property
    def truncated(self) -> bool:
        return self.unanalysed_chars > 0

    def _with(self, relation: str) -> tuple[ReportSentence, ...]:
        return tuple(s for s in self.sentences if s.relation == relation)

    @property
    def supporting(self) -> tuple[ReportSentence, ...]:
        """Sentences with at least one affirmed urgent finding."""
        return self._with(SUPPORTS)

    @property
    def contradicting(self) -> tuple[ReportSentence, ...]:
        """Sentences that deny urgent findings or state the chest is normal."""
        return self._with(CONTRADICTS)

    @property
    def uncertain(self) -> tuple[ReportSentence, ...]:
        """Sentences with only hedged or hypothetical urgent mentions."""
        return self._with(UNCERTAIN_REL)

    @property
    def has_affirmed_urgent_finding(self) -> bool:
        """True when the report affirms at least one urgent finding."""
        return any(s.relation == SUPPORTS for s in self.sentences)

    @property
    def describes_no_urgent_finding(self) -> bool:
        """True when the report says the chest is free of urgent findings: it negates them or states a normal study,
        and affirms or hedges none. A report silent on urgent findings (no such sentence) says nothing, so False."""
        return bool(self.contradicting) and not self.supporting and not self.uncertain


# --------------------------------------------------------------------------------------------- #
# Pipeline (rules: cxrtriage.explain.report_rules)
# --------------------------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=1)
def get_nlp() -> Language:
    """Build the medspaCy pipeline once (it takes seconds) and reuse it.

    Lazy so that importing :mod:`cxrtriage.explain.report` stays cheap for callers that never pass a report.
    PyRuSH logs every sentence boundary at DEBUG through loguru; that noise (and the sentence text
    it would leak into logs) is disabled for the ``PyRuSH`` logger name only.
    """
    from loguru import logger

    logger.disable("PyRuSH")  # only PyRuSH's own loguru records; other loggers are untouched

    import_thinc_without_torch()  # before spaCy: the rule-based pipeline never uses torch (see that module)
    import medspacy

    # medspaCy tokenizer + PyRuSH from medspacy.load(); the matcher and ConText are added here with
    # their results in a span group: appending to doc.ents one span at a time (the "ents" default)
    # is quadratic and took seconds on a 20 000-character input.
    nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_pyrush"])
    nlp.get_pipe("medspacy_pyrush").max_sentence_length = _MAX_SENTENCE_CHARS
    matcher = nlp.add_pipe("medspacy_target_matcher", config={"result_type": "group", "span_group_name": _SPAN_GROUP})
    context = nlp.add_pipe(
        "medspacy_context", config={"rules": None, "input_span_type": "group", "span_group_name": _SPAN_GROUP}
    )

    matcher.add(target_rules())
    context.add(context_rules(context.DEFAULT_RULES_FILEPATH))
    return nlp


# --------------------------------------------------------------------------------------------- #
# Analysis
# --------------------------------------------------------------------------------------------- #
_LABEL_TO_FINDING = {name.upper().replace(" ", "_"): name for name in URGENT_FINDINGS}

# Control (Cc), format (Cf: zero-width and bidi overrides) and surrogate (Cs) characters, except
# the ordinary whitespace controls.
_KEEP_CONTROLS = frozenset("\t\n\r")


def _sanitize(text: str) -> str:
    """Replace control/format characters by spaces *in place* so character offsets stay valid."""
    if text.isprintable():
        return text
    return "".join(
        " " if ch not in _KEEP_CONTROLS and unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch for ch in text
    )


def _status(span: Any) -> str | None:
    """Map ConText attributes to one status; None for mentions that are not about this patient."""
    ext = span._
    if ext.is_family:
        return None
    if ext.is_negated:
        return NEGATED
    if ext.is_uncertain or ext.is_hypothetical:
        return UNCERTAIN
    if ext.is_historical:
        return HISTORICAL
    return AFFIRMED


def _relation(mentions: tuple[Mention, ...], sentence_text: str) -> str:
    """supports > uncertain > contradicts > neutral: the most urgency-relevant reading wins."""
    statuses = {m.status for m in mentions}
    if AFFIRMED in statuses:
        return SUPPORTS
    if UNCERTAIN in statuses:
        return UNCERTAIN_REL
    if NEGATED in statuses or normal_statement_pattern().search(sentence_text):
        return CONTRADICTS
    return NEUTRAL


def analyze_prior_report(text: str | None, *, max_chars: int = DEFAULT_MAX_CHARS) -> ReportAnalysis:
    """Return the sentences of ``text`` that support, contradict or hedge an urgent finding.

    ``None``/empty/whitespace gives an empty analysis; non-strings raise ``TypeError``. Text past
    ``max_chars`` is ignored (a prior report is a few hundred characters; the cap bounds the cost of
    hostile input). Control characters are blanked (same length), so every sentence satisfies
    ``text[s.start:s.end] == s.text`` for input without control characters; otherwise ``s.text``
    is that slice with its control characters shown as spaces.
    """
    if text is None:
        return ReportAnalysis()
    if not isinstance(text, str):
        raise TypeError(f"prior report text must be str, not {type(text).__name__}")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars <= 0:
        raise ValueError("max_chars must be a positive integer")
    clean = _sanitize(text[:max_chars])
    unanalysed = len(text[max_chars:].strip())
    if not clean.strip():
        return ReportAnalysis(unanalysed_chars=unanalysed)

    with _NLP_LOCK:  # also guards the one-time build of the pipeline
        doc = get_nlp()(clean)

    by_sentence: dict[int, list[Mention]] = {}
    for ent in doc.spans[_SPAN_GROUP] if _SPAN_GROUP in doc.spans else ():
        finding = _LABEL_TO_FINDING.get(ent.label_)
        if finding is None:
            continue
        status = _status(ent)
        if status is None:
            continue
        by_sentence.setdefault(ent.sent.start_char, []).append(Mention(finding, ent.text, status))

    sentences: list[ReportSentence] = []
    for sent in doc.sents:
        raw = clean[sent.start_char : sent.end_char]
        stripped = raw.strip()
        if not stripped:
            continue
        start = sent.start_char + (len(raw) - len(raw.lstrip()))
        end = start + len(stripped)
        mentions = tuple(by_sentence.get(sent.start_char, ()))
        relation = _relation(mentions, stripped)
        if relation != NEUTRAL:
            sentences.append(ReportSentence(stripped, start, end, mentions, relation))
    return ReportAnalysis(tuple(sentences), unanalysed_chars=unanalysed)
