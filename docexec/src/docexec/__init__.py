"""docexec: a MkDocs plugin that runs each page's examples in a process of its own.

Added to a site as ``plugins: [docexec, markdown-exec]`` (see the README). What other
code may use is :class:`DocExecPlugin`, the plugin, and :class:`ExampleError`, what a
failing example raises; every other module is the plugin's own.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DocExecPlugin", "ExampleError"]

#: The module each public name is defined in.
_HOMES = {"DocExecPlugin": "docexec.plugin", "ExampleError": "docexec.page"}


def __getattr__(name: str) -> Any:
    # Imported on first use: the page processes import docexec's modules without MkDocs.
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'docexec' has no attribute {name!r}")
