"""Every relative link of the user and developer documents points at a file of the repository, and every
``#anchor`` at a heading of its target (GitHub's heading ids)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(
    {
        REPO / "README.md",
        REPO / "README_CONTEXT.md",
        REPO / "ARCHITECTURE.md",
        REPO / "TERMS.md",
        REPO / "CITATION.md",
        REPO / "demo_app" / "README.md",
        REPO / "prototype" / "DOCKER.md",
        REPO / "prototype" / "prototype.md",
        REPO / "prototype" / "models" / "README_models.md",
        *(REPO / "docs").glob("*.md"),
    }
)
#: linked files that are made outside the repository's commands and not committed yet; each entry must go as soon
#: as its file exists (a test says so), so that the list never hides a broken link
PENDING: set[str] = set()

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def heading_ids(text: str) -> set[str]:
    """GitHub's ids of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens, repeats -1..."""
    ids: set[str] = set()
    for title in _HEADING.findall(_FENCE.sub("", text)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")  # a link's text, code without ticks
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in ids:
            n += 1
            candidate = f"{slug}-{n}"
        ids.add(candidate)
    return ids


def relative_links(doc: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(doc.read_text(encoding="utf-8"))) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in relative_links(doc):
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        rel = dest.relative_to(REPO).as_posix() if dest.is_relative_to(REPO) else str(dest)
        if rel in PENDING:
            continue
        if not dest.is_relative_to(REPO) or not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in heading_ids(dest.read_text(encoding="utf-8")):
            broken.append(f"{target} (no heading #{anchor} in {rel})")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(doc: Path) -> None:
    assert doc.is_file(), f"{doc.relative_to(REPO)} is listed here but missing"
    broken = broken_links(doc)
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_pending_files_are_still_missing() -> None:
    arrived = sorted(p for p in PENDING if (REPO / p).exists())
    assert not arrived, f"now in the repository, remove from PENDING in {Path(__file__).name}: {arrived}"


def test_the_readme_links_each_document_it_is_summarised_by() -> None:
    """The README keeps to the user's sections and sends the long reference and the developer notes elsewhere."""
    links = {t.partition("#")[0] for t in relative_links(REPO / "README.md")}
    docs = {"docs/DEVELOPING.md", "docs/INTEGRATION.md", "docs/PIPELINE.md", "docs/MODEL.md", "docs/HAI_DEF.md"}
    assert docs <= links
    assert {"ARCHITECTURE.md", "demo_app/README.md", "TERMS.md", "README_CONTEXT.md"} <= links


def test_the_checker_sees_links_anchors_and_code() -> None:
    text = "# A title\n## Run `make demo` (Web service & API)\n```\n[x](nowhere.md)\n```\n`[y](nowhere.md)`\n"
    assert heading_ids(text) == {"a-title", "run-make-demo-web-service--api"}
    assert _LINK.findall(_prose(text + "[z](a.md#b) ![i](img.png)")) == ["a.md#b", "img.png"]


def test_the_readme_quotes_the_specification_summary_verbatim_under_challenge_context() -> None:
    spec = REPO.parent / "shared" / "spec" / "000_04815da399bb1cce.txt"
    if not spec.is_file():
        pytest.skip("the specification is not beside the checkout")
    summary = spec.read_text().split("Short summary to include verbatim in README and writeup:")[1].split("(You may")[0]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    context = readme[readme.index("\n## Challenge context\n") :]
    for line in filter(None, (ln.strip() for ln in summary.splitlines())):
        assert f"> {line}\n" in context, line
