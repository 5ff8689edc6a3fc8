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

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from html import escape
from importlib import metadata
from pathlib import Path

from mkdocs.plugins import get_plugin_logger

from docexec import scratch
from docexec.cache import installed_distributions, write_atomically
from docexec.session import tail

log = get_plugin_logger(__name__)

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
        python: The Python versions it installs on (``requires-python``).
        version: The project's version, which the take-aways ask for.
        needs: The distributions the extras add, by name, which the take-aways look for.
    """

    name: str
    extras: tuple[str, ...]
    wheel: str
    url: str
    python: str = ""
    version: str = ""
    needs: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        """What ``pip install`` takes: ``name[extras] @ url``."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras} @ {self.url}"

    @property
    def with_python(self) -> str:
        """``", with Python 3.11"``, or nothing when the project names no Python."""
        return f", with Python {self.python}" if self.python else ""

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
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        name, version = project["name"], project["version"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
        problem = (
            "there is none"
            if isinstance(error, FileNotFoundError)
            else f"its [project] gives no name and version ({type(error).__name__}: {error})"
        )
        raise ValueError(
            f"package: names the site's own project, read from the pyproject.toml beside "
            f"mkdocs.yml ({root / 'pyproject.toml'}): {problem}"
        ) from None
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
    if problem := _builder_problem():
        raise ValueError(f"package: the reader's wheel is built with setuptools: {problem}")
    wheel = f"{_normalize(name)}-{version}-py3-none-any.whl"
    return ReaderPackage(
        name=name,
        extras=extras,
        wheel=wheel,
        url=site_url.rstrip("/") + "/" + wheel,
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


def _builder_problem() -> str:
    """Why setuptools in this environment cannot build a wheel, or ``""``: it builds one
    alone from 70.1 on, before that only with the ``wheel`` distribution installed."""
    installed = {}
    for name in ("setuptools", "wheel"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            installed[name] = metadata.version(name)
    if "setuptools" not in installed:
        return "it is not installed in the environment MkDocs runs in (pip install setuptools)"
    numbers = [int(part) for part in re.findall(r"\d+", installed["setuptools"])[:2]]
    if numbers < [70, 1] and "wheel" not in installed:
        return (
            f"this environment has setuptools {installed['setuptools']}, which builds wheels "
            "only with the wheel distribution installed: pip install 'setuptools>=70.1'"
        )
    return ""


def _inputs(root: Path) -> tuple[str | None, list[str]]:
    """The project's readme and the folders its packages are found in: setuptools'
    ``packages.find.where``; for a list of ``packages``, each one's folder (its own
    ``package-dir``, its top package's, the root's, else its top package's name); with
    neither, ``src`` if there is one (setuptools' automatic discovery), else the
    project's folder."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    readme = pyproject["project"].get("readme")
    readme = readme if isinstance(readme, str) else None
    setuptools = pyproject.get("tool", {}).get("setuptools", {})
    packages = setuptools.get("packages")
    if isinstance(packages, list):
        folders = setuptools.get("package-dir", {})
        found = set()
        for name in packages:
            top = name.split(".")[0]
            found.add(folders.get(name) or folders.get(top) or folders.get("") or top)
        return readme, sorted(found)
    if isinstance(packages, dict) and "find" in packages:
        return readme, packages["find"].get("where", ["."])
    return readme, ["src"] if (root / "src").is_dir() else ["."]


_SKIPPED = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")


def wheel_key(root: Path) -> str:
    """What the wheel is made of: the sources' bytes, the build date, and the builder
    (Python and the installed distributions, setuptools among them)."""
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
    builder = [sys.version, installed_distributions()]
    digest.update(f"{os.environ.get('SOURCE_DATE_EPOCH')}|{builder}".encode())
    return digest.hexdigest()[:32]


#: Beside a kept wheel: its SHA-256 and name, as ``sha256sum`` writes them.
_DIGEST = "SHA256SUM"


def cached_wheel(root: Path, folder: Path, cache: Path | None) -> Path:
    """The project's wheel in ``folder``: copied from ``cache`` when made of the same
    inputs before (a rebuild under ``mkdocs serve`` saves setuptools' 0.3 s), else built
    (see :class:`ReaderWheel`, which can start the build before it is needed)."""
    return ReaderWheel(root, cache).publish(folder)


class ReaderWheel:
    """The project's wheel, from the moment this is made until :meth:`publish` or :meth:`stop`.

    Taken from ``cache`` when made of the same inputs before (:func:`wheel_key`);
    else its build starts now, in a process of its own, so that a site's build can
    start it before its pages run and publish it after they render: setuptools'
    0.3 s then pass while a core waits for the pages' fork server, not after the
    last page.

    A kept wheel is published only if it is what was kept (:func:`_kept_wheel`);
    one that is not is built again and kept anew, said in one INFO line.

    Args:
        root: The folder of ``pyproject.toml``.
        cache: Where wheels are kept, by what they are made of; ``None``: always built.

    Raises:
        RuntimeError: The project's package sits in the project's folder itself.
    """

    def __init__(self, root: Path, cache: Path | None) -> None:
        self._kept = cache / wheel_key(root) if cache is not None else None
        self._found: tuple[str, bytes] | None = None
        if self._kept is not None:
            self._found, problem = _kept_wheel(self._kept)
            if self._found is None and problem:
                where = os.path.relpath(self._kept, root)
                log.info(f"the kept wheel in {where} is not used ({problem}); building it again")
        self._build = _WheelBuild(root) if self._found is None else None

    def publish(self, folder: Path) -> Path:
        """Wait for the wheel, keep it if it was built, and write it into ``folder``.

        Returns:
            The wheel's path in ``folder``.

        Raises:
            RuntimeError: The build failed; the message ends with setuptools' last lines.
        """
        found = self._found
        if found is None:
            assert self._build is not None
            found = self._build.wait()
            self._build = None
            if self._kept is not None:
                _keep(*found, self._kept)
            self._found = found
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / found[0]
        target.write_bytes(found[1])
        return target

    def stop(self) -> None:
        """End the build if it still runs (the site's build failed or was stopped)."""
        if self._build is not None:
            self._build.stop()
            self._build = None


#: The lines of setuptools' output a failed build's message shows at most.
_SHOWN = 20


class _WheelBuild:
    """setuptools building the project's wheel from a copy of its inputs, in a process
    started at once, so the checkout is left untouched."""

    def __init__(self, root: Path) -> None:
        readme, sources = _inputs(root)
        if any(Path(where) in (Path("."), Path("")) for where in sources):
            raise RuntimeError("the package must sit in a folder of its own (src/), not '.'")
        self._scratch = Path(scratch.folder("wheel"))
        try:
            copy = self._scratch / "project"
            copy.mkdir()
            shutil.copy2(root / "pyproject.toml", copy / "pyproject.toml")
            if readme:
                shutil.copy2(root / readme, copy / readme)
            for where in sources:
                if not (root / where).is_dir():
                    raise RuntimeError(
                        f"pyproject.toml puts the package in {where}/, which is no folder"
                    )
                shutil.copytree(root / where, copy / where, ignore=_SKIPPED)
            self._out = self._scratch / "dist"
            # Its output goes to files: a pipe no one reads while the pages run could fill.
            with (self._scratch / "log").open("w") as log_file:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys; from setuptools import build_meta; "
                        "print(build_meta.build_wheel(sys.argv[1]))",
                        str(self._out),
                    ],
                    cwd=copy,
                    env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    def wait(self) -> tuple[str, bytes]:
        """The wheel's name and bytes, once built; the scratch folder is removed.

        Raises:
            RuntimeError: The build failed; the message ends with the last lines of
                setuptools' output.
        """
        try:
            code = self._process.wait()
            output = (self._scratch / "log").read_text(errors="replace")
            built = sorted(self._out.glob("*.whl")) if self._out.is_dir() else []
            if code != 0 or len(built) != 1:
                # Its end says why; the rest (each file copied, a traceback's frames)
                # would bury the build's own last lines.
                count = len(output.rstrip("\n").splitlines())
                last = tail(output, lines=_SHOWN)
                said = (
                    f"the last {len(last.splitlines())} of setuptools' {count} lines"
                    if count > _SHOWN
                    else "setuptools said"
                )
                raise RuntimeError(f"building the wheel failed; {said}:\n{last}")
            return built[0].name, built[0].read_bytes()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def stop(self) -> None:
        """Kill the build and remove its scratch folder."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)


def _keep(name: str, data: bytes, kept: Path) -> None:
    """Keep the wheel ``name`` (its bytes: ``data``) in ``kept``, with its digest."""
    # Each file whole or not at all, for a build beside (a cache that cannot be
    # written is no error): the wheel first, then the digest that vouches for it.
    write_atomically(kept / name, data, prefix=".wheel-")
    text = f"{hashlib.sha256(data).hexdigest()}  {name}\n"
    write_atomically(kept / _DIGEST, text, prefix=".digest-")


def _kept_wheel(kept: Path) -> tuple[tuple[str, bytes] | None, str]:
    """The name and bytes of the wheel kept in ``kept``, if it is whole and what was
    kept; else ``None`` and what is wrong with it (``""``: nothing is kept).

    What was kept: its SHA-256 matches the digest written beside it, it is a zip whose
    every member passes its CRC check, and every member is in the wheel's ``RECORD``
    with the hash of its bytes (PEP 376, PEP 427).
    """
    try:
        text = (kept / _DIGEST).read_text()
    except FileNotFoundError:
        return None, "no digest" if any(kept.glob("*.whl")) else ""
    except (OSError, UnicodeDecodeError) as error:
        return None, f"its digest cannot be read: {error}"
    value, _, name = text.rstrip("\n").partition("  ")
    if not re.fullmatch(r"[0-9a-f]{64}", value) or not re.fullmatch(r"[\w.+-]+\.whl", name):
        return None, "its digest cannot be read"
    try:
        data = (kept / name).read_bytes()
    except OSError as error:
        return None, f"it cannot be read: {error}"
    if hashlib.sha256(data).hexdigest() != value:
        return None, "its bytes do not match its digest"
    problem = _record_problem(data)
    return (None, problem) if problem else ((name, data), "")


def _record_problem(data: bytes) -> str:
    """What is wrong with the wheel ``data`` as a zip and against its ``RECORD``, or ``""``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            names = wheel.namelist()
            records = [name for name in names if re.fullmatch(r"[^/]+\.dist-info/RECORD", name)]
            if len(records) != 1:
                return "it has no RECORD"
            rows = list(csv.reader(io.StringIO(wheel.read(records[0]).decode())))
            hashes = {row[0]: row[1] for row in rows if row}
            if sorted(hashes) != sorted(names):
                return "its RECORD does not list its files"
            for name in names:
                if name == records[0]:
                    continue
                algorithm, _, value = hashes[name].partition("=")
                found = hashlib.new(algorithm, wheel.read(name)).digest()
                if base64.urlsafe_b64encode(found).rstrip(b"=").decode() != value:
                    return f"{name} does not match its RECORD"
    except (zipfile.BadZipFile, OSError, ValueError, IndexError, UnicodeDecodeError) as error:
        return f"it is no whole wheel: {error}"
    return ""


def build_wheel(root: Path, folder: Path) -> Path:
    """Build the project's wheel into ``folder``, leaving the checkout untouched.

    Args:
        root: The folder of ``pyproject.toml``.
        folder: Where the wheel goes.

    Returns:
        The wheel's path.

    Raises:
        RuntimeError: The build failed; the message ends with setuptools' last lines.
    """
    return ReaderWheel(root, None).publish(folder)


def install_html(package: ReaderPackage) -> str:
    """The paragraph under a page's downloads that says how to install the package."""
    return (
        f"<p>The notebook's first cell installs what it imports. For the script, install "
        f"it first{escape(package.with_python)}:</p>\n"
        f'<pre class="docexec-install"><code>{escape(package.command)}</code></pre>\n'
    )


def notebook_install_cell(package: ReaderPackage) -> str:
    """A notebook's first code cell: install the package unless it is there as the page had it.

    It installs when the package is missing, is another version than the site's, or
    lacks what its extras add (a reader who installed it without them). A failed
    install stops "Run all" with one line that says what to install (IPython shows a
    ``UsageError`` as its message alone, without a traceback).
    """
    advice = f"run {package.command}{package.with_python}, then run this notebook again"
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
    """A script's first lines: stop with one line that says what to install, unless the
    package is installed as the page had it (the notebook's cell asks the same: its
    version, and what its extras add)."""
    wanted = f"{package.name} {package.version}".strip()
    if package.extras:
        wanted += f" with [{','.join(package.extras)}]"
    python = f" (Python {package.python})" if package.python else ""
    advice = f"This script needs {wanted}: {package.command}{python}"
    return (
        f"from importlib import metadata\n\n\n"
        f"def _installed(name: str) -> str | None:\n"
        f"    try:\n"
        f"        return metadata.version(name)\n"
        f"    except metadata.PackageNotFoundError:\n"
        f"        return None\n\n\n"
        f"if _installed({package.name!r}) != {package.version or None!r} "
        f"or not all(\n"
        f"    map(_installed, {list(package.needs)!r})\n"
        f"):\n"
        f"    sys.exit({advice!r})"
    )
