"""The public API is flat in the package's __init__ and listed in __all__."""

import importlib
import inspect

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


def test_package_does_not_depend_on_mkdocs():
    for module in ("network", "inspection"):
        source = inspect.getsource(importlib.import_module(f"learnable_parameters.{module}"))
        assert "mkdocs" not in source
