"""Provenance items: verbatim prior-report sentences and similar training cases (IDs, labels, similarity)."""

from __future__ import annotations

from cxrtriage.backends.embedding_index import Neighbour
from cxrtriage.explain.report import ReportAnalysis
from cxrtriage.schema import Provenance

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


def case_provenance(neighbours: list[Neighbour]) -> list[Provenance]:
    out = []
    for n in neighbours:
        dataset = n.key.split("/", 1)[0]
        population = "adult (NIH)" if dataset == "nih" else "pediatric" if dataset == "kermany" else dataset
        label = "Urgent" if n.urgent else "Non-Urgent"
        out.append(
            Provenance(
                source=f"training_case:{n.key}",
                relation="similar_case",
                similarity=round(n.similarity, 4),
                snippet=f"similar training image ({population}), labelled {label}, "
                f"cosine similarity {n.similarity:.2f}",
            )
        )
    return out
