"""The package a reader installs to run a page at home, published beside the pages.

The site's build makes the project's wheel (with setuptools, its build backend) and
writes it to the site's root, so every page can name one command that installs it
from the site itself: ``pip install "learnable-parameters[learning] @ <site>/<wheel>"``.
The extras are those the pages import beyond the package's own dependencies.

The wheel is built from a copy of ``pyproject.toml``, the readme and the package
folders, so the build leaves nothing in the checkout, and with ``SOURCE_DATE_EPOCH``
set, so its files carry the commit's date: two builds of one commit, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from html import escape
from pathlib import Path

#: A requirement as the plugin's ``package`` option takes it: a name and its extras.
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*$"
)


#: The distribution a PEP 508 requirement names: ``scikit-learn`` in ``scikit-learn>=1.4``.
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _normalize(name: str) -> str:
    """A distribution name as wheel file names spell it (PEP 427, PEP 503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _python_versions(spec: str) -> str:
    """``requires-python`` as a reader says it: ``">=3.11,<3.12"`` is ``"3.11"``."""
    match = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*,\s*<\s*(\d+)\.(\d+)\s*", spec)
    if match and match[1] == match[3] and int(match[4]) == int(match[2]) + 1:
        return f"{match[1]}.{match[2]}"
    return spec


@dataclass(frozen=True)
class ReaderPackage:
    """The project's package for readers: where its wheel is and how to install it.

    Attributes:
        name: The distribution's name, as ``pyproject.toml`` gives it.
        extras: The extras a reader installs with it.
        wheel: The wheel's file name, at the site's root.
        url: Where the site publishes the wheel.
        module: The import name that tells whether the package is installed.
        python: The Python versions it installs on (``requires-python``).
        version: The project's version, which the notebook's install cell asks for.
        needs: The distributions the extras add, by name, which that cell looks for.
    """

    name: str
    extras: tuple[str, ...]
    wheel: str
    url: str
    module: str
    python: str = ""
    version: str = ""
    needs: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        """What ``pip install`` takes: ``name[extras] @ url``."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras} @ {self.url}"

    @property
    def command(self) -> str:
        """The one command a reader runs, in a shell."""
        return f'pip install "{self.requirement}"'


def reader_package(root: Path, requirement: str, site_url: str) -> ReaderPackage:
    """The package named by ``requirement``, which must be the project's own.

    Args:
        root: The folder of ``pyproject.toml``.
        requirement: The project's name with the extras readers need:
            ``"learnable-parameters[learning]"``.
        site_url: The site's address; the wheel is published at its root.

    Returns:
        The package.

    Raises:
        ValueError: ``requirement`` is not a name with extras, names another
            package than the project's, or asks for an extra the project lacks;
            or ``site_url`` is empty.
    """
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"package: {requirement!r} is not a name with extras, like 'name[extra]'")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    if _normalize(match["name"]) != _normalize(name):
        raise ValueError(
            f"package: {match['name']!r} is not this project; pyproject.toml names {name!r}"
        )
    extras = tuple(e.strip() for e in (match["extras"] or "").split(",") if e.strip())
    missing = [e for e in extras if e not in project.get("optional-dependencies", {})]
    if missing:
        raise ValueError(f"package: pyproject.toml has no extra {', '.join(missing)}")
    if not site_url:
        raise ValueError("package: the wheel is published at site_url, which is not set")
    wheel = f"{_normalize(name)}-{version}-py3-none-any.whl"
    return ReaderPackage(
        name=name,
        extras=extras,
        wheel=wheel,
        url=site_url.rstrip("/") + "/" + wheel,
        module=_normalize(name),
        python=_python_versions(project.get("requires-python", "")),
        version=version,
        needs=tuple(
            sorted(
                {
                    _REQUIREMENT_NAME.match(needed)[0]
                    for extra in extras
                    for needed in project["optional-dependencies"][extra]
                }
            )
        ),
    )


def _inputs(root: Path) -> tuple[str | None, list[str]]:
    """The project's readme and the folders its packages are found in."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    readme = pyproject["project"].get("readme")
    find = pyproject.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    return (readme if isinstance(readme, str) else None), find.get("where", ["."])


_SKIPPED = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")


def wheel_key(root: Path) -> str:
    """What the wheel is made of: the sources' bytes, the build date, the builder."""
    from importlib import metadata

    readme, sources = _inputs(root)
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", *([root / readme] if readme else [])]
    for where in sources:
        files.extend(
            path
            for path in sorted((root / where).rglob("*"))
            if path.is_file()
            and not any(_SKIPPED("", [part]) for part in path.relative_to(root).parts)
        )
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    builder = f"{sys.version}|setuptools {metadata.version('setuptools')}"
    digest.update(f"{os.environ.get('SOURCE_DATE_EPOCH')}|{builder}".encode())
    return digest.hexdigest()[:32]


def cached_wheel(root: Path, folder: Path, cache: Path | None) -> Path:
    """The project's wheel in ``folder``: copied from ``cache`` when made of the same
    inputs before (a rebuild under ``mkdocs serve`` saves setuptools' 0.3 s), else built.
    """
    if cache is None:
        return build_wheel(root, folder)
    kept = cache / wheel_key(root)
    found = sorted(kept.glob("*.whl")) if kept.is_dir() else []
    if not found:
        built = build_wheel(root, Path(tempfile.mkdtemp(prefix="docexec-wheel-")))
        kept.mkdir(parents=True, exist_ok=True)
        os.replace(built, kept / built.name)  # whole or not at all, for a build beside
        shutil.rmtree(built.parent, ignore_errors=True)
        found = [kept / built.name]
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(found[0], folder / found[0].name))


def build_wheel(root: Path, folder: Path) -> Path:
    """Build the project's wheel into ``folder``, leaving the checkout untouched.

    Args:
        root: The folder of ``pyproject.toml``.
        folder: Where the wheel goes.

    Returns:
        The wheel's path.

    Raises:
        RuntimeError: The build failed; the message holds setuptools' output.
    """
    readme, sources = _inputs(root)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="docexec-wheel-") as scratch:
        copy = Path(scratch) / "project"
        copy.mkdir()
        shutil.copy2(root / "pyproject.toml", copy / "pyproject.toml")
        if readme:
            shutil.copy2(root / readme, copy / readme)
        for where in sources:
            if Path(where) in (Path("."), Path("")):
                raise RuntimeError("the package must sit in a folder of its own (src/), not '.'")
            shutil.copytree(
                root / where,
                copy / where,
                ignore=_SKIPPED,
            )
        out = Path(scratch) / "dist"
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from setuptools import build_meta; "
                "print(build_meta.build_wheel(sys.argv[1]))",
                str(out),
            ],
            cwd=copy,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building the wheel failed:\n{result.stdout}\n{result.stderr}")
        name = result.stdout.strip().splitlines()[-1]
        target = folder / name
        shutil.copyfile(out / name, target)
    return target


def install_html(package: ReaderPackage) -> str:
    """The paragraph under a page's downloads that says how to install the package."""
    return (
        f"<p>The notebook's first cell installs what it imports. For the script, install "
        f"it first, with Python {escape(package.python)}:</p>\n"
        f'<pre class="docexec-install"><code>{escape(package.command)}</code></pre>\n'
    )


def notebook_install_cell(package: ReaderPackage) -> str:
    """A notebook's first code cell: install the package unless it is there as the page had it.

    It installs when the package is missing, is another version than the site's, or
    lacks what its extras add (a reader who installed it without them). A failed
    install stops "Run all" with one line that says what to install (IPython shows a
    ``UsageError`` as its message alone, without a traceback).
    """
    advice = f"run {package.command} with Python {package.python}, then run this notebook again"
    return (
        f"# Installs the package this notebook imports, unless it is installed already\n"
        f"# as the page had it: version {package.version}, with what its extras add.\n"
        f"import importlib\n"
        f"import subprocess\n"
        f"import sys\n"
        f"from importlib import metadata\n\n\n"
        f"def installed(name: str) -> str | None:\n"
        f"    try:\n"
        f"        return metadata.version(name)\n"
        f"    except metadata.PackageNotFoundError:\n"
        f"        return None\n\n\n"
        f"def ready() -> bool:\n"
        f"    return installed({json.dumps(package.name)}) == {json.dumps(package.version)} and all(\n"
        f"        map(installed, {json.dumps(list(package.needs))})\n"
        f"    )\n\n\n"
        f"if not ready():\n"
        f"    subprocess.run(\n"
        f'        [sys.executable, "-m", "pip", "install", "--quiet", {package.requirement!r}],\n'
        f"        capture_output=True,\n"
        f"    )\n"
        f"    importlib.invalidate_caches()\n"
        f"if not ready():\n"
        f"    from IPython.core.error import UsageError\n\n"
        f"    raise UsageError({f'Could not install {package.name}: {advice}.'!r})"
    )


def script_install_check(package: ReaderPackage) -> str:
    """A script's first lines: stop with one line that says what to install, if it is missing."""
    advice = (
        f"This script needs the {package.name} package: {package.command} (Python {package.python})"
    )
    return (
        f"try:\n"
        f"    import {package.module}  # noqa: F401\n"
        f"except ModuleNotFoundError:\n"
        f"    sys.exit({advice!r})"
    )
