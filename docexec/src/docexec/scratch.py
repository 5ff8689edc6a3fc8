"""Scratch folders and files in the system's temporary folder, named for their maker.

A build removes its scratch as it goes: a page's working folder when its process
ends, the wheel's build folder when the wheel is built. A build that is killed
(SIGTERM from ``docker stop``, a cancelled CI job, ``kill``; SIGKILL) runs no
cleanup, so each name carries the pid of the process that made it
(``docexec-page-<pid>-…``), and the first scratch a process makes sweeps away
what a process that is gone left behind (:func:`sweep`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

#: What docexec keeps in the temporary folder: a page's working folder, the scripts its
#: ``spawn`` children start from, the file its process writes a crash into, the
#: folder the reader's wheel is built in, and the list of files the fork server
#: imported (:func:`server_files`).
KINDS = ("page", "spawn", "crash", "wheel", "server")

_NAME = re.compile(rf"docexec-(?:{'|'.join(KINDS)})-(\d+)-")
_swept = False
_lock = threading.Lock()


def _started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), ``None`` if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22, counted after the command's name
        with open("/proc/stat") as stat:
            boot = next(int(line.split()[1]) for line in stat if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _left_behind(path: Path, pid: int) -> bool:
    """Whether ``path``'s maker, process ``pid``, is gone: no such process, or one that
    started after ``path`` last changed, which cannot have made it (its pid was reused)."""
    started = _started(pid)
    if started is None:
        return True
    try:
        return started > path.lstat().st_mtime + 1  # /proc's start time is in ticks
    except OSError:
        return False


def sweep(folder: str | None = None) -> list[str]:
    """Remove the scratch that processes now gone left in ``folder`` (the system's
    temporary folder by default); return the names removed.

    Only what this user owns is touched, and only what a live process cannot have
    made: its maker's pid names no process, or a process younger than it.
    """
    folder = folder or tempfile.gettempdir()
    removed = []
    uid = os.getuid()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None:
            continue
        path = Path(entry.path)
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        if not _left_behind(path, int(match[1])):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                continue
        removed.append(entry.name)
    return removed


def _sweep_once() -> None:
    global _swept
    with _lock:
        if not _swept:
            _swept = True
            sweep()


def folder(kind: str) -> str:
    """A new scratch folder of ``kind`` (one of :data:`KINDS`), named for this process."""
    _sweep_once()
    return tempfile.mkdtemp(prefix=f"docexec-{kind}-{os.getpid()}-")


def file(kind: str) -> str:
    """A new, empty scratch file of ``kind`` (one of :data:`KINDS`), named for this
    process; closed, its path returned."""
    _sweep_once()
    handle, path = tempfile.mkstemp(prefix=f"docexec-{kind}-{os.getpid()}-")
    os.close(handle)
    return path


def server_files(pid: int) -> str:
    """Where the fork server ``pid`` lists the files it imported, each with its state then
    (written by :mod:`docexec.preloaded`, read by :func:`docexec.worker.stale_server`)."""
    return os.path.join(tempfile.gettempdir(), f"docexec-server-{pid}-files.json")
