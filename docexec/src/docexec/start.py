"""How a page's process starts: its seeds, torch's one thread, string hashing, the build date.

The worker runs :func:`seed_everything` when a page's process starts; the plugin
sets ``PYTHONHASHSEED`` to :data:`HASH_SEED` and ``SOURCE_DATE_EPOCH`` to the
build's date before any page's process exists. A page's notebook and script begin
with :func:`preamble`, which carries this very function's source and these values,
so a take-away starts as its page's process did and cannot drift from it.
"""

from __future__ import annotations

import importlib.abc
import inspect
import sys

#: String hashing's seed in every page's process: a set of strings prints in the same
#: order on every build.
HASH_SEED = "0"


def seed_module(name: str, module: object, seed: int) -> None:
    """Seed one of the generators a page's process seeds: ``random``'s, NumPy's or torch's
    (torch also on one thread: float reductions then add up in the same order on every
    machine, so printed tensors are the same bytes everywhere)."""
    if name == "random":
        module.seed(seed)
    elif name == "numpy":
        module.random.seed(seed)
    elif name == "torch":
        module.manual_seed(seed)
        module.set_num_threads(1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators, those that are installed."""
    import importlib

    for name in ("random", "numpy", "torch"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        seed_module(name, module, seed)


#: The modules whose generators a page's process seeds (see :func:`seed_module`).
SEEDED = ("random", "numpy", "torch")


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Seeds a module of :data:`SEEDED` the moment its import has run, before the page's
    next line: a page that imports NumPy or torch itself draws the same numbers as one
    whose fork server preloaded them (or as its take-away, which imports them first)."""

    def __init__(self, pending: set[str], seed: int) -> None:
        self.pending = pending
        self.seed = seed

    def find_spec(self, name: str, path: object, target: object = None):
        if name not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        self.pending.discard(name)
        seed, run = self.seed, loader.exec_module

        def exec_module(module: object) -> None:
            run(module)
            seed_module(name, module, seed)

        # The loader itself stays the module's (importlib.resources and friends ask it).
        loader.exec_module = exec_module
        return spec


def ready_to_seed() -> None:
    """Import what :func:`seed_module` uses of the modules already imported (NumPy
    loads ``numpy.random`` on first use), so that seeding a process forked later
    costs it nothing."""
    if "numpy" in sys.modules:
        import numpy.random  # noqa: F401


def seed_page(seed: int) -> None:
    """Seed a page's process as :func:`seed_everything` seeds a take-away, importing nothing.

    A module already imported (preloaded by the fork server) is seeded now; one the
    page imports later is seeded as its import ends; one it never imports is never
    loaded for it.
    """
    pending = set()
    for name in SEEDED:
        if name in sys.modules:
            seed_module(name, sys.modules[name], seed)
        else:
            pending.add(name)
    if pending:
        sys.meta_path.insert(0, _SeedOnImport(pending, seed))


def preamble(seed: int, epoch: str | None, *, notebook: bool, setup: str | None = None) -> str:
    """The first code of a page's take-away: the page's process's start, in Python.

    A script that runs without ``PYTHONHASHSEED`` set to the page's runs itself again
    with it (string hashes are fixed when Python starts). A notebook's kernel has
    started already: the cell sets it for the processes the notebook starts, and says
    in one line, only when the kernel hashes strings at random, that a set of strings
    may print in another order than on the page, and how to start Jupyter to match.

    Args:
        seed: The plugin's ``seed``.
        epoch: The build's ``SOURCE_DATE_EPOCH``; ``None`` when it had none.
        notebook: For a notebook's cell rather than a script.
        setup: Code to run once string hashing is settled and before the rest (a
            script's check that what it imports is installed).

    Returns:
        Python source, ending without a newline.
    """
    lines = [
        "# Start as the page's process started: the same string hashes, build date and seeds.",
        "import os",
        "import sys",
        "",
    ]
    if notebook:
        lines += [
            f'os.environ["PYTHONHASHSEED"] = "{HASH_SEED}"  # for the processes this notebook starts',
            "if sys.flags.hash_randomization:",
            "    print(",
            '        "This kernel hashes strings at random: a set of strings may print in another "',
            '        "order than on the page. To match it, start Jupyter with '
            f'PYTHONHASHSEED={HASH_SEED}."',
            "    )",
        ]
    else:
        lines += [
            f'if os.environ.get("PYTHONHASHSEED") != "{HASH_SEED}":',
            "    # String hashes (the order of a set of strings) are fixed when Python starts:",
            "    # run this script again with the page's.",
            f'    os.environ["PYTHONHASHSEED"] = "{HASH_SEED}"',
            "    os.execv(sys.executable, [sys.executable, *sys.argv])",
        ]
    if setup:
        lines += ["", setup, ""]
    if epoch is not None:
        lines.append(
            f'os.environ["SOURCE_DATE_EPOCH"] = "{int(epoch)}"  # the build\'s date, as the page had it'
        )
    source = "\n\n\n".join(
        inspect.getsource(function).rstrip("\n") for function in (seed_module, seed_everything)
    )
    lines += ["", "", source, "", "", f"seed_everything({int(seed)})"]
    return "\n".join(lines)
