"""Writing and reading models: the pickle-free model file, and exports to other formats (ONNX)."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


def answer_calls(module_name: str, call: Callable[..., Any]) -> None:
    """Make module `module_name` callable as `call`. `unetkit.export(...)` and `unetkit.report(...)` are
    public API functions; once the module of that name is imported, Python binds the name on `unetkit`
    to the module, so the module must answer the call too."""
    sys.modules[module_name].__class__ = type("CallableModule", (types.ModuleType,),
                                              {"__call__": lambda _, *args, **kwargs: call(*args, **kwargs)})


answer_calls(__name__, lambda config: importlib.import_module("unetkit.export.onnx").export_model(config))
