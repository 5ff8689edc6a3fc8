"""The example process: one per page, so pages never share state.

The plugin starts a worker for each page that has executable blocks and sends it
the page's blocks one at a time over a pipe. The worker holds the page's
sessions, seeds every random number generator when it starts, and runs each
block with :mod:`docexec.session`. A fresh process per page means a page sees
the package's current code (nothing survives in ``sys.modules`` from an earlier
build) and reads the same whatever order pages are built in.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util  # registers its exit handler now, before ours (see context)
import os
import random
import signal
import sys
import sysconfig
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
    new_session_module,
    run_pycon,
    run_python,
)

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


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators, and pin torch to one thread.

    One thread makes float reductions run in the same order on every machine,
    so printed tensors are the same bytes everywhere.
    """
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy ships with the docs extras
        pass
    try:
        import torch

        torch.manual_seed(seed)
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def _raise_stop(_signum: int, _frame: object) -> None:
    raise StopExample


class ReadFiles:
    """The repository files and folders this process reads, as the cache needs them.

    An audit hook sees every ``open`` and folder listing (``os.listdir``,
    ``os.scandir``, ``glob``), whether it succeeded or not; :meth:`take` adds the
    source file of every module imported since (a module whose bytecode is cached
    opens only its ``.pyc``). Only paths inside the repository count, outside its
    virtual environment and ``__pycache__`` folders: installed distributions are
    keyed by version instead. The folders the import system lists to find modules
    (``sys.path`` entries and packages) are left out: an editor's swap file there
    says nothing about the page, and the modules themselves are counted.

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
        self._modules: dict[str, object] = {}
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        listing = event in self._LISTINGS
        if (event == "open" or listing) and args and isinstance(args[0], (str, bytes, os.PathLike)):
            self._note(args[0], self.listed if listing else self.found)

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
        import_dirs: set[str] = set()
        for path in sys.path:
            self._note(path or ".", import_dirs)
        for name, module in list(sys.modules.items()):
            folders = getattr(module, "__path__", None)
            if isinstance(folders, list):  # a package; not torch's odd namespaces
                for folder in folders:
                    self._note(folder, import_dirs)
            if self._modules.get(name) is not module:
                self._modules[name] = module
                file = getattr(module, "__file__", None)
                if isinstance(file, str) and os.path.isabs(file):
                    self._note(file, self.found)
        found = self.found | (self.listed - import_dirs)
        self.found, self.listed = set(), set()
        return sorted(found)


def serve(conn: Connection, root: str, page: str, seed: int) -> None:
    """Run a page's blocks as they arrive on ``conn`` until it closes.

    Args:
        conn: The worker's end of the pipe.
        root: The repository root; the process works from there.
        page: The page's path relative to ``root``, used in tracebacks.
        seed: The page's seed.
    """
    os.chdir(root)
    signal.signal(signal.SIGUSR1, _raise_stop)
    read = ReadFiles(root)
    columns = os.environ.get("COLUMNS")
    seed_everything(seed)
    scrub = PathScrubber(Path(root))
    stabilize = AddressStabilizer()
    sessions: dict[str, object] = {}
    while True:
        try:
            block: Block | None = conn.recv()
        except EOFError:
            return
        if block is None:
            return
        os.chdir(os.path.join(root, block.workdir))
        if block.width:
            os.environ["COLUMNS"] = str(block.width)
        elif columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns
        module = sessions.get(block.session) if block.session else None
        if module is None:
            module = new_session_module()
            if block.session:
                sessions[block.session] = module
        try:
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
        except StopExample as stop:
            tb = stop.__traceback__
            line = block.first_line
            while tb is not None:
                if tb.tb_frame.f_code.co_filename in (page, "<stdin>"):
                    line = tb.tb_lineno
                    if tb.tb_frame.f_code.co_filename == "<stdin>":
                        line = -1  # the last reported input line is the better guess
                tb = tb.tb_next
            result = BlockResult(error="stopped", line=line, timed_out=True)
        result.output = stabilize(scrub(result.output))
        result.error = scrub(result.error)
        result.files = read.take()
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
        self._conn, child = context.Pipe()
        # Not a daemon: a daemonic process may not have children, and a page may well
        # start some (a DataLoader with num_workers, a multiprocessing Pool). _LIVE
        # makes sure none outlives the build.
        self._process = context.Process(target=serve, args=(child, str(root), page, seed))
        self._process.start()
        child.close()
        _LIVE.add(self)

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
                    raise ExampleFailure(self._death(), line)
                continue
            try:
                kind, payload = self._conn.recv()
            except (EOFError, ConnectionResetError):
                self._process.join(GRACE)
                raise ExampleFailure(self._death(), line) from None
            if kind == "line":
                line = payload
                continue
            result: BlockResult = payload
            if result.error:
                raise ExampleFailure(result.error, result.line, result.path)
            return result

    def _death(self) -> str:
        code = self._process.exitcode
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
                        line = payload.line
                except (EOFError, ConnectionResetError):
                    pass
        self.close(kill=True)
        return line

    def close(self, kill: bool = False) -> None:
        """End the process; politely unless ``kill``."""
        _LIVE.discard(self)
        if self._process.is_alive() and not kill:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
            self._process.join(GRACE)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
