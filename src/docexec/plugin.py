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
import re
import subprocess
from pathlib import Path
from typing import Any

import markdown_exec
from markdown_exec import base_format, code_block
from mkdocs.config import config_options
from mkdocs.config.base import Config
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, get_plugin_logger
from pymdownx.superfences import SuperFencesException

from docexec.worker import Block, ExampleFailure, PageWorker

log = get_plugin_logger(__name__)

LINE_KEY = "docexec_line"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
_EXEC_ON = re.compile(r"""\bexec=["']?(?:on|yes|true|1)\b""", re.IGNORECASE)
_LANG = re.compile(r"^\{?\s*\.?(?P<lang>[\w-]+)")


class ExampleError(PluginError, SuperFencesException):
    """A block failed. Raised through SuperFences (which swallows other errors) to MkDocs."""


class DocExecConfig(Config):
    """Options under ``plugins: - docexec:`` in ``mkdocs.yml``."""

    timeout = config_options.Type((int, float), default=60)
    """Seconds any block may run, unless it sets its own ``timeout``."""
    seed = config_options.Type(int, default=0)
    """The seed every page's process starts from."""


def annotate_fences(markdown: str, first_line: int = 1) -> str:
    """Tag each executable ``python``/``pycon`` fence with the page line it opens on.

    Fences nested in another fence (a Markdown example of fence syntax) are left
    alone.

    Args:
        markdown: The page's Markdown.
        first_line: The file line of the Markdown's first line (after front matter).

    Returns:
        The Markdown, with ``docexec_line="N"`` added to each such fence.
    """
    lines = markdown.split("\n")
    open_fence: str | None = None
    for index, line in enumerate(lines):
        match = _FENCE.match(line)
        if open_fence is not None:
            if match and match.group("fence").startswith(open_fence) and not match.group("info").strip():
                open_fence = None
            continue
        if not match:
            continue
        open_fence = match.group("fence")
        info = match.group("info")
        lang = _LANG.match(info)
        if not lang or lang.group("lang") not in ("python", "py", "pycon") or not _EXEC_ON.search(info):
            continue
        tag = f'{LINE_KEY}="{first_line + index}"'
        if info.rstrip().endswith("}"):
            info = info.rstrip()[:-1].rstrip() + f" {tag} }}"
        else:
            info = f"{info.rstrip()} {tag}"
        lines[index] = match.group("indent") + match.group("fence") + info
    return "\n".join(lines)


def source_date_epoch(root: Path) -> str | None:
    """The last commit's time, for ``SOURCE_DATE_EPOCH``; ``None`` outside git."""
    try:
        result = subprocess.run(
            ["git", "log", "-1", "--format=%ct"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


class DocExecPlugin(BasePlugin[DocExecConfig]):
    """Run every executable block in a per-page process and fail loudly."""

    def on_config(self, config):
        self.root = Path(config.config_file_path).resolve().parent
        self.docs_dir = Path(config.docs_dir).resolve()
        self.worker: PageWorker | None = None
        self.page_path = ""
        markdown_exec.formatters["python"] = self._format_python
        markdown_exec.formatters["py"] = self._format_python
        markdown_exec.formatters["pycon"] = self._format_pycon
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
        return annotate_fences(markdown, first_line)

    def on_page_content(self, html, *, page, config, files):
        self._close()
        return html

    def on_post_build(self, *, config):
        self._close()

    def on_build_error(self, *, error):
        self._close()

    def _close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    # Formatters -------------------------------------------------------------

    def _format_python(self, **kwargs: Any):
        return self._format("python", kwargs)

    def _format_pycon(self, **kwargs: Any):
        return self._format("pycon", kwargs)

    def _format(self, kind: str, kwargs: dict[str, Any]):
        extra = dict(kwargs.pop("extra", {}))
        line = int(extra.pop(LINE_KEY, "0")) + 1
        raises = extra.pop("raises", None) or None
        timeout = float(extra.pop("timeout", self.config.timeout))
        kwargs["extra"] = extra

        def run(source: str, session: str | None = None, **_: Any) -> str:
            if self.worker is None:
                self.worker = PageWorker(self.root, self.page_path, self.config.seed)
            block = Block(kind, source, session or "", line, raises)
            try:
                output = self.worker.run(block, timeout)
            except ExampleFailure as failure:
                self._close()
                where = f"{self.page_path}:{failure.line if failure.line > 0 else line}"
                raise ExampleError(f"{where}: {failure}") from None
            if kind == "pycon":
                return code_block("pycon", output)
            return output

        if kind == "pycon":
            # The transcript holds the inputs, so the source is never shown twice.
            kwargs["source"] = ""
            kwargs["result"] = ""
        return base_format(language=kind, run=run, **kwargs)
