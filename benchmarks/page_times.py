"""Benchmark: how long each page's examples take to run, and the whole build.

Run by hand (``.venv/bin/python benchmarks/page_times.py``); it prints figures and
asserts nothing. docexec logs each page's execution time at INFO level; this
script builds the site into a scratch folder, with the cache off so that every
page runs (``DOCEXEC_CACHE=0``), and tabulates those lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"docexec: (?P<page>\S+): ran (?P<blocks>\d+) blocks in (?P<seconds>[\d.]+) s")


def main() -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", DOCEXEC_CACHE="0")
    with tempfile.TemporaryDirectory() as site:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        total = time.perf_counter() - started
    if result.returncode:
        sys.exit(result.stderr)
    rows = [m.groupdict() for m in LINE.finditer(result.stderr)]
    width = max((len(r["page"]) for r in rows), default=4)
    print(f"{'page':<{width}}  blocks  seconds")
    for row in sorted(rows, key=lambda r: -float(r["seconds"])):
        print(f"{row['page']:<{width}}  {row['blocks']:>6}  {float(row['seconds']):7.2f}")
    print(f"{'whole build':<{width}}  {'':>6}  {total:7.2f}")
    print(f"(cores: {os.cpu_count()}; examples run with torch pinned to one thread)")


if __name__ == "__main__":
    main()
