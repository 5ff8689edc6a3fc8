"""Which pages run where: on how many cores at once, in which order, on which machine.

Pages whose records are missing or stale run before MkDocs renders anything (see
:meth:`docexec.plugin.DocExecPlugin.run_ahead`), up to :func:`jobs` at once, in the
order :func:`longest_first` gives. ``python -m docexec run --shard K/N`` runs the
pages of one shard: :func:`shards` gives every machine the same assignment from the
same recorded durations, and spreads pages never run before by a stable hash.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def jobs(option: int, environ: Mapping[str, str] = os.environ) -> int:
    """How many pages run at once: ``DOCEXEC_JOBS``, else the ``jobs`` option, else
    (0, the default) the cores this process may use.

    Raises:
        ValueError: ``DOCEXEC_JOBS`` or the option is not a whole number of at least 0.
    """
    text = environ.get("DOCEXEC_JOBS", "").strip()
    if text:
        if not text.isdigit():
            raise ValueError(f"DOCEXEC_JOBS={text!r}: a whole number of pages at once, or 0")
        option = int(text)
    if option < 0:
        raise ValueError(f"jobs: {option} is less than 0 (0 means every core)")
    return option or available_cores()


def longest_first(
    seconds: Mapping[str, float | None], lines: Mapping[str, int] | None = None
) -> list[str]:
    """The order pages start in: those never run first, the most ``lines`` of code
    first, then the others by their last run's duration, longest first; ties by name.

    A page never run may be the longest: started last, it would run alone at the end
    while every other core waits. Its code's length is the only guess there is before
    a first run (``lines``: each page's lines of code; none given, all alike).
    """
    lines = lines or {}
    return sorted(
        seconds,
        key=lambda page: (
            seconds[page] is not None,
            -(seconds[page] or 0.0),
            -lines.get(page, 0),
            page,
        ),
    )


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``, shard K (from 1) of N.

    Raises:
        ValueError: It is not two whole numbers with 1 <= K <= N.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard {text!r}: K/N, shard K of N, with 1 <= K <= N")
    return int(match[1]), int(match[2])


def _stable_hash(page: str) -> int:
    return int.from_bytes(hashlib.sha256(page.encode()).digest()[:8], "big")


def shards(seconds: Mapping[str, float | None], count: int) -> list[list[str]]:
    """Split pages into ``count`` shards of about equal recorded time, the same on
    every machine given the same durations.

    Pages with a recorded duration go, longest first, each to the shard with the
    least time so far (the lowest-numbered on a tie); pages never run go to the
    shard their path's SHA-256 names. Each shard lists its pages in the order
    :func:`longest_first` gives them.
    """
    if count < 1:
        raise ValueError(f"{count} shards: at least 1")
    assigned: list[list[str]] = [[] for _ in range(count)]
    totals = [0.0] * count
    for page in longest_first(seconds):
        took = seconds[page]
        if took is None:
            index = _stable_hash(page) % count
        else:
            index = min(range(count), key=lambda i: (totals[i], i))
            totals[index] += took
        assigned[index].append(page)
    return assigned
