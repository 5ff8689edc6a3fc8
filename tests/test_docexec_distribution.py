"""docexec as another site gets it: its own distribution, in a venv of its own, on a site
written for markdown-exec.

One venv per session holds mkdocs-docexec, installed from its folder as pip installs
any project, and mkdocs-material: nothing of this site (no torch, no NumPy, no
learnable_parameters). A small site outside the repository, written as markdown-exec's
documentation shows (``md``, ``python``, ``pycon`` and ``bash`` fences, ``session``,
``source="tabbed-left"``, ``html``, ``result``, an included fragment), is built twice
there: with docexec added, and with markdown-exec alone. Its python blocks must come
out the same.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from conftest import venv_env
from sites import SUPERFENCES, TABBED, snippets, write_site

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "docexec"
#: A guard against a hung install or build, not a measurement.
TIMEOUT = 600


def pins() -> str:
    """The lock's ``name==version`` lines, as constraints: the venv gets what the site has."""
    return "".join(
        f"{match[1]}\n"
        for match in re.finditer(
            r"^([A-Za-z0-9._-]+==\S+)", (ROOT / "requirements.txt").read_text(), re.M
        )
    )


def clean_env(folder: Path) -> dict[str, str]:
    """A shell with ``folder``'s venv active, building as the tests build."""
    return dict(venv_env(folder), NO_MKDOCS_2_WARNING="1", SOURCE_DATE_EPOCH="1700000000")


def run(args: list[str], folder: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env=clean_env(folder), capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.fixture(scope="session")
def plugin_venv(tmp_path_factory) -> Path:
    """A fresh venv with mkdocs-docexec (from its folder) and mkdocs-material, nothing else."""
    scratch = tmp_path_factory.mktemp("plugin")
    folder = scratch / "venv"
    # No pip of its own (ensurepip took 5 s): this one installs into it, as into any.
    venv.create(folder, with_pip=False)
    pip = [sys.executable, "-m", "pip", "--python", str(folder / "bin" / "python")]
    constraints = scratch / "constraints.txt"
    constraints.write_text(pins())
    # Built from a copy, so that nothing (build/, *.egg-info) lands in the checkout.
    source = scratch / "docexec"
    shutil.copytree(
        PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    wheel_dir = scratch / "wheel"
    # Built as `make setup` builds: with the lock's setuptools, here in this venv, not
    # in an isolated one that pip fills from the index first (6 of the fixture's 25 s).
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheel_dir),
            str(source),
        ],
        folder,
        scratch,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = wheel_dir.glob("*.whl")
    result = run(
        [
            *pip,
            "install",
            "--quiet",
            "--no-compile",
            "--constraint",
            str(constraints),
            str(wheel),
            "mkdocs-material",
        ],
        folder,
        scratch,
    )
    assert result.returncode == 0, result.stderr
    return folder


def test_the_plugin_wheel_holds_docexec_and_its_assets_only(plugin_venv):
    [wheel] = (plugin_venv.parent / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert packages == {"docexec"}
    assert "docexec/assets/docexec.css" in names and "docexec/assets/provenance.html" in names


def test_the_plugins_venv_has_neither_torch_nor_this_site(plugin_venv):
    python = str(plugin_venv / "bin" / "python")
    check = "import importlib.util as u; print([m for m in ('torch', 'numpy', 'learnable_parameters') if u.find_spec(m)])"
    result = run([python, "-c", check], plugin_venv, plugin_venv.parent)
    assert result.stdout.strip() == "[]", result.stderr


PAGE = """\
# Home

```python exec="1" session="shared"
answer = 6 * 7
print(f"The answer is **{answer}**.")
```

```pycon exec="true" session="shared"
>>> answer + 1
>>> print("from pycon")
```

```python exec="on" result="text"
print("plain", "text")
```

```python exec="on" html="1"
print("<em>markup</em>")
```

```python exec="on" source="tabbed-left"
print("beside its source")
```

```bash exec="on"
echo "from bash"
```

````md exec="on"
Markdown that runs a block of its own:

```python exec="on"
print("from inside **md**")
```
````

--8<-- "fragment.md"
"""

FRAGMENT = """\
An included fragment:

```python exec="on" session="shared"
print(f"included, and the answer is still {answer}")
```
"""


def outputs(site: Path) -> list[str]:
    """The article's HTML, but for what docexec adds on purpose: its note, and pycon blocks."""
    soup = BeautifulSoup((site / "index.html").read_text(), "html.parser")
    article = soup.select_one("article")
    for extra in article.select(".docexec-provenance"):
        extra.decompose()
    return [
        str(child) for child in article.children if str(child).strip() and "pycon" not in str(child)
    ]


@pytest.fixture(scope="session")
def built(plugin_venv, tmp_path_factory) -> dict[str, Path]:
    """The same site built with markdown-exec alone and with docexec added."""
    sites = {}
    for name, docexec in {"markdown-exec": False, "docexec": True}.items():
        root = tmp_path_factory.mktemp(name)
        write_site(
            root,
            {"index.md": PAGE},
            docexec=docexec,
            preload=(),
            languages=None,
            theme="material",
            markdown_extensions=[SUPERFENCES, TABBED, snippets("snippets")],
        )
        (root / "snippets").mkdir()
        (root / "snippets" / "fragment.md").write_text(FRAGMENT)
        result = run(
            [str(plugin_venv / "bin" / "python"), "-m", "mkdocs", "build"], plugin_venv, root
        )
        assert result.returncode == 0, result.stderr
        sites[name] = root / "site"
    return sites


def test_the_site_builds_with_docexec_in_a_venv_without_torch(built):
    html = (built["docexec"] / "index.html").read_text()
    assert "docexec-provenance" in html
    for printed in (
        "The answer is <strong>42</strong>.",
        "plain text",
        "<em>markup</em>",
        "beside its source",
        "from bash",
        "from inside <strong>md</strong>",
        "included, and the answer is still 42",
        "from pycon",
    ):
        assert printed in html, printed


def test_its_python_outputs_are_markdown_execs(built):
    assert outputs(built["docexec"]) == outputs(built["markdown-exec"])


def test_pycon_is_the_interpreters_transcript(built):
    soup = BeautifulSoup((built["docexec"] / "index.html").read_text(), "html.parser")
    transcripts = [pre.get_text() for pre in soup.select("pre") if ">>>" in pre.get_text()]
    assert transcripts == [
        textwrap.dedent(
            """\
            >>> answer + 1
            43
            >>> print("from pycon")
            from pycon
            """
        )
    ]
