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
import functools
import importlib.util
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import markdown_exec
import yaml
from jinja2 import Template
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
from mkdocs.structure.files import File, InclusionLevel
from mkdocs.utils import write_file
from mkdocs.utils.meta import YAML_RE, get_data
from pymdownx.superfences import RE_OPTIONS, SuperFencesException

from docexec import schedule
from docexec.cache import (
    BlockRecord,
    CacheMiss,
    ExecutionCache,
    Record,
    digest,
    environment_key,
)
from docexec.export import (
    ExecutedBlock,
    PageExport,
    to_notebook,
    to_script,
)
from docexec.fences import (
    FENCE_KEY,
    Fence,
    FenceError,
    scan_fences,
    shown_code,
    take_options,
    untagged,
)
from docexec.memo import (
    BlockHtml,
    FileStates,
    RenderReads,
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
from docexec.processes import check_platform
from docexec.snippets import SNIPPET, expand_snippets, read_snippet
from docexec.start import HASH_SEED
from docexec.worker import Block, ExampleFailure, PageWorker

log = get_plugin_logger(__name__)

#: A fence's opening line (its indentation and quote markers taken off), as SuperFences
#: reads it: the fence, then the language and the options, or options in braces.
_FENCE_HEADER = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>\.?(?P<lang>[\w#.+-]*)[ \t]*(?P<rest>.*))$"
)

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
    preload = config_options.ListOfItems(config_options.Type(str), default=[])
    """Modules the fork server imports once, so that each page's process starts with them
    (``[torch]``): their distributions' versions are named in every page's stamp."""
    jobs = config_options.Type(int, default=0)
    """How many pages run at once, before MkDocs renders them (``DOCEXEC_JOBS`` in the
    environment wins): 0, the default, for every core this process may use."""
    provenance = config_options.Type(bool, default=True)
    """End every page that runs code with a note saying how its outputs were made, with
    its notebook and script, and add the plugin's stylesheet for it."""


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


def _mkdocstrings_paths(config, root: Path) -> list[str]:
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


def _markdown_exec_languages(config) -> list[str]:
    """The languages markdown-exec runs on this site: the fences SuperFences gives its
    formatter (its plugin adds one per language of its ``languages`` option), among the
    languages it has a formatter for."""
    superfences = config.mdx_configs.get("pymdownx.superfences") or {}
    return [
        fence.get("name")
        for fence in superfences.get("custom_fences") or []
        if fence.get("format") is markdown_exec.formatter
        and fence.get("name") in markdown_exec.formatters
    ]


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


@functools.lru_cache(maxsize=8)
def _providers(module: str) -> tuple[str, ...]:
    """The distributions that provide top-level ``module``: the one of its name if it
    does (torch), else as the installed metadata says (sklearn: scikit-learn), which
    reads every distribution's file list (half a second): once per process."""
    with contextlib.suppress(metadata.PackageNotFoundError):
        metadata.distribution(module)
        return (module,)
    return tuple(metadata.packages_distributions().get(module, []))


def preloaded_distributions(preload: list[str]) -> list[str]:
    """``name version`` of each distribution that provides a module of ``preload``."""
    found: dict[str, None] = {}
    for module in preload:
        for name in _providers(module.split(".")[0]):
            found[f"{name} {metadata.version(name).split('+')[0]}"] = None
    return list(found)


def build_stamp(root: Path, preload: list[str]) -> str:
    """What produced a page's output: Python, the preloaded distributions and the commit,
    all fixed per commit (``Python 3.11.7, torch 2.13.0, commit 0123456789ab``)."""
    return ", ".join(
        [
            f"Python {platform.python_version()}",
            *preloaded_distributions(preload),
            f"commit {git_commit(root)}",
        ]
    )


#: The note that ends every page that runs code, and its stylesheet, shipped with docexec.
ASSETS = Path(__file__).resolve().parent / "assets"
STYLESHEET = "assets/docexec.css"


@dataclass
class PageRun:
    """One page's examples in one build: where they stand, what ran, what it read.

    Made when MkDocs hands the plugin the page's Markdown and dropped when the
    page's HTML is done.

    Attributes:
        path: The page's path relative to the repository, such as ``docs/index.md``.
        lines: The page's Markdown lines, with the files it includes that hold fences
            to run (see :class:`docexec.fences.Scan`).
        fences: Its executable fences (and the ``md`` fences holding some), in order.
        key: The key of those fences' text, included files expanded.
        shown: The code of executable fences the page only shows (in indented code).
        replay: The cache record being replayed, while it still fits.
        html: What its blocks rendered to last time (see :mod:`docexec.memo`).
        worker: The page's example process, once a block had to run.
        sent: The blocks run or replayed so far (with their timeout and fence), to
            bring a worker up to date.
        blocks: What each block was, for the notebook and script, by fence index.
        records: Each block as the cache records it.
        files: Repository files the page's process read, each with its fingerprint
            when the process first read it.
        environ: Environment variables it read, with their values.
        reads_lines: Whether its code looked at stack frames (and so at page lines).
        includes: Where each ``--8<--`` in a block stands, by (fence index, file).
        rendering: The places of the blocks whose output is being rendered (a fence
            in an output was not written on the page).
        why: Why its cache record was not used, for the log.
        seconds: Time spent running (or replaying) blocks.
    """

    path: str
    lines: list[str]
    fences: list[Fence]
    key: str
    shown: set[tuple[str, ...]] = field(default_factory=set)
    replay: Record | None = None
    html: BlockHtml | None = None
    worker: PageWorker | None = None
    sent: list[tuple[Block, float, Fence]] = field(default_factory=list)
    blocks: dict[int, ExecutedBlock] = field(default_factory=dict)
    records: list[BlockRecord] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)
    environ: dict[str, str | None] = field(default_factory=dict)
    reads_lines: bool = False
    includes: dict[tuple[int, str], str] = field(default_factory=dict)
    rendering: list[str] = field(default_factory=list)
    seconds: float = 0.0
    why: str = ""

    @property
    def lines_of_fences(self) -> list[int]:
        """The page line of each fence that runs (an md fence holding some runs nothing)."""
        return [f.line for f in self.fences if not f.container]

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
        if missing := check_platform():
            raise PluginError(missing)
        self.stamp = build_stamp(self.root, self.config.preload)
        for module in self.config.preload:
            if importlib.util.find_spec(module.split(".")[0]) is None:
                raise PluginError(
                    f"mkdocs.yml: plugins.docexec.preload names {module!r}, which is not "
                    "installed in the environment MkDocs runs in"
                )
        self.provenance = Template(
            (ASSETS / "provenance.html").read_text(), autoescape=False, keep_trailing_newline=True
        )
        if self.config.provenance and STYLESHEET not in config.extra_css:
            config.extra_css.append(STYLESHEET)
        self.mkdocstrings_paths = _mkdocstrings_paths(config, self.root)
        try:
            self.jobs = schedule.jobs(self.config.jobs)
        except ValueError as error:
            raise PluginError(f"docexec: {error}") from None
        # What this build ran before rendering (see run_ahead), and its log lines.
        self.ahead: dict[str, Record] = {}
        self.ahead_log: dict[str, str] = {}
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
        markdown_exec.formatters["md"] = _format_markdown
        markdown_exec.formatters["markdown"] = _format_markdown
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
        RenderReads.ignored = tuple(
            os.path.join(os.path.abspath(folder), "")
            for folder in (self.cache.folder, config.site_dir)
        )
        RenderReads.within = os.path.join(str(self.root), "")
        search = SearchEntries(self.cache.folder / "search.json", self.cache.environment)
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

    def on_startup(self, *, command, dirty):
        self.serving = command == "serve"

    def on_nav(self, nav, *, config, files):
        self.run_ahead(files, config)
        return nav

    # Execute first, then render ---------------------------------------------

    def run_ahead(self, files, config, shard: tuple[int, int] | None = None) -> list[str]:
        """Run every page whose record is missing or stale, before MkDocs renders any.

        Up to ``jobs`` pages run at once, the longest first by the seconds their last
        run took; their records are kept for the render (and stored in the cache), which
        then replays them. A page whose blocks cannot be foreseen from its Markdown
        (a block with included code, options in braces) is left to run as it renders,
        and so is a block the render finds that was not foreseen. When a page fails,
        the pages still running are stopped and its error is raised.

        Args:
            files: The site's files.
            config: The site's configuration.
            shard: ``(K, N)``: run only the pages of shard K of N (see
                :func:`docexec.schedule.shards`).

        Returns:
            The pages of the shard (every page that runs code, without one), in order.
        """
        serving = getattr(self, "serving", False)
        inclusion = InclusionLevel.is_in_serve if serving else InclusionLevel.is_included
        runs: list[PageRun] = []
        unreadable: dict[str, str] = {}
        for file in files.documentation_pages(inclusion=inclusion):
            path = self._page_path(file)
            raw = file.content_string
            run, _ = self._page_run(path, raw, get_data(raw)[0], config)
            if not run.lines_of_fences:
                continue
            if self.cache is not None:
                try:
                    run.replay = self.cache.lookup(path, run.key, run.lines_of_fences)
                    self.ahead[path] = run.replay  # the render replays it, not looked up twice
                except CacheMiss as miss:
                    run.why = str(miss)
                    if miss.unreadable:
                        unreadable[path] = f"{path}: {miss}; running the page"
            runs.append(run)
        took = {
            run.path: run.replay.seconds
            if run.replay is not None
            else self.cache and self.cache.recorded_seconds(run.path)
            for run in runs
        }
        chosen = set(took) if shard is None else set(schedule.shards(took, shard[1])[shard[0] - 1])
        todo = []
        for run in runs:
            if run.path in chosen and run.replay is None:
                foreseen = self._foresee(run)
                if foreseen is not None:
                    todo.append((run, foreseen))
                else:
                    log.info(
                        f"{run.path}: its blocks will run as the page renders (one of them "
                        "includes code, or has options in braces)"
                    )
        rank = {page: i for i, page in enumerate(schedule.longest_first(took))}
        todo.sort(key=lambda item: rank[item[0].path])
        for run, _ in todo:
            if run.path in unreadable:
                log.info(unreadable[run.path])  # said once: the render replays this run
        self._run_pages(todo)
        for run, foreseen in todo:
            record = self._record(run)
            self.ahead[run.path] = record
            if self.cache is not None:
                self.cache.store(record)
            why = f" ({run.why})" if run.why else ""
            self.ahead_log[run.path] = (
                f"{run.path}: ran {len(foreseen)} blocks in {run.seconds:.2f} s{why}"
            )
        return [run.path for run in runs if run.path in chosen]

    def _run_pages(self, todo: list[tuple[PageRun, list[tuple[Block, float, Fence]]]]) -> None:
        """Run each page's foreseen blocks, ``jobs`` pages at once; the first failure stops
        the rest and is raised."""
        if not todo:
            return
        PageWorker.context(tuple(self.config.preload))  # made once, before the threads
        stop = threading.Event()

        def run_page(run: PageRun, foreseen: list[tuple[Block, float, Fence]]) -> None:
            started = time.perf_counter()
            for block, timeout, span in foreseen:
                if stop.is_set():
                    return
                output, raised = self._run(run, block, timeout, span)
                run.sent.append((block, timeout, span))
                run.records.append(BlockRecord(block.signature(), block.first_line, output, raised))
            run.seconds = time.perf_counter() - started
            run.close()

        def stop_all() -> None:
            stop.set()
            for other in futures.values():
                other.close(kill=True)

        failure: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="docexec")
        futures = {pool.submit(run_page, run, foreseen): run for run, foreseen in todo}
        try:
            for future in as_completed(futures):
                error = future.exception()
                if error is not None and failure is None:
                    failure = error
                    stop_all()
        except BaseException:  # Ctrl-C: no page waits for its block to end
            stop_all()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure

    def _foresee(self, run: PageRun) -> list[tuple[Block, float, Fence]] | None:
        """The blocks the render of ``run``'s page will send, read from its Markdown as
        SuperFences and markdown-exec read them, or ``None`` where that is not sure."""
        foreseen = []
        for index, span in enumerate(run.fences):
            if span.container:
                continue
            header = run.lines[span.first]
            opening = _QUOTE_OR_SPACE.match(header).group(0)
            fence = _FENCE_HEADER.match(header[len(opening) :])
            if fence is None or fence["info"].startswith("{"):
                return None
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
                return None  # pymdownx.snippets brings the code: the render knows it
            try:
                if not markdown_exec.validator(lang, values, options, {}, None):
                    return None
                taken = take_options(kind, options, self.config.timeout)
            except (FenceError, ValueError):
                return None  # the render says what is wrong, where
            if taken.skip or taken.fence != index:
                return None
            if taken.workdir and not (self.root / taken.workdir).resolve().is_dir():
                return None
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

    def _record(self, run: PageRun) -> Record:
        """What the cache keeps of the page's run."""
        environment = self.cache.environment if self.cache is not None else ""
        files = dict(sorted(run.files.items()))
        return Record(
            page=run.path,
            fences=run.key,
            lines=run.lines_of_fences,
            environment=environment,
            files=files,
            blocks=run.records,
            seconds=round(run.seconds, 3),
            environ=run.environ,
            reads_lines=run.reads_lines,
        )

    def on_files(self, files, *, config):
        if self.config.provenance and files.get_file_from_path(STYLESHEET) is None:
            files.append(
                File.generated(config, STYLESHEET, abs_src_path=str(ASSETS / "docexec.css"))
            )
        return files

    def on_env(self, env, *, config, files):
        if self.cache is not None:
            env.bytecode_cache = jinja_cache(
                self.cache.folder, self.cache.environment, "theme", self.code
            )
        return env

    def on_serve(self, server, *, config, builder):
        poll_quickly(server)
        # The fork server starts now, importing what it preloads while the author reads
        # the first build, not when the first edit needs a page run (after a build
        # that replayed every page, none has started it yet).
        PageWorker.warm_up(tuple(self.config.preload))
        return server

    # Pages ------------------------------------------------------------------

    def _page_path(self, file) -> str:
        """The page's path relative to the repository (``docs/index.md``), else absolute."""
        source = Path(file.abs_src_path)
        try:
            return source.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return source.as_posix()

    def _page_run(self, path: str, raw: str, markdown: str, config) -> tuple[PageRun, str]:
        """The page's run, before anything ran, and its Markdown with the fences tagged."""
        at = raw.rfind(markdown) if markdown else -1
        first_line = raw[:at].count("\n") + 1 if at >= 0 else 1
        try:
            scan = scan_fences(
                markdown,
                first_line,
                languages=_markdown_exec_languages(config),
                snippet_paths=self.snippet_paths,
                root=self.root,
            )
        except FenceError as error:
            raise ExampleError(f"{error.place(path)}: {error.message}") from None
        lines = scan.lines
        runs = [f for f in scan.fences if not f.container]
        # The fences' text (files they include expanded), and where included ones stand
        # in their files (a traceback names those lines; a page without any keeps the
        # key it had before docexec ran included fences).
        texts = [
            expand_snippets("\n".join(lines[f.first : f.last + 1]), self.snippet_paths)
            for f in runs
        ]
        places = [[f.path, f.file_line] for f in runs if f.path]
        key = digest(texts, places) if places else digest(texts)
        return PageRun(path, lines, scan.fences, key, shown=scan.shown), scan.markdown

    def _lookup(self, run: PageRun) -> None:
        """Set ``run.replay`` to the page's record if it still holds, else say why not."""
        ahead = self.ahead.get(run.path)
        if ahead is not None and ahead.fences == run.key:
            run.replay = ahead  # run before rendering, in this build
            return
        if self.cache is None:
            return
        try:
            run.replay = self.cache.lookup(run.path, run.key, run.lines_of_fences)
        except CacheMiss as miss:
            run.why = str(miss)
            if miss.unreadable:
                log.info(f"{run.path}: {miss}; running the page")

    def on_page_markdown(self, markdown, *, page, config, files):
        self._close()
        path = self._page_path(page.file)
        raw = page.file.content_string
        _check_front_matter(path, raw)
        self.page, annotated = self._page_run(path, raw, markdown, config)
        if self.page.lines_of_fences:
            if self.cache is not None:
                self.page.html = BlockHtml(self.cache.path_for(path, ".html.json"), self.states)
            self._lookup(self.page)
        if self.cache is not None:
            RenderReads.start()  # what the page's rendering reads (see docexec.memo)
        return annotated

    def on_page_content(self, html, *, page, config, files):
        run = self.page
        self._close()
        if run is None or not run.blocks:
            return html
        ahead = self.ahead_log.get(run.path)
        if run.reused and ahead is not None and run.replay is self.ahead.get(run.path):
            log.info(ahead)  # run before rendering: said in page order, as it would be
        elif run.reused:
            log.info(
                f"{run.path}: reused {len(run.blocks)} blocks in {run.seconds:.2f} s "
                f"(they ran in {run.replay.seconds:.2f} s)"
            )
        else:
            why = f" ({run.why})" if run.why else ""
            log.info(f"{run.path}: ran {len(run.blocks)} blocks in {run.seconds:.2f} s{why}")
            if self.cache is not None:
                self.cache.store(self._record(run))
        if run.html is not None:
            run.html.save()
        export = self._page_export(page, run)
        stem = Path(page.file.src_uri).stem
        folder = Path(page.file.dest_uri).parent
        self.exports[(folder / stem).as_posix()] = (stem, export)
        if not self.config.provenance:
            return html
        install = install_html(self.package) if self.package else ""
        return html + self.provenance.render(stamp=self.stamp, stem=stem, install=install)

    def _page_export(self, page, run: PageRun) -> PageExport:
        export = PageExport(title=page.title or page.file.src_uri)
        # An md fence's Markdown is prose (what markdown-exec renders it to), its
        # own fence lines are not.
        hidden = {i for f in run.fences if f.container for i in (f.first, f.last)}

        def prose(start: int, end: int) -> str:
            text = "\n".join(
                line for i, line in enumerate(run.lines[start:end], start) if i not in hidden
            )
            return expand_snippets(text, self.snippet_paths)

        cursor = 0
        for index, fence in enumerate(run.fences):
            if fence.container:
                continue
            export.parts.append(prose(cursor, fence.first))
            if index in run.blocks:
                export.parts.append(run.blocks[index])
            cursor = fence.last + 1
        export.parts.append(prose(cursor, len(run.lines)))
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
        RenderReads.stop()
        page, self.page = self.page, None
        if page is not None:
            page.close(kill=kill)

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
        inside a function).
        """
        span = run.fences[index]
        home, line = (span.path, span.file_line) if span.path else (run.path, span.line)
        indent = _QUOTE_OR_SPACE.match(run.lines[span.first]).group(0)
        parts: list[tuple[str, int, str]] = []
        pending: list[str] = []
        start = line + 1
        for offset, raw in enumerate(run.lines[span.first + 1 : span.last]):
            text = raw.removeprefix(indent)
            match = SNIPPET.match(text)
            found = read_snippet(match["path"], self.snippet_paths) if match else None
            if found is None or match["indent"]:
                if not pending:
                    start = line + 1 + offset
                pending.append(text)
                continue
            if pending:
                parts.append((home, start, "\n".join(pending)))
                pending = []
            file, first_line, included = found
            try:
                path = file.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return ()
            parts.append((path, first_line, included))
            run.includes[(index, path)] = span.place(run.path, 1 + offset)
        if pending:
            parts.append((home, start, "\n".join(pending)))
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
            where = self.page.path if self.page is not None else "docexec"
            if self.page is not None:
                self.page.close(kill=True)
            raise ExampleError(f"{where}: docexec failed on a {kind} block: {error!r}") from error

    def _format(self, kind: str, kwargs: dict[str, Any]):
        run_ = self.page
        if run_ is None:  # pragma: no cover - MkDocs always calls on_page_markdown first
            raise ExampleError("docexec: a block outside any page")
        try:
            options = take_options(kind, kwargs, self.config.timeout)
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

        def account(block: Block, output: str, raised: list[int], started: float) -> None:
            run_.seconds += time.perf_counter() - started
            run_.sent.append((block, options.timeout, span))
            run_.blocks[index] = ExecutedBlock(
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
        recorded = self._recorded(run_, block) if run_.html is not None else None
        if recorded and not (RenderReads.works() and rememberable(recorded[0])):
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
            started = time.perf_counter()
            output, raised = self._replayed(run_, block)
            if output is None:
                output, raised = self._run(run_, block, options.timeout, span)
            account(block, output, raised, started)
            ran[:] = [output, raised]
            if kind == "pycon":
                return code_block("pycon", output, **shown)
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
        docstring = _docstring_place(kwargs.get("md"), code, self.root, self.mkdocstrings_paths)
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
            'read: only a whole file or a line range, --8<-- "file.md:3:9", outside '
            "fences) is not run"
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
        for earlier, timeout, span in run.sent:
            self._run(run, earlier, timeout, span)
        return None, []

    def _run(
        self, run: PageRun, block: Block, timeout: float, span: Fence
    ) -> tuple[str, list[int]]:
        """Run ``block`` in the page's process; a failure becomes an ``ExampleError``."""
        if run.worker is None:
            run.worker = PageWorker(
                self.root, run.path, self.config.seed, tuple(self.config.preload)
            )
        index = run.fences.index(span)
        try:
            result = run.worker.run(block, timeout)
        except ExampleFailure as failure:
            run.close(kill=True)
            line = failure.line if failure.line > 0 else block.first_line
            where = span.place(run.path, line - block.first_line + 1)
            if failure.path and failure.path != span.path:
                at = run.includes.get((index, failure.path), span.place(run.path))
                where = f"{failure.path}:{failure.line} (included at {at})"
            elif failure.path:
                where = span.place(run.path, failure.line - span.file_line)
            raise ExampleError(f"{where}: {failure}") from None
        except Exception as error:
            # SuperFences would swallow anything but an ExampleError and show the
            # block unrun: a broken pipe, a result that cannot be pickled...
            run.close(kill=True)
            raise ExampleError(
                f"{span.place(run.path)}: the block could not be run: {error!r}"
            ) from error
        for name, state in result.files.items():  # as the page's process first read it
            run.files.setdefault(name, state)
        for name, value in result.environ.items():
            run.environ.setdefault(name, value)
        run.reads_lines = run.reads_lines or result.reads_lines
        return result.output, list(result.raised)
