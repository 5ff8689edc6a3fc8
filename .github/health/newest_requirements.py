"""Print what pyproject.toml requires, by name alone: to install the newest of each.

    pip install --upgrade $(python .github/health/newest_requirements.py)

The project's dependencies and its docs and test extras, with every version pin and
bound dropped (``torch==2.13.0`` becomes ``torch``), one name per line.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
EXTRAS = ("docs", "test")


def unpinned(requirement: str) -> str:
    """The distribution name a requirement string starts with."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def newest_requirements(pyproject: dict) -> list[str]:
    project = pyproject["project"]
    requirements = [*project["dependencies"]]
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    return [unpinned(requirement) for requirement in requirements]


if __name__ == "__main__":
    print("\n".join(newest_requirements(tomllib.loads(PYPROJECT.read_text()))))
