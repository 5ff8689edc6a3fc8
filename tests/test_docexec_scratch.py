"""docexec.scratch: what a killed build leaves in the temporary folder is swept away
by the next process that makes scratch, and nothing a live process may own is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from docexec import scratch


def gone_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_sweep_removes_what_an_ended_process_left_and_keeps_the_rest(tmp_path):
    namespace = scratch._tag(os.getpid()).split("-")[2]
    dead = f"{gone_pid()}-12345-{namespace}"  # an ended process's pid, as it started
    (tmp_path / f"docexec-page-{dead}-abc").mkdir()
    (tmp_path / f"docexec-page-{dead}-abc" / "out.txt").write_text("left\n")
    (tmp_path / f"docexec-crash-{dead}-def").write_text("")
    (tmp_path / f"docexec-wheel-{dead}-ghi").mkdir()
    mine = tmp_path / f"docexec-page-{scratch._tag(os.getpid())}-jkl"
    mine.mkdir()
    # Made a while ago, as far as its time says (a page unpacked a tar into it): still ours.
    os.utime(mine, (time.time() - 3600, time.time() - 3600))
    # Another pid namespace's (a container sharing /tmp): its pids are not ours to read.
    foreign = f"docexec-page-{gone_pid()}-12345-{int(namespace) + 1}-mno"
    # Not docexec's scratch, or not named for a process: never touched.
    others = [foreign, f"docexec-other-{dead}-x", "docexec-page-x", f"pytest-page-{dead}-y"]
    for name in others:
        (tmp_path / name).mkdir()

    removed = scratch.sweep(str(tmp_path))

    assert sorted(removed) == sorted(
        [f"docexec-page-{dead}-abc", f"docexec-crash-{dead}-def", f"docexec-wheel-{dead}-ghi"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, *others])


def test_sweep_removes_what_a_reused_pid_cannot_have_made(tmp_path):
    """A live process with the pid in the name, but another start, did not make it."""
    pid, started, namespace = scratch._tag(os.getpid()).split("-")
    before = tmp_path / f"docexec-spawn-{pid}-{int(started) - 1}-{namespace}-old"
    before.mkdir()
    now = tmp_path / f"docexec-spawn-{pid}-{started}-{namespace}-new"
    now.mkdir()

    assert scratch.sweep(str(tmp_path)) == [before.name]
    assert now.is_dir()


MAKES_SCRATCH = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from docexec.worker import PageWorker, Block

    root = Path(sys.argv[1])
    worker = PageWorker(root, "docs/page.md", seed=0)
    worker.run(Block("python", "open('made.txt', 'w').write('x')", "s", 3), 30)
    print(os.getpid(), flush=True)
    if sys.argv[2] == "hang":
        time.sleep(60)
    worker.close()
    """
)


def test_a_killed_build_s_scratch_is_swept_by_the_next_page_process(tmp_path, short_temp):
    root, temp = tmp_path / "repo", short_temp
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "page.md").write_text("# A page\n")
    env = {**os.environ, "TMPDIR": str(temp)}
    command = [sys.executable, "-c", MAKES_SCRATCH, str(root)]

    killed = subprocess.Popen(
        [*command, "hang"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pid = killed.stdout.readline().strip()
    killed.send_signal(signal.SIGTERM)  # as `docker stop` or a cancelled CI job does
    _, stderr = killed.communicate(timeout=30)
    assert pid.isdigit(), stderr
    left = sorted(p.name.split("-")[1] for p in temp.iterdir() if f"-{pid}-" in p.name)
    assert left == ["crash", "page", "spawn"]

    subprocess.run([*command, "end"], env=env, check=True, capture_output=True, timeout=60)

    # (What remains is multiprocessing's own socket folder, pymp-*, which the killed
    # process's fork server listened on: Python's, not named for a process.)
    assert [p.name for p in temp.iterdir() if p.name.startswith("docexec-")] == []
