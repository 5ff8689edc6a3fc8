"""What a page's outputs were made with, as its stamp says, and the build's date.

The stamp names Python, the distributions of the modules the fork server preloads
and the commit (``Python 3.11.7, torch 2.13.0, commit 0123456789ab``), all fixed per
commit; the build's date is the last commit's (``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import contextlib
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _git(root: Path, *args: str) -> str | None:
    """What ``git ARGS`` prints in ``root``, stripped; ``None`` outside git or on error."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def source_date_epoch(root: Path) -> str | None:
    """The last commit's time, for ``SOURCE_DATE_EPOCH``; ``None`` outside git."""
    return _git(root, "log", "-1", "--format=%ct")


def git_commit(root: Path) -> str:
    """The short hash of the commit being built, or ``"unknown"`` outside git."""
    return _git(root, "rev-parse", "--short=12", "HEAD") or "unknown"


@functools.lru_cache(maxsize=8)
def _providers(module: str) -> tuple[str, ...]:
    """The distributions that provide top-level ``module``: the one of its name if it
    does (torch), else as the installed metadata says (sklearn: scikit-learn), which
    reads every distribution's file list (half a second): once per process."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        metadata.distribution(module)
        return (module,)
    return tuple(metadata.packages_distributions().get(module, []))


def preloaded_distributions(preload: list[str]) -> list[str]:
    """``name version`` of each distribution that provides a module of ``preload``."""
    found: dict[str, None] = {}
    for module in preload:
        for name in _providers(module.split(".")[0]):
            found[f"{name} {metadata.version(name).split('+')[0]}"] = None
    return list(found)


def build_stamp(root: Path, preload: list[str]) -> str:
    """What produced a page's output: Python, the preloaded distributions and the commit,
    all fixed per commit (``Python 3.11.7, torch 2.13.0, commit 0123456789ab``)."""
    return ", ".join(
        [
            f"Python {platform.python_version()}",
            *preloaded_distributions(preload),
            f"commit {git_commit(root)}",
        ]
    )
