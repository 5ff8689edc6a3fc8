"""docexec's memories beside the execution cache (docexec.memo): a warm build skips the
work, and gives the bytes a build without them gives.

Small Material sites built in this process (see ``build_in_process``). What a build
did is counted by wrapping the function that does it: markdown-exec's rendering of a
block, the search plugin's HTML parser, Jinja's compiler.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from pathlib import Path

import jinja2
import pytest
from conftest import build_in_process
from material.plugins.search import plugin as search_plugin
from mkdocs.livereload import LiveReloadServer

from docexec import memo, plugin

pytestmark = pytest.mark.site

CONFIG = """\
site_name: memo test
strict: true
theme:
  name: material
  custom_dir: overrides
plugins:
  - search
  - docexec
  - markdown-exec:
      languages: [python, pycon]
markdown_extensions:
  - toc:
      permalink: true
  - pymdownx.highlight
  - pymdownx.superfences
  - pymdownx.tabbed:
      alternate_style: true
"""

PAGES = {
    "index.md": """\
        # Home

        Only prose.
        """,
    "blocks.md": """\
        # Blocks

        ```pycon exec="on"
        >>> 6 * 7
        ```

        Some prose between.

        ```python exec="on" result="text"
        print("a printed line")
        ```

        ```python exec="on" source="tabbed-left"
        print("Beside its source, in tabs that markdown-exec numbers.")
        ```

        ```python exec="on"
        print("## Made by a block")
        ```
        """,
}
BLOCKS = 4
#: The blocks above whose output is not a heading: replayed from memory.
REMEMBERED = 3


def write_site(root: Path) -> None:
    (root / "mkdocs.yml").write_text(CONFIG)
    (root / "docs").mkdir()
    for name, text in PAGES.items():
        (root / "docs" / name).write_text(textwrap.dedent(text))
    (root / "overrides").mkdir()
    (root / "overrides" / "main.html").write_text(
        '{% extends "base.html" %}\n{% block footer %}<p>first footer</p>{% endblock %}\n'
    )


def site_bytes(root: Path, site: str = "site") -> dict[str, bytes]:
    return {
        path.relative_to(root / site).as_posix(): path.read_bytes()
        for path in sorted((root / site).rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def counts(monkeypatch) -> Counter:
    """How many blocks were rendered, pages parsed for search, and templates compiled."""
    counted: Counter = Counter()

    def count(owner, name: str, what: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counted[what] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    count(plugin, "base_format", "blocks rendered")
    count(search_plugin.Parser, "feed", "pages parsed")
    compile_ = jinja2.Environment.compile

    def compile_template(self, *args, **kwargs):
        # Of the environments that render pages: the one the search plugin makes to
        # read its translations (two small templates) is left as it is.
        if self.bytecode_cache is not None:
            counted["templates compiled"] += 1
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", compile_template)
    return counted


def build(root: Path, counts: Counter, **env: str) -> Counter:
    counts.clear()
    result = build_in_process(root, env)
    assert result.returncode == 0, result.log
    return Counter(counts)


def test_a_warm_build_repeats_none_of_the_work_and_gives_the_same_bytes(tmp_path, counts):
    write_site(tmp_path)
    cold = build(tmp_path, counts)
    assert cold["blocks rendered"] == BLOCKS and cold["pages parsed"] == 2
    assert cold["templates compiled"] > 10
    cold_site = site_bytes(tmp_path)

    warm = build(tmp_path, counts)
    # The block whose output is a heading goes to the table of contents: rendered.
    assert warm == Counter({"blocks rendered": BLOCKS - REMEMBERED})
    assert site_bytes(tmp_path) == cold_site, "a warm build must give the cold build's bytes"
    page = (tmp_path / "site/blocks/index.html").read_text()
    # The heading still made the table of contents (markdown-exec prefixes its id).
    assert re.search(r'<a href="#exec-\d+--made-by-a-block" class="md-nav__link">', page)


def test_what_changed_is_done_again_and_only_that(tmp_path, counts):
    write_site(tmp_path)
    build(tmp_path, counts)

    # Prose on one page: that page's HTML is parsed for search again, no block rendered.
    (tmp_path / "docs/index.md").write_text("# Home\n\nA new sentence to search for.\n")
    done = build(tmp_path, counts)
    assert done["pages parsed"] == 1 and done["blocks rendered"] == BLOCKS - REMEMBERED
    assert (
        "A new sentence to search for." in (tmp_path / "site/search/search_index.json").read_text()
    )

    # A template: compiled again (Jinja compares the source), and the site shows it.
    (tmp_path / "overrides/main.html").write_text(
        '{% extends "base.html" %}\n{% block footer %}<p>second footer</p>{% endblock %}\n'
    )
    done = build(tmp_path, counts)
    assert done["templates compiled"] == 1
    assert "second footer" in (tmp_path / "site/index.html").read_text()

    # A block on a page built earlier: markdown-exec numbers the ids in the HTML of
    # the blocks after it on, so those are rendered again, as a build with no memory
    # renders them.
    (tmp_path / "docs/index.md").write_text('# Home\n\n```python exec="on"\nprint("*new*")\n```\n')
    done = build(tmp_path, counts)
    assert done["blocks rendered"] == 1 + BLOCKS
    assert_same_as_built_with_no_memory(tmp_path)

    # How Markdown renders: every block again.
    config = (tmp_path / "mkdocs.yml").read_text()
    (tmp_path / "mkdocs.yml").write_text(
        config.replace(
            "  - pymdownx.highlight\n", "  - pymdownx.highlight:\n      linenums: true\n"
        )
    )
    assert build(tmp_path, counts)["blocks rendered"] == 1 + BLOCKS
    assert "linenos" in (tmp_path / "site/blocks/index.html").read_text()
    assert_same_as_built_with_no_memory(tmp_path)


def assert_same_as_built_with_no_memory(root: Path) -> None:
    result = build_in_process(root, {"DOCEXEC_CACHE": "0"}, site_dir=str(root / "fresh"))
    assert result.returncode == 0, result.log
    assert site_bytes(root, "fresh") == site_bytes(root)


def test_turned_off_it_remembers_nothing(tmp_path, counts):
    write_site(tmp_path)
    build(tmp_path, counts, DOCEXEC_CACHE="0")
    again = build(tmp_path, counts, DOCEXEC_CACHE="0")
    assert again["blocks rendered"] == BLOCKS and again["pages parsed"] == 2
    assert not (tmp_path / ".cache").exists()


@pytest.mark.parametrize("damage", ["unreadable", "wrong shape"])
def test_a_memory_that_cannot_be_read_is_empty(tmp_path, counts, damage):
    write_site(tmp_path)
    build(tmp_path, counts)
    cold_site = site_bytes(tmp_path)
    search = tmp_path / ".cache/docexec/search.json"
    blocks = tmp_path / ".cache/docexec/docs/blocks.md.html.json"
    if damage == "unreadable":
        search.write_text("{not json")
        blocks.write_bytes(b"\xff\xfe")
    else:  # JSON, each entry of another shape than the build writes
        search.write_text(json.dumps(dict.fromkeys(json.loads(search.read_text()), "text")))
        shapes = ["<p>html</p>", ["<p>html</p>"], ["<p>html</p>", "1"], ["<p>html</p>", -1]]
        keys = json.loads(blocks.read_text())
        blocks.write_text(json.dumps(dict(zip(keys, shapes))))
    again = build(tmp_path, counts)
    assert again["pages parsed"] == 2 and again["blocks rendered"] == BLOCKS
    assert site_bytes(tmp_path) == cold_site
    assert build(tmp_path, counts)["pages parsed"] == 0  # and it is whole again


def test_an_output_that_includes_a_file_is_always_rendered(tmp_path, counts):
    """pymdownx.snippets reads the file an output names when the output is rendered:
    remembered, the HTML would keep the file's old content."""
    write_site(tmp_path)
    config = (tmp_path / "mkdocs.yml").read_text()
    (tmp_path / "mkdocs.yml").write_text(config + "  - pymdownx.snippets\n")
    (tmp_path / "part.md").write_text("First version of the part.\n")
    (tmp_path / "docs/part.md").write_text(
        '# Part\n\n```python exec="on"\nprint(\'--8<-- "part.md"\')\n```\n'
    )
    build(tmp_path, counts)
    (tmp_path / "part.md").write_text("Second version of the part.\n")
    build(tmp_path, counts)
    assert "Second version" in (tmp_path / "site/part/index.html").read_text()
    assert_same_as_built_with_no_memory(tmp_path)


def test_serve_looks_for_changes_every_tenth_of_a_second(tmp_path):
    server = LiveReloadServer(builder=lambda: None, host="127.0.0.1", port=0, root=str(tmp_path))
    server.watch(str(tmp_path))
    assert {emitter.timeout for emitter in server.observer.emitters} == {0.5}  # MkDocs' own
    memo.poll_quickly(server)
    server.watch(str(tmp_path / "later"))
    assert {emitter.timeout for emitter in server.observer.emitters} == {memo.POLL}
    assert memo.POLL == 0.1


def test_a_failed_build_does_not_change_the_next_one(tmp_path, counts):
    """markdown-exec sets its count of rendered blocks back only after a build that
    succeeded; under ``mkdocs serve`` the build after a failed one still numbers the
    ids in blocks' HTML from 0."""
    write_site(tmp_path)
    good = (tmp_path / "docs/blocks.md").read_text()
    (tmp_path / "docs/blocks.md").write_text(
        good + '\n```python exec="on"\nraise SystemExit(3)\n```\n'
    )
    assert build_in_process(tmp_path).returncode == 1
    (tmp_path / "docs/blocks.md").write_text(good)
    build(tmp_path, counts)
    assert_same_as_built_with_no_memory(tmp_path)
