"""docexec.session: transcripts checked against a real interactive CPython in a pseudo-terminal."""

import os
import pty
import random
import select
import sys
import termios
from pathlib import Path

import pytest

from docexec.session import (
    AddressStabilizer,
    PathScrubber,
    as_terminal,
    new_session_module,
    parse_pycon,
    run_pycon,
    run_python,
    tail,
)

CASES = {
    "expressions": ["1 + 1", "None", "x = 5", "x * 2", "'text'"],
    "underscore": ["6 * 7", "_", "_ + 1", "_"],
    "print_sep": ["print(1, 2, sep=',')", "print('a', end='!\\n')"],
    "stdout_write": ["import sys", "sys.stdout.write('hi\\n')", "sys.stderr.write('err\\n')"],
    "multiline": ["for i in range(3):", "    print(i)", "", "total = 0"],
    "function_traceback": [
        "def f(n):",
        "    return 1 / n",
        "",
        "f(2)",
        "f(0)",
        "'after the error'",
    ],
    "name_error": ["undefined_name"],
    "syntax_error": ["1 +", "print('still running')"],
    "indentation_error": ["def f():", "  return 1", "   return 2", ""],
    "repl_names": ["import sys", "sys.ps1, sys.ps2", "dir()", "__builtins__", "__loader__"],
    "repl_argv": ["import sys", "sys.argv", "__spec__, __doc__, __package__"],
    "trailing_spaces": ["'trail  '   ", "print('a  ')"],
    "pprint": ["import pprint", "pprint.pprint({'b': [1] * 3, 'a': 2})"],
}

RAISING = {"function_traceback", "name_error", "syntax_error", "indentation_error"}


def real_repl(lines: list[str], terminal_tabs: bool = False) -> str:
    """Type ``lines`` into ``python -i`` on a pseudo-terminal and return the screen.

    With ``terminal_tabs``, the terminal turns a tab in output into spaces up to its
    next stop (every 8 columns), as a terminal window shows it: otherwise the tab
    itself is on the screen.
    """
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes the interpreter
        if terminal_tabs:
            attrs = termios.tcgetattr(1)
            attrs[1] = (attrs[1] & ~termios.TABDLY) | termios.TAB3 | termios.OPOST
            termios.tcsetattr(1, termios.TCSANOW, attrs)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONIOENCODING": "utf-8", "TERM": "dumb"}
        # -S: no site, so no readline and no escape sequences; -q: no banner.
        os.execve(sys.executable, [sys.executable, "-S", "-q", "-i"], env)
    screen = b""

    def read_until_prompt() -> None:
        nonlocal screen
        for _ in range(200):  # bounded: at most 200 reads of up to 10 s each
            ready, _, _ = select.select([fd], [], [], 10)
            if not ready:
                raise AssertionError(f"the interpreter went quiet: {screen!r}")
            screen += os.read(fd, 65536)
            if screen.endswith((b">>> ", b"... ")):
                return
        raise AssertionError("too much output")

    try:
        read_until_prompt()
        for line in lines:
            os.write(fd, line.encode() + b"\n")
            read_until_prompt()
        if screen.endswith(b"... "):
            os.write(fd, b"\n")
            read_until_prompt()
        os.write(fd, b"\x04")
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    text = screen.decode().replace("\r\n", "\n")
    assert text.endswith(">>> ")
    return text[: -len(">>> ")]


def as_block(lines: list[str]) -> str:
    out, more = [], False
    for line in lines:
        more = more or line.endswith(":")
        prompt = "... " if (out and more and (line.startswith(" ") or line == "")) else ">>> "
        if line == "":
            more = False
        out.append(prompt + line if line else prompt.rstrip())
    return "\n".join(out)


def normalise(text: str) -> str:
    """Both transcripts as compared: trailing newlines aside, every space kept."""
    return text.rstrip("\n")


@pytest.mark.parametrize("name", sorted(CASES))
def test_transcript_matches_interactive_cpython(name):
    lines = CASES[name]
    result = run_pycon(
        as_block(lines),
        new_session_module(),
        first_line=1,
        raises="Exception" if name in RAISING else None,
    )
    assert not result.error
    assert normalise(result.output) == normalise(real_repl(lines))


#: Syntax errors whose caret CPython's interpreter draws otherwise than ``traceback``:
#: an error running onto the next line, a line that starts with a tab, a tab inside.
SYNTAX_ERRORS = {
    "across_lines": [">>> x = (1 +", "... 2 3)"],
    "after_a_leading_tab": [">>> if True:", "... \tx = 1 +* 2"],
    "unexpected_tab": [">>> \t1 +* 2"],
    "tab_inside": [">>> x = 'a'\t+* 2"],
    "on_the_first_line": [">>> print 'hi'"],
}


@pytest.mark.parametrize("name", sorted(SYNTAX_ERRORS))
def test_a_syntax_error_is_drawn_as_the_interpreter_draws_it(name):
    block = SYNTAX_ERRORS[name]
    result = run_pycon("\n".join(block), new_session_module(), first_line=1, raises="SyntaxError")
    assert not result.error
    # Tabs as a terminal shows them on both sides (the worker publishes them so).
    real = real_repl([line[4:] for line in block], terminal_tabs=True)
    assert normalise(result.output).expandtabs(8) == normalise(real)


def test_the_reference_repl_really_runs():
    assert real_repl(["40 + 2"]) == ">>> 40 + 2\n42\n"


def test_typed_output_is_refused_with_its_page_line():
    with pytest.raises(ValueError, match=r"^12: .*'torch.Size\(\[6\]\)'"):
        parse_pycon(">>> x\ntorch.Size([6])", first_line=11)


def test_unexpected_exception_names_the_line_inside_the_statement():
    block = ">>> def f():\n...     return 1\n...\n>>> x = [\n...   1,\n...   1 / 0,\n... ]"
    result = run_pycon(block, new_session_module(), first_line=20)
    assert result.error.startswith("ZeroDivisionError: division by zero")
    assert result.line == 25


def test_a_failing_statement_s_message_shows_only_the_end_of_what_printed_before():
    block = ">>> print('y' * 100_000 + '!')\n>>> 1 / 0"
    result = run_pycon(block, new_session_module(), first_line=1)
    assert "[...]yyy" in result.error and "y!\n>>> 1 / 0\nTraceback" in result.error
    assert len(result.error) < 5_000


def overwrite_in_order(line: str) -> str:
    """A terminal's line, drawn part by part: each ``\\r`` part overwrites the start."""
    shown = ""
    for part in line.split("\r"):
        shown = part + shown[len(part) :]
    return shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("loading 1/3\rloading 2/3\rloading 3/3\n", "loading 3/3\n"),
        ("long line here\rshort\n", "shortline here\n"),
        ("a\r\nb\rc", "a\nc"),  # \r\n is a line's end, not a redraw
        ("\x1b[32mgreen\x1b[0m\rGR", "GReen"),
    ],
)
def test_as_terminal_shows_each_column_as_last_drawn(text, shown):
    assert as_terminal(text) == shown


def test_as_terminal_agrees_with_drawing_the_parts_in_order():
    draw = random.Random(0)
    for _ in range(500):
        line = "".join(draw.choice("ab\r") for _ in range(draw.randrange(30)))
        assert as_terminal(line) == overwrite_in_order(line), repr(line)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\nb\nc\n\n", "b\nc"),  # the last lines, trailing empty ones aside
        ("x" * 10 + "\nend", "[...]xx\nend"),  # a line cut short says so
        ("x" * 10, "[...]" + "x" * 6),
        ("\n".join("abcdefghij"), "i\nj"),  # cut short, but not in a kept line
        ("x" * 10 + "\nabcde", "abcde"),  # of the line cut short, only its break was kept
        ("xxxx\nabcdef", "abcdef"),  # cut at a line's start: nothing of it is missing
    ],
)
def test_tail_keeps_the_last_lines_and_at_most_so_many_characters(text, shown):
    assert tail(text, lines=2, chars=6) == shown


@pytest.mark.parametrize(
    ("block", "where"),
    [
        (">>> x = (1 +\n>>> 2)", "where the next >>> input starts"),
        (">>> s = '''open\n... string", "where the block ends"),
    ],
)
def test_a_statement_left_open_fails_at_its_line_instead_of_waiting(block, where):
    result = run_pycon(block, new_session_module(), first_line=7)
    assert result.error.startswith("the statement that starts here is still open")
    assert result.error.endswith(where)
    assert result.line == 7


def test_expected_exception_must_happen():
    result = run_pycon(">>> 1 + 1", new_session_module(), first_line=3, raises="KeyError")
    assert "raises='KeyError'" in result.error
    assert result.line == 3


def test_system_exit_fails_the_block():
    result = run_pycon(">>> import sys\n>>> sys.exit(0)", new_session_module(), first_line=1)
    assert "SystemExit(0)" in result.error
    assert result.line == 2


def test_python_block_captures_every_way_of_writing_to_stdout():
    code = "\n".join(
        [
            "import logging, pprint, sys",
            "print(1, 2, sep=',', end=';\\n')",
            "print('to stdout', file=sys.stdout)",
            "sys.stdout.write('written\\n')",
            "pprint.pprint([1, 2])",
            "handler = logging.StreamHandler(sys.stdout)",
            "logger = logging.getLogger('docexec-test')",
            "logger.addHandler(handler)",
            "logger.warning('logged')",
            "logger.removeHandler(handler)",
            "import os, subprocess",
            "os.write(1, b'to the descriptor\\n')",
            "subprocess.run([sys.executable, '-c', 'print(\"from a child\")'], check=True)",
            "print('last')",
        ]
    )
    result = run_python(code, new_session_module(), filename="docs/x.md", first_line=1)
    assert result.output == (
        "1,2;\nto stdout\nwritten\n[1, 2]\nlogged\nto the descriptor\nfrom a child\nlast\n"
    )


def test_python_block_errors_name_the_page_line():
    code = "a = 1\nb = 0\nc = a / b\n"
    result = run_python(code, new_session_module(), filename="docs/page.md", first_line=40)
    assert result.line == 42
    assert result.error.startswith("ZeroDivisionError")
    assert 'File "docs/page.md", line 42' in result.error
    # The traceback starts at the page, as a script's would: docexec's exec is not shown.
    assert 'Traceback (most recent call last):\n  File "docs/page.md", line 42' in result.error
    assert "session.py" not in result.error


@pytest.mark.parametrize("statement", ["raise SystemExit(0)", "raise KeyboardInterrupt"])
def test_python_block_base_exceptions_fail(statement):
    result = run_python(statement, new_session_module(), filename="docs/p.md", first_line=7)
    assert result.error
    assert result.line == 7


def test_python_block_expected_exception_shows_a_traceback_from_the_page():
    code = "x = {}\nx['missing']"
    result = run_python(
        code, new_session_module(), filename="docs/p.md", first_line=5, raises="KeyError"
    )
    assert not result.error
    assert result.output.startswith("Traceback (most recent call last):\n")
    assert 'File "docs/p.md", line 6, in <module>' in result.output
    assert "session.py" not in result.output
    assert result.output.endswith("KeyError: 'missing'\n")


def test_sessions_share_a_module_namespace():
    module = new_session_module()
    run_python("value = 41", module, filename="docs/p.md", first_line=1)
    result = run_pycon(">>> value + 1", module, first_line=3)
    assert result.output.endswith("42")


def test_addresses_are_stable_and_keep_identity():
    stabilize = AddressStabilizer()
    text = "<a at 0x7f3a11> <b at 0x7f3a22> <again at 0x7f3a11> 0xff"
    assert stabilize(text) == (
        "<a at 0x7ff000000010> <b at 0x7ff000000020> <again at 0x7ff000000010> 0xff"
    )


def test_paths_are_scrubbed_to_portable_ones(tmp_path):
    import sysconfig

    scrub = PathScrubber(tmp_path)
    site = sysconfig.get_paths()["purelib"]
    text = f'File "{site}/torch/nn/x.py" and "{tmp_path}/docs/a.md"'
    assert scrub(text) == 'File "site-packages/torch/nn/x.py" and "./docs/a.md"'
    assert str(Path(site).parent) not in scrub(text)


def test_a_handler_made_in_one_block_writes_into_the_next():
    module = new_session_module()
    first = "import logging, sys\nlog = logging.getLogger('docexec-next')\n"
    first += "handler = logging.StreamHandler(sys.stdout)\nlog.addHandler(handler)\n"
    first += "log.warning('one')"
    try:
        assert run_python(first, module, filename="docs/p.md", first_line=1).output == "one\n"
        second = run_python("log.warning('two')", module, filename="docs/p.md", first_line=9)
        assert second.output == "two\n"
        third = run_pycon(">>> log.warning('three')", module, first_line=12)
        assert third.output == ">>> log.warning('three')\nthree"
    finally:
        run_python("log.removeHandler(handler)", module, filename="docs/p.md", first_line=20)


def test_a_new_prompt_closes_an_open_block_as_enter_would():
    source = ">>> def f():\n...     return 1\n>>> f()"
    result = run_pycon(source, new_session_module(), first_line=1)
    assert not result.error, result.error
    # "... " with its space, as the interpreter prints the prompt of an empty line.
    assert result.output == ">>> def f():\n...     return 1\n... \n>>> f()\n1"


def test_an_error_inside_an_earlier_function_names_the_calling_line():
    source = ">>> def f():\n...     a = 1\n...     return a / 0\n...\n>>> 1\n>>> f()"
    result = run_pycon(source, new_session_module(), first_line=20)
    assert result.error.startswith("ZeroDivisionError")
    assert result.line == 25


def test_each_session_has_its_own_underscore():
    one, two = new_session_module(), new_session_module()
    assert run_pycon(">>> 7", one, first_line=1).output == ">>> 7\n7"
    assert "NameError" in run_pycon(">>> _", two, first_line=3).error
    assert run_pycon(">>> _", one, first_line=5).output == ">>> _\n7"
    assert run_python("print(_)", one, filename="docs/p.md", first_line=7).output == "7\n"


def test_empty_prompts_do_not_shift_the_index_of_the_raising_statement():
    source = ">>> x = 1\n>>>\n>>> x[0]"
    result = run_pycon(source, new_session_module(), first_line=1, raises="TypeError")
    assert result.raised == [1]  # the second statement, as the exports count them


def test_tracebacks_quote_the_code_as_it_ran_at_its_page_lines(tmp_path, monkeypatch):
    """Not the page's own text: it may be indented (an admonition), or not found at all."""
    monkeypatch.chdir(tmp_path)  # no docs/indented.md here
    module = new_session_module()
    run_python("def half(x):\n    return x / 0", module, filename="docs/indented.md", first_line=4)
    result = run_python(
        "total = 2\nhalf(total)",
        module,
        filename="docs/indented.md",
        first_line=10,
        raises="ZeroDivisionError",
    )
    assert "line 11, in <module>\n    half(total)\n" in result.output
    assert "line 5, in half\n    return x / 0\n           ~~^~~\n" in result.output
