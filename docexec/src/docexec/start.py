"""How a page's process starts: its seeds, torch's one thread, string hashing, the build date.

The worker runs :func:`seed_everything` when a page's process starts; the plugin
sets ``PYTHONHASHSEED`` to :data:`HASH_SEED` and ``SOURCE_DATE_EPOCH`` to the
build's date before any page's process exists. A page's notebook and script begin
with :func:`preamble`, which carries this very function's source and these values,
so a take-away starts as its page's process did and cannot drift from it.
"""

from __future__ import annotations

import inspect

#: String hashing's seed in every page's process: a set of strings prints in the same
#: order on every build.
HASH_SEED = "0"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (those installed); torch on one thread.

    One thread makes float reductions run in the same order on every machine,
    so printed tensors are the same bytes everywhere.
    """
    import random

    random.seed(seed)
    try:
        import numpy
    except ImportError:
        pass
    else:
        numpy.random.seed(seed)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.manual_seed(seed)
        torch.set_num_threads(1)


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
    source = inspect.getsource(seed_everything).replace("\n\n\n", "\n\n").rstrip("\n")
    lines += ["", "", source, "", "", f"seed_everything({int(seed)})"]
    return "\n".join(lines)
