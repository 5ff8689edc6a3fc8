"""What a child that multiprocessing spawns from a page's process runs as its main script.

A child started by the ``spawn`` or ``forkserver`` method imports the parent's main
script as ``__mp_main__`` (what is under ``if __name__ == "__main__"`` aside), so that
the functions it is sent are found there. A page's main is the page, which is
Markdown: each child failed on its first line, and a pool started new ones for ever.
The page's process gives such a child a script that calls :func:`run_main` with the
session's python blocks so far, the running one included (see
:func:`docexec.session.spawned_main`). This module imports nothing of docexec's, nor
anything outside the standard library: the child has not a page's preparations.
"""

from __future__ import annotations

import contextlib
import os
import sys


def run_main(namespace: dict, parts: list, cwd: str) -> None:
    """Run the session's python blocks in ``namespace``, the child's ``__mp_main__``.

    Each part, ``(path, first_line, code, raises, folder)``, is compiled under the
    page's (or included file's) name at its lines, so a traceback from the child
    names the page's line, and run in the folder its block ran in; the child then
    goes back to ``cwd``, the spawning block's folder. A block that showed an
    exception (``raises``) stops there quietly, as it did on the page. What the
    blocks print is not printed again: what they printed is on the page, and a
    child's copy would come or not as the pool ends it (the page's bytes would vary
    from build to build). The child writes no bytecode, as the page's process does not.

    Args:
        namespace: The globals of the child's main module.
        parts: The blocks' pieces, in the order they ran.
        cwd: The folder to end in.
    """
    sys.dont_write_bytecode = True
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            for path, first_line, code, raises, folder in parts:
                os.chdir(folder)
                try:
                    exec(compile("\n" * (first_line - 1) + code, path, "exec"), namespace)  # noqa: S102
                except BaseException:
                    if raises is None:
                        raise
    finally:
        os.chdir(cwd)
