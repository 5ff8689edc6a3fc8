"""docexec.adapter: its formatters given to a plain ``Markdown``, as markdown-exec's own tests do.

No MkDocs: the adapter's fences are SuperFences' ``custom_fences``, and the page being
converted is given by ``adapter.page(path, text)``. Each page's blocks run in a page
process of their own, forked from the same fork server a build uses.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from markdown import Markdown
from markdown_exec import markdown_config
from test_docexec_session import as_block, normalise, real_repl

from docexec.adapter import Adapter
from docexec.page import ExampleError

PAGE = "docs/page.md"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Adapter:
    """One adapter for a repository of the module's own; every page's process is ended
    as its page is done."""
    root = tmp_path_factory.mktemp("repository")
    (root / "docs").mkdir()
    return Adapter(root, timeout=30)


def render(adapter: Adapter, text: str, page: str = PAGE) -> str:
    """The HTML of ``text`` as the page ``page`` of ``adapter``'s repository.

    markdown-exec renders an ``md`` fence's Markdown with the extensions its MkDocs
    plugin saved in ``markdown_config``, reset after a build; a build that failed in
    this process (another test's) left its own there, fences of markdown-exec's
    formatters among them. This Markdown has no MkDocs: what is saved is no one's.
    """
    markdown_config.reset()
    text = textwrap.dedent(text).lstrip("\n")
    (Path(adapter.root) / page).write_text(text)
    md = Markdown(
        extensions=["pymdownx.superfences"],
        extension_configs={"pymdownx.superfences": {"custom_fences": adapter.fences()}},
    )
    with adapter.page(page, text) as tagged:
        return md.convert(tagged)


def text_of(html: str) -> str:
    return BeautifulSoup(html, "html.parser").get_text()


def test_a_python_block_renders_what_it_prints_in_the_pages_process(adapter):
    html = render(
        adapter,
        """
        # A page

        ```python exec="on"
        import os
        print(f"**{6 * 7}**, run by docexec: {'DOCEXEC_ROOT' in os.environ}")
        ```
        """,
    )
    assert "<strong>42</strong>, run by docexec: True" in html
    assert adapter.current is None  # the page is closed, its process ended


def test_a_pycon_block_renders_what_the_interactive_interpreter_shows(adapter):
    lines = ["x = 40", "x + 2", "def f():", "    return [x] * 2", "", "f()", "'text'"]
    html = render(adapter, f'```pycon exec="on"\n{as_block(lines)}\n```\n')
    shown = BeautifulSoup(html, "html.parser").select_one("code").get_text()
    assert normalise(shown) == normalise(real_repl(lines))


@pytest.mark.parametrize(
    ("option", "runs"),
    [
        ('exec="1"', True),
        ('exec="true"', True),
        ('exec="on"', True),
        ('exec="0"', False),
        ('exec="false"', False),
        ("", False),
    ],
)
def test_exec_means_what_markdown_exec_says(adapter, option, runs):
    html = render(adapter, f'```python {option}\nprint("ran" + "!")\n```\n')
    assert ("ran!" in text_of(html)) is runs
    assert ('print("ran" + "!")' in text_of(html)) is not runs  # shown, not run


def test_a_failing_block_names_its_page_and_line(adapter):
    text = """
        # A page

        Some prose.

        ```python exec="on"
        x = 1
        raise ValueError("no good")
        ```
        """
    with pytest.raises(ExampleError) as caught:
        render(adapter, text, page="docs/failing.md")
    # The raise is on the page's line 7 (the fence opens on line 5).
    assert str(caught.value).startswith("docs/failing.md:7: ")
    assert "ValueError: no good" in str(caught.value)
    assert adapter.current is None  # the failed page is closed


def test_an_md_fence_runs_its_python_blocks_in_the_pages_process(adapter):
    html = render(
        adapter,
        """
        ```python exec="on" session="s"
        answer = 6 * 7
        ```

        ````md exec="on"
        From inside:

        ```python exec="on" session="s"
        import os
        print(f"the answer is {answer}, run by docexec: {'DOCEXEC_ROOT' in os.environ}")
        ```
        ````
        """,
    )
    assert "the answer is 42, run by docexec: True" in text_of(html)


def test_an_md_fence_runs_in_the_pages_process_after_a_failed_build_in_this_one(adapter):
    # What a build that failed leaves (markdown-exec resets it after a build that ends).
    markdown_config.save(["pymdownx.superfences"], {})
    test_an_md_fence_runs_its_python_blocks_in_the_pages_process(adapter)


def test_a_bash_fence_is_left_to_markdown_exec(adapter):
    html = render(adapter, '```bash exec="on"\necho "from bash $((6 * 7))"\n```\n')
    assert "from bash 42" in text_of(html)


def test_a_tab_in_printed_text_is_shown_at_a_terminals_stops(adapter):
    html = render(
        adapter, '```python exec="on" result="text"\nprint("ab\\tc")\nprint("\\tx")\n```\n'
    )
    shown = BeautifulSoup(html, "html.parser").select_one("code").get_text()
    # Every 8 columns, as a terminal (and a pycon transcript) shows them; not Markdown's 4.
    assert shown.splitlines() == ["ab      c", "        x"]
