"""Find urgent-finding mentions in prior radiology-report text and classify them.

A prior report is *context* for the image model, never a diagnosis: each sentence that mentions an
urgent finding (see ``/work/shared/data/README.md``: pneumothorax, pneumonia, consolidation, edema,
effusion, mass, infiltration, airspace opacity) is quoted verbatim with its character offsets so a
reviewer can check the quote against the original text.

Pipeline (medspaCy, built once and lazily by :func:`get_nlp`):

* medspaCy tokenizer + PyRuSH sentence splitter;
* a ``TargetMatcher`` with the rules of :data:`_FINDING_RULES` (token patterns, so "massive" or
  "masseter" never match "mass");
* ConText with medspaCy's default rules, minus a few that are wrong for radiology (e.g. the default
  calls "evaluate for" a negation), plus the radiology cues of :func:`_context_rules`.

Decisions worth knowing (all deliberate, tested in ``tests/test_report.py``):

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

import contextlib
import functools
import importlib.abc
import re
import sys
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

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

#: Label used for look-alike phrases that must NOT count as an urgent finding. They are matched so
#: that the longest-match pruning of the TargetMatcher drops the shorter urgent match inside them.
_EXCLUDED_LABEL = "NOT_URGENT"

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
_CURRENT = "CURRENT"  # ConText category of "now"/"new": ends the scope of a history cue


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


# --------------------------------------------------------------------------------------------- #
# Target rules (what counts as a finding mention)
# --------------------------------------------------------------------------------------------- #
def _lower(*words: str) -> dict[str, Any]:
    """Token spec matching any of ``words`` case-insensitively."""
    return {"LOWER": {"IN": list(words)}}


def _opt(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "OP": "?"}


_SIDE = _opt(_lower("left", "right", "bilateral", "both"))
_OPACITY = _lower("opacity", "opacities", "opacification", "opacifications")
_AIRSPACE_HEAD = _lower("disease", "diseases", "opacity", "opacities", "opacification", "process", "filling")
_AIR_SPACE_VARIANTS: list[list[dict[str, Any]]] = [
    [_lower("airspace", "air-space")],
    [_lower("air"), _opt({"ORTH": "-"}), _lower("space")],
]

# (canonical finding, token pattern, extra span attributes). Longer patterns win over shorter
# overlapping ones (medspaCy prunes overlapping matches, keeping the longest).
_FINDING_RULES: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = [
    # pneumothorax
    ("pneumothorax", [_lower("pneumothorax", "pneumothoraces", "pneumothoraxes", "hydropneumothorax", "ptx")], None),
    # pneumonia ("infection"/"infectious process" is how radiologists usually name pneumonia)
    ("pneumonia", [_lower("pneumonia", "pneumonias", "pneumonic", "bronchopneumonia")], None),
    ("pneumonia", [_lower("infection", "infections")], None),
    ("pneumonia", [_lower("infectious"), _lower("process", "processes")], None),
    # consolidation
    ("consolidation", [_lower("consolidation", "consolidations", "consolidative", "consolidated")], None),
    ("consolidation", [_lower("consolidative"), _OPACITY], None),
    # edema
    ("edema", [_opt(_lower("pulmonary", "interstitial", "alveolar", "airspace")), _lower("edema", "oedema")], None),
    # congestion suggests, but does not establish, edema -> uncertain edema (CheXpert maps it to edema)
    (
        "edema",
        [_opt(_lower("pulmonary")), _opt(_lower("vascular", "venous")), _lower("congestion")],
        {"is_uncertain": True},
    ),
    # effusion (pleural)
    ("effusion", [_opt(_lower("pleural")), _lower("effusion", "effusions")], None),
    ("effusion", [_lower("pleural"), _lower("fluid")], None),
    ("effusion", [_lower("hydrothorax", "hydrothoraces")], None),
    # costophrenic blunting suggests a small effusion (or pleural thickening) -> uncertain effusion
    (
        "effusion",
        [_lower("blunting"), _lower("of"), _opt(_lower("the")), _SIDE, _lower("costophrenic")],
        {"is_uncertain": True},
    ),
    (
        "effusion",
        [_lower("costophrenic"), _opt(_lower("angle", "angles", "sulcus", "sulci", "xxxx")), _lower("blunting")],
        {"is_uncertain": True},
    ),
    ("effusion", [_lower("blunted"), _SIDE, _lower("costophrenic")], {"is_uncertain": True}),
    # mass
    ("mass", [_opt(_lower("lung", "pulmonary", "mediastinal", "hilar", "lobe")), _lower("mass", "masses")], None),
    ("mass", [_lower("masslike")], {"is_uncertain": True}),
    ("mass", [_lower("mass"), {"ORTH": "-"}, _lower("like")], {"is_uncertain": True}),
    # infiltrate
    ("infiltrate", [_lower("infiltrate", "infiltrates", "infiltration", "infiltrations")], None),
    # airspace opacity
    *[("airspace opacity", [*variant, _AIRSPACE_HEAD], None) for variant in _AIR_SPACE_VARIANTS],
    ("airspace opacity", [_lower("alveolar"), _OPACITY], None),
]

# Look-alikes that must not count (matched as _EXCLUDED_LABEL so they shadow the urgent match).
_EXCLUDED_RULES: list[list[dict[str, Any]]] = [
    [_lower("pericardial", "joint", "knee"), _lower("effusion", "effusions")],
    [_lower("soft"), _opt({"ORTH": "-"}), _lower("tissue"), _lower("edema")],
    [_lower("subcutaneous", "extremity", "facial", "peripheral", "pedal", "leg"), _lower("edema")],
    [_lower("body"), _lower("mass")],
    [_lower("mass"), _lower("effect")],
    [_lower("infiltrative")],
    [_lower("urinary", "skin", "wound", "ear", "sinus", "bladder", "tract"), _lower("infection", "infections")],
]


# --------------------------------------------------------------------------------------------- #
# ConText rules
# --------------------------------------------------------------------------------------------- #
#: Default medspaCy ConText literals replaced here because they are wrong for radiology reports
#: (e.g. "evaluate for pneumonia" is a request, not a negation; ": no" is a backward negation made for
#: "fever: no" that turns "FINDINGS: No consolidation" into an affirmed consolidation).
_OVERRIDDEN_DEFAULT_LITERALS = frozenset(
    {"evaluate for", "checked for", "test for", "to exclude", "decline", "return", "free", "prophylaxis", ": no"}
)


def _context_rules() -> list[Any]:
    """Radiology ConText cues added to medspaCy's defaults (see the module docstring)."""
    from medspacy.context import ConTextRule

    neg, pos, hyp, hist = "NEGATED_EXISTENCE", "POSSIBLE_EXISTENCE", "HYPOTHETICAL", "HISTORICAL"
    rules: list[ConTextRule] = []

    def add(category: str, direction: str, *literals: str) -> None:
        for literal in literals:
            rules.append(ConTextRule(literal, category, direction=direction))

    def add_pattern(category: str, direction: str, literal: str, pattern: list[dict[str, Any]]) -> None:
        rules.append(ConTextRule(literal, category, pattern=pattern, direction=direction))

    # -- negation / resolution -------------------------------------------------------------------
    add(neg, "FORWARD", "resolution of", "interval resolution of", "interval clearing of", "clearing of",
        "no visible", "no definite", "no convincing", "no new", "no residual", "no recurrent", "no evidence of")
    seen = _lower("seen", "identified", "visualized", "appreciated", "present", "demonstrated", "detected",
                  "evident", "visible", "noted", "apparent", "shown")
    be = _opt(_lower("is", "are", "was", "were", "be", "been"))
    add_pattern(neg, "BACKWARD", "not seen", [be, _lower("not"), _opt(_lower("well", "definitely", "clearly")), seen])
    add_pattern(neg, "BACKWARD", "no longer seen", [be, _lower("no"), _lower("longer"), seen])
    add_pattern(neg, "BACKWARD", "has resolved",
                [_lower("has", "have", "is", "are", "now"), _opt(_lower("since", "completely", "nearly")),
                 _lower("resolved", "cleared")])
    add(neg, "BACKWARD", "absent", "is absent", "are absent", "excluded", "is excluded", "are excluded",
        "has been excluded", "interval resolution")
    # "Pneumothorax: no." in templated reports (replaces the default ": no", see above)
    add_pattern(neg, "BACKWARD", ": no.", [{"ORTH": ":"}, _lower("no", "none", "absent"), {"IS_PUNCT": True}])

    # "no (significant) change in the effusion" says the effusion is still there: a PSEUDO cue is
    # longer than "no", so it shadows the negation and modifies nothing itself.
    add_pattern(neg, "PSEUDO", "no change in",
                [_lower("no"), _opt(_lower("significant", "interval", "substantial", "appreciable", "definite")),
                 _lower("change", "changes", "increase", "decrease", "enlargement", "worsening", "progression"),
                 _opt(_lower("in", "of"))])
    add(neg, "PSEUDO", "not only", "not necessarily", "without change")

    # -- uncertainty ----------------------------------------------------------------------------
    add(pos, "FORWARD", "may represent", "may reflect", "may be", "might represent", "could represent",
        "could reflect", "could be", "cannot exclude", "can not exclude", "can't exclude", "cannot rule out",
        "can not rule out", "questionable", "question of", "probable", "probably", "likely", "possibly",
        "potential", "suspicion for", "suspicion of", "concern for", "concerning for", "suggest", "suggests",
        "suggesting", "suggestion of", "consider", "differential", "equivocal", "presumed", "early",
        "developing")
    add(pos, "BACKWARD", "cannot be excluded", "can not be excluded", "cannot be ruled out",
        "can not be ruled out", "not excluded", "not entirely excluded", "is not excluded",
        "is possible", "is suspected", "is questioned")
    add(pos, "BIDIRECTIONAL", "versus", "vs", "vs.", "suspected", "?")
    add(pos, "FORWARD", "may include", "could include", "differential includes", "differential diagnosis",
        "etiologies include", "other etiologies")
    # "atelectasis or pneumonia" / "pneumonia or atelectasis": the radiologist cannot tell them apart
    benign = _lower("atelectasis", "scar", "scarring", "fibrosis", "thickening", "fat")
    either = [_opt(_lower("and")), _opt({"ORTH": "/"}), _lower("or", "and/or")]
    rules.append(ConTextRule("atelectasis or", pos, pattern=[benign, *either], direction="FORWARD", max_scope=3))
    rules.append(ConTextRule("or atelectasis", pos, pattern=[*either, benign], direction="BACKWARD", max_scope=3))

    # -- requests / hypothetical -----------------------------------------------------------------
    add(hyp, "FORWARD", "evaluate for", "evaluation for", "evaluation of", "eval for", "assess for",
        "assessment for", "to assess", "to evaluate", "checked for", "check for", "test for", "to exclude",
        "exclude", "to rule out", "indication", "indications", "reason for exam", "reason for examination",
        "reason for study", "clinical indication", "in case of", "risk of", "at risk for")

    # -- history -----------------------------------------------------------------------------------
    add(hist, "FORWARD", "history of", "hx of", "past history of", "prior history of", "remote history of",
        "known history of")
    # "history of pneumonia, now with effusion": cues of the present end a history scope (only that
    # one: a TERMINATE cue would also end "possible" in "possible new pneumonia").
    add(_CURRENT, "PSEUDO", "now", "currently", "new", "newly", "today", "at present")

    # -- scope terminators: in medspaCy a TERMINATE cue ends the scope of every category, so each
    # literal is added once ("but" is already a default).
    add(neg, "TERMINATE", ";", "however", "although", "though", "there is", "there are", "otherwise")
    return rules


class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden while loading spaCy)", name=name)
        return None


@contextlib.contextmanager
def _torch_hidden() -> Iterator[None]:
    """Import spaCy without torch: thinc (spaCy's ML layer) imports torch whenever it is installed, which
    costs a second and hundreds of MB, and the inference path must stay torch-free. The rule-based pipeline
    here never uses torch. If torch is already imported (training, benchmarks) nothing changes."""
    if "torch" in sys.modules:
        yield
        return
    blocker = _BlockTorch()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)


@functools.lru_cache(maxsize=1)
def get_nlp() -> "Language":
    """Build the medspaCy pipeline once (it takes seconds) and reuse it.

    Lazy so that importing :mod:`cxrtriage.explain.report` stays cheap for callers that never pass a report.
    PyRuSH logs every sentence boundary at DEBUG through loguru; that noise (and the sentence text
    it would leak into logs) is disabled for the ``PyRuSH`` logger name only.
    """
    from loguru import logger

    logger.disable("PyRuSH")  # only PyRuSH's own loguru records; other loggers are untouched

    with _torch_hidden():
        import medspacy
        from medspacy.context import ConTextRule
        from medspacy.target_matcher import TargetRule

    # medspaCy tokenizer + PyRuSH from medspacy.load(); the matcher and ConText are added here with
    # their results in a span group: appending to doc.ents one span at a time (the "ents" default)
    # is quadratic and took seconds on a 20 000-character input.
    nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_pyrush"])
    nlp.get_pipe("medspacy_pyrush").max_sentence_length = _MAX_SENTENCE_CHARS
    matcher = nlp.add_pipe(
        "medspacy_target_matcher", config={"result_type": "group", "span_group_name": _SPAN_GROUP}
    )
    context = nlp.add_pipe(
        "medspacy_context", config={"rules": None, "input_span_type": "group", "span_group_name": _SPAN_GROUP}
    )

    target_rules = [
        TargetRule(f"{finding}#{i}", finding.upper().replace(" ", "_"), pattern=pattern, attributes=attrs)
        for i, (finding, pattern, attrs) in enumerate(_FINDING_RULES)
    ]
    target_rules += [
        TargetRule(f"excluded#{i}", _EXCLUDED_LABEL, pattern=pattern) for i, pattern in enumerate(_EXCLUDED_RULES)
    ]
    matcher.add(target_rules)

    defaults = [
        rule
        for rule in ConTextRule.from_json(context.DEFAULT_RULES_FILEPATH)
        if rule.literal.lower() not in _OVERRIDDEN_DEFAULT_LITERALS
    ]
    rules = defaults + _context_rules()
    for rule in rules:
        if rule.category == "HISTORICAL":
            rule.terminated_by.add(_CURRENT)
    context.add(rules)
    return nlp


# --------------------------------------------------------------------------------------------- #
# Analysis
# --------------------------------------------------------------------------------------------- #
_LABEL_TO_FINDING = {name.upper().replace(" ", "_"): name for name in URGENT_FINDINGS}

_NORMAL_STATEMENT = re.compile(
    r"""
    \b(?:no|without|negative\s+for)\s+(?:(?:evidence|signs?)\s+of\s+)?(?:an?\s+|any\s+)?(?:acute|active)\s+
        (?:(?:cardiopulmonary|cardiac|pulmonary|lung|chest|intrathoracic|thoracic|cardiothoracic|cardiovascular)
           \s+(?:or\s+(?:pulmonary|cardiac|mediastinal)\s+)?)?
        (?:abnormalit(?:y|ies)|process(?:es)?|disease|findings?|pathology|changes?)\b
    | \b(?:lungs?|lung\s+fields?)\b:?(?:\s+(?:are|is|appear|appears|remain|remains|otherwise|both|now|grossly|
          essentially|well[- ]expanded|expanded|and|fully))*\s+clear\b
    | \bclear\s+lungs?\b
    | \b(?:normal|negative|unremarkable)\s+(?:(?:pa|ap|frontal|portable|two[- ]view|2[- ]view)\s+(?:and\s+lateral\s+)?)?
        (?:chest|cxr)\b
    | \bchest\s+(?:is\s+|appears\s+)?(?:normal|negative|unremarkable)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)

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
    if NEGATED in statuses or _NORMAL_STATEMENT.search(sentence_text):
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
