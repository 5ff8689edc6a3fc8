"""docexec's memory: what each page's examples printed, and everything it depended on.

When a page's examples have run, :class:`ExecutionCache` stores one record for it:
the outputs of its blocks, in order, under a key made of

- the page's executed fences (their text and options, included files expanded);
- the environment (:func:`environment_key`): this format, the interpreter, the
  installed distributions and their versions, and the plugin settings that change
  output (the seed);
- every file inside the repository that the page's process imported, opened or
  listed while it ran, by its content (or names, or absence) at the moment the
  process first read it: fingerprinted in the process, see :mod:`docexec.worker`;
- every environment variable the page's process read, with its value.

On the next build a page whose key still matches is not run: its record is
replayed. Each record carries a checksum of its content (:func:`sealed`): a record
that cannot be read (truncated, corrupt, another format) or whose bytes were altered
is a miss, logged once; a page that failed is never recorded. Records are written to a
temporary file and renamed into place, so a reader (another build at the same
time) sees a whole record or none.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath

#: Bumped whenever a record's meaning changes; older records are then misses.
FORMAT = 4


def digest(*parts: object) -> str:
    """A short, stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


#: The field of a stored memory that holds :func:`sealed`'s checksum.
CHECKSUM = "checksum"


def _checksum(body: dict) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sealed(data: dict) -> dict:
    """``data`` with a checksum of its content, which :func:`unsealed` checks.

    The checksum is over the JSON text of ``data`` as it will be loaded back (a tuple
    as a list, a key as a string), dumped with sorted keys: any change to a value
    (into another value of the right type, even) no longer matches.
    """
    body = json.loads(json.dumps({k: v for k, v in data.items() if k != CHECKSUM}))
    return {**body, CHECKSUM: _checksum(body)}


def unsealed(data: object) -> dict:
    """``data`` as :func:`sealed` stored it, without its checksum.

    Raises:
        ValueError: It is no object with a checksum, or the checksum does not match
            (the bytes were altered after the build wrote them).
    """
    if not isinstance(data, dict) or not isinstance(data.get(CHECKSUM), str):
        raise ValueError("it has no checksum")
    body = {name: value for name, value in data.items() if name != CHECKSUM}
    if _checksum(body) != data[CHECKSUM]:
        raise ValueError("its checksum does not match: it was altered")
    return body


# What is installed ---------------------------------------------------------
#
# One definition, used by every key and by every look at a path: the interpreter's
# own folders and the distributions installed for it. Whatever lies in them is
# covered by the environment key (the standard library by Python's version, the
# rest by the distributions' versions), never by a file's content.


def site_folders() -> list[str]:
    """Where distributions are installed for this interpreter (its venv's site-packages).

    Not all of ``sys.path``: what a test or a page puts there, and a stale
    ``*.egg-info`` beside a package's source, are not installed distributions.
    """
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


@functools.cache
def installed_folders() -> tuple[str, ...]:
    """The interpreter's folders and :func:`site_folders`, real paths ending in a separator."""
    paths = sysconfig.get_paths()
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    folders |= {paths["stdlib"], paths["platstdlib"], *site_folders()}
    return tuple(sorted(os.path.join(os.path.realpath(folder), "") for folder in folders))


def installed(path: str) -> bool:
    """Whether ``path`` is the interpreter's or an installed distribution's."""
    return os.path.realpath(path).startswith(installed_folders())


#: The last :func:`installed_distributions`, with the state of the folders it was read from.
_DISTRIBUTIONS: tuple[list, list[str]] | None = None


def installed_distributions() -> list[str]:
    """Every distribution in :func:`site_folders`, as ``name==version``, sorted.

    Reading every distribution's metadata takes a tenth of a second, which a
    rebuild under ``mkdocs serve`` should not pay each time: the list is kept while
    the site-packages folders are unchanged (installing or removing a distribution
    changes its folder).
    """
    global _DISTRIBUTIONS
    state = []
    for folder in site_folders():
        with contextlib.suppress(OSError):
            state.append((folder, os.stat(folder).st_mtime_ns))
    if _DISTRIBUTIONS is None or _DISTRIBUTIONS[0] != state:
        _DISTRIBUTIONS = (state, _read_distributions())
    return list(_DISTRIBUTIONS[1])


def _read_distributions() -> list[str]:
    return sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions(path=site_folders())
        if dist.metadata["Name"]
    )


def environment_key(seed: int) -> str:
    """What, outside the repository, can change any page's output: this format, the
    interpreter, :func:`installed_distributions`, and the plugin settings that change
    output (the seed, and ``PYTHONHASHSEED``)."""
    return digest(
        FORMAT,
        sys.version,
        platform.machine(),
        platform.system(),
        installed_distributions(),
        {"seed": seed, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED")},
    )


def write_atomically(path: Path, text: str | bytes, prefix: str) -> None:
    """Write ``text`` (or bytes) to a temporary file (``prefix``…) beside ``path``, then
    rename it.

    A reader sees the whole old file or the whole new one; a folder that cannot be
    written is no error (what would have been kept is only lost).
    """
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=prefix)
        try:
            with os.fdopen(handle, "wb" if isinstance(text, bytes) else "w") as file:
                file.write(text)
            os.replace(scratch, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            raise


#: The state of a file the fork server imported that was written after the server
#: started (see :mod:`docexec.preloaded`): no file's :func:`fingerprint`, so a record
#: that read it never matches, and its page runs again.
CHANGED = "changed-since-the-fork-server-started"


def fingerprint(path: Path) -> str | None:
    """The state of a file or folder a page read: its content, its listing, or absence."""
    try:
        if path.is_dir():
            # An editor's swap and backup files (.name.swp, .#name, name~) and bytecode
            # come and go as an author works; they say nothing about a page.
            names = sorted(
                name
                for name in os.listdir(path)
                if not name.startswith(".") and not name.endswith("~") and name != "__pycache__"
            )
            return "dir:" + digest(names)
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    except FileNotFoundError:
        return None
    except OSError as error:  # unreadable now: never matches a recorded state
        return f"error:{error.errno}"


@dataclass
class BlockRecord:
    """One block as it ran: what identifies it, and what it produced."""

    signature: dict
    line: int
    output: str
    raised: list[int] = field(default_factory=list)


@dataclass
class Record:
    """A page's examples as they last ran successfully.

    Attributes:
        page: The page's path relative to the repository, such as ``docs/index.md``.
        fences: The key of its executed fences (see :func:`digest`).
        lines: The page lines its fences open on.
        environment: :func:`environment_key` when it ran.
        files: Each repository file or folder its process read, with its
            :func:`fingerprint` when the process first read it.
        blocks: Its blocks, in the order they ran.
        seconds: How long they took to run.
        environ: Each environment variable its process read, with its value then
            (``None``: not set).
    """

    page: str
    fences: str
    lines: list[int]
    environment: str
    files: dict[str, str | None]
    blocks: list[BlockRecord]
    seconds: float
    environ: dict[str, str | None] = field(default_factory=dict)
    reads_lines: bool = False
    format: int = FORMAT

    @property
    def line_sensitive(self) -> bool:
        """Whether the output can depend on the page's lines: an output names the page (a
        traceback), or the page's code looked at stack frames, which know their lines."""
        return self.reads_lines or any(self.page in block.output for block in self.blocks)


def _check_shape(record: Record) -> None:
    """Raise ``TypeError`` unless every field holds what a build wrote there."""

    def strings(mapping: object) -> bool:
        return isinstance(mapping, dict) and all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items()
        )

    ok = (
        isinstance(record.page, str)
        and isinstance(record.fences, str)
        and isinstance(record.environment, str)
        and isinstance(record.lines, list)
        and all(isinstance(line, int) for line in record.lines)
        and strings(record.files)
        and strings(record.environ)
        and isinstance(record.seconds, (int, float))
        and isinstance(record.reads_lines, bool)
        and all(
            isinstance(block.signature, dict)
            and isinstance(block.line, int)
            and isinstance(block.output, str)
            and isinstance(block.raised, list)
            and all(isinstance(index, int) for index in block.raised)
            for block in record.blocks
        )
    )
    if not ok:
        raise TypeError("a field does not hold what a build writes")


class CacheMiss(Exception):
    """Why a record was not used; logged only when the record could not be read."""

    def __init__(self, reason: str, *, unreadable: bool = False) -> None:
        super().__init__(reason)
        self.unreadable = unreadable


class ExecutionCache:
    """Records of pages' runs, one JSON file per page under ``folder``.

    Args:
        root: The repository root: file paths in records are relative to it.
        folder: Where records live.
        environment: :func:`environment_key` for this build.
    """

    def __init__(self, root: Path, folder: Path, environment: str) -> None:
        self.root = root
        self.folder = folder
        self.environment = environment

    def path_for(self, page: str, suffix: str = ".json") -> Path:
        """Where the record (or another memory, by ``suffix``) of ``page`` lives.

        A page outside the repository (``docs_dir: ../docs``) has an absolute path: its
        memories go in ``outside/``, by a hash of that path, never beside the page.
        """
        path = PurePosixPath(page)
        if path.is_absolute() or ".." in path.parts:
            return self.folder / "outside" / f"{digest(page)}{suffix}"
        return self.folder / f"{page}{suffix}"

    def lookup(
        self,
        page: str,
        fences: str,
        lines: list[int],
        seen: dict[str, str | None] | None = None,
    ) -> Record:
        """The page's record, if everything it depended on is as it was.

        Args:
            page: The page, as ``docs/<page>.md``.
            fences: The key of its executed blocks.
            lines: The lines of its fences.
            seen: The files' states found so far by the lookups of one pass over the
                pages (filled as this one reads more): a file many pages read, a
                data set or the project's package, is read once in that pass, not
                once per page.

        Raises:
            CacheMiss: There is none, or it is out of date, or it cannot be read.
        """
        path = self.path_for(page)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise CacheMiss("no record") from None
        except (OSError, UnicodeDecodeError) as error:
            raise CacheMiss(f"record unreadable ({error})", unreadable=True) from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                found = data.get("format") if isinstance(data, dict) else None
                raise CacheMiss(f"record of format {found!r}", unreadable=True)
            try:
                data = unsealed(data)
            except ValueError as error:
                raise CacheMiss(f"record not used ({error})", unreadable=True) from None
            data["blocks"] = [BlockRecord(**block) for block in data["blocks"]]
            record = Record(**data)
            _check_shape(record)
        except CacheMiss:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CacheMiss(f"record unreadable ({error})", unreadable=True) from None
        if record.page != page or record.fences != fences:
            raise CacheMiss("the page's examples changed")
        if record.line_sensitive and record.lines != lines:
            raise CacheMiss("its tracebacks name page lines that moved")
        if record.environment != self.environment:
            raise CacheMiss("the environment changed")
        seen = {} if seen is None else seen
        for name, state in record.files.items():
            if name not in seen:
                seen[name] = fingerprint(self.root / name)
            if seen[name] != state:
                raise CacheMiss(f"{name} changed")
        for name, value in record.environ.items():
            if os.environ.get(name) != value:
                raise CacheMiss(f"${name} changed")
        return record

    def store(self, record: Record) -> None:
        """Write ``record`` atomically, sealed; a folder that cannot be written is no error."""
        text = json.dumps(sealed(asdict(record)), sort_keys=True, indent=1)
        write_atomically(self.path_for(record.page), text, prefix=".record-")

    def recorded_seconds(self, page: str) -> float | None:
        """How long the page's last recorded run took, whether or not its record still
        holds (to run the longest pages first); ``None`` if no record can say."""
        try:
            seconds = json.loads(self.path_for(page).read_text()).get("seconds")
        except (OSError, ValueError, AttributeError):
            return None
        return float(seconds) if isinstance(seconds, (int, float)) else None
