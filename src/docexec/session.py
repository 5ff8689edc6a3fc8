"""Run one example block the way CPython runs it, and report what it printed.

This module is the part of docexec that runs inside the example process. A
``pycon`` block is fed line by line to ``code.InteractiveConsole``, the standard
library's own read-eval-print machinery, so every input is followed by exactly
what the interactive interpreter prints for it. A ``python`` block is compiled
with the page's file name and line numbers, so a traceback points into the page.
"""

from __future__ import annotations

import code
import contextlib
import io
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType

PS1 = ">>> "
PS2 = "... "


class StopExample(BaseException):
    """Raised inside the example process to stop a block that ran past its limit."""


@dataclass
class BlockResult:
    """What running one block produced.

    Attributes:
        output: The text to publish: a transcript for ``pycon``, stdout for ``python``.
        error: Empty on success; otherwise ``"<line>: <message>"`` style text
            naming the page line, followed by the traceback for the build log.
        line: The page line the error points at (0 when there is no error).
        timed_out: Whether the block was stopped by the time limit.
    """

    output: str = ""
    error: str = ""
    line: int = 0
    timed_out: bool = False
    raised: list[int] = field(default_factory=list)
    """Indices of the statements (``pycon``) that raised the expected exception."""


class _Output(io.StringIO):
    """One buffer for stdout and stderr, so their writes stay in order."""


def _exception_matches(exc: BaseException, expected: str | None) -> bool:
    if not expected:
        return False
    return any(cls.__name__ == expected for cls in type(exc).__mro__)


def _last_line_in(tb: TracebackType | None, filename: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text or type(exc).__name__


class PathScrubber:
    """Rewrite a machine's absolute paths in published text to portable ones.

    Args:
        root: The repository root; paths below it become relative to it.
    """

    def __init__(self, root: Path) -> None:
        prefixes: dict[str, str] = {}
        for key in ("purelib", "platlib"):
            prefixes[sysconfig.get_paths()[key]] = "site-packages"
        prefixes[sysconfig.get_paths()["stdlib"]] = (
            f"python{sys.version_info[0]}.{sys.version_info[1]}"
        )
        prefixes[str(root)] = "."
        # Longest first: site-packages lives inside the repository's .venv.
        self._prefixes = sorted(prefixes.items(), key=lambda item: -len(item[0]))

    def __call__(self, text: str) -> str:
        for prefix, label in self._prefixes:
            text = text.replace(prefix + "/", label + "/")
        return text


_ADDRESS = re.compile(r"(?<= at )0x[0-9a-fA-F]+")


class AddressStabilizer:
    """Replace memory addresses in reprs (``<... at 0x7f...>``) with stable ones.

    The same real address always maps to the same stand-in within a page, so a
    page can still show that two names point at one object. Stand-ins count up
    from ``0x7ff000000010`` in order of first appearance.
    """

    BASE = 0x7FF000000000

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        def stand_in(match: re.Match[str]) -> str:
            real = match.group(0).lower()
            if real not in self._seen:
                self._seen[real] = f"0x{self.BASE + 0x10 * (len(self._seen) + 1):x}"
            return self._seen[real]

        return _ADDRESS.sub(stand_in, text)


def new_session_module() -> ModuleType:
    """A fresh ``__main__`` module for a session's names, as in a new interpreter."""
    module = ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    return module


@contextlib.contextmanager
def _as_main(module: ModuleType):
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


class _Console(code.InteractiveConsole):
    """``InteractiveConsole`` that remembers the exception each input raised."""

    def __init__(self, namespace: dict) -> None:
        super().__init__(namespace, filename="<stdin>")
        self.raised: BaseException | None = None

    def showtraceback(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, StopExample):
            raise exc
        self.raised = exc
        super().showtraceback()

    def showsyntaxerror(self, filename: str | None = None, **kwargs) -> None:
        error = sys.exc_info()[1]
        # codeop reports offset 0; the interpreter's own parser, which reads the
        # whole statement with its newline, knows the column. Ask it.
        try:
            compile("\n".join(self.buffer) + "\n", self.filename, "single")
        except SyntaxError as exact:
            error = exact
        except Exception:  # noqa: BLE001 - fall back to codeop's report
            pass
        self.raised = error
        self.write("".join(traceback.format_exception_only(type(error), error)))


def parse_pycon(source: str, first_line: int) -> list[tuple[int, str]]:
    """Split a ``pycon`` block into its input lines.

    Args:
        source: The block's text: lines starting with ``>>> `` or ``... ``.
        first_line: The page line of the block's first line.

    Returns:
        ``(page_line, text_without_prompt)`` for each input line.

    Raises:
        ValueError: On a line with no prompt, which would be typed output; the
            message starts with the offending page line.
    """
    inputs = []
    for offset, raw in enumerate(source.split("\n")):
        line = first_line + offset
        if raw.startswith((PS1, PS2)):
            inputs.append((line, raw[4:]))
        elif raw in (PS1.strip(), PS2.strip()):
            inputs.append((line, ""))
        elif raw.strip():
            raise ValueError(
                f"{line}: a pycon block holds only '>>> ' and '... ' input lines; "
                f"its output is generated, so remove the typed line {raw!r}"
            )
    return inputs


def run_pycon(
    source: str,
    module: ModuleType,
    *,
    first_line: int,
    raises: str | None = None,
    on_line: Callable[[int], None] = lambda _line: None,
) -> BlockResult:
    """Run a ``pycon`` block as an interactive session and return its transcript.

    Args:
        source: The block's input lines, with prompts.
        module: The session's ``__main__`` module; its names persist.
        first_line: The page line of the block's first line.
        raises: The name of the exception the block is meant to show, if any.
        on_line: Called with the page line of each input before it runs.

    Returns:
        The transcript, or an error naming the page line.
    """
    try:
        inputs = parse_pycon(source, first_line)
    except ValueError as error:
        line = int(str(error).split(":", 1)[0])
        return BlockResult(error=str(error).split(": ", 1)[1], line=line)
    console = _Console(module.__dict__)
    buffer = _Output()
    statement_start = first_line
    more = False
    raised: list[int] = []
    statement = -1
    if inputs and inputs[-1][1].strip() == "" and len(inputs) == 1:
        inputs = []
    pending = list(inputs)
    with _as_main(module), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        while pending or more:
            if pending:
                line, text = pending.pop(0)
            else:
                line, text = statement_start, ""  # close an open block, as Enter would
            if not more:
                statement_start = line
                statement += 1
            buffer.write((PS2 if more else PS1) + text + "\n")
            on_line(line)
            console.raised = None
            try:
                more = console.push(text)
            except SystemExit as exc:
                return BlockResult(
                    output=buffer.getvalue(),
                    error=f"SystemExit({exc.code!r}) ended the session; examples must not exit",
                    line=line,
                )
            exc = console.raised
            if exc is None:
                continue
            if _exception_matches(exc, raises):
                raised.append(statement)
                continue
            where = _last_line_in(exc.__traceback__, "<stdin>")
            if isinstance(exc, SyntaxError) and exc.filename == "<stdin>" and exc.lineno:
                where = exc.lineno
            error_line = statement_start + (where - 1 if where else 0)
            return BlockResult(
                output=buffer.getvalue(),
                error=f"{_describe(exc)}\n\n{_tail(buffer.getvalue())}",
                line=error_line,
            )
    if raises and not raised:
        return BlockResult(
            output=buffer.getvalue(),
            error=f"the block says raises={raises!r}, but no input raised it",
            line=first_line,
        )
    return BlockResult(output=_strip_trailing_spaces(buffer.getvalue()), raised=raised)


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def _strip_trailing_spaces(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip("\n").split("\n"))


def run_python(
    source: str,
    module: ModuleType,
    *,
    filename: str,
    first_line: int,
    raises: str | None = None,
) -> BlockResult:
    """Run a ``python`` block as a script and return what it wrote to stdout.

    The code is compiled as if it stood at its place in the page, so tracebacks
    name ``filename`` and the page's own line numbers.

    Args:
        source: The block's code.
        module: The session's ``__main__`` module; its names persist.
        filename: The page's path, such as ``docs/weight-shapes.md``.
        first_line: The page line of the block's first line.
        raises: The name of the exception the block is meant to show, if any.

    Returns:
        The output (with the traceback appended when ``raises`` matched), or an
        error naming the page line.
    """
    try:
        compiled = compile("\n" * (first_line - 1) + source, filename, "exec")
    except SyntaxError as exc:
        return BlockResult(error=_describe(exc), line=exc.lineno or first_line)
    buffer = io.StringIO()
    try:
        with _as_main(module), contextlib.redirect_stdout(buffer):
            exec(compiled, module.__dict__)
    except StopExample:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends must fail the build too
        line = _last_line_in(exc.__traceback__, filename) or first_line
        if _exception_matches(exc, raises):
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != filename:
                tb = tb.tb_next
            shown = "".join(traceback.format_exception(type(exc), exc, tb))
            return BlockResult(output=buffer.getvalue() + shown, raised=[0])
        if isinstance(exc, SystemExit):
            message = f"SystemExit({exc.code!r}): examples must not exit"
        else:
            message = _describe(exc)
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return BlockResult(output=buffer.getvalue(), error=f"{message}\n\n{trace}", line=line)
    if raises:
        return BlockResult(
            output=buffer.getvalue(),
            error=f"the block says raises={raises!r}, but it ran without raising",
            line=first_line,
        )
    return BlockResult(output=buffer.getvalue())
