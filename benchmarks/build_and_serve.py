"""Benchmark: the floor, a cold and a warm build, and edit-to-served latency under serve.

Run by hand (``make benchmark``); it prints figures and asserts nothing. Everything
runs on a copy of the repository's tracked files in a scratch folder (its own
execution cache, its package first on ``PYTHONPATH``), so the checkout is never
edited. Each figure is printed in seconds and as a ratio to the floor, the time
``python -c "import torch"`` takes on this machine. The sites of the cold builds with
``jobs=1`` and with every core are compared byte for byte.

Under ``mkdocs serve``, an edit's latency is the time from writing the file to
the server saying "Reloading browsers" with the edit in the page it serves.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from at_scale import same_site  # this folder is the script's: first on sys.path

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = [sys.executable, "-m", "mkdocs"]
RUNS = 3  # each timing is the median of this many
PAIRS = 5  # the cold builds' ratio, the noisiest figure: the median of this many pairs


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def copy_repository(into: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = into / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return into


class Server:
    """``mkdocs serve`` on a free port, its log read line by line."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.lines: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            [*MKDOCS, "serve", "--livereload", "-a", f"127.0.0.1:{self.port}"],
            cwd=root,
            env=dict(env, SITE_URL=f"http://127.0.0.1:{self.port}/"),  # as `make serve`
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # Ctrl-C ends it, as it ends an author's (a background job ignores it).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append((time.perf_counter(), line.rstrip()))

    def wait_for(self, pattern: str, after: float, seconds: float = 300) -> float:
        """The time the log first matched ``pattern`` after ``after``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if at >= after and re.search(pattern, line):
                    return at
            time.sleep(0.005)
        raise SystemExit(
            f"mkdocs serve never logged {pattern!r}:\n"
            + "\n".join(line for _, line in self.lines[-30:])
        )

    def page(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.port}/{path}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()

    def stop(self) -> None:
        # Ctrl-C, as an author stops it: SIGTERM runs no cleanup, and would leave the
        # fork server's socket folder (multiprocessing's pymp-*) in /tmp.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def edit_latency(server: Server, root: Path, file: str, change, check: str | None) -> float:
    """Seconds from changing ``file`` to the served site showing it."""
    path = root / file
    text = path.read_text()
    started = time.perf_counter()
    path.write_text(change(text))
    reloaded = server.wait_for(r"Reloading browsers", after=started)
    if check is not None:
        page, needle = check.split("|", 1)
        if needle not in server.page(page):
            raise SystemExit(f"{page} does not show {needle!r} after the edit")
    return reloaded - started


def main() -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    floor = median([timed([sys.executable, "-c", "import torch"], ROOT, env) for _ in range(RUNS)])
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="docexec-benchmark-") as scratch:
        root = copy_repository(Path(scratch) / "repo")
        env = dict(
            env, PYTHONPATH=os.pathsep.join([str(root / "src"), str(root / "docexec" / "src")])
        )
        build = [*MKDOCS, "build", "--strict", "--site-dir", str(Path(scratch) / "site")]
        # Cold, one page at a time and every core, side by side: alternated, so that a
        # busier moment of the machine weighs on both alike. Each into a site of its
        # own, compared byte for byte (dated as `make site` dates them).
        dated = dict(env, SOURCE_DATE_EPOCH="1700000000")
        cold: dict[str, list[float]] = {"1": [], "0": []}
        for _ in range(PAIRS):
            for jobs in cold:
                shutil.rmtree(root / ".cache", ignore_errors=True)
                site = str(Path(scratch) / f"site-jobs-{jobs}")
                shutil.rmtree(site, ignore_errors=True)
                command = [*build[:-1], site]
                cold[jobs].append(timed(command, root, dict(dated, DOCEXEC_JOBS=jobs)))
        identical = same_site(Path(scratch) / "site-jobs-1", Path(scratch) / "site-jobs-0")
        one, every = median(cold["1"]), median(cold["0"])
        rows.append(("cold build, jobs=1 (every page runs)", one))
        rows.append((f"cold build, every core ({os.cpu_count()})", every))
        # Each pair's own ratio: a slower minute of the machine slows both of its builds.
        ratios = [e / o for o, e in zip(cold["1"], cold["0"], strict=True)]
        rows.append((f"  every core / jobs=1, median of {PAIRS} pairs (a ratio)", median(ratios)))
        rows.append(
            ("warm build (nothing changed)", median([timed(build, root, env) for _ in range(RUNS)]))
        )

        server = Server(root, env)
        try:
            server.wait_for(r"Serving on", after=0)
            # The first code edit after the server starts: what it costs beyond the
            # page's own run and a rebuild (the prose edit below) is start-up work that
            # an edit should not wait for. An author's first save comes a moment after
            # the server is up: two seconds here.
            time.sleep(2)
            first_file = "docs/string-representation.md"
            started = time.perf_counter()
            first = edit_latency(
                server,
                root,
                first_file,
                lambda text: text.replace(">>> ", ">>> 'first-edit'\n>>> ", 1),
                "string-representation/|first-edit",
            )
            ran = [
                float(m[1])
                for at, line in server.lines
                if at >= started
                and (
                    m := re.search(rf"{re.escape(first_file)}: ran \d+ blocks in ([\d.]+) s", line)
                )
            ]
            rows.append(("serve: first code edit after start", first))
            rows.append(("  of which the page's own run", ran[0] if ran else float("nan")))
            edits = {
                "serve: prose edit (docs/weight-shapes.md)": (
                    "docs/weight-shapes.md",
                    lambda text, n: text + f"\nA sentence added by the benchmark, number {n}.\n",
                    "weight-shapes/|number {n}.",
                ),
                "serve: code edit, small page (docs/string-representation.md)": (
                    "docs/string-representation.md",
                    lambda text, n: text.replace(">>> ", f">>> 'edit-{n}'\n>>> ", 1),
                    "string-representation/|edit-{n}",
                ),
                "serve: package module used by one page (training.py)": (
                    "src/learnable_parameters/training.py",
                    lambda text, n: text + f"\n# An edit by the benchmark, number {n}.\n",
                    None,
                ),
            }
            for name, (file, change, check) in edits.items():
                times = [
                    edit_latency(
                        server,
                        root,
                        file,
                        lambda text, n=n, change=change: change(text, n),
                        check.format(n=n) if check else None,
                    )
                    for n in range(RUNS)
                ]
                rows.append((name, median(times)))
            prose = rows[-3][1]
            rows.append(
                (
                    "  first code edit beyond its run and a rebuild (prose edit)",
                    first - (ran[0] if ran else 0) - prose,
                )
            )
        finally:
            server.stop()

    rows.insert(0, ("floor: python -c 'import torch'", floor))
    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  seconds  x floor")
    for name, seconds in rows:
        times_floor = "" if name.endswith("(a ratio)") else f"{seconds / floor:7.2f}"
        print(f"{name:<{width}}  {seconds:7.2f}  {times_floor}")
    print(f"sites of the cold builds, jobs=1 and every core, byte-identical: {identical}")
    print(f"every core / jobs=1, each pair: {' '.join(f'{ratio:.2f}' for ratio in ratios)}")
    print(
        f"(medians of {RUNS} runs, of {PAIRS} for the cold builds; cores: {os.cpu_count()}; "
        f"load average now: {os.getloadavg()[0]:.2f})"
    )


if __name__ == "__main__":
    main()
