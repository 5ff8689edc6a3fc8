"""A reader who copies every block of a page, top to bottom, gets code that runs.

What a reader can copy from a page is the code it shows: the inputs of each ``pycon``
transcript (the copy button leaves out prompts and output), the code of each ``python``
block whose source is shown (``source=...``, or not executed at all, as a file included
with ``--8<--``). A ``python`` block that runs without showing its source is the page's
own machinery (a figure, a generated sentence): the reader never sees it, so it is left
out, and nothing the reader copies may use a name that only it defines.

Each page's code runs in a fresh interpreter (forked from one that has imported torch
and nothing else, which saves each page the imports: see forks), outside the repository,
one statement (a transcript input) or one block at a time, as pasting into ``python``
would. A block marked ``raises="SomeError"`` must raise that error; pasting goes on
after it, and so does the run.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from forks import fork_server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SNIPPET_BASES = (ROOT / "src", DOCS)
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,}|~{3,})\s*(?P<language>[\w-]*)(?P<info>.*)$")
SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')
RUNS = re.compile(r'\bexec="(on|1|yes|true)"')
OPTION = re.compile(r'\b(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Chunk:
    """One piece of code a reader can copy: where it is, what it is, what it raises."""

    line: int
    code: str
    raises: str = ""
    block: int = 0  # the line of the fence the code is in


def _expand_snippets(lines: list[str]) -> list[str]:
    expanded = []
    for line in lines:
        match = SNIPPET.match(line)
        if not match:
            expanded.append(line)
            continue
        path = next(
            base / match.group(1) for base in SNIPPET_BASES if (base / match.group(1)).is_file()
        )
        expanded.extend(path.read_text().split("\n"))
    return expanded


def _statements(lines: list[str], first_line: int) -> list[tuple[int, str]]:
    """Split a transcript into its inputs, prompts removed, output lines dropped."""
    inputs: list[tuple[int, list[str]]] = []
    for number, line in enumerate(lines, start=first_line):
        if line.startswith(">>>"):
            inputs.append((number, [line[4:]]))
        elif line.startswith("...") and inputs:
            inputs[-1][1].append(line[4:])
    return [(number, "\n".join(body).rstrip() + "\n") for number, body in inputs]


def copyable_code(page: Path) -> list[Chunk]:
    """Every piece of code a reader can copy from ``page``, in page order."""
    text = page.read_text().split("\n")
    chunks: list[Chunk] = []
    index = 0
    while index < len(text):
        match = FENCE.match(text[index])
        index += 1
        if not match:
            continue
        indent, ticks = len(match["indent"]), match["ticks"]
        start = index
        while index < len(text) and not (
            text[index].strip().startswith(ticks) and not text[index].strip()[len(ticks) :].strip()
        ):
            index += 1
        body = [line[indent:] for line in text[start:index]]
        index += 1
        language, info = match["language"], match["info"]
        options = dict(OPTION.findall(info))
        runs = bool(RUNS.search(info))
        raises = options.get("raises", "")
        if language == "pycon":
            chunks.extend(Chunk(n, code, raises, start) for n, code in _statements(body, start + 1))
        elif language in ("python", "py") and (not runs or options.get("source")):
            code = "\n".join(_expand_snippets(body)) + "\n"
            chunks.append(Chunk(start + 1, code, raises, start))
    return chunks


# The reader's interpreter, a child of one that has imported torch (see forks): it starts
# with an empty namespace, runs the page's chunks one at a time, and exits 0, or 1 with
# the reason on its stderr.
RUN = r"""
def run(request):
    namespace = {"__name__": "__main__"}
    raised = set()
    for chunk in request["chunks"]:
        where = f"docs/{request['page']}:{chunk['line']}"
        try:
            exec(compile(chunk["code"], where, "exec"), namespace)
        except BaseException as error:
            raised.add(chunk["block"])
            if type(error).__name__ != chunk["raises"]:
                print(f"{where}: {type(error).__name__}: {error}", file=sys.stderr)
                import traceback
                traceback.print_exc()
                return 1
        if chunk["raises"] and chunk["last_of_block"] and chunk["block"] not in raised:
            print(f"{where}: the block says raises={chunk['raises']!r}; nothing was raised",
                  file=sys.stderr)
            return 1
    return 0
"""


@pytest.fixture(scope="module")
def reader():
    """``reader(page, chunks, folder)`` runs the chunks as a reader would: (exit code, stderr)."""
    with fork_server(sys.executable, RUN) as server:

        def run(page: Path, chunks: list[Chunk], folder: Path) -> tuple[int, str]:
            report = folder / "stderr.txt"
            page_name, rows = json.loads(_payload(page, chunks))
            request = {"page": page_name, "chunks": rows, "cwd": str(folder)}
            [code] = server([{**request, "stdout": os.devnull, "stderr": str(report)}])
            return code, report.read_text()

        yield run


def _payload(page: Path, chunks: list[Chunk]) -> str:
    """The chunks as JSON; a raises= block's error must have come by its last chunk."""
    rows = [asdict(chunk) for chunk in chunks]
    for row, following in zip(rows, [*rows[1:], None], strict=True):
        row["last_of_block"] = following is None or following["block"] != row["block"]
    return json.dumps([page.relative_to(DOCS).as_posix(), rows])


# docs/notes/ holds the author's notes as written: shown on a page, never meant to run.
PAGES = sorted(
    page
    for page in DOCS.rglob("*.md")
    if "notes" not in page.relative_to(DOCS).parts[:-1] and copyable_code(page)
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_a_reader_copying_along_gets_code_that_runs(page, reader, tmp_path):
    code, stderr = reader(page, copyable_code(page), tmp_path)
    assert code == 0, stderr


def test_copyable_code_is_what_a_reader_sees(tmp_path):
    """The extractor on a small page: shown code in, hidden code and output out."""
    page = tmp_path / "page.md"
    page.write_text(
        "\n".join(
            [
                '```pycon exec="on" session="a"',
                ">>> for i in range(2):",
                "...     print(i)",
                "...",
                ">>> x = 1",
                "```",
                "",
                '```python exec="on" session="a" html="on"',
                "hidden = 2",
                "```",
                "",
                '!!! note "Boxed"',
                '    ```python exec="on" source="tabbed-right" raises="ValueError"',
                "    shown = hidden",
                "    ```",
            ]
        )
    )
    assert copyable_code(page) == [
        Chunk(2, "for i in range(2):\n    print(i)\n", block=1),
        Chunk(5, "x = 1\n", block=1),
        Chunk(14, "shown = hidden\n", "ValueError", block=13),
    ]


def test_a_name_only_hidden_code_defines_fails_the_run(reader, tmp_path):
    """The run can fail: a shown block that uses a hidden block's name is a NameError."""
    page = DOCS / "hidden.md"  # the path only names the page in messages
    code, stderr = reader(page, [Chunk(2, "print(hidden)\n")], tmp_path)
    assert code == 1
    assert "docs/hidden.md:2: NameError" in stderr


def test_each_page_starts_with_an_empty_namespace(reader, tmp_path):
    assert reader(DOCS / "a.md", [Chunk(1, "left_behind = 1\n")], tmp_path)[0] == 0
    code, stderr = reader(DOCS / "b.md", [Chunk(1, "left_behind\n")], tmp_path)
    assert code == 1 and "NameError" in stderr


def test_a_block_that_says_it_raises_must_raise(reader, tmp_path):
    page = DOCS / "raises.md"
    divides = Chunk(2, "1 / 0\n", "ZeroDivisionError", 1)
    assert reader(page, [divides, Chunk(5, "after = 1\n", block=4)], tmp_path)[0] == 0
    code, stderr = reader(page, [Chunk(2, "1 / 1\n", "ZeroDivisionError", 1)], tmp_path)
    assert code == 1 and "nothing was raised" in stderr
    code, stderr = reader(page, [Chunk(2, "1 / 0\n", "ValueError", 1)], tmp_path)
    assert code == 1 and "ZeroDivisionError" in stderr
