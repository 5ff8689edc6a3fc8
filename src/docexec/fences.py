"""Find a page's executable fences and check their options, before anything runs.

MkDocs hands the plugin a page's Markdown; :func:`scan_fences` tags every fence that
markdown-exec will run with the page line it opens on (``docexec_line="N"``), which is
how a block, once SuperFences calls the formatter, knows where it stands. Option
checks that markdown-exec would get wrong quietly (a ``width="wide"`` shows the block
as plain code) fail here instead, naming the fence.
"""

from __future__ import annotations

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

#: Options a block may carry beyond those markdown-exec's validator takes out itself.
KNOWN_EXTRA = {"title"}
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


def scan_fences(markdown: str, first_line: int = 1) -> tuple[str, list[Fence]]:
    """Tag each executable ``python``/``pycon`` fence with the page line it opens on.

    Fences nested in another fence (a Markdown example of fence syntax) are left
    alone.

    Args:
        markdown: The page's Markdown.
        first_line: The file line of the Markdown's first line (after front matter).

    Returns:
        The Markdown with ``docexec_line="N"`` added to each such fence, and the
        fences found, in page order.

    Raises:
        FenceError: A fence's ``returncode`` or ``width`` is not a whole number
            (markdown-exec would quietly show the block as plain code).
    """
    lines = markdown.split("\n")
    fences: list[Fence] = []
    open_fence: str | None = None
    opened_at: int | None = None
    for index, line in enumerate(lines):
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
            continue
        open_fence = match.group("fence")
        info = match.group("info")
        lang = _LANG.match(info)
        options = _options(info)
        if (
            not lang
            or lang.group("lang") not in LANGUAGES
            or not _executes(lang.group("lang"), options)
        ):
            continue
        for key in ("returncode", "width"):
            value = options.get(key)
            if value is not None and not re.fullmatch(r"[+-]?\d+", value.strip()):
                raise FenceError(first_line + index, f"{key}= takes a whole number, not {value!r}")
        opened_at = index
        tag = f'{LINE_KEY}="{first_line + index}"'
        if info.rstrip().endswith("}"):
            info = info.rstrip()[:-1].rstrip() + f" {tag} }}"
        else:
            info = f"{info.rstrip()} {tag}"
        lines[index] = match.group("indent") + match.group("fence") + info
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
    """

    line: int
    raises: str | None
    timeout: float
    workdir: str
    width: int


def take_options(kind: str, options: dict, default_timeout: float) -> BlockOptions:
    """Take docexec's options out of the keyword arguments markdown-exec passes a formatter.

    ``options`` is changed in place: what docexec handles itself (``workdir`` and
    ``width``, which must apply in the example process, not in MkDocs') is removed,
    and so are the extras markdown-exec must not see.

    Raises:
        FenceError: An option is unknown or its value is wrong.
    """
    extra = dict(options.pop("extra", {}))
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
    return BlockOptions(line, raises, timeout, workdir, width)
