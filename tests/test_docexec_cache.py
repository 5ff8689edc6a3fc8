"""docexec's cache: a page reruns exactly when something it depended on changed.

Small sites built in this process (see ``build_in_process``), each build's log read
for the per-page "ran" / "reused" lines.
"""

from __future__ import annotations

import json
import os
import py_compile
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sites
from conftest import BuildResult, build_in_process

from docexec import cache

pytestmark = pytest.mark.site

PAGES = {
    "index.md": "# Home\n\nOnly prose.\n",
    "imports.md": """\
        # Imports

        ```python exec="on" result="text"
        import os, sys
        sys.path.insert(0, os.environ["DOCEXEC_ROOT"])
        import helper
        print(helper.VALUE)
        ```
        """,
    "other.md": """\
        # Imports another module

        ```python exec="on" result="text"
        import os, sys
        sys.path.insert(0, os.environ["DOCEXEC_ROOT"])
        import other_helper
        print(other_helper.VALUE)
        ```
        """,
    "reads.md": """\
        # Reads a file

        ```pycon exec="on"
        >>> import os
        >>> open(os.path.join(os.environ["DOCEXEC_ROOT"], "data.txt")).read()
        ```
        """,
    "plain.md": """\
        # Plain

        ```pycon exec="on" session="s"
        >>> import torch
        >>> torch.manual_seed(0) and torch.rand(2)
        >>> {}["missing"]
        ```
        """,
}
PLAIN_BLOCK = ">>> import torch\n"


def write_site(root: Path, seed: int = 0, **options: object) -> None:
    """The pages and the files they read; ``options`` are docexec's (see sites.config)."""
    sites.write_site(root, PAGES, seed=seed, **options)
    (root / "docs" / "plain.md").write_text(
        (root / "docs" / "plain.md")
        .read_text()
        .replace('session="s"', 'session="s" raises="KeyError"')
    )
    (root / "helper.py").write_text("VALUE = 'one'\n")
    (root / "other_helper.py").write_text("VALUE = 'other'\n")
    # Compiled ahead, as an installed package is: importing then opens only the .pyc,
    # so the module's source must be found from sys.modules, not from an open().
    py_compile.compile(str(root / "helper.py"), doraise=True)
    (root / "data.txt").write_text("first")


def runs(result: BuildResult) -> dict[str, str]:
    """Each page's line in the log: ``{"docs/plain.md": "ran" or "reused"}``."""
    assert result.returncode == 0, result.log
    return dict(
        (page, verb)
        for page, verb in re.findall(r"docexec: (\S+): (ran|reused) \d+ blocks", result.log)
    )


def ran(result: BuildResult) -> set[str]:
    return {page for page, verb in runs(result).items() if verb == "ran"}


def site_bytes(root: Path) -> dict[str, bytes]:
    site = root / "site"
    return {
        path.relative_to(site).as_posix(): path.read_bytes()
        for path in sorted(site.rglob("*"))
        if path.is_file()
    }


ALL = {"docs/imports.md", "docs/other.md", "docs/reads.md", "docs/plain.md"}


def page_text(root: Path, name: str) -> str:
    from bs4 import BeautifulSoup

    html = (root / "site" / name / "index.html").read_text()
    return BeautifulSoup(html, "html.parser").get_text()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_each_change_reruns_exactly_the_pages_that_depend_on_it(tmp_path):
    write_site(tmp_path)
    assert ran(build_in_process(tmp_path)) == ALL
    cold = site_bytes(tmp_path)
    assert any(name.endswith(".ipynb") for name in cold)

    warm = build_in_process(tmp_path)
    assert runs(warm) == dict.fromkeys(ALL, "reused")
    assert site_bytes(tmp_path) == cold, "a warm build must give the cold build's bytes"

    # Prose, even lines added above a block: nothing runs.
    edit(tmp_path / "docs/imports.md", "# Imports\n", "# Imports\n\nMore prose.\n\nAnd more.\n")
    assert ran(build_in_process(tmp_path)) == set()
    assert "More prose." in (tmp_path / "site/imports/index.html").read_text()

    # A block's code: its page only.
    edit(tmp_path / "docs/reads.md", "read()", "read().upper()")
    assert ran(build_in_process(tmp_path)) == {"docs/reads.md"}
    assert "'FIRST'" in (tmp_path / "site/reads/index.html").read_text()

    # A module a page imported: the pages that imported it.
    (tmp_path / "helper.py").write_text("VALUE = 'two'\n")
    assert ran(build_in_process(tmp_path)) == {"docs/imports.md"}
    assert "two" in (tmp_path / "site/imports/index.html").read_text()

    # A file a page opened: that page.
    (tmp_path / "data.txt").write_text("second")
    assert ran(build_in_process(tmp_path)) == {"docs/reads.md"}
    assert "'SECOND'" in (tmp_path / "site/reads/index.html").read_text()

    # A setting that changes output: every page.
    write_site(tmp_path, seed=1)
    assert ran(build_in_process(tmp_path)) == ALL

    # Turned off: every page runs.
    assert ran(build_in_process(tmp_path, {"DOCEXEC_CACHE": "0"})) == ALL


def test_a_traceback_that_names_page_lines_reruns_when_they_move(tmp_path):
    write_site(tmp_path)
    page = tmp_path / "docs/imports.md"
    page.write_text('# T\n\n```python exec="on" raises="KeyError"\n{}["k"]\n```\n')
    build_in_process(tmp_path)
    assert 'docs/imports.md", line 4, in <module>' in page_text(tmp_path, "imports")
    page.write_text(page.read_text().replace("# T\n", "# T\n\nA new line.\n"))
    assert "docs/imports.md" in ran(build_in_process(tmp_path))
    assert 'docs/imports.md", line 6, in <module>' in page_text(tmp_path, "imports")


def resealed(**fields: object):
    """A damage: the record's ``fields`` replaced, and its checksum made to match them,
    so that what refuses the record is the check of its fields' shapes."""

    def damage(text: str) -> str:
        data = json.loads(text)
        changed = {
            name: value(data) if callable(value) else value for name, value in fields.items()
        }
        return json.dumps(cache.sealed(dict(data, **changed)))

    return damage


def first_block(**fields: object):
    return lambda data: [dict(data["blocks"][0], **fields)]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "not json at all",
        lambda text: json.dumps(dict(json.loads(text), format=0)),
        lambda text: json.dumps(dict(json.loads(text), checksum="0" * 64)),
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "checksum"}),
        resealed(blocks=[{"unexpected": 1}]),
        resealed(blocks=first_block(raised=5)),
        resealed(blocks=first_block(output=None)),
        resealed(files=[]),
        lambda text: b"\xff\xfe not text",
    ],
    ids=[
        "truncated",
        "corrupt",
        "older-format",
        "checksum",
        "no-checksum",
        "wrong-shape",
        "raised",
        "output",
        "files",
        "bytes",
    ],
)
def test_a_record_that_cannot_be_read_is_a_miss_said_once(tmp_path, damage):
    write_site(tmp_path)
    build_in_process(tmp_path)
    cold = site_bytes(tmp_path)
    record = tmp_path / ".cache/docexec/docs/plain.md.json"
    damaged = damage(record.read_text())
    if isinstance(damaged, bytes):
        record.write_bytes(damaged)
    else:
        record.write_text(damaged)
    result = build_in_process(tmp_path)
    assert ran(result) == {"docs/plain.md"}
    assert len(re.findall(r"docs/plain\.md: record .*; running the page", result.log)) == 1
    assert site_bytes(tmp_path) == cold
    assert runs(build_in_process(tmp_path))["docs/plain.md"] == "reused"


def test_a_failed_page_is_never_recorded(tmp_path):
    write_site(tmp_path)
    (tmp_path / "docs/reads.md").write_text('```python exec="on"\nraise ValueError("no")\n```\n')
    assert build_in_process(tmp_path).returncode != 0
    assert not (tmp_path / ".cache/docexec/docs/reads.md.json").exists()


def test_two_builds_at_once_leave_a_record_a_third_reuses(tmp_path):
    write_site(tmp_path)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", SOURCE_DATE_EPOCH="1700000000")
    builds = [
        subprocess.Popen(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", f"site{n}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    for build in builds:
        _, err = build.communicate(timeout=300)  # a guard against a hang, not a measurement
        assert build.returncode == 0, err
    for record in (tmp_path / ".cache/docexec/docs").iterdir():
        json.loads(record.read_text())
    assert not list((tmp_path / ".cache/docexec/docs").glob(".record-*"))
    assert runs(build_in_process(tmp_path)) == dict.fromkeys(ALL, "reused")


def test_the_plugin_option_turns_it_off(tmp_path):
    write_site(tmp_path, cache=False)
    build_in_process(tmp_path)
    assert ran(build_in_process(tmp_path)) == ALL
    assert not (tmp_path / ".cache").exists()


def test_a_changed_distribution_version_changes_the_environment_key(monkeypatch):
    class Dist:
        def __init__(self, version):
            self.metadata = {"Name": "somepackage"}
            self.version = version

    monkeypatch.setattr(cache, "_DISTRIBUTIONS", None)
    monkeypatch.setattr(cache, "site_folders", lambda: [])
    monkeypatch.setattr(cache.metadata, "distributions", lambda path: [Dist("1.0")])
    before = cache.environment_key(0)
    assert cache.environment_key(0) == before
    monkeypatch.setattr(cache, "_DISTRIBUTIONS", None)
    monkeypatch.setattr(cache.metadata, "distributions", lambda path: [Dist("1.1")])
    assert cache.environment_key(0) != before
    assert cache.environment_key(1) != cache.environment_key(0)


def test_the_distributions_are_read_again_when_site_packages_changes(monkeypatch, tmp_path):
    monkeypatch.setattr(cache, "site_folders", lambda: [str(tmp_path)])
    monkeypatch.setattr(cache, "_DISTRIBUTIONS", None)
    calls = []
    monkeypatch.setattr(cache, "_read_distributions", lambda: calls.append(1) or ["a==1"])
    assert cache.installed_distributions() == ["a==1"]
    cache.installed_distributions()
    assert calls == [1]
    (tmp_path / "new_package-1.0.dist-info").mkdir()
    os.utime(tmp_path, ns=(0, 1))  # a folder's time can stay within a tick: set it
    cache.installed_distributions()
    assert calls == [1, 1]


def test_an_environment_variable_the_page_read_reruns_it_when_it_changes(tmp_path):
    write_site(tmp_path)
    (tmp_path / "docs/plain.md").write_text(
        '```pycon exec="on"\n>>> import os\n>>> os.environ.get("DOCEXEC_TEST_GREETING")\n```\n'
    )
    assert "docs/plain.md" in ran(build_in_process(tmp_path))
    assert runs(build_in_process(tmp_path))["docs/plain.md"] == "reused"
    result = build_in_process(tmp_path, {"DOCEXEC_TEST_GREETING": "hello"})
    assert ran(result) == {"docs/plain.md"}
    assert "($DOCEXEC_TEST_GREETING changed)" in result.log
    assert "'hello'" in page_text(tmp_path, "plain")


def test_a_page_that_reads_its_own_line_numbers_reruns_when_they_move(tmp_path):
    write_site(tmp_path)
    page = tmp_path / "docs/plain.md"
    page.write_text(
        '# P\n\n```python exec="on" result="text"\nimport sys\n'
        'print("at line", sys._getframe().f_lineno)\n```\n'
    )
    build_in_process(tmp_path)
    assert "at line 5" in page_text(tmp_path, "plain")
    page.write_text(page.read_text().replace("# P\n", "# P\n\nTwo more\nlines.\n"))
    assert "docs/plain.md" in ran(build_in_process(tmp_path))
    assert "at line 8" in page_text(tmp_path, "plain")


def test_what_a_page_reads_without_python_s_open_still_reruns_it(tmp_path):
    """A failed optional import (its folder's names), an environment variable read as
    bytes, and an SQLite database."""
    write_site(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    sqlite3.connect(tmp_path / "data.db").executescript(
        "create table t (v); insert into t values (1);"
    )
    (tmp_path / "docs/plain.md").write_text(
        '```python exec="on" result="text"\nimport os, sqlite3, sys\n'
        'root = os.environ["DOCEXEC_ROOT"]\nsys.path.insert(0, root)\n'
        "try:\n    import pkg.extra\n    print('extra')\nexcept ImportError:\n    print('no extra')\n"
        'print(os.environb.get(b"DOCEXEC_TEST_BYTES"))\n'
        'print(sqlite3.connect(os.path.join(root, "data.db")).execute("select v from t").fetchall())\n'
        "```\n"
    )
    build_in_process(tmp_path)
    assert runs(build_in_process(tmp_path))["docs/plain.md"] == "reused"
    (tmp_path / "pkg" / "extra.py").write_text("")
    assert "docs/plain.md" in ran(build_in_process(tmp_path))
    assert "extra" in page_text(tmp_path, "plain")
    assert "docs/plain.md" in ran(build_in_process(tmp_path, {"DOCEXEC_TEST_BYTES": "x"}))
    assert "b'x'" in page_text(tmp_path, "plain")
    with sqlite3.connect(tmp_path / "data.db") as db:
        db.execute("update t set v = 2")
    assert "docs/plain.md" in ran(build_in_process(tmp_path, {"DOCEXEC_TEST_BYTES": "x"}))
    assert "[(2,)]" in page_text(tmp_path, "plain")


def test_a_record_altered_into_another_valid_one_is_a_miss_said_once(tmp_path):
    """Valid JSON of the right shape, its output changed: never published."""
    write_site(tmp_path)
    build_in_process(tmp_path)
    cold = site_bytes(tmp_path)
    record = tmp_path / ".cache/docexec/docs/plain.md.json"
    data = json.loads(record.read_text())
    block = dict(data["blocks"][0], output=data["blocks"][0]["output"].replace("tensor", "forged"))
    record.write_text(json.dumps(dict(data, blocks=[block])))
    result = build_in_process(tmp_path)
    assert ran(result) == {"docs/plain.md"}
    assert len(re.findall(r"docs/plain\.md: record .*; running the page", result.log)) == 1
    assert site_bytes(tmp_path) == cold
    assert runs(build_in_process(tmp_path))["docs/plain.md"] == "reused"


SAVED_WHILE_RUNNING = """\
```python exec="on" result="text"
import os, subprocess, sys
root = os.environ["DOCEXEC_ROOT"]
sys.path.insert(0, root)
{read}
# The author saves the file while the page runs: another process than the page's.
subprocess.run(
    [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(sys.argv[2])", {saved}],
    check=True,
)
```
"""


@pytest.mark.parametrize(
    ("read", "saved", "file", "before", "after"),
    [
        (
            'print(open(os.path.join(root, "data.txt")).read())',
            'os.path.join(root, "data.txt"), "second"',
            "data.txt",
            "first",
            "second",
        ),
        (  # compiled ahead: the import opens only its .pyc
            "import helper\nprint(helper.VALUE)",
            'os.path.join(root, "helper.py"), "VALUE = \'two\'"',
            "helper.py",
            "one",
            "two",
        ),
    ],
    ids=["opened", "imported"],
)
def test_a_file_saved_while_its_page_runs_reruns_the_page(
    tmp_path, read, saved, file, before, after
):
    """A file is fingerprinted as the page reads it, not after the page: the record
    pairs the output with the content it was made from. One page at a time: the page
    that saves the file would race with the page that imports it."""
    one = {"DOCEXEC_JOBS": "1"}
    write_site(tmp_path)
    (tmp_path / "docs/reads.md").write_text(SAVED_WHILE_RUNNING.format(read=read, saved=saved))
    build_in_process(tmp_path, one)
    assert before in page_text(tmp_path, "reads")
    assert after in (tmp_path / file).read_text()
    result = build_in_process(tmp_path, one)
    assert "docs/reads.md" in ran(result)
    assert f"({file} changed)" in result.log
    assert after in page_text(tmp_path, "reads")
    assert runs(build_in_process(tmp_path, one))["docs/reads.md"] == "reused"


def test_a_file_the_page_writes_before_it_reads_it_is_no_input(tmp_path):
    """What the page wrote is its own output: the next build reuses the record."""
    write_site(tmp_path)
    (tmp_path / "docs/reads.md").write_text(
        '```python exec="on" result="text"\nimport os\n'
        'path = os.path.join(os.environ["DOCEXEC_ROOT"], "made.txt")\n'
        'with open(path, "w") as file:\n    file.write("made by the page")\n'
        "print(open(path).read())\n```\n"
    )
    build_in_process(tmp_path)
    assert "made by the page" in page_text(tmp_path, "reads")
    assert runs(build_in_process(tmp_path))["docs/reads.md"] == "reused"
    record = json.loads((tmp_path / ".cache/docexec/docs/reads.md.json").read_text())
    assert "made.txt" not in record["files"]


def test_a_file_many_pages_read_is_read_once_as_a_build_looks_their_records_up(
    tmp_path, monkeypatch
):
    # A data set every page loads: looked up page by page, it was hashed once per page.
    (tmp_path / "data.bin").write_bytes(b"\0" * 1000)
    (tmp_path / "other.txt").write_text("one page reads this\n")
    store = cache.ExecutionCache(tmp_path, tmp_path / ".cache", "env")
    pages = [f"docs/page-{n}.md" for n in range(3)]
    for page in pages:
        files = {"data.bin": cache.fingerprint(tmp_path / "data.bin")}
        if page == pages[0]:
            files["other.txt"] = cache.fingerprint(tmp_path / "other.txt")
        store.store(cache.Record(page, "fences", [1], "env", files, [], 0.1))
    read = []
    counted = cache.fingerprint
    monkeypatch.setattr(cache, "fingerprint", lambda path: read.append(path.name) or counted(path))
    seen: dict[str, str | None] = {}
    for page in pages:
        store.lookup(page, "fences", [1], seen)
    assert sorted(read) == ["data.bin", "other.txt"]
    # Outside such a pass (a page looked up as it renders) each lookup reads anew.
    store.lookup(pages[1], "fences", [1])
    assert sorted(read) == ["data.bin", "data.bin", "other.txt"]
