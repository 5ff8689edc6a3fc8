"""Execute first, then render: pages run before MkDocs renders them, on every core, and
in shards that merge.

Small sites built in this process (``build_in_process``), and ``python -m docexec run``
as a command, as CI's shard jobs run it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import sites
from conftest import build_in_process, processes_with
from sites import SUPERFENCES, snippets

pytestmark = pytest.mark.site

#: A page that notes when its block starts and ends (in the repository's times/ folder,
#: which no page reads), then prints what only it prints.
TIMED = """\
# Page {name}

```python exec="on" result="text"
import os, time
from pathlib import Path
times = Path(os.environ["DOCEXEC_ROOT"], "times")
start = time.monotonic()
time.sleep({seconds})
(times / "{name}").write_text(f"{{start}} {{time.monotonic()}}")
print("page {name}:", sum(range({seconds_int} * 1000)))
```

```pycon exec="on"
>>> "{name}".upper()
```
"""


def write_site(root: Path, pages: dict[str, str], **options: object) -> Path:
    """The pages, with includes from snippets/ and an empty times/ for TIMED pages.

    Nothing is preloaded unless ``preload`` says: these pages import nothing heavy,
    and each shard's process would import torch for nothing.
    """
    options.setdefault("preload", ())
    sites.write_site(
        root, pages, markdown_extensions=[SUPERFENCES, snippets("snippets")], **options
    )
    (root / "snippets").mkdir(exist_ok=True)
    (root / "times").mkdir(exist_ok=True)
    return root


def timed_pages(seconds: dict[str, float]) -> dict[str, str]:
    return {
        f"{name}.md": TIMED.format(name=name, seconds=took, seconds_int=int(took * 10))
        for name, took in seconds.items()
    }


PAGES = timed_pages({"a": 0.8, "b": 0.2, "c": 0.5, "d": 0.1})


def site_bytes(site: Path) -> dict[str, bytes]:
    return {
        path.relative_to(site).as_posix(): path.read_bytes()
        for path in sorted(site.rglob("*"))
        if path.is_file()
    }


def ran_lines(log: str) -> list[str]:
    return re.findall(r"docexec: (\S+): ran \d+ blocks", log)


def intervals(root: Path) -> dict[str, tuple[float, float]]:
    found = {}
    for path in (root / "times").iterdir():
        start, end = map(float, path.read_text().split())
        found[path.name] = (start, end)
    return found


def test_pages_run_at_once_and_the_site_is_the_one_a_page_at_a_time_gives(tmp_path):
    one = write_site(tmp_path / "one", PAGES)
    two = write_site(tmp_path / "two", PAGES)
    serial = build_in_process(one, {"DOCEXEC_JOBS": "1"})
    parallel = build_in_process(two, {"DOCEXEC_JOBS": "2"})
    assert serial.returncode == 0, serial.log
    assert parallel.returncode == 0, parallel.log
    assert site_bytes(two / "site") == site_bytes(one / "site")
    # Logged in page order, whichever finished first.
    assert ran_lines(parallel.log) == ["docs/a.md", "docs/b.md", "docs/c.md", "docs/d.md"]

    def overlapping(times: dict[str, tuple[float, float]]) -> bool:
        spans = sorted(times.values())
        return any(later[0] < earlier[1] for earlier, later in pairwise(spans))

    assert overlapping(intervals(two)), "with two jobs, no two pages ran at the same time"
    assert not overlapping(intervals(one)), "with one job, two pages ran at the same time"


def test_the_longest_page_by_its_last_run_starts_first(tmp_path):
    root = write_site(tmp_path, PAGES)
    assert build_in_process(root, {"DOCEXEC_JOBS": "1"}).returncode == 0
    # The durations the first build recorded, longest first: the order the next build
    # must start the pages in (read, not assumed: a busy machine blurs 0.1 s apart).
    took = {
        name: json.loads((root / ".cache" / "docexec" / "docs" / f"{name}.md.json").read_text())
        for name in "abcd"
    }
    expected = sorted(took, key=lambda name: -took[name]["seconds"])
    assert expected != sorted(took), "the recorded durations are in name order: no test"
    # Every page's examples change, so every page runs again, now with known durations.
    for page in (root / "docs").iterdir():
        page.write_text(page.read_text().replace(".upper()", ".lower()"))
    result = build_in_process(root, {"DOCEXEC_JOBS": "1"})
    assert result.returncode == 0, result.log
    starts = sorted((start, name) for name, (start, _end) in intervals(root).items())
    assert [name for _start, name in starts] == expected


def test_pages_never_run_start_the_most_code_first(tmp_path):
    # No page has run: the one with the most lines of code starts first (it may be the
    # longest), whatever the names' order.
    pages = timed_pages({"a": 0.05, "b": 0.05, "c": 0.05})
    for name, lines in [("b", 20), ("c", 5)]:
        padding = "".join(f"# line {i}\n" for i in range(lines))
        pages[f"{name}.md"] = pages[f"{name}.md"].replace("import os", padding + "import os")
    root = write_site(tmp_path, pages)
    result = build_in_process(root, {"DOCEXEC_JOBS": "1"})
    assert result.returncode == 0, result.log
    starts = sorted((start, name) for name, (start, _end) in intervals(root).items())
    assert [name for _start, name in starts] == ["b", "c", "a"]


@pytest.mark.parametrize("when", ["ahead", "as-it-renders"])
def test_a_pages_recorded_duration_leaves_out_its_wait_for_the_fork_server(
    tmp_path, monkeypatch, when
):
    # The fork server takes 2 s to import what it preloads; the page's block takes next
    # to nothing. The first page waits for the server, but that is not its duration:
    # counted, it would rank a short page first in the next build. A block that
    # includes code is not foreseen: it runs as its page renders.
    code = '--8<-- "code.py"' if when == "as-it-renders" else "print(1)"
    page = f'# A\n\n```python exec="on" result="text"\n{code}\n```\n'
    # A module of its own each time: a server that preloads it starts anew (this
    # process keeps one server while the modules asked for stay the same).
    slow = f"slow_to_import_{when.replace('-', '_')}"
    root = write_site(tmp_path, {"a.md": page}, preload=[slow])
    (root / "snippets" / "code.py").write_text("print(1)\n")
    (root / f"{slow}.py").write_text("import time\ntime.sleep(2)\n")
    monkeypatch.syspath_prepend(str(root))  # found by the build, and by its fork server
    began = time.monotonic()
    result = build_in_process(root, {"DOCEXEC_JOBS": "1"})
    assert result.returncode == 0, result.log
    # The build did wait for a server importing the slow module (not one left running).
    assert time.monotonic() - began >= 2
    assert ("as the page renders" in result.log) == (when == "as-it-renders"), result.log
    record = json.loads((root / ".cache" / "docexec" / "docs" / "a.md.json").read_text())
    assert record["seconds"] < 2, record["seconds"]


def test_a_page_run_again_as_its_record_stops_fitting_counts_every_block_it_ran(tmp_path):
    # The record fits block 1 but not block 2: block 1 runs again as block 2 is
    # reached. Its 1.5 s are the page's, though they are spent before block 2's run.
    from docexec import cache

    page = (
        '# A\n\n```python exec="on"\nimport time\ntime.sleep(1.5)\nprint("one")\n```\n\n'
        '```python exec="on"\n--8<-- "two.py"\n```\n'
    )
    root = write_site(tmp_path, {"a.md": page})
    (root / "snippets" / "two.py").write_text('print("two")\n')
    assert build_in_process(root).returncode == 0
    path = root / ".cache" / "docexec" / "docs" / "a.md.json"
    data = cache.unsealed(json.loads(path.read_text()))
    data["blocks"][1]["signature"]["source"] += "  # altered"
    path.write_text(json.dumps(cache.sealed(data)))
    result = build_in_process(root)
    assert result.returncode == 0, result.log
    assert "running the page" in result.log, result.log
    assert cache.unsealed(json.loads(path.read_text()))["seconds"] >= 1.5


def endless_page(tmp_path: Path) -> tuple[str, str]:
    """A page whose block waits on a process that sleeps for ten minutes, and the marker
    that process's command line holds (to find it left behind)."""
    marker = f"docexec-ahead-{os.getpid()}-{tmp_path.name}"
    sleeper = f"import time; time.sleep(600)  # {marker}"
    text = (
        f'# A\n\n```python exec="on"\nimport subprocess, sys\n'
        f"subprocess.run([sys.executable, '-c', {sleeper!r}])\n```\n"
    )
    return marker, text


def test_a_failing_page_stops_the_pages_still_running_and_names_its_line(tmp_path):
    marker, endless = endless_page(tmp_path)
    pages = {
        "a.md": endless,
        "b.md": '# B\n\n```python exec="on"\nimport time\ntime.sleep(0.5)\n{}["missing"]\n```\n',
    }
    root = write_site(tmp_path, pages)
    # Page a waits on a process whose command line holds the marker: it must be ended.
    result = build_in_process(root, {"DOCEXEC_JOBS": "2"})
    assert result.returncode == 1
    assert "docs/b.md:6: KeyError: 'missing'" in result.log
    assert not (root / "site" / "a").exists()
    assert processes_with(marker) == []


def test_a_page_whose_workdir_is_no_folder_is_said_so_once_not_misnamed(tmp_path):
    pages = {"a.md": '# A\n\n```python exec="on" workdir="nowhere"\nprint(1)\n```\n'}
    result = build_in_process(write_site(tmp_path, pages))
    assert result.returncode == 1
    assert "(a block's workdir 'nowhere' is no folder)" in result.log
    assert "includes code" not in result.log


def test_a_block_with_included_code_runs_as_its_page_renders(tmp_path):
    pages = {"a.md": '# A\n\n```python exec="on" result="text"\n--8<-- "code.py"\n```\n'}
    root = write_site(tmp_path, pages)
    (root / "snippets" / "code.py").write_text("print('included', 6 * 7)\n")
    result = build_in_process(root)
    assert result.returncode == 0, result.log
    assert (
        "docs/a.md: its blocks will run as the page renders (a block includes code with "
        "pymdownx.snippets)" in result.log
    )
    assert "included 42" in (root / "site" / "a" / "index.html").read_text()
    assert ran_lines(result.log) == ["docs/a.md"]


def run_shard(root: Path, shard: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "docexec", "run", "--shard", shard, *extra],
        cwd=root,
        env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000", NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,  # a guard against a hang, not a measurement
    )


def test_two_shards_from_separate_clones_merge_into_a_build_that_runs_nothing(tmp_path):
    source = write_site(tmp_path / "source", PAGES)
    alone = build_in_process(shutil.copytree(source, tmp_path / "alone"))
    assert alone.returncode == 0, alone.log
    records = []
    for k in (1, 2):
        clone = shutil.copytree(source, tmp_path / f"clone-{k}")
        result = run_shard(clone, f"{k}/2", "--out", str(tmp_path / f"records-{k}"))
        assert result.returncode == 0, result.stderr
        assert not (clone / "site").exists(), "a shard rendered its pages"
        records.append(tmp_path / f"records-{k}")
    shard_pages = [sorted(p.name for p in (r / "docs").iterdir()) for r in records]
    assert sorted(shard_pages[0] + shard_pages[1]) == [
        "a.md.json",
        "b.md.json",
        "c.md.json",
        "d.md.json",
    ]
    assert all(shard_pages), f"a shard ran nothing: {shard_pages}"

    merged = shutil.copytree(source, tmp_path / "merged")
    for folder in records:
        shutil.copytree(folder, merged / ".cache" / "docexec", dirs_exist_ok=True)
    result = build_in_process(merged)
    assert result.returncode == 0, result.log
    assert ran_lines(result.log) == []
    assert len(re.findall(r"docexec: \S+: reused", result.log)) == 4
    assert site_bytes(merged / "site") == site_bytes(tmp_path / "alone" / "site")


def test_a_shard_that_is_not_k_of_n_is_refused(tmp_path):
    result = run_shard(write_site(tmp_path, PAGES), "3/2")
    assert result.returncode == 2
    assert "K/N" in result.stderr


def test_jobs_that_are_not_a_count_are_refused_naming_the_option(tmp_path):
    result = run_shard(write_site(tmp_path, PAGES), "1/1", "--jobs", "-1")
    assert result.returncode == 2
    assert "argument --jobs: '-1': a whole number of pages at once" in result.stderr
    assert "DOCEXEC_JOBS" not in result.stderr  # not set: not what was wrong


def test_a_failing_page_fails_its_shard_naming_its_line(tmp_path):
    pages = {"a.md": '# A\n\n```python exec="on"\nraise ValueError("no")\n```\n'}
    result = run_shard(write_site(tmp_path, pages), "1/1")
    assert result.returncode == 1
    assert "docs/a.md:4: ValueError: no" in result.stderr


SESSION_PAGE = """\
# Session

```pycon exec="on" session="s"
>>> answer = 6 * 7
```

```python exec="on" session="s" result="text"
print("the answer is", answer)
```
"""


def test_with_the_cache_off_pages_still_run_ahead_and_give_the_same_site(tmp_path):
    pages = {**PAGES, "session.md": SESSION_PAGE}
    on = write_site(tmp_path / "on", pages)
    off = write_site(tmp_path / "off", pages)
    result = build_in_process(off, {"DOCEXEC_CACHE": "0"})
    assert result.returncode == 0, result.log
    assert build_in_process(on).returncode == 0
    assert not (off / ".cache").exists()
    assert "the answer is 42" in (off / "site" / "session" / "index.html").read_text()
    assert site_bytes(off / "site") == site_bytes(on / "site")


def test_an_error_of_docexec_itself_fails_the_build_rather_than_show_the_block_unrun(
    tmp_path, monkeypatch
):
    from docexec import adapter

    def broken(*_args, **_kwargs):
        raise AttributeError("a bug of docexec's")

    monkeypatch.setattr(adapter, "_reported_headings", broken)
    result = build_in_process(write_site(tmp_path, {"session.md": SESSION_PAGE}))
    assert result.returncode == 1
    assert "docs/session.md: docexec failed on a pycon block: AttributeError" in result.log


#: A hook that notes when each page's Markdown reaches the plugins (its render starts).
RENDER_HOOK = """\
import time
from pathlib import Path

def on_page_markdown(markdown, page, config, files):
    folder = Path(config.config_file_path).parent / "renders"
    folder.mkdir(exist_ok=True)
    (folder / Path(page.file.src_uri).stem).write_text(str(time.monotonic()))
    return markdown
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_render_starts_on_the_core_the_last_pages_leave_idle(tmp_path, jobs):
    # a is quick, b slow: both start at once with two jobs, and a is rendered while b
    # still runs; with one job nothing renders until b is done.
    root = write_site(tmp_path, timed_pages({"a": 0.0, "b": 1.5}), hooks=["hooks.py"])
    (root / "hooks.py").write_text(RENDER_HOOK)
    result = build_in_process(root, {"DOCEXEC_JOBS": str(jobs)})
    assert result.returncode == 0, result.log
    b_ended = intervals(root)["b"][1]
    a_rendered = float((root / "renders" / "a").read_text())
    assert (a_rendered < b_ended) == (jobs > 1), (a_rendered, b_ended)
    assert ran_lines(result.log) == ["docs/a.md", "docs/b.md"]


def test_a_page_that_fails_while_the_render_runs_fails_the_build_naming_its_line(tmp_path):
    pages = {
        "a.md": '# A\n\n```python exec="on"\nprint("a")\n```\n',
        "b.md": '# B\n\n```python exec="on"\nimport time\ntime.sleep(1.5)\n{}["missing"]\n```\n',
    }
    root = write_site(tmp_path, pages, hooks=["hooks.py"])
    (root / "hooks.py").write_text(RENDER_HOOK)
    result = build_in_process(root, {"DOCEXEC_JOBS": "2"})
    assert result.returncode == 1
    assert (root / "renders" / "a").exists(), "the render did not start before b failed"
    assert "docs/b.md:6: KeyError: 'missing'" in result.log
    assert not (root / "site" / "a").exists()


def test_a_page_stopped_while_its_process_starts_runs_nothing(tmp_path, monkeypatch):
    # Ctrl-C (or another page's failure) in the first seconds of a cold build, while
    # the fork server still imports torch: the page's process did not exist yet when
    # the pages were stopped, and must not go on to run its block once it does.
    import threading

    from docexec import page
    from docexec.adapter import Adapter
    from docexec.ahead import PagesAhead

    marker, text = endless_page(tmp_path)
    root = write_site(tmp_path, {"a.md": text})
    adapter = Adapter(root, timeout=600, preload=["torch"])
    run, _ = adapter.scan("docs/a.md", text, text)
    foreseen = adapter.foresee(run)
    assert foreseen, "the block was not foreseen: no page would run ahead"
    made = threading.Event()
    ahead: list[PagesAhead] = []
    real_worker = page.PageWorker
    workers = []

    def worker_started_once_stopped(*args, **kwargs):
        made.wait()
        # The process comes up only once the stop has begun.
        assert ahead[0]._stop.wait(timeout=60), "the test never stopped the pages"
        workers.append(real_worker(*args, **kwargs))
        return workers[-1]

    monkeypatch.setattr(page, "PageWorker", worker_started_once_stopped)
    ahead.append(PagesAhead([(run, foreseen)], jobs=1))
    made.set()
    stopper = threading.Thread(target=ahead[0].stop, daemon=True)
    try:
        stopper.start()
        stopper.join(timeout=60)  # a guard against a hang, not a measurement
        assert not stopper.is_alive(), "stopping waited for a block that started after it"
        assert workers, "the page's process never started: nothing was tested"
        assert ahead[0].failure is None, ahead[0].failure
        assert processes_with(marker) == []
    finally:
        run.close(kill=True)


#: A hook that notes the render's start: the last of the plugins' on_nav, after docexec's.
RENDER_STARTS_HOOK = """\
from pathlib import Path

def on_nav(nav, config, files):
    (Path(config.config_file_path).parent / "rendering").write_text("")
    return nav
"""


def test_a_failure_the_render_meets_at_another_page_says_that_page_did_not_fail(tmp_path):
    # Three jobs: c ends at once, so the render starts at a, and waits for it; b fails
    # once the render has started, and a is stopped. MkDocs says "Error reading page
    # 'a.md'": the message must say that b failed, at its line, and a did not.
    marker, endless = endless_page(tmp_path)
    pages = {
        "a.md": endless,
        "b.md": '# B\n\n```python exec="on"\nimport os, time\nfrom pathlib import Path\n'
        'while not Path(os.environ["DOCEXEC_ROOT"], "rendering").exists():\n'
        '    time.sleep(0.05)\n{}["missing"]\n```\n',
        "c.md": '# C\n\n```python exec="on"\nprint("c")\n```\n',
    }
    root = write_site(tmp_path, pages, hooks=["hooks.py"])
    (root / "hooks.py").write_text(RENDER_STARTS_HOOK)
    result = build_in_process(root, {"DOCEXEC_JOBS": "3"})
    assert result.returncode == 1
    assert "Error reading page 'a.md'" in result.log, "the render did not reach a: no test"
    assert "docs/b.md:8: KeyError: 'missing'" in result.log
    note = "(docs/b.md failed as it ran ahead of the render, which had reached docs/a.md: "
    assert note + "docs/a.md did not fail)" in result.log, result.log
    assert processes_with(marker) == []


def test_with_fewer_pages_to_run_than_jobs_the_render_starts_at_once(tmp_path):
    # One page to run and two jobs (an edit under `mkdocs serve`): a core is idle from
    # the start, and the render goes on while b runs. b ends only once the render has
    # reached a, so a render that waited for b would wait until b's timeout.
    waits = (
        '# B\n\n```python exec="on"\nimport os, time\nfrom pathlib import Path\n'
        'while not Path(os.environ["DOCEXEC_ROOT"], "renders", "a").exists():\n'
        '    time.sleep(0.05)\nprint("b")\n```\n'
    )
    root = write_site(tmp_path, {"a.md": "# A\n", "b.md": waits}, hooks=["hooks.py"], timeout=30)
    (root / "hooks.py").write_text(RENDER_HOOK)
    result = build_in_process(root, {"DOCEXEC_JOBS": "2"})
    assert result.returncode == 0, result.log
    assert ran_lines(result.log) == ["docs/b.md"]


def test_ctrl_c_stops_a_shard_in_one_line_and_leaves_no_process(tmp_path):
    import signal

    marker, text = endless_page(tmp_path)
    root = write_site(tmp_path, {"a.md": text}, timeout=900)
    shard = subprocess.Popen(
        [sys.executable, "-m", "docexec", "run", "--shard", "1/1"],
        cwd=root,
        env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000", NO_MKDOCS_2_WARNING="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal starts it: SIGINT at its default, even where this suite runs
        # in the background (where it arrives ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120  # a guard for a slow start, not a measurement
        while not processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with(marker), "the page's block never started"
        shard.send_signal(signal.SIGINT)
        _, stderr = shard.communicate(timeout=120)
    finally:
        shard.kill()
    assert shard.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "docexec: interrupted" in stderr
    assert processes_with(marker) == []


def test_a_page_that_ran_ahead_keeps_its_record_when_another_page_fails(tmp_path):
    # b fails once z, which the render reaches after b, has run to its end (z's block
    # notes its end in times/, and its process closes within the half second after).
    failing = (
        '# B\n\n```python exec="on"\nimport os, pathlib, time\n'
        'z = pathlib.Path(os.environ["DOCEXEC_ROOT"], "times", "z")\n'
        "while not z.exists():\n    time.sleep(0.05)\n"
        'time.sleep(0.5)\nraise ValueError("b")\n```\n'
    )
    pages = {"b.md": failing, **timed_pages({"z": 0.0})}
    root = write_site(tmp_path, pages)
    result = build_in_process(root, {"DOCEXEC_JOBS": "2"})
    assert result.returncode == 1 and "docs/b.md:9: ValueError: b" in result.log
    (root / "docs" / "b.md").write_text(failing.replace('raise ValueError("b")', "pass"))
    result = build_in_process(root, {"DOCEXEC_JOBS": "2"})
    assert result.returncode == 0, result.log
    assert ran_lines(result.log) == ["docs/b.md"], "z ran again: its record was not kept"


def test_ctrl_c_from_a_terminal_while_the_fork_server_preloads_says_one_line(tmp_path):
    # A terminal's Ctrl-C goes to the whole foreground process group: the fork server,
    # still importing torch, gets it too, and must not print a traceback of its own.
    import signal

    page = '# A\n\n```python exec="on"\nimport time\ntime.sleep(60)\n```\n'
    root = write_site(tmp_path, {"a.md": page}, timeout=900, preload=["torch"])
    shard = subprocess.Popen(
        [sys.executable, "-m", "docexec", "run"],
        cwd=root,
        env=dict(os.environ, SOURCE_DATE_EPOCH="1700000000", NO_MKDOCS_2_WARNING="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60  # a guard for a slow start, not a measurement
        while not processes_with(f"'{root}'") and time.monotonic() < deadline:
            time.sleep(0.05)  # the fork server has started (its sys.path names the site)
        time.sleep(0.5)  # and is importing torch
        os.killpg(shard.pid, signal.SIGINT)
        _, stderr = shard.communicate(timeout=120)
    finally:
        shard.kill()
    assert shard.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
