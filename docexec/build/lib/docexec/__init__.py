"""docexec: a MkDocs plugin that runs each page's examples in a process of its own.

Added to a site as ``plugins: [docexec, markdown-exec]`` (see the README). What other
code may use is :class:`DocExecPlugin`, the plugin, and :class:`ExampleError`, what a
failing example raises; every other module is the plugin's own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DocExecPlugin", "ExampleError"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the page processes import docexec's modules without MkDocs.
    if name in __all__:
        from docexec import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'docexec' has no attribute {name!r}")
