"""pymdownx.snippets' includes, read as it reads them: the one snippet reader of docexec.

A line ``--8<-- "file"`` (either quote, any number of dashes around the scissors)
is replaced with the file's text, found in the first of the ``base_path`` folders that
holds it; ``file:3:5`` takes lines 3 to 5, ``file:1:2,8:9`` both ranges, and
``file:name`` the section between ``--8<-- [start:name]`` and ``--8<-- [end:name]``.
The fence scanner, the blocks that include code, the cache key of a page's fences and
the take-aways all read includes here, and a test holds it to pymdownx.snippets' own.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

#: An include line, as pymdownx.snippets matches it.
SNIPPET = re.compile(r"""^(?P<indent>[ \t]*)-+8<-+[ \t]+(?P<q>["'])(?P<path>.+?)(?P=q)$""")
#: An escaped include line: pymdownx.snippets shows it without one ``;``.
_ESCAPED = re.compile(r"""^(?P<indent>[ \t]*);(?P<rest>;*-+8<-+[ \t]+(["']).+?\3)$""")
#: Line ranges after the file's name: ``:3:5``, ``:3``, ``::5``, ``:-2``, ``:1:2,8:9``.
_RANGES = re.compile(r"^(?P<file>.+?)(?P<ranges>(?::-?\d*){1,2}(?:,-?\d*(?::-?\d*)?)*)$")
#: A section's name after the file's: ``file.md:setup``.
_SECTION = re.compile(r"^(?P<file>.+?):(?P<name>[a-z][-_0-9a-z]*)$", re.IGNORECASE)
#: A section's start or end marker in an included file, as pymdownx.snippets finds it.
_MARKER = re.compile(
    r"^(?P<pre>.*?)(?<!;)(?P<escape>;*)(?P<marker>-+8<-+[ \t]+)"
    r"(?P<section>\[[ \t]*(?P<type>start|end)[ \t]*:[ \t]*(?P<name>[a-z][-_0-9a-z]*)[ \t]*\])"
    r"(?P<post>.*?)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Snippet:
    """What one include line brings: the file, and each line with its number there."""

    file: Path
    lines: tuple[tuple[int, str], ...]

    def runs(self) -> list[tuple[int, str]]:
        """The lines as runs of consecutive lines: ``(first line, text)`` each."""
        runs: list[tuple[int, list[str]]] = []
        for number, text in self.lines:
            if runs and runs[-1][0] + len(runs[-1][1]) == number:
                runs[-1][1].append(text)
            else:
                runs.append((number, [text]))
        return [(first, "\n".join(texts)) for first, texts in runs]


def _ranges(spec: str, count: int) -> list[int]:
    """The 0-based line indexes ``:3:5,8:`` selects among ``count``, as pymdownx.snippets
    counts them (a negative number counts from the end)."""
    picked = []
    for item in spec[1:].split(","):
        start, _, end = item.partition(":")
        first = int(start) if start not in ("", "-") else None
        last = int(end) if end not in ("", "-") else None
        if first is None:
            first = 0
        elif first < 0:
            first = min(max(count + first, 0), count)
        else:
            first = max(0, first - 1)
        if last is not None and last < 0:
            last = min(max(count + 1 + last, 0), count)
        picked.extend(range(count)[first:last])
    return picked


def _marker(line: str) -> re.Match | None:
    """``line``'s section marker (start or end), unless there is none or it is escaped."""
    marker = _MARKER.match(line) if "8<-" in line else None
    return marker if marker is not None and not marker["escape"] else None


def _section(name: str, lines: list[str]) -> list[int] | None:
    """The 0-based indexes of the lines between ``--8<-- [start:name]`` and its end,
    other sections' markers left out, as pymdownx.snippets takes them; ``None``
    when the file has no such section. An escaped marker (``;--8<-- ...``) is text."""
    picked, inside, found = [], False, False
    for index, line in enumerate(lines):
        marker = _marker(line)
        if marker and marker["name"] == name:
            if marker["type"] == "start":
                inside = found = True
                continue
            break  # its end (or an end before any start)
        if inside and marker is None:  # another section's markers are left out
            picked.append(index)
    return picked if found else None


def _unescaped(line: str) -> str:
    """A section's line as pymdownx.snippets gives it: one ``;`` fewer before a marker."""
    marker = _MARKER.match(line) if "8<-" in line else None
    if marker and marker["escape"]:
        return (
            marker["pre"]
            + marker["escape"][1:]
            + marker["marker"]
            + marker["section"]
            + marker["post"]
        )
    return line


def read_included(
    spec: str, base_paths: list[Path], dedent: bool = False, unescape: bool = True
) -> Snippet | None:
    """What a ``--8<-- "spec"`` line includes, as pymdownx.snippets reads it.

    ``spec`` is a path; or a path with line ranges: ``file.py:3:5`` (lines 3 to 5),
    ``file.py:3`` (3 to the end), ``file.py::5`` (1 to 5), ``file.py:-2`` (the last
    two), ``file.py:1:2,8:9`` (both ranges); or a path and a section's name,
    ``file.md:setup``: the lines between ``--8<-- [start:setup]`` and ``--8<--
    [end:setup]``. ``None`` when no base path holds the file, or the file has no
    such section. ``dedent``: pymdownx.snippets' ``dedent_subsections``, which takes
    the common indent off the lines of ranges and of a section. ``unescape``: an
    escaped marker (``;--8<-- [start:x]``) loses one ``;``, as in the page pymdownx
    gives; not where the lines go back into a page that pymdownx.snippets reads again.
    """
    candidates: list[tuple[str, str, str]] = [(spec, "", "")]
    if match := _RANGES.match(spec):
        candidates.append((match["file"], match["ranges"], ""))
    if match := _SECTION.match(spec):
        candidates.append((match["file"], "", match["name"]))
    for name, ranges, section in candidates:
        for base in base_paths:
            path = base / name
            if not path.is_file():
                continue
            # As pymdownx.snippets reads it: a file that ends with a line ending ends
            # with an empty line; an empty file has none.
            text = path.read_text()
            lines = text.split("\n") if text else []
            if ranges:
                picked = _ranges(ranges, len(lines))
            elif section and lines:  # an empty file brings nothing, section or not
                picked = _section(section, lines)
            else:
                picked = list(range(len(lines)))
            if picked is None:
                return None
            if not section:  # pymdownx.snippets drops the markers of sections as notation
                picked = [i for i in picked if _marker(lines[i]) is None]
            texts = [_unescaped(lines[i]) if unescape else lines[i] for i in picked]
            if dedent and (ranges or section):
                texts = textwrap.dedent("\n".join(texts)).split("\n")
            return Snippet(path, tuple(zip((i + 1 for i in picked), texts, strict=True)))
    return None


def expand_snippets(text: str, base_paths: list[Path], dedent: bool = False) -> str:
    """Replace ``--8<-- "file"`` lines with the file's text, as pymdownx.snippets does.

    Args:
        text: Markdown or code.
        base_paths: Folders to look for the files in, in order.
        dedent: pymdownx.snippets' ``dedent_subsections`` (see :func:`read_included`).

    Returns:
        The text with every resolvable snippet line replaced, and the includes in what
        they bring (a file that includes itself, at any depth, brings nothing there).
        An escaped include line (``;--8<-- "file"``) loses its ``;``.
    """
    return "\n".join(_expanded(text.split("\n"), base_paths, dedent, ()))


def _expanded(
    lines: list[str], base_paths: list[Path], dedent: bool, seen: tuple[Path, ...]
) -> list[str]:
    out = []
    for line in lines:
        if escaped := _ESCAPED.match(line):
            out.append(escaped["indent"] + escaped["rest"])
            continue
        match = SNIPPET.match(line)
        found = read_included(match.group("path"), base_paths, dedent) if match else None
        if found is None:
            out.append(line)
            continue
        if found.file.resolve() in seen:
            continue  # a file in itself: pymdownx.snippets leaves the line out

        inner = [part for _, part in found.lines]
        inner = _expanded(inner, base_paths, dedent, (*seen, found.file.resolve()))
        out.extend(match.group("indent") + part for part in inner)
    return out
