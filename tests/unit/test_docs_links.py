"""Every relative link and image in README.md and docs/*.md points at a file that exists (a moved or
renamed file otherwise leaves the entry page quietly wrong)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_targets(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.DOTALL)  # code blocks hold no links
    return [
        target.split("#", 1)[0]
        for target in LINK.findall(text)
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_points_at_a_file(page):
    missing = [target for target in relative_targets(page) if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO_ROOT)} links to files that do not exist: {missing}"


def test_the_pages_have_links_to_check():
    assert len(relative_targets(REPO_ROOT / "README.md")) >= 10
