"""The README stays an overview whose links resolve; every docs page is in the site's navigation (the site itself is
built by `mkdocs build --strict` in .ci/run)."""

from __future__ import annotations

import re

from conftest import REPO


def test_readme_is_an_overview_with_working_links():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 15  # it points into the docs
    missing = [link for link in local if not (REPO / link).is_file()]
    assert not missing, missing


def test_every_docs_page_is_in_the_site():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = [p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")]
    # the committed reproduction's tables are reached from results/README.md, not the navigation
    pages = [p for p in pages if not re.fullmatch(r"results/[^/]+/[^/]+\.md", p)]
    assert [p for p in pages if f": {p}" not in nav] == []
