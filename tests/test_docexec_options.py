"""docexec's options instead of one site's assumptions: preload, seeding, stamp, provenance.

A site that adds docexec gets no module preloaded, its pages seeded wherever they
import NumPy or torch, a stamp naming what it preloaded, the provenance note with the
plugin's own stylesheet (or neither), and docstring blocks placed by mkdocstrings' own
``paths``; on a system docexec cannot watch processes on, one error at start.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import subprocess
import sys
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import sites
from sites import SUPERFENCES, mkdocstrings

from docexec import plugin, processes, stamp
from docexec.worker import Block, PageWorker

PAGE = "docs/page.md"

#: What a page prints of each generator: NumPy's, torch's and torch's thread count.
DRAWS = "import numpy, torch\nprint(numpy.random.rand(2), torch.rand(3), torch.get_num_threads())"


def run_page(root: Path, source: str, preload: tuple[str, ...]) -> str:
    (root / "docs").mkdir(exist_ok=True)
    (root / PAGE).write_text("# A page\n")
    worker = PageWorker(root, PAGE, seed=0, preload=preload)
    try:
        return worker.run(Block("python", source, "", 2), timeout=120).output
    finally:
        worker.close(kill=True)


def test_without_preload_a_page_that_never_imports_torch_never_loads_it(tmp_path):
    output = run_page(
        tmp_path, "import sys\nprint(sorted({'torch', 'numpy'} & set(sys.modules)))", ()
    )
    assert output == "[]\n"


@pytest.mark.parametrize("preload", [(), ("torch",)], ids=["imported-by-the-page", "preloaded"])
def test_a_page_draws_the_seeded_numbers_whether_it_or_the_server_imports_torch(tmp_path, preload):
    # What a fresh interpreter draws after seeding both generators as docexec promises.
    seeded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import numpy, torch\nnumpy.random.seed(0)\ntorch.manual_seed(0)\n"
            "torch.set_num_threads(1)\n" + DRAWS.split("\n", 1)[1],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert run_page(tmp_path, DRAWS, preload) == seeded


def test_the_stamp_names_the_distributions_of_the_preloaded_modules(tmp_path):
    torch = f"torch {metadata.version('torch').split('+')[0]}"
    assert torch in stamp.build_stamp(tmp_path, ["torch"])
    assert "torch" not in stamp.build_stamp(tmp_path, [])
    assert stamp.build_stamp(tmp_path, []).startswith("Python 3.")
    # A module is named by the distribution that provides it.
    assert stamp.preloaded_distributions(["sklearn.linear_model"]) == [
        f"scikit-learn {metadata.version('scikit-learn')}"
    ]


def test_a_system_without_proc_is_named_in_one_line(monkeypatch):
    assert processes.check_platform() == ""  # this machine has both
    real = processes.os.path.isdir
    monkeypatch.setattr(
        processes.os.path,
        "isdir",
        lambda path: False if str(path).startswith("/proc") else real(path),
    )
    missing = processes.check_platform()
    assert "\n" not in missing
    assert "Linux only" in missing and "no /proc," in missing


PAGE_TEXT = '# Home\n\n```pycon exec="on"\n>>> 6 * 7\n```\n'


def build_site(root: Path, page: str = PAGE_TEXT, **options: object):
    """A site with docexec at its defaults but for ``options`` (nothing preloaded)."""
    return sites.build_site(root, {"index.md": page}, **{"preload": (), **options})


def test_a_build_on_such_a_system_stops_at_start_with_that_line(tmp_path, monkeypatch):
    monkeypatch.setattr(plugin, "check_platform", lambda: "docexec runs pages on Linux only")
    result = build_site(tmp_path)
    assert result.returncode == 1
    assert "ERROR   -  docexec runs pages on Linux only\n" in result.log
    assert not (tmp_path / "site").exists()


def test_a_temporary_folder_too_long_for_a_socket_is_named(tmp_path):
    # A real TMPDIR, in a Python of its own: multiprocessing keeps its folder per process.
    check = "from docexec.worker import socket_problem; print(socket_problem())"
    short = tempfile.gettempdir()
    long = tmp_path / ("t" * 80)
    long.mkdir()
    said = {}
    for name, folder in (("short", short), ("long", long)):
        env = {**os.environ, "TMPDIR": str(folder)}
        run = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        said[name] = run.stdout.strip()
    assert said["short"] == ""
    assert f"set TMPDIR to a shorter folder (the temporary folder is {long})" in said["long"]
    assert list(long.iterdir()) == []  # multiprocessing's own folder went with its process


def test_a_build_that_could_not_start_pages_stops_at_start_saying_why(tmp_path, monkeypatch):
    too_long = "/tmp/" + "x" * 120
    monkeypatch.setattr(multiprocessing.connection, "arbitrary_address", lambda family: too_long)
    result = build_site(tmp_path)
    assert result.returncode == 1
    assert (
        f"ERROR   -  docexec: the socket that pages' processes are started through would be {too_long}, 125 bytes"
        in result.log
    )
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize(("folder", "inside"), [("docs/cache", "docs_dir"), ("site/x", "site_dir")])
def test_a_cache_folder_inside_the_docs_or_the_site_is_refused(tmp_path, folder, inside):
    result = build_site(tmp_path, cache_dir=folder)
    assert result.returncode == 1
    assert f"plugins.docexec.cache_dir '{folder}' is inside {inside}" in result.log
    assert not (tmp_path / folder).exists()


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_docexec_cache_turns_the_cache_off_in_words_too(tmp_path, value):
    result = build_site(tmp_path, env={"DOCEXEC_CACHE": value})
    assert result.returncode == 0, result.log
    assert not (tmp_path / ".cache").exists()


def test_docexec_cache_that_says_neither_is_refused(tmp_path):
    result = build_site(tmp_path, env={"DOCEXEC_CACHE": "maybe"})
    assert result.returncode == 1
    assert "DOCEXEC_CACHE='maybe': 0, false, no or off turns the cache off" in result.log


def test_a_preload_that_is_not_installed_fails_at_start_naming_it(tmp_path):
    result = build_site(tmp_path, preload=["no_such_module_here"])
    assert result.returncode == 1
    assert "plugins.docexec.preload names 'no_such_module_here'" in result.log
    assert not (tmp_path / "site").exists()


def test_the_provenance_note_comes_with_the_plugins_stylesheet(tmp_path):
    result = build_site(tmp_path)
    assert result.returncode == 0, result.log
    html = (tmp_path / "site" / "index.html").read_text()
    assert '<aside class="docexec-provenance"' in html
    assert 'href="assets/docexec.css"' in html
    shipped = Path(plugin.__file__).parent / "assets" / "docexec.css"
    assert (tmp_path / "site" / "assets" / "docexec.css").read_bytes() == shipped.read_bytes()


def test_provenance_false_leaves_out_the_note_and_its_stylesheet(tmp_path):
    result = build_site(tmp_path, provenance=False)
    assert result.returncode == 0, result.log
    html = (tmp_path / "site" / "index.html").read_text()
    assert "docexec-provenance" not in html and "docexec.css" not in html
    assert not (tmp_path / "site" / "assets" / "docexec.css").exists()
    from bs4 import BeautifulSoup

    [block] = BeautifulSoup(html, "html.parser").select("pre")
    assert block.get_text() == ">>> 6 * 7\n42\n"


def test_a_docstring_block_is_found_where_mkdocstrings_paths_say(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "elsewhere.py").write_text(
        textwrap.dedent(
            '''\
            """A module mkdocstrings finds in lib/."""


            def helper():
                """Help.

                ```python exec="on"
                print("from a docstring")
                ```
                """
            '''
        )
    )
    result = build_site(
        tmp_path,
        "# API\n\n::: elsewhere.helper\n",
        after_markdown_exec=[mkdocstrings("lib")],
        markdown_extensions=["toc", SUPERFENCES],
    )
    assert result.returncode == 1
    assert "lib/elsewhere.py:8: " in result.log


def test_warming_up_starts_the_fork_server_importing_what_it_preloads():
    import multiprocessing.forkserver
    import time

    PageWorker.warm_up(("torch",))
    pid = multiprocessing.forkserver._forkserver._forkserver_pid
    assert pid is not None, "no fork server was started"
    deadline = time.monotonic() + 120  # a guard, not a measurement
    while "libtorch" not in Path(f"/proc/{pid}/maps").read_text():
        assert time.monotonic() < deadline, "the fork server never imported torch"
        time.sleep(0.1)
