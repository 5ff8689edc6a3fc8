"""An interpreter that has imported torch, forking a child for each piece of code to run.

Importing torch costs 2.7 to 3.5 s of CPU, as much as most of what the tests run after
it. ``fork_server(python, run)`` starts ``python`` (any venv's) with torch imported (and
the few standard modules its loop needs), as the site's fork server preloads it, and forks a child for each request: the child
goes to the request's folder, writes its stdout and stderr to the request's files (the
same file for both: one stream, in the order written) and exits as the interpreter
would when ``run(request)``, the caller's function, returns its exit code or raises
(``SystemExit``'s code or message, an uncaught exception's traceback and 1, ``atexit``'s
functions run, the streams flushed; the modules are not torn down, which costs a second
of CPU with torch loaded and shows nothing). Each child starts from the same state:
torch imported, nothing run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping

#: The server before the caller's ``run``: torch imported, computing on one thread.
HEAD = r"""
import atexit, json, os, signal, sys
import torch

torch.set_num_threads(1)
"""

#: The server after it: a request a line, up to PARALLEL children at a time; an empty
#: line ends a batch (its children are waited for). A child's exit prints ``[id, code]``.
LOOP = r"""
running = {}


def reap():
    pid, status = os.wait()
    print(json.dumps([running.pop(pid), os.waitstatus_to_exitcode(status)]), flush=True)


for line in sys.stdin:
    if not line.strip():
        while running:
            reap()
        continue
    request = json.loads(line)
    if len(running) == PARALLEL:
        reap()
    pid = os.fork()
    if pid == 0:
        os.chdir(request["cwd"])
        stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        stderr = stdout
        if request["stderr"] != request["stdout"]:
            stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        # An empty stdin, not the server's requests (nor what its sys.stdin has read ahead).
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdin = sys.__stdin__ = open(0, closefd=False)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        signal.alarm(600)  # a guard against a hang, not a measurement
        try:
            code = run(request)
        except SystemExit as error:  # read as the interpreter reads it
            code = error.code
            if code is not None and not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        # The interpreter's way out, but for tearing down the modules (see above).
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    running[pid] = request["id"]
"""


@contextlib.contextmanager
def fork_server(
    python: str, run: str, env: Mapping[str, str] | None = None, parallel: int = 1
) -> Iterator[Callable[[list[dict]], list[int]]]:
    """``server(requests)`` runs ``run(request)`` (Python source defining it) for each
    request in a child of ``python``, ``parallel`` at a time; their exit codes, in order.

    A request names ``cwd``, ``stdout`` and ``stderr`` (paths), and whatever ``run`` reads.
    """
    server = subprocess.Popen(
        [python, "-c", f"{HEAD}\n{run}\nPARALLEL = {parallel}\n{LOOP}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )

    def serve(requests: list[dict]) -> list[int]:
        for number, request in enumerate(requests):
            server.stdin.write(json.dumps({**request, "id": number}) + "\n")
        server.stdin.write("\n")
        server.stdin.flush()
        codes = {}
        for _ in requests:
            line = server.stdout.readline()
            assert line, "the fork server has ended"
            number, code = json.loads(line)
            codes[number] = code
        return [codes[number] for number in range(len(requests))]

    try:
        yield serve
    finally:
        server.stdin.close()
        server.wait(timeout=60)
