"""pymdownx.snippets' includes, read as it reads them: the one snippet reader of docexec.

A line ``--8<-- "file"`` (either quote, any number of dashes around the scissors)
is replaced with the file's text, found in the first of the ``base_path`` folders that
holds it; ``file:3:5`` takes lines 3 to 5. The fence scanner, the blocks that include
code, the cache key of a page's fences and the take-aways all read includes here.
"""

from __future__ import annotations

import re
from pathlib import Path

#: An include line, as pymdownx.snippets matches it.
SNIPPET = re.compile(r"""^(?P<indent>[ \t]*)-+8<-+[ \t]+(?P<q>["'])(?P<path>.+?)(?P=q)$""")
#: A line range after the file's name: ``file:3:5``, ``file:3``, ``file::5``.
_LINES = re.compile(r"^(?P<file>.+?):(?P<start>\d*)(?::(?P<end>\d*))?$")


def read_snippet(spec: str, base_paths: list[Path]) -> tuple[Path, int, str] | None:
    """The file, first line and text a ``--8<-- "spec"`` line includes, as pymdownx.snippets.

    ``spec`` is a path, or a path with a line range: ``file.py:3:5`` (lines 3 to 5),
    ``file.py:3`` (3 to the end), ``file.py::5`` (1 to 5). ``None`` when no base path
    holds the file.
    """
    candidates = [(spec, None, None)]
    if match := _LINES.match(spec):
        candidates.append((match["file"], match["start"], match["end"]))
    for name, start, end in candidates:
        for base in base_paths:
            path = base / name
            if path.is_file():
                lines = path.read_text().rstrip("\n").split("\n")
                first = int(start) if start else 1
                last = int(end) if end else len(lines)
                return path, first, "\n".join(lines[first - 1 : last])
    return None


def expand_snippets(text: str, base_paths: list[Path]) -> str:
    """Replace ``--8<-- "file"`` lines with the file's text, as pymdownx.snippets does.

    Args:
        text: Markdown or code.
        base_paths: Folders to look for the files in, in order.

    Returns:
        The text with every resolvable snippet line replaced.
    """
    lines = []
    for line in text.split("\n"):
        match = SNIPPET.match(line)
        found = read_snippet(match.group("path"), base_paths) if match else None
        if found is None:
            lines.append(line)
        else:
            lines.extend(
                match.group("indent") + part if part else part for part in found[2].split("\n")
            )
    return "\n".join(lines)
