"""Find a page's executable fences and check their options, before anything runs.

MkDocs hands the plugin a page's Markdown; :func:`scan_fences` tags every fence that
docexec will run with its index in the page's fences (``docexec_fence="N"``), which is
how a block, once SuperFences calls the formatter, knows where it stands: a page line,
or a line of a file the page includes. Fences of the other languages markdown-exec is
configured for are left to it; an executed fence that nothing configured runs, and
option checks that markdown-exec would get wrong quietly (a ``width="wide"`` shows the
block as plain code) fail here instead, naming the fence.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import markdown_exec

from docexec.snippets import SNIPPET as _SNIPPET
from docexec.snippets import read_included

#: The option the scanner adds to a fence's info string: the fence's place in the
#: page's list of fences (see :class:`Scan`).
FENCE_KEY = "docexec_fence"
#: The option an executable fence gets where it must not run (an HTML comment).
SKIP_KEY = "docexec_skip"
#: What the scanner adds to an info string, as it adds it (a space, then the option).
_TAG = re.compile(rf' (?:{FENCE_KEY}="\d+"|{SKIP_KEY}="1")')

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_OPTION = re.compile(
    r"""(?:^|[\s{])(?P<key>exec|returncode|width)=(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s}]*))"""
)
_LANG = re.compile(r"^\{?\s*\.?(?P<lang>[\w-]+)")
#: A line pymdownx.snippets replaces with a file: ``--8<-- "path"`` (its files are read by
#: :func:`docexec.snippets.read_included`).

#: Languages whose fences docexec runs (markdown-exec runs the others it is configured for).
LANGUAGES = ("python", "py", "pycon")
#: Languages whose fence's content markdown-exec renders as Markdown: the blocks in it run.
MARKDOWN = ("md", "markdown")

#: Options a block may carry beyond those markdown-exec's validator takes out itself:
#: they are passed on to the code block that shows it (pymdownx.highlight's options).
KNOWN_EXTRA = {"title", "hl_lines", "linenums"}
#: Every option a python/pycon block may carry, for error messages.
KNOWN_OPTIONS = KNOWN_EXTRA | {
    "exec",
    "html",
    "id",
    "idprefix",
    "raises",
    "result",
    "returncode",
    "session",
    "source",
    "tabs",
    "timeout",
    "updatetoc",
    "width",
    "workdir",
}


class FenceError(ValueError):
    """A fence's options are wrong.

    Attributes:
        line: The page line the fence opens on (for a fence in an included file, the
            page line of the ``--8<--`` that includes it); 0 when not known yet.
        message: What is wrong.
        path: The included file the fence is written in, ``""`` for the page.
        file_line: The fence's line in that file.
        fence: The fence's index in the page's fences, when the scanner tagged it.
    """

    def __init__(
        self,
        line: int,
        message: str,
        *,
        path: str = "",
        file_line: int = 0,
        fence: int | None = None,
    ) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message
        self.path = path
        self.file_line = file_line
        self.fence = fence

    def place(self, page: str) -> str:
        """Where the fence is, as errors name it: ``docs/page.md:3``, or the included file's line."""
        if self.path:
            return f"{self.path}:{self.file_line} (included at {page}:{self.line})"
        return f"{page}:{self.line}"


@dataclass(frozen=True)
class Fence:
    """A fence of a page that docexec runs, or an executed ``md`` fence holding such fences.

    Attributes:
        first: Index of its opening line in :attr:`Scan.lines`.
        last: Index of its closing line.
        line: The page line it opens on (file lines, front matter counted); for a fence
            in an included file, the page line of the ``--8<--`` that includes it.
        path: The included file it is written in (relative to the root), ``""`` for the page.
        file_line: Its line in that file (0 for the page's own fences).
        container: An executed ``md`` fence: markdown-exec renders its Markdown, and
            docexec runs the fences in it (which follow it in the list); it runs nothing itself.
    """

    first: int
    last: int
    line: int
    path: str = ""
    file_line: int = 0
    container: bool = False

    def place(self, page: str, offset: int = 0) -> str:
        """``page:N`` of its line ``offset`` lines below its opening, or the included file's."""
        if self.path:
            return f"{self.path}:{self.file_line + offset} (included at {page}:{self.line})"
        return f"{page}:{self.line + offset}"


@dataclass
class Scan:
    """A page's Markdown, scanned.

    Attributes:
        markdown: The Markdown to render: each fence docexec runs tagged with its index
            in ``fences`` (``docexec_fence="N"``), or marked not to run (in an HTML
            comment), and each ``--8<--`` line that includes such a fence replaced by
            the file's lines, as pymdownx.snippets would.
        lines: The same lines, untagged.
        fences: The fences, in page order.
        shown: The code of executable fences that are only shown (in an indented code
            block): SuperFences formats them and then shows their text, so their
            formatter must not run them. Each is a tuple of its non-blank lines, dedented.
    """

    markdown: str
    lines: list[str]
    fences: list[Fence]
    shown: set[tuple[str, ...]] = field(default_factory=set)


def shown_code(code: str) -> tuple[str, ...]:
    """The form :attr:`Scan.shown` holds a fence's code in."""
    return tuple(line.rstrip() for line in textwrap.dedent(code).split("\n") if line.strip())


def untagged(markdown: str) -> str:
    """``markdown`` without the options :func:`scan_fences` added (for showing it)."""
    return _TAG.sub("", markdown)


def _options(info: str) -> dict[str, str]:
    """The ``exec``, ``returncode`` and ``width`` options of a fence's info string."""
    return {
        m.group("key"): next(
            v for v in (m.group("dq"), m.group("sq"), m.group("bare")) if v is not None
        )
        for m in _OPTION.finditer(info)
    }


#: The values of ``exec`` that markdown-exec's validator takes as "no" (in any case).
_NO = frozenset({"", "no", "off", "false", "0"})


def executes(lang: str, options: dict[str, str]) -> bool:
    """Whether markdown-exec's validator takes this fence to be executed.

    Its own rule: the language is in ``MARKDOWN_EXEC_AUTO`` (as markdown-exec read it
    when imported), or ``exec`` is anything but ``""``, ``no``, ``off``, ``false``,
    ``0`` (in any case).
    """
    return lang in markdown_exec.MARKDOWN_EXEC_AUTO or options.get("exec", "no").lower() not in _NO


#: A line of a block quote: its ``>`` markers, which the fence's own text follows.
_QUOTE = re.compile(r"^(?P<quote>(?:[ ]{0,3}>[ ]?)+)")
#: A line that opens a container whose content is indented under it.
_CONTAINER = re.compile(
    r"^(?P<indent>\s*)(?:(?P<block>!!!|\?\?\?\+?|===)\s|(?P<item>(?:[-*+]|\d+[.)])\s+))"
)


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _content_indent(lines: list[str], index: int) -> int:
    """The indent of the content of the container ``lines[index]`` sits in (0 at top level)."""
    own = _indent(lines[index])
    for previous in reversed(lines[:index]):
        if not previous.strip() or _indent(previous) >= own:
            continue
        match = _CONTAINER.match(previous.expandtabs(4))
        if match is None:
            return 0
        if match.group("block"):
            return len(match.group("indent")) + 4
        return len(match.group(0))
    return 0


def _dequoted(line: str) -> str:
    quote = _QUOTE.match(line)
    return line[len(quote.group("quote")) :] if quote else line


def _closes(line: str, fence: str) -> bool:
    match = _FENCE.match(line)
    return bool(
        match and match.group("fence").startswith(fence) and not match.group("info").strip()
    )


@dataclass
class _Row:
    """A line to scan: its text, and where it was written (page line, or file and line)."""

    text: str
    line: int
    path: str = ""
    file_line: int = 0
    via: _Row | None = None  # the page's --8<-- line it came in by; None for the page's own


class _Scanner:
    """One page's scan: what it found so far (see :func:`scan_fences`)."""

    def __init__(
        self,
        languages: Collection[str],
        snippet_paths: Sequence[Path],
        root: Path | None,
        dedent: bool = False,
    ):
        self.languages = set(languages)
        self.snippet_paths = list(snippet_paths)
        self.dedent = dedent
        self.root = root
        self.fences: list[Fence | None] = []
        self.shown: set[tuple[str, ...]] = set()

    # --8<-- lines outside fences, expanded ------------------------------------

    def expand(self, rows: list[_Row], seen: tuple[Path, ...] = ()) -> list[_Row]:
        """The rows with each ``--8<-- "file"`` line outside a fence replaced by the file's.

        Each row that comes from a file keeps, in ``via``, the page's include line it
        came in by (the outermost one).
        """
        out: list[_Row] = []
        open_fence: str | None = None
        for row in rows:
            line = _dequoted(row.text)
            if open_fence is not None:
                if _closes(line, open_fence):
                    open_fence = None
                out.append(row)
                continue
            if match := _FENCE.match(line):
                open_fence = match.group("fence")
                out.append(row)
                continue
            snippet = _SNIPPET.match(row.text)
            # The lines go into the page, which pymdownx.snippets then reads: an escaped
            # marker is left escaped for it to unescape, once.
            found = snippet and read_included(
                snippet.group("path"), self.snippet_paths, self.dedent, unescape=False
            )
            if not found or found.file.resolve() in seen:
                out.append(row)
                continue
            file = found.file
            try:
                path = file.resolve().relative_to(self.root.resolve()).as_posix()
            except (AttributeError, ValueError):
                path = file.as_posix()
            space = snippet.group("indent").expandtabs(4)
            included = [
                _Row(space + text_line, row.line, path, number) for number, text_line in found.lines
            ]
            for inner in self.expand(included, (*seen, file.resolve())):
                inner.via = row
                out.append(inner)
        return out

    # Fences --------------------------------------------------------------------

    def scan(self, rows: list[_Row], cut: list[int], skip: bool = False, offset: int = 0) -> None:
        """Tag the fences docexec runs among ``rows``, each read from ``cut`` characters on.

        ``skip``: the rows are inside an HTML comment (an ``md`` fence in one);
        ``offset``: the index of ``rows[0]`` among all the page's rows.
        """
        lines = [row.text[at:] for row, at in zip(rows, cut, strict=True)]
        index = 0
        in_comment = skip
        while index < len(lines):
            full = lines[index]
            quote = _QUOTE.match(full)
            prefix = quote.group("quote") if quote else ""
            line = full[len(prefix) :]
            match = _FENCE.match(line)
            if not match:
                if not skip and "<!--" in line and "-->" not in line.split("<!--")[-1]:
                    in_comment = True
                elif not skip and in_comment and "-->" in line:
                    in_comment = False
                index += 1
                continue
            fence = match.group("fence")
            info = match.group("info")
            lang = _LANG.match(info)
            options = _options(info)
            close = next(
                (i for i in range(index + 1, len(lines)) if _closes(_dequoted(lines[i]), fence)),
                None,
            )
            runs = lang is not None and executes(lang.group("lang"), options)
            if not prefix and _indent(line) - _content_indent(lines, index) >= 4:
                # An indented code block that shows fence syntax: shown, never run.
                if runs and lang.group("lang") in LANGUAGES and close is not None:
                    body = "\n".join(lines[index + 1 : close])
                    self.shown.add(shown_code(body))
                index += 1
                continue
            if close is None:
                break  # an unclosed fence: the rest is its text
            if not runs:
                index = close + 1
                continue
            name = lang.group("lang")
            row = rows[index]
            where = {"path": row.path, "file_line": row.file_line}
            if name not in self.languages:
                raise FenceError(
                    row.line,
                    f"a {name} fence says exec=, but nothing configured runs {name} fences: "
                    f"markdown-exec's languages are {', '.join(sorted(self.languages)) or 'none'}"
                    f" (docexec runs the {', '.join(LANGUAGES)} fences markdown-exec is set to"
                    f" run, no others); add {name} to "
                    "markdown-exec's languages option, or remove exec= to show it as code",
                    **where,
                )
            if name in MARKDOWN:
                slot = len(self.fences)
                self.fences.append(None)
                indent = len(match.group("indent"))
                body_cut = [
                    at + len(prefix) + min(indent, _indent(text[len(prefix) :]))
                    for text, at in zip(
                        lines[index + 1 : close], cut[index + 1 : close], strict=True
                    )
                ]
                self.scan(rows[index + 1 : close], body_cut, in_comment, offset + index + 1)
                self.fences[slot] = Fence(
                    offset + index, offset + close, row.line, row.path, row.file_line, True
                )
                index = close + 1
                continue
            if name not in LANGUAGES:
                index = close + 1  # markdown-exec's to run
                continue
            for key in ("returncode", "width"):
                value = options.get(key)
                if value is not None and not re.fullmatch(r"[+-]?\d+", value.strip()):
                    raise FenceError(
                        row.line, f"{key}= takes a whole number, not {value!r}", **where
                    )
            if row.path and any(
                later.path != row.path or later.file_line != row.file_line + step
                for step, later in enumerate(rows[index : close + 1])
            ):
                raise FenceError(
                    row.line,
                    "the lines of this fence do not follow one another in its file (a "
                    "section marker inside it is left out of what the include brings), so "
                    "an error could not name its line: put the markers outside the fence",
                    **where,
                )
            tag = f'{SKIP_KEY}="1"' if in_comment else f'{FENCE_KEY}="{len(self.fences)}"'
            if not in_comment:
                self.fences.append(
                    Fence(offset + index, offset + close, row.line, row.path, row.file_line)
                )
            # The tag goes in as " tag", before a closing brace: untagged() takes it out.
            brace = info.rfind("}") if info.rstrip().endswith("}") else -1
            info = f"{info[:brace]} {tag}{info[brace:]}" if brace >= 0 else f"{info} {tag}"
            text = prefix + line[: match.start("info")] + info
            rows[index].text = rows[index].text[: cut[index]] + text
            index = close + 1


def scan_fences(
    markdown: str,
    first_line: int = 1,
    *,
    languages: Collection[str] | None = None,
    snippet_paths: Sequence[Path] = (),
    root: Path | None = None,
    dedent: bool = False,
) -> Scan:
    """Find the fences docexec runs in a page's Markdown, and tag each with its index.

    Only fences that Markdown renders as fences count: one nested in another fence
    (a Markdown example of fence syntax) or indented as code (four spaces past its
    container's content) is shown as text and left alone; one inside an HTML comment
    is marked so that it is not run. Fences in block quotes (``> ```python``) count.
    An executed ``md`` fence's Markdown is scanned as the page's: markdown-exec renders
    it, and the fences in it run at their page lines. A ``--8<-- "file"`` line (outside
    fences) that brings in such fences is replaced by the file's lines, which name the
    file and its lines in errors. Other executed fences are markdown-exec's.

    Args:
        markdown: The page's Markdown.
        first_line: The file line of the Markdown's first line (after front matter).
        languages: The languages markdown-exec is configured to run (its plugin's
            ``languages``); by default all of markdown-exec's formatters.
        snippet_paths: pymdownx.snippets' base paths, to read included files from.
        root: The folder included files are named relative to in errors.
        dedent: pymdownx.snippets' ``dedent_subsections``.

    Raises:
        FenceError: A fence says exec= in a language nothing configured runs, or its
            ``returncode`` or ``width`` is not a whole number (markdown-exec would
            quietly show the block as plain code).
    """
    if languages is None:
        languages = tuple(markdown_exec.formatters)
    scanner = _Scanner(languages, snippet_paths, root, dedent)
    page = [_Row(text, first_line + i) for i, text in enumerate(markdown.split("\n"))]
    rows = scanner.expand(page) if snippet_paths else page
    before = [row.text for row in rows]
    scanner.scan(rows, [0] * len(rows))
    # An include that brings nothing to run stays an include line, for pymdownx.snippets.
    used = {id(row.via) for row, text in zip(rows, before, strict=True) if row.text != text}
    kept: list[_Row] = []
    moved: dict[int, int] = {}
    for index, row in enumerate(rows):
        if row.via is None or id(row.via) in used:
            moved[index] = len(kept)
            kept.append(row)
        elif index == 0 or rows[index - 1].via is not row.via:
            kept.append(row.via)
    fences = [
        replace(fence, first=moved[fence.first], last=moved[fence.last])
        for fence in scanner.fences
        if fence is not None and fence.first in moved
    ]
    untagged_rows = {id(row): text for row, text in zip(rows, before, strict=True)}
    return Scan(
        "\n".join(row.text for row in kept),
        [untagged_rows.get(id(row), row.text) for row in kept],
        fences,
        scanner.shown,
    )


@dataclass(frozen=True)
class BlockOptions:
    """What docexec itself takes from a fence's options (markdown-exec's go on to it).

    Attributes:
        fence: The fence's index in the page's fences (see :class:`Scan`), ``None``
            for a fence the scanner did not see (in a docstring, or in a block's output).
        raises: The exception the block is meant to show, if any.
        timeout: Seconds the block may run.
        workdir: The folder it runs in, relative to the repository root ("" for the root).
        width: The console width it sees (``COLUMNS``), 0 to leave it alone.
        skip: The fence is in an HTML comment: it is not run.
    """

    fence: int | None
    raises: str | None
    timeout: float
    workdir: str
    width: int
    skip: bool = False


def take_options(kind: str, options: dict, default_timeout: float) -> BlockOptions:
    """Take docexec's options out of the keyword arguments markdown-exec passes a formatter.

    ``options`` is changed in place: what docexec handles itself (``workdir`` and
    ``width``, which must apply in the example process, not in MkDocs') is removed,
    and so are the extras markdown-exec must not see.

    Raises:
        FenceError: An option is unknown or its value is wrong; its ``fence`` says
            which fence (its ``line`` is 0: the caller knows where that fence is).
    """
    extra = dict(options.pop("extra", {}))
    skip = bool(extra.pop(SKIP_KEY, None))
    tagged = extra.pop(FENCE_KEY, None)
    fence = int(tagged) if tagged is not None and tagged.isdigit() else None

    def error(message: str) -> FenceError:
        return FenceError(0, message, fence=fence)

    raises = extra.pop("raises", None) or None
    if raises is not None and not raises.isidentifier():
        raise error(f"raises= takes an exception's name, not {raises!r}")
    try:
        timeout = float(extra.pop("timeout", default_timeout))
    except ValueError:
        raise error("timeout= takes a number of seconds") from None
    if not timeout > 0:
        raise error("timeout= must be more than 0 seconds")
    if not math.isfinite(timeout):
        raise error("timeout= must be a finite number of seconds")
    if kind == "pycon" and options.get("source"):
        raise error("source= does not apply to a pycon block: its transcript shows its source")
    unknown = sorted(set(extra) - KNOWN_EXTRA)
    if unknown:
        raise error(
            f"unknown option {unknown[0]!r} on a {kind} block "
            f"(markdown-exec's and docexec's are: {', '.join(sorted(KNOWN_OPTIONS))})"
        )
    options["extra"] = extra
    workdir = options.pop("workdir", None) or ""
    width = int(options.pop("width", 0) or 0)
    return BlockOptions(fence, raises, timeout, workdir, width, skip)
