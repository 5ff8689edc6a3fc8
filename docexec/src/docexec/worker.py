"""The example process: one per page, so pages never share state.

The plugin starts a worker for each page that has executable blocks and sends it
the page's blocks one at a time over a pipe. The worker holds the page's
sessions, seeds every random number generator when it starts, and runs each
block with :mod:`docexec.session`. A fresh process per page means a page sees
the package's current code (nothing survives in ``sys.modules`` from an earlier
build) and reads the same whatever order pages are built in.
"""

from __future__ import annotations

import _collections_abc
import atexit
import contextlib
import faulthandler
import functools
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.popen_forkserver
import multiprocessing.spawn
import multiprocessing.util  # registers its exit handler now, before ours (see context)
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from docexec import scratch
from docexec.cache import fingerprint, installed_folders
from docexec.processes import (
    command_line,
    die_with_parent,
    end_tree,
    kill_below,
    live_children,
)
from docexec.session import (
    AddressStabilizer,
    BlockResult,
    PathScrubber,
    StopExample,
    as_terminal,
    capture_output,
    misplaced_output,
    new_session_module,
    outside_inputs,
    run_pycon,
    run_python,
    spawned_main,
    tail,
    track_threads,
)
from docexec.start import seed_page

#: Seconds a stopped block gets to unwind before its process is killed.
GRACE = 2.0


@dataclass(frozen=True)
class Block:
    """One executable block of a page, as the plugin sends it to the worker.

    Attributes:
        kind: ``"python"`` or ``"pycon"``.
        source: The block's code.
        session: The session name; blocks of a page with the same name share names.
        first_line: The page line of the block's first code line.
        raises: The exception the block is meant to show, if any.
        workdir: The folder the block runs in, relative to the repository root
            (markdown-exec's ``workdir``); the root itself when empty.
        parts: For a ``python`` block that includes files, ``(path, first_line,
            code)`` pieces that make up ``source`` (see ``run_python``).
        width: The console width the block sees as ``COLUMNS`` (markdown-exec's
            ``width``); 0 leaves ``COLUMNS`` as the build has it.
    """

    kind: str
    source: str
    session: str
    first_line: int
    raises: str | None = None
    workdir: str = ""
    parts: tuple[tuple[str, int, str], ...] = ()
    width: int = 0

    def files(self, page: str) -> list[str]:
        """The files its code is compiled under: the page, then each file it includes."""
        return list(dict.fromkeys([page, *(path for path, _line, _code in self.parts)]))

    def signature(self) -> dict:
        """What identifies the block apart from where it stands on the page."""
        return {
            "kind": self.kind,
            "source": self.source,
            "session": self.session,
            "raises": self.raises,
            "workdir": self.workdir,
            "parts": [list(part) for part in self.parts],
            "width": self.width,
        }


#: Audit events after which the process may die at once: the caller's line is noted.
_SIGNALLING = frozenset({"os.kill", "os.killpg", "signal.pthread_kill", "os.abort"})

#: This package's folder: code that runs in a page's process but is not the page's.
_DOCEXEC = os.path.join(os.path.dirname(os.path.realpath(__file__)), "")

#: Audit events of a look at the stack, whose frames know their line numbers.
_FRAMES = frozenset({"sys._getframe", "sys._current_frames"})

#: Set per block by docexec itself, so never a dependency of a page's output.
UNTRACKED_ENVIRON = frozenset({"DOCEXEC_ROOT"})


def _raise_stop(_signum: int, _frame: object) -> None:
    raise StopExample


class RunningLine:
    """The line the process is running, kept where the plugin can read it: a line of
    the page, or of a file the block includes (``file``: its index in ``Block.files``).

    A thread samples the main thread's stack every few milliseconds, and
    ``os._exit`` notes its caller, so a block that dies (a segfault, a signal, an
    exit) or swallows its stop is reported at the line that was running, not at
    the block's first line. A crash (a segfault) is reported by :mod:`faulthandler`
    into ``crash_file``, which the plugin reads.
    """

    INTERVAL = 0.01
    current: RunningLine | None = None

    def __init__(self, shared, page: str, file=None) -> None:
        RunningLine.current = self
        self.shared = shared
        self.file = file
        self.page = page
        #: The running block's files, by the index the plugin knows them by.
        self.files = {page: 0}
        self.active = False
        self._main = threading.main_thread().ident
        threading.Thread(target=self._sample, name="docexec-line", daemon=True).start()
        real_exit = os._exit

        def _exit(code: int) -> None:
            self.note(sys._getframe(1))
            real_exit(code)

        os._exit = _exit

    def note(self, frame) -> None:
        if not self.active:
            return
        line = index = 0
        while frame is not None:
            found = self.files.get(frame.f_code.co_filename)
            if found is not None:
                # The outermost: the block's own statement (or an included file's).
                line, index = frame.f_lineno, found
            frame = frame.f_back
        if line:
            if self.file is not None:
                self.file.value = index
            self.shared.value = line

    def _sample(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            frame = sys._current_frames().get(self._main)
            self.note(frame)


def _left_running(
    before_children: set[int], grace: float = GRACE
) -> tuple[set[int], list[threading.Thread]]:
    """The processes and threads a block started that still run, after waiting up to
    ``grace`` seconds for them to end."""
    deadline = time.monotonic() + grace
    while True:
        children = live_children() - before_children
        # multiprocessing's resource tracker, which a script keeps until its end too (the
        # forkserver method's server is stopped at the end of its block).
        children.discard(getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None))
        threads = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
        threads = [t for t in threads if t is not threading.main_thread()]
        if not (children or threads) or time.monotonic() > deadline:
            return children, threads
        time.sleep(0.02)


def _still_running(before_children: set[int]) -> tuple[str, str]:
    """What a block started that still runs, as ``(what, how to end it)``; ``("", "")``
    if nothing does."""
    children, threads = _left_running(before_children, grace=0)
    if children:
        pid = min(children)
        if (command := command_line(pid)) == command_line(os.getpid()):
            return f"a process it forked (pid {pid})", "wait for it"  # its command is ours
        return f"a process it started (pid {pid}: {command})", "wait for it"
    if threads:
        return f"a thread it started ({threads[0].name})", "join it"
    return "", ""


def _leftovers(before_children: set[int]) -> str:
    """What a block left running that would print into no block, or ``""``: waited for
    already, while the block's output was caught (see :func:`_settle`)."""
    what, how = _still_running(before_children)
    if not what:
        return ""
    return (
        f"{what} was still running when the block ended; {how} in the block, so that "
        "what it prints belongs to the block"
    )


def _settle(before_children: set[int]) -> None:
    """Once a block's code has run, while its output is still caught: stop the fork
    server it started, and give what else it left running up to :data:`GRACE` seconds
    to end, so that what those print as they end is the block's."""
    try:
        _stop_forkserver()
        _left_running(before_children)
    except StopExample as stop:  # the limit came while it waited
        stop.waiting = _still_running(before_children)[0]
        raise


def _end_group(_signum: int = 0, _frame: object = None) -> None:
    """End every process the page started, and this one."""
    end_tree(os.getpid())


def _hold_sigterm() -> None:
    """Before the page's process forks: SIGTERM waits in the forking thread (see
    :func:`_default_sigterm_in_child`)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _release_sigterm() -> None:
    """After it forked, in the page's process: SIGTERM is delivered again."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _default_sigterm_in_child() -> None:
    """A page's own children (a Pool's workers) take SIGTERM as processes usually do.

    The child starts with SIGTERM held (:func:`_hold_sigterm`), and takes it only
    once its action is the default: a SIGTERM sent before then (a Pool that ends at
    once terminates a worker still starting) reached the page's handler instead,
    which Python then dropped, as the handler was the default by the time it ran;
    the worker lived on, waiting for a lock its pool held, and the block hung.
    """
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _release_sigterm()


class PageReads:
    """The repository files and folders this process reads, as the cache needs them.

    An audit hook sees every ``open`` and folder listing (``os.listdir``,
    ``os.scandir``, ``glob``), whether it succeeded or not, and the code of every
    module as it is imported (a module whose bytecode is cached opens only its
    ``.pyc``); :meth:`take` adds any other module imported since (an extension
    module). Only paths inside the repository count, outside what is installed
    (``cache.installed``: its virtual environment is keyed by versions instead) and
    ``__pycache__`` folders. A folder counts by the names in it, so a module added
    where an import failed reruns the page.

    Each path is fingerprinted (``cache.fingerprint``) the moment the process first
    reads it, so a file saved while the page runs is recorded as the page read it,
    and the next build sees the change; the file of a module the fork server imported
    is recorded as the server read it (``docexec.preloaded.HELD``), whether the page
    imports it or reads its source. A file the process creates or empties before
    it reads it (opened with ``O_TRUNC``, or ``O_CREAT`` and ``O_EXCL``) holds only
    what the page wrote: its own output, not an input, so not recorded.

    Args:
        root: The repository root.
    """

    _LISTINGS = frozenset({"os.listdir", "os.scandir", "glob.glob"})

    def __init__(self, root: str) -> None:
        self.root = os.path.join(os.path.realpath(root), "")
        self.skip = installed_folders()
        #: Each path read, relative to the root, with its fingerprint when first read.
        self.read: dict[str, str | None] = {}
        #: Paths the process made before it read them: not inputs.
        self.made: set[str] = set()
        self._taken: set[str] = set()
        self.environ: dict[str, str | None] = {}
        self.reads_lines = False
        self.untracked: set[str] = set()
        self._local = threading.local()
        self._modules: dict[str, object] = {}
        # The files of the modules the fork server imported, as it read them (see
        # docexec.preloaded): however the page comes to read one (its module, or its
        # source through inspect or a traceback), it ran the code of that state.
        preloaded = sys.modules.get("docexec.preloaded")  # in a process of the fork server
        self._held: dict[str, str | None] = preloaded.HELD if preloaded else {}
        #: Installed folders, by the path they were named by (see :meth:`_realpath`).
        self._installed: dict[str, str] = {}
        sys.addaudithook(self._hook)
        # Environment variables are read without an audit event: note them where
        # every read of os.environ goes (os.environ[...], .get, os.getenv, "X" in),
        # when the page's own code reads them (the page, or a module of the
        # repository): libraries read dozens at import, keyed by their version. A
        # variable the page set itself is its own doing, not a dependency.
        reads, written = self.environ, set()
        environ_class = type(os.environ)
        getitem, setitem = environ_class.__getitem__, environ_class.__setitem__
        # The files os.getenv and Mapping.get run from ("<frozen os>" when frozen).
        plumbing = {
            os.getenv.__code__.co_filename,
            _collections_abc.Mapping.get.__code__.co_filename,
        }

        def by_the_page() -> bool:
            self._busy = True  # this look at the stack is docexec's, not the page's
            try:
                frame = sys._getframe(2)
            finally:
                self._busy = False
            while frame is not None and frame.f_code.co_filename in plumbing:
                frame = frame.f_back
            return frame is not None and self.owns(frame.f_code.co_filename)

        def name_of(environ, key) -> str | None:
            """The variable's name, read through os.environ or os.environb."""
            if environ is os.environ:
                return key
            if environ is getattr(os, "environb", None) and isinstance(key, bytes):
                return os.fsdecode(key)
            return None

        def noted_getitem(environ, key):
            name = name_of(environ, key)
            if (
                name is None
                or name in UNTRACKED_ENVIRON
                or name in self.untracked
                or name in written
                or not by_the_page()
            ):
                return getitem(environ, key)
            try:
                value = getitem(environ, key)
            except KeyError:
                reads.setdefault(name, None)
                raise
            reads.setdefault(name, os.fsdecode(value) if isinstance(value, bytes) else value)
            return value

        def noted_setitem(environ, key, value):
            name = name_of(environ, key)
            if name is not None and not self._busy:
                written.add(name)
            setitem(environ, key, value)

        environ_class.__getitem__ = noted_getitem
        environ_class.__setitem__ = noted_setitem

    @property
    def _busy(self) -> bool:
        """Whether this thread is in docexec's own work (which reads files and frames)."""
        return getattr(self._local, "busy", False)

    @_busy.setter
    def _busy(self, value: bool) -> None:
        self._local.busy = value

    def _hook(self, event: str, args: tuple) -> None:
        if self._busy:
            return
        if event in _FRAMES and not self.reads_lines:
            # The page's code looks at frames (their line numbers), itself or through
            # inspect or traceback: then the lines its blocks stand on are part of what
            # it printed. A library deeper down that looks at its own frames is not.
            self._busy = True
            try:
                frame, depth = sys._getframe(1), 0
                while frame is not None and depth < 2 and not self.reads_lines:
                    self.reads_lines = self.owns(frame.f_code.co_filename)
                    frame, depth = frame.f_back, depth + 1
            finally:
                self._busy = False
        if event in _SIGNALLING and (running := RunningLine.current) is not None:
            self._busy = True
            try:
                running.note(sys._getframe(1))
            finally:
                self._busy = False
        if event == "exec":  # a module's code as it is imported, or exec(code)
            filename = getattr(args[0], "co_filename", None) if args else None
            if isinstance(filename, str) and os.path.isabs(filename):
                self._note(filename)
            return
        if event not in self._LISTINGS and event not in ("open", "sqlite3.connect"):
            return
        if args and isinstance(args[0], (str, bytes, os.PathLike)):
            flags = args[2] if event == "open" and len(args) > 2 else 0
            made = isinstance(flags, int) and (
                flags & os.O_TRUNC or flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL
            )
            self._note(args[0], made=bool(made))

    def owns(self, filename: str) -> bool:
        """Whether code compiled from ``filename`` is the page's own: the page (its
        blocks are compiled under its relative path, or ``<stdin>``) or a module of the
        repository outside its virtual environment."""
        if filename == "<stdin>":
            return True
        if not os.path.isabs(filename):  # a page, or a file it includes; not "<string>"
            filename = os.path.join(self.root, filename)
            if not os.path.isfile(filename):
                return False
        return (
            filename.startswith(self.root)
            and not filename.startswith(self.skip)
            and not filename.startswith(_DOCEXEC)  # docexec's own code is not the page's
        )

    def _note(self, path, made: bool = False, real: bool = False) -> None:
        """Fingerprint ``path`` now if it is the repository's and not read before
        (``real``: ``path`` is a real path already); a module's file the fork server
        imported, as the server read it."""
        self._busy = True  # the fingerprint's own reads are docexec's, not the page's
        try:
            path = path if real else self._realpath(os.fsdecode(path))
            if (
                not path.startswith(self.root)
                or path.startswith(self.skip)
                or "__pycache__" in path
            ):
                return
            name = path[len(self.root) :]
            if name in self.read or name in self.made:
                return
            if made:
                self.made.add(name)
            else:
                held = self._held
                self.read[name] = held[path] if path in held else fingerprint(Path(path))
        except (TypeError, ValueError, OSError):
            return
        finally:
            self._busy = False

    def _realpath(self, path: str) -> str:
        """``os.path.realpath(path)``, each installed folder resolved once.

        A page's first :meth:`take` resolves every module the fork server imported
        (some thousand with torch, in a few hundred folders): a full resolution of
        each took 80 ms of every page. A folder that resolves into the installed
        folders (a virtual environment, the standard library) is remembered; a page
        does not move those while it runs. The file itself is still checked: a link
        there may lead into the repository.
        """
        folder, name = os.path.split(path)
        real = self._installed.get(folder)
        if real is None:
            if name in ("", ".", "..") or not os.path.isabs(folder):
                return os.path.realpath(path)
            real = os.path.join(os.path.realpath(folder), "")
            if not real.startswith(self.skip):
                return os.path.realpath(path)
            self._installed[folder] = real
        joined = real + name
        return os.path.realpath(joined) if os.path.islink(joined) else joined

    def take(self) -> dict[str, str | None]:
        """What was first read since the last call, as paths relative to the root, each
        with its fingerprint then."""
        preloaded = sys.modules.get("docexec.preloaded")  # in a process of the fork server
        real_files = preloaded.REAL_FILES if preloaded else {}
        for name, module in list(sys.modules.items()):
            if self._modules.get(name) is not module:
                self._modules[name] = module
                known, real = real_files.get(name, (None, ""))
                if known is module:
                    self._note(real, real=True)
                    continue
                file = getattr(module, "__file__", None)
                if isinstance(file, str) and os.path.isabs(file):
                    self._note(file)
        new = {name: state for name, state in self.read.items() if name not in self._taken}
        self._taken.update(new)
        return dict(sorted(new.items()))

    def take_environ(self) -> dict[str, str | None]:
        """The environment variables read since the last call, with their values then."""
        taken = dict(self.environ)
        self.environ.clear()
        return taken


def _spawn_from_the_session(scripts: str) -> None:
    """Have a child that multiprocessing spawns while a page's session is ``__main__``
    import the session's python blocks as its main script (see
    :func:`~docexec.session.spawned_main`), made in ``scripts``, a folder of the
    worker's: not the page's folder, where the page would see it."""
    prepare = multiprocessing.spawn.get_preparation_data

    def preparation_data(name: str) -> dict:
        data = prepare(name)
        if (script := spawned_main(sys.modules.get("__main__"), scripts)) is not None:
            data["init_main_from_path"] = script
        return data

    multiprocessing.spawn.get_preparation_data = preparation_data


def _stop_forkserver() -> None:
    """Stop the server a block started with multiprocessing's ``forkserver`` method.

    It holds the block's output as its own: the children it forks in a later block
    would print where no block reads. Stopped, its children still running are the
    page's (it is their subreaper), and a block that leaves one fails as for any
    other process; the next block's first child starts a new server.
    """
    server = multiprocessing.forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        # Killed: it would wait for its children still running before it ended.
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            server._stop()  # reaps it, and forgets it: the next child starts another


def _let_go_of_the_fork_server() -> None:
    """Close this page's end of the pipe that keeps the fork server running.

    The server ends when no process holds the write end of its "alive" pipe, and
    multiprocessing gives one to every process it forks (so that the child could ask
    the server for children of its own). A page still running when the build's
    process was killed (SIGTERM, SIGKILL) thus kept the server alive, and the
    server, the page's parent, kept the page alive (it ends when its parent does, see
    :func:`die_with_parent`): the page ran on past its timeout, for ever if it spun.
    Closed, the build's process holds the only other end: the server ends with it, and
    the page with the server. A page that asks multiprocessing for a fork server of
    its own starts a new one, as a script would (the one it inherits it never
    started: it knows no pid of it).
    """
    server = multiprocessing.forkserver._forkserver
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is not None:
        with contextlib.suppress(OSError):
            os.close(alive)
        server._forkserver_alive_fd = None


def serve(
    conn: Connection,
    root: str,
    page: str,
    seed: int,
    folder: str,
    line,
    crash_file: str,
    environ: dict[str, str],
    scripts: str,
    file=None,
) -> None:
    """Run a page's blocks as they arrive on ``conn`` until it closes.

    The process leads a process group of its own, so every process a page starts
    can be ended with it; it works in ``folder``, a fresh temporary folder, unless
    a block names a ``workdir``; ``multiprocessing`` forks, as in a script on Linux.

    Args:
        conn: The worker's end of the pipe.
        root: The repository root (``DOCEXEC_ROOT`` in the environment).
        page: The page's path relative to ``root``, used in tracebacks.
        seed: The page's seed.
        folder: The page's working folder.
        line: A shared integer: the page line running now (see :class:`RunningLine`).
        file: Another: the index, in ``Block.files``, of the file that line is in.
        crash_file: Where :mod:`faulthandler` writes the stack if the process crashes.
        environ: The build's environment now (the fork server keeps the one it
            started with, which under ``mkdocs serve`` may be a build ago).
        scripts: A folder for the main scripts of the children multiprocessing
            spawns (see :func:`_spawn_from_the_session`).
    """
    os.environ.clear()
    os.environ.update(environ)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # see _start_fork_server
    os.setsid()
    die_with_parent()
    _let_go_of_the_fork_server()
    signal.signal(signal.SIGTERM, _end_group)
    os.register_at_fork(
        before=_hold_sigterm,
        after_in_parent=_release_sigterm,
        after_in_child=_default_sigterm_in_child,
    )
    signal.signal(signal.SIGUSR1, _raise_stop)
    multiprocessing.set_start_method("fork", force=True)
    _spawn_from_the_session(scripts)
    os.environ["DOCEXEC_ROOT"] = root
    sys.dont_write_bytecode = True  # no __pycache__ in the checkout from a page's imports
    os.chdir(folder)
    tempfile.gettempdir()  # reads TMPDIR and friends once, before the page's reads count
    faulthandler.enable(open(crash_file, "w"))  # noqa: SIM115 - open until the process ends
    read = PageReads(root)
    page_file = os.path.join(root, page)
    running = RunningLine(line, page, file)
    columns = os.environ.get("COLUMNS")
    seed_page(seed)
    scrub = PathScrubber(Path(root), Path(folder))
    stabilize = AddressStabilizer()
    sessions: dict[str, object] = {}
    while True:
        try:
            block: Block | None = conn.recv()
        except EOFError:
            _end_group()
            return
        if block is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("closed", scrub(capture_output(atexit._run_exitfuncs))))
            return
        os.chdir(os.path.join(root, block.workdir) if block.workdir else folder)
        # COLUMNS is the build's, unless the block says width= (then it is the block's,
        # in its signature, and not a dependency of the page).
        read._busy = True
        if block.width:
            os.environ["COLUMNS"] = str(block.width)
        elif columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
        read._busy = False
        read.untracked = {"COLUMNS"} if block.width else set()
        # A python block's running line is sampled; a pycon block reports each input.
        line.value = block.first_line if block.kind == "python" else 0
        if file is not None:
            file.value = 0
        files = block.files(page)
        running.files = {path: index for index, path in enumerate(files)}
        running.active = block.kind == "python"
        module = sessions.get(block.session) if block.session else None
        if module is None:
            module = new_session_module(block.kind, page_file)
            if block.session:
                sessions[block.session] = module
        before = live_children()
        settle = functools.partial(_settle, before)
        try:
            with track_threads(block.first_line - 1):
                if block.kind == "pycon":
                    result = run_pycon(
                        block.source,
                        module,
                        first_line=block.first_line,
                        raises=block.raises,
                        on_line=lambda line: conn.send(("line", line)),
                        settle=settle,
                    )
                else:
                    result = run_python(
                        block.source,
                        module,
                        filename=page,
                        first_line=block.first_line,
                        raises=block.raises,
                        parts=block.parts,
                        settle=settle,
                    )
                _stop_forkserver()
                if not result.error and (left := _leftovers(before)):
                    result = BlockResult(error=left, line=block.first_line - 1)
        except StopExample as stop:
            tb = stop.__traceback__
            stopped_at, stopped_in = block.first_line, page
            while tb is not None:
                filename = tb.tb_frame.f_code.co_filename
                if filename in files or filename == "<stdin>":
                    stopped_at, stopped_in = tb.tb_lineno, filename
                    if filename == "<stdin>":
                        stopped_at = -1  # the last reported input line is the better guess
                tb = tb.tb_next
            if stop.line:  # a pycon block's: the line inside the statement that was running
                stopped_at, stopped_in = stop.line, page
            waited = ""
            if stop.waiting:  # its code had ended: the block is what ran long
                stopped_at, stopped_in = block.first_line - 1, page
                waited = f" while it waited for {stop.waiting} to end"
            result = BlockResult(
                # Only its end is shown, as a terminal shows it: scrubbing all of a long
                # output would take longer than the page's process is given to answer.
                output=tail(as_terminal(stop.output)),
                error="stopped" + waited,
                line=stopped_at,
                path="" if stopped_in in (page, "<stdin>") else stopped_in,
                timed_out=True,
            )
        if not result.error and (misplaced := misplaced_output()):
            origin, text = misplaced
            result = BlockResult(
                error=f"a thread started in the block at {page}:{origin} printed {text!r} "
                "after that block ended; join it in its block",
                line=block.first_line - 1,
            )

        def publish(text: str, kind: str = block.kind) -> str:
            shown = as_terminal(text)
            if kind == "pycon":
                # A tab as a terminal shows it, up to the next of its stops every 8
                # columns (each output starts a line): Markdown's stops are every 4.
                shown = shown.expandtabs(8)
            return stabilize(scrub(shown))

        result.output = outside_inputs(result.output, result.inputs, publish)
        result.inputs = []
        result.error = scrub(result.error)
        result.files = read.take()
        result.environ = read.take_environ()
        result.reads_lines, read.reads_lines = read.reads_lines, False
        conn.send(("done", result))


#: Workers not yet closed: ended at exit, so an interrupted build (Ctrl-C during
#: ``mkdocs serve``) does not wait forever on a worker that waits for its next block.
_LIVE: weakref.WeakSet[PageWorker] = weakref.WeakSet()


def _close_live_workers() -> None:
    for worker in list(_LIVE):
        worker.close(kill=True)


#: The longest path a Unix socket may have, in bytes (``sun_path`` holds 108 with its NUL).
SOCKET_PATH_MAX = 107


def socket_problem() -> str:
    """Why the fork server could not listen where it would, or ``""``.

    Its socket is a file in a folder multiprocessing makes in the temporary folder,
    and a Unix socket's path may be no longer than :data:`SOCKET_PATH_MAX` bytes: a
    long ``TMPDIR`` (a CI runner's, a test's) would end the build in ``OSError: AF_UNIX
    path too long`` from deep inside multiprocessing.
    """
    address = multiprocessing.connection.arbitrary_address("AF_UNIX")
    size = len(os.fsencode(address))
    if size <= SOCKET_PATH_MAX:
        return ""
    return (
        f"the socket that pages' processes are started through would be {address}, "
        f"{size} bytes, longer than the {SOCKET_PATH_MAX} a Unix socket's path may be: "
        f"set TMPDIR to a shorter folder (the temporary folder is {tempfile.gettempdir()})"
    )


def stale_server() -> list[str]:
    """The files that changed since the running fork server imported them (the
    repository's modules it preloaded, see :mod:`docexec.preloaded`); none if no
    server runs, or it has not listed them yet (it is still importing them)."""
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return []
    try:
        with open(scratch.server_files(pid)) as file:
            states = json.load(file)
    except (OSError, ValueError):
        return []
    changed = []
    for path, (mtime, size) in states.items():
        try:
            stat = os.stat(path)
        except OSError:
            changed.append(path)
            continue
        if [stat.st_mtime_ns, stat.st_size] != [mtime, size]:
            changed.append(path)
    return changed


def _start_fork_server() -> None:
    """Start the fork server, unless it runs; from the main thread, with SIGINT ignored.

    A terminal's Ctrl-C reaches every process of its group: the server, still
    importing what it preloads, printed a ``KeyboardInterrupt`` traceback of its own
    beside the build's one line. Started with SIGINT ignored, it ignores it from the
    start (Python keeps an ignored SIGINT ignored); the page processes it forks take
    Python's handler back (see :func:`serve`), so that a page gets it as a script
    would. Only the main thread may change a handler: the plugin starts the server
    there before the pages' threads (:meth:`PageWorker.warm_up`).
    """
    if threading.current_thread() is not threading.main_thread():
        multiprocessing.forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


#: One page's process starts at a time (see :class:`_Popen`).
_LAUNCH = threading.Lock()


class _Popen(multiprocessing.popen_forkserver.Popen):
    """Starts a page's process without the build's ``__main__``.

    multiprocessing runs the parent's main script again in each child it starts (as
    ``__mp_main__``), so that what the script defines can be unpickled there. For
    ``mkdocs build`` that imported its command line again in every page's process
    (70 ms), and a build started from a script without an ``if __name__ ==
    "__main__"`` guard ran that whole script again in each. A page's process is sent
    docexec's code only: it needs nothing of the build's main module. multiprocessing
    has no option for this: its preparation data is changed while a page's process
    starts, one at a time (another process the build starts then would not get the
    main module either).
    """

    def _launch(self, process_obj) -> None:
        with _LAUNCH:
            prepare = multiprocessing.spawn.get_preparation_data

            def without_main(name: str) -> dict:
                data = prepare(name)
                data.pop("init_main_from_path", None)
                data.pop("init_main_from_name", None)
                return data

            multiprocessing.spawn.get_preparation_data = without_main
            try:
                super()._launch(process_obj)
            finally:
                multiprocessing.spawn.get_preparation_data = prepare


class _PageProcess(multiprocessing.context.ForkServerProcess):
    """A process of the fork server, started by :class:`_Popen`."""

    @staticmethod
    def _Popen(process_obj):  # noqa: N802 - multiprocessing's name
        return _Popen(process_obj)


class ExampleFailure(Exception):
    """A block failed; ``str()`` is the message, ``line`` the line it names.

    ``path`` is the file that line is in when it is not the page (an included file).
    """

    def __init__(self, message: str, line: int, path: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.path = path


class PageWorker:
    """The plugin's handle on one page's example process.

    Args:
        root: The repository root.
        page: The page's path relative to ``root``, such as ``docs/index.md``.
        seed: The seed the process starts from.
        preload: Modules the fork server imports once, before it forks each page's
            process (the plugin's ``preload`` option), so that a page starts warm.
    """

    _context = None
    _preload: tuple[str, ...] | None = None

    @classmethod
    def context(cls, preload: tuple[str, ...] = ()) -> multiprocessing.context.BaseContext:
        """The fork-server context all workers start from, its server importing ``preload``.

        One server per process; a build that asks for other modules than the running
        server imported (another site built in the same process) gets a new server,
        once no page process of the old one is left.
        """
        if cls._context is None:
            cls._context = multiprocessing.get_context("forkserver")
            # After multiprocessing registered its own exit handler (which waits for
            # every non-daemonic child), so that this one runs first and ends them.
            atexit.register(_close_live_workers)
        preload = tuple(preload)
        if preload != cls._preload:
            if cls._preload is not None and not _LIVE:
                multiprocessing.forkserver._forkserver._stop()
            # Then what every page's process needs, prepared once (docexec.preloaded).
            cls._context.set_forkserver_preload([*preload, "docexec.preloaded"])
            cls._preload = preload
        return cls._context

    @classmethod
    def renew_if_stale(cls) -> list[str]:
        """Stop the fork server if a file it imported changed since (see
        :func:`stale_server`), so that the next page starts a new one; return those
        files. Only between builds, from the main thread: no page's process may be
        running, or closing, since it would end with the server."""
        if _LIVE or not (changed := stale_server()):
            return []
        multiprocessing.forkserver._forkserver._stop()
        return changed

    @classmethod
    def warm_up(cls, preload: tuple[str, ...] = ()) -> None:
        """Start the fork server now; it imports ``preload`` in its own process, so this
        returns at once and the first page forked later starts warm."""
        cls.context(preload)
        _start_fork_server()

    def __init__(self, root: Path, page: str, seed: int, preload: tuple[str, ...] = ()) -> None:
        context = self.context(preload)
        self.page = page
        self.folder = scratch.folder("page")
        self._scripts = scratch.folder("spawn")
        self._crash_file = scratch.file("crash")
        self._line = context.Value("i", 0, lock=False)
        self._file = context.Value("i", 0, lock=False)
        self._files = [page]
        self._conn, child = context.Pipe()
        # Not a daemon: a daemonic process may not have children, and a page may well
        # start some (a DataLoader with num_workers, a multiprocessing Pool). _LIVE
        # makes sure none outlives the build.
        self._process = _PageProcess(
            target=serve,
            args=(
                child,
                str(root),
                page,
                seed,
                self.folder,
                self._line,
                self._crash_file,
                dict(os.environ),
                self._scripts,
                self._file,
            ),
        )
        _start_fork_server()
        self._process.start()
        child.close()
        _LIVE.add(self)
        self.atexit_output = ""

    def run(self, block: Block, timeout: float) -> BlockResult:
        """Run ``block`` and return what it produced.

        Args:
            block: The block to run.
            timeout: Seconds the block may run.

        Returns:
            The block's result, with no error.

        Raises:
            ExampleFailure: If the block raised, exited, died or ran too long.
        """
        self._files = block.files(self.page)
        self._conn.send(block)
        deadline = time.monotonic() + timeout
        line = block.first_line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                (line, path), printed, stopped = self._stop(line)
                message = f"the block ran past its {timeout:g} s limit and was {stopped}"
                if printed.strip():
                    # What it printed may say why: a child's traceback, a prompt.
                    message += f"; the last it printed:\n\n{tail(printed)}"
                raise ExampleFailure(message, line, path)
            if not self._conn.poll(min(remaining, 0.25)):
                if not self._process.is_alive():
                    raise ExampleFailure(self._death(), *self._running(line))
                continue
            try:
                kind, payload = self._conn.recv()
            except (EOFError, ConnectionResetError):
                self._process.join(GRACE)
                raise ExampleFailure(self._death(), *self._running(line)) from None
            if kind == "line":
                line = payload
                continue
            result: BlockResult = payload
            if result.timed_out:  # stopped, but not by this limit
                raise ExampleFailure(
                    "the block was stopped by a SIGUSR1 docexec did not send: docexec stops "
                    "a block at its limit with that signal, so a page must not send it",
                    result.line,
                    result.path,
                )
            if result.error:
                raise ExampleFailure(result.error, result.line, result.path)
            return result

    def _running(self, line: int) -> tuple[int, str]:
        """The line a python block was running, else the last pycon input; and the file
        it is in, when that is a file the block includes (else ``""``: the page).

        A crash's own stack (from faulthandler) is the surest; then the sampled line.
        """
        with contextlib.suppress(OSError):
            crash = Path(self._crash_file).read_text()
            files = "|".join(re.escape(path) for path in self._files)
            found = re.search(rf'File "({files})", line (\d+)', crash)
            if found:
                path, number = found.groups()
                return int(number), "" if path == self.page else path
        if not self._line.value:
            return line, ""
        index = self._file.value
        path = self._files[index] if 0 < index < len(self._files) else ""
        return self._line.value, path

    def _death(self) -> str:
        code = self._process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return f"the example process was killed by {name} during the block"
        return f"the example process ended during the block (exit code {code})"

    def _stop(self, line: int) -> tuple[tuple[int, str], str, str]:
        """Interrupt the running block, give it a moment, then kill it: the line (and
        included file, see :meth:`_running`) it was stopped at, what it had printed
        (``""`` if it did not stop when interrupted), and how it was stopped: ``stopped``,
        or ``stopped while it waited for ...`` if its code had ended."""
        if self._process.pid is not None and self._process.is_alive():
            os.kill(self._process.pid, signal.SIGUSR1)
            if self._conn.poll(GRACE):
                try:
                    kind, payload = self._conn.recv()
                    while kind == "line" and self._conn.poll(GRACE):
                        line = payload
                        kind, payload = self._conn.recv()
                    if kind == "done" and payload.line > 0:
                        # Its stop's own words; not another error it ended with.
                        stopped = payload.error if payload.timed_out else "stopped"
                        return self._end((payload.line, payload.path)), payload.output, stopped
                except (EOFError, ConnectionResetError):
                    pass
        # The block did not stop (it swallowed the interruption): the sampled line.
        return self._end(self._running(line)), "", "stopped"

    def _end(self, where: tuple[int, str]) -> tuple[int, str]:
        self.close(kill=True)
        return where

    def close(self, kill: bool = False) -> None:
        """End the process and every process the page started; politely unless ``kill``.

        Closing politely runs the page's ``atexit`` handlers, as a script's exit would;
        what they print is left in ``atexit_output``.
        """
        if self._process.pid is not None and self._process.is_alive():
            # Before the page's process ends: its orphans are its children (it is their
            # subreaper) only while it lives.
            kill_below(self._process.pid)
        if self._process.is_alive() and not kill:
            # EOFError: it ended as it closed (an atexit handler that exits, say).
            with contextlib.suppress(BrokenPipeError, OSError, EOFError):
                self._conn.send(None)
                if self._conn.poll(GRACE * 5):
                    kind, payload = self._conn.recv()
                    if kind == "closed":
                        self.atexit_output = payload
            self._process.join(GRACE)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        # The page's process led its own group: end whatever it left behind.
        end_tree(self._process.pid)
        self._conn.close()
        _LIVE.discard(self)  # live until it has ended (see renew_if_stale)
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self._scripts, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(self._crash_file)
