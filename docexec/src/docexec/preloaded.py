"""What the fork server prepares for every page's process, once, after its preloads.

The fork server imports the plugin's ``preload`` modules, then this one (see
``PageWorker.context``). Each page's process is forked from the server, so what
is done here is done once per server instead of once per page:

- Each module's file, resolved to its real path (:data:`REAL_FILES`): a page's read
  tracking looks at every module its process holds (``PageReads.take``), some
  thousand with torch, which took 80 ms of every page to resolve.
- What seeding will use of a module already imported: ``numpy.random``, which NumPy
  loads on first use (60 ms of every page that has NumPy).
- The exit finalizers the preloads registered (``weakref.finalize``: torch's
  operator libraries take 0.1 s to tear down) no longer run at a page's exit. They
  undo what the server's imports did, in a process about to end; a page's own
  finalizers and ``atexit`` handlers still run, as at a script's exit.
- The state of each file it imported from outside the Python installation (the
  repository's own modules, an editable install): a build whose page would fork from a
  server holding a module older than its file starts a new server instead
  (:func:`docexec.worker.stale_server`). Under ``mkdocs serve`` an edited module
  that is preloaded would otherwise run as it was, in a page whose record names the
  file as it is.
- The fingerprint of each such file as the server holds it (:data:`HELD`): a page
  records that one, not the file's state when the page runs, so a file edited while
  a page runs keys the page's record on the code that ran (found stale next build).
- The server's own end: when the build is done (or a new server replaces it), it
  leaves without its interpreter's teardown (:func:`_end_at_once`). With torch
  preloaded that teardown took 0.6 s, after the build had said it was done, with the
  build's stderr still open in the server (a command's output piped on waited for it).

What it leaves alone: docexec's own page loop (``docexec.worker``, and with it
``docexec.session``), which a page's process imports as it starts. Imported here, it
would save a page 30 ms more, but its module state (the fork handlers it registers,
among others) would be the server's, shared by every page; a multiprocessing ``Pool``
in a page's process hung twice in about ten full test runs after a change that
imported it here, and the cause was not found.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing.forkserver
import multiprocessing.util
import os
import sys
import time
import weakref
from pathlib import Path

from docexec.cache import CHANGED, fingerprint, installed_folders
from docexec.processes import start_ticks
from docexec.scratch import server_files
from docexec.start import ready_to_seed

#: Each module the server holds, by name: the module, and its file's real path.
REAL_FILES: dict[str, tuple[object, str]] = {}

for _name, _module in list(sys.modules.items()):
    _file = getattr(_module, "__file__", None)
    if isinstance(_file, str) and os.path.isabs(_file):
        REAL_FILES[_name] = (_module, os.path.realpath(_file))

ready_to_seed()

for _finalizer in list(weakref.finalize._registry):  # noqa: SLF001 - no public listing
    _finalizer.atexit = False


_SERVER = os.getpid()


def _end_at_once() -> None:
    """At the server's exit, end it without undoing its imports. Registered last,
    this runs first; a page's process, which runs the handlers it inherited as it
    closes, is not the server and goes on to its own."""
    if os.getpid() == _SERVER:
        with contextlib.suppress(OSError):
            os.unlink(server_files(_SERVER))
        # What multiprocessing undoes at exit is not skipped: the processes a preload
        # started (a Manager, a daemon), its finalizers and temporary folder.
        multiprocessing.util._exit_function()  # noqa: SLF001 - its own exit handler
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _imported_by_the_fork_server() -> bool:
    """Whether multiprocessing's fork server is importing this module (as it preloads),
    not some other process, whose exit must stay its own."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code is multiprocessing.forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


#: Each file of :data:`REAL_FILES` from outside the Python installation, with the
#: fingerprint (:func:`docexec.cache.fingerprint`) of the code the server holds, or
#: :data:`docexec.cache.CHANGED` if the file was written after the server started.
HELD: dict[str, str | None] = {}


def _started_ns() -> int:
    """The end of the clock tick this process started in, in nanoseconds since the
    epoch (``/proc`` gives the start in ticks since boot); now, if ``/proc`` cannot
    say: then no file counts as written since, rather than every file written since
    the machine booted."""
    ticks = start_ticks(os.getpid())
    if ticks is None:
        return time.time_ns()
    # The tick's end: never before the start.
    since_boot = (ticks + 1) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME) + since_boot


def _list_imported_files() -> None:
    """Fill :data:`HELD`, and write :func:`docexec.scratch.server_files`: each file of a
    module the server holds, from outside the Python installation, with its
    modification time and size; ``[-1, -1]`` (never a file's) for a file written since
    the server started, which may be newer than its module, so that the next build
    starts a new server. A file dated in the future is taken as it is: taken as just
    written, it would rerun its pages and restart the server on every build."""
    installed = installed_folders()
    # Rounded up to a tick (10 ms): a module the build wrote just before it started
    # the server (a hook's, the same bytes on every build) is not counted as written
    # since, which would rerun its pages on every build. A write after the preloads
    # began is still counted: the interpreter takes longer than a tick to start.
    since = _started_ns()
    states = {}
    for _module, real in REAL_FILES.values():
        if real.startswith(installed):
            continue
        # Read before its time is: an edit from now on shows in one or the other.
        held = fingerprint(Path(real))
        try:
            stat = os.stat(real)
        except OSError:  # gone: the next build starts a new server too
            HELD[real], states[real] = CHANGED, [-1, -1]
            continue
        # A time yet to come says nothing (a clock set wrong where the file was made).
        if since <= stat.st_mtime_ns <= time.time_ns():
            HELD[real], states[real] = CHANGED, [-1, -1]
        else:
            HELD[real], states[real] = held, [stat.st_mtime_ns, stat.st_size]
    path = server_files(_SERVER)
    with open(path + ".part", "w") as file:
        json.dump(states, file)
    os.replace(path + ".part", path)


if _imported_by_the_fork_server():
    _list_imported_files()
    atexit.register(_end_at_once)
