"""scripts/ensure-chromium: which Chromium it takes, and which it never installs.

Driven at the level of its functions (no browser is installed or started): the order
it looks in, and Ubuntu's snap wrappers, told apart from a real Chromium.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What `apt-cache show` prints for Ubuntu's package (it installs the snap) and Debian's.
UBUNTU_APT_SHOW = """\
Package: chromium-browser
Architecture: amd64
Version: 2:1snap1-0ubuntu2
Priority: optional
Section: web
Origin: Ubuntu
Depends: snapd
Description-en: Transitional package - chromium-browser -> chromium snap
 This is a transitional dummy package. It can safely be removed.
"""
DEBIAN_APT_SHOW = """\
Package: chromium
Version: 156.0.8078.108-1~deb12u1
Priority: optional
Section: web
Depends: chromium-common (= 156.0.8078.108-1~deb12u1), libasound2 (>= 1.0.17)
Description-en: web browser
 Web browser that aims to build a safer, faster, and more stable internet
"""


@pytest.fixture
def script() -> dict:
    """The script's globals, fresh for each test: the dict its functions look names up in."""
    return runpy.run_path(str(ROOT / "scripts" / "ensure-chromium"))["find_chromium"].__globals__


def test_ubuntus_snap_transitional_package_is_told_from_debians(script):
    assert script["is_snap_transitional"](UBUNTU_APT_SHOW)
    assert not script["is_snap_transitional"](DEBIAN_APT_SHOW)


def test_a_snap_wrapper_is_never_taken_for_a_browser(script, tmp_path):
    wrapper = tmp_path / "chromium-browser"
    wrapper.write_text('#!/bin/sh\nexec /snap/bin/chromium "$@"\n')
    linked = tmp_path / "chromium"
    linked.symlink_to("/snap/bin/chromium")
    real = tmp_path / "real-chromium"
    real.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 64)
    assert script["is_snap_wrapper"](str(wrapper))
    assert script["is_snap_wrapper"](str(linked))
    assert not script["is_snap_wrapper"](str(real))


def test_playwrights_own_chromium_comes_first(script, tmp_path):
    debian = tmp_path / "chromium"
    debian.write_bytes(b"\x7fELF")
    debian.chmod(0o755)
    script["DEBIAN_CHROMIUM"] = debian
    script["playwright_chromium"] = lambda: "/playwright/chromium-1234/chrome"
    assert script["find_chromium"]() == "/playwright/chromium-1234/chrome"
    script["playwright_chromium"] = lambda: None
    assert script["find_chromium"]() == str(debian)


def test_only_a_snap_wrapper_counts_as_no_chromium(script, tmp_path, monkeypatch):
    wrapper = tmp_path / "chromium"
    wrapper.write_text("#!/bin/sh\n/usr/bin/snap run chromium\n")
    wrapper.chmod(0o755)
    script["DEBIAN_CHROMIUM"] = wrapper
    script["playwright_chromium"] = lambda: None
    monkeypatch.setenv("PATH", str(tmp_path))  # chromium on PATH is the same wrapper
    assert script["find_chromium"]() is None
