"""Small MkDocs sites with docexec, as the tests and the benchmarks build them.

``write_site(root, pages, **options)`` writes ``root``/mkdocs.yml (see :func:`config`
for the options) and the pages under the docs folder. ``build_site`` writes one and
builds it in this process (``conftest.build_in_process``); ``build_command`` runs
``mkdocs build --strict`` as a command, for what only a new process shows.

The benchmarks import this module too (they put tests/ on ``sys.path``), so that a
benchmark's site is written as the tests' are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from conftest import BuildResult, build_in_process

SUPERFENCES = "pymdownx.superfences"
TABBED = {"pymdownx.tabbed": {"alternate_style": True}}

#: A guard against a hung build, not a measurement.
TIMEOUT = 300


class PythonName(str):
    """A ``!!python/name:`` value in mkdocs.yml (Material's emoji functions)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    PythonName,
    lambda dumper, name: dumper.represent_scalar(f"tag:yaml.org,2002:python/name:{name}", ""),
)


def snippets(*base_path: str) -> dict[str, object]:
    """The ``pymdownx.snippets`` entry including from ``base_path``; a missing file fails."""
    return {"pymdownx.snippets": {"base_path": list(base_path), "check_paths": True}}


def mkdocstrings(*paths: str) -> dict[str, object]:
    """The ``mkdocstrings`` plugin entry, its python handler finding modules in ``paths``."""
    return {"mkdocstrings": {"handlers": {"python": {"paths": list(paths)}}}}


def config(
    *,
    docexec: bool = True,
    timeout: float | None = None,
    seed: int | None = None,
    cache: bool | None = None,
    cache_dir: str | None = None,
    jobs: int | None = None,
    provenance: bool | None = None,
    preload: Sequence[str] = ("torch",),
    languages: Sequence[str] | None = ("python", "pycon"),
    before_docexec: Sequence[object] = (),
    after_markdown_exec: Sequence[object] = (),
    markdown_extensions: Sequence[object] = (SUPERFENCES,),
    **settings: object,
) -> dict[str, object]:
    """A strict site's mkdocs.yml, as a mapping: docexec, then markdown-exec.

    Args:
        docexec: whether docexec is among the plugins (without it, markdown-exec alone).
        timeout: with ``seed``, ``cache``, ``cache_dir``, ``jobs``, ``provenance`` and ``preload``,
            docexec's options, each written only when given (``preload`` when not
            empty; torch by default: these tests' pages import it, as the site's do).
        languages: markdown-exec's ``languages``; ``None`` for its default (all).
        before_docexec: plugins listed before docexec (``search``, ``autorefs``).
        after_markdown_exec: plugins listed after markdown-exec (``mkdocstrings``).
        markdown_extensions: the whole list, in its order.
        settings: top-level keys (``watch``, ``hooks``, ``extra``, ``docs_dir``,
            ``theme``, ...), which replace the defaults of the same name.
    """
    options = {
        "timeout": timeout,
        "seed": seed,
        "cache": cache,
        "cache_dir": cache_dir,
        "jobs": jobs,
        "provenance": provenance,
        "preload": list(preload) or None,
    }
    options = {name: value for name, value in options.items() if value is not None}
    plugins = list(before_docexec)
    if docexec:
        plugins.append({"docexec": options} if options else "docexec")
    if languages is None:
        plugins.append("markdown-exec")
    else:
        plugins.append({"markdown-exec": {"languages": list(languages)}})
    plugins.extend(after_markdown_exec)
    defaults = {"site_name": "docexec test", "strict": True, "theme": "mkdocs"}
    return {
        **defaults,
        "plugins": plugins,
        "markdown_extensions": list(markdown_extensions),
        **settings,
    }


def write_config(root: Path, **options: object) -> Path:
    """Write ``root``/mkdocs.yml from ``options`` (those of :func:`config`); return it."""
    root.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(config(**options), Dumper=_Dumper, sort_keys=False, default_flow_style=None)
    path = root / "mkdocs.yml"
    path.write_text(text)
    return path


def write_site(root: Path, pages: Mapping[str, str], **options: object) -> Path:
    """Write ``root``/mkdocs.yml and ``pages`` (path in the docs folder -> text); return ``root``.

    Each page's text is dedented, so that a test may write it indented.
    """
    write_config(root, **options)
    docs = root / str(options.get("docs_dir", "docs"))
    for name, text in pages.items():
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def build_site(
    root: Path,
    pages: Mapping[str, str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    **options: object,
) -> BuildResult:
    """Write the site (:func:`write_site`) and build it in this process, from ``cwd``."""
    write_site(root, pages, **options)
    return build_in_process(root, env, cwd=cwd)


def build_command(
    root: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` on ``root`` as a command, with ``flags`` and ``env`` added."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", SOURCE_DATE_EPOCH="1700000000", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", *flags],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
    )
