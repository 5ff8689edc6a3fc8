"""Find a page's executable fences and check their options, before anything runs.

MkDocs hands the plugin a page's Markdown; :func:`scan_fences` tags every fence that
markdown-exec will run with the page line it opens on (``docexec_line="N"``), which is
how a block, once SuperFences calls the formatter, knows where it stands. Option
checks that markdown-exec would get wrong quietly (a ``width="wide"`` shows the block
as plain code) fail here instead, naming the fence.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

#: The option the scanner adds to a fence's info string: the page line it opens on.
LINE_KEY = "docexec_line"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_OPTION = re.compile(
    r"""\b(?P<key>exec|returncode|width)=(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s}]*))"""
)
_LANG = re.compile(r"^\{?\s*\.?(?P<lang>[\w-]+)")

#: Languages whose fences docexec runs.
LANGUAGES = ("python", "py", "pycon")

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
    """A fence's options are wrong; ``line`` is the page line the fence opens on."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Fence:
    """An executable fence of a page.

    Attributes:
        first: Index of its opening line in the page's Markdown lines.
        last: Index of its closing line.
        line: The page line it opens on (file lines, front matter counted).
    """

    first: int
    last: int
    line: int


def _options(info: str) -> dict[str, str]:
    """The ``exec``, ``returncode`` and ``width`` options of a fence's info string."""
    return {
        m.group("key"): next(
            v for v in (m.group("dq"), m.group("sq"), m.group("bare")) if v is not None
        )
        for m in _OPTION.finditer(info)
    }


def _executes(lang: str, options: dict[str, str]) -> bool:
    """Whether markdown-exec runs this fence: its own rule for ``exec``, and MARKDOWN_EXEC_AUTO."""
    auto = [name.strip() for name in os.environ.get("MARKDOWN_EXEC_AUTO", "").split(",")]
    return lang in auto or options.get("exec", "no").lower() not in {"", "no", "off", "false", "0"}


#: A line of a block quote: its ``>`` markers, which the fence's own text follows.
_QUOTE = re.compile(r"^(?P<quote>(?:[ ]{0,3}>[ ]?)+)")
#: A line that opens a container whose content is indented under it.
_CONTAINER = re.compile(
    r"^(?P<indent>\s*)(?:(?P<block>!!!|\?\?\?\+?|===)\s|(?P<item>(?:[-*+]|\d+[.)])\s+))"
)
#: A marker an executable fence gets where it must not run (an HTML comment).
SKIP_KEY = "docexec_skip"


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


def scan_fences(markdown: str, first_line: int = 1) -> tuple[str, list[Fence]]:
    """Tag each executable ``python``/``pycon`` fence with the page line it opens on.

    Only fences that Markdown renders as fences count: one nested in another fence
    (a Markdown example of fence syntax) or indented as code (four spaces past its
    container's content) is shown as text and left alone; one inside an HTML comment
    is marked so that it is not run. Fences in block quotes (``> ```python``) count.

    Args:
        markdown: The page's Markdown.
        first_line: The file line of the Markdown's first line (after front matter).

    Returns:
        The Markdown with ``docexec_line="N"`` added to each such fence, and the
        fences found, in page order.

    Raises:
        FenceError: A fence's ``returncode`` or ``width`` is not a whole number
            (markdown-exec would quietly show the block as plain code), or a fence of
            a language docexec does not run says ``exec``.
    """
    lines = markdown.split("\n")
    fences: list[Fence] = []
    open_fence: str | None = None
    opened_at: int | None = None
    in_comment = False
    for index, full in enumerate(lines):
        quote = _QUOTE.match(full)
        prefix = quote.group("quote") if quote else ""
        line = full[len(prefix) :]
        match = _FENCE.match(line)
        if open_fence is not None:
            if (
                match
                and match.group("fence").startswith(open_fence)
                and not match.group("info").strip()
            ):
                open_fence = None
                if opened_at is not None:
                    fences.append(Fence(opened_at, index, first_line + opened_at))
                    opened_at = None
            continue
        if not match:
            if "<!--" in line and "-->" not in line.split("<!--")[-1]:
                in_comment = True
            elif in_comment and "-->" in line:
                in_comment = False
            continue
        if not prefix and _indent(line) - _content_indent(lines, index) >= 4:
            continue  # an indented code block that shows fence syntax
        open_fence = match.group("fence")
        info = match.group("info")
        lang = _LANG.match(info)
        options = _options(info)
        if not lang or not _executes(lang.group("lang"), options):
            continue
        if lang.group("lang") not in LANGUAGES:
            raise FenceError(
                first_line + index,
                f"a {lang.group('lang')} fence says exec=, but docexec runs only "
                f"{', '.join(LANGUAGES)} fences; remove exec= to show it as code",
            )
        for key in ("returncode", "width"):
            value = options.get(key)
            if value is not None and not re.fullmatch(r"[+-]?\d+", value.strip()):
                raise FenceError(first_line + index, f"{key}= takes a whole number, not {value!r}")
        tag = f'{SKIP_KEY}="1"' if in_comment else f'{LINE_KEY}="{first_line + index}"'
        if not in_comment:
            opened_at = index
        if info.rstrip().endswith("}"):
            info = info.rstrip()[:-1].rstrip() + f" {tag} }}"
        else:
            info = f"{info.rstrip()} {tag}"
        lines[index] = prefix + match.group("indent") + match.group("fence") + info
    return "\n".join(lines), fences


def annotate_fences(markdown: str, first_line: int = 1) -> str:
    """The Markdown with each executable fence tagged with its page line (see ``scan_fences``)."""
    return scan_fences(markdown, first_line)[0]


@dataclass(frozen=True)
class BlockOptions:
    """What docexec itself takes from a fence's options (markdown-exec's go on to it).

    Attributes:
        line: The page line the fence opens on.
        raises: The exception the block is meant to show, if any.
        timeout: Seconds the block may run.
        workdir: The folder it runs in, relative to the repository root ("" for the root).
        width: The console width it sees (``COLUMNS``), 0 to leave it alone.
        skip: The fence is in an HTML comment: it is not run.
    """

    line: int
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
        FenceError: An option is unknown or its value is wrong.
    """
    extra = dict(options.pop("extra", {}))
    skip = bool(extra.pop(SKIP_KEY, None))
    line = int(extra.pop(LINE_KEY, "0"))
    raises = extra.pop("raises", None) or None
    if raises is not None and not raises.isidentifier():
        raise FenceError(line, f"raises= takes an exception's name, not {raises!r}")
    try:
        timeout = float(extra.pop("timeout", default_timeout))
    except ValueError:
        raise FenceError(line, "timeout= takes a number of seconds") from None
    if not timeout > 0:
        raise FenceError(line, "timeout= must be more than 0 seconds")
    if not math.isfinite(timeout):
        raise FenceError(line, "timeout= must be a finite number of seconds")
    if kind == "pycon" and options.get("source"):
        raise FenceError(
            line, "source= does not apply to a pycon block: its transcript shows its source"
        )
    unknown = sorted(set(extra) - KNOWN_EXTRA)
    if unknown:
        raise FenceError(
            line,
            f"unknown option {unknown[0]!r} on a {kind} block "
            f"(markdown-exec's and docexec's are: {', '.join(sorted(KNOWN_OPTIONS))})",
        )
    options["extra"] = extra
    workdir = options.pop("workdir", None) or ""
    width = int(options.pop("width", 0) or 0)
    return BlockOptions(line, raises, timeout, workdir, width, skip)
