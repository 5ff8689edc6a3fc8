"""Write the text a reader sees on each page of a built site, one .txt file per page.

    python .github/health/pages_text.py SITE_DIR OUT_DIR

Only the page's article (its Markdown and every executed output) is kept, one line per
line of text; the theme around it, whose markup changes with each release, is left out.
The weekly health check diffs these files between a build with the locked versions and
one with the newest, so the diff shows what changed in the pages' output.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path


class ArticleText(HTMLParser):
    """Collects the text inside a page's <article> elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # how many <article> elements we are inside
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "article":
            self.depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "article" and self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def article_text(html: str) -> str:
    """The text of the page's <article>, blank lines and trailing spaces dropped."""
    parser = ArticleText()
    parser.feed(html)
    lines = "".join(parser.parts).splitlines()
    return "".join(f"{line.rstrip()}\n" for line in lines if line.strip())


def write_pages_text(site: Path, out: Path) -> list[Path]:
    """One ``<page>.txt`` under ``out`` for each HTML page under ``site``; returns them."""
    pages = sorted(site.rglob("*.html"))
    if not pages:
        raise SystemExit(f"pages_text: no HTML page under {site}")
    written = []
    for page in pages:
        target = out / page.relative_to(site).with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(article_text(page.read_text(encoding="utf-8")), encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    write_pages_text(Path(sys.argv[1]), Path(sys.argv[2]))
