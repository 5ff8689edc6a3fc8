"""The MkDocs side of docexec: its options, and the hooks that drive a build.

The plugin makes an :class:`~docexec.adapter.Adapter` from its options and puts the
adapter's formatters in markdown-exec's formatter registry (see :mod:`docexec.adapter`
for what they add to markdown-exec's fences). Around it, the hooks:

- run every page whose record is missing or stale ahead of the render, up to ``jobs``
  at once (:meth:`DocExecPlugin.run_ahead`; see :mod:`docexec.schedule`), the render
  starting on the core the last of them leave idle (see :mod:`docexec.ahead`);
- open each page's run as MkDocs hands over its Markdown (:mod:`docexec.page`), with
  the record it replays (see :mod:`docexec.cache`), and close it when its HTML is done;
- keep the memories beside the execution cache (see :mod:`docexec.memo`);
- end each page that runs code with the provenance note, and write its notebook and
  script (see :mod:`docexec.export`) and the readers' wheel (:mod:`docexec.package`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
from pathlib import Path

import markdown_exec
import yaml
from jinja2 import Template
from markdown_exec import MarkdownConverter
from mkdocs.config import config_options
from mkdocs.config.base import Config
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.structure.files import File, InclusionLevel
from mkdocs.utils import write_file
from mkdocs.utils.meta import YAML_RE, get_data

from docexec import schedule
from docexec.adapter import Adapter, markdown_exec_languages, mkdocstrings_paths
from docexec.ahead import PagesAhead
from docexec.cache import CacheMiss, ExecutionCache, Record, environment_key
from docexec.export import PageExport, to_notebook, to_script
from docexec.memo import (
    BlockHtml,
    FileStates,
    RenderReads,
    SearchEntries,
    jinja_cache,
    local_code,
    markdown_fingerprint,
    poll_quickly,
)
from docexec.package import (
    ReaderWheel,
    install_html,
    notebook_install_cell,
    reader_package,
    script_install_check,
)
from docexec.page import PageRun
from docexec.processes import check_platform
from docexec.snippets import expand_snippets
from docexec.stamp import build_stamp, source_date_epoch
from docexec.start import HASH_SEED
from docexec.worker import PageWorker, socket_problem

log = get_plugin_logger(__name__)

#: markdown-exec's formatters as it registers them: docexec puts its own in their place
#: for a build, and puts these back when MkDocs shuts down (another site built later in
#: the same process, without docexec, gets markdown-exec's).
MARKDOWN_EXEC_FORMATTERS = dict(markdown_exec.formatters)


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


#: The note that ends every page that runs code, and its stylesheet, shipped with docexec.
ASSETS = Path(__file__).resolve().parent / "assets"
STYLESHEET = "assets/docexec.css"


def _cache_wanted(value: str) -> bool:
    """Whether ``DOCEXEC_CACHE`` leaves the cache on: unset, empty, 1, true, yes or on;
    0, false, no or off turn it off.

    Raises:
        PluginError: Any other value.
    """
    word = value.strip().lower()
    if word in ("", "1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise PluginError(
        f"DOCEXEC_CACHE={value!r}: 0, false, no or off turns the cache off; 1, true, yes "
        "or on leaves it on"
    )


class DocExecPlugin(BasePlugin[DocExecConfig]):
    """Run every executable block in a per-page process and fail loudly."""

    #: docexec's formatters and the page they run, made in ``on_config``.
    adapter: Adapter | None = None
    #: The readers' wheel, from ``on_nav`` (its build runs beside the pages') to ``on_post_build``.
    wheel: ReaderWheel | None = None

    def on_config(self, config):
        timeout = self.config.timeout
        if not (timeout > 0 and math.isfinite(timeout)):
            raise PluginError(
                f"mkdocs.yml: plugins.docexec.timeout must be a finite number of seconds "
                f"more than 0, not {timeout!r}"
            )
        self.root = Path(config.config_file_path).resolve().parent
        self.exports: dict[str, tuple[str, PageExport]] = {}
        if missing := check_platform():
            raise PluginError(missing)
        if problem := socket_problem():
            raise PluginError(f"docexec: {problem}")
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
        try:
            self.jobs = schedule.jobs(self.config.jobs)
        except ValueError as error:
            raise PluginError(f"docexec: {error}") from None
        # What this build ran before rendering (see run_ahead), and its log lines.
        self.ahead: dict[str, Record] = {}
        self.ahead_log: dict[str, str] = {}
        self.running: PagesAhead | None = None
        try:
            self.package = self.config.package and reader_package(
                self.root, self.config.package, config.site_url or ""
            )
        except ValueError as error:
            raise PluginError(str(error)) from None
        snippet_config = config.mdx_configs.get("pymdownx.snippets", {})
        snippets = snippet_config.get("base_path", ["."])
        if isinstance(snippets, str):
            snippets = [snippets]
        self.adapter = Adapter(
            self.root,
            timeout=timeout,
            seed=self.config.seed,
            preload=self.config.preload,
            snippet_paths=[self.root / path for path in snippets],
            snippet_dedent=bool(snippet_config.get("dedent_subsections", False)),
            docstring_paths=mkdocstrings_paths(config, self.root),
        )
        markdown_exec.formatters.update(self.adapter.formatters)
        # str/bytes hashes are salted per process unless this is set: set ordering
        # would change from build to build. The example processes inherit it.
        os.environ["PYTHONHASHSEED"] = HASH_SEED
        if "SOURCE_DATE_EPOCH" not in os.environ:
            epoch = source_date_epoch(self.root)
            if epoch:
                os.environ["SOURCE_DATE_EPOCH"] = epoch
        self.cache: ExecutionCache | None = None
        if self.config.cache and _cache_wanted(os.environ.get("DOCEXEC_CACHE", "")):
            folder = (self.root / self.config.cache_dir).resolve()
            for option in ("docs_dir", "site_dir"):
                inside = Path(config[option]).resolve()
                if folder == inside or inside in folder.parents:
                    raise PluginError(
                        f"{os.path.basename(config.config_file_path)}: plugins.docexec.cache_dir "
                        f"{self.config.cache_dir!r} is "
                        f"inside {option} ({config[option]}), where MkDocs would "
                        + ("publish the cache" if option == "docs_dir" else "wipe it")
                        + ": choose a folder outside it (the default is .cache/docexec)"
                    )
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
        # Every plugin has configured itself (markdown-exec has added its fences,
        # mkdocstrings its extension), and the hooks are loaded.
        superfences = config.mdx_configs.get("pymdownx.superfences") or {}
        self.adapter.languages = markdown_exec_languages(superfences.get("custom_fences") or [])
        if self.cache is None:
            return
        self.code = local_code(self.root)
        self.adapter.markdown_key = markdown_fingerprint(config, self.cache.environment, self.code)
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
        self._stop_wheel()
        if self.package:
            # Its build, if it has to be built, runs from now on, beside the pages'.
            wheels = self.cache.folder / "wheels" if self.cache is not None else None
            try:
                self.wheel = ReaderWheel(self.root, wheels)
            except RuntimeError as error:
                raise PluginError(f"docexec: {error}") from None
        self.run_ahead(files, config, wait=False)
        return nav

    def _stop_wheel(self) -> None:
        wheel, self.wheel = self.wheel, None
        if wheel is not None:
            wheel.stop()

    # Execute first, then render ---------------------------------------------

    def run_ahead(
        self, files, config, shard: tuple[int, int] | None = None, wait: bool = True
    ) -> list[str]:
        """Run every page whose record is missing or stale, before MkDocs renders any.

        Up to ``jobs`` pages run at once, in the order
        :func:`~docexec.schedule.longest_first` gives (pages never run, the most code
        first; then the longest by the seconds their last run took); their records are
        kept for the render (and stored in the cache), which then replays them. A
        page whose blocks cannot be foreseen from its Markdown (a block with included
        code, options in braces) is left to run as it renders, and so is a block the
        render finds that was not foreseen. When a page fails, the pages still running
        are stopped and its error is raised.

        A build does not wait for the last pages (see :mod:`docexec.ahead`): once a
        core has no page left to start, MkDocs renders on it, and waits for each page
        still running as it reaches it (:meth:`_ran_ahead`).

        Args:
            files: The site's files.
            config: The site's configuration.
            shard: ``(K, N)``: run only the pages of shard K of N (see
                :func:`docexec.schedule.shards`).
            wait: Return when every page has run (else once a core is idle).

        Returns:
            The pages of the shard (every page that runs code, without one), in order.
        """
        if changed := PageWorker.renew_if_stale():
            # A module it preloaded would run as it was: pages start from a new server.
            where = os.path.relpath(changed[0], self.root)
            more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
            log.info(f"{where}{more} changed since the fork server imported it: starting anew")
        serving = getattr(self, "serving", False)
        inclusion = InclusionLevel.is_in_serve if serving else InclusionLevel.is_included
        runs: list[PageRun] = []
        unreadable: dict[str, str] = {}
        seen: dict[str, str | None] = {}  # files' states, read once in this pass
        for file in files.documentation_pages(inclusion=inclusion):
            path = self._page_path(file)
            raw = file.content_string
            run, _ = self.adapter.scan(path, raw, get_data(raw)[0])
            if not run.lines_of_fences:
                continue
            if self.cache is not None:
                try:
                    run.replay = self.cache.lookup(path, run.key, run.lines_of_fences, seen)
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
                foreseen = self.adapter.foresee(run)
                if foreseen is not None:
                    todo.append((run, foreseen))
                else:
                    log.info(
                        f"{run.path}: its blocks will run as the page renders "
                        f"({self.adapter.unforeseen})"
                    )
        lines = {
            run.path: sum(len(block.source.splitlines()) for block, _timeout, _fence in foreseen)
            for run, foreseen in todo
        }
        rank = {page: i for i, page in enumerate(schedule.longest_first(took, lines))}
        todo.sort(key=lambda item: rank[item[0].path])
        for run, _ in todo:
            if run.path in unreadable:
                log.info(unreadable[run.path])  # said once: the render replays this run
        if todo:
            # Made once, and the server started here, in the main thread (see
            # docexec.worker._start_fork_server), before the threads.
            PageWorker.warm_up(tuple(self.config.preload))
        self.running = PagesAhead(todo, self.jobs)
        if wait:
            self.running.wait_for_all()
            for run, _ in todo:
                self._ran_ahead(run.path)
        else:
            self.running.wait_for_idle_core()
        return [run.path for run in runs if run.path in chosen]

    def _ran_ahead(self, path: str) -> None:
        """Wait for ``path``'s run ahead of the render, if it has one, and keep its record
        for the render; raise the first failure of any page run ahead."""
        done = self.running.wait_for(path) if self.running is not None else None
        if done is None:
            return
        run, foreseen = done
        record = self._record(run)
        self.ahead[path] = record
        if self.cache is not None:
            self.cache.store(record)
        why = f" ({run.why})" if run.why else ""
        self.ahead_log[path] = f"{path}: ran {len(foreseen)} blocks in {run.seconds:.2f} s{why}"

    def _stop_running(self) -> None:
        """Stop the pages still running ahead of the render, if any, and keep the records
        of those that ran to their end but were not rendered (another page failed, or
        the build was interrupted): the next build replays them."""
        running, self.running = getattr(self, "running", None), None
        if running is None:
            return
        running.stop()
        if self.cache is not None:
            for run, _foreseen in running.completed():
                self.cache.store(self._record(run))

    def _record(self, run: PageRun) -> Record:
        """What the cache keeps of the page's run."""
        return run.record(self.cache.environment if self.cache is not None else "")

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

    def on_page_markdown(self, markdown, *, page, config, files):
        self._close()
        path = self._page_path(page.file)
        self._ran_ahead(path)
        raw = page.file.content_string
        _check_front_matter(path, raw)
        run, annotated = self.adapter.scan(path, raw, markdown)
        if run.lines_of_fences:
            if self.cache is not None:
                run.html = BlockHtml(self.cache.path_for(path, ".html.json"), self.states)
            run.lookup(self.cache, self.ahead.get(path))
        self.adapter.open(run)
        if self.cache is not None:
            RenderReads.start()  # what the page's rendering reads (see docexec.memo)
        return annotated

    def on_page_content(self, html, *, page, config, files):
        run = self._close()
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
            return expand_snippets(text, self.adapter.snippet_paths, self.adapter.snippet_dedent)

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
        if self.running is not None:
            self.running.wait_for_all()  # a page the render did not reach (none, but)
            self.running = None
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
        wheel, self.wheel = self.wheel, None
        if wheel is not None:
            try:
                wheel.publish(Path(config.site_dir))
            except RuntimeError as error:
                raise PluginError(f"docexec: {error}") from None

    def on_build_error(self, *, error):
        self._stop_running()
        self._stop_wheel()
        self._close(kill=True)

    def on_shutdown(self):
        # Ctrl-C while the render waited on no page: the pages running ahead end too.
        self._stop_running()
        self._stop_wheel()
        adapter = getattr(self, "adapter", None)
        if adapter is not None:
            for language in adapter.formatters:
                if language in MARKDOWN_EXEC_FORMATTERS:
                    markdown_exec.formatters[language] = MARKDOWN_EXEC_FORMATTERS[language]

    def _close(self, kill: bool = False) -> PageRun | None:
        """End the page being rendered, if any, and return its run."""
        RenderReads.stop()
        if self.adapter is None:  # on_config failed
            return None
        return self.adapter.close(kill=kill)
