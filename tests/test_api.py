"""The public API is flat in the package's __init__ and listed in __all__."""

import inspect
import pkgutil
import subprocess
import sys

import learnable_parameters


def test_all_lists_every_public_name_and_nothing_else():
    public = {
        name
        for name, value in vars(learnable_parameters).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert set(learnable_parameters.__all__) == public


def test_every_exported_name_has_a_docstring():
    for name in learnable_parameters.__all__:
        assert inspect.getdoc(getattr(learnable_parameters, name)), name


def test_package_does_not_depend_on_the_site_tooling():
    """Every module of the package imports in a fresh interpreter without MkDocs or docexec."""
    modules = [
        f"learnable_parameters.{info.name}"
        for info in pkgutil.iter_modules(learnable_parameters.__path__)
    ]
    assert {"learnable_parameters.network", "learnable_parameters.charts"} <= set(modules)
    tooling = ("mkdocs", "markdown_exec", "docexec", "mkdocstrings", "material", "pymdownx")
    probe = (
        f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({tooling!r})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
