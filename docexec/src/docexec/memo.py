"""Work a rebuild would repeat, remembered: the site comes out with the same bytes, sooner.

Beside the execution cache (:mod:`docexec.cache`), which spares a page's examples,
three memories spare MkDocs and its plugins work whose result is fixed by inputs
that are checked on every build:

- **Templates.** The theme's and mkdocstrings' Jinja templates are compiled once and
  kept as bytecode (:class:`TemplateBytecode`, Jinja's file cache checking more than
  each template's source: the environment's settings, filters and tests, and the
  repository's own code), in a folder per environment key.
- **Blocks' HTML.** What a replayed block renders to is a function of its output,
  its options, the Markdown configuration and the files extensions read as pages
  render (:class:`RenderReads`): :class:`BlockHtml` keeps it per page, under a key of
  all of those (see ``DocExecPlugin._format``).
- **Search entries.** Material's search plugin parses every page's HTML into
  sections on every build; :class:`SearchEntries` keeps the entries a page gave,
  under a key of everything the plugin reads from the page (its HTML, table of
  contents, address, title and metadata), the plugin's settings and the
  environment key (which names the installed distributions).

And under ``mkdocs serve``, :func:`poll_quickly` has the file watcher look for
changes every tenth of a second instead of every half.

Each memory is a file written atomically with a checksum of what it holds; one
that cannot be read, or whose bytes were altered, is empty, never an error, and
never stale: every entry is found by its inputs, the installed distributions among
them (:func:`~docexec.cache.environment_key`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jinja2 import FileSystemBytecodeCache
from jinja2.bccache import Bucket

from docexec.cache import digest, fingerprint, installed, sealed, unsealed, write_atomically

#: Seconds between two looks at the watched folders under ``mkdocs serve``.
POLL = 0.1


def stable(value: object) -> object:
    """A JSON-able stand-in for a configuration value that is an object or a function.

    Its type's (or its own) qualified name: an extension instance a plugin added, a
    SuperFences formatter. Used only to key memories, never to rebuild the value.
    """
    named = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    return f"<{named.__module__}.{named.__qualname__}>"


def markdown_fingerprint(config: Any, environment: str, code: str) -> str:
    """What, in the site's configuration and code, can change how Markdown renders.

    ``code`` is :func:`local_code`: an extension object is keyed by its class, and the
    class by its source.
    """
    text = json.dumps(
        [config["markdown_extensions"], config["mdx_configs"], config["use_directory_urls"]],
        sort_keys=True,
        default=stable,
    )
    return digest(environment, code, text)


#: For each module, its file and its source as :func:`local_code` first saw them (which
#: is the source it runs: MkDocs loads a hook once per process, and an edit under
#: ``mkdocs serve`` takes effect only in the next process); ``None`` for a module that
#: is not a Python file of its own, or is installed. Looked at once per module: a
#: rebuild under serve goes over the same thousand modules again.
_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loaded(module: object) -> tuple[str, str] | None:
    try:
        if module in _LOADED:
            return _LOADED[module]
    except TypeError:  # a module object that takes no weak reference: not remembered
        return _source(module)
    found = _LOADED[module] = _source(module)
    return found


def _source(module: object) -> tuple[str, str] | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py") or installed(file):
        return None
    return os.path.realpath(file), fingerprint(Path(file)) or "missing"


def local_code(root: Path) -> str:
    """The source of every module this process loaded from the repository's own files.

    MkDocs hooks, a Markdown extension or a Jinja filter of the project's, docexec
    itself: what the memories' keys name by class or function, and what Jinja may
    have folded into a template's bytecode. Each is taken as it was loaded, not as
    its file is now. Installed distributions are the environment key's.
    """
    inside = os.path.join(os.path.realpath(root), "")
    sources = []
    for name, module in sorted(sys.modules.items()):
        found = _loaded(module)
        if found is not None and found[0].startswith(inside):
            sources.append((name, found[1]))
    return digest(sources)


class RenderReads:
    """The files and folders this thread opens or lists while pages render (an audit
    hook, added once), over the whole process.

    An extension that reads a file as it renders Markdown (a snippet, a glossary
    appended to every piece of it, a custom icon, a folder of icons it lists) makes a
    block's HTML depend on that file; and one that keeps what it read (in an
    ``lru_cache``) reads it only once in a process, as it renders whichever page comes
    first. So what a block's HTML is keyed on is every file read as any page rendered
    in this process so far (:meth:`seen`), each in the state it had when it was last
    read (:meth:`states`): under ``mkdocs serve``, a file changed since an extension
    read and kept it is not what the HTML was made from. Installed files are the
    environment key's.
    """

    _hooked = False
    _works = False
    _active: dict[int, set[str]] = {}
    #: Everything read while recording, in this process.
    ever: set[str] = set()
    #: The fingerprint of each of those (but ignored and installed ones) at its last read.
    _states: dict[str, str | None] = {}
    #: Folders whose files are no page's input (the memories themselves).
    ignored: tuple[str, ...] = ()
    #: The repository being built: what was read outside it (another site's files, read
    #: by an earlier build in this process) is no input of its pages, as for the
    #: execution cache.
    within: str = os.sep
    _local = threading.local()

    @classmethod
    def _audit(cls, event: str, args: tuple) -> None:
        if event == "docexec.probe":
            cls._works = True
        if not cls._active or event not in ("open", "os.listdir", "os.scandir"):
            return
        found = cls._active.get(threading.get_ident())
        path = args[0] if args else None
        if found is None or not isinstance(path, (str, bytes, os.PathLike)):
            return
        if getattr(cls._local, "busy", False):  # the fingerprint's own reads
            return
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(cls.ignored) or installed(path):
            # Never an input: not recorded at all, so that a later build (of another
            # site in this process, which ignores other folders) does not count it.
            return
        found.add(path)
        cls._local.busy = True
        try:
            cls._states[path] = fingerprint(Path(path))  # as the reader finds it
        finally:
            cls._local.busy = False

    @classmethod
    def works(cls) -> bool:
        """Add the hook once; ``False`` if another hook refused it (then it records nothing)."""
        if not cls._hooked:
            cls._hooked = True
            sys.addaudithook(cls._audit)
            sys.audit("docexec.probe")
        return cls._works

    @classmethod
    def start(cls) -> None:
        """Record what this thread reads from now on (until :meth:`stop`)."""
        if cls.works():
            cls._active.setdefault(threading.get_ident(), set())

    @classmethod
    def stop(cls) -> None:
        cls.ever |= cls._active.pop(threading.get_ident(), set())

    @classmethod
    def seen(cls) -> set[str]:
        """What was read so far, by earlier pages and by this one until now, that is
        neither installed nor in an ignored folder."""
        found = cls.ever | cls._active.get(threading.get_ident(), set())
        return {
            path
            for path in found
            if path.startswith(cls.within)
            and not path.startswith(cls.ignored)
            and not installed(path)
        }

    @classmethod
    def states(cls) -> dict[str, str | None]:
        """Each of :meth:`seen` with its :func:`~docexec.cache.fingerprint` when it was
        last read."""
        return {path: cls._states.get(path, "unknown") for path in sorted(cls.seen())}

    @classmethod
    @contextlib.contextmanager
    def paused(cls) -> Iterator[None]:
        """Not recording (while a block runs in its own process, say)."""
        me = threading.get_ident()
        outer = cls._active.pop(me, None)
        try:
            yield
        finally:
            if outer is not None:
                cls._active[me] = outer


class FileStates:
    """The :func:`~docexec.cache.fingerprint` of files now, each read once in a build
    (by docexec, not by a page's rendering: not recorded by :class:`RenderReads`)."""

    def __init__(self) -> None:
        self.known: dict[str, str | None] = {}

    def __call__(self, path: str) -> str | None:
        if path not in self.known:
            with RenderReads.paused():
                self.known[path] = fingerprint(Path(path))
        return self.known[path]


class JsonMemo:
    """A ``{key: value}`` memory in one JSON file, saved only when it changed.

    The file holds the entries with a checksum of them (:func:`~docexec.cache.sealed`):
    one whose bytes were altered after a build wrote it is empty, like one that
    cannot be read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = unsealed(json.loads(path.read_text()))["entries"]
        except (OSError, ValueError, KeyError):
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
            text = json.dumps(sealed({"entries": self.entries}))
            write_atomically(self.path, text, prefix=".memo-")
            self.saved = self.entries
        self.entries = {}


class BlockHtml(JsonMemo):
    """What each block of one page rendered to, by :func:`block_key`:
    ``[html, conversions, files]``, ``conversions`` being how many markdown-exec counted
    for it and ``files`` the state of what rendering had read as it read it
    (:meth:`RenderReads.states`), which must be each file's state now (``states``)."""

    def __init__(self, path: Path, states: FileStates) -> None:
        super().__init__(path)
        self.states = states

    def get(self, key: str) -> tuple[str, int] | None:
        found = super().get(key)
        if not (
            isinstance(found, list)
            and len(found) == 3
            and isinstance(found[0], str)
            and type(found[1]) is int
            and found[1] >= 0
            and isinstance(found[2], dict)
        ):
            return None
        for path, state in found[2].items():
            if not isinstance(path, str) or self.states(path) != state:
                return None
        return found[0], found[1]


#: Lines of Markdown that make an extension read files (mkdocstrings' ``::: name``,
#: pymdownx.snippets' ``--8<--``), seen or not: what they read is more than one file.
READS_FILES = re.compile(r"^[ \t>]*(:::|-{1,3}8<-{1,3})", re.MULTILINE)
#: An anchor (``<a id="...">``), which autorefs registers as it renders a block's output:
#: replayed, the anchor would be on the page but unknown to cross-references.
ANCHOR = re.compile(r"<a\s[^>]*\bid=")


def rememberable(output: str, html: str = "") -> bool:
    """Whether the HTML of a block that printed ``output`` (and rendered to ``html``)
    may be remembered."""
    return READS_FILES.search(output) is None and ANCHOR.search(html) is None


def block_key(
    fingerprint: str,
    count: int,
    kind: str,
    options: dict[str, Any],
    output: str,
    raised: list[int],
) -> str:
    """The key of a block's HTML: everything ``base_format`` makes it from.

    Args:
        fingerprint: :func:`markdown_fingerprint`, which covers the Markdown
            configuration (``markdown_extensions``, ``mdx_configs``,
            ``use_directory_urls``), the environment key (this format, Python, the
            platform, the installed distributions, the seed and ``PYTHONHASHSEED``)
            and the repository's own code as it was loaded (:func:`local_code`).
        count: markdown-exec's count of what it rendered before in the build, which
            the ids in the HTML are numbered from.
        kind: The fence's language as markdown-exec formats it (``python``, ``pycon``).
        options: What markdown-exec passes the formatter (``html``, ``result``,
            ``source``, ``tabs``, ``id``, ``session``, ``code``, ...), each by its value;
            ``md`` left out (the Markdown object: its configuration is in
            ``fingerprint``).
        output: What the block printed (a ``pycon`` transcript).
        raised: The statements that raised the exception the block shows.

    Not in the key but kept beside each entry and checked when it is found: the
    state of every file an extension read as pages rendered (see :class:`BlockHtml`).
    """
    shown = json.dumps(
        {name: value for name, value in options.items() if name != "md"},
        sort_keys=True,
        default=stable,
    )
    return digest(fingerprint, count, kind, shown, output, raised)


def _jinja_settings(environment: Any) -> str:
    """What, in a Jinja environment, its compiled templates depend on: the syntax, the
    options, and the filters and tests (which Jinja may apply at compile time)."""
    options = [
        getattr(environment, name, None)
        for name in (
            "block_start_string",
            "block_end_string",
            "variable_start_string",
            "variable_end_string",
            "comment_start_string",
            "comment_end_string",
            "line_statement_prefix",
            "line_comment_prefix",
            "trim_blocks",
            "lstrip_blocks",
            "newline_sequence",
            "keep_trailing_newline",
            "optimized",
            "is_async",
            "autoescape",
            "finalize",
            "undefined",
        )
    ]
    names = [
        sorted(getattr(environment, "extensions", {})),
        sorted((name, stable(value)) for name, value in environment.filters.items()),
        sorted((name, stable(value)) for name, value in environment.tests.items()),
    ]
    return json.dumps([options, names], default=stable)


class TemplateBytecode(FileSystemBytecodeCache):
    """Jinja's file cache of compiled templates, keyed on more than a template's source.

    Jinja checks the source only. Here the environment's settings, filters and tests,
    and the repository's own code (``code``, :func:`local_code`) are checked too (the
    installed distributions are in the folder's name, see :func:`jinja_cache`).

    Jinja's own file holds a pickled checksum of the source, then the marshalled code,
    which it unpickles and unmarshals as it finds them: altered bytes there would be
    unpickled (which may run anything), or loaded as other code that renders other
    HTML (a changed string constant still loads). So each file here starts with the
    SHA-256 of the rest, checked before Jinja sees a byte of it: a file that does not
    match, or cannot be read, is a template to compile; one that cannot be written is
    no error.
    """

    def __init__(self, directory: str, code: str) -> None:
        super().__init__(directory)
        self.code = code

    def get_bucket(self, environment: Any, name: str, filename: str | None, source: str) -> Bucket:
        key = self.get_cache_key(name, filename)
        checked = f"{source}\0{_jinja_settings(environment)}\0{self.code}"
        bucket = Bucket(environment, key, hashlib.sha1(checked.encode()).hexdigest())
        if _own_filters(environment):
            bucket.kept = False  # compiled every time, never stored
        else:
            self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            data = Path(self._get_cache_filename(bucket)).read_bytes()
        except OSError:
            return
        stored, payload = data[:_SHA256], data[_SHA256:]
        if hashlib.sha256(payload).digest() != stored:
            return  # altered, truncated, or not ours: compile the template
        try:
            bucket.bytecode_from_string(payload)
        except Exception:  # noqa: BLE001 - another Jinja's: compile the template
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        if getattr(bucket, "kept", True):
            payload = bucket.bytecode_to_string()
            data = hashlib.sha256(payload).digest() + payload
            write_atomically(Path(self._get_cache_filename(bucket)), data, prefix=".bytecode-")


#: The length of a SHA-256 digest, which starts each file of :class:`TemplateBytecode`.
_SHA256 = hashlib.sha256().digest_size


def _own_filters(environment: Any) -> bool:
    """Whether a filter or test of ``environment`` is the repository's (a hook's, say).

    Jinja may apply a filter to a constant as it compiles; what the result depends on
    (the site's configuration, a file) no key sees. Installed ones are trusted to be
    what their version says.
    """
    functions = [*environment.filters.values(), *environment.tests.values()]
    return any(not _installed_module(getattr(f, "__module__", None)) for f in functions)


@functools.cache
def _installed_module(name: str | None) -> bool:
    module = sys.modules.get(name or "")
    file = getattr(module, "__file__", None)
    if name in sys.builtin_module_names or (module is not None and file is None):
        return True
    return isinstance(file, str) and installed(file)


def jinja_cache(folder: Path, environment: str, name: str, code: str) -> TemplateBytecode | None:
    """A bytecode cache for one Jinja environment (``name``), or ``None`` if it cannot be made."""
    path = folder / "jinja" / environment[:16] / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return TemplateBytecode(str(path), code)


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
    """Material's search entries per page, by everything the search plugin reads and
    the environment key (the search plugin's version among the installed distributions).

    :meth:`attach` wraps one build's search index; :meth:`save` after the build.

    Args:
        path: The memory's file.
        environment: :func:`~docexec.cache.environment_key` for this build.
    """

    def __init__(self, path: Path, environment: str) -> None:
        super().__init__(path)
        self.environment = environment

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
                self.environment,
                settings,
                page.url,
                str(page.title),
                page.content,
                _toc(page.toc),
                repr(page.meta),  # YAML's: keys need not be strings, values may be dates
            )
            entries = self.get(key)
            if not _entries(entries):
                start = len(index.entries)
                add(page)
                # As the search plugin writes them (a date as its string).
                entries = json.loads(json.dumps(index.entries[start:], default=str))
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
