"""The MkDocs side of docexec: markdown-exec's ``python`` and ``pycon`` fences, made strict.

The plugin puts its own formatters in markdown-exec's formatter registry, so the
fence syntax stays markdown-exec's (```` ```pycon exec="on" session="s" ````) and
its rendering options (``source``, ``result``, ``html``, tabs) keep working. It adds:

- ``raises="Name"``: the block must raise that exception, and shows its traceback;
- ``timeout="SECONDS"``: a limit for the block (default: the plugin's ``timeout``);
- one example process per page (see :mod:`docexec.worker`);
- failures that stop the build and name ``docs/<page>.md:<line>``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import markdown_exec
from markdown_exec import base_format, code_block
from mkdocs.config import config_options
from mkdocs.config.base import Config
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.utils import write_file
from pymdownx.superfences import SuperFencesException

from docexec.export import (
    SNIPPET,
    ExecutedBlock,
    PageExport,
    expand_snippets,
    to_notebook,
    to_script,
)
from docexec.package import (
    build_wheel,
    install_html,
    notebook_install_cell,
    reader_package,
    script_install_check,
)
from docexec.worker import Block, ExampleFailure, PageWorker

log = get_plugin_logger(__name__)

LINE_KEY = "docexec_line"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_OPTION = re.compile(
    r"""\b(?P<key>exec|returncode|width)=(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s}]*))"""
)
_LANG = re.compile(r"^\{?\s*\.?(?P<lang>[\w-]+)")


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


class ExampleError(PluginError, SuperFencesException):
    """A block failed. Raised through SuperFences (which swallows other errors) to MkDocs."""


class DocExecConfig(Config):
    """Options under ``plugins: - docexec:`` in ``mkdocs.yml``."""

    timeout = config_options.Type((int, float), default=60)
    """Seconds any block may run, unless it sets its own ``timeout``."""
    seed = config_options.Type(int, default=0)
    """The seed every page's process starts from."""
    package = config_options.Optional(config_options.Type(str))
    """The project's package with the extras readers need (``name[extra]``): its wheel is
    published at the site's root, and every page that runs code says how to install it."""


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


def scan_fences(markdown: str, first_line: int = 1) -> tuple[str, list[tuple[int, int, int]]]:
    """Tag each executable ``python``/``pycon`` fence with the page line it opens on.

    Fences nested in another fence (a Markdown example of fence syntax) are left
    alone.

    Args:
        markdown: The page's Markdown.
        first_line: The file line of the Markdown's first line (after front matter).

    Returns:
        The Markdown with ``docexec_line="N"`` added to each such fence, and for
        each one ``(first_index, last_index, N)``: its span in the Markdown's lines.

    Raises:
        ValueError: A fence's ``returncode`` or ``width`` is not a whole number
            (markdown-exec would quietly show the block as plain code); the message
            starts with the fence's line.
    """
    lines = markdown.split("\n")
    spans: list[tuple[int, int, int]] = []
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
                    spans.append((opened_at, index, first_line + opened_at))
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
            or lang.group("lang") not in ("python", "py", "pycon")
            or not _executes(lang.group("lang"), options)
        ):
            continue
        for key in ("returncode", "width"):
            value = options.get(key)
            if value is not None and not re.fullmatch(r"[+-]?\d+", value.strip()):
                raise ValueError(
                    f"{first_line + index}: {key}= takes a whole number, not {value!r}"
                )
        opened_at = index
        tag = f'{LINE_KEY}="{first_line + index}"'
        if info.rstrip().endswith("}"):
            info = info.rstrip()[:-1].rstrip() + f" {tag} }}"
        else:
            info = f"{info.rstrip()} {tag}"
        lines[index] = match.group("indent") + match.group("fence") + info
    return "\n".join(lines), spans


def annotate_fences(markdown: str, first_line: int = 1) -> str:
    """The Markdown with each executable fence tagged with its page line (see ``scan_fences``)."""
    return scan_fences(markdown, first_line)[0]


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


class DocExecPlugin(BasePlugin[DocExecConfig]):
    """Run every executable block in a per-page process and fail loudly."""

    def on_config(self, config):
        self.root = Path(config.config_file_path).resolve().parent
        self.docs_dir = Path(config.docs_dir).resolve()
        self.worker: PageWorker | None = None
        self.page_path = ""
        self.blocks: dict[int, ExecutedBlock] = {}
        self.spans: list[tuple[int, int, int]] = []
        self.lines: list[str] = []
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
        os.environ["PYTHONHASHSEED"] = "0"
        if "SOURCE_DATE_EPOCH" not in os.environ:
            epoch = source_date_epoch(self.root)
            if epoch:
                os.environ["SOURCE_DATE_EPOCH"] = epoch
        return config

    # Pages ------------------------------------------------------------------

    def on_page_markdown(self, markdown, *, page, config, files):
        self._close()
        source = Path(page.file.abs_src_path)
        try:
            self.page_path = source.resolve().relative_to(self.root).as_posix()
        except ValueError:
            self.page_path = source.as_posix()
        raw = page.file.content_string
        at = raw.rfind(markdown) if markdown else -1
        first_line = raw[:at].count("\n") + 1 if at >= 0 else 1
        self.blocks = {}
        self.seconds = 0.0
        self.lines = markdown.split("\n")
        try:
            annotated, self.spans = scan_fences(markdown, first_line)
        except ValueError as error:
            raise ExampleError(f"{self.page_path}:{error}") from None
        return annotated

    def on_page_content(self, html, *, page, config, files):
        self._close()
        if not self.blocks:
            return html
        log.info(f"{self.page_path}: ran {len(self.blocks)} blocks in {self.seconds:.2f} s")
        export = self._page_export(page)
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

    def _page_export(self, page) -> PageExport:
        export = PageExport(title=page.title or page.file.src_uri)
        cursor = 0
        for first, last, line in self.spans:
            prose = "\n".join(self.lines[cursor:first])
            export.parts.append(expand_snippets(prose, self.snippet_paths))
            if line + 1 in self.blocks:
                export.parts.append(self.blocks[line + 1])
            cursor = last + 1
        export.parts.append(expand_snippets("\n".join(self.lines[cursor:]), self.snippet_paths))
        return export

    def on_post_build(self, *, config):
        self._close()
        for path, (_stem, export) in sorted(self.exports.items()):
            stamp = f"Generated from the page of the same name; its outputs were built with {self.stamp}."
            notebook = to_notebook(
                export, stamp, self.package and notebook_install_cell(self.package)
            )
            script = to_script(export, stamp, self.package and script_install_check(self.package))
            write_file(notebook.encode(), os.path.join(config.site_dir, path + ".ipynb"))
            write_file(script.encode(), os.path.join(config.site_dir, path + ".py"))
        self.exports = {}
        if self.package:
            build_wheel(self.root, Path(config.site_dir))

    def on_build_error(self, *, error):
        self._close()

    def _close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def _included_parts(self, fence: int, source: str) -> tuple[tuple[str, int, str], ...]:
        """Split a block that includes files into page parts and file parts.

        Each ``--8<-- "file"`` line of the fence's own text (before pymdownx.snippets
        expanded it) becomes a part with the file's path and lines, the rest parts
        with the page's. Returns ``()`` (run the block as one piece, at page lines)
        when the block includes nothing, or when the parts do not add up to the code
        that ran or do not each compile on their own (an include inside a function).
        """
        span = next((s for s in self.spans if s[2] == fence), None)
        if span is None:
            return ()
        first, last, _ = span
        opening = self.lines[first]
        indent = opening[: len(opening) - len(opening.lstrip())]
        parts: list[tuple[str, int, str]] = []
        pending: list[str] = []
        start = fence + 1
        for offset, raw in enumerate(self.lines[first + 1 : last]):
            text = raw.removeprefix(indent)
            match = SNIPPET.match(text)
            found = None
            if match:
                found = next(
                    (
                        b / match["path"]
                        for b in self.snippet_paths
                        if (b / match["path"]).is_file()
                    ),
                    None,
                )
            if found is None or match["indent"]:
                if not pending:
                    start = fence + 1 + offset
                pending.append(text)
                continue
            if pending:
                parts.append((self.page_path, start, "\n".join(pending)))
                pending = []
            try:
                path = found.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return ()
            parts.append((path, 1, found.read_text().rstrip("\n")))
        if pending:
            parts.append((self.page_path, start, "\n".join(pending)))
        if all(path == self.page_path for path, _line, _text in parts):
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
        extra = dict(kwargs.pop("extra", {}))
        fence = int(extra.pop(LINE_KEY, "0"))
        line = fence + 1
        where = f"{self.page_path}:{fence}"
        raises = extra.pop("raises", None) or None
        if raises is not None and not raises.isidentifier():
            raise ExampleError(f"{where}: raises= takes an exception's name, not {raises!r}")
        try:
            timeout = float(extra.pop("timeout", self.config.timeout))
        except ValueError:
            raise ExampleError(f"{where}: timeout= takes a number of seconds") from None
        if not timeout > 0:
            raise ExampleError(f"{where}: timeout= must be more than 0 seconds")
        unknown = sorted(set(extra) - KNOWN_EXTRA)
        if unknown:
            raise ExampleError(
                f"{where}: unknown option {unknown[0]!r} on a {kind} block "
                f"(markdown-exec's and docexec's are: {', '.join(sorted(KNOWN_OPTIONS))})"
            )
        kwargs["extra"] = extra
        if kind == "pycon":
            # The transcript holds the inputs, so the source is never shown twice.
            kwargs["source"] = ""
            kwargs["result"] = ""
        elif raises and not kwargs.get("html") and not kwargs.get("result"):
            # A traceback read as Markdown loses its indentation and its <module>:
            # show the block's output as a traceback instead.
            kwargs["result"] = "pytb"
        # What the page makes of a python block's printed output (markdown-exec's rules).
        renders = "html" if kwargs.get("html") else "text" if kwargs.get("result") else "markdown"

        workdir = kwargs.get("workdir") or ""
        if workdir and not (self.root / workdir).is_dir():
            raise ExampleError(f"{where}: workdir={workdir!r} is no folder of {self.root}")

        def run(source: str, session: str | None = None, **_: Any) -> str:
            if self.worker is None:
                self.worker = PageWorker(self.root, self.page_path, self.config.seed)
            parts = self._included_parts(fence, source) if kind == "python" else ()
            block = Block(kind, source, session or "", line, raises, workdir, parts)
            started = time.perf_counter()
            try:
                result = self.worker.run(block, timeout)
            except ExampleFailure as failure:
                self._close()
                where = f"{self.page_path}:{failure.line if failure.line > 0 else line}"
                if failure.path:
                    where = f"{failure.path}:{failure.line} (included at {self.page_path}:{fence})"
                raise ExampleError(f"{where}: {failure}") from None
            except Exception as error:
                # SuperFences would swallow anything but an ExampleError and show the
                # block unrun: a broken pipe, a result that cannot be pickled...
                self._close()
                raise ExampleError(
                    f"{self.page_path}:{fence}: the block could not be run: {error!r}"
                ) from error
            self.seconds += time.perf_counter() - started
            self.blocks[line] = ExecutedBlock(kind, source, raises, result.raised, renders)
            if kind == "pycon":
                return code_block("pycon", result.output)
            return result.output

        return base_format(language=kind, run=run, **kwargs)
