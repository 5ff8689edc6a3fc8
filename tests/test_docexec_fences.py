"""docexec.fences: which fences run and where each stands, on strings."""

from __future__ import annotations

import markdown_exec
import pytest

from docexec.fences import Fence, FenceError, scan_fences, shown_code, untagged
from docexec.snippets import expand_snippets

RUNS = '```python exec="on"\nprint(1)\n```'
#: What markdown-exec's plugin configures by default: every language it has a formatter for.
EVERY = tuple(markdown_exec.formatters)


def tags(markdown: str) -> list[str]:
    scan = scan_fences(markdown)
    lines = scan.markdown.split("\n")
    return [lines[fence.first] for fence in scan.fences]


def test_a_top_level_fence_is_tagged_with_its_index():
    assert tags(f"# Page\n\n{RUNS}\n\n{RUNS}\n") == [
        '```python exec="on" docexec_fence="0"',
        '```python exec="on" docexec_fence="1"',
    ]


def test_front_matter_counts_in_the_line():
    assert scan_fences(f"{RUNS}\n", first_line=5).fences[0].line == 5


@pytest.mark.parametrize(
    "container",
    [
        "!!! note\n\n    {fence}",
        '??? example "Helper"\n    {fence}',
        "- item\n\n  {fence}",
        "1. step\n\n   {fence}",
    ],
)
def test_fences_in_containers_are_tagged(container):
    fence = RUNS.replace("\n", "\n" + " " * (len(container.split("{fence}")[0].split("\n")[-1])))
    markdown = "Text.\n\n" + container.format(fence=fence) + "\n"
    assert len(tags(markdown)) == 1


def test_an_indented_code_block_showing_fence_syntax_is_left_alone():
    markdown = "Write it like this:\n\n    " + RUNS.replace("\n", "\n    ") + "\n"
    scan = scan_fences(markdown)
    assert scan.fences == [] and scan.markdown == markdown
    # SuperFences still hands it to the formatter: the code says it is only shown.
    assert scan.shown == {shown_code("print(1)")}


def test_an_indented_code_block_inside_an_admonition_is_left_alone():
    fence = RUNS.replace("\n", "\n        ")
    markdown = f"!!! note\n\n    Text.\n\n        {fence}\n"
    assert scan_fences(markdown).fences == []


def test_a_fence_in_a_block_quote_is_tagged_with_its_line():
    markdown = "Text.\n\n> Quoted.\n>\n> " + RUNS.replace("\n", "\n> ") + "\n"
    scan = scan_fences(markdown)
    assert [f.line for f in scan.fences] == [5]
    assert '> ```python exec="on" docexec_fence="0"' in scan.markdown


def test_a_fence_in_an_html_comment_is_marked_not_to_run():
    scan = scan_fences(f"Text.\n\n<!--\n{RUNS}\n-->\n\n{RUNS}\n")
    assert [f.line for f in scan.fences] == [9]
    assert 'docexec_skip="1"' in scan.markdown.split("\n")[3]


def test_a_fence_inside_a_fence_is_left_alone():
    markdown = f"````markdown\n{RUNS}\n````\n"
    scan = scan_fences(markdown)
    assert (scan.markdown, scan.fences, scan.shown) == (markdown, [], set())


def test_the_tags_come_out_again_as_they_went_in():
    markdown = f'{RUNS}\n\n```{{.pycon exec="1" }}  \n>>> 1\n```\n\n```py exec=on \nx = 1\n```\n'
    scan = scan_fences(markdown)
    assert len(scan.fences) == 3
    assert untagged(scan.markdown) == markdown == "\n".join(scan.lines)


# What markdown-exec runs ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["1", "on", "true", "True", "yes", "x", "0", "off", "OFF", "false", "no", ""]
)
def test_exec_means_what_markdown_exec_s_validator_says(value):
    inputs = {"exec": value}
    runs = markdown_exec.validator("python", inputs, {}, {}, None)
    assert bool(scan_fences(f'```python exec="{value}"\nx = 1\n```\n').fences) == runs


def test_markdown_exec_auto_runs_a_fence_without_exec():
    # The list markdown-exec read from the environment when imported, as its validator uses it.
    saved = list(markdown_exec.MARKDOWN_EXEC_AUTO)
    markdown_exec.MARKDOWN_EXEC_AUTO[:] = ["pycon"]
    try:
        scan = scan_fences("```pycon\n>>> 1\n```\n\n```python\nx = 1\n```\n")
    finally:
        markdown_exec.MARKDOWN_EXEC_AUTO[:] = saved
    assert [f.line for f in scan.fences] == [1]


@pytest.mark.parametrize("lang", ["bash", "sh", "console", "tree", "pyodide"])
def test_a_fence_markdown_exec_runs_is_left_to_it(lang):
    markdown = f'# P\n\n```{lang} exec="1"\necho hi\n```\n\n{RUNS}\n'
    scan = scan_fences(markdown, languages=EVERY)
    assert scan.markdown.split("\n")[2] == f'```{lang} exec="1"'
    assert [f.line for f in scan.fences] == [7]


def test_a_fence_that_nothing_configured_runs_is_refused_naming_why():
    with pytest.raises(FenceError) as caught:
        scan_fences('Text.\n\n```bash exec="on"\necho hi\n```\n', languages=["python", "pycon"])
    assert caught.value.place("docs/p.md") == "docs/p.md:3"
    assert "nothing configured runs bash fences" in caught.value.message
    assert "markdown-exec's languages are pycon, python" in caught.value.message


def test_a_python_fence_markdown_exec_is_not_configured_for_is_refused():
    with pytest.raises(FenceError, match="nothing configured runs python fences"):
        scan_fences(RUNS, languages=["pycon"])


# md fences --------------------------------------------------------------------

MD_PAGE = """\
# Page

````md exec="1" source="tabbed-left"
Some *Markdown*.

```python exec="1"
print("inner")
```

```pycon exec="1"
>>> 1
```
````

```python exec="on"
print("after")
```
"""


def test_the_python_blocks_an_md_fence_renders_run_at_their_page_lines():
    scan = scan_fences(MD_PAGE, first_line=3)
    assert [(f.line, f.container) for f in scan.fences] == [
        (5, True),
        (8, False),
        (12, False),
        (17, False),
    ]
    lines = scan.markdown.split("\n")
    assert lines[5] == '```python exec="1" docexec_fence="1"'
    assert lines[9] == '```pycon exec="1" docexec_fence="2"'
    assert untagged(scan.markdown) == MD_PAGE


def test_an_indented_md_fence_s_blocks_are_read_without_its_indent():
    page = "- item\n\n  " + MD_PAGE.split("\n\n", 1)[1].replace("\n", "\n  ")
    scan = scan_fences(page)
    assert [f.line for f in scan.fences if not f.container] == [6, 10, 15]


def test_a_refused_fence_in_an_md_fence_names_its_page_line():
    page = '# P\n\n````md exec="1"\nText.\n\n```bash exec="1"\nls\n```\n````\n'
    with pytest.raises(FenceError) as caught:
        scan_fences(page, languages=["md", "python"])
    assert caught.value.place("docs/p.md") == "docs/p.md:6"


def test_an_md_fence_in_a_comment_runs_nothing():
    scan = scan_fences(f"<!--\n{MD_PAGE}\n-->\n")
    assert [f for f in scan.fences if not f.container] == []
    assert scan.markdown.count('docexec_skip="1"') == 3


# Included files ---------------------------------------------------------------

FRAGMENT = 'Fragment.\n\n```python exec="on"\nprint("from the fragment")\n```\n'


@pytest.fixture
def snippets(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "fragment.md").write_text(FRAGMENT)
    (tmp_path / "docs" / "plain.md").write_text("Nothing to run.\n")
    return {"snippet_paths": [tmp_path / "docs"], "root": tmp_path}


def test_an_included_fence_runs_naming_its_file_and_the_include(snippets):
    page = f'# P\n\n--8<-- "fragment.md"\n\n{RUNS}\n'
    scan = scan_fences(page, first_line=3, **snippets)
    included, own = scan.fences
    assert included == Fence(4, 6, 5, "docs/fragment.md", 3)
    assert included.place("docs/p.md", 1) == "docs/fragment.md:4 (included at docs/p.md:5)"
    assert own.line == 7 and own.path == ""
    # The fragment's text is the page's now: what the cache key is made of sees it.
    assert scan.lines[4:7] == FRAGMENT.split("\n")[2:5]
    assert scan.markdown.split("\n")[4] == '```python exec="on" docexec_fence="0"'


def test_an_include_that_brings_nothing_to_run_stays_an_include(snippets):
    page = '# P\n\n--8<-- "plain.md"\n\n    --8<-- "fragment.md"\n'
    scan = scan_fences(page, **snippets)
    assert scan.markdown == page and scan.lines == page.split("\n")
    # The indented include shows the fragment's fence as code: shown, never run.
    assert scan.fences == [] and scan.shown == {shown_code('print("from the fragment")')}


def test_an_include_inside_a_fence_is_left_to_the_block(snippets):
    page = '```python exec="on"\n--8<-- "plain.md"\n```\n'
    scan = scan_fences(page, **snippets)
    assert scan.lines == page.split("\n") and scan.fences[0].path == ""


def test_a_refused_fence_in_an_included_file_names_the_file_and_the_include(snippets):
    (snippets["root"] / "docs" / "fragment.md").write_text('Text.\n\n```bash exec="1"\nls\n```\n')
    with pytest.raises(FenceError) as caught:
        scan_fences('# P\n\n--8<-- "fragment.md"\n', languages=["python"], **snippets)
    assert caught.value.place("docs/p.md") == "docs/fragment.md:3 (included at docs/p.md:3)"


def test_includes_are_the_lines_pymdownx_snippets_reads(snippets):
    quoted = scan_fences("--8<-- 'fragment.md'\n", **snippets)
    assert [f.path for f in quoted.fences] == ["docs/fragment.md"]
    # pymdownx.snippets takes no space after the closing quote: that line is text.
    assert scan_fences('--8<-- "fragment.md" \n', **snippets).fences == []
    assert scan_fences(';--8<-- "fragment.md"\n', **snippets).fences == []


SECTIONED = """\
# Setup

--8<-- [start:run]
Before.

```python exec="on"
--8<-- [start:inner]
print("in the section")
--8<-- [end:inner]
```
;--8<-- [start:shown]
--8<-- [end:run]
After.
"""


@pytest.mark.parametrize(
    "spec",
    [
        "sectioned.md",
        "sectioned.md:run",
        "sectioned.md:inner",
        "sectioned.md:3:5",
        "sectioned.md:2",
        "sectioned.md::3",
        "sectioned.md:-2",
        "sectioned.md:1:2,6:8",
        "sectioned.md:2:3,9:",
    ],
)
def test_an_include_brings_what_pymdownx_snippets_brings(tmp_path, spec):
    import markdown

    (tmp_path / "sectioned.md").write_text(SECTIONED)
    text = f'Page.\n\n--8<-- "{spec}"\n\nEnd.'
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(tmp_path)]}},
    )
    theirs = md.preprocessors["snippet"].run(text.split("\n"))
    assert expand_snippets(text, [tmp_path]).split("\n") == theirs


def test_a_fence_a_section_brings_runs_naming_its_file_line(snippets):
    fragment = (
        "Not brought.\n\n<!-- --8<-- [start:run] -->\n"  # 1-3
        '```python exec="on"\nprint("in the section")\n```\n'  # 4-6
        "<!-- --8<-- [end:run] -->\n"
    )
    (snippets["root"] / "docs" / "sectioned.md").write_text(fragment)
    scan = scan_fences('# P\n\n--8<-- "sectioned.md:run"\n', first_line=3, **snippets)
    [fence] = scan.fences
    assert (fence.path, fence.file_line) == ("docs/sectioned.md", 4)
    assert scan.lines[fence.first : fence.last + 1] == [
        '```python exec="on"',
        'print("in the section")',
        "```",
    ]
    # A section that is not there includes nothing: the line stays for pymdownx to report.
    missing = scan_fences('--8<-- "sectioned.md:nowhere"\n', **snippets)
    assert missing.fences == [] and missing.lines[0] == '--8<-- "sectioned.md:nowhere"'


@pytest.mark.parametrize("spec", ["sectioned.md:run", "sectioned.md"])
def test_a_section_marker_inside_an_executed_fence_is_refused_naming_the_fence(snippets, spec):
    # pymdownx leaves the marker out: the fence's lines would no longer be its file's
    # lines one for one, and an error would name the wrong one.
    (snippets["root"] / "docs" / "sectioned.md").write_text(SECTIONED)
    with pytest.raises(FenceError) as caught:
        scan_fences(f'# P\n\n--8<-- "{spec}"\n', **snippets)
    assert caught.value.place("docs/p.md") == "docs/sectioned.md:6 (included at docs/p.md:3)"
    assert "put the markers outside the fence" in caught.value.message


def test_an_escaped_marker_an_included_fence_brings_is_unescaped_once(tmp_path):
    import markdown

    fragment = (
        "<!-- --8<-- [start:ex] -->\n"
        '```python exec="on"\nprint("ran")\n```\n\n'
        "Write ;--8<-- [start:shown] to start a section.\n"
        "<!-- --8<-- [end:ex] -->\n"
    )
    (tmp_path / "fragment.md").write_text(fragment)
    page = '# P\n\n--8<-- "fragment.md:ex"\n'

    def pymdownx(text: str) -> list[str]:
        md = markdown.Markdown(
            extensions=["pymdownx.snippets"],
            extension_configs={"pymdownx.snippets": {"base_path": [str(tmp_path)]}},
        )
        return md.preprocessors["snippet"].run(text.split("\n"))

    # The scanner puts the section's lines in the page, which pymdownx.snippets reads
    # again: the escaped marker must reach it still escaped, to be shown unescaped.
    scan = scan_fences(page, snippet_paths=[tmp_path], root=tmp_path)
    shown = "Write --8<-- [start:shown] to start a section."
    assert shown in pymdownx(page) and shown in pymdownx(scan.markdown)


@pytest.mark.parametrize("spec", ["indented.md:note", "indented.md:2:3", "indented.md"])
def test_an_include_is_dedented_as_pymdownx_snippets_dedents_it(tmp_path, spec):
    import markdown

    (tmp_path / "indented.md").write_text(
        "!!! note\n    <!-- --8<-- [start:note] -->\n    Indented.\n"
        "    <!-- --8<-- [end:note] -->\n"
    )
    text = f'--8<-- "{spec}"'
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={
            "pymdownx.snippets": {"base_path": [str(tmp_path)], "dedent_subsections": True}
        },
    )
    theirs = md.preprocessors["snippet"].run(text.split("\n"))
    assert expand_snippets(text, [tmp_path], dedent=True).split("\n") == theirs


@pytest.mark.parametrize(
    ("files", "page"),
    [
        ({"f.py": 'a = 1\n--8<-- "g.py"', "g.py": "b = 2"}, '--8<-- "f.py"'),
        (
            {"f.py": '# --8<-- [start:s]\na = 1\n--8<-- "g.py"\n# --8<-- [end:s]', "g.py": "b"},
            '--8<-- "f.py:s"',
        ),
        ({"f.py": 'a = 1\n--8<-- "f.py"'}, '--8<-- "f.py"'),
        ({"e.py": ""}, 'x\n--8<-- "e.py:s"\ny'),
        ({"g.py": "b = 2"}, ';--8<-- "g.py"\n    ;;--8<-- "g.py"'),
    ],
    ids=["include-of-include", "include-in-section", "itself", "empty-file", "escaped"],
)
def test_includes_in_includes_are_expanded_as_pymdownx_snippets_expands_them(tmp_path, files, page):
    import markdown

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(tmp_path)]}},
    )
    theirs = "\n".join(md.preprocessors["snippet"].run(page.split("\n")))
    assert expand_snippets(page, [tmp_path]) == theirs
