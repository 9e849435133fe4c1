"""Provenance items: prior-report sentences, verbatim but for redacted identifiers, and similar training cases (IDs,
labels, similarity)."""

from __future__ import annotations

from cxrtriage.backends.embedding_index import Neighbour
from cxrtriage.explain.deid import PLACEHOLDERS, Redactor, describe
from cxrtriage.explain.report import ReportAnalysis
from cxrtriage.schema import Provenance

#: what a result says when identifiers were redacted from what it quotes of the prior report (``{kinds}``)
REDACTED_WARNING = (
    "identifiers in the prior report ({kinds}) were redacted from this result's quotes of it, shown as "
    f"{PLACEHOLDERS['name']} and the like: read the original report for them"
)
#: the provenance sources whose snippets may hold prior-report text (the explainer may quote or repeat it)
QUOTING_SOURCES = frozenset({"prior_report", "medgemma"})

_RELATION = {"supports": "supports", "contradicts": "contradicts", "uncertain": "uncertain"}
MAX_REPORT_SNIPPETS = 5


def report_provenance(report: ReportAnalysis | None) -> list[Provenance]:
    """Quote supporting sentences first, then contradicting, then uncertain ones — verbatim."""
    if report is None:
        return []
    order = list(report.supporting) + list(report.contradicting) + list(report.uncertain)
    return [
        Provenance(source="prior_report", snippet=s.text, relation=_RELATION[s.relation])
        for s in order[:MAX_REPORT_SNIPPETS]
    ]


def population(key: str) -> str:
    """Who a training case's film is of, from its key (``<dataset>/<image id>``), as a result's snippet names it."""
    dataset = key.split("/", 1)[0]
    return "adult (NIH)" if dataset == "nih" else "pediatric" if dataset == "kermany" else dataset


def case_provenance(neighbours: list[Neighbour]) -> list[Provenance]:
    out = []
    for n in neighbours:
        label = "Urgent" if n.urgent else "Non-Urgent"
        out.append(
            Provenance(
                source=f"training_case:{n.key}",
                relation="similar_case",
                similarity=round(n.similarity, 4),
                snippet=f"similar training image ({population(n.key)}), labelled {label}, "
                f"cosine similarity {n.similarity:.2f}",
            )
        )
    return out


def redact_quotes(
    prior_report: str | None, provenance: list[Provenance], explanation: str
) -> tuple[list[Provenance], str, str | None]:
    """What a result quotes of ``prior_report`` (the snippets of :data:`QUOTING_SOURCES` and the explanation, which
    an explainer may word from the report) with identifiers redacted (:mod:`cxrtriage.explain.deid`), and the warning
    to add when anything was (None when nothing was, or there is no report)."""
    if not prior_report or not prior_report.strip():
        return provenance, explanation, None
    redactor = Redactor.of(prior_report)
    kinds: set[str] = set()
    out = []
    for item in provenance:
        if item.source in QUOTING_SOURCES:
            done = redactor.redact(item.snippet)
            kinds |= done.kinds
            item = item.model_copy(update={"snippet": done.text}) if done.kinds else item
        out.append(item)
    said = redactor.redact(explanation)
    kinds |= said.kinds
    return out, said.text, REDACTED_WARNING.format(kinds=describe(frozenset(kinds))) if kinds else None


def quoted_already(item: Provenance, provenance: list[Provenance]) -> bool:
    """True for a prior-report quote already contained in a quote the pipeline itself took from the report."""
    return item.source == "prior_report" and any(
        item.snippet.lower() in q.snippet.lower() for q in provenance if q.source == "prior_report"
    )
