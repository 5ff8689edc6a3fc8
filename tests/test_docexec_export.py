"""docexec.export: pages as notebooks and scripts that run at home."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from docexec.export import (
    SCRIPT_BLOCK,
    ExecutedBlock,
    PageExport,
    pycon_statements,
    to_notebook,
    to_script,
)
from docexec.snippets import expand_snippets
from docexec.worker import Block, PageWorker

ROOT = Path(__file__).resolve().parent.parent

PAGE = PageExport(
    title="Shapes",
    parts=[
        "# Shapes\n\nSome prose.",
        ExecutedBlock(
            "pycon", ">>> x = [1, 2]\n>>> len(x)\n>>> for i in x:\n...     print(i)\n..."
        ),
        "More prose.",
        ExecutedBlock("pycon", ">>> y = 3\n>>> x[5]", raises="IndexError", raised=[1]),
        ExecutedBlock("python", "print('done', y)"),
    ],
)


def execute(notebook) -> None:
    """Run a notebook in a fresh kernel, stopped at once when done (a graceful stop
    waits a second or more on the kernel to exit)."""
    from nbclient import NotebookClient

    NotebookClient(
        notebook, timeout=120, kernel_name="python3", shutdown_kernel="immediate"
    ).execute()


def test_pycon_statements_strip_prompts_and_keep_blocks_whole():
    assert pycon_statements(">>> a = 1\n>>> for i in []:\n...     pass\n...\n>>> a") == [
        "a = 1",
        "for i in []:\n    pass",
        "a",
    ]


def test_notebook_is_valid_and_deterministic():
    text = to_notebook(PAGE, "stamp")
    assert text == to_notebook(PAGE, "stamp")
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert kinds == [
        "markdown",
        "code",  # the start of the page's process: seeds, hashing, build date
        "markdown",
        "code",
        "code",
        "code",
        "markdown",
        "code",
        "code",
        "code",
    ]
    tagged = [
        cell.source
        for cell in notebook.cells
        if "raises-exception" in cell.metadata.get("tags", [])
    ]
    assert tagged == ["x[5]"]


def test_notebook_runs_top_to_bottom_in_a_fresh_kernel():
    notebook = nbformat.reads(to_notebook(PAGE, "stamp"), as_version=4)
    execute(notebook)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    texts = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "2" in texts and "done 3" in texts
    assert any(o.get("ename") == "IndexError" for o in outputs)


def test_script_runs_and_prints_what_the_page_shows(tmp_path):
    script = tmp_path / "shapes.py"
    script.write_text(to_script(PAGE, "stamp"))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2\n1\n2\nTraceback (most recent call last):")
    assert "IndexError: list index out of range" in result.stdout
    assert result.stdout.endswith("done 3\n")
    assert "# Some prose." in script.read_text()


def test_snippets_are_expanded_from_base_paths(tmp_path):
    (tmp_path / "code.py").write_text("a = 1\nb = 2\n")
    text = 'before\n    --8<-- "code.py"\nafter\n--8<-- "missing.py"'
    # As pymdownx.snippets expands it: the file's final line ending is an empty line,
    # indented as the include is.
    assert expand_snippets(text, [tmp_path / "nowhere", tmp_path]) == (
        'before\n    a = 1\n    b = 2\n    \nafter\n--8<-- "missing.py"'
    )


def test_notebook_json_has_no_timestamps():
    assert "date" not in json.loads(to_notebook(PAGE, "s"))["metadata"]


def test_script_shows_tuples_and_commented_expressions_as_the_prompt_does(tmp_path):
    page = PageExport(
        title="Values",
        parts=[ExecutedBlock("pycon", ">>> a, b = 1, 2\n>>> a, b\n>>> a + b  # the sum\n>>> None")],
    )
    script = tmp_path / "values.py"
    script.write_text(to_script(page, "stamp"))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "(1, 2)\n3\n"


def test_notebook_draws_html_and_markdown_output_as_the_page_does():
    page = PageExport(
        title="Drawn",
        parts=[
            ExecutedBlock("python", "print('<svg><title>x</title></svg>')", renders="html"),
            ExecutedBlock("python", "for n in (1, 2):\n    print(f'| {n} |')", renders="markdown"),
            ExecutedBlock("python", "print('plain')"),
        ],
    )
    notebook = nbformat.reads(to_notebook(page, "stamp"), as_version=4)
    execute(notebook)
    _start, html, markdown, text = (
        cell.outputs for cell in notebook.cells if cell.cell_type == "code"
    )
    assert [o["data"]["text/html"] for o in html] == ["<svg><title>x</title></svg>\n"]
    assert [o["data"]["text/markdown"] for o in markdown] == ["| 1 |\n| 2 |\n"]
    assert [o.get("text") for o in text] == ["plain\n"]


def test_script_catches_an_exception_that_is_not_a_builtin_name(tmp_path):
    page = PageExport(
        title="Json",
        parts=[
            ExecutedBlock(
                "pycon", '>>> import json\n>>> json.loads("{")', "JSONDecodeError", raised=[1]
            )
        ],
    )
    script = tmp_path / "json_page.py"
    script.write_text(to_script(page, "stamp"))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "json.decoder.JSONDecodeError: Expecting property name" in result.stdout


#: What a process's start decides: its generators, torch's threads and the build date.
STARTED = (
    "import os, random, numpy, torch\n"
    "print(random.random(), numpy.random.rand(), torch.rand(1).item(),\n"
    "      torch.get_num_threads(), os.environ.get('SOURCE_DATE_EPOCH'))"
)
#: What string hashing decides: printed by a process started with the page's hashing.
HASHED = "print(hash('page'), list({'a', 'b', 'c', 'd'}))"


def page_started(monkeypatch, seed: int) -> str:
    """What STARTED prints in a page's process, started with ``seed`` by the worker."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    worker = PageWorker(ROOT, "docs/start.md", seed, preload=("torch",))  # as this site
    try:
        return worker.run(Block("python", STARTED, "", 1), 60).output
    finally:
        worker.close()


def hashed_as_on_the_page() -> str:
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # what the plugin sets for every page
    return subprocess.run(
        [sys.executable, "-c", HASHED], env=env, capture_output=True, text=True, check=True
    ).stdout


def test_a_script_starts_as_its_pages_process_did(tmp_path, monkeypatch):
    page = PageExport(
        title="Start", parts=[ExecutedBlock("python", f"{STARTED}\n{HASHED}", line=12)]
    )
    script = tmp_path / "start.py"
    script.write_text(to_script(page, "stamp", seed=7, epoch="1700000000"))
    assert [int(line) for line in SCRIPT_BLOCK.findall(script.read_text())] == [12]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHASHSEED", "SOURCE_DATE_EPOCH")}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == page_started(monkeypatch, 7) + hashed_as_on_the_page()
    assert page_started(monkeypatch, 8) not in result.stdout  # the seed is the page's


def test_a_notebook_starts_as_its_pages_process_did(monkeypatch):
    child = (
        "import subprocess, sys\n"
        f"print(subprocess.run([sys.executable, '-c', {HASHED!r}], capture_output=True,"
        " text=True).stdout, end='')"
    )
    page = PageExport(
        title="Start", parts=[ExecutedBlock("python", STARTED), ExecutedBlock("python", child)]
    )
    notebook = nbformat.reads(to_notebook(page, "stamp", seed=7, epoch="1700000000"), as_version=4)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)  # a kernel that hashes at random
    execute(notebook)
    start, started, hashed = (
        "".join(o.get("text", "") for o in cell.outputs)
        for cell in notebook.cells
        if cell.cell_type == "code"
    )
    # The kernel's own hashing was fixed when it started: the cell says so, in one line.
    assert start.count("\n") == 1 and "start Jupyter with PYTHONHASHSEED=0" in start
    assert started == page_started(monkeypatch, 7)
    assert hashed == hashed_as_on_the_page()  # what the notebook starts hashes as the page


def test_script_echoes_each_value_the_prompt_echoes_in_a_block_too(tmp_path):
    from docexec.session import new_session_module, run_pycon

    source = (
        ">>> for i in range(2):\n...     i * 10\n...     if i:\n...         'odd'  # a comment\n"
        "...\n>>> def f():\n...     'not echoed: a function has a scope of its own'\n...\n"
        ">>> with open(__import__('os').devnull) as file:\n...     f(), file.closed\n..."
    )
    shown = run_pycon(source, new_session_module(), first_line=1).output
    page = "".join(line + "\n" for line in shown.split("\n") if not line.startswith(">>>"))
    page = "".join(line for line in page.splitlines(True) if not line.startswith("..."))
    script = tmp_path / "echo.py"
    script.write_text(
        to_script(PageExport(title="Echo", parts=[ExecutedBlock("pycon", source)]), "s")
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == page == "0\n10\n'odd'\n(None, False)\n"
