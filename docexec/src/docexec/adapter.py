"""docexec's formatters for markdown-exec's fences, and the options docexec takes from them.

docexec takes over markdown-exec's ``python``, ``py`` and ``pycon`` formatters (and
``md``/``markdown``, to show an ``md`` fence's source untagged), so the fence syntax
stays markdown-exec's (```` ```pycon exec="on" session="s" ````) and its rendering
options (``source``, ``result``, ``html``, tabs) keep working. It adds:

- ``raises="Name"``: the block must raise that exception, and shows its traceback;
- ``timeout="SECONDS"``: a limit for the block (default: the adapter's ``timeout``);
- one example process per page (see :mod:`docexec.page` and :mod:`docexec.worker`);
- failures that stop the conversion and name ``docs/<page>.md:<line>``.

An :class:`Adapter` needs no MkDocs: its :meth:`~Adapter.fences` go to a plain
``markdown.Markdown`` as SuperFences' ``custom_fences``, and the page being converted
is given by :meth:`~Adapter.page`::

    adapter = Adapter(root)
    md = Markdown(
        extensions=["pymdownx.superfences"],
        extension_configs={"pymdownx.superfences": {"custom_fences": adapter.fences()}},
    )
    with adapter.page("docs/index.md", text) as tagged:
        html = md.convert(tagged)

The MkDocs plugin (:mod:`docexec.plugin`) puts the same formatters in markdown-exec's
registry, opens each page as MkDocs hands it over, and adds the execution cache.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import markdown_exec
from markdown_exec import (
    InsertHeadings,
    MarkdownConverter,
    RemoveHeadings,
    base_format,
    code_block,
)
from markupsafe import Markup
from pymdownx.superfences import RE_OPTIONS

from docexec.cache import digest
from docexec.export import ExecutedBlock
from docexec.fences import (
    FENCE_KEY,
    Fence,
    FenceError,
    scan_fences,
    shown_code,
    take_options,
    untagged,
)
from docexec.memo import RenderReads, block_key, rememberable
from docexec.page import ExampleError, PageRun
from docexec.snippets import SNIPPET, expand_snippets, read_included
from docexec.worker import Block

#: A fence's opening line (its indentation and quote markers taken off), as SuperFences
#: reads it: the fence, then the language and the options, or options in braces.
_FENCE_HEADER = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>\.?(?P<lang>[\w#.+-]*)[ \t]*(?P<rest>.*))$"
)

#: The indentation and block-quote markers before a fence's backticks.
_QUOTE_OR_SPACE = re.compile(r"^[\s>]*")


def mkdocstrings_paths(config, root: Path) -> list[str]:
    """Where mkdocstrings' python handler finds the code it documents (its ``paths``
    option, relative to ``mkdocs.yml``), for naming the file of a docstring's block."""
    plugin = config.plugins.get("mkdocstrings")
    handlers = (getattr(plugin, "config", None) or {}).get("handlers") or {}
    paths = (handlers.get("python") or {}).get("paths") or ["."]
    return [str((root / path).resolve()) for path in paths]


def _docstring_place(md, code: str, root: Path, paths: list[str]) -> str:
    """``<file>.py:<line>`` of a block in a docstring mkdocstrings is rendering, or ``""``.

    mkdocstrings tells its Markdown the object it renders (the id prefix of its
    headings); griffe, which mkdocstrings reads the code with, finds that object's
    file without importing it, in ``paths`` (the handler's own) then ``sys.path``,
    and the block's first line is looked for there.
    """
    processors = getattr(md, "treeprocessors", None)
    if processors is None or "mkdocstrings_ids" not in processors:
        return ""
    name = getattr(processors["mkdocstrings_ids"], "id_prefix", "").removesuffix("--")
    try:
        import griffe

        found = griffe.load(name, search_paths=[*paths, *sys.path])
        file = Path(found.filepath).resolve()
        lines = file.read_text().split("\n")
    except Exception:  # noqa: BLE001 - no place to name is no reason to fail differently
        return ""
    first = next((line.strip() for line in code.split("\n") if line.strip()), None)
    start = (found.lineno or 1) - 1
    line = next(
        (i + 1 for i in range(start, len(lines)) if first and lines[i].strip() == first),
        start + 1,
    )
    try:
        shown = file.relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = file.as_posix()
    return f"{shown}:{line}"


def _reported_headings(md) -> dict:
    """markdown-exec's record of the headings each output put in the page's table of contents."""
    processors = getattr(md, "treeprocessors", None)
    if processors is None or InsertHeadings.name not in processors:
        return {}
    return getattr(processors[InsertHeadings.name], "headings", {})


def _register_headings_processors(md) -> None:
    """What markdown-exec adds to a page's Markdown when it renders a block's output: the
    processors that put the output's headings in the table of contents, and remove its
    wrappers. A block whose HTML is remembered adds them all the same."""
    if InsertHeadings.name not in md.treeprocessors:
        # markdown-exec's own priorities: before HashHeaderProcessor, right after toc.
        md.treeprocessors.register(InsertHeadings(md), InsertHeadings.name, priority=75)
        md.treeprocessors.register(RemoveHeadings(md), RemoveHeadings.name, priority=4)


def _format_markdown(**kwargs: Any) -> Markup:
    """markdown-exec's ``md`` formatter, showing its source as the page has it.

    The Markdown it renders holds the options docexec tagged the fences in it with
    (which run its python blocks); the source it shows (``source="tabbed-left"``)
    does not.
    """
    return base_format(
        language="md",
        run=lambda code, **_: code,
        transform_source=lambda code: (code, untagged(code)),
        **kwargs,
    )


def markdown_exec_languages(custom_fences: Iterable[dict]) -> list[str]:
    """The languages markdown-exec runs: of SuperFences' ``custom_fences`` (markdown-exec's
    plugin adds one per language of its ``languages`` option), those whose formatter is
    markdown-exec's, among the languages it has a formatter for."""
    return [
        fence.get("name")
        for fence in custom_fences
        if fence.get("format") is markdown_exec.formatter
        and fence.get("name") in markdown_exec.formatters
    ]


def _nonblank(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


class Adapter:
    """docexec's formatters for markdown-exec's fences, for one site or one set of pages.

    Args:
        root: The repository: what a page's process reads (``DOCEXEC_ROOT``), where
            ``workdir=`` must stay, and what included files are named relative to.
        timeout: Seconds any block may run, unless it sets its own ``timeout``.
        seed: The seed every page's process starts from.
        preload: Modules the fork server imports once, before it forks each page's process.
        languages: The languages markdown-exec runs (see :func:`markdown_exec_languages`):
            an exec fence in another is refused. ``None``: all of markdown-exec's.
        snippet_paths: pymdownx.snippets' base paths, to read included files from.
        snippet_dedent: pymdownx.snippets' ``dedent_subsections``.
        docstring_paths: Where mkdocstrings finds the code it documents (see
            :func:`mkdocstrings_paths`), to name the place of a docstring's block.

    Attributes:
        current: The run of the page being converted, if any.
        markdown_key: The fingerprint of the Markdown configuration, with which a block's
            HTML is remembered (see :mod:`docexec.memo`); set when a page's run has a
            memory of HTML (:attr:`PageRun.html`).
    """

    def __init__(
        self,
        root: Path,
        *,
        timeout: float = 60,
        seed: int = 0,
        preload: Iterable[str] = (),
        languages: Iterable[str] | None = None,
        snippet_paths: Iterable[Path] = (),
        snippet_dedent: bool = False,
        docstring_paths: Iterable[str] = (),
    ) -> None:
        self.root = Path(root).resolve()
        self.timeout = timeout
        self.seed = seed
        self.preload = tuple(preload)
        self.languages = None if languages is None else list(languages)
        self.snippet_paths = list(snippet_paths)
        self.snippet_dedent = snippet_dedent
        self.docstring_paths = list(docstring_paths)
        self.current: PageRun | None = None
        self.markdown_key = ""

    @property
    def formatters(self) -> dict[str, Any]:
        """docexec's formatters, by language, in the form of markdown-exec's registry
        (``markdown_exec.formatters``), which the MkDocs plugin updates with them."""
        return {
            "python": self._format_python,
            "py": self._format_python,
            "pycon": self._format_pycon,
            "md": _format_markdown,
            "markdown": _format_markdown,
        }

    def format(
        self, source: str, language: str, css_class: str, options: dict, md: Any, **_: Any
    ) -> str:
        """A SuperFences formatter, as ``markdown_exec.formatter`` is: docexec's languages
        go to docexec's formatters, every other to markdown-exec's own."""
        formatter = self.formatters.get(language) or markdown_exec.formatters.get(language)
        if formatter is None:
            return source
        return formatter(code=source, md=md, **options)

    def fences(self) -> list[dict[str, Any]]:
        """SuperFences' ``custom_fences`` for a plain ``markdown.Markdown``: one fence per
        language markdown-exec runs, with markdown-exec's validator and :meth:`format`."""
        languages = self.languages if self.languages is not None else markdown_exec.formatters
        return [
            {
                "name": language,
                "class": language,
                "validator": markdown_exec.validator,
                "format": self.format,
            }
            for language in languages
        ]

    # The page being converted -----------------------------------------------

    def scan(self, path: str, raw: str, markdown: str) -> tuple[PageRun, str]:
        """The page's run, before anything ran, and its Markdown with the fences tagged.

        Args:
            path: The page's path relative to the repository, such as ``docs/index.md``.
            raw: The page's file as written (front matter included), to count its lines.
            markdown: The Markdown to render (front matter taken off).

        Returns:
            The page's run, and the Markdown to convert: ``markdown`` with each fence
            docexec runs tagged with its index (see :func:`docexec.fences.scan_fences`).
        """
        at = raw.rfind(markdown) if markdown else -1
        first_line = raw[:at].count("\n") + 1 if at >= 0 else 1
        try:
            scan = scan_fences(
                markdown,
                first_line,
                languages=self.languages,
                snippet_paths=self.snippet_paths,
                root=self.root,
                dedent=self.snippet_dedent,
            )
        except FenceError as error:
            raise ExampleError(f"{error.place(path)}: {error.message}") from None
        lines = scan.lines
        runs = [f for f in scan.fences if not f.container]
        # The fences' text (files they include expanded), and where included ones stand
        # in their files (a traceback names those lines; a page without any keeps the
        # key it had before docexec ran included fences).
        texts = [
            expand_snippets(
                "\n".join(lines[f.first : f.last + 1]), self.snippet_paths, self.snippet_dedent
            )
            for f in runs
        ]
        places = [[f.path, f.file_line] for f in runs if f.path]
        key = digest(texts, places) if places else digest(texts)
        run = PageRun(
            path, lines, scan.fences, key, self.root, self.seed, self.preload, shown=scan.shown
        )
        return run, scan.markdown

    def open(self, run: PageRun) -> None:
        """Make ``run``'s page the one whose blocks the formatters run, until :meth:`close`
        (a page still open is closed first)."""
        self.close()
        self.current = run

    def close(self, kill: bool = False) -> PageRun | None:
        """End the current page's process, and return its run (``None`` if none was open).

        ``kill`` when the page has failed already: no ``atexit`` handler runs, no second
        error; otherwise what they print fails the page.
        """
        run, self.current = self.current, None
        if run is not None:
            run.close(kill=kill)
        return run

    @contextlib.contextmanager
    def page(self, path: str, markdown: str) -> Iterator[str]:
        """Convert one page: its blocks run in a process of its own, ended on leaving.

        Args:
            path: The page's path relative to the repository, such as ``docs/index.md``:
                what errors name, with the page's lines.
            markdown: The page's Markdown.

        Yields:
            The Markdown to convert, each fence docexec runs tagged with its index.
        """
        run, tagged = self.scan(path, markdown, markdown)
        self.open(run)
        try:
            yield tagged
        except BaseException:
            self.close(kill=True)
            raise
        self.close()

    # Ahead of rendering -----------------------------------------------------

    #: Why :meth:`foresee` last returned ``None``.
    unforeseen = ""

    def _unforeseen(self, why: str) -> None:
        self.unforeseen = why

    def foresee(self, run: PageRun) -> list[tuple[Block, float, Fence]] | None:
        """The blocks the render of ``run``'s page will send, read from its Markdown as
        SuperFences and markdown-exec read them, or ``None`` where that is not sure
        (:attr:`unforeseen` then says why)."""
        foreseen = []
        for index, span in enumerate(run.fences):
            if span.container:
                continue
            header = run.lines[span.first]
            opening = _QUOTE_OR_SPACE.match(header).group(0)
            fence = _FENCE_HEADER.match(header[len(opening) :])
            if fence is None or fence["info"].startswith("{"):
                return self._unforeseen("a fence has its options in braces")
            lang, rest = fence["lang"], fence["rest"]
            kind = "pycon" if lang == "pycon" else "python"
            values = {
                m["key"]: m["value"] if m["value"] is not None else m["key"]
                for m in RE_OPTIONS.finditer(rest)
            }
            values[FENCE_KEY] = str(index)
            options: dict[str, Any] = {}
            written = "\n".join(
                line[len(opening) :] if line.startswith(opening) else line.lstrip(" >")
                for line in run.lines[span.first + 1 : span.last]
            )
            if any(SNIPPET.match(line) for line in written.split("\n")):
                # pymdownx.snippets brings the code: the render knows it.
                return self._unforeseen("a block includes code with pymdownx.snippets")
            try:
                if not markdown_exec.validator(lang, values, options, {}, None):
                    return self._unforeseen("markdown-exec does not take a fence's options")
                taken = take_options(kind, options, self.timeout)
            except (FenceError, ValueError):
                # The render says what is wrong, where.
                return self._unforeseen("a fence's options are not right")
            if taken.skip or taken.fence != index:
                return self._unforeseen("a fence is not read as it is written")
            if taken.workdir and not (self.root / taken.workdir).resolve().is_dir():
                return self._unforeseen(f"a block's workdir {taken.workdir!r} is no folder")
            parts = self._included_parts(run, index, written) if kind == "python" else ()
            first = (span.file_line if span.path else span.line) + 1
            block = Block(
                kind,
                written,
                options.get("session") or "",
                first,
                taken.raises,
                taken.workdir,
                parts,
                taken.width,
            )
            foreseen.append((block, taken.timeout, span))
        return foreseen

    def _included_parts(
        self, run: PageRun, index: int, source: str
    ) -> tuple[tuple[str, int, str], ...]:
        """Split a block that includes files into page parts and file parts.

        Each ``--8<-- "file"`` line of the fence's own text (before pymdownx.snippets
        expanded it) becomes a part with the file's path and lines, the rest parts
        with the lines of the file the fence is written in (the page, or a file the
        page includes). Returns ``()`` (run the block as one piece, at page lines)
        when the block is the page's and includes nothing, or when the parts do not
        add up to the code that ran or do not each compile on their own (an include
        inside a function); if the block does include a file, ``run.unsplit`` then
        notes where its first include stands.
        """
        span = run.fences[index]
        home, line = (span.path, span.file_line) if span.path else (run.path, span.line)
        indent = _QUOTE_OR_SPACE.match(run.lines[span.first]).group(0)
        parts: list[tuple[str, int, str]] = []
        pending: list[str] = []
        start = line + 1
        first_include: int | None = None

        def unsplit() -> tuple[()]:
            if first_include is not None:
                run.unsplit[index] = first_include
            return ()

        for offset, raw in enumerate(run.lines[span.first + 1 : span.last]):
            text = raw.removeprefix(indent)
            match = SNIPPET.match(text)
            found = (
                read_included(match["path"], self.snippet_paths, self.snippet_dedent)
                if match
                else None
            )
            if found is None or match["indent"]:
                if not pending:
                    start = line + 1 + offset
                pending.append(text)
                continue
            if pending:
                parts.append((home, start, "\n".join(pending)))
                pending = []
            if first_include is None:
                first_include = offset
            try:
                path = found.file.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return unsplit()
            # Lines that do not follow one another (two ranges, a section without the
            # markers of another) are parts of their own, each at its own line.
            parts.extend((path, first_line, included) for first_line, included in found.runs())
            place = span.place(run.path, 1 + offset)
            for number, _text in found.lines:
                run.includes.setdefault((index, path, number), place)
        if pending:
            parts.append((home, start, "\n".join(pending)))
        if all(path == run.path for path, _line, _text in parts):
            return ()
        # pymdownx.snippets may add blank lines around an include: compare the rest.
        if _nonblank("\n".join(text for *_, text in parts)) != _nonblank(source):
            return unsplit()
        for path, _line, text in parts:
            try:
                compile(text, path, "exec")
            except SyntaxError:
                return unsplit()
        return tuple(parts)

    # Formatters -------------------------------------------------------------

    def _format_python(self, **kwargs: Any):
        return self._format_or_fail("python", kwargs)

    def _format_pycon(self, **kwargs: Any):
        return self._format_or_fail("pycon", kwargs)

    def _format_or_fail(self, kind: str, kwargs: dict[str, Any]):
        """Format a block; any error is an ``ExampleError``, which SuperFences lets through
        (it swallows every other error, and shows the fence as code, unrun)."""
        try:
            return self._format(kind, kwargs)
        except ExampleError:
            raise
        except Exception as error:
            where = self.current.path if self.current is not None else "docexec"
            if self.current is not None:
                self.current.close(kill=True)
            raise ExampleError(f"{where}: docexec failed on a {kind} block: {error!r}") from error

    def _format(self, kind: str, kwargs: dict[str, Any]):
        run_ = self.current
        if run_ is None:  # converted outside open() and close(), or page()
            raise ExampleError("docexec: a block outside any page")
        try:
            options = take_options(kind, kwargs, self.timeout)
        except FenceError as error:
            if error.fence is None:  # shown, or refused for what it is, not for its options
                return self._untagged(run_, kind, kwargs)
            raise ExampleError(
                f"{run_.fences[error.fence].place(run_.path)}: {error.message}"
            ) from None
        if options.skip:
            return ""  # a fence inside an HTML comment: never run, nothing shown
        if options.fence is None or options.fence >= len(run_.fences):
            return self._untagged(run_, kind, kwargs)  # not a fence this page's scan tagged
        index = options.fence
        span = run_.fences[index]
        place = span.place(run_.path)
        shown = {
            k: kwargs["extra"].pop(k)
            for k in ("hl_lines", "linenums", "title")
            if k in kwargs["extra"]
        }
        if kind == "pycon":
            # The transcript holds the inputs, so the source is never shown twice.
            kwargs["source"] = ""
            kwargs["result"] = ""
        else:
            kwargs["extra"].update(shown)
            if options.raises and not kwargs.get("html") and not kwargs.get("result"):
                # A traceback read as Markdown loses its indentation and its <module>:
                # show the block's output as a traceback instead.
                kwargs["result"] = "pytb"
        # What the page makes of a python block's printed output (markdown-exec's rules).
        renders = "html" if kwargs.get("html") else "text" if kwargs.get("result") else "markdown"
        if options.workdir:
            folder = (self.root / options.workdir).resolve()
            if not folder.is_relative_to(self.root.resolve()):
                raise ExampleError(
                    f"{place}: workdir={options.workdir!r} is outside the "
                    "repository; a block may only work in one of its folders"
                )
            if not folder.is_dir():
                raise ExampleError(
                    f"{place}: workdir={options.workdir!r} is no folder of {self.root}"
                )

        def block_for(source: str, session: str | None) -> Block:
            source = self._as_written(run_, span, source)
            parts = self._included_parts(run_, index, source) if kind == "python" else ()
            return Block(
                kind,
                source,
                session or "",
                (span.file_line if span.path else span.line) + 1,
                options.raises,
                options.workdir,
                parts,
                options.width,
            )

        def account(block: Block, output: str, raised: list[int], seconds: float) -> None:
            run_.ran(block, options.timeout, span, output, raised, seconds)
            run_.blocks[index] = ExecutedBlock(
                kind, block.source, options.raises, raised, renders, block.first_line
            )

        # A replayed block whose HTML is remembered is not rendered again. markdown-exec
        # numbers the ids in the HTML it renders (exec-N--) with a count of what it
        # rendered before in the build: that count is part of the key, and moves on
        # as if the block had been rendered.
        started = time.perf_counter()
        count = MarkdownConverter.counter
        block = block_for(kwargs["code"], kwargs.get("session"))
        recorded = run_.recorded(block) if run_.html is not None else None
        if recorded and not (RenderReads.works() and rememberable(recorded[0])):
            recorded = None
        key = recorded and block_key(self.markdown_key, count, kind, kwargs, *recorded)
        if key and run_.html is not None and (remembered := run_.html.get(key)) is not None:
            html, conversions = remembered
            run_.html.put(key, list(run_.html.saved[key]))
            MarkdownConverter.counter += conversions
            if kwargs.get("update_toc", True):
                _register_headings_processors(kwargs["md"])
            account(block, *recorded, time.perf_counter() - started)
            return Markup(html)  # noqa: S704 - HTML this very formatter made
        ran: list = []

        def run(source: str, session: str | None = None, **_: Any) -> str:
            try:
                with RenderReads.paused():  # what the block reads is the execution cache's
                    return run_block(source, session)
            except ExampleError:
                raise
            except Exception as error:
                # SuperFences would swallow it and publish the fence as text.
                run_.close(kill=True)
                raise ExampleError(f"{place}: docexec failed on this block: {error!r}") from error

        def run_block(source: str, session: str | None) -> str:
            # markdown-exec passes the fence's code as it came (no transform_source).
            if (source, session) != (kwargs["code"], kwargs.get("session")):
                raise ExampleError(f"{place}: markdown-exec changed the code")
            stopwatch = run_.stopwatch()  # the block's time, not its process's start
            output, raised = run_.replayed(block)
            if output is None:
                output, raised = run_.run(block, options.timeout, span)
            account(block, output, raised, stopwatch())
            ran[:] = [output, raised]
            if kind == "pycon":
                return code_block("pycon", output, **shown)
            if renders == "text":
                # Shown as it printed: a tab up to the next of a terminal's stops, every
                # 8 columns (Markdown would take its stops every 4).
                return output.expandtabs(8)
            return output

        before = dict(_reported_headings(kwargs["md"]))
        run_.rendering.append(place)
        try:
            html = base_format(language=kind, run=run, **kwargs)
        finally:
            run_.rendering.pop()
        # Headings in an output go to the page's table of contents as well as into its
        # HTML (markdown-exec may register what records them only now): such a block is
        # always rendered.
        headings = _reported_headings(kwargs["md"])
        added = any(found for at, found in headings.items() if before.get(at) is not found)
        if (
            ran
            and run_.html is not None
            and not added
            and RenderReads.works()
            and rememberable(ran[0], str(html))
        ):
            key = block_key(self.markdown_key, count, kind, kwargs, *ran)
            conversions = MarkdownConverter.counter - count
            run_.html.put(key, [str(html), conversions, RenderReads.states()])
        return html

    def _untagged(self, run: PageRun, kind: str, kwargs: dict[str, Any]) -> str:
        """What an executable fence that the page's scan did not tag is: shown, or refused.

        SuperFences formats a fence in an indented code block, then shows its text:
        such a fence is not run. Any other was not written in the page's Markdown, and
        the refusal says where it came from.
        """
        code = kwargs.get("code", "")
        docstring = _docstring_place(kwargs.get("md"), code, self.root, self.docstring_paths)
        if docstring:
            raise ExampleError(
                f"{docstring}: an executable {kind} block in a docstring (shown on "
                f"{run.path}) is not run: docexec runs the blocks of a page's own Markdown "
                "and of the files it includes; show it without exec=, or as a doctest example"
            )
        if shown_code(code) in run.shown:
            return ""  # SuperFences shows the indented code's own text instead
        if run.rendering:
            raise ExampleError(
                f"{run.rendering[-1]}: this block printed an executable {kind} fence, which "
                "is not run: docexec runs the blocks written in a page's Markdown (print the "
                "fence without exec=, or write it in the page)"
            )
        raise ExampleError(
            f"{run.path}: an executable {kind} block that is not in the page's Markdown "
            "(added by another plugin or extension, or included in a way docexec does not "
            'read: it reads a whole file, line ranges, --8<-- "file.md:3:9", or a section, '
            '--8<-- "file.md:name", outside fences) is not run'
        )

    def _as_written(self, run: PageRun, span: Fence, source: str) -> str:
        """The block's code as the page has it: Markdown expands tabs before a formatter sees it.

        The fence's own lines are used when they are the code that arrived, tabs aside
        (they are not when a snippet was included: then the code is taken as it came).
        """
        opening = _QUOTE_OR_SPACE.match(run.lines[span.first]).group(0)
        written = "\n".join(
            line[len(opening) :] if line.startswith(opening) else line.lstrip(" >")
            for line in run.lines[span.first + 1 : span.last]
        )
        expanded = "\n".join(
            "" if not line.strip(" ") else line for line in written.expandtabs(4).split("\n")
        )
        return written if expanded == source and written != source else source
