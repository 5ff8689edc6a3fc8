"""The take-aways run where a reader is: a fresh venv, outside the repository.

One venv per session holds only pip, torch and a notebook runner (nbclient, ipykernel),
as a reader's machine might. The built site is served on 127.0.0.1 (nothing comes from
its real address), and every take-away is copied out of it with the site's address
changed to the served one, so the install the pages name
(``pip install "<package>[extras] @ <site>/<wheel>"``) fetches the wheel the build
published. A notebook's first cell installs the package; after that every ``.ipynb``
and every ``.py`` of the site runs top to bottom. Before it is installed, a script and
a failing install each say in one line what to install. Every script prints, block by
block, what its page shows: each block's output is compared with the page's record of
that block (the execution cache's, which the build's page was rendered from). And no
address on the site, the install's included, is a placeholder.

The scripts run as children forked from one interpreter of the reader's venv that has
imported torch and nothing else of the reader's (see forks), which saves each the import
(2.7 s of CPU of its 2.6 to 7). That is a faithful ``python script.py``:
the script runs in a new ``__main__`` module from its own folder (its name the only
argument, its folder first on sys.path), so every name it uses needs its own imports;
the server starts with ``PYTHONHASHSEED=0``, the hash seed the script would run itself
again with (it sees it set and goes on), and the script seeds and sets torch's threads
itself, as it would; stderr and stdout are one unbuffered stream; the exit code is the
interpreter's. Its output is the same bytes as a ``python script.py`` run's (but for the
memory addresses, which differ from run to run anyway). A whole ``python script.py``
run, its re-run with the page's hash seed included, still happens: the script that says
what to install runs so, here, and test_docexec_export's script that starts as its
page's process did. The notebooks after the first run likewise in kernels forked from
one that has imported torch (forks.kernel_server); the first, which installs the
package, and the failing install each start a kernel of their own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import venv
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from bs4 import BeautifulSoup
from conftest import venv_env
from forks import fork_server, kernel_server

from docexec.export import SCRIPT_BLOCK
from docexec.session import AddressStabilizer, as_terminal

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parent.parent

#: A guard against a hang, not a measurement.
TIMEOUT = 900
#: Runs notebooks with nbclient in the reader's venv; prints one line per failure.
NOTEBOOK_RUNNER = """
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

failed = 0
for name in sys.argv[1:]:
    path = Path(name)
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    # Stopped at once when done: a graceful stop waits 1 to 3 s on each kernel to exit.
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        failed += 1
        print(f"{path}: {error}")
sys.exit(1 if failed else 0)
"""


#: Runs a script as ``python SCRIPT`` runs it, in a child of the reader's interpreter
#: that has imported torch (see forks, and why this is faithful in the module's
#: docstring): the script's name its only argument, its folder first on sys.path, its
#: code (named by its full path) in a new ``__main__`` module.
SCRIPT_RUNNER = r"""
def run(request):
    import types
    from importlib.machinery import SourceFileLoader

    path = os.path.abspath(request["script"])
    sys.argv = [request["script"]]
    sys.path[0] = os.path.dirname(path)
    main = sys.modules["__main__"] = types.ModuleType("__main__")
    main.__file__, main.__cached__ = path, None
    main.__loader__ = SourceFileLoader("__main__", path)
    with open(path, "rb") as source:
        exec(compile(source.read(), path, "exec"), main.__dict__)
    return 0
"""


def reader_env(venv_dir: Path) -> dict[str, str]:
    """The environment of a shell with the reader's venv active."""
    # pip leaves bytecode to the first import, as --no-compile does: compiling the
    # whole of what the notebook's install cell brings (SciPy, scikit-learn) took
    # 10 of its 16 s, for modules that no page imports. "0": pip reads the variable
    # as the value of the option --no-compile negates, not of --no-compile itself
    # (a "double negative", pypa/pip#9955); PIP_NO_COMPILE=1 compiles everything.
    return dict(venv_env(venv_dir), PIP_NO_COMPILE="0")


def run(
    args: list[str], venv_dir: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``args`` from ``cwd`` in the reader's venv (``env``: more variables)."""
    return subprocess.run(
        args,
        cwd=cwd,
        env={**reader_env(venv_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def make_reader_venv(folder: Path) -> Path:
    """A fresh venv with pip, torch (the site's version) and a notebook runner, nothing else."""
    # pip comes from the index with the rest, installed by this venv's pip: ensurepip
    # took 5 s, compiling its own pip for the reader's venv.
    venv.create(folder, with_pip=False)
    version = torch.__version__.split("+")[0]
    # torch as pip is configured to find it, and from TORCH_INDEX when the environment
    # names one (`make test` exports the Makefile's: on a Linux machine without it,
    # PyPI's torch is the multi-GB CUDA build). One retry: an index that cannot be
    # reached (this machine reaches only PyPI) is passed over in a second, not a minute.
    index = os.environ.get("TORCH_INDEX")
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(folder / "bin" / "python"),
            "install",
            "--quiet",
            "--no-compile",  # a third faster; modules compile when first imported (as above)
            *(["--extra-index-url", index, "--retries", "1"] if index else []),
            "pip",
            f"torch=={version}",
            "nbclient",
            "ipykernel",
        ],
        folder,
        folder.parent,
    )
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="session", autouse=True)
def reader_venv_made(tmp_path_factory) -> Iterator[Future]:
    """The reader's venv, being made from this file's first test on, while the site is
    built (or the other worker's build is waited for): it needs nothing of the site."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(make_reader_venv, tmp_path_factory.mktemp("reader") / "venv")


@pytest.fixture(scope="session")
def reader_venv(reader_venv_made, built_site) -> Path:
    """A fresh venv with torch (the site's version) and a notebook runner, nothing else.

    Asked for after the built site, whichever order a test names them in: the site is
    built while the venv is made.
    """
    return reader_venv_made.result()


def site_address(built_site: Path) -> str:
    """The address the site was built for (its site_url), from the home page's canonical link."""
    soup = BeautifulSoup((built_site / "index.html").read_text(), "html.parser")
    return soup.select_one('link[rel="canonical"]')["href"]


@pytest.fixture(scope="session")
def takeaways(built_site, site_url, tmp_path_factory) -> Path:
    """Every .py and .ipynb of the site, copied out of the repository, pointing at site_url."""
    folder = tmp_path_factory.mktemp("takeaways")
    built_for = site_address(built_site)
    for path in [*built_site.rglob("*.py"), *built_site.rglob("*.ipynb")]:
        copy = folder / path.relative_to(built_site)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text().replace(built_for, site_url))
    return folder


def install_command(built_site: Path, site_url: str) -> str:
    """The install command the pages show, pointing at site_url; one for the whole site."""
    commands = set()
    for page in built_site.rglob("index.html"):
        for code in BeautifulSoup(page.read_text(), "html.parser").select(
            ".docexec-provenance pre code"
        ):
            commands.add(code.get_text().replace(site_address(built_site), site_url))
    assert len(commands) == 1, f"the pages name {len(commands)} install commands: {commands}"
    return commands.pop()


def first_notebook(takeaways: Path) -> Path:
    return min(takeaways.rglob("*.ipynb"))


def test_a_script_says_in_one_line_what_to_install(reader_venv, takeaways, built_site, site_url):
    script = min(takeaways.rglob("*.py"))
    result = run([str(reader_venv / "bin" / "python"), script.name], reader_venv, script.parent)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert install_command(built_site, site_url) in result.stderr


def test_a_failed_install_stops_the_notebook_with_one_line(
    reader_venv, takeaways, site_url, tmp_path
):
    notebook = json.loads(first_notebook(takeaways).read_text())
    install = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    missing = f"{site_url}no-such-package-0.1.0-py3-none-any.whl"
    install["source"] = [
        re.sub(r"@ http[^'\"]+\.whl", f"@ {missing}", line) for line in install["source"]
    ]
    assert missing in "".join(install["source"])
    notebook["cells"] = [install]
    path = tmp_path / "install.ipynb"
    path.write_text(json.dumps(notebook))
    result = run(
        [str(reader_venv / "bin" / "python"), "-c", NOTEBOOK_RUNNER, str(path)],
        reader_venv,
        tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "UsageError: Could not install learnable-parameters: run pip install" in result.stdout
    assert "Traceback" not in result.stdout


@pytest.fixture(scope="session")
def installed(reader_venv, takeaways, built_site, site_url) -> Path:
    """The reader's venv after the first notebook's install cell and the pages' command."""
    python = str(reader_venv / "bin" / "python")
    # Found where an import would find it; importing it (torch with it) costs 3 s of CPU,
    # and every notebook and script imports it next.
    found = (
        "import importlib.util, sys; sys.exit(not importlib.util.find_spec('learnable_parameters'))"
    )
    check = [python, "-c", found]
    assert run(check, reader_venv, takeaways).returncode != 0, "the venv is not fresh"
    notebook = first_notebook(takeaways)
    result = run([python, "-c", NOTEBOOK_RUNNER, notebook.name], reader_venv, notebook.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run(check, reader_venv, takeaways).returncode == 0, "the notebook installed nothing"
    # The command the pages show works too (here it finds everything installed).
    command = shlex.split(install_command(built_site, site_url))
    assert command[0] == "pip"
    result = run([python, "-m", *command], reader_venv, takeaways)
    assert result.returncode == 0, result.stderr
    return reader_venv


def test_every_notebook_runs_in_a_readers_venv(installed, takeaways, tmp_path):
    # All but the first, which ran top to bottom in a kernel of its own as it installed
    # the package (installed). These run in kernels forked from one that has imported
    # torch and ipykernel's own modules (see forks.kernel_server): a fresh kernel each,
    # as Jupyter starts it, without the 3 to 4 s of CPU those imports take.
    first = first_notebook(takeaways)
    notebooks = sorted(str(path) for path in takeaways.rglob("*.ipynb") if path != first)
    assert len(notebooks) > 1
    python = str(installed / "bin" / "python")
    halves = [notebooks[0::2], notebooks[1::2]]  # one runner for each half
    with (
        kernel_server(python, tmp_path, reader_env(installed)) as jupyter_path,
        ThreadPoolExecutor(max_workers=2) as pool,  # the machine's cores are few
    ):
        results = list(
            pool.map(
                lambda half: run(
                    [python, "-c", NOTEBOOK_RUNNER, *half],
                    installed,
                    takeaways,
                    env={"JUPYTER_PATH": jupyter_path},
                ),
                halves,
            )
        )
    failures = [
        (result.stdout + result.stderr)[-5000:] for result in results if result.returncode != 0
    ]
    assert not failures, "\n".join(failures)


#: What the instrumented script prints where a block starts: a line no output holds.
MARK = "\x1edocexec-block "


def instrumented(script: Path) -> list[int]:
    """Make ``script`` print a mark where each block starts; the blocks' page lines.

    Each block opens with a comment at the left margin (``SCRIPT_BLOCK``), so a
    print after it is a statement of the script's own.
    """
    text = script.read_text()
    lines = [int(line) for line in SCRIPT_BLOCK.findall(text)]
    script.write_text(
        SCRIPT_BLOCK.sub(lambda m: f"{m[0]}\nprint({MARK!r} + {m[1]!r}, flush=True)", text)
    )
    return lines


def page_of(script: Path, takeaways: Path) -> str:
    """The page a take-away is made from: ``learning/learning.py`` is ``docs/learning.md``."""
    relative = script.relative_to(takeaways)
    folder = relative.parent
    if folder.name == script.stem:  # a page's own folder (use_directory_urls)
        folder = folder.parent
    return (Path("docs") / folder / f"{script.stem}.md").as_posix()


def shown_outputs(page: str) -> dict[int, str]:
    """What the page shows each block printed, by the block's first page line, from its
    record: a ``pycon`` block's transcript without its inputs."""
    assert os.environ.get("DOCEXEC_CACHE", "1") != "0", (
        "the take-aways are compared with the pages' execution records, which a build "
        "with DOCEXEC_CACHE=0 does not write"
    )
    record = json.loads((ROOT / ".cache" / "docexec" / f"{page}.json").read_text())
    shown = {}
    for block in record["blocks"]:
        output = block["output"]
        if block["signature"]["kind"] == "pycon":
            output = "".join(
                line
                for line in output.splitlines(keepends=True)
                if not re.match(r"(>>>|\.\.\.)( |$)", line.rstrip("\n"))
            )
        shown[block["line"]] = output
    return shown


def comparable(output: str) -> str:
    """An output without what differs between the page's process and a script by design.

    A traceback's frames name the page (``docs/x.md``, ``<stdin>``) there and the
    script here: what is compared is its first line and the exception it ends with.
    Tabs are compared as a terminal shows them, as a ``pycon`` transcript has them.
    """
    kept, in_frames = [], False
    for line in output.split("\n"):
        if line == "Traceback (most recent call last):":
            in_frames = True
            kept.append(line)
        elif in_frames and line.startswith(" "):
            continue
        else:
            in_frames = False
            kept.append(line)
    return "\n".join(kept).rstrip("\n").expandtabs(8)


def script_outputs(stdout: str) -> dict[int, str]:
    """What the instrumented script printed, by the page line of the block it printed in;
    published as the page publishes output (see docexec.session)."""
    stabilize, outputs = AddressStabilizer(), {}
    for chunk in stdout.split(MARK)[1:]:
        line, _, output = chunk.partition("\n")
        outputs[int(line)] = stabilize(as_terminal(output))
    return outputs


def test_every_script_prints_what_its_page_shows_in_a_readers_venv(installed, takeaways, tmp_path):
    scripts = sorted(takeaways.rglob("*.py"))
    assert len(scripts) > 1
    lines = {script: instrumented(script) for script in scripts}
    outputs = [tmp_path / f"{number}.txt" for number in range(len(scripts))]
    # Started with the hash seed each script would run itself again with, and its stderr
    # in its stdout, unbuffered, in the order written (as a pycon block shows them).
    env = dict(venv_env(installed), PYTHONHASHSEED="0", PYTHONUNBUFFERED="1")
    with fork_server(str(installed / "bin" / "python"), SCRIPT_RUNNER, env, parallel=2) as server:
        codes = server(
            [
                {
                    "script": script.name,
                    "cwd": str(script.parent),
                    "stdout": str(output),
                    "stderr": str(output),
                }
                for script, output in zip(scripts, outputs, strict=True)
            ]
        )
    failures = []
    for script, code, output in zip(scripts, codes, outputs, strict=True):
        name, stdout = script.relative_to(takeaways), output.read_text()
        if code != 0:
            failures.append(f"{name} failed:\n{stdout[-3000:]}")
            continue
        page = shown_outputs(page_of(script, takeaways))
        printed = script_outputs(stdout)
        assert lines[script] and sorted(printed) == sorted(page) == lines[script], name
        failures += [
            f"{name}: the block at {page_of(script, takeaways)}:{line} printed\n"
            f"{printed[line]}\nbut the page shows\n{page[line]}"
            for line in lines[script]
            if comparable(printed[line]) != comparable(page[line])
        ]
    assert not failures, "\n".join(failures)


#: Hosts that are placeholders (RFC 2606 and RFC 6761 names, an owner called "example").
PLACEHOLDER = re.compile(
    r"https?://(?:[\w.-]+\.)?(?:example\.(?:com|net|org)|[\w-]+\.(?:example|invalid|test)"
    r"|example\.github\.io|github\.com/example\b)",
    re.IGNORECASE,
)


def test_placeholder_hosts_are_recognised():
    for url in ["https://example.github.io/x/", "https://github.com/example/x", "http://a.test/"]:
        assert PLACEHOLDER.search(url), url
    for url in ["https://squidfunk.github.io/mkdocs-material/", "http://127.0.0.1:8000/"]:
        assert not PLACEHOLDER.search(url), url


def test_no_address_on_the_site_is_a_placeholder(built_site):
    found = []
    for path in sorted(built_site.rglob("*")):
        if path.suffix in {".html", ".ipynb", ".py", ".xml", ".json"}:
            found += [
                f"{path.relative_to(built_site)}: {m[0]}"
                for m in PLACEHOLDER.finditer(path.read_text())
            ]
    assert not found, "\n".join(found)
