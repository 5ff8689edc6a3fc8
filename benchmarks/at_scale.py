"""Benchmark: docexec on a generated site of many pages, on every core and in shards.

Run by hand (``make benchmark``); it prints figures and asserts nothing. The site is
made from a template in a scratch folder: ``PAGES`` pages, each with a short torch
block of its own numbers. It is built cold with ``jobs=1`` and with every core, then
as two shards run one after the other (``python -m docexec run --shard K/2``), each in
a cache of its own, merged by copying and rendered; then warm. Each figure is printed
in seconds and as a ratio to the floor, the time ``python -c "import torch"`` takes.
The sites the cold builds give are compared byte for byte, and so is the merged one.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The tests' small sites (tests/sites.py), here with many pages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sites import write_site  # noqa: E402

PAGES = int(os.environ.get("BENCHMARK_PAGES", "200"))
MKDOCS = [sys.executable, "-m", "mkdocs"]

PAGE = """\
# Page {n}

```pycon exec="on"
>>> import torch
>>> torch.manual_seed({n})
>>> weights = torch.randn({rows}, {columns})
>>> weights.sum(dim=0)
```
"""


def make_site(root: Path) -> Path:
    pages = {
        f"page-{n:03d}.md": PAGE.format(n=n, rows=2 + n % 5, columns=3 + n % 4)
        for n in range(PAGES)
    }
    return write_site(root, {"index.md": "# Home\n", **pages})


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def same_site(one: Path, other: Path) -> bool:
    compared = filecmp.dircmp(one, other)
    if compared.left_only or compared.right_only or compared.diff_files or compared.funny_files:
        return False
    return all(same_site(one / name, other / name) for name in compared.common_dirs)


def main() -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", SOURCE_DATE_EPOCH="1700000000")
    floor = min(timed([sys.executable, "-c", "import torch"], Path.cwd(), env) for _ in range(3))
    rows: list[tuple[str, float]] = [("floor: python -c 'import torch'", floor)]
    with tempfile.TemporaryDirectory(prefix="docexec-at-scale-") as scratch:
        root = make_site(Path(scratch) / "site-source")

        def build(into: str, **extra: str) -> float:
            return timed(
                [*MKDOCS, "build", "--strict", "--site-dir", str(Path(scratch) / into)],
                root,
                dict(env, **extra),
            )

        cache = root / ".cache"
        rows.append((f"cold build, jobs=1 ({PAGES} pages)", build("one", DOCEXEC_JOBS="1")))
        shutil.rmtree(cache)
        rows.append((f"cold build, jobs={os.cpu_count()} (every core)", build("all")))
        rows.append(("warm build (nothing changed)", build("warm")))
        shutil.rmtree(cache)

        # Two shards, each in a clone with a cache of its own, one after the other.
        clones = []
        for k in (1, 2):
            clone = Path(scratch) / f"shard-{k}"
            shutil.copytree(root, clone, ignore=shutil.ignore_patterns(".cache"))
            seconds = timed(
                [sys.executable, "-m", "docexec", "run", "--shard", f"{k}/2"], clone, env
            )
            rows.append((f"shard {k}/2: python -m docexec run", seconds))
            clones.append(clone)
        started = time.perf_counter()
        for clone in clones:
            shutil.copytree(clone / ".cache", cache, dirs_exist_ok=True)
        rows.append(("merge: copying both caches into one", time.perf_counter() - started))
        rows.append(("build on the merged records", build("merged")))
        identical = all(
            same_site(Path(scratch) / "one", Path(scratch) / name) for name in ("all", "merged")
        )

    width = max(len(name) for name, _ in rows)
    print(f"{'what':<{width}}  seconds  x floor")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}  {seconds / floor:7.2f}")
    print(f"sites of jobs=1, every core and the merged shards byte-identical: {identical}")
    print(f"(cores: {os.cpu_count()}; load average now: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
