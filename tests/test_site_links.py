"""The built site as files: no broken internal link or anchor, and the same bytes every build.

Links are checked by LinkChecker over HTTP from the built site served on 127.0.0.1, as
GitHub Pages would serve it (a link to a folder is its index.html). Every URL that is not
on that local server (other sites, mailto:) is ignored, so only its syntax is checked:
nothing leaves the machine. Anchors (``page/#section``) are checked here, from the files:
each page is parsed once, where LinkChecker's AnchorCheck parses a page again for every
link into it (half a minute for the API page's many anchors).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

pytestmark = pytest.mark.site

LINKCHECKER = Path(sys.executable).with_name("linkchecker")
# The request rate is capped only by the server (see conftest's handler): it is ours.
LINKCHECKER_CONFIG = "[checking]\nmaxrequestspersecond=1000\n"


def check_links(start_urls: list[str], origin: str, tmp_path: Path) -> list[dict[str, str]]:
    """Run LinkChecker from ``start_urls``; return one row per broken link or warning."""
    config = tmp_path / "linkcheckerrc"
    config.write_text(LINKCHECKER_CONFIG)
    # No proxy for 127.0.0.1, and no user config that could switch external checks on.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    result = subprocess.run(
        [
            str(LINKCHECKER),
            "--config",
            str(config),
            "--no-status",
            "--no-robots",
            "--output",
            "csv/utf-8",
            f"--ignore-url=^(?!{re.escape(origin)}/)",
            *start_urls,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a measurement
    )
    assert result.returncode in (0, 1), f"LinkChecker failed to run:\n{result.stderr}"
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines)), delimiter=";"))
    problems = [row for row in rows if row["valid"] != "True" or row["warningstring"]]
    # Exit code 1 means "errors found": then there must be a row that says which.
    assert result.returncode == 0 or problems, f"exit 1 with no problem row:\n{result.stdout}"
    return problems


def anchor_problems(site: Path) -> list[str]:
    """Links to ``#anchor`` whose page (this one or another of the site) has no such id."""
    pages = sorted(site.rglob("*.html"))
    soups = {page: BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser") for page in pages}
    anchors = {
        page: {tag["id"] for tag in soup.find_all(id=True)}
        | {tag["name"] for tag in soup.find_all("a", attrs={"name": True})}
        for page, soup in soups.items()
    }
    problems = []
    for page, soup in soups.items():
        for link in soup.find_all("a", href=re.compile(r"#.")):
            target, _, fragment = link["href"].partition("#")
            if urlsplit(target).scheme or target.startswith("//"):
                continue  # another site's anchor is not ours to check
            path = (page.parent / unquote(target)).resolve() if target else page
            if target.endswith("/") or path.is_dir():
                path = path / "index.html"
            if path in anchors and unquote(fragment) not in anchors[path]:
                problems.append(f"{page.relative_to(site)}: {link['href']}")
    return problems


def describe(rows: list[dict[str, str]]) -> str:
    return "\n".join(
        f"{row['parentname']}:{row['line']}: {row['urlname']}: "
        f"{row['result']} {row['warningstring']}".strip()
        for row in rows
    )


def test_no_broken_internal_link_or_anchor(built_site, site_url, site_pages, tmp_path):
    origin = re.match(r"https?://[^/]+", site_url).group(0)
    # Every page is a start, so a page nothing links to (404.html) is checked too.
    problems = describe(check_links([page.url for page in site_pages], origin, tmp_path))
    within = "\n".join(anchor_problems(built_site))
    assert not (problems or within), f"broken links in the built site:\n{problems}\n{within}"


def test_link_checks_report_a_broken_link_and_broken_anchors(serve, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<!doctype html><html lang="en"><head><title>Home</title></head><body>'
        '<p id="top"><a href="missing.html">gone</a> <a href="page.html#nowhere">bad</a> '
        '<a href="page.html#there">good</a> <a href="#top">self</a> <a href="#bottom">not here</a> '
        '<a href="https://example.com/">elsewhere</a> <a href="mailto:a@example.com">mail</a>'
        "</p></body></html>"
    )
    (site / "page.html").write_text(
        '<!doctype html><html lang="en"><head><title>Page</title></head>'
        '<body><h1 id="there">There</h1></body></html>'
    )
    with serve(site) as origin:
        problems = check_links([f"{origin}/index.html"], origin, tmp_path)
    assert [row["urlname"] for row in problems] == ["missing.html"]
    assert anchor_problems(site) == ["index.html: page.html#nowhere", "index.html: #bottom"]


def site_files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def differences(first: dict[str, bytes], second: dict[str, bytes]) -> dict[str, list[str]]:
    return {
        "only in the first build": sorted(first.keys() - second.keys()),
        "only in the second": sorted(second.keys() - first.keys()),
        "differ": sorted(
            name for name in first.keys() & second.keys() if first[name] != second[name]
        ),
    }


def test_a_build_that_replays_every_page_gives_the_sessions_bytes(build_site, built_site, tmp_path):
    """The session's build has just recorded every page (or replayed records that still
    hold): a build now replays them all, and gives the same bytes. That running every
    page again gives them too is test_properdocs' check, whose build runs every page."""
    session = site_files(built_site)
    warm = build_site(tmp_path / "warm")
    log = (tmp_path / "warm" / "build.log").read_text()
    assert not re.search(r": ran \d+ blocks", log) and re.search(r": reused \d+ blocks", log)
    assert differences(session, site_files(warm)) == differences({}, {})
