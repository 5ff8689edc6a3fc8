"""What the fork server reads as it imports the ``preload`` modules: imported first.

A preloaded module may read a file as it is imported (a settings file, a table of
constants): every page's process starts with what it read, though no page reads the
file itself. An audit hook notes each file opened until :mod:`docexec.preloaded`,
imported last, calls :func:`stop`; that module keeps the state of those files
beside those of the modules' own files (``HELD``), for every page's record and for
the check that starts a new server when one changed.

Folders listed are left out: the import system lists every folder on ``sys.path``
(the repository's root among them), and a page's record would name every file
added there. Audit hooks cannot be removed: the hook stays in the server, and in
every page's process forked from it, as one test of a flag per audit event.
"""

from __future__ import annotations

import os
import sys

#: Each path opened to be read while the preloads ran, made absolute.
READ: list[str] = []

_MADE: set[str] = set()
_noting = True


def _hook(event: str, args: tuple) -> None:
    if not _noting or event != "open":
        return
    if not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
    try:
        path = os.path.abspath(os.fsdecode(args[0]))
    except (TypeError, ValueError, OSError):
        return
    # Made or emptied: what it holds is the preload's own doing, as for a page.
    if flags & os.O_TRUNC or flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL:
        _MADE.add(path)
    elif path not in _MADE:
        READ.append(path)


def stop() -> list[str]:
    """Stop noting; return the paths noted."""
    global _noting
    _noting = False
    return READ


sys.addaudithook(_hook)
