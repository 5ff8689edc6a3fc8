"""Scratch folders and files in the system's temporary folder, named for their maker.

A build removes its scratch as it goes: a page's working folder when its process
ends, the wheel's build folder when the wheel is built. A build that is killed
(SIGTERM from ``docker stop``, a cancelled CI job, ``kill``; SIGKILL) runs no
cleanup, so each name says which process made it
(``docexec-page-<pid>-<start>-<pid namespace>-…``), and the first scratch a
process makes sweeps away what a process that is gone left behind (:func:`sweep`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from docexec.processes import start_ticks

#: What docexec keeps in the temporary folder: a page's working folder, the scripts its
#: ``spawn`` children start from, the file its process writes a crash into, the
#: folder the reader's wheel is built in, and the list of files the fork server
#: imported (:func:`server_files`).
KINDS = ("page", "spawn", "crash", "wheel", "server")

_NAME = re.compile(rf"docexec-(?:{'|'.join(KINDS)})-(\d+)-(\d+)-(\d+)-")
_swept = False
_lock = threading.Lock()


def _namespace() -> int:
    """This process's pid namespace (its inode): a pid names a process only within it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _tag(pid: int) -> str:
    """What names process ``pid``'s scratch: its pid, its start, its pid namespace."""
    return f"{pid}-{start_ticks(pid)}-{_namespace()}"


def sweep(folder: str | None = None) -> list[str]:
    """Remove the scratch that processes now gone left in ``folder`` (the system's
    temporary folder by default); return the names removed.

    A name says which process made it: its pid, when it started, and its pid
    namespace. Only what this user owns, made in this namespace, is touched, and only
    when no process with that pid started at that time: the maker is gone (its pid
    unused, or used again by a younger process).
    """
    folder = folder or tempfile.gettempdir()
    removed = []
    uid, namespace = os.getuid(), str(_namespace())
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or match[3] != namespace:
            continue
        if str(start_ticks(int(match[1]))) == match[2]:
            continue  # its maker runs
        path = Path(entry.path)
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
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
    return tempfile.mkdtemp(prefix=f"docexec-{kind}-{_tag(os.getpid())}-")


def file(kind: str) -> str:
    """A new, empty scratch file of ``kind`` (one of :data:`KINDS`), named for this
    process; closed, its path returned."""
    _sweep_once()
    handle, path = tempfile.mkstemp(prefix=f"docexec-{kind}-{_tag(os.getpid())}-")
    os.close(handle)
    return path


def server_files(pid: int) -> str:
    """Where the fork server ``pid`` lists the files it imported, each with its state then
    (written by :mod:`docexec.preloaded`, read by :func:`docexec.worker.stale_server`)."""
    return os.path.join(tempfile.gettempdir(), f"docexec-server-{_tag(pid)}-files.json")
