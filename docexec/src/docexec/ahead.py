"""Pages that run ahead of the render, ``jobs`` at once, each on a thread of its own.

The build waits (:meth:`PagesAhead.wait_for_idle_core`) until every page has started
and a core has nothing left to start (a thread ran out of pages, or there were fewer
pages than ``jobs``). The pages still running then (fewer than ``jobs``) go on while
MkDocs renders the pages whose runs are done, on the core they leave free, and the
render waits for each of them as it reaches it (:meth:`PagesAhead.wait_for`). With
one job nothing is left running: the render starts when the last page is done. The
first failure stops every page still running, and is raised wherever the build next
waits for a page.
"""

from __future__ import annotations

import threading
from collections import deque

from docexec.fences import Fence
from docexec.page import ExampleError, PageRun
from docexec.worker import Block

#: A page and the blocks foreseen in it, each with its timeout and fence.
Todo = tuple[PageRun, list[tuple[Block, float, Fence]]]


class PagesAhead:
    """Pages running ahead of the render: started in the order given, ``jobs`` at once.

    The threads are daemons: an interrupted build is not held at exit until its
    pages end (their processes are ended at exit, see :mod:`docexec.worker`).
    """

    def __init__(self, todo: list[Todo], jobs: int) -> None:
        self._queue: deque[Todo] = deque(todo)
        #: The pages not yet handed over to the render (see :meth:`wait_for`).
        self._pages: dict[str, Todo] = {item[0].path: item for item in todo}
        self._changed = threading.Condition()
        self._running: dict[str, PageRun] = {}
        #: Each page whose run ended: whether it ran to its end (not stopped).
        self._ended: dict[str, bool] = {}
        self._stop = threading.Event()
        self._jobs = jobs
        self.failure: BaseException | None = None
        #: The page whose run failed first.
        self.failed = ""
        self._threads = [
            threading.Thread(target=self._work, name=f"docexec-{i}", daemon=True)
            for i in range(min(jobs, len(todo)))
        ]
        self._idle = 0
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            with self._changed:
                if not self._queue or self._stop.is_set():
                    self._idle += 1
                    self._changed.notify_all()
                    return
                run, foreseen = self._queue.popleft()
                self._running[run.path] = run
            completed = False
            try:
                completed = self._run_page(run, foreseen)
            except BaseException as error:
                with self._changed:
                    if self.failure is None and not self._stop.is_set():
                        self.failure, self.failed = error, run.path
                self._halt()
            with self._changed:
                self._running.pop(run.path, None)
                self._ended[run.path] = completed
                self._changed.notify_all()

    def _run_page(self, run: PageRun, foreseen: list[tuple[Block, float, Fence]]) -> bool:
        """Run the page's blocks; ``False`` if it was stopped first."""
        for block, timeout, span in foreseen:
            if self._stop.is_set():
                return False
            run.start()
            if self._stop.is_set():
                # Stopped while the process started (the fork server may still have
                # been importing what it preloads): _halt found no process to kill.
                run.close(kill=True)
                return False
            stopwatch = run.stopwatch()  # the block's time, not its process's start
            output, raised = run.run(block, timeout, span)
            run.ran(block, timeout, span, output, raised, stopwatch())
        run.close()
        return True

    def _wait(self, until) -> None:
        """Wait until ``until()`` holds (under the lock) or a page failed; raise its error.
        Interrupted (Ctrl-C), every page is stopped first."""
        try:
            with self._changed:
                self._changed.wait_for(lambda: self.failure is not None or until())
        except BaseException:
            self.stop()
            raise
        if self.failure is not None:
            self.stop()
            raise self.failure

    def wait_for_idle_core(self) -> None:
        """Return once every page has started and a core is left with nothing to do:
        a thread has no page left to start, or there were fewer pages than ``jobs``
        (a core was idle from the start); raise the first failure."""
        self._wait(lambda: not self._queue and (self._idle > 0 or len(self._threads) < self._jobs))

    def wait_for(self, path: str) -> Todo | None:
        """Wait for page ``path``'s run to end and hand it over, once; ``None`` if it is
        not one of these pages (or was handed over). Raises the first failure,
        whichever page it was: another page's says so, since MkDocs reports it as an
        error reading ``path``."""
        with self._changed:
            todo = self._pages.pop(path, None)
        try:
            self._wait(lambda: todo is None or path in self._ended)
        except ExampleError as error:
            if self.failed in ("", path):
                raise
            raise ExampleError(
                f"{error}\n({self.failed} failed as it ran ahead of the render, which had "
                f"reached {path}: {path} did not fail)"
            ) from error
        if todo is not None and not self._ended[path]:
            raise RuntimeError(f"{path}: its run was stopped before it ended")
        return todo

    def completed(self) -> list[Todo]:
        """Hand over every page whose run ended complete and that no one waited for
        (the render never reached it: another page failed, or the build was stopped)."""
        with self._changed:
            done = [path for path in self._pages if self._ended.get(path)]
            return [self._pages.pop(path) for path in done]

    def wait_for_all(self) -> None:
        """Wait for every page; raise the first failure."""
        self._wait(lambda: self._idle == len(self._threads))

    def _halt(self) -> None:
        """Start no other page, and kill the processes of those still running."""
        self._stop.set()
        with self._changed:
            running = list(self._running.values())
        for run in running:
            run.close(kill=True)

    def stop(self) -> None:
        """Stop every page still running and start no other; return when every thread
        has ended."""
        self._halt()
        for thread in self._threads:
            thread.join()
