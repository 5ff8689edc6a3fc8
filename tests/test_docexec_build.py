"""docexec through MkDocs: small sites built in a temporary folder, as an author would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import BuildResult, processes_with
from sites import SUPERFENCES, TABBED, build_command, build_site, mkdocstrings, snippets, write_site

pytestmark = pytest.mark.site

MKDOCS = [sys.executable, "-m", "mkdocs"]


def build(tmp_path: Path, pages: dict[str, str], timeout: float = 30, **options) -> BuildResult:
    """Write ``pages`` under docs/ and run a strict ``mkdocs build`` (in this process)."""
    return build_site(tmp_path, pages, timeout=timeout, **options)


def code_blocks(html_file: Path) -> list[str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_file.read_text(), "html.parser")
    return [pre.get_text() for pre in soup.select("pre")]


def test_pycon_block_renders_a_transcript(tmp_path):
    result = build(
        tmp_path,
        {
            "index.md": """\
            # Page

            ```pycon exec="on" session="s"
            >>> import torch
            >>> torch.zeros(2, 3).shape
            >>> print(1, 2, sep="-")
            >>> None
            ```
            """
        },
    )
    assert result.returncode == 0, result.stderr
    [block] = code_blocks(tmp_path / "site/index.html")
    assert block.strip() == textwrap.dedent(
        """\
        >>> import torch
        >>> torch.zeros(2, 3).shape
        torch.Size([2, 3])
        >>> print(1, 2, sep="-")
        1-2
        >>> None"""
    )


def test_python_and_pycon_blocks_share_a_session_on_a_page(tmp_path):
    result = build(
        tmp_path,
        {
            "index.md": """\
            ```python exec="on" session="s"
            answer = 6 * 7
            ```

            ```pycon exec="on" session="s"
            >>> answer
            ```
            """
        },
    )
    assert result.returncode == 0, result.stderr
    assert code_blocks(tmp_path / "site/index.html")[-1].strip().endswith("42")


def test_an_exception_fails_the_build_naming_page_and_line(tmp_path):
    result = build(
        tmp_path,
        {
            "index.md": "# Fine\n",
            "broken.md": """\
            ---
            title: Front matter shifts lines
            ---
            # Broken

            ```python exec="on"
            x = 1
            y = x / 0
            ```
            """,
        },
    )
    assert result.returncode != 0
    assert "docs/broken.md:8: ZeroDivisionError: division by zero" in result.stderr


def test_an_exception_in_pycon_names_the_input_line(tmp_path):
    result = build(
        tmp_path,
        {"index.md": '# P\n\n```pycon exec="on"\n>>> 1\n>>> {}["key"]\n```\n'},
    )
    assert result.returncode != 0
    assert "docs/index.md:5: KeyError: 'key'" in result.stderr


def test_a_failed_build_publishes_no_traceback(tmp_path):
    result = build(tmp_path, {"index.md": '```python exec="on"\nraise ValueError("x")\n```\n'})
    assert result.returncode != 0
    assert not (tmp_path / "site/index.html").exists()


def test_raises_renders_the_traceback_with_portable_paths(tmp_path):
    """Frames in the repository, the standard library and site-packages, none absolute."""
    (tmp_path / "helper_here.py").write_text(
        "import json\n\ndef parse(text):\n    return json.loads(text)\n"
    )
    result = build(
        tmp_path,
        {
            "index.md": """\
            ```pycon exec="on" raises="JSONDecodeError"
            >>> import os, sys
            >>> sys.path.insert(0, os.environ["DOCEXEC_ROOT"])
            >>> import helper_here
            >>> helper_here.parse("{")
            ```

            ```pycon exec="on" raises="RuntimeError"
            >>> import torch
            >>> torch.nn.Linear(2, 3)(torch.ones(4))
            ```
            """
        },
    )
    assert result.returncode == 0, result.stderr
    [ours, torch_error] = code_blocks(tmp_path / "site/index.html")
    assert 'File "./helper_here.py", line 4, in parse' in ours
    stdlib = f"python{sys.version_info.major}.{sys.version_info.minor}/json/"
    assert f'File "{stdlib}' in ours
    assert 'File "site-packages/torch/nn/modules/' in torch_error
    for block in (ours, torch_error):
        assert not re.search(r'File "/', block), block
        assert str(tmp_path) not in block and sys.prefix not in block


def test_raises_fails_when_nothing_is_raised(tmp_path):
    result = build(tmp_path, {"index.md": '```pycon exec="on" raises="KeyError"\n>>> 1\n```\n'})
    assert result.returncode != 0
    assert "docs/index.md:2:" in result.stderr
    assert "raises='KeyError'" in result.stderr


def test_raises_in_a_python_block_renders_its_traceback(tmp_path):
    page = '```python exec="on" raises="ZeroDivisionError" result="text"\nprint("before")\n1 / 0\n```\n'
    result = build(tmp_path, {"index.md": page})
    assert result.returncode == 0, result.stderr
    [block] = code_blocks(tmp_path / "site/index.html")
    assert block.startswith("before\nTraceback (most recent call last):")
    assert 'File "docs/index.md", line 3, in <module>' in block


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(0)",
        "raise SystemExit",
        "raise KeyboardInterrupt",
        "import os\nos._exit(0)",
    ],
)
def test_exiting_blocks_fail_the_build(tmp_path, code):
    result = build(tmp_path, {"index.md": f'# P\n\n```python exec="on"\n{code}\n```\n'})
    assert result.returncode != 0
    assert "docs/index.md:" in result.stderr
    assert not (tmp_path / "site/index.html").exists()


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("x = 0\nwhile True:\n    x += 1", None),
        ("import time\ntime.sleep(600)", 5),
    ],
)
def test_a_block_past_its_timeout_is_stopped(tmp_path, code, line):
    page = f'# P\n\n```python exec="on" timeout="1"\n{code}\n```\n'
    result = build(tmp_path, {"index.md": page})
    assert result.returncode != 0
    assert "ran past its 1 s limit" in result.stderr
    expected = f"docs/index.md:{line}:" if line else "docs/index.md:"
    assert expected in result.stderr


def test_the_site_wide_timeout_applies(tmp_path):
    page = '```pycon exec="on"\n>>> import time\n>>> time.sleep(600)\n```\n'
    result = build(tmp_path, {"index.md": page}, timeout=1)
    assert result.returncode != 0
    assert "docs/index.md:3: the block ran past its 1 s limit" in result.stderr


def test_pages_are_isolated_and_seeded(tmp_path):
    draw = '```pycon exec="on"\n>>> import torch\n>>> torch.rand(2)\n```\n'
    result = build(
        tmp_path,
        {
            "a.md": '```python exec="on"\nimport torch\nleaked = torch.rand(100)\n```\n',
            "b.md": draw + '\n```pycon exec="on" raises="NameError"\n>>> leaked\n```\n',
            "index.md": draw,
        },
    )
    assert result.returncode == 0, result.stderr
    b_draw = code_blocks(tmp_path / "site/b/index.html")[0]
    assert b_draw == code_blocks(tmp_path / "site/index.html")[0]
    assert "tensor([" in b_draw


def test_a_page_reads_the_same_alone_and_among_others(tmp_path):
    page = '```pycon exec="on"\n>>> import random\n>>> random.random()\n>>> object()\n```\n'
    (tmp_path / "alone").mkdir()
    alone = build(tmp_path / "alone", {"index.md": page})
    assert alone.returncode == 0, alone.stderr
    among = tmp_path / "among"
    among.mkdir()
    others = {f"p{i}.md": page for i in range(3)}
    result = build(among, {**others, "index.md": page})
    assert result.returncode == 0, result.stderr
    assert code_blocks(tmp_path / "alone/site/index.html") == code_blocks(among / "site/index.html")
    assert "0x7ff000000010" in code_blocks(among / "site/index.html")[0]


def test_typed_output_in_a_pycon_block_fails(tmp_path):
    result = build(tmp_path, {"index.md": '# P\n\n```pycon exec="on"\n>>> 1 + 1\n3\n```\n'})
    assert result.returncode != 0
    assert "docs/index.md:5:" in result.stderr
    assert "output is generated" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, needle: str, seconds: float = 120) -> str:
    """Poll ``url`` until its body holds ``needle``; bounded in time and count."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    body = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read().decode()
        except OSError:
            body = ""
        if needle in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{url} never showed {needle!r}; last body ends {body[-300:]!r}")


def test_serve_reruns_pages_with_the_new_package_code(tmp_path):
    package = tmp_path / "src"
    package.mkdir()
    module = package / "helper_for_serve.py"
    module.write_text("def value():\n    return 'VALUE-ONE'\n")
    page = '```pycon exec="on"\n>>> import helper_for_serve\n>>> helper_for_serve.value()\n```\n'
    write_site(tmp_path, {"index.md": page}, timeout=30, watch=["src"], preload=())
    port = _free_port()
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(package))
    server = subprocess.Popen(
        [*MKDOCS, "serve", "--livereload", "-a", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, "VALUE-ONE")
        module.write_text("def value():\n    return 'VALUE-TWO'\n")
        body = _wait_for(url, "VALUE-TWO")
        assert "VALUE-ONE" not in body
    finally:
        # Ctrl-C, as an author stops it: SIGTERM would leave multiprocessing's socket
        # folder (pymp-*) of the fork server in /tmp, since no cleanup runs.
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_pages_offer_their_notebook_and_script_with_a_stamp(tmp_path):
    page = '# Shapes\n\nProse.\n\n```pycon exec="on"\n>>> 2 + 2\n```\n'
    result = build(tmp_path, {"index.md": "# Home\n", "shapes.md": page})
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "site/shapes/index.html").read_text()
    assert 'href="shapes.ipynb"' in html and 'href="shapes.py"' in html
    assert "torch 2.13.0" in html and "Python 3." in html
    script = (tmp_path / "site/shapes/shapes.py").read_text()
    assert "show(2 + 2)" in script
    assert "# Prose." in script
    assert (tmp_path / "site/shapes/shapes.ipynb").is_file()
    # A page with nothing executed offers nothing.
    assert not list((tmp_path / "site").glob("index.ipynb"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('timeout="soon"', "timeout= takes a number of seconds"),
        ('timeout="0"', "timeout= must be more than 0 seconds"),
        ('raises="not a name"', "raises= takes an exception's name"),
        ('sesion="typo"', "unknown option 'sesion'"),
        ('timeout="inf"', "timeout= must be a finite number of seconds"),
        ('source="above"', "source= does not apply to a pycon block"),
    ],
)
def test_bad_options_fail_naming_the_fence(tmp_path, options, message):
    result = build(tmp_path, {"index.md": f'# P\n\n```pycon exec="on" {options}\n>>> 1\n```\n'})
    assert result.returncode != 0
    assert f"docs/index.md:3: {message}" in result.stderr


def test_set_order_is_the_same_whatever_hash_seed_the_build_starts_with(tmp_path):
    page = '```pycon exec="on"\n>>> {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}\n```\n'
    shown = []
    for seed in ("1", "2"):
        site = write_site(tmp_path / seed, {"index.md": page}, timeout=30, preload=())
        # The seed is read when a process starts: this needs a new mkdocs process.
        result = build_command(site, env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        shown.append(code_blocks(site / "site" / "index.html"))
    assert shown[0] == shown[1]


def test_markdown_exec_options_that_are_not_numbers_fail_naming_the_fence(tmp_path):
    result = build(
        tmp_path, {"index.md": 'Text.\n\n```python exec="on" returncode="x"\nprint(1)\n```\n'}
    )
    assert result.returncode != 0
    assert "docs/index.md:3: returncode= takes a whole number, not 'x'" in result.stderr


def test_any_exec_value_markdown_exec_runs_is_tagged_with_its_line(tmp_path):
    result = build(
        tmp_path, {"index.md": 'Text.\n\n```python exec="2"\nraise ValueError("here")\n```\n'}
    )
    assert result.returncode != 0
    assert "docs/index.md:4: ValueError: here" in result.stderr


def test_raises_on_a_markdown_block_shows_the_traceback_as_code(tmp_path):
    page = '```python exec="on" raises="KeyError"\n{}["k"]\n```\n'
    assert build(tmp_path, {"index.md": page}).returncode == 0
    [block] = code_blocks(tmp_path / "site" / "index.html")
    assert block.startswith("Traceback (most recent call last):\n")
    assert 'File "docs/index.md", line 2, in <module>' in block


def test_a_page_may_start_processes_of_its_own(tmp_path):
    page = """\
    ```pycon exec="on"
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = TensorDataset(torch.arange(8.0))
    >>> [batch[0].tolist() for batch in DataLoader(data, batch_size=4, num_workers=2)]
    ```
    """
    result = build(tmp_path, {"index.md": page})
    assert result.returncode == 0, result.stderr
    assert (
        "[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]"
        in code_blocks(tmp_path / "site" / "index.html")[0]
    )


def test_workdir_is_where_the_block_runs(tmp_path):
    page = '```python exec="on" workdir="docs" result="text"\nimport os\nprint(sorted(os.listdir()))\n```\n'
    assert build(tmp_path, {"index.md": page}).returncode == 0
    assert code_blocks(tmp_path / "site" / "index.html") == ["['index.md']\n"]
    result = build(tmp_path, {"index.md": page.replace('"docs"', '"nowhere"')})
    assert result.returncode != 0
    assert "docs/index.md:1: workdir='nowhere' is no folder of" in result.stderr


def test_an_interrupted_build_ends_its_example_process(tmp_path):
    """Ctrl-C during a block: mkdocs exits instead of waiting for the block to finish."""
    import time

    started = tmp_path / "started"
    page = f'```python exec="on"\nimport pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)\n```\n'
    write_site(tmp_path, {"index.md": page}, timeout=900)
    mkdocs = subprocess.Popen(
        [*MKDOCS, "build"],
        cwd=tmp_path,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120  # a guard for a slow start, not a measurement
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.exists(), "the block never started"
        mkdocs.send_signal(signal.SIGINT)
        # The block sleeps for 600 s: only ending its process lets mkdocs exit sooner.
        assert mkdocs.wait(timeout=300) != 0
    finally:
        mkdocs.kill()


def build_with_snippets(tmp_path: Path, page: str, included: str) -> BuildResult:
    """Build ``page``, which includes ``docs/examples/compute.py`` (holding ``included``)."""
    pages = {"index.md": page, "examples/compute.py": included}
    return build(tmp_path, pages, markdown_extensions=[SUPERFENCES, snippets("docs")])


INCLUDING_PAGE = """\
Text.

```python exec="on" result="text"
x = 2
--8<-- "examples/compute.py"
print(result)
{last}
```
"""


def test_an_error_in_an_included_file_names_that_file_and_line(tmp_path):
    included = "result = x * 21\nresult = result / 0\n"
    result = build_with_snippets(tmp_path, INCLUDING_PAGE.format(last=""), included)
    assert result.returncode != 0
    assert (
        "docs/examples/compute.py:2 (included at docs/index.md:5): ZeroDivisionError"
        in result.stderr
    )


def test_lines_after_an_include_keep_their_page_numbers(tmp_path):
    page = INCLUDING_PAGE.format(last='raise ValueError("after the include")')
    result = build_with_snippets(tmp_path, page, "result = x * 21\n")
    assert result.returncode != 0
    assert "docs/index.md:7: ValueError: after the include" in result.stderr


def test_width_applies_in_the_example_process_to_its_block_only(tmp_path):
    show = 'import os\nprint(os.environ.get("COLUMNS"))'
    page = (
        f'```python exec="on" result="text"\n{show}\n```\n\n'
        f'```python exec="on" result="text" width="33"\n{show}\n```\n\n'
        f'```python exec="on" result="text"\n{show}\n```\n'
    )
    result = build_in_process_page(tmp_path, page, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.log
    assert code_blocks(tmp_path / "site" / "index.html") == ["80\n", "33\n", "80\n"]


def test_workdir_holds_when_the_build_runs_from_another_folder(tmp_path):
    page = '```python exec="on" workdir="docs" result="text"\nimport os\nprint(sorted(os.listdir()))\n```\n'
    (tmp_path / "elsewhere").mkdir()
    result = build_in_process_page(tmp_path, page, cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.log
    assert code_blocks(tmp_path / "site" / "index.html") == ["['index.md']\n"]


def build_in_process_page(tmp_path: Path, page: str, **kwargs) -> BuildResult:
    """Build a one-page site whose config names its folders absolutely (a build from anywhere)."""
    folders = {"docs_dir": str(tmp_path / "docs"), "site_dir": str(tmp_path / "site")}
    return build(tmp_path, {"index.md": page}, **folders, **kwargs)


def test_an_error_in_a_block_quote_names_its_page_line(tmp_path):
    page = 'Text.\n\n> Quoted.\n>\n> ```python exec="on"\n> x = 1\n> y = 2\n> raise ValueError("quoted")\n> ```\n'
    result = build(tmp_path, {"index.md": page})
    assert "docs/index.md:8: ValueError: quoted" in result.stderr


def test_a_fence_in_an_html_comment_does_not_run(tmp_path):
    page = '# P\n\n<!--\n```python exec="on"\nraise SystemExit("ran")\n```\n-->\n\nText.\n'
    result = build(tmp_path, {"index.md": page})
    assert result.returncode == 0, result.stderr
    assert "ran" not in (tmp_path / "site/index.html").read_text().split("<!--")[1].split("-->")[0]


def test_a_fence_of_a_language_nothing_runs_fails_naming_it(tmp_path):
    page = '# P\n\n```bash exec="on"\necho hi\n```\n\n```python exec="on"\nprint("after")\n```\n'
    result = build(tmp_path, {"index.md": page})
    assert result.returncode != 0
    assert "docs/index.md:3: a bash fence says exec=" in result.stderr


def test_a_negative_site_wide_timeout_is_a_config_error(tmp_path):
    result = build(tmp_path, {"index.md": '```pycon exec="on"\n>>> 1\n```\n'}, timeout=-1)
    assert result.returncode != 0
    assert "mkdocs.yml: plugins.docexec.timeout must be" in result.stderr
    assert "docs/index.md" not in result.stderr


def test_highlighting_options_and_a_title_work_on_a_pycon_block(tmp_path):
    page = '```pycon exec="on" hl_lines="2" title="A session"\n>>> 1 + 1\n```\n'
    result = build(
        tmp_path, {"index.md": page}, markdown_extensions=[SUPERFENCES, "pymdownx.highlight"]
    )
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "site/index.html").read_text()
    assert '<span class="hll">' in html and "A session" in html


def test_invalid_front_matter_fails_a_strict_build_naming_its_line(tmp_path):
    page = "---\ntitle: fine\nbroken: [unclosed\n---\n\n# P\n"
    result = build(tmp_path, {"index.md": page})
    assert result.returncode != 0
    assert "docs/index.md:" in result.stderr and "invalid YAML front matter" in result.stderr


@pytest.mark.parametrize(
    ("spec", "included"),
    [
        ("compute.py:3:4", "a = 1\nb = 2\nresult = x * 21\nresult = result / 0\nunused = 5\n"),
        # A section's lines, another section's markers left out: lines 2 and 4.
        (
            "compute.py:calc",
            "# --8<-- [start:calc]\nresult = x * 21\n# --8<-- [start:aside]\n"
            "result = result / 0\n# --8<-- [end:aside]\n# --8<-- [end:calc]\nunused = 5\n",
        ),
    ],
    ids=["line-range", "section"],
)
def test_an_error_in_a_part_of_a_file_names_the_file_line(tmp_path, spec, included):
    page = INCLUDING_PAGE.format(last="").replace("compute.py", spec)
    result = build_with_snippets(tmp_path, page, included)
    assert result.returncode != 0
    assert (
        "docs/examples/compute.py:4 (included at docs/index.md:5): ZeroDivisionError"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("included", "message"),
    [
        (
            "a = 1\nwhile True: pass\n",
            "2 (included at docs/index.md:5): the block ran past its 1 s",
        ),
        (
            "import os\n\nos._exit(3)\n",
            "3 (included at docs/index.md:5): the example process ended",
        ),
    ],
    ids=["timed-out", "exited"],
)
def test_a_block_stopped_in_an_included_file_names_that_file_s_line(tmp_path, included, message):
    page = INCLUDING_PAGE.format(last="").replace('result="text"', 'result="text" timeout="1"')
    result = build_with_snippets(tmp_path, page, included)
    assert result.returncode != 0
    assert f"docs/examples/compute.py:{message}" in result.stderr, result.stderr


def test_with_dedent_subsections_a_section_runs_and_names_its_file_lines(tmp_path):
    # pymdownx.snippets takes the section's indent off: docexec reads it so too.
    included = (
        "class C:\n    # --8<-- [start:body]\n    x = 1\n    y = x / 0\n    # --8<-- [end:body]\n"
    )
    page = 'Text.\n\n```python exec="on"\n--8<-- "examples/compute.py:body"\nprint(y)\n```\n'
    extension = {"pymdownx.snippets": {"base_path": ["docs"], "dedent_subsections": True}}
    pages = {"index.md": page, "examples/compute.py": included}
    result = build(tmp_path, pages, markdown_extensions=[SUPERFENCES, extension])
    assert result.returncode != 0
    assert (
        "docs/examples/compute.py:4 (included at docs/index.md:4): ZeroDivisionError"
        in result.stderr
    )
    # A section that holds a fence, indented in an admonition: it runs where it lands.
    (tmp_path / "docs" / "fragment.md").write_text(
        "!!! note\n\n    <!-- --8<-- [start:ex] -->\n"
        '    ```python exec="on"\n    print("from the section")\n    ```\n'
        "    <!-- --8<-- [end:ex] -->\n"
    )
    pages = {"index.md": '# P\n\n--8<-- "fragment.md:ex"\n'}
    result = build(tmp_path, pages, markdown_extensions=[SUPERFENCES, extension])
    assert result.returncode == 0, result.stderr
    assert "from the section" in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.parametrize(
    ("first", "message"),
    [("while True: pass", "the block ran past"), ("1 / 0", "ZeroDivisionError")],
    ids=["timed-out", "raised"],
)
def test_a_file_included_twice_is_named_at_the_include_that_brought_the_line(
    tmp_path, first, message
):
    page = (
        '```python exec="on" timeout="1"\n'  # 1
        '--8<-- "examples/compute.py:1:1"\n'  # 2
        "x = 0\n"  # 3
        '--8<-- "examples/compute.py:3:3"\n'  # 4
        "```\n"
    )
    result = build_with_snippets(tmp_path, page, f"{first}\n# gap\nprint('later')\n")
    assert result.returncode != 0
    assert f"docs/examples/compute.py:1 (included at docs/index.md:2): {message}" in result.stderr


def test_an_include_that_cannot_be_split_by_file_is_named_at_its_include(tmp_path):
    # The section's lines split a function (a marker inside it is left out): the parts
    # do not compile alone, the block runs as one piece, and its line past the include
    # is not the page's; the error names the include, not a line below the fence.
    included = (
        "# --8<-- [start:calc]\ndef f():\n    a = 1\n    # --8<-- [start:inner]\n"
        "    return a / 0\n    # --8<-- [end:inner]\n# --8<-- [end:calc]\n"
    )
    page = 'Text.\n\n```python exec="on"\n--8<-- "examples/compute.py:calc"\nf()\n```\n\nMore.\n'
    result = build_with_snippets(tmp_path, page, included)
    assert result.returncode != 0
    assert "docs/index.md:4 (in the code this line includes; " in result.stderr
    assert "ZeroDivisionError" in result.stderr


def test_nothing_a_failed_build_started_is_left_running(tmp_path):
    """mkdocs build | cat: the pipe closes when the build ends, and no child is left."""
    marker = f"{8000 + os.getpid() % 1000}.5"
    page = f'```python exec="on"\nimport subprocess\nsubprocess.Popen(["sleep", "{marker}"])\n```\n'
    write_site(tmp_path, {"index.md": page}, timeout=30)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    # Through a pipe, as `mkdocs build 2>&1 | cat`: communicate() returns only when
    # every process holding the pipe's write end has ended.
    build = subprocess.Popen(
        [*MKDOCS, "build", "--strict"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = build.communicate(timeout=120)  # a guard against a hang, not a measurement
    assert build.returncode != 0 and b"a process it started" in output
    assert processes_with(marker) == []


def test_interrupting_serve_ends_the_page_processes(tmp_path):
    import time

    started = tmp_path / "started"
    marker = f"{8000 + os.getpid() % 1000}.7"
    page = (
        f'```python exec="on" timeout="300"\nimport pathlib, subprocess, time\n'
        f'child = subprocess.Popen(["sleep", "{marker}"])\n'
        f"pathlib.Path({str(started)!r}).touch()\ntime.sleep(300)\n```\n"
    )
    write_site(tmp_path, {"index.md": page}, timeout=300)
    server = subprocess.Popen(
        [*MKDOCS, "serve", "-a", f"127.0.0.1:{_free_port()}"],
        cwd=tmp_path,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Ctrl-C as in a terminal, also where this test runs in a background job
        # (`make test &`, nohup), whose processes inherit SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120  # a guard for a slow start, not a measurement
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the block never started"
        assert processes_with(marker)
        server.send_signal(signal.SIGINT)  # to the server's pid alone
        server.wait(timeout=60)
        deadline = time.monotonic() + 10
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with(marker) == []
    finally:
        server.kill()


@pytest.mark.parametrize("workdir", ["/etc", "../../.."])
def test_workdir_must_stay_inside_the_repository(tmp_path, workdir):
    page = f'```python exec="on" workdir="{workdir}"\nprint(1)\n```\n'
    result = build(tmp_path, {"index.md": page})
    assert result.returncode != 0
    assert f"docs/index.md:1: workdir={workdir!r} is outside the repository" in result.stderr


def test_a_page_can_print_the_build_date(tmp_path):
    page = (
        '```python exec="on" result="text"\nimport os\n'
        "from datetime import datetime, timezone\n"
        'print(datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), timezone.utc).date())\n'
        "```\n"
    )
    result = build(tmp_path, {"index.md": page})
    assert result.returncode == 0, result.stderr
    assert code_blocks(tmp_path / "site/index.html") == ["2023-11-14\n"]


def test_an_executable_block_in_a_docstring_names_its_module_and_line(tmp_path):
    (tmp_path / "shown_module.py").write_text(
        '"""A module."""\n\n\ndef helper():\n    """Help.\n\n    ```python exec="on"\n'
        '    print("from a docstring")\n    ```\n    """\n'
    )
    result = build(
        tmp_path,
        {"index.md": "# API\n\n::: shown_module.helper\n"},
        # After markdown-exec, as in mkdocs.yml: mkdocstrings takes the fences it adds.
        after_markdown_exec=[mkdocstrings(".")],
        markdown_extensions=["toc", SUPERFENCES],
    )
    assert result.returncode != 0
    assert "shown_module.py:8: an executable python block in a docstring" in result.stderr


# Pages written for markdown-exec ---------------------------------------------------

#: markdown-exec with its default languages (all), snippets from includes/, and tabs.
MARKDOWN_EXEC_EXTENSIONS = [SUPERFENCES, snippets("includes"), TABBED]

MARKDOWN_EXEC_PAGE = """\
# A page written for markdown-exec

````md exec="1" source="tabbed-left"
Markdown that *runs*:

```python exec="1"
print(f"**{6 * 7}**")
```
````

```python exec="1" session="s" source="tabbed-left"
numbers = [1, 2, 3]
print(sum(numbers))
```

```pycon exec="1" session="s"
>>> numbers
```

```python exec="true" html="1"
print("<em>html</em>")
```

```python exec="on" result="text" session="s"
print(numbers[::-1])
```

```bash exec="1"
echo from bash
```

--8<-- "fragment.md"
"""

FRAGMENT = 'From a fragment:\n\n```python exec="on"\nprint("fragment says", 2 + 2)\n```\n'


def build_for_markdown_exec(
    tmp_path: Path, page: str, fragment: str = FRAGMENT, docexec: bool = True
) -> BuildResult:
    """Build ``page`` with markdown-exec's default languages; it may include ``fragment.md``."""
    (tmp_path / "includes").mkdir(parents=True, exist_ok=True)
    (tmp_path / "includes" / "fragment.md").write_text(fragment)
    return build(
        tmp_path,
        {"index.md": page},
        docexec=docexec,
        languages=None,
        markdown_extensions=MARKDOWN_EXEC_EXTENSIONS,
    )


def main_html(html_file: Path) -> str:
    """The page's content, without docexec's provenance note (and the space before it)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_file.read_text(), "html.parser")
    for aside in soup.select("aside.docexec-provenance"):
        aside.decompose()
    return re.sub(r"\s+</div>$", "</div>", str(soup.select_one("h1").parent))


def test_a_page_written_for_markdown_exec_shows_what_markdown_exec_alone_shows(
    tmp_path, monkeypatch
):
    import markdown_exec
    from markdown_exec._internal.formatters.markdown import _format_markdown
    from markdown_exec._internal.formatters.pycon import _format_pycon
    from markdown_exec._internal.formatters.python import _format_python

    ours = tmp_path / "docexec"
    result = build_for_markdown_exec(ours, MARKDOWN_EXEC_PAGE)
    assert result.returncode == 0, result.log
    theirs = tmp_path / "markdown-exec"
    # markdown-exec alone: no docexec, and its own formatters (docexec's replace them).
    for names, formatter in (
        (("python", "py"), _format_python),
        (("pycon",), _format_pycon),
        (("md", "markdown"), _format_markdown),
    ):
        for name in names:
            monkeypatch.setitem(markdown_exec.formatters, name, formatter)
    result = build_for_markdown_exec(theirs, MARKDOWN_EXEC_PAGE, docexec=False)
    assert result.returncode == 0, result.log
    mine, alone = main_html(ours / "site/index.html"), main_html(theirs / "site/index.html")
    for shown in (
        "<strong>42</strong>",
        "<em>html</em>",
        "[3, 2, 1]",
        "from bash",
        "fragment says 4",
    ):
        assert shown in mine
    # What differs: docexec shows a pycon block as the interpreter's transcript, where
    # markdown-exec shows what it printed (nothing: an expression prints nothing).
    transcript = next(b for b in code_blocks(ours / "site/index.html") if b.startswith(">>>"))
    assert transcript == ">>> numbers\n[1, 2, 3]\n"
    [pycon_html] = re.findall(
        r'<div class="highlight"><pre><span></span><code><span class="gp">.*?</div>', mine, re.S
    )
    assert mine.replace(pycon_html, "<p></p>", 1) == alone


@pytest.mark.parametrize(
    ("fence", "line"),
    [
        ('```python exec="1"\nx = 1\nx / 0\n```', 8),
        ('```pycon exec="1"\n>>> x = 1\n>>> x / 0\n```', 8),
    ],
)
def test_an_error_in_a_block_an_md_fence_renders_names_its_page_line(tmp_path, fence, line):
    page = f'# P\n\n````md exec="1"\nText.\n\n{fence}\n````\n'
    result = build_for_markdown_exec(tmp_path, page)
    assert result.returncode != 0
    assert f"docs/index.md:{line}: ZeroDivisionError" in result.stderr


@pytest.mark.parametrize(
    ("fence", "line"),
    [
        ('```python exec="on"\nx = 1\nx / 0\n```', 5),
        ('```pycon exec="on"\n>>> x = 1\n>>> x / 0\n```', 5),
    ],
)
def test_an_error_in_an_included_block_names_the_file_line_and_the_include(tmp_path, fence, line):
    page = '# P\n\nText.\n\n--8<-- "fragment.md"\n'
    result = build_for_markdown_exec(tmp_path, page, fragment=f"Fragment.\n\n{fence}\n")
    assert result.returncode != 0
    assert (
        f"includes/fragment.md:{line} (included at docs/index.md:5): ZeroDivisionError"
        in result.stderr
    )


def test_a_fence_a_section_include_brings_runs_naming_its_file_line(tmp_path):
    fragment = (
        "Not included.\n\n<!-- --8<-- [start:example] -->\n"
        '```python exec="on"\nprint("from the section")\n```\n\n'
        '```python exec="on"\nx = 1\nx / 0\n```\n<!-- --8<-- [end:example] -->\n'
    )
    page = '# P\n\nText.\n\n--8<-- "fragment.md:example"\n'
    result = build_for_markdown_exec(tmp_path, page, fragment=fragment)
    assert result.returncode != 0
    assert (
        "includes/fragment.md:10 (included at docs/index.md:5): ZeroDivisionError" in result.stderr
    )
    fragment = fragment.replace("x / 0", "x + 1")
    result = build_for_markdown_exec(tmp_path, page, fragment=fragment)
    assert result.returncode == 0, result.log
    html = (tmp_path / "site" / "index.html").read_text()
    assert "from the section" in html and "Not included" not in html


def test_a_fence_shown_as_code_is_shown_and_never_run(tmp_path):
    fence = '```python exec="on"\nraise SystemExit("ran")\n```'
    indented = fence.replace("\n", "\n    ")
    page = f"# P\n\nIn an indented block:\n\n    {indented}\n\nIn an outer fence:\n\n````markdown\n{fence}\n````\n"
    result = build_for_markdown_exec(tmp_path, page)
    assert result.returncode == 0, result.log
    assert code_blocks(tmp_path / "site/index.html") == [f"{fence}\n", f"{fence}\n"]
    assert "ran" not in result.log


def test_a_block_that_prints_an_executable_fence_is_named_as_its_origin(tmp_path):
    page = '# P\n\n```python exec="on"\nprint("```python exec=\\"1\\"\\nprint(1)\\n```")\n```\n'
    result = build_for_markdown_exec(tmp_path, page)
    assert result.returncode != 0
    assert "docs/index.md:3: this block printed an executable python fence" in result.stderr


def test_the_cache_key_covers_the_blocks_an_included_file_brings(tmp_path):
    page = '# P\n\n````md exec="1"\n```python exec="1"\nprint("in md")\n```\n````\n\n--8<-- "fragment.md"\n'
    first = build_for_markdown_exec(tmp_path, page)
    assert first.returncode == 0, first.log
    assert "ran 2 blocks" in first.log
    # Recorded at their places: the md fence's block at its page line, the included one
    # at the include's page line and, in its parts, at the file's line.
    [record] = (tmp_path / ".cache/docexec").rglob("index.md.json")
    record = json.loads(record.read_text())
    assert record["lines"] == [4, 9]
    assert [block["line"] for block in record["blocks"]] == [5, 4]
    assert record["blocks"][1]["signature"]["parts"] == [
        ["includes/fragment.md", 4, 'print("fragment says", 2 + 2)']
    ]
    again = build_for_markdown_exec(tmp_path, page)
    assert "reused 2 blocks" in again.log
    assert "fragment says 4" in (tmp_path / "site/index.html").read_text()
    edited = build_for_markdown_exec(tmp_path, page, fragment=FRAGMENT.replace("2 + 2", "2 + 3"))
    assert "ran 2 blocks" in edited.log
    html = (tmp_path / "site/index.html").read_text()
    assert "fragment says 5" in html and "in md" in html


def test_an_included_traceback_follows_its_block_moving_in_its_file(tmp_path):
    fence = '```python exec="on" raises="ZeroDivisionError"\n1 / 0\n```\n'
    page = '# P\n\n--8<-- "fragment.md"\n'
    first = build_for_markdown_exec(tmp_path, page, fragment=f"Text.\n\n{fence}")
    assert first.returncode == 0, first.log
    assert 'File "includes/fragment.md", line 4' in code_blocks(tmp_path / "site/index.html")[0]
    moved = build_for_markdown_exec(tmp_path, page, fragment=f"Text.\n\nMore.\n\n{fence}")
    assert moved.returncode == 0, moved.log
    assert 'File "includes/fragment.md", line 6' in code_blocks(tmp_path / "site/index.html")[0]


def test_a_site_built_later_in_the_process_without_docexec_runs_as_markdown_exec_alone(tmp_path):
    page = {"index.md": '# Home\n\n```python exec="on"\nimport os\nprint(os.getpid())\n```\n'}
    first = build_site(tmp_path / "with", page)
    assert first.returncode == 0, first.log
    later = build_site(tmp_path / "without", page, docexec=False)
    assert later.returncode == 0, later.log
    html = (tmp_path / "without" / "site" / "index.html").read_text()
    assert f"<p>{os.getpid()}</p>" in html  # run in this process, as markdown-exec runs it
