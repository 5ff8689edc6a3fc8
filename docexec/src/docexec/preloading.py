"""What the fork server reads as it imports the ``preload`` modules: imported first.

A preloaded module may read a file as it is imported (a settings file, a table of
constants, an SQLite database): every page's process starts with what it read,
though no page reads the file itself. An audit hook notes each file opened or
database connected to until :mod:`docexec.preloaded`, imported last, calls
:func:`stop`; that module keeps the state of those files beside those of the
modules' own files (``HELD``), for every page's record and for the check that
starts a new server when one changed.

Left out:

- a file a preload opened to write, append to or update, whenever it read it (a
  log, a state file read and saved back): it is the preload's own doing, which
  would differ on every build;
- folders listed: the import system lists every folder on ``sys.path`` (the
  repository's root among them), and a page's record would name every file added
  there.

Audit hooks cannot be removed: the hook stays in the server, and in every page's
process forked from it, as one test of a flag per audit event.
"""

from __future__ import annotations

import os
import sys

#: Each path opened to be read, or connected to, while the preloads ran, made absolute.
_READ: list[str] = []
#: Each path opened to be written while they ran.
_WRITTEN: set[str] = set()
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC | os.O_CREAT
_noting = True


def _hook(event: str, args: tuple) -> None:
    if not _noting or event not in ("open", "sqlite3.connect"):
        return
    if not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return  # an open file descriptor, an in-memory database
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
    except (TypeError, ValueError, OSError):
        return
    if "\0" in path:
        return  # no file's name: the call itself fails
    flags = args[2] if event == "open" and len(args) > 2 and isinstance(args[2], int) else 0
    if flags & _WRITES:
        _WRITTEN.add(path)
    else:
        _READ.append(path)


def stop() -> list[str]:
    """Stop noting; return the paths read and never written, in the order first read."""
    global _noting
    _noting = False
    return [path for path in dict.fromkeys(_READ) if path not in _WRITTEN]


sys.addaudithook(_hook)
