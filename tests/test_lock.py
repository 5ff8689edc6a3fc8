"""requirements.lock: written by pip-compile, hash-checked, and exactly what is installed.

The lock holds every package `make setup` installs but torch (whose wheel, and so its
hash, depends on the index it comes from), each pinned with hashes; the build backend
(setuptools) included. What the project requires is read from the installed packages'
own metadata, walked from ``learnable-parameters[docs,test]``.
"""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PROJECT = "learnable-parameters"
EXTRAS = ("docs", "test")
# torch comes from TORCH_INDEX; a CUDA build of it (TORCH_INDEX=) brings these along.
OUTSIDE_THE_LOCK = re.compile(r"^(torch|nvidia-.*|triton|cuda-.*)$")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)")


def parse_lock(text: str) -> dict[str, tuple[str, int]]:
    """``{name: (version, number of hashes)}`` for each pin of a pip-compile output."""
    pins: dict[str, tuple[str, int]] = {}
    name = None
    for line in text.splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match.group("name"))
            pins[name] = (match.group("version"), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
        elif not line.startswith(" "):
            name = None
    return pins


def required(name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """``name`` and everything its installed metadata requires, with those extras, here."""
    found: set[str] = set()
    todo = [(canonicalize_name(name), extras)]
    while todo:
        name, extras = todo.pop()
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((canonicalize_name(requirement.name), tuple(requirement.extras)))
    return found


def test_the_lock_parser_reads_pins_and_their_hashes():
    text = (
        "#    pip-compile --generate-hashes\n"
        "mkdocs==1.6.1 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via x\n"
        "Jinja2==3.1.6 \\\n    --hash=sha256:cc\n"
        "# The following packages are considered to be unsafe in a requirements file:\n"
        "# torch\n"
    )
    assert parse_lock(text) == {"mkdocs": ("1.6.1", 2), "jinja2": ("3.1.6", 1)}


def test_every_pin_has_hashes_and_torch_is_left_to_its_index():
    pins = parse_lock(LOCK.read_text())
    assert pins, "no pin in requirements.lock"
    assert [name for name, (_, hashes) in pins.items() if hashes == 0] == []
    assert "setuptools" in pins  # the build backend, and torch needs it at run time
    assert [name for name in pins if OUTSIDE_THE_LOCK.match(name)] == []


def test_the_lock_is_exactly_what_the_project_installs_here():
    pins = parse_lock(LOCK.read_text())
    needed = required(PROJECT, EXTRAS) - {PROJECT}
    needed = {name for name in needed if not OUTSIDE_THE_LOCK.match(name)} | {"setuptools"}
    assert sorted(needed - pins.keys()) == [], "installed but not locked: run `make lock`"
    assert sorted(pins.keys() - needed) == [], "locked but installed by nothing: run `make lock`"
    installed = {name: metadata.version(name) for name in pins}
    assert {n: v for n, (v, _) in pins.items() if installed[n] != v} == {}, (
        "the venv is not what the lock says: run `make setup`"
    )


def test_make_lock_runs_pip_compile_with_hashes():
    result = subprocess.run(
        ["make", "-n", "lock"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    commands = result.stdout.replace("\\\n", " ").splitlines()  # joined at each backslash
    (compile_command,) = [line for line in commands if "pip-compile" in line]
    for option in ("--generate-hashes", "--all-build-deps", "--unsafe-package torch"):
        assert option in compile_command
    assert "pip-compile" in LOCK.read_text().split("\n\n")[0]  # its header: how it was made
