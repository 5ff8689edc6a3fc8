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
    """

    kind: str
    source: str
    session: str
    first_line: int
    raises: str | None = None
    workdir: str = ""
    parts: tuple[tuple[str, int, str], ...] = ()


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
