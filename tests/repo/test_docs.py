"""Every relative link in README.md and docs/ resolves: the file exists, and a `#anchor` names a
heading of that file as GitHub renders it (so a moved section cannot leave a dead link behind).

GitHub's anchors (github-slugger, which github.com's Markdown renderer follows): the heading's
text, lower-cased, inline markup dropped, every character that is not a letter, a digit, a space,
`-` or `_` removed, spaces turned into `-`; a repeated anchor gets `-1`, `-2`, ...
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def unfenced(text: str) -> str:
    """The text outside code fences, where a heading is a heading and a link a link."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[*`]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in unfenced(path.read_text()).splitlines():
        m = re.match(r"^#{1,6} (.+?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", unfenced(path.read_text()))  # inline code is no link either
    return [m.group(1) for m in LINK.finditer(text)]


def test_slugs_follow_githubs_rules():
    assert slug("The phases: what each `pulumi up` does") == "the-phases-what-each-pulumi-up-does"
    assert (
        slug("make advance: one verified step, and the step back") == "make-advance-one-verified-step-and-the-step-back"
    )
    assert slug("A local cluster (no AWS)") == "a-local-cluster-no-aws"
    assert slug('What "Synced" proves on an update') == "what-synced-proves-on-an-update"


def test_every_page_of_docs_is_listed_in_its_index():
    listed = {(ROOT / "docs" / target).resolve() for target in links(ROOT / "docs" / "README.md")}
    pages = {p.resolve() for p in (ROOT / "docs").rglob("*.md") if p.name != "README.md"}
    assert pages - listed == set()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(ROOT)}")
    assert broken == []


def test_the_readme_stays_short():
    words = len((ROOT / "README.md").read_text().split())
    assert words < 4000, f"README.md has {words} words: move a section to docs/ (docs/README.md lists the pages)"
