"""Work a rebuild would repeat, remembered: the site comes out with the same bytes, sooner.

Beside the execution cache (:mod:`docexec.cache`), which spares a page's examples,
three memories spare MkDocs and its plugins work whose result is fixed by inputs
that are checked on every build:

- **Templates.** The theme's and mkdocstrings' Jinja templates are compiled once and
  kept as bytecode (Jinja's own :class:`~jinja2.FileSystemBytecodeCache`, which
  compares each template's source with the one the bytecode was made from), in a
  folder per environment key, so another Jinja never reads them.
- **Blocks' HTML.** What a replayed block renders to is a function of its output,
  its options and the Markdown configuration: :class:`BlockHtml` keeps it per page,
  under a key of all of those (see ``DocExecPlugin._format``).
- **Search entries.** Material's search plugin parses every page's HTML into
  sections on every build; :class:`SearchEntries` keeps the entries a page gave,
  under a key of everything the plugin reads from the page (its HTML, table of
  contents, address, title and metadata) and the plugin's settings.

And under ``mkdocs serve``, :func:`poll_quickly` has the file watcher look for
changes every tenth of a second instead of every half.

Each memory is a JSON file written atomically; one that cannot be read is
empty, never an error, and never stale: every entry is found by its inputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import FileSystemBytecodeCache

from docexec.cache import digest, write_atomically

#: Seconds between two looks at the watched folders under ``mkdocs serve``.
POLL = 0.1


def stable(value: object) -> object:
    """A JSON-able stand-in for a configuration value that is an object or a function.

    Its type's (or its own) qualified name: an extension instance a plugin added, a
    SuperFences formatter. Used only to key memories, never to rebuild the value.
    """
    named = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    return f"<{named.__module__}.{named.__qualname__}>"


def markdown_fingerprint(config: Any, environment: str) -> str:
    """What, in the site's configuration, can change how a piece of Markdown renders."""
    text = json.dumps(
        [config["markdown_extensions"], config["mdx_configs"], config["use_directory_urls"]],
        sort_keys=True,
        default=stable,
    )
    return digest(environment, text)


class JsonMemo:
    """A ``{key: value}`` memory in one JSON file, saved only when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        self.saved: dict[str, Any] = data if isinstance(data, dict) else {}
        self.entries: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.saved.get(key)

    def put(self, key: str, value: Any) -> None:
        self.entries[key] = value

    def save(self) -> None:
        """Keep what this build put, and only that: entries no build asks for are dropped."""
        if self.entries != self.saved:
            write_atomically(self.path, json.dumps(self.entries), prefix=".memo-")
            self.saved = self.entries
        self.entries = {}


class BlockHtml(JsonMemo):
    """What each block of one page rendered to, by :func:`block_key`: ``[html, conversions]``,
    ``conversions`` being how many markdown-exec counted for it."""

    def get(self, key: str) -> tuple[str, int] | None:
        found = super().get(key)
        if (
            isinstance(found, list)
            and len(found) == 2
            and isinstance(found[0], str)
            and type(found[1]) is int
            and found[1] >= 0
        ):
            return found[0], found[1]
        return None


#: Lines of Markdown that make an extension read files (mkdocstrings' ``::: name``,
#: pymdownx.snippets' ``--8<--``): an output that holds one renders to what those files
#: hold, which no key sees, so it is always rendered.
READS_FILES = re.compile(r"^[ \t>]*(:::|-{1,3}8<-{1,3})", re.MULTILINE)


def rememberable(output: str) -> bool:
    """Whether the HTML of a block that printed ``output`` may be remembered."""
    return READS_FILES.search(output) is None


def block_key(
    fingerprint: str,
    count: int,
    kind: str,
    options: dict[str, Any],
    output: str,
    raised: list[int],
) -> str:
    """The key of a block's HTML: everything ``base_format`` makes it from.

    ``count`` is markdown-exec's count of what it rendered before in the build, which
    the ids in the HTML are numbered from.
    """
    shown = json.dumps(
        {name: value for name, value in options.items() if name != "md"},
        sort_keys=True,
        default=stable,
    )
    return digest(fingerprint, count, kind, shown, output, raised)


def jinja_cache(folder: Path, environment: str, name: str) -> FileSystemBytecodeCache | None:
    """A bytecode cache for one Jinja environment (``name``), or ``None`` if it cannot be made."""
    path = folder / "jinja" / environment[:16] / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return FileSystemBytecodeCache(str(path))


def _entries(value: object) -> bool:
    """Whether ``value`` is a list of search entries as the search plugin makes them."""
    return isinstance(value, list) and all(
        isinstance(entry, dict)
        and isinstance(entry.get("location"), str)
        and isinstance(entry.get("title"), str)
        and isinstance(entry.get("text"), str)
        for entry in value
    )


def _toc(items: Any) -> list:
    return [
        [item.id, item.url, item.title, item.level, _toc(item.children)] for item in items or []
    ]


class SearchEntries(JsonMemo):
    """Material's search entries per page, by everything the search plugin reads.

    :meth:`attach` wraps one build's search index; :meth:`save` after the build.
    """

    def attach(self, index: Any) -> bool:
        """Remember and replay ``index``'s entries; ``False`` if it is not one we know.

        Known: mkdocs-material's ``SearchIndex``, whose ``add_entry_from_context(page)``
        appends that page's entries (dicts of strings) to its ``entries`` list.
        """
        add: Callable[[Any], None] | None = getattr(index, "add_entry_from_context", None)
        if add is None or not isinstance(getattr(index, "entries", None), list):
            return False
        if not type(index).__module__.startswith("material."):
            return False
        settings = json.dumps(getattr(index, "config", {}), sort_keys=True, default=stable)

        def add_entry_from_context(page: Any) -> None:
            key = digest(
                settings,
                page.url,
                str(page.title),
                page.content,
                _toc(page.toc),
                json.dumps(page.meta, sort_keys=True, default=str),
            )
            entries = self.get(key)
            if not _entries(entries):
                start = len(index.entries)
                add(page)
                entries = json.loads(json.dumps(index.entries[start:]))
            else:
                index.entries.extend(json.loads(json.dumps(entries)))
            self.put(key, entries)

        index.add_entry_from_context = add_entry_from_context
        return True


def poll_quickly(server: Any) -> None:
    """Have ``mkdocs serve``'s file watcher look every :data:`POLL` seconds.

    MkDocs watches with watchdog's polling observer every half second: on average a
    quarter of a second between an author's save and the rebuild. Looking at this
    site's few dozen files takes about a millisecond. Done before the observer
    starts, on its watches and on any added later; left alone if it is not the
    polling observer this was written for.
    """
    observer = getattr(server, "observer", None)
    emitters = getattr(observer, "emitters", None)
    if observer is None or emitters is None or not hasattr(observer, "_timeout"):
        return
    if type(observer).__name__ != "PollingObserver" or observer.is_alive():
        return
    observer._timeout = POLL
    for emitter in emitters:
        if hasattr(emitter, "_timeout"):
            emitter._timeout = POLL
