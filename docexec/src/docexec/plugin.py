"""The MkDocs side of docexec: markdown-exec's ``python`` and ``pycon`` fences, made strict.

The plugin puts its own formatters in markdown-exec's formatter registry, so the
fence syntax stays markdown-exec's (```` ```pycon exec="on" session="s" ````) and
its rendering options (``source``, ``result``, ``html``, tabs) keep working. It adds:

- ``raises="Name"``: the block must raise that exception, and shows its traceback;
- ``timeout="SECONDS"``: a limit for the block (default: the plugin's ``timeout``);
- one example process per page (see :mod:`docexec.worker`);
- failures that stop the build and name ``docs/<page>.md:<line>``;
- a memory of what each page printed (see :mod:`docexec.cache`), so a page whose
  examples and inputs are unchanged is not run again.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import markdown_exec
import yaml
from markdown_exec import (
    InsertHeadings,
    MarkdownConverter,
    RemoveHeadings,
    base_format,
    code_block,
)
from markupsafe import Markup
from mkdocs.config import config_options
from mkdocs.config.base import Config
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.utils import write_file
from mkdocs.utils.meta import YAML_RE
from pymdownx.superfences import SuperFencesException

from docexec.cache import (
    BlockRecord,
    CacheMiss,
    ExecutionCache,
    Record,
    digest,
    environment_key,
)
from docexec.export import (
    SNIPPET,
    ExecutedBlock,
    PageExport,
    expand_snippets,
    read_snippet,
    to_notebook,
    to_script,
)
from docexec.fences import Fence, FenceError, scan_fences, take_options
from docexec.memo import (
    BlockHtml,
    FilesRead,
    FileStates,
    SearchEntries,
    block_key,
    jinja_cache,
    local_code,
    markdown_fingerprint,
    poll_quickly,
    rememberable,
)
from docexec.package import (
    cached_wheel,
    install_html,
    notebook_install_cell,
    reader_package,
    script_install_check,
)
from docexec.start import HASH_SEED
from docexec.worker import Block, ExampleFailure, PageWorker

log = get_plugin_logger(__name__)

#: The indentation and block-quote markers before a fence's backticks.
_QUOTE_OR_SPACE = re.compile(r"^[\s>]*")


class ExampleError(PluginError, SuperFencesException):
    """A block failed. Raised through SuperFences (which swallows other errors) to MkDocs."""


class DocExecConfig(Config):
    """Options under ``plugins: - docexec:`` in ``mkdocs.yml``."""

    timeout = config_options.Type((int, float), default=60)
    """Seconds any block may run, unless it sets its own ``timeout``."""
    seed = config_options.Type(int, default=0)
    """The seed every page's process starts from."""
    cache = config_options.Type(bool, default=True)
    """Replay a page's recorded output when nothing it depends on changed.

    ``DOCEXEC_CACHE=0`` in the environment turns it off too."""
    cache_dir = config_options.Type(str, default=".cache/docexec")
    """Where the records live, relative to the folder of ``mkdocs.yml``."""
    package = config_options.Optional(config_options.Type(str))
    """The project's package with the extras readers need (``name[extra]``): its wheel is
    published at the site's root, and every page that runs code says how to install it."""


def _check_front_matter(path: str, raw: str) -> None:
    """Warn (an error under ``--strict``) when a page's YAML front matter does not parse.

    MkDocs would quietly show it as the page's first paragraph.
    """
    match = YAML_RE.match(raw)
    if match is None:
        return
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(error, "problem", None) or str(error).split("\n")[0]
        log.warning(f"{path}:{line}: invalid YAML front matter: {problem}")
        return
    if not isinstance(data, dict):
        log.warning(
            f"{path}:2: YAML front matter must be key: value pairs, not {type(data).__name__}"
        )


def _docstring_place(md, code: str, root: Path) -> str:
    """``src/<module>.py:<line>`` of a block in a docstring mkdocstrings is rendering, or ``""``.

    mkdocstrings tells its Markdown the object it renders (the id prefix of its
    headings); griffe, which mkdocstrings reads the code with, finds that object's
    file without importing it, where the block's first line is looked for.
    """
    processors = getattr(md, "treeprocessors", None)
    if processors is None or "mkdocstrings_ids" not in processors:
        return ""
    name = getattr(processors["mkdocstrings_ids"], "id_prefix", "").removesuffix("--")
    try:
        import griffe

        found = griffe.load(name, search_paths=[str(root), str(root / "src"), *sys.path])
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


def _nonblank(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


def _git(root: Path, *args: str) -> str | None:
    """What ``git ARGS`` prints in ``root``, stripped; ``None`` outside git or on error."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def source_date_epoch(root: Path) -> str | None:
    """The last commit's time, for ``SOURCE_DATE_EPOCH``; ``None`` outside git."""
    return _git(root, "log", "-1", "--format=%ct")


def git_commit(root: Path) -> str:
    """The short hash of the commit being built, or ``"unknown"`` outside git."""
    return _git(root, "rev-parse", "--short=12", "HEAD") or "unknown"


def build_stamp(root: Path) -> str:
    """What produced a page's output: Python, torch and the commit, all fixed per commit."""
    try:
        torch_version = metadata.version("torch").split("+")[0]
    except metadata.PackageNotFoundError:  # pragma: no cover - torch is a dependency
        torch_version = "not installed"
    return f"Python {platform.python_version()}, torch {torch_version}, commit {git_commit(root)}"


@dataclass
class PageRun:
    """One page's examples in one build: where they stand, what ran, what it read.

    Made when MkDocs hands the plugin the page's Markdown and dropped when the
    page's HTML is done.

    Attributes:
        path: The page's path relative to the repository, such as ``docs/index.md``.
        lines: The page's Markdown lines.
        fences: Its executable fences, in order.
        key: The key of those fences' text, included files expanded.
        replay: The cache record being replayed, while it still fits.
        html: What its blocks rendered to last time (see :mod:`docexec.memo`).
        worker: The page's example process, once a block had to run.
        sent: The blocks run or replayed so far, to bring a worker up to date.
        blocks: What each block was, for the notebook and script, by fence line.
        records: Each block as the cache records it.
        files: Repository files the page's process read.
        environ: Environment variables it read, with their values.
        reads_lines: Whether its code looked at stack frames (and so at page lines).
        includes: The page line of each ``--8<--`` in a block, by (fence line, file).
        why: Why its cache record was not used, for the log.
        seconds: Time spent running (or replaying) blocks.
    """

    path: str
    lines: list[str]
    fences: list[Fence]
    key: str
    replay: Record | None = None
    html: BlockHtml | None = None
    worker: PageWorker | None = None
    sent: list[tuple[Block, float]] = field(default_factory=list)
    blocks: dict[int, ExecutedBlock] = field(default_factory=dict)
    records: list[BlockRecord] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    environ: dict[str, str | None] = field(default_factory=dict)
    reads_lines: bool = False
    includes: dict[tuple[int, str], int] = field(default_factory=dict)
    seconds: float = 0.0
    why: str = ""

    @property
    def reused(self) -> bool:
        return self.replay is not None and bool(self.sent)

    def close(self, kill: bool = False) -> None:
        """End the page's process; what its ``atexit`` handlers printed fails the page.

        ``kill`` when the page has failed already: no handler runs, no second error.
        """
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.close(kill=kill)
        if worker.atexit_output.strip():
            raise ExampleError(
                f"{self.path}: an atexit handler printed {worker.atexit_output.strip()!r} "
                "when the page's process ended; that output belongs to no block (print it "
                "in a block instead)"
            )


class DocExecPlugin(BasePlugin[DocExecConfig]):
    """Run every executable block in a per-page process and fail loudly."""

    page: PageRun | None = None

    def on_config(self, config):
        timeout = self.config.timeout
        if not (timeout > 0 and math.isfinite(timeout)):
            raise PluginError(
                f"mkdocs.yml: plugins.docexec.timeout must be a finite number of seconds "
                f"more than 0, not {timeout!r}"
            )
        self.root = Path(config.config_file_path).resolve().parent
        self.page: PageRun | None = None
        self.exports: dict[str, tuple[str, PageExport]] = {}
        self.stamp = build_stamp(self.root)
        try:
            self.package = self.config.package and reader_package(
                self.root, self.config.package, config.site_url or ""
            )
        except ValueError as error:
            raise PluginError(str(error)) from None
        snippets = config.mdx_configs.get("pymdownx.snippets", {}).get("base_path", ["."])
        if isinstance(snippets, str):
            snippets = [snippets]
        self.snippet_paths = [self.root / path for path in snippets]
        markdown_exec.formatters["python"] = self._format_python
        markdown_exec.formatters["py"] = self._format_python
        markdown_exec.formatters["pycon"] = self._format_pycon
        # str/bytes hashes are salted per process unless this is set: set ordering
        # would change from build to build. The example processes inherit it.
        os.environ["PYTHONHASHSEED"] = HASH_SEED
        if "SOURCE_DATE_EPOCH" not in os.environ:
            epoch = source_date_epoch(self.root)
            if epoch:
                os.environ["SOURCE_DATE_EPOCH"] = epoch
        self.cache: ExecutionCache | None = None
        if self.config.cache and os.environ.get("DOCEXEC_CACHE", "1") != "0":
            self.cache = ExecutionCache(
                self.root, self.root / self.config.cache_dir, environment_key(self.config.seed)
            )
        self.search: SearchEntries | None = None
        return config

    # Memories beside the execution cache (see docexec.memo) -----------------

    def on_pre_build(self, *, config):
        # markdown-exec numbers the ids in blocks' HTML from 0 in each build, but sets
        # its count back only after a build that succeeded: after one that failed
        # under `mkdocs serve`, the next would number them differently.
        MarkdownConverter.counter = 0
        if self.cache is None:
            return
        # Every plugin has configured itself (mkdocstrings has added its extension),
        # and the hooks are loaded.
        self.code = local_code(self.root)
        self.markdown_key = markdown_fingerprint(config, self.cache.environment, self.code)
        self.states = FileStates()
        FilesRead.ignored = tuple(
            os.path.join(os.path.abspath(folder), "")
            for folder in (self.cache.folder, config.site_dir)
        )
        search = SearchEntries(self.cache.folder / "search.json")
        for plugin in config.plugins.values():
            if search.attach(getattr(plugin, "search_index", None)):
                self.search = search
        mkdocstrings = config.plugins.get("mkdocstrings")
        for name in getattr(mkdocstrings, "config", {}).get("handlers") or {}:
            with contextlib.suppress(Exception):  # its own error, when it renders
                handler = mkdocstrings.get_handler(name)
                handler.env.bytecode_cache = jinja_cache(
                    self.cache.folder, self.cache.environment, f"mkdocstrings-{name}", self.code
                )

    def on_env(self, env, *, config, files):
        if self.cache is not None:
            env.bytecode_cache = jinja_cache(
                self.cache.folder, self.cache.environment, "theme", self.code
            )
        return env

    def on_serve(self, server, *, config, builder):
        poll_quickly(server)
        return server

    # Pages ------------------------------------------------------------------

    def on_page_markdown(self, markdown, *, page, config, files):
        self._close()
        source = Path(page.file.abs_src_path)
        try:
            path = source.resolve().relative_to(self.root).as_posix()
        except ValueError:
            path = source.as_posix()
        raw = page.file.content_string
        _check_front_matter(path, raw)
        at = raw.rfind(markdown) if markdown else -1
        first_line = raw[:at].count("\n") + 1 if at >= 0 else 1
        lines = markdown.split("\n")
        try:
            annotated, fences = scan_fences(markdown, first_line)
        except FenceError as error:
            raise ExampleError(f"{path}:{error}") from None
        key = digest(
            [
                expand_snippets("\n".join(lines[f.first : f.last + 1]), self.snippet_paths)
                for f in fences
            ]
        )
        self.page = PageRun(path, lines, fences, key)
        if fences and self.cache is not None:
            self.page.html = BlockHtml(self.cache.path_for(path, ".html.json"), self.states)
            try:
                self.page.replay = self.cache.lookup(path, key, [f.line for f in fences])
            except CacheMiss as miss:
                self.page.why = str(miss)
                if miss.unreadable:
                    log.info(f"{path}: {miss}; running the page")
        if self.cache is not None:
            FilesRead.start()  # what the page's rendering reads (see docexec.memo)
        return annotated

    def on_page_content(self, html, *, page, config, files):
        run = self.page
        self._close()
        if run is None or not run.blocks:
            return html
        if run.reused:
            log.info(
                f"{run.path}: reused {len(run.blocks)} blocks in {run.seconds:.2f} s "
                f"(they ran in {run.replay.seconds:.2f} s)"
            )
        else:
            why = f" ({run.why})" if run.why else ""
            log.info(f"{run.path}: ran {len(run.blocks)} blocks in {run.seconds:.2f} s{why}")
            if self.cache is not None:
                self.cache.store(
                    Record(
                        page=run.path,
                        fences=run.key,
                        lines=[f.line for f in run.fences],
                        environment=self.cache.environment,
                        files=self.cache.record_files(run.files),
                        blocks=run.records,
                        seconds=round(run.seconds, 3),
                        environ=run.environ,
                        reads_lines=run.reads_lines,
                    )
                )
        if run.html is not None:
            run.html.save()
        export = self._page_export(page, run)
        stem = Path(page.file.src_uri).stem
        folder = Path(page.file.dest_uri).parent
        self.exports[(folder / stem).as_posix()] = (stem, export)
        return html + (
            '\n<aside class="docexec-provenance" aria-label="How this page was made">\n'
            f"<p>Every output on this page was produced when the site was built, with "
            f"{self.stamp}. Run it yourself: "
            f'<a href="{stem}.ipynb" download>{stem}.ipynb</a> (Jupyter notebook) or '
            f'<a href="{stem}.py" download>{stem}.py</a> (script).</p>\n'
            f"{install_html(self.package) if self.package else ''}</aside>\n"
        )

    def _page_export(self, page, run: PageRun) -> PageExport:
        export = PageExport(title=page.title or page.file.src_uri)
        cursor = 0
        for fence in run.fences:
            prose = "\n".join(run.lines[cursor : fence.first])
            export.parts.append(expand_snippets(prose, self.snippet_paths))
            if fence.line + 1 in run.blocks:
                export.parts.append(run.blocks[fence.line + 1])
            cursor = fence.last + 1
        export.parts.append(expand_snippets("\n".join(run.lines[cursor:]), self.snippet_paths))
        return export

    def on_post_build(self, *, config):
        self._close()
        if self.search is not None:
            self.search.save()
        for path, (_stem, export) in sorted(self.exports.items()):
            stamp = f"Generated from the page of the same name; its outputs were built with {self.stamp}."
            # Each starts as the page's process did: its seed, the build's date.
            start = {"seed": self.config.seed, "epoch": os.environ.get("SOURCE_DATE_EPOCH")}
            notebook = to_notebook(
                export, stamp, self.package and notebook_install_cell(self.package), **start
            )
            script = to_script(
                export, stamp, self.package and script_install_check(self.package), **start
            )
            write_file(notebook.encode(), os.path.join(config.site_dir, path + ".ipynb"))
            write_file(script.encode(), os.path.join(config.site_dir, path + ".py"))
        self.exports = {}
        if self.package:
            wheels = self.cache.folder / "wheels" if self.cache is not None else None
            cached_wheel(self.root, Path(config.site_dir), wheels)

    def on_build_error(self, *, error):
        self._close(kill=True)

    def _close(self, kill: bool = False) -> None:
        FilesRead.stop()
        page, self.page = self.page, None
        if page is not None:
            page.close(kill=kill)

    def _included_parts(
        self, run: PageRun, fence: int, source: str
    ) -> tuple[tuple[str, int, str], ...]:
        """Split a block that includes files into page parts and file parts.

        Each ``--8<-- "file"`` line of the fence's own text (before pymdownx.snippets
        expanded it) becomes a part with the file's path and lines, the rest parts
        with the page's. Returns ``()`` (run the block as one piece, at page lines)
        when the block includes nothing, or when the parts do not add up to the code
        that ran or do not each compile on their own (an include inside a function).
        """
        span = next((f for f in run.fences if f.line == fence), None)
        if span is None:
            return ()
        indent = _QUOTE_OR_SPACE.match(run.lines[span.first]).group(0)
        parts: list[tuple[str, int, str]] = []
        pending: list[str] = []
        start = fence + 1
        for offset, raw in enumerate(run.lines[span.first + 1 : span.last]):
            text = raw.removeprefix(indent)
            match = SNIPPET.match(text)
            found = read_snippet(match["path"], self.snippet_paths) if match else None
            if found is None or match["indent"]:
                if not pending:
                    start = fence + 1 + offset
                pending.append(text)
                continue
            if pending:
                parts.append((run.path, start, "\n".join(pending)))
                pending = []
            file, first_line, included = found
            try:
                path = file.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return ()
            parts.append((path, first_line, included))
            run.includes[(fence, path)] = fence + 1 + offset
        if pending:
            parts.append((run.path, start, "\n".join(pending)))
        if all(path == run.path for path, _line, _text in parts):
            return ()
        # pymdownx.snippets may add blank lines around an include: compare the rest.
        if _nonblank("\n".join(text for *_, text in parts)) != _nonblank(source):
            return ()
        for path, _line, text in parts:
            try:
                compile(text, path, "exec")
            except SyntaxError:
                return ()
        return tuple(parts)

    # Formatters -------------------------------------------------------------

    def _format_python(self, **kwargs: Any):
        return self._format("python", kwargs)

    def _format_pycon(self, **kwargs: Any):
        return self._format("pycon", kwargs)

    def _format(self, kind: str, kwargs: dict[str, Any]):
        run_ = self.page
        if run_ is None:  # pragma: no cover - MkDocs always calls on_page_markdown first
            raise ExampleError("docexec: a block outside any page")
        try:
            options = take_options(kind, kwargs, self.config.timeout)
        except FenceError as error:
            raise ExampleError(f"{run_.path}:{error}") from None
        if options.skip:
            return ""  # a fence inside an HTML comment: never run, nothing shown
        fence = options.line
        if fence == 0:
            where = _docstring_place(kwargs.get("md"), kwargs.get("code", ""), self.root)
            raise ExampleError(
                f"{where or run_.path}: an executable {kind} block in a docstring "
                f"(shown on {run_.path}) is not run: docexec runs the blocks of a page's "
                "own Markdown; show it without exec=, or as a doctest example"
            )
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
                    f"{run_.path}:{fence}: workdir={options.workdir!r} is outside the "
                    "repository; a block may only work in one of its folders"
                )
            if not folder.is_dir():
                raise ExampleError(
                    f"{run_.path}:{fence}: workdir={options.workdir!r} is no folder of {self.root}"
                )

        def block_for(source: str, session: str | None) -> Block:
            source = self._as_written(run_, fence, source)
            parts = self._included_parts(run_, fence, source) if kind == "python" else ()
            return Block(
                kind,
                source,
                session or "",
                fence + 1,
                options.raises,
                options.workdir,
                parts,
                options.width,
            )

        def account(block: Block, output: str, raised: list[int], started: float) -> None:
            run_.seconds += time.perf_counter() - started
            run_.sent.append((block, options.timeout))
            run_.blocks[block.first_line] = ExecutedBlock(
                kind, block.source, options.raises, raised, renders, block.first_line
            )
            run_.records.append(BlockRecord(block.signature(), block.first_line, output, raised))

        # A replayed block whose HTML is remembered is not rendered again. markdown-exec
        # numbers the ids in the HTML it renders (exec-N--) with a count of what it
        # rendered before in the build: that count is part of the key, and moves on
        # as if the block had been rendered.
        started = time.perf_counter()
        count = MarkdownConverter.counter
        block = block_for(kwargs["code"], kwargs.get("session"))
        recorded = self._recorded(run_, block)
        if recorded and not (FilesRead.works() and rememberable(recorded[0])):
            recorded = None
        key = recorded and block_key(self.markdown_key, count, kind, kwargs, *recorded)
        if key and run_.html is not None and (remembered := run_.html.get(key)) is not None:
            html, conversions = remembered
            run_.html.put(key, list(run_.html.saved[key]))
            MarkdownConverter.counter += conversions
            if kwargs.get("update_toc", True):
                _register_headings_processors(kwargs["md"])
            account(block, *recorded, started)
            return Markup(html)  # noqa: S704 - HTML this very formatter made
        ran: list = []

        def run(source: str, session: str | None = None, **_: Any) -> str:
            try:
                with FilesRead.paused():  # what the block reads is the execution cache's
                    return run_block(source, session)
            except ExampleError:
                raise
            except Exception as error:
                # SuperFences would swallow it and publish the fence as text.
                run_.close(kill=True)
                raise ExampleError(
                    f"{run_.path}:{fence}: docexec failed on this block: {error!r}"
                ) from error

        def run_block(source: str, session: str | None) -> str:
            # markdown-exec passes the fence's code as it came (no transform_source).
            if (source, session) != (kwargs["code"], kwargs.get("session")):
                raise ExampleError(f"{run_.path}:{fence}: markdown-exec changed the code")
            started = time.perf_counter()
            output, raised = self._replayed(run_, block)
            if output is None:
                output, raised = self._run(run_, block, options.timeout)
            account(block, output, raised, started)
            ran[:] = [output, raised]
            if kind == "pycon":
                return code_block("pycon", output, **shown)
            return output

        before = dict(_reported_headings(kwargs["md"]))
        html = base_format(language=kind, run=run, **kwargs)
        # Headings in an output go to the page's table of contents as well as into its
        # HTML (markdown-exec may register what records them only now): such a block is
        # always rendered.
        headings = _reported_headings(kwargs["md"])
        added = any(found for at, found in headings.items() if before.get(at) is not found)
        if (
            ran
            and run_.html is not None
            and not added
            and FilesRead.works()
            and rememberable(ran[0], str(html))
        ):
            key = block_key(self.markdown_key, count, kind, kwargs, *ran)
            conversions = MarkdownConverter.counter - count
            run_.html.put(key, [str(html), conversions, self.states.of(FilesRead.seen())])
        return html

    def _as_written(self, run: PageRun, fence: int, source: str) -> str:
        """The block's code as the page has it: Markdown expands tabs before a formatter sees it.

        The fence's own lines are used when they are the code that arrived, tabs aside
        (they are not when a snippet was included: then the code is taken as it came).
        """
        span = next((f for f in run.fences if f.line == fence), None)
        if span is None:
            return source
        opening = _QUOTE_OR_SPACE.match(run.lines[span.first]).group(0)
        written = "\n".join(
            line[len(opening) :] if line.startswith(opening) else line.lstrip(" >")
            for line in run.lines[span.first + 1 : span.last]
        )
        expanded = "\n".join(
            "" if not line.strip(" ") else line for line in written.expandtabs(4).split("\n")
        )
        return written if expanded == source and written != source else source

    def _recorded(self, run: PageRun, block: Block) -> tuple[str, list[int]] | None:
        """The output and exceptions ``block`` will replay, or ``None`` if it will run."""
        record = run.replay
        if record is None or run.worker is not None:
            return None
        index = len(run.sent)
        if index < len(record.blocks) and record.blocks[index].signature == block.signature():
            return record.blocks[index].output, list(record.blocks[index].raised)
        return None

    def _replayed(self, run: PageRun, block: Block) -> tuple[str | None, list[int]]:
        """The block's recorded output, while the page's record still fits it."""
        if run.replay is None or run.worker is not None:
            return None, []
        recorded = self._recorded(run, block)
        if recorded is not None:
            return recorded
        # The record does not fit after all (the fences' text matched, what they ran
        # did not): run the page from here, after replaying its earlier blocks for real.
        log.info(
            f"{run.path}: the record does not match block {len(run.sent) + 1}; running the page"
        )
        run.replay = None
        for earlier, timeout in run.sent:
            self._run(run, earlier, timeout)
        return None, []

    def _run(self, run: PageRun, block: Block, timeout: float) -> tuple[str, list[int]]:
        """Run ``block`` in the page's process; a failure becomes an ``ExampleError``."""
        if run.worker is None:
            run.worker = PageWorker(self.root, run.path, self.config.seed)
        fence = block.first_line - 1
        try:
            result = run.worker.run(block, timeout)
        except ExampleFailure as failure:
            run.close(kill=True)
            where = f"{run.path}:{failure.line if failure.line > 0 else block.first_line}"
            if failure.path:
                at = run.includes.get((fence, failure.path), fence)
                where = f"{failure.path}:{failure.line} (included at {run.path}:{at})"
            raise ExampleError(f"{where}: {failure}") from None
        except Exception as error:
            # SuperFences would swallow anything but an ExampleError and show the
            # block unrun: a broken pipe, a result that cannot be pickled...
            run.close(kill=True)
            raise ExampleError(
                f"{run.path}:{fence}: the block could not be run: {error!r}"
            ) from error
        run.files.update(result.files)
        for name, value in result.environ.items():
            run.environ.setdefault(name, value)
        run.reads_lines = run.reads_lines or result.reads_lines
        return result.output, list(result.raised)
