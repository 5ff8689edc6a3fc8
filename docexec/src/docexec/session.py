"""Run one example block the way CPython runs it, and report what it printed.

This module is the part of docexec that runs inside the example process. A
``pycon`` block is fed line by line to ``code.InteractiveConsole``, the standard
library's own read-eval-print machinery, so every input is followed by exactly
what the interactive interpreter prints for it. A ``python`` block is compiled
with the page's file name and line numbers, so a traceback points into the page.
"""

from __future__ import annotations

import builtins
import code
import contextlib
import importlib.machinery
import io
import linecache
import os
import re
import sys
import sysconfig
import tempfile
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType, TracebackType

PS1 = ">>> "
PS2 = "... "


class StopExample(BaseException):
    """Raised inside the example process to stop a block that ran past its limit.

    ``line`` is the page line that was running when it was raised, where a ``pycon``
    block knows it (0 otherwise); ``output``, what the block had printed by then;
    ``waiting``, what the block had left running, when its code had ended and it was
    waiting for that to end.
    """

    line = 0
    output = ""
    waiting = ""


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
    path: str = ""
    """The file the error is in, when it is not the page (an included file)."""
    files: dict[str, str | None] = field(default_factory=dict)
    """Repository files the process first read while the block ran, each with its
    fingerprint at that moment (see ``worker.PageReads``)."""
    environ: dict[str, str | None] = field(default_factory=dict)
    """Environment variables the block read, with their values (see ``worker.PageReads``)."""
    reads_lines: bool = False
    """Whether the block's code looked at stack frames, which know its page lines."""
    inputs: list[tuple[int, int]] = field(default_factory=list)
    """Where ``output`` echoes the author's input lines (``pycon``), as ``(start, end)``."""


class _Output(io.StringIO):
    """Everything a block writes, in the order it was written.

    Python-level writes (``print``, ``sys.stdout.write``, a logging handler) land here
    through :data:`_STREAMS`. While :func:`_capturing` runs, the streams' file
    descriptors (1, and 2 for ``pycon``) point at a scratch file, so what reaches them
    directly (``os.write(1, ...)``, a subprocess, C code) is caught too; it is moved
    into the buffer before every Python-level write, which keeps the two in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fds: list[int] = []
        self._reader: io.BufferedReader | None = None
        self._saved: list[int] = []
        self.inputs: list[tuple[int, int]] = []

    def echo(self, text: str) -> None:
        """Write an input line the author typed; published as written, never rewritten."""
        self._drain()
        start = self.tell()
        super().write(text)
        self.inputs.append((start, self.tell()))

    def catching(self, fds: list[int]) -> _Output:
        """Use as ``with output.catching([1]):`` to catch what reaches those descriptors."""
        self._fds = fds
        return self

    def __enter__(self) -> _Output:
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        handle, path = tempfile.mkstemp(prefix="docexec-")
        os.close(handle)
        writer = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._reader = open(path, "rb")  # noqa: SIM115 - closed in __exit__
        os.unlink(path)
        self._saved = [os.dup(fd) for fd in self._fds]
        for fd in self._fds:
            os.dup2(writer, fd)
        os.close(writer)
        return self

    def _drain(self) -> None:
        if self._reader is not None and (data := self._reader.read()):
            super().write(data.decode(errors="replace"))

    def write(self, text: str) -> int:
        self._drain()
        return super().write(text)

    def getvalue(self) -> str:
        self._drain()  # while catching: what reached the descriptors too
        return super().getvalue()

    def __exit__(self, *_exc: object) -> None:
        self._drain()
        for fd, saved in zip(self._fds, self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = []
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class _Stream(io.TextIOBase):
    """A stand-in for ``sys.stdout`` or ``sys.stderr`` that writes to the running block.

    One object per stream for the life of the process, so that a logging handler or
    anything else that kept a reference to ``sys.stdout`` in one block still writes
    to the page in the next.
    """

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.target: io.TextIOBase | None = None

    def _current(self):
        return self.target or getattr(sys, f"__{self.name}__")

    def write(self, text: str) -> int:
        origin = _THREAD_ORIGIN.get(threading.get_ident())
        if origin is not None and origin[0] is threading.current_thread():
            _MISPLACED.append((origin[1], text))
        return self._current().write(text)

    def flush(self) -> None:
        self._current().flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1 if self.name == "stdout" else 2

    @property
    def buffer(self) -> _Binary:
        """The binary layer a script's ``sys.stdout.buffer`` is."""
        return _Binary(self)


class _Binary(io.RawIOBase):
    """``sys.stdout.buffer``: bytes, decoded as UTF-8 into the block's text."""

    def __init__(self, stream: _Stream) -> None:
        super().__init__()
        self._stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._stream.write(bytes(data).decode("utf-8", errors="replace"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()


class _Descriptor(io.TextIOBase):
    """Text written straight to a file descriptor: a forked child's stand-in streams."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def write(self, text: str) -> int:
        os.write(self._fd, text.encode("utf-8", errors="replace"))
        return len(text)


_STREAMS = {"stdout": _Stream("stdout"), "stderr": _Stream("stderr")}

#: Threads that outlived the block that started them, with that block's page line.
_THREAD_ORIGIN: dict[int, tuple[threading.Thread, int]] = {}
#: What such threads printed afterwards: ``(origin line, text)``.
_MISPLACED: list[tuple[int, str]] = []


@contextlib.contextmanager
def track_threads(line: int):
    """Note the threads a block leaves running, so that what they print later is caught."""
    before = set(threading.enumerate())
    try:
        yield
    finally:
        for thread in threading.enumerate():
            if thread not in before and thread.is_alive() and thread.ident is not None:
                _THREAD_ORIGIN[thread.ident] = (thread, line)


def misplaced_output() -> tuple[int, str] | None:
    """The first thing a thread printed outside the block that started it, if any."""
    found = _MISPLACED[0] if _MISPLACED else None
    _MISPLACED.clear()
    return found


def capture_output(function: Callable[[], object]) -> str:
    """What ``function`` prints to stdout and stderr, at the descriptors too."""
    output = _Output()
    with _capturing(output, ("stdout", "stderr")):
        function()
    return output.getvalue()


def _after_fork_in_child() -> None:
    """A forked child (``os.fork``, a fork ``Pool``) writes to the block through its descriptor.

    The parent's in-memory buffer is a copy in the child, and nobody reads it: the
    child's ``print`` goes to the captured descriptor instead, which the parent drains.
    """
    for stream in _STREAMS.values():
        if stream.target is not None:
            stream.target = _Descriptor(stream.fileno())


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _capturing(output: _Output, names: tuple[str, ...]):
    """Send ``sys.stdout`` (and ``sys.stderr``) and their file descriptors to ``output``."""
    saved = {name: getattr(sys, name) for name in names}
    targets = {name: _STREAMS[name].target for name in names}
    for name in names:
        _STREAMS[name].target = output
        setattr(sys, name, _STREAMS[name])
    try:
        with output.catching([_STREAMS[name].fileno() for name in names]):
            yield output
    finally:
        for name in names:
            setattr(sys, name, saved[name])
            _STREAMS[name].target = targets[name]


def _exception_matches(exc: BaseException, expected: str | None) -> bool:
    if not expected:
        return False
    return any(cls.__name__ == expected for cls in type(exc).__mro__)


def _lines_in(tb: TracebackType | None, filename: str) -> list[int]:
    """The line of every frame from ``filename`` in a traceback, outermost first."""
    lines = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            lines.append(tb.tb_lineno)
        tb = tb.tb_next
    return lines


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text or type(exc).__name__


class PathScrubber:
    """Rewrite a machine's absolute paths in published text to portable ones.

    Args:
        root: The repository root; paths below it become relative to it.
        folder: The page's working folder, which becomes ``.`` too.
    """

    def __init__(self, root: Path, folder: Path | None = None) -> None:
        prefixes: dict[str, str] = {}
        for key in ("purelib", "platlib"):
            prefixes[sysconfig.get_paths()[key]] = "site-packages"
        prefixes[sysconfig.get_paths()["stdlib"]] = (
            f"python{sys.version_info[0]}.{sys.version_info[1]}"
        )
        prefixes[str(root)] = "."
        if folder is not None:
            prefixes[str(folder)] = "."
            prefixes[os.path.realpath(folder)] = "."
        # Longest first: site-packages lives inside the repository's .venv. A prefix
        # counts where a path component ends: before "/", or as the whole path.
        self._pattern = re.compile(
            "|".join(
                f"({re.escape(prefix)})(?=/|$|[\\s'\",:)\\]])"
                for prefix in sorted(prefixes, key=len, reverse=True)
            ),
            re.MULTILINE,
        )
        self._by_prefix = prefixes

    def __call__(self, text: str) -> str:
        return self._pattern.sub(lambda match: self._by_prefix[match.group(0)], text)


#: A default repr's address: ``<function f at 0x7f...>``, ``<Foo object at 0x...>``.
_ADDRESS = re.compile(r"(?<=[^<>\n] at )0x[0-9a-fA-F]+(?=>)")

#: ANSI escape sequences: CSI (colours, cursor moves) and OSC (titles, links).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def as_terminal(text: str) -> str:
    """What a terminal shows for ``text``: ``\\r`` overwrites its line, escape codes vanish.

    A progress bar that redraws itself with ``\\r`` is shown as its last state, and
    colour codes are dropped, as a terminal without colour would show them.
    """
    text = _ANSI.sub("", text.replace("\r\n", "\n"))
    if "\r" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        # Each column shows the last part that reached it: from the last part back,
        # an earlier one adds only the columns past every later one (each character
        # is copied once, however often the line is redrawn).
        shown = ""
        for part in reversed(line.split("\r")):
            if len(part) > len(shown):
                shown += part[len(shown) :]
        lines.append(shown)
    return "\n".join(lines)


def outside_inputs(text: str, inputs: list[tuple[int, int]], change: Callable[[str], str]) -> str:
    """``text`` with ``change`` applied to what the block printed, never to echoed inputs."""
    pieces, cursor = [], 0
    for start, end in inputs:
        pieces.append(change(text[cursor:start]))
        pieces.append(text[start:end])
        cursor = end
    pieces.append(change(text[cursor:]))
    return "".join(pieces)


class AddressStabilizer:
    """Replace memory addresses in default reprs (``<... at 0x7f...>``) with stable ones.

    Only an address a default repr prints (``at 0x...`` closing a ``<...>``) is
    replaced, and only in output (see :func:`outside_inputs`): a string an author
    wrote, such as ``"breakpoint at 0x1f"``, is left as it is. The same real address
    always maps to the same stand-in within a page, so a page can still show that
    two names point at one object. Stand-ins count up from ``0x7ff000000010`` in
    order of first appearance.
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


def new_session_module(kind: str = "pycon", file: str | None = None) -> ModuleType:
    """A fresh ``__main__`` module for a session's names, as a new interpreter has it.

    Args:
        kind: ``"pycon"`` for the interactive interpreter's ``__main__``
            (``__annotations__``, the ``BuiltinImporter`` loader), ``"python"`` for a
            script's (``__file__``, a source loader).
        file: The script's path, for ``"python"``.
    """
    module = ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    if kind == "python" and file is not None:
        module.__file__ = file
        module.__cached__ = None
        module.__loader__ = importlib.machinery.SourceFileLoader("__main__", file)
    else:
        module.__annotations__ = {}
        module.__loader__ = importlib.machinery.BuiltinImporter
    return module


@contextlib.contextmanager
def _as_main(module: ModuleType, kind: str = "python"):
    """Make ``module`` the process's ``__main__``, with what a script or the REPL has.

    A script's ``sys.argv`` is its path; the interactive interpreter's is ``['']``
    and it has ``sys.ps1`` and ``sys.ps2``.
    """
    saved = sys.modules.get("__main__")
    saved_argv = sys.argv
    sys.modules["__main__"] = module
    sys.argv = [module.__dict__.get("__file__", "")] if kind == "python" else [""]
    if kind == "pycon":
        sys.ps1, sys.ps2 = PS1, PS2
    try:
        yield
    finally:
        sys.argv = saved_argv
        for name in ("ps1", "ps2"):
            if kind == "pycon" and hasattr(sys, name):
                delattr(sys, name)
        if saved is not None:
            sys.modules["__main__"] = saved


#: The page line of the statement each ``<stdin>`` code object was compiled from (the
#: statement's own code, and the functions and classes in it), for as long as it lives.
_STATEMENT_LINES: weakref.WeakKeyDictionary[CodeType, int] = weakref.WeakKeyDictionary()


def _note_statement(code_object: CodeType, line: int) -> None:
    _STATEMENT_LINES[code_object] = line
    for const in code_object.co_consts:
        if isinstance(const, CodeType):
            _note_statement(const, line)


def _running_line(tb: TracebackType | None) -> int:
    """The page line of the innermost ``<stdin>`` frame of a traceback, or 0.

    Each frame's line counts from its statement's first line (as the interpreter's
    ``<stdin>`` does): the statement's page line comes from :data:`_STATEMENT_LINES`.
    """
    found = 0
    while tb is not None:
        start = _STATEMENT_LINES.get(tb.tb_frame.f_code)
        if start is not None:
            found = start + tb.tb_lineno - 1
        tb = tb.tb_next
    return found


class _Console(code.InteractiveConsole):
    """``InteractiveConsole`` that remembers the exception each input raised.

    ``statement_line`` is the page line of the statement being pushed: the code it
    compiles to is noted with it, so a stop names the line running inside it.
    """

    def __init__(self, namespace: dict) -> None:
        super().__init__(namespace, filename="<stdin>")
        self.raised: BaseException | None = None
        self.statement_line = 0

    def runcode(self, code_object: CodeType) -> None:
        _note_statement(code_object, self.statement_line)
        super().runcode(code_object)

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
        self.write(repl_syntax_error(error))


def repl_syntax_error(error: SyntaxError) -> str:
    """``error`` as CPython 3.11's interactive interpreter prints it.

    The interpreter draws it in C (``print_exception`` and ``print_error_text`` in
    ``Python/pythonrun.c``), not with :mod:`traceback`: it strips tabs as well as
    spaces from the line, carets an error that runs onto later lines up to the end of
    its first, and clips with the line's length in UTF-8 bytes. This follows it step
    by step; ``traceback`` draws the same error otherwise (no caret, or under a tab).
    """
    if not isinstance(error.lineno, int) or isinstance(error.lineno, bool):
        return "".join(traceback.format_exception_only(type(error), error))
    filename = "<string>" if error.filename is None else error.filename
    shown = [f'  File "{filename}", line {error.lineno}\n']
    if error.text is not None:
        text = error.text.encode()
        offset = error.offset if isinstance(error.offset, int) else -1
        end_offset, end_lineno = -1, error.lineno
        if type(error) is SyntaxError:  # subclasses get no range
            if isinstance(error.end_offset, int):
                end_offset = error.end_offset
            if isinstance(error.end_lineno, int):
                end_lineno = error.end_lineno
        if end_lineno > error.lineno:  # up to the end of its first line
            end_offset = len(text)
        end_offset = min(end_offset, len(text) + 1)
        carets = end_offset - offset if end_offset > 0 and end_offset > offset else 1
        offset -= 1  # 0-based from here
        stripped = text.lstrip(b" \t\f")
        offset -= len(text) - len(stripped)
        text = stripped
        length = len(text) - 1 if text.endswith(b"\n") else len(text)
        offset = min(offset, length)
        while (newline := text.find(b"\n")) != -1 and newline < offset:
            text, length, offset = text[newline + 1 :], length - newline - 1, offset - newline - 1
        shown.append("    " + text.decode(errors="replace"))
        if text[length : length + 1] != b"\n":
            shown.append("\n")
        if offset >= 0:
            shown.append("    " + " " * offset + "^" * carets + "\n")
    kind = type(error)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    message = str(error.msg)
    shown.append(f"{module}{kind.__qualname__}{': ' if message else ''}{message}\n")
    return "".join(shown)


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
    return [(line, text) for line, _prompt, text in _inputs(source, first_line)]


def _inputs(source: str, first_line: int) -> list[tuple[int, str, str]]:
    """``(page_line, prompt, text)`` for each input line; see :func:`parse_pycon`."""
    inputs = []
    for offset, raw in enumerate(source.split("\n")):
        line = first_line + offset
        if raw.startswith((PS1, PS2)):
            inputs.append((line, raw[:4], raw[4:]))
        elif raw in (PS1.strip(), PS2.strip()):
            inputs.append((line, raw + " ", ""))
        elif raw.strip():
            raise ValueError(
                f"{line}: a pycon block holds only '>>> ' and '... ' input lines; "
                f"its output is generated, so remove the typed line {raw!r}"
            )
    return inputs


#: The value of ``_`` each session had when its last block ended.
_LAST_VALUES: weakref.WeakKeyDictionary[ModuleType, object] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _own_last_value(module: ModuleType):
    """Give the session its own ``_``: the interpreter keeps it in ``builtins``."""
    missing = object()
    saved = getattr(builtins, "_", missing)
    mine = _LAST_VALUES.get(module, missing)
    if mine is missing:
        with contextlib.suppress(AttributeError):
            del builtins._
    else:
        builtins._ = mine
    try:
        yield
    finally:
        if (value := getattr(builtins, "_", missing)) is not missing:
            _LAST_VALUES[module] = value
        if saved is missing:
            with contextlib.suppress(AttributeError):
                del builtins._
        else:
            builtins._ = saved


def run_pycon(
    source: str,
    module: ModuleType,
    *,
    first_line: int,
    raises: str | None = None,
    on_line: Callable[[int], None] = lambda _line: None,
    settle: Callable[[], object] | None = None,
) -> BlockResult:
    """Run a ``pycon`` block as an interactive session and return its transcript.

    A ``>>> `` input that comes while a compound statement is still open closes it
    first, as pressing Enter on an empty ``...`` line would (the transcript shows
    that line), so doctest-style blocks read as their author meant them.

    Args:
        source: The block's input lines, with prompts.
        module: The session's ``__main__`` module; its names persist.
        first_line: The page line of the block's first line.
        raises: The name of the exception the block is meant to show, if any.
        on_line: Called with the page line of each input before it runs.
        settle: Called after the last input, if every input ran as shown, while
            the output is still caught: what it waits for prints into the transcript.

    Returns:
        The transcript, or an error naming the page line.
    """
    try:
        inputs = _inputs(source, first_line)
    except ValueError as error:
        line = int(str(error).split(":", 1)[0])
        return BlockResult(error=str(error).split(": ", 1)[1], line=line)
    console = _Console(module.__dict__)
    buffer = _Output()
    statement_start = first_line
    more = False
    raised: list[int] = []
    statement = -1
    if len(inputs) == 1 and inputs[0][2].strip() == "":
        inputs = []
    pending = list(inputs)
    with (
        _as_main(module, "pycon"),
        _own_last_value(module),
        _capturing(buffer, ("stdout", "stderr")),
    ):
        while pending or more:
            closing = not (
                pending and not (more and pending[0][1] == PS1 and pending[0][2].strip())
            )
            if not closing:
                line, _prompt, text = pending.pop(0)
            else:  # close an open block, as Enter on an empty line would
                line, text = (pending[0][0] if pending else statement_start), ""
            if not more:
                statement_start = line
                if text.strip():
                    statement += 1  # numbered as the exports number them: empty ones aside
            buffer.echo((PS2 if more else PS1) + text + "\n")
            on_line(line)
            console.raised = None
            console.statement_line = statement_start
            try:
                more = console.push(text)
            except StopExample as stop:
                stop.line = _running_line(stop.__traceback__)
                stop.output = buffer.getvalue()
                raise
            except SystemExit as exc:
                return BlockResult(
                    output=buffer.getvalue(),
                    error=f"SystemExit({exc.code!r}) ended the session; examples must not exit",
                    line=line,
                )
            exc = console.raised
            if closing and more:  # an empty line does not close a bracket or a string
                where = "the next >>> input starts" if pending else "the block ends"
                return BlockResult(
                    output=buffer.getvalue(),
                    error="the statement that starts here is still open (an unclosed "
                    f"bracket or string) where {where}",
                    line=statement_start,
                )
            if exc is None:
                continue
            if _exception_matches(exc, raises):
                raised.append(statement)
                continue
            # The statement's own frame (the first from <stdin>) says which of its lines
            # raised; deeper <stdin> frames belong to functions that earlier inputs defined.
            where = next(iter(_lines_in(exc.__traceback__, "<stdin>")), None)
            if isinstance(exc, SyntaxError) and exc.filename == "<stdin>" and exc.lineno:
                where = exc.lineno
            error_line = statement_start + (where - 1 if where else 0)
            return BlockResult(
                output=buffer.getvalue(),
                error=f"{_describe(exc)}\n\n{tail(buffer.getvalue())}",
                line=error_line,
            )
        if settle is not None:
            try:
                settle()
            except StopExample as stop:
                stop.output = buffer.getvalue()
                raise
    if raises and not raised:
        return BlockResult(
            output=buffer.getvalue(),
            error=f"the block says raises={raises!r}, but no input raised it",
            line=first_line,
        )
    return BlockResult(output=buffer.getvalue().rstrip("\n"), raised=raised, inputs=buffer.inputs)


def tail(text: str, lines: int = 20, chars: int = 4000) -> str:
    """The last ``lines`` lines of ``text``, and of them no more than its last ``chars``
    characters: a line cut short starts with ``[...]``."""
    text = text.rstrip("\n")
    pieces = text[-chars:].split("\n")
    if len(text) > chars and text[-chars - 1] != "\n":  # the first piece ends a line
        if pieces[0]:
            pieces[0] = "[...]" + pieces[0]
        else:  # only that line's break was kept
            pieces.pop(0)
    return "\n".join(pieces[-lines:])


#: What each page's python blocks ran, line for line at their page lines.
_PAGE_LINES: dict[str, list[str]] = {}


#: What each session's python blocks ran, in order, as ``(path, first_line, code,
#: raises, folder)`` pieces: what a child that multiprocessing spawns runs again (see
#: :func:`spawned_main`).
_RAN: weakref.WeakKeyDictionary[ModuleType, list[tuple[str, int, str, str | None, str]]] = (
    weakref.WeakKeyDictionary()
)


def spawned_main(module: object, folder: str) -> str | None:
    """A main script for a child that multiprocessing spawns while ``module`` is the
    page's ``__main__``: its path, made in ``folder``; ``None`` if ``module`` is no
    session that ran a python block (a ``pycon`` session's child imports no main
    script, as the interactive interpreter's, whose ``__main__`` has no file).

    The script runs the session's python blocks so far, the running one included, in
    the child's ``__mp_main__`` (see :mod:`docexec.spawned`). Each child gets a file of
    its own, made whole before it starts: the children of several threads may start
    at once.
    """
    parts = _RAN.get(module) if isinstance(module, ModuleType) else None
    if not parts:
        return None
    handle, script = tempfile.mkstemp(prefix="main-", suffix=".py", dir=folder)
    with os.fdopen(handle, "w") as file:
        file.write(
            "# A page's session, as a child that multiprocessing spawns imports it\n"
            f'__import__("docexec.spawned").spawned.run_main(globals(), {parts!r}, {os.getcwd()!r})\n'
        )
    return script


def _remember_lines(filename: str, first_line: int, source: str) -> None:
    """Let tracebacks quote a block's code as it ran, not the page file's text.

    The page's own line can differ from what ran: a block inside an admonition is
    indented there (so the carets under an expression would be off), and the page
    file is not found from a block's ``workdir``. The code, at its page lines, goes
    into ``linecache`` under the page's name; earlier blocks' lines stay, for the
    functions they defined.
    """
    lines = _PAGE_LINES.setdefault(filename, [])
    block = [line + "\n" for line in source.split("\n")]
    end = first_line - 1 + len(block)
    lines.extend(["\n"] * (end - len(lines)))
    lines[first_line - 1 : end] = block
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def run_python(
    source: str,
    module: ModuleType,
    *,
    filename: str,
    first_line: int,
    raises: str | None = None,
    parts: Sequence[tuple[str, int, str]] = (),
    settle: Callable[[], object] | None = None,
) -> BlockResult:
    """Run a ``python`` block as a script and return what it wrote to stdout.

    The code is compiled as if it stood at its place in the page, so tracebacks
    name ``filename`` and the page's own line numbers. A block that includes files
    (``--8<--`` snippets) can be given as ``parts`` instead: each part is compiled
    with its own file's name and lines, and run in turn, so an error in an included
    file names that file and its line.

    Args:
        source: The block's code.
        module: The session's ``__main__`` module; its names persist.
        filename: The page's path, such as ``docs/weight-shapes.md``.
        first_line: The page line of the block's first line.
        raises: The name of the exception the block is meant to show, if any.
        parts: ``(path, first_line, code)`` pieces that together make ``source``.
        settle: Called once the code has run to its end (or raised what it shows),
            while its output is still caught: to wait for what it left running, whose
            output is the block's.

    Returns:
        The output (with the traceback appended when ``raises`` matched), or an
        error naming the line (and, for an included file, the path) that raised.
    """
    parts = list(parts) or [(filename, first_line, source)]
    compiled = []
    for path, line, text in parts:
        try:
            compiled.append(compile("\n" * (line - 1) + text, path, "exec"))
        except SyntaxError as exc:
            return BlockResult(
                error=_describe(exc),
                line=exc.lineno or line,
                path="" if path == filename else path,
            )
        _remember_lines(path, line, text)
    files = {path for path, _line, _code in parts}
    _RAN.setdefault(module, []).extend((*part, raises, os.getcwd()) for part in parts)
    buffer = _Output()
    # Where the traceback of an exception the block shows goes: after what the block
    # printed and before what printed while it settled, as the interpreter orders them.
    shown_at: int | None = None
    try:
        with _as_main(module), _own_last_value(module), _capturing(buffer, ("stdout",)):
            try:
                try:
                    for code_object in compiled:
                        exec(code_object, module.__dict__)
                except StopExample:
                    raise
                except BaseException as exc:  # noqa: BLE001 - settled if it is the one shown
                    if settle is not None and _exception_matches(exc, raises):
                        shown_at = len(buffer.getvalue())
                        settle()
                    raise
                if settle is not None:
                    settle()
            except StopExample as stop:  # stopped at its limit, settling included
                stop.output = buffer.getvalue()
                raise
    except StopExample:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends must fail the build too
        path, line = _deepest_frame_in(exc.__traceback__, files) or (parts[0][0], parts[0][1])
        # From the page's first frame: docexec's own (exec) is no part of the page.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename not in files:
            tb = tb.tb_next
        if _exception_matches(exc, raises):
            shown = "".join(traceback.format_exception(type(exc), exc, tb))
            printed = buffer.getvalue()
            at = len(printed) if shown_at is None else shown_at
            return BlockResult(output=printed[:at] + shown + printed[at:], raised=[0])
        if isinstance(exc, SystemExit):
            message = f"SystemExit({exc.code!r}): examples must not exit"
        else:
            message = _describe(exc)
        trace = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        return BlockResult(
            output=buffer.getvalue(),
            error=f"{message}\n\n{trace}",
            line=line,
            path="" if path == filename else path,
        )
    if raises:
        return BlockResult(
            output=buffer.getvalue(),
            error=f"the block says raises={raises!r}, but it ran without raising",
            line=first_line,
        )
    return BlockResult(output=buffer.getvalue())


def _deepest_frame_in(tb: TracebackType | None, files: set[str]) -> tuple[str, int] | None:
    """The file and line of the innermost traceback frame from one of ``files``."""
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in files:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found
