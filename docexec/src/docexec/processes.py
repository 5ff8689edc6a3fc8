"""The processes a page starts, as Linux shows them: found in ``/proc``, ended together.

A page's process leads a process group of its own and is the subreaper of every
process below it (:func:`die_with_parent`), so whatever a page starts, however it
detaches, can be found under it (:func:`descendants`) and ended with it
(:func:`end_tree`). :func:`check_platform` says at start, in one line, where this
cannot work.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal


def check_platform() -> str:
    """What this system lacks of what docexec needs (``/proc``, ``prctl``), or ``""``."""
    missing = []
    if not os.path.isdir(f"/proc/{os.getpid()}/task"):
        missing.append("/proc")
    try:
        ctypes.CDLL(None).prctl  # noqa: B018 - looking it up is the check
    except (OSError, AttributeError):
        missing.append("prctl")
    if not missing:
        return ""
    return (
        f"docexec runs pages on Linux only: this {platform.system() or 'system'} has no "
        f"{' and no '.join(missing)}, which docexec needs to find and end every process "
        "a page starts"
    )


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat``'s fields after the command's name (the first is the state,
    field 3); ``None`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``'s
    22nd field: no clock change moves it); ``None`` if there is no such process."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None  # field 22: the 20th after the name
    except (ValueError, IndexError):
        return None


def live_children() -> set[int]:
    """This process's live child processes (zombies, which have ended, left out)."""
    alive = set()
    for pid in child_pids(os.getpid()):
        fields = stat_fields(pid)
        if fields and fields[0] not in ("Z", "X"):
            alive.add(pid)
    return alive


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the fork server (and so MkDocs) goes away, and to
    make this process the parent of every orphan among its descendants (a child that
    double-forks or starts a session of its own), so that none escapes the page."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (any of its threads), as Linux lists them."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found.extend(int(child) for child in file.read().split())
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children before their own children."""
    found, todo = [], [pid]
    while todo:
        children = child_pids(todo.pop())
        found.extend(children)
        todo.extend(children)
    return found


def kill_below(pid: int) -> None:
    """Kill every process below ``pid``, whatever its group or session."""
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)


def end_tree(pid: int) -> None:
    """Kill every process below ``pid``, then ``pid``'s process group (it leads one)."""
    kill_below(pid)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
