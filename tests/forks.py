"""An interpreter that has imported torch, forking a child for each piece of code to run.

Importing torch costs 2.7 to 3.5 s of CPU, as much as most of what the tests run after
it. ``fork_server(python, run)`` starts ``python`` (any venv's) with torch imported (and
the few standard modules its loop needs), as the site's fork server preloads it, and
forks a child for each request: the child goes to the request's folder, writes its
stdout and stderr to the request's files (the same file for both: one stream, in the
order written) and exits as the interpreter would when ``run(request)``, the caller's
function, returns its exit code or raises (``SystemExit``'s code or message, an uncaught
exception's traceback and 1, ``atexit``'s functions run, the streams flushed; the
modules are not torn down, which costs a second of CPU with torch loaded and shows
nothing). Each child starts from the same state: torch imported, nothing run.

``kernel_server(python, folder, env)`` does the same for Jupyter kernels: a kernel spec
whose command hands the kernel's start to a server that has imported torch and
ipykernel's modules, which forks the kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

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


#: A Jupyter kernel's process, as the kernel manager starts it (the kernel spec's
#: ``argv``): it hands its arguments, folder, environment and standard streams to the
#: kernel server, which forks the kernel; it passes on the signals it gets (an
#: interrupt, a stop) and ends when the kernel does. Killed (an immediate shutdown),
#: its end of the connection closes, and the kernel ends at once.
FORWARDER = r"""
import json, os, signal, socket, sys

conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
conn.connect(sys.argv[1])
env = {key: value for key, value in os.environ.items() if key != "JUPYTER_PATH"}
request = {"argv": sys.argv[2:], "cwd": os.getcwd(), "env": env}
socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
pid = int(conn.recv(64))
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda signum, frame: os.kill(pid, signum))
while conn.recv(64):
    pass
"""

#: The kernel server: torch and ipykernel imported, nothing run; for each forwarder
#: that connects, a child that takes its streams, folder, environment and arguments
#: and runs ``python -m ipykernel_launcher`` in a new ``__main__``, as the kernel
#: spec's own command would.
KERNELS = r"""
import json, os, runpy, signal, socket, sys, threading
import torch
# What ipykernel.kernelapp imports, but not that module, which reads JPY_PARENT_PID
# as it is imported: the kernel's own environment, known only in the child.
import ipykernel.ipkernel, ipykernel.zmqshell

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped as they end
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(sys.argv[1])
listener.listen()
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    if os.fork():
        conn.close()
        for fd in fds:
            os.close(fd)
        continue
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request = json.loads(message)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    conn.sendall(f"{os.getpid()}".encode())

    def end_with_forwarder():
        conn.recv(1)
        os._exit(1)

    threading.Thread(target=end_with_forwarder, daemon=True).start()
    sys.argv = ["ipykernel_launcher", *request["argv"]]
    try:
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except BaseException as error:  # no one reads a kernel's exit code: its end is what counts
        if not isinstance(error, SystemExit):
            sys.excepthook(*sys.exc_info())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
"""


@contextlib.contextmanager
def kernel_server(python: str, folder: Path, env: Mapping[str, str]) -> Iterator[str]:
    """Jupyter kernels forked from ``python`` (any venv's) with torch imported; yields
    the ``JUPYTER_PATH`` under which its kernel spec is ``python3``.

    A kernel so started is the kernel spec's ``python -m ipykernel_launcher -f FILE``
    with its imports of torch and ipykernel done (2.7 to 3.5 s of CPU each): the
    notebook's namespace is new and its code runs as in a fresh kernel (every name it
    uses needs its own imports); string hashing is the server's, started with ``env``
    as the kernels are. ``folder`` holds the kernel spec. The server's socket is in a
    private folder of its own (0700) under the system's temporary folder: a path under
    a deep ``folder`` could pass the 108 bytes a socket's path may have, and an
    abstract socket would let any local user connect and run code.
    """
    spec = folder / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="docexec-kernels-") as private:
        socket_path = os.path.join(private, "sock")
        argv = [python, "-c", FORWARDER, socket_path, "-f", "{connection_file}"]
        spec.joinpath("kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
        )
        server = subprocess.Popen(
            [python, "-c", KERNELS, socket_path], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert server.stdout.readline() == "ready\n", "the kernel server did not start"
            yield str(folder / "jupyter")
        finally:
            server.terminate()
            server.wait(timeout=60)
