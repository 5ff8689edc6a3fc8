"""docexec's memories beside the execution cache (docexec.memo): a warm build skips the
work, and gives the bytes a build without them gives.

Small Material sites built in this process (see ``build_in_process``). What a build
did is counted by wrapping the function that does it: markdown-exec's rendering of a
block, the search plugin's HTML parser, Jinja's compiler.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import jinja2
import pytest
import sites
from conftest import build_in_process
from material.plugins.search import plugin as search_plugin
from mkdocs.livereload import LiveReloadServer
from sites import SUPERFENCES, TABBED, PythonName, build_command, mkdocstrings

from docexec import adapter, cache, memo

pytestmark = pytest.mark.site

#: This site's Markdown extensions, in their order.
EXTENSIONS = [{"toc": {"permalink": True}}, "pymdownx.highlight", SUPERFENCES, TABBED]


def site_options(extensions: Sequence[object] = (), **options: object) -> dict[str, object]:
    """This site's mkdocs.yml (see sites.config), ``extensions`` added after its own.

    Material, with a template of the site's own; search before docexec.
    """
    return {
        "theme": {"name": "material", "custom_dir": "overrides"},
        "before_docexec": ["search"],
        "preload": (),
        "markdown_extensions": [*EXTENSIONS, *extensions],
        **options,
    }


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


def write_site(root: Path, extensions: Sequence[object] = (), **options: object) -> None:
    """The site's pages and its footer template; its mkdocs.yml from ``site_options``."""
    sites.write_site(root, PAGES, **site_options(extensions, **options))
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

    count(adapter, "base_format", "blocks rendered")
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

    for _ in range(2):  # the second warm build starts from what the first remembered
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
    linenums = {"pymdownx.highlight": {"linenums": True}}
    extensions = [linenums if name == "pymdownx.highlight" else name for name in EXTENSIONS]
    sites.write_config(tmp_path, **site_options(markdown_extensions=extensions))
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
    else:  # each entry of another shape than the build writes, the checksum to match
        keys = json.loads(search.read_text())["entries"]
        search.write_text(json.dumps(cache.sealed({"entries": dict.fromkeys(keys, "text")})))
        shapes = ["<p>html</p>", ["<p>html</p>"], ["<p>html</p>", "1"], ["<p>html</p>", -1]]
        keys = json.loads(blocks.read_text())["entries"]
        entries = dict(zip(keys, shapes, strict=False))
        blocks.write_text(json.dumps(cache.sealed({"entries": entries})))
    again = build(tmp_path, counts)
    assert again["pages parsed"] == 2 and again["blocks rendered"] == BLOCKS
    assert site_bytes(tmp_path) == cold_site
    assert build(tmp_path, counts)["pages parsed"] == 0  # and it is whole again


def add_page(root: Path, name: str, code: str, prose: str = "") -> None:
    """A page ``name`` with one python block running ``code``, and ``prose`` after it."""
    block = "\n".join(['```python exec="on"', textwrap.dedent(code).strip(), "```"])
    (root / "docs" / name).write_text(f"# {name}\n\n{block}\n\n{prose}\n")


def test_an_output_that_includes_a_file_is_always_rendered(tmp_path, counts):
    """pymdownx.snippets reads the file an output names when the output is rendered:
    remembered, the HTML would keep the file's old content."""
    write_site(tmp_path, ["pymdownx.snippets"])
    (tmp_path / "part.md").write_text("First version of the part.\n")
    add_page(tmp_path, "part.md", """print('--8<-- "part.md"')""")
    build(tmp_path, counts)
    (tmp_path / "part.md").write_text("Second version of the part.\n")
    build(tmp_path, counts)
    assert "Second version" in (tmp_path / "site/part/index.html").read_text()
    assert_same_as_built_with_no_memory(tmp_path)


#: Abbreviations from a glossary that pymdownx.snippets appends to every piece of Markdown.
GLOSSARY = ["abbr", {"pymdownx.snippets": {"auto_append": ["glossary.md"]}}]


def test_a_file_an_extension_read_as_it_rendered_a_block_is_in_its_key(tmp_path, counts):
    """A glossary pymdownx.snippets appends to every piece of Markdown: a block's
    printed text gets its abbreviations from it (Material's usual set-up)."""
    write_site(tmp_path, GLOSSARY)
    (tmp_path / "glossary.md").write_text("*[HTML]: First meaning\n")
    add_page(tmp_path, "glossary-page.md", 'print("HTML, printed by a block.")')
    build(tmp_path, counts)
    (tmp_path / "glossary.md").write_text("*[HTML]: Second meaning\n")
    # Every block's rendering read the glossary.
    assert build(tmp_path, counts)["blocks rendered"] == BLOCKS + 1
    assert 'title="Second meaning"' in (tmp_path / "site/glossary-page/index.html").read_text()
    assert_same_as_built_with_no_memory(tmp_path)


HOOKS = """\
from markdown import Extension
from markdown.treeprocessors import Treeprocessor

WORD = "{word}"


class Sign(Treeprocessor):
    def run(self, root):
        for paragraph in root.iter("p"):
            paragraph.text = (paragraph.text or "") + " " + WORD


class SignExtension(Extension):
    def extendMarkdown(self, md):
        md.treeprocessors.register(Sign(md), "sign", 0)


def on_config(config):
    config.markdown_extensions.append(SignExtension())


def on_env(env, config, files):
    env.filters["signed"] = lambda text: text + " " + WORD
    return env
"""


def build_in_a_process(root: Path) -> None:
    """``mkdocs build`` in a process of its own (MkDocs loads a hook once per process)."""
    result = build_command(root)
    assert result.returncode == 0, result.stderr


def test_the_site_s_own_code_is_in_every_key(tmp_path, counts):
    """A hook's Markdown extension renders blocks' outputs; its Jinja filter is applied
    when a template compiles (Jinja folds a constant through it into the bytecode).
    Under `mkdocs serve` an edited hook is not loaded again: what the memories keep
    from that process is what its hook did, and a new process does not take it."""
    write_site(tmp_path, hooks=["hooks.py"])
    (tmp_path / "hooks.py").write_text(HOOKS.format(word="first"))
    (tmp_path / "overrides/main.html").write_text(
        '{% extends "base.html" %}\n{% block footer %}{{ "footer" | signed }}{% endblock %}\n'
    )
    build(tmp_path, counts)
    (tmp_path / "hooks.py").write_text(HOOKS.format(word="second"))
    build(tmp_path, counts)  # as under serve: the hook is the one loaded first
    assert "footer first" in (tmp_path / "site/blocks/index.html").read_text()

    build_in_a_process(tmp_path)
    page = (tmp_path / "site/blocks/index.html").read_text()
    assert "footer second" in page and "Beside its source" in page and "first" not in page
    fresh = tmp_path / "no-memory"
    shutil.copytree(tmp_path, fresh, ignore=shutil.ignore_patterns(".cache", "site"))
    build_in_a_process(fresh)
    assert site_bytes(fresh) == site_bytes(tmp_path)


def test_an_anchor_in_an_output_is_known_to_cross_references(tmp_path, counts):
    """autorefs registers the anchors it finds in a block's output as it renders it."""
    write_site(tmp_path, ["attr_list"], before_docexec=["search", "autorefs"])
    add_page(tmp_path, "anchor.md", 'print("[](){#my-anchor}\\nAn anchored paragraph.")')
    (tmp_path / "docs/index.md").write_text("# Home\n\nSee [the anchor][exec-1--my-anchor].\n")
    build(tmp_path, counts)
    build(tmp_path, counts)  # --strict: an unknown cross-reference fails it
    assert_same_as_built_with_no_memory(tmp_path)


def test_metadata_of_any_yaml_type_is_indexed_as_without_memory(tmp_path, counts):
    write_site(tmp_path)
    (tmp_path / "docs/release.md").write_text(
        "---\ntitle: Release\non: push\n2024: a year\nsearch:\n  boost: 2024-01-01\n---\n"
        "# Release\n\nSome prose.\n"
    )
    build(tmp_path, counts)
    assert build(tmp_path, counts)["pages parsed"] == 0
    assert_same_as_built_with_no_memory(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "unwritable"])
def test_compiled_templates_that_cannot_be_read_or_kept_are_compiled(tmp_path, counts, damage):
    write_site(tmp_path)
    build(tmp_path, counts)
    cold_site = site_bytes(tmp_path)
    for compiled in (tmp_path / ".cache/docexec/jinja").rglob("*.cache"):
        if damage == "truncated":
            compiled.write_bytes(compiled.read_bytes()[:20])
        else:  # a folder in its place: the file can be neither read nor replaced
            compiled.unlink()
            compiled.mkdir()
    assert build(tmp_path, counts)["templates compiled"] > 10
    assert site_bytes(tmp_path) == cold_site


def test_a_docs_folder_outside_the_repository_gets_no_memory_in_it(tmp_path, counts):
    write_site(tmp_path / "project", docs_dir="../docs")
    build(tmp_path / "project", counts)
    assert build(tmp_path / "project", counts)["blocks rendered"] == BLOCKS - REMEMBERED
    assert sorted(path.name for path in (tmp_path / "docs").iterdir()) == sorted(PAGES)
    assert_same_as_built_with_no_memory(tmp_path / "project")


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


def test_a_page_whose_blocks_are_all_remembered_is_processed_as_if_rendered(tmp_path, counts):
    """markdown-exec adds processors to the page's Markdown as it renders a block's output
    (one removes its wrappers, wherever they are): remembered blocks add them too."""
    write_site(tmp_path, ["md_in_html"])
    wrapper = '<div class="markdown-exec" markdown>In prose.</div>'
    add_page(tmp_path, "wrapped.md", 'print("Printed.")', wrapper)
    build(tmp_path, counts)
    build(tmp_path, counts)
    assert_same_as_built_with_no_memory(tmp_path)


def test_a_filter_that_reads_the_configuration_is_applied_at_every_build(tmp_path, counts):
    """Jinja may apply a filter to a constant as it compiles: a filter of the site's
    own (a hook's) can depend on anything, so its templates are compiled every time."""
    write_site(tmp_path, hooks=["hooks.py"], extra={"word": "first"})
    (tmp_path / "hooks.py").write_text(
        "def on_env(env, config, files):\n"
        '    env.filters["signed"] = lambda text: text + " " + config.extra["word"]\n'
        "    return env\n"
    )
    (tmp_path / "overrides/main.html").write_text(
        '{% extends "base.html" %}\n{% block footer %}{{ "footer" | signed }}{% endblock %}\n'
    )
    build(tmp_path, counts)
    sites.write_config(tmp_path, **site_options(hooks=["hooks.py"], extra={"word": "second"}))
    build(tmp_path, counts)
    assert "footer second" in (tmp_path / "site/index.html").read_text()
    assert_same_as_built_with_no_memory(tmp_path)


ICONS = {
    "pymdownx.emoji": {
        "emoji_index": PythonName("material.extensions.emoji.twemoji"),
        "emoji_generator": PythonName("material.extensions.emoji.to_svg"),
        "options": {"custom_icons": ["overrides/.icons"]},
    }
}


def test_what_an_extension_read_once_for_the_whole_process_is_in_every_key(tmp_path):
    """Material reads an icon once per process (an lru_cache), as it renders the first
    block that shows it. Each build in its own process, as `mkdocs build` runs."""
    write_site(tmp_path, [ICONS])
    icons = tmp_path / "overrides/.icons/my"
    icons.mkdir(parents=True)
    (icons / "star.svg").write_text('<svg id="one"></svg>')
    for page in ("icons-a.md", "icons-b.md"):  # b: the icon is in Material's cache already
        add_page(tmp_path, page, 'print("Icon: :my-star:")')
    build_in_a_process(tmp_path)
    (icons / "star.svg").write_text('<svg id="two"></svg>')
    build_in_a_process(tmp_path)
    for page in ("icons-a", "icons-b"):
        assert 'id="two"' in (tmp_path / "site" / page / "index.html").read_text()
    fresh = tmp_path / "no-memory"
    shutil.copytree(tmp_path, fresh, ignore=shutil.ignore_patterns(".cache", "site"))
    build_in_a_process(fresh)
    assert site_bytes(fresh) == site_bytes(tmp_path)


def test_with_no_audit_hook_no_block_is_remembered(tmp_path):
    """Another audit hook may refuse docexec's: then what rendering reads is unknown."""
    write_site(tmp_path, GLOSSARY, hooks=["hooks.py"])
    (tmp_path / "hooks.py").write_text(
        "import sys\n\n\ndef refuse(event, args):\n"
        '    if event == "sys.addaudithook":\n'
        '        raise RuntimeError("no more audit hooks")\n\n\n'
        "sys.addaudithook(refuse)\n"
    )
    (tmp_path / "glossary.md").write_text("*[HTML]: First meaning\n")
    add_page(tmp_path, "glossary-page.md", 'print("HTML, printed by a block.")')
    build_in_a_process(tmp_path)
    (tmp_path / "glossary.md").write_text("*[HTML]: Second meaning\n")
    build_in_a_process(tmp_path)
    assert 'title="Second meaning"' in (tmp_path / "site/glossary-page/index.html").read_text()
    assert not any(
        json.loads(memory.read_text())["entries"]
        for memory in (tmp_path / ".cache/docexec/docs").glob("*.html.json")
    )


def alter(files: list[Path], old: bytes, new: bytes) -> None:
    """Change ``old`` into ``new`` (as long) in those of ``files`` that hold it: at least one."""
    changed = 0
    for path in files:
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))
            changed += 1
    assert changed, f"no memory holds {old!r}"


@pytest.mark.parametrize("memory", ["search entries", "blocks' HTML", "templates"])
def test_a_memory_altered_into_another_valid_one_is_not_used(tmp_path, counts, memory):
    """An entry whose bytes were changed (valid JSON, the right shape; bytecode that
    still loads) is never published: each memory carries a checksum of what it holds."""
    write_site(tmp_path)
    build(tmp_path, counts)
    cold_site = site_bytes(tmp_path)
    kept = tmp_path / ".cache/docexec"
    if memory == "search entries":
        alter([kept / "search.json"], b"Only prose.", b"Only forged")
    elif memory == "blocks' HTML":
        alter([kept / "docs/blocks.md.html.json"], b"a printed line", b"a forged  line")
    else:  # a string constant in the marshalled code of the footer's template
        alter(list((kept / "jinja").rglob("*.cache")), b"first footer", b"FIRST FOOTER")
    again = build(tmp_path, counts)
    assert site_bytes(tmp_path) == cold_site
    if memory == "search entries":
        assert again["pages parsed"] == 2
    elif memory == "blocks' HTML":
        assert again["blocks rendered"] == BLOCKS
    else:
        assert again["templates compiled"] > 0


def test_every_memory_is_keyed_on_the_installed_distributions(tmp_path, counts, monkeypatch):
    """CI restores the cache across commits: after a bump of mkdocs-material (a
    Dependabot pull request), no memory gives what the old version made."""
    write_site(tmp_path)
    build(tmp_path, counts)
    installed = cache.installed_distributions()
    bumped = [
        "mkdocs-material==0.0.1" if name.startswith("mkdocs-material==") else name
        for name in installed
    ]
    assert bumped != installed
    monkeypatch.setattr(cache, "installed_distributions", lambda: bumped)
    again = build(tmp_path, counts)
    assert again["pages parsed"] == 2
    assert again["blocks rendered"] == BLOCKS
    assert again["templates compiled"] > 10


MARKDOWN = {
    "markdown_extensions": ["toc", "pymdownx.superfences"],
    "mdx_configs": {"toc": {"permalink": True}},
    "use_directory_urls": True,
}
OPTIONS = {"code": 'print("hi")', "html": False, "result": "", "session": None, "md": None}


def test_each_input_of_a_block_s_key_changes_it_alone(monkeypatch):
    """Every input block_key's docstring names, changed alone, gives another key."""

    def key(markdown=MARKDOWN, seed=0, code="code", count=0, kind="python", **rest) -> str:
        fingerprint = memo.markdown_fingerprint(markdown, cache.environment_key(seed), code)
        options, output, raised = rest.get("options", OPTIONS), rest.get("output", "hi\n"), []
        return memo.block_key(fingerprint, count, kind, options, output, rest.get("raised", raised))

    def environment(owner: object, name: str, value: object) -> str:
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, value)
            return key()

    installed = cache.installed_distributions()
    keys = {
        "nothing": key(),
        "markdown_extensions": key(markdown={**MARKDOWN, "markdown_extensions": ["toc"]}),
        "mdx_configs": key(markdown={**MARKDOWN, "mdx_configs": {}}),
        "use_directory_urls": key(markdown={**MARKDOWN, "use_directory_urls": False}),
        "format": environment(cache, "FORMAT", cache.FORMAT + 1),
        "python": environment(cache.sys, "version", "3.99.0"),
        "machine": environment(cache.platform, "machine", lambda: "another machine"),
        "system": environment(cache.platform, "system", lambda: "another system"),
        "distributions": environment(cache, "installed_distributions", lambda: installed[1:]),
        "seed": key(seed=1),
        "code": key(code="other code"),
        "count": key(count=1),
        "kind": key(kind="pycon"),
        "an option": key(options={**OPTIONS, "html": True}),
        "the code option": key(options={**OPTIONS, "code": 'print("hi") '}),
        "an option added": key(options={**OPTIONS, "id": "x"}),
        "output": key(output="hi!\n"),
        "raised": key(raised=[0]),
    }
    with monkeypatch.context() as patch:
        patch.setenv("PYTHONHASHSEED", "another")
        keys["PYTHONHASHSEED"] = key()
    assert len(set(keys.values())) == len(keys), keys
    # The Markdown object itself is not: its configuration is.
    assert key(options={**OPTIONS, "md": object()}) == keys["nothing"]


def test_what_an_extension_read_in_an_earlier_build_of_the_process_is_keyed_as_read(
    tmp_path, counts
):
    """Under `mkdocs serve` every build runs in one process: Material still holds the
    icon it read in the first build after the file changed. A block's HTML made then
    is keyed on the icon as Material read it, so a later build in a new process does
    not replay the old icon."""
    write_site(tmp_path, [ICONS])
    icons = tmp_path / "overrides/.icons/my"
    icons.mkdir(parents=True)
    (icons / "star.svg").write_text('<svg id="one"></svg>')
    add_page(tmp_path, "icons-a.md", 'print("Icon: :my-star:")')
    build(tmp_path, counts)
    (icons / "star.svg").write_text('<svg id="two"></svg>')
    build(tmp_path, counts)  # as under serve: the icon is the one read first
    assert 'id="one"' in (tmp_path / "site/icons-a/index.html").read_text()
    build_in_a_process(tmp_path)
    assert 'id="two"' in (tmp_path / "site/icons-a/index.html").read_text()


def test_what_another_build_read_in_its_own_cache_is_no_input_of_a_later_one(tmp_path, counts):
    # An API page: mkdocstrings reads its compiled templates from that site's cache
    # folder while the page renders, which that build ignores. A later build (another
    # site, in the same process, as under `mkdocs serve` or in these tests) must not
    # count them among what its blocks' HTML depends on.
    other = tmp_path / "other"
    api = {"index.md": "# API\n\n::: shown_module.helper\n"}
    sites.write_site(other, api, **site_options(after_markdown_exec=[mkdocstrings(".")]))
    (other / "overrides").mkdir()
    (other / "shown_module.py").write_text('"""A module."""\n\n\ndef helper():\n    """Help."""\n')
    build(other, counts)
    assert any((other / ".cache" / "docexec" / "jinja").rglob("*mkdocstrings*"))
    (tmp_path / "site").mkdir()
    write_site(tmp_path / "site")
    build(tmp_path / "site", counts)
    warm = build(tmp_path / "site", counts)
    assert warm["blocks rendered"] == BLOCKS - REMEMBERED
