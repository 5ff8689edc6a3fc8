"""Print what pyproject.toml requires, by name alone: to install the newest of each.

    pip install --upgrade $(python .github/health/newest_requirements.py)

The project's dependencies, its docs and test extras, and the docexec plugin's
dependencies (docexec/pyproject.toml), with every version pin and bound dropped
(``torch==2.13.0`` becomes ``torch``), one name per line, each once.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PLUGIN = Path(__file__).resolve().parents[2] / "docexec" / "pyproject.toml"
EXTRAS = ("docs", "test")


def unpinned(requirement: str) -> str:
    """The distribution name a requirement string starts with."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def newest_requirements(pyproject: dict, plugin: dict | None = None) -> list[str]:
    project = pyproject["project"]
    requirements = [*project["dependencies"]]
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    if plugin is not None:
        requirements += plugin["project"]["dependencies"]
    return list(dict.fromkeys(unpinned(requirement) for requirement in requirements))


if __name__ == "__main__":
    pyproject, plugin = (tomllib.loads(path.read_text()) for path in (PYPROJECT, PLUGIN))
    print("\n".join(newest_requirements(pyproject, plugin)))
