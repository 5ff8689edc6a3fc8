"""One page's run in one build: its blocks replayed from its record or run in its process.

A :class:`PageRun` is made for a page before anything of it runs (see
:meth:`docexec.adapter.Adapter.scan`) and dropped when its HTML is done. It holds what
belongs to that run alone: the page's record while it still fits (each block the
render sends is replayed from it), the page's process once a block has to run (it is
brought up to date with the blocks replayed before), what each block printed and
what the process read, and, at the end, the :class:`~docexec.cache.Record` the cache
keeps of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import get_plugin_logger
from pymdownx.superfences import SuperFencesException

from docexec.cache import BlockRecord, CacheMiss, ExecutionCache, Record
from docexec.export import ExecutedBlock
from docexec.fences import Fence
from docexec.memo import BlockHtml
from docexec.worker import Block, ExampleFailure, PageWorker

log = get_plugin_logger(__name__)


class ExampleError(PluginError, SuperFencesException):
    """A block failed. Raised through SuperFences (which swallows other errors) to MkDocs."""


@dataclass
class PageRun:
    """One page's examples in one build: where they stand, what ran, what it read.

    Made when the page's Markdown is scanned and dropped when the page's HTML is done.

    Attributes:
        path: The page's path relative to the repository, such as ``docs/index.md``.
        lines: The page's Markdown lines, with the files it includes that hold fences
            to run (see :class:`docexec.fences.Scan`).
        fences: Its executable fences (and the ``md`` fences holding some), in order.
        key: The key of those fences' text, included files expanded.
        root: The repository, which the page's process reads.
        seed: The seed the page's process starts from.
        preload: What the fork server the page's process comes from imports.
        shown: The code of executable fences the page only shows (in indented code).
        replay: The cache record being replayed, while it still fits.
        html: What its blocks rendered to last time (see :mod:`docexec.memo`).
        worker: The page's example process, once a block had to run.
        sent: The blocks run or replayed so far (with their timeout and fence), to
            bring a worker up to date.
        blocks: What each block was, for the notebook and script, by fence index.
        records: Each block as the cache records it.
        files: Repository files the page's process read, each with its fingerprint
            when the process first read it.
        environ: Environment variables it read, with their values.
        reads_lines: Whether its code looked at stack frames (and so at page lines).
        includes: Where the ``--8<--`` that brought each line of a file into a block
            stands, by (fence index, file, line in the file); the first, if several did.
        unsplit: The blocks whose included code could not be run file by file (it runs
            as one piece, numbered from the fence): the offset of their first include
            below the fence's opening, by fence index.
        rendering: The places of the blocks whose output is being rendered (a fence
            in an output was not written on the page).
        why: Why its cache record was not used, for the log.
        seconds: Time spent running (or replaying) blocks.
    """

    path: str
    lines: list[str]
    fences: list[Fence]
    key: str
    root: Path
    seed: int = 0
    preload: tuple[str, ...] = ()
    shown: set[tuple[str, ...]] = field(default_factory=set)
    replay: Record | None = None
    html: BlockHtml | None = None
    worker: PageWorker | None = None
    sent: list[tuple[Block, float, Fence]] = field(default_factory=list)
    blocks: dict[int, ExecutedBlock] = field(default_factory=dict)
    records: list[BlockRecord] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)
    environ: dict[str, str | None] = field(default_factory=dict)
    reads_lines: bool = False
    includes: dict[tuple[int, str, int], str] = field(default_factory=dict)
    unsplit: dict[int, int] = field(default_factory=dict)
    rendering: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Time spent starting the page's process (waiting for the fork server's
    #: preloads, for the first pages of a build): no block's, left out of ``seconds``.
    starting: float = 0.0
    why: str = ""

    @property
    def lines_of_fences(self) -> list[int]:
        """The page line of each fence that runs (an md fence holding some runs nothing)."""
        return [f.line for f in self.fences if not f.container]

    @property
    def reused(self) -> bool:
        return self.replay is not None and bool(self.sent)

    def close(self, kill: bool = False) -> None:
        """End the page's process; what its ``atexit`` handlers printed fails the page.

        ``kill`` when the page has failed already: no handler runs, no second error.
        """
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.close(kill=kill)
        if worker.atexit_output.strip():
            raise ExampleError(
                f"{self.path}: an atexit handler printed {worker.atexit_output.strip()!r} "
                "when the page's process ended; that output belongs to no block (print it "
                "in a block instead)"
            )

    def lookup(self, cache: ExecutionCache | None, ahead: Record | None = None) -> None:
        """Take the page's record to replay if it still holds, else say why not.

        Args:
            cache: The execution cache, ``None`` when it is off.
            ahead: The page's record made before rendering, in this build, if any.
        """
        if ahead is not None and ahead.fences == self.key:
            self.replay = ahead  # run before rendering, in this build
            return
        if cache is None:
            return
        try:
            self.replay = cache.lookup(self.path, self.key, self.lines_of_fences)
        except CacheMiss as miss:
            self.why = str(miss)
            if miss.unreadable:
                log.info(f"{self.path}: {miss}; running the page")

    def record(self, environment: str) -> Record:
        """What the cache keeps of the run, made in ``environment`` (see
        :func:`docexec.cache.environment_key`; ``""`` with the cache off)."""
        files = dict(sorted(self.files.items()))
        return Record(
            page=self.path,
            fences=self.key,
            lines=self.lines_of_fences,
            environment=environment,
            files=files,
            blocks=self.records,
            seconds=round(self.seconds, 3),
            environ=self.environ,
            reads_lines=self.reads_lines,
        )

    def recorded(self, block: Block) -> tuple[str, list[int]] | None:
        """The output and exceptions ``block`` will replay, or ``None`` if it will run."""
        record = self.replay
        if record is None or self.worker is not None:
            return None
        index = len(self.sent)
        if index < len(record.blocks) and record.blocks[index].signature == block.signature():
            return record.blocks[index].output, list(record.blocks[index].raised)
        return None

    def replayed(self, block: Block) -> tuple[str | None, list[int]]:
        """The block's recorded output, while the page's record still fits it."""
        if self.replay is None or self.worker is not None:
            return None, []
        recorded = self.recorded(block)
        if recorded is not None:
            return recorded
        # The record does not fit after all (the fences' text matched, what they ran
        # did not): run the page from here, after replaying its earlier blocks for real.
        log.info(
            f"{self.path}: the record does not match block {len(self.sent) + 1}; running the page"
        )
        self.replay = None
        for earlier, timeout, span in self.sent:
            self.run(earlier, timeout, span)
        return None, []

    def stopwatch(self) -> Callable[[], float]:
        """A stopwatch started now: it reads the seconds since, less those spent starting
        the page's process meanwhile (``starting``: the first pages of a build wait there
        for the fork server's imports, no page's own time)."""
        started, starting = time.perf_counter(), self.starting
        return lambda: time.perf_counter() - started - (self.starting - starting)

    def ran(
        self,
        block: Block,
        timeout: float,
        span: Fence,
        output: str,
        raised: list[int],
        seconds: float,
    ) -> None:
        """Keep what ``block`` gave: its record, what was sent, and its ``seconds``."""
        self.seconds += seconds
        self.sent.append((block, timeout, span))
        self.records.append(BlockRecord(block.signature(), block.first_line, output, raised))

    def start(self) -> None:
        """Start the page's process, unless it has one."""
        if self.worker is None:
            began = time.perf_counter()
            self.worker = PageWorker(self.root, self.path, self.seed, self.preload)
            self.starting += time.perf_counter() - began

    def run(self, block: Block, timeout: float, span: Fence) -> tuple[str, list[int]]:
        """Run ``block`` in the page's process; a failure becomes an ``ExampleError``."""
        self.start()
        index = self.fences.index(span)
        try:
            result = self.worker.run(block, timeout)
        except ExampleFailure as failure:
            self.close(kill=True)
            line = failure.line if failure.line > 0 else block.first_line
            where = span.place(self.path, line - block.first_line + 1)
            include = self.unsplit.get(index) if not block.parts else None
            if not failure.path and include is not None and line - block.first_line >= include:
                # The block includes code it could not be split into by file (an include
                # inside a function, or split by a section marker): it ran as one piece,
                # numbered from the fence, and past the include its lines are not the page's.
                where = (
                    f"{span.place(self.path, include + 1)} (in the code this line includes; "
                    "docexec could not tell its file's line: an include inside a function, "
                    "or split by a section marker, runs as one piece)"
                )
            elif failure.path and failure.path != span.path:
                at = self.includes.get((index, failure.path, failure.line), span.place(self.path))
                where = f"{failure.path}:{failure.line} (included at {at})"
            elif failure.path:
                where = span.place(self.path, failure.line - span.file_line)
            raise ExampleError(f"{where}: {failure}") from None
        except Exception as error:
            # SuperFences would swallow anything but an ExampleError and show the
            # block unrun: a broken pipe, a result that cannot be pickled...
            self.close(kill=True)
            raise ExampleError(
                f"{span.place(self.path)}: the block could not be run: {error!r}"
            ) from error
        for name, state in result.files.items():  # as the page's process first read it
            self.files.setdefault(name, state)
        for name, value in result.environ.items():
            self.environ.setdefault(name, value)
        self.reads_lines = self.reads_lines or result.reads_lines
        return result.output, list(result.raised)
