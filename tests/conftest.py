"""Fixtures shared by the tests that build the whole site and look at it in a browser.

One strict build per session (``built_site``), served on 127.0.0.1 (``site_url``) under
a base path as on GitHub Pages (``/learnable-parameters/``, from ``TEST_SITE_URL``, which
the builds get as ``SITE_URL``), so absolute links such as those in 404.html resolve as
they do online.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import http.server
import io
import logging
import os
import runpy
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENSURE_CHROMIUM = runpy.run_path(str(ROOT / "scripts" / "ensure-chromium"))

# Chromium's own background traffic (updates, sync, field trials) is off: the tests
# fail on any request that leaves 127.0.0.1, and the page must be the only one making them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


#: The site_url the test builds get (mkdocs.yml reads SITE_URL): a project site on
#: GitHub Pages lives under a path like this one, and the tests serve it there too.
TEST_SITE_URL = "http://127.0.0.1:8000/learnable-parameters/"


def site_prefix() -> str:
    """The path the test builds live under: ``learnable-parameters``."""
    return urlsplit(TEST_SITE_URL).path.strip("/")


def source_date_epoch() -> str:
    """The build date, as `make site` takes it: the environment's, else the last commit's."""
    if epoch := os.environ.get("SOURCE_DATE_EPOCH"):
        return epoch
    result = subprocess.run(
        ["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or "0"


@pytest.fixture
def short_temp() -> Iterator[Path]:
    """A temporary folder of its own with a short path: the fork server's socket lives
    in it, and a socket's path may not be longer than 107 bytes (pytest's are long)."""
    temp = Path(tempfile.mkdtemp(prefix="scratch-", dir="/tmp"))
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


def processes_with(marker: str) -> list[str]:
    """``"pid: command line"`` of every process on the machine whose command holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in command:
            found.append(f"{pid}: {command}")
    return found


#: Our environment's settings that a shell outside this repository would not have.
#: Bytecode among them: with PYTHONDONTWRITEBYTECODE set (this machine sets it), every
#: notebook and script would compile torch's modules again (1.2 s each) in a venv
#: installed with --no-compile.
NOT_OURS = {
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "JUPYTER_PATH",
    "PYTHONDONTWRITEBYTECODE",
}


def venv_env(folder: Path) -> dict[str, str]:
    """The environment of a shell with ``folder``'s venv active, nothing of this repository's."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_OURS}
    env["PATH"] = f"{folder / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(folder)
    return env


@dataclass
class BuildResult:
    """What a build did: its exit code and its log, as ``mkdocs build`` prints it."""

    returncode: int
    log: str

    @property
    def stderr(self) -> str:  # where the mkdocs command prints its log
        return self.log


def build_in_process(
    root: Path, env: dict[str, str] | None = None, cwd: Path | None = None, **options: str
) -> BuildResult:
    """Run ``mkdocs build`` on ``root``/mkdocs.yml inside this process.

    What ``mkdocs build`` does, without starting Python and importing MkDocs, the
    theme and torch again for every small site a test builds: the example processes
    fork from one server that already holds torch (see docexec.worker). The log
    and the exit code are what the command would print and return. ``cwd`` is
    where the command is run from (``root`` unless given); ``options`` override the
    config's, as the command's flags do (``site_dir=...`` for ``--site-dir``).
    """
    from mkdocs import config
    from mkdocs.commands import build

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
    logger = logging.getLogger("mkdocs")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update({"SOURCE_DATE_EPOCH": "1700000000", **(env or {})})
    returncode = 0
    try:
        os.chdir(cwd or root)
        cfg = config.load_config(config_file=str(root / "mkdocs.yml"), **options)
        cfg.plugins.on_startup(command="build", dirty=False)
        try:
            build.build(cfg)
        finally:
            cfg.plugins.on_shutdown()
    except (Exception, SystemExit) as error:  # what the command reports and exits 1 on
        logger.error(str(error))
        returncode = 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        logger.removeHandler(handler)
        logger.setLevel(level)
    return BuildResult(returncode, stream.getvalue())


@pytest.fixture(scope="session")
def build_site() -> Callable[..., Path]:
    """``build_site(root, env)``: build the site strictly into ``root``/<prefix>; return that folder.

    The build's log is left beside it, as ``root``/build.log.
    """
    epoch = source_date_epoch()

    def build(root: Path, env: dict[str, str] | None = None) -> Path:
        site = root / site_prefix()
        env = {"SOURCE_DATE_EPOCH": epoch, "SITE_URL": TEST_SITE_URL, **(env or {})}
        result = build_in_process(ROOT, env, site_dir=str(site))
        (root / "build.log").write_text(result.log)
        if result.returncode != 0:
            pytest.fail(f"mkdocs build --strict failed:\n{result.log}")
        return site

    return build


@pytest.fixture(scope="session")
def built_site(build_site, tmp_path_factory) -> Path:
    """The site, built once per session: the folder that holds its index.html.

    Under pytest-xdist each worker builds it, one after another (a lock in the
    folder the workers' temporary folders share): the first runs the pages the
    execution cache lacks, on every core, and the others replay its records, rather
    than every worker running every page at once on the same cores.
    """
    root = tmp_path_factory.mktemp("built")
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build_site(root)
    with (tmp_path_factory.getbasetemp().parent / "built_site.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_site(root)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        # LinkChecker waits 0.1 to 0.6 s between requests to one host unless the host
        # sends this header: our own server on 127.0.0.1 needs no such courtesy.
        self.send_header("LinkChecker", "maxrated")
        super().end_headers()


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 from a thread; yields ``http://127.0.0.1:PORT``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="session")
def serve() -> Callable[[Path], contextlib.AbstractContextManager[str]]:
    """``with serve(folder) as origin:`` serves a folder on 127.0.0.1 for a while."""
    return serve_directory


@pytest.fixture(scope="session")
def site_url(built_site) -> Iterator[str]:
    """The built site served on 127.0.0.1, as ``http://127.0.0.1:PORT/<prefix>/``."""
    prefix = f"{site_prefix()}/" if site_prefix() else ""
    with serve_directory(built_site.parent) as origin:
        yield f"{origin}/{prefix}"


@dataclass(frozen=True)
class SitePage:
    """One HTML page of the built site."""

    path: str  # relative to the site's root, as a link has it: "", "all-parameters/", "404.html"
    url: str  # where site_url serves it

    @property
    def name(self) -> str:
        return self.path or "(home)"


@pytest.fixture(scope="session")
def site_pages(built_site: Path, site_url: str) -> list[SitePage]:
    """Every HTML page of the built site (a new page is found, not listed), home first."""
    found = []
    for file in sorted(built_site.rglob("*.html")):
        path = file.relative_to(built_site).as_posix().removesuffix("index.html")
        found.append(SitePage(path, site_url + path))
    found.sort(key=lambda page: page.path != "")
    assert found and found[0].path == "", f"no home page in {built_site}"
    return found


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """A Chromium to launch: a missing one fails under CI=true and skips elsewhere."""
    path = ENSURE_CHROMIUM["find_chromium"]()
    if path is None:
        reason = (
            "no Chromium: not /usr/bin/chromium, not on PATH, not Playwright's "
            "(run scripts/ensure-chromium, as `make test` does)"
        )
        if ENSURE_CHROMIUM["in_ci"]():
            pytest.fail(f"{reason}; CI=true, so this is an error")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def browser(chromium_path):
    """One headless Chromium for the session, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


#: The test files that take 5 s or more, longest first (see `make test`'s durations,
#: PYTEST_ADDOPTS=--durations=0): handed out to the workers in this order, then the
#: short ones, so that the last files to start are short and neither worker is left
#: alone with a long one at the end. (xdist would otherwise hand out the files in
#: name order, and the longest have few tests.)
LONGEST_FILES = [
    "test_takeaways.py",
    "test_browser.py",
    "test_docexec_ahead.py",
    "test_docexec_memo.py",
    "test_docexec_worker.py",
    "test_docexec_build.py",
    "test_docexec_export.py",
    "test_docexec_cache.py",
    "test_properdocs.py",
    "test_copy_along.py",
    "test_docexec_distribution.py",
    "test_docexec_options.py",
    "test_site_links.py",
    "test_takeaways_package.py",
    "test_pages.py",
]
assert all((ROOT / "tests" / name).is_file() for name in LONGEST_FILES), LONGEST_FILES


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject.toml's): a worker per core this process may use, and one
    more. The suite waits about a seventh of its time (pages that sleep to have a
    duration, timeouts run out, processes starting): with a worker per core a core
    was idle then (87 % busy on two cores, measured from /proc/stat; 98 % with three).
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still says how many, as xdist documents."""
    if (count := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")).isdigit():
        return int(count)
    return len(os.sched_getaffinity(0)) + 1  # and a count that is no number is ignored


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(trylast=True)  # after pytest's own, which collects what tests left
def pytest_unconfigure(config) -> None:
    # By its end a worker holds some 650,000 objects (torch, MkDocs, Playwright, the
    # sites it built); the interpreter's exit collected them again and again, for 3 to
    # 10 s, past which pytest-xdist kills the worker: the whole run waited for it.
    # Frozen, they are left to the operating system, as at any process's end; atexit
    # handlers still run.
    gc.freeze()
