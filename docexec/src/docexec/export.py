"""Turn a page into a Jupyter notebook and a plain script a reader can run at home.

The page's prose becomes Markdown cells (or comments), its executed blocks become
code: a ``python`` block as one cell, a ``pycon`` block as one cell per ``>>>``
statement (so each expression shows its value, as on the page), prompts stripped.
A block that is meant to raise keeps its error: the notebook cell is tagged
``raises-exception`` (which nbclient and Jupyter honour) and the script catches
the exception and prints its traceback. A ``python`` block whose printed output the
page renders as HTML (a figure) or as Markdown (a generated table) is drawn the same
way in the notebook. Both start as the page's process started (see
:mod:`docexec.start`): the same seeds, torch on one thread, string hashing and build
date, so on the versions the build stamp names they print what the page shows. In a
script each block opens with a comment naming its page line (:data:`SCRIPT_BLOCK`).
Output is deterministic: cell ids are numbered, and no timestamps are written.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from dataclasses import dataclass, field

from docexec.start import preamble

#: The comment that opens each block in a script: its first page line is the group.
SCRIPT_BLOCK = re.compile(r"^# --- page line (\d+) ---$", re.MULTILINE)


@dataclass
class ExecutedBlock:
    """One executed block, as the formatter saw it (snippets already expanded).

    Attributes:
        kind: ``"python"`` or ``"pycon"``.
        source: The code that ran.
        raises: The exception the block shows on purpose, if any.
        raised: Which of its statements raised it (for ``pycon``; ``[0]`` for ``python``).
        renders: How the page shows what a ``python`` block prints: ``"text"`` (a
            code block), ``"html"`` or ``"markdown"``.
        line: The page line of its first line of code; 0 when unknown.
    """

    kind: str
    source: str
    raises: str | None = None
    raised: list[int] = field(default_factory=list)
    renders: str = "text"
    line: int = 0


@dataclass
class PageExport:
    """The parts of one page, in order: prose strings and executed blocks."""

    title: str
    parts: list[str | ExecutedBlock] = field(default_factory=list)


def pycon_statements(source: str) -> list[str]:
    """Split a ``pycon`` block into its statements, prompts removed."""
    statements: list[list[str]] = []
    for line in source.split("\n"):
        if line.startswith(">>> ") or line == ">>>":
            statements.append([line[4:]])
        elif (line.startswith("... ") or line == "...") and statements:
            statements[-1].append(line[4:])
    return ["\n".join(s).rstrip() for s in statements if "\n".join(s).strip()]


def _cells_of(block: ExecutedBlock) -> list[str]:
    if block.kind == "pycon":
        return pycon_statements(block.source)
    return [block.source.strip("\n")]


#: How a notebook cell shows printed output the page renders: IPython's display class.
_DISPLAY = {"html": "HTML", "markdown": "Markdown"}


def _notebook_code(code: str, renders: str) -> str:
    """A cell's code; printed HTML or Markdown is captured and displayed as the page does."""
    display = _DISPLAY.get(renders)
    if display is None:
        return code
    body = "\n".join("    " + line if line else line for line in code.split("\n"))
    return (
        f"# The page shows what this prints as {display}, and so does this cell.\n"
        f"from IPython.display import {display}\n"
        "from IPython.utils.capture import capture_output\n\n"
        f"with capture_output() as printed:\n{body}\n{display}(printed.stdout)"
    )


def to_notebook(
    page: PageExport, stamp: str, setup: str | None = None, seed: int = 0, epoch: str | None = None
) -> str:
    """The page as a Jupyter notebook (nbformat 4.5), as JSON text.

    Args:
        page: The page's parts.
        stamp: A line saying what built it, put in the first cell.
        setup: Code for a first code cell (installing what the notebook imports).
        seed: The seed the page's process started from.
        epoch: The build's ``SOURCE_DATE_EPOCH``, if it had one.

    Returns:
        The notebook, as deterministic JSON.
    """
    cells = [_markdown_cell(f"*{stamp}*")]
    if setup:
        cells.append(_code_cell(setup))
    cells.append(_code_cell(preamble(seed, epoch, notebook=True)))
    for part in page.parts:
        if isinstance(part, str):
            if part.strip():
                cells.append(_markdown_cell(part.strip("\n")))
            continue
        for index, code in enumerate(_cells_of(part)):
            raising = part.raises and index in part.raised
            cell = _code_cell(
                _notebook_code(code, part.renders if part.kind == "python" else "text"),
                {"tags": ["raises-exception"]} if raising else {},
            )
            cells.append(cell)
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index}"
        cell["source"] = cell["source"].splitlines(keepends=True)
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def _markdown_cell(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code_cell(code: str, metadata: dict | None = None) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": metadata or {},
        "outputs": [],
        "source": code,
    }


#: Statements whose body the prompt compiles in a scope of its own: expressions there
#: are not echoed.
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _echoed(code: str) -> str:
    """``code`` with every value the prompt would echo passed to ``show``.

    The interactive interpreter prints the value of each expression statement outside
    a function or class, however deep in ``for``, ``with``, ``if`` or ``try`` blocks
    (CPython compiles them with ``PRINT_EXPR``); a call to ``print`` is left as it is
    (its ``None`` echoes nothing). Brackets go exactly around the expression, so a
    comment after it stays a comment.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    edits: list[tuple[int, int, str]] = []  # (line, byte column, text to insert)

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Expr):
                value = node.value
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "print":
                    continue
                # A bare tuple (`a, b`) would become two arguments: give it parentheses.
                bare = isinstance(value, ast.Tuple)
                edits.append((value.lineno, value.col_offset, "show((" if bare else "show("))
                edits.append((value.end_lineno, value.end_col_offset, "))" if bare else ")"))
            elif not isinstance(node, _SCOPES):
                for name in ("body", "orelse", "finalbody"):
                    visit(getattr(node, name, []))
                for inner in [*getattr(node, "handlers", []), *getattr(node, "cases", [])]:
                    visit(inner.body)

    visit(tree.body)
    lines = [line.encode() for line in code.split("\n")]
    for line, column, text in sorted(edits, reverse=True):
        lines[line - 1] = lines[line - 1][:column] + text.encode() + lines[line - 1][column:]
    return b"\n".join(lines).decode()


def _script_statement(code: str, raises: str | None, shows_values: bool) -> str:
    """One statement for the script; a value the REPL would echo is printed, as it shows it."""
    if shows_values:
        code = _echoed(code)
    if raises:
        body = "\n".join("    " + line for line in code.split("\n"))
        if isinstance(getattr(builtins, raises, None), type):
            caught = f"except {raises}:  # the page shows this error on purpose"
        else:  # not a builtin name: match it by class name, as the page's build did
            caught = (
                f"except Exception as error:  # the page shows a {raises} on purpose\n"
                f"    if {raises!r} not in [c.__name__ for c in type(error).__mro__]:\n"
                "        raise"
            )
        return f"try:\n{body}\n{caught}\n    traceback.print_exc(file=sys.stdout)"
    return code


def to_script(
    page: PageExport, stamp: str, setup: str | None = None, seed: int = 0, epoch: str | None = None
) -> str:
    """The page as a plain Python script: prose as comments, blocks as code.

    Args:
        page: The page's parts.
        stamp: A line saying what built it, put in the header.
        setup: Code to run first (a check that what the script imports is installed).
        seed: The seed the page's process started from.
        epoch: The build's ``SOURCE_DATE_EPOCH``, if it had one.

    Returns:
        The script's text.
    """
    out = [
        f'"""{page.title}\n\n{stamp}\n"""',
        preamble(seed, epoch, notebook=False, setup=setup),  # imports sys, used below
        "import traceback\n\nshow = sys.displayhook  # prints a value the way the >>> prompt does",
    ]
    for part in page.parts:
        if isinstance(part, str):
            text = part.strip("\n")
            if text.strip():
                out.append("\n".join(f"# {line}".rstrip() for line in text.split("\n")))
            continue
        statements = [
            _script_statement(
                code, part.raises if index in part.raised else None, part.kind == "pycon"
            )
            for index, code in enumerate(_cells_of(part))
        ]
        if part.line:
            statements.insert(0, f"# --- page line {part.line} ---")
        out.append("\n".join(statements))
    return "\n\n".join(out) + "\n"
