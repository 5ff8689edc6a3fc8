"""docexec.package: the wheel the site publishes for readers and the command that installs it."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import sites
import yaml
from conftest import build_in_process

from docexec import package
from docexec.package import (
    ReaderWheel,
    build_wheel,
    cached_wheel,
    install_html,
    notebook_install_cell,
    reader_package,
    script_install_check,
    wheel_key,
)

ROOT = Path(__file__).resolve().parent.parent
SITE = "https://owner.github.io/learnable-parameters/"


def test_the_command_installs_the_projects_wheel_from_the_site_with_its_extras():
    package = reader_package(ROOT, "learnable-parameters[pages]", SITE)
    assert package.wheel == "learnable_parameters-0.1.0-py3-none-any.whl"
    assert package.command == (
        'pip install "learnable-parameters[pages] @ '
        'https://owner.github.io/learnable-parameters/learnable_parameters-0.1.0-py3-none-any.whl"'
    )
    assert package.python == "3.11"  # requires-python ">=3.11,<3.12", as a reader says it


@pytest.mark.parametrize(
    ("requirement", "site", "message"),
    [
        ("learnable-parameters[pages", SITE, "is not a name with extras"),
        ("torch[pages]", SITE, "'torch' is not this project"),
        ("learnable-parameters[plots]", SITE, "pyproject.toml has no extra plots"),
        ("learnable-parameters[pages]", "", "site_url, which is not set"),
    ],
)
def test_a_wrong_package_option_says_what_is_wrong(requirement, site, message):
    with pytest.raises(ValueError, match=message):
        reader_package(ROOT, requirement, site)


def test_a_package_option_without_a_pyproject_says_where_it_looked(tmp_path):
    with pytest.raises(ValueError, match="pyproject.toml beside mkdocs.yml .*: there is none"):
        reader_package(tmp_path, "tiny", SITE)


def test_a_package_option_says_when_setuptools_cannot_build_a_wheel(monkeypatch):
    def version(name: str) -> str:
        if name == "setuptools":
            return "65.5.0"  # a fresh venv's, before setuptools built wheels alone
        raise package.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(package.metadata, "version", version)
    with pytest.raises(ValueError, match=r"setuptools 65\.5\.0, .*pip install 'setuptools>=70\.1'"):
        reader_package(ROOT, "learnable-parameters[pages]", SITE)


@pytest.mark.parametrize(
    ("tool", "folder"),
    [
        ('[tool.setuptools]\npackages = ["tiny"]\n', "tiny"),  # listed, in the project's folder
        (
            '[tool.setuptools]\npackages = ["tiny"]\npackage-dir = {tiny = "lib/tiny"}\n',
            "lib/tiny",
        ),
        ("", "src/tiny"),  # found by setuptools' automatic discovery
    ],
)
def test_the_wheel_holds_the_package_however_setuptools_is_told_where(tmp_path, tool, folder):
    root = tmp_path / "project"
    (root / folder).mkdir(parents=True)
    (root / folder / "__init__.py").write_text("VALUE = 1\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "tiny"\nversion = "1.0"\n{tool}'
    )
    wheel = cached_wheel(root, tmp_path / "site", None)
    assert zipfile.ZipFile(wheel).read("tiny/__init__.py") == b"VALUE = 1\n"


def test_a_package_folder_that_is_not_there_is_named(tmp_path):
    root = tiny_project(tmp_path / "project")
    text = (root / "pyproject.toml").read_text().replace('where = ["src"]', 'where = ["lib"]')
    (root / "pyproject.toml").write_text(text)
    with pytest.raises(RuntimeError, match=r"puts the package in lib/, which is no folder"):
        cached_wheel(root, tmp_path / "site", None)


def test_a_project_that_names_no_python_is_not_said_to_need_one(tmp_path):
    project = tiny_project(tmp_path / "project")
    said = reader_package(project, "tiny", SITE)
    assert said.python == ""
    result = run_script_check(said, tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"This script needs tiny 1.0: {said.command}\n"
    assert "with Python" not in install_html(said) + notebook_install_cell(said)


def test_the_wheel_is_the_same_bytes_twice_and_leaves_the_checkout_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    status = ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"]
    before = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
    first = build_wheel(ROOT, tmp_path / "one")
    second = build_wheel(ROOT, tmp_path / "two")
    after = subprocess.run(status, cwd=ROOT, capture_output=True, text=True).stdout
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    assert first.name == reader_package(ROOT, "learnable-parameters", SITE).wheel
    names = zipfile.ZipFile(first).namelist()
    assert "learnable_parameters/training.py" in names
    assert not [name for name in names if "__pycache__" in name]
    assert {info.date_time for info in zipfile.ZipFile(first).infolist()} == {
        (2023, 11, 14, 22, 13, 20)
    }
    assert before == after


#: The ways an installed package is not as the page had it, as changes to the package.
NOT_AS_THE_PAGE_HAD_IT = pytest.mark.parametrize(
    "change",
    [
        {"name": "no-such-distribution"},  # the package is missing
        {"version": "0.0.1"},  # another version is installed
        {"needs": ("scikit-learn", "no-such-distribution")},  # without what an extra adds
    ],
    ids=["missing", "another-version", "without-its-extras"],
)


def run_script_check(package, tmp_path) -> subprocess.CompletedProcess:
    """Run a script that starts with the check for ``package``, then prints "ran"."""
    script = tmp_path / "page.py"
    script.write_text(f"import sys\n\n{script_install_check(package)}\nprint('ran')\n")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True)


@NOT_AS_THE_PAGE_HAD_IT
def test_a_script_says_in_one_line_what_to_install_unless_the_page_had_it_so(change, tmp_path):
    package = reader_package(ROOT, "learnable-parameters[pages]", SITE)
    ran = run_script_check(package, tmp_path)  # this venv has it, with its extras
    assert (ran.returncode, ran.stdout) == (0, "ran\n"), ran.stderr
    changed = replace(package, **change)
    result = run_script_check(changed, tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"This script needs {changed.name} {changed.version} with [pages]: "
        f"{changed.command} (Python 3.11)\n"
    )


def test_the_notebook_cell_does_nothing_where_the_package_is_importable(tmp_path):
    cell = notebook_install_cell(reader_package(ROOT, "learnable-parameters[pages]", SITE))
    script = tmp_path / "cell.py"
    script.write_text(cell + "\nprint('installed already')\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "installed already\n"


def run_install_cell(package, monkeypatch) -> list[list[str]]:
    """Run the notebook's install cell here, with pip replaced by a recorder: what it ran."""
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda args, **_: calls.append(args))
    from IPython.core.error import UsageError

    with contextlib.suppress(UsageError):  # the recorder installed nothing
        exec(notebook_install_cell(package), {})
    return calls


@NOT_AS_THE_PAGE_HAD_IT
def test_the_notebook_cell_installs_unless_the_package_is_there_as_the_page_had_it(
    change, monkeypatch
):
    package = reader_package(ROOT, "learnable-parameters[pages]", SITE)
    assert package.needs == ("latex2mathml", "scikit-learn")
    assert run_install_cell(package, monkeypatch) == []  # this venv has it, with its extras
    changed = replace(package, **change)
    calls = run_install_cell(changed, monkeypatch)
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", changed.requirement]]


def test_the_wheel_is_built_again_only_when_what_it_is_made_of_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    project = tmp_path / "project"
    (project / "src" / "tiny").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny"\nversion = "1.0"\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    module = project / "src" / "tiny" / "__init__.py"
    module.write_text("VALUE = 1\n")
    cache = tmp_path / "cache"
    first = cached_wheel(project, tmp_path / "one", cache)
    assert first.read_bytes() == build_wheel(project, tmp_path / "fresh").read_bytes()
    key = wheel_key(project)
    (project / "src" / "tiny" / "__pycache__").mkdir()
    (project / "src" / "tiny" / "__pycache__" / "x.pyc").write_bytes(b"not a source")
    assert wheel_key(project) == key  # bytecode is not what the wheel is made of
    assert cached_wheel(project, tmp_path / "two", cache).read_bytes() == first.read_bytes()
    module.write_text("VALUE = 2\n")
    assert wheel_key(project) != key
    third = cached_wheel(project, tmp_path / "three", cache)
    assert b"VALUE = 2" in zipfile.ZipFile(third).read("tiny/__init__.py")
    assert len(list(cache.iterdir())) == 2


def tiny_project(root: Path) -> Path:
    (root / "src" / "tiny").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tiny"\nversion = "1.0"\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    (root / "src" / "tiny" / "__init__.py").write_text("VALUE = 1\n")
    return root


def garbage_everywhere(kept: Path) -> None:
    for path in kept.iterdir():
        path.write_bytes(b"garbage")


def another_valid_wheel(kept: Path) -> None:
    """A whole zip, its digest made to match, one member changed: only RECORD tells."""
    (wheel,) = kept.glob("*.whl")
    with zipfile.ZipFile(wheel) as old:
        members = [(info, old.read(info)) for info in old.infolist()]
    with zipfile.ZipFile(wheel, "w") as new:
        for info, data in members:
            new.writestr(info, data.replace(b"VALUE = 1", b"VALUE = 9"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (kept / "SHA256SUM").write_text(f"{digest}  {wheel.name}\n")


def one_byte_changed(kept: Path) -> None:
    (wheel,) = kept.glob("*.whl")
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 1
    wheel.write_bytes(bytes(data))


def no_digest(kept: Path) -> None:
    (kept / "SHA256SUM").unlink()


@pytest.mark.parametrize(
    "damage", [garbage_everywhere, another_valid_wheel, one_byte_changed, no_digest]
)
def test_a_kept_wheel_that_is_not_what_was_kept_is_built_again_said_once(
    tmp_path, monkeypatch, caplog, damage
):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    project = tiny_project(tmp_path / "project")
    cache = tmp_path / "cache"
    fresh = build_wheel(project, tmp_path / "fresh").read_bytes()
    cached_wheel(project, tmp_path / "one", cache)
    (kept,) = cache.iterdir()
    damage(kept)
    caplog.set_level(logging.INFO)
    published = cached_wheel(project, tmp_path / "two", cache)
    assert published.read_bytes() == fresh
    said = [r.getMessage() for r in caplog.records if "kept wheel" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("; building it again"), said
    caplog.clear()
    assert cached_wheel(project, tmp_path / "three", cache).read_bytes() == fresh
    assert not [r for r in caplog.records if "kept wheel" in r.getMessage()]  # kept anew


def test_a_failed_wheel_build_says_setuptools_last_lines(tmp_path):
    project = tiny_project(tmp_path / "project")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'version = "1.0"\n', 'version = "1.0"\ndependencies = ["a ((("]\n'
        )
    )
    with pytest.raises(RuntimeError) as caught:
        ReaderWheel(project, None).publish(tmp_path / "site")
    first, *shown = str(caught.value).splitlines()
    # setuptools prints the offending rule, then a traceback: only its end is shown.
    match = re.fullmatch(
        r"building the wheel failed; the last 20 of setuptools' (\d+) lines:", first
    )
    assert match and int(match[1]) > 20, first
    assert len(shown) == 20 and "must be pep508" in shown[-1], shown


def test_the_wheel_key_names_the_installed_distributions(tmp_path, monkeypatch):
    project = tiny_project(tmp_path / "project")
    key = wheel_key(project)
    installed = package.installed_distributions()
    monkeypatch.setattr(package, "installed_distributions", lambda: [*installed, "tool==2"])
    assert wheel_key(project) != key


def test_the_wheel_is_made_of_the_sources_as_they_were_when_its_build_began(tmp_path, monkeypatch):
    # A site's build begins the wheel before its pages run, and publishes it after.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    project = tiny_project(tmp_path / "project")
    wheel = ReaderWheel(project, tmp_path / "cache")
    (project / "src" / "tiny" / "__init__.py").write_text("VALUE = 2\n")
    published = wheel.publish(tmp_path / "site")
    assert zipfile.ZipFile(published).read("tiny/__init__.py") == b"VALUE = 1\n"


#: Put first on PYTHONPATH: a Python started in a wheel's build folder says where it
#: is, then hangs there.
HANGS_IN_A_WHEEL_BUILD = """\
import os, pathlib, time
if "docexec-wheel-" in os.getcwd():
    said = pathlib.Path(__file__).with_name("said")
    said.write_text(f"{os.getpid()} {os.getcwd()}")
    said.rename(said.with_name("hung"))
    time.sleep(120)
"""


@pytest.mark.site
def test_a_page_that_fails_while_the_wheel_builds_stops_the_build_and_its_folder(tmp_path):
    hang = tmp_path / "hang"
    hang.mkdir()
    (hang / "sitecustomize.py").write_text(HANGS_IN_A_WHEEL_BUILD)
    hung = hang / "hung"
    page = (
        f'# A\n\n```python exec="on"\nimport pathlib, time\n'
        f"while not pathlib.Path({str(hung)!r}).exists():\n    time.sleep(0.05)\n"
        f'{{}}["missing"]\n```\n'
    )
    root = tiny_project(tmp_path / "site")
    sites.write_site(root, {"index.md": page}, preload=(), site_url="https://example.org/")
    config = yaml.safe_load((root / "mkdocs.yml").read_text())
    config["plugins"][0] = {"docexec": {"package": "tiny"}}
    (root / "mkdocs.yml").write_text(yaml.safe_dump(config))
    result = build_in_process(root, {"PYTHONPATH": str(hang)})
    assert result.returncode == 1
    assert "docs/index.md:7: KeyError: 'missing'" in result.log
    pid, folder = hung.read_text().split(" ", 1)
    assert not Path(f"/proc/{pid}").exists()  # killed, and reaped
    assert not Path(folder).parent.exists()
