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
import ctypes
import faulthandler
import multiprocessing
import multiprocessing.util  # registers its exit handler now, before ours (see context)
import os
import re
import shutil
import signal
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

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
    track_threads,
)
from docexec.start import seed_everything

#: Modules the fork server imports once, so each page's process starts warm.
PRELOAD = ["torch"]

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
    """The page line the process is running, kept where the plugin can read it.

    A thread samples the main thread's stack every few milliseconds, and
    ``os._exit`` notes its caller, so a block that dies (a segfault, a signal, an
    exit) or swallows its stop is reported at the line that was running, not at
    the block's first line. A crash (a segfault) is reported by :mod:`faulthandler`
    into ``crash_file``, which the plugin reads.
    """

    INTERVAL = 0.01
    current: RunningLine | None = None

    def __init__(self, shared, page: str) -> None:
        RunningLine.current = self
        self.shared = shared
        self.page = page
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
        line = 0
        while frame is not None:
            if frame.f_code.co_filename == self.page:
                line = frame.f_lineno  # the outermost: the block's own statement
            frame = frame.f_back
        if line:
            self.shared.value = line

    def _sample(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            frame = sys._current_frames().get(self._main)
            self.note(frame)


def _children() -> set[int]:
    """This process's live child processes (zombies, which have ended, left out)."""
    alive = set()
    for pid in _child_pids(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as file:
                state = file.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.add(pid)
    return alive


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _leftovers(before_children: set[int]) -> str:
    """What a block left running that would print into no block, or ``""``."""
    deadline = time.monotonic() + GRACE
    while True:
        children = _children() - before_children
        tracker = getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)
        children.discard(tracker)
        threads = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
        threads = [t for t in threads if t is not threading.main_thread()]
        if not (children or threads) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if children:
        pid = min(children)
        return (
            f"a process it started (pid {pid}: {_command(pid)}) was still running when the "
            "block ended; wait for it in the block, so that what it prints belongs to the block"
        )
    if threads:
        return (
            f"a thread it started ({threads[0].name}) was still running when the block ended; "
            "join it in the block, so that what it prints belongs to the block"
        )
    return ""


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the fork server (and so MkDocs) goes away, and to
    make this process the parent of every orphan among its descendants (a child that
    double-forks or starts a session of its own), so that none escapes the page."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        libc.prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def _child_pids(pid: int) -> list[int]:
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
        children = _child_pids(todo.pop())
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


def _end_group(_signum: int = 0, _frame: object = None) -> None:
    """End every process the page started, and this one."""
    end_tree(os.getpid())


def _default_sigterm_in_child() -> None:
    """A page's own children (a Pool's workers) take SIGTERM as processes usually do."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class ReadFiles:
    """The repository files and folders this process reads, as the cache needs them.

    An audit hook sees every ``open`` and folder listing (``os.listdir``,
    ``os.scandir``, ``glob``), whether it succeeded or not; :meth:`take` adds the
    source file of every module imported since (a module whose bytecode is cached
    opens only its ``.pyc``). Only paths inside the repository count, outside its
    virtual environment and ``__pycache__`` folders: installed distributions are
    keyed by version instead. A folder counts by the names in it (see
    ``cache.fingerprint``), so a module added where an import failed reruns the page.

    Args:
        root: The repository root.
    """

    _LISTINGS = frozenset({"os.listdir", "os.scandir", "glob.glob"})

    def __init__(self, root: str) -> None:
        self.root = os.path.join(os.path.realpath(root), "")
        paths = sysconfig.get_paths()
        self.skip = tuple(
            os.path.join(os.path.realpath(p), "")
            for p in {sys.prefix, paths["purelib"], paths["platlib"], paths["stdlib"]}
        )
        self.found: set[str] = set()
        self.listed: set[str] = set()
        self.environ: dict[str, str | None] = {}
        self.reads_lines = False
        self.untracked: set[str] = set()
        self._busy = False
        self._modules: dict[str, object] = {}
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
        listing = event in self._LISTINGS
        opens = event in ("open", "sqlite3.connect")
        if (opens or listing) and args and isinstance(args[0], (str, bytes, os.PathLike)):
            self._note(args[0], self.listed if listing else self.found)

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

    def _note(self, path, into: set[str]) -> None:
        try:
            path = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError, OSError):
            return
        if (
            path.startswith(self.root)
            and not path.startswith(self.skip)
            and "__pycache__" not in path
        ):
            into.add(path[len(self.root) :])

    def take(self) -> list[str]:
        """What was read since the last call, as paths relative to the root."""
        for name, module in list(sys.modules.items()):
            if self._modules.get(name) is not module:
                self._modules[name] = module
                file = getattr(module, "__file__", None)
                if isinstance(file, str) and os.path.isabs(file):
                    self._note(file, self.found)
        found = self.found | self.listed
        self.found, self.listed = set(), set()
        return sorted(found)

    def take_environ(self) -> dict[str, str | None]:
        """The environment variables read since the last call, with their values then."""
        taken = dict(self.environ)
        self.environ.clear()
        return taken


def serve(
    conn: Connection,
    root: str,
    page: str,
    seed: int,
    folder: str,
    line,
    crash_file: str,
    environ: dict[str, str],
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
        crash_file: Where :mod:`faulthandler` writes the stack if the process crashes.
        environ: The build's environment now (the fork server keeps the one it
            started with, which under ``mkdocs serve`` may be a build ago).
    """
    os.environ.clear()
    os.environ.update(environ)
    os.setsid()
    _die_with_parent()
    signal.signal(signal.SIGTERM, _end_group)
    os.register_at_fork(after_in_child=_default_sigterm_in_child)
    signal.signal(signal.SIGUSR1, _raise_stop)
    multiprocessing.set_start_method("fork", force=True)
    os.environ["DOCEXEC_ROOT"] = root
    sys.dont_write_bytecode = True  # no __pycache__ in the checkout from a page's imports
    os.chdir(folder)
    tempfile.gettempdir()  # reads TMPDIR and friends once, before the page's reads count
    faulthandler.enable(open(crash_file, "w"))  # noqa: SIM115 - open until the process ends
    read = ReadFiles(root)
    page_file = os.path.join(root, page)
    running = RunningLine(line, page)
    columns = os.environ.get("COLUMNS")
    seed_everything(seed)
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
        running.active = block.kind == "python"
        module = sessions.get(block.session) if block.session else None
        if module is None:
            module = new_session_module(block.kind, page_file)
            if block.session:
                sessions[block.session] = module
        before = _children()
        try:
            with track_threads(block.first_line - 1):
                if block.kind == "pycon":
                    result = run_pycon(
                        block.source,
                        module,
                        first_line=block.first_line,
                        raises=block.raises,
                        on_line=lambda line: conn.send(("line", line)),
                    )
                else:
                    result = run_python(
                        block.source,
                        module,
                        filename=page,
                        first_line=block.first_line,
                        raises=block.raises,
                        parts=block.parts,
                    )
                if not result.error and (left := _leftovers(before)):
                    result = BlockResult(error=left, line=block.first_line - 1)
        except StopExample as stop:
            tb = stop.__traceback__
            stopped_at = block.first_line
            while tb is not None:
                if tb.tb_frame.f_code.co_filename in (page, "<stdin>"):
                    stopped_at = tb.tb_lineno
                    if tb.tb_frame.f_code.co_filename == "<stdin>":
                        stopped_at = -1  # the last reported input line is the better guess
                tb = tb.tb_next
            if stop.line:  # a pycon block's: the line inside the statement that was running
                stopped_at = stop.line
            result = BlockResult(error="stopped", line=stopped_at, timed_out=True)
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
    """

    _context = None

    @classmethod
    def context(cls) -> multiprocessing.context.BaseContext:
        """The fork-server context all workers start from, made once per process."""
        if cls._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            cls._context = context
            # After multiprocessing registered its own exit handler (which waits for
            # every non-daemonic child), so that this one runs first and ends them.
            atexit.register(_close_live_workers)
        return cls._context

    def __init__(self, root: Path, page: str, seed: int) -> None:
        context = self.context()
        self.page = page
        self.folder = tempfile.mkdtemp(prefix="docexec-page-")
        handle, self._crash_file = tempfile.mkstemp(prefix="docexec-crash-")
        os.close(handle)
        self._line = context.Value("i", 0, lock=False)
        self._conn, child = context.Pipe()
        # Not a daemon: a daemonic process may not have children, and a page may well
        # start some (a DataLoader with num_workers, a multiprocessing Pool). _LIVE
        # makes sure none outlives the build.
        self._process = context.Process(
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
            ),
        )
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
        self._conn.send(block)
        deadline = time.monotonic() + timeout
        line = block.first_line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExampleFailure(
                    f"the block ran past its {timeout:g} s limit and was stopped",
                    self._stop(line),
                )
            if not self._conn.poll(min(remaining, 0.25)):
                if not self._process.is_alive():
                    raise ExampleFailure(self._death(), self._running(line))
                continue
            try:
                kind, payload = self._conn.recv()
            except (EOFError, ConnectionResetError):
                self._process.join(GRACE)
                raise ExampleFailure(self._death(), self._running(line)) from None
            if kind == "line":
                line = payload
                continue
            result: BlockResult = payload
            if result.error:
                raise ExampleFailure(result.error, result.line, result.path)
            return result

    def _running(self, line: int) -> int:
        """The line a python block was running, else the last pycon input.

        A crash's own stack (from faulthandler) is the surest; then the sampled line.
        """
        with contextlib.suppress(OSError):
            crash = Path(self._crash_file).read_text()
            found = re.search(rf'File "{re.escape(self.page)}", line (\d+)', crash)
            if found:
                return int(found.group(1))
        return self._line.value or line

    def _death(self) -> str:
        code = self._process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return f"the example process was killed by {name} during the block"
        return f"the example process ended during the block (exit code {code})"

    def _stop(self, line: int) -> int:
        """Interrupt the running block, give it a moment, then kill it."""
        if self._process.pid is not None and self._process.is_alive():
            os.kill(self._process.pid, signal.SIGUSR1)
            if self._conn.poll(GRACE):
                try:
                    kind, payload = self._conn.recv()
                    while kind == "line" and self._conn.poll(GRACE):
                        line = payload
                        kind, payload = self._conn.recv()
                    if kind == "done" and payload.line > 0:
                        return self._end(payload.line)
                except (EOFError, ConnectionResetError):
                    pass
        # The block did not stop (it swallowed the interruption): the sampled line.
        return self._end(self._running(line))

    def _end(self, line: int) -> int:
        self.close(kill=True)
        return line

    def close(self, kill: bool = False) -> None:
        """End the process and every process the page started; politely unless ``kill``.

        Closing politely runs the page's ``atexit`` handlers, as a script's exit would;
        what they print is left in ``atexit_output``.
        """
        _LIVE.discard(self)
        if self._process.pid is not None and self._process.is_alive():
            # Before the page's process ends: its orphans are its children (it is their
            # subreaper) only while it lives.
            kill_below(self._process.pid)
        if self._process.is_alive() and not kill:
            with contextlib.suppress(BrokenPipeError, OSError):
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
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(self._crash_file)
