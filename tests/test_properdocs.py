"""ProperDocs, the maintained fork of MkDocs 1.x, builds the same site as MkDocs.

`make site DOCS=properdocs` must give the pages `make site` gives, byte for byte, but
for the ``<meta name="generator">`` tag that names the generator: the way off MkDocs
1.x stays open (README, "Platform"). The MkDocs side is the session's built site;
ProperDocs builds once more, into a folder of its own, with docexec's cache off: every
page runs again under ProperDocs, rather than replaying the records MkDocs just wrote.
So this is also the suite's check that running every page again gives the bytes the
session's build gave (whether that build ran its pages or replayed them), and that
such a build leaves the checkout as it was.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TEST_SITE_URL, site_prefix, source_date_epoch

PROPERDOCS = Path(sys.executable).with_name("properdocs")
IN_CI = runpy.run_path(str(ROOT / "scripts" / "ensure-chromium"))["in_ci"]
GENERATOR = re.compile(rb'<meta name="generator" content="[^"]*">')


def without_generator(data: bytes) -> bytes:
    """A file's bytes with the generator tag's content blanked."""
    return GENERATOR.sub(b'<meta name="generator">', data)


def site_files(site: Path) -> dict[str, bytes]:
    """Every file of a built site by its relative path, the generator tag blanked."""
    return {
        path.relative_to(site).as_posix(): without_generator(path.read_bytes())
        for path in sorted(site.rglob("*"))
        if path.is_file()
    }


def differences(one: dict[str, bytes], other: dict[str, bytes]) -> list[str]:
    """The files only one site has, and those whose bytes differ."""
    return sorted(
        [f"only in the first: {name}" for name in one.keys() - other.keys()]
        + [f"only in the second: {name}" for name in other.keys() - one.keys()]
        + [f"differs: {name}" for name in one.keys() & other.keys() if one[name] != other[name]]
    )


def git_status() -> str:
    """The checkout's changes, untracked files included."""
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_only_the_generator_tag_may_differ():
    mkdocs = b'<head><meta name="generator" content="mkdocs-1.6.1, mkdocs-material-9.8.2">'
    properdocs = (
        b'<head><meta name="generator" content="mkdocs-ProperDocs 1.6.7, mkdocs-material-9.8.2">'
    )
    assert without_generator(mkdocs) == without_generator(properdocs)
    one = {"index.html": without_generator(mkdocs + b"<p>6</p>"), "a.css": b"x"}
    other = {"index.html": without_generator(properdocs + b"<p>7</p>"), "b.css": b"x"}
    assert differences(one, other) == [
        "differs: index.html",
        "only in the first: a.css",
        "only in the second: b.css",
    ]


@pytest.mark.site
def test_properdocs_builds_the_same_site_as_mkdocs(built_site, tmp_path):
    if not PROPERDOCS.exists():
        reason = f"ProperDocs is not installed ({PROPERDOCS}); `make setup` installs it"
        if IN_CI():
            pytest.fail(f"{reason}; CI=true, so this is an error")
        pytest.skip(reason)
    site = tmp_path / site_prefix()
    before = git_status()
    result = subprocess.run(
        [
            str(PROPERDOCS),
            "build",
            "--strict",
            "--config-file",
            "mkdocs.yml",
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        env=dict(
            os.environ,
            SOURCE_DATE_EPOCH=source_date_epoch(),
            SITE_URL=TEST_SITE_URL,
            DOCEXEC_CACHE="0",
        ),
        capture_output=True,
        text=True,
        timeout=1800,  # a guard against a hung build, not a measurement
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"ProperDocs" in (site / "index.html").read_bytes()  # it was ProperDocs that built it
    assert "reused" not in result.stderr and " ran " in result.stderr  # its pages ran
    assert git_status() == before, "a build that runs every page changed the checkout"
    assert differences(site_files(built_site), site_files(site)) == []
