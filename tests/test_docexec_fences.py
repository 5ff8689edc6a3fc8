"""docexec.fences: which fences run and the line each is tagged with, on strings."""

from __future__ import annotations

import pytest

from docexec.fences import FenceError, scan_fences

RUNS = '```python exec="on"\nprint(1)\n```'


def tags(markdown: str) -> list[str]:
    annotated, fences = scan_fences(markdown)
    lines = annotated.split("\n")
    return [lines[fence.first] for fence in fences]


def test_a_top_level_fence_is_tagged_with_its_line():
    assert tags(f"# Page\n\n{RUNS}\n") == ['```python exec="on" docexec_line="3"']


def test_front_matter_counts_in_the_line():
    assert scan_fences(f"{RUNS}\n", first_line=5)[1][0].line == 5


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
    annotated, fences = scan_fences(markdown)
    assert fences == [] and annotated == markdown


def test_an_indented_code_block_inside_an_admonition_is_left_alone():
    fence = RUNS.replace("\n", "\n        ")
    markdown = f"!!! note\n\n    Text.\n\n        {fence}\n"
    assert scan_fences(markdown)[1] == []


def test_a_fence_in_a_block_quote_is_tagged_with_its_line():
    markdown = "Text.\n\n> Quoted.\n>\n> " + RUNS.replace("\n", "\n> ") + "\n"
    annotated, fences = scan_fences(markdown)
    assert [f.line for f in fences] == [5]
    assert '> ```python exec="on" docexec_line="5"' in annotated


def test_a_fence_in_an_html_comment_is_marked_not_to_run():
    annotated, fences = scan_fences(f"Text.\n\n<!--\n{RUNS}\n-->\n\n{RUNS}\n")
    assert [f.line for f in fences] == [9]
    assert 'docexec_skip="1"' in annotated.split("\n")[3]


def test_a_fence_in_another_language_that_says_exec_is_refused():
    with pytest.raises(FenceError) as caught:
        scan_fences('Text.\n\n```bash exec="on"\necho hi\n```\n')
    assert caught.value.line == 3
    assert "docexec runs only python, py, pycon fences" in caught.value.message


def test_a_fence_inside_a_fence_is_left_alone():
    markdown = f"````markdown\n{RUNS}\n````\n"
    assert scan_fences(markdown) == (markdown, [])
