"""Every relative link of the README and docs resolves: the file exists and, with ``#anchor``,
the target has a heading of that anchor (GitHub's slugs). Code comments that cite
``docs/NAME.md#anchor`` are held to the same rule, so moving a section breaks a test, not a
reader's link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CITED = re.compile(r"(docs/[\w.-]+\.md)#([\w-]+)")
FENCE = re.compile(r"^\s*(```|~~~)")


def documents(root: Path = ROOT) -> list[Path]:
    """The project's Markdown files: README, docs/, and the benchmark log."""
    found = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    found += [p for p in (root / "benchmarks" / "results" / "LOG.md",) if p.exists()]
    return found


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (links there are examples, not links)."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return "\n".join(kept)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` that do not resolve, as ``target (why)``."""
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    return broken


def broken_citations(root: Path = ROOT) -> list[str]:
    """``docs/NAME.md#anchor`` cited in source comments that name no heading of that file."""
    broken = []
    for source in sorted((root / "src").rglob("*.py")) + sorted((root / "benchmarks").glob("*.py")):
        for name, anchor in CITED.findall(source.read_text(encoding="utf-8")):
            target = root / name
            if not target.exists() or anchor not in anchors(target):
                broken.append(f"{source.relative_to(root)}: {name}#{anchor}")
    return broken


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_cited_anchors_in_code_resolve() -> None:
    assert broken_citations() == []


def test_a_broken_link_is_caught(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# A\n\n## Tuned constants\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/A.md) [ok](docs/A.md#tuned-constants) [web](https://example.com/x)\n"
        "[gone](docs/B.md) [no anchor](docs/A.md#tuned)\n```\n[in code](docs/C.md)\n```\n",
        encoding="utf-8",
    )
    assert [b.split(" ")[0] for b in broken_links(page)] == ["docs/B.md", "docs/A.md#tuned"]


def test_slugs_follow_github() -> None:
    assert slug("Roofline: `benchmarks/roofline.py`") == "roofline-benchmarksrooflinepy"
    assert slug("Retrieve & re-rank pipeline") == "retrieve--re-rank-pipeline"
    assert slug("The reverse direction: crossrank as the reranker of your engine") == (
        "the-reverse-direction-crossrank-as-the-reranker-of-your-engine")
