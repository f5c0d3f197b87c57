"""Writing and reading models: the pickle-free model file, and exports to other formats (ONNX).

`unetkit.export(ExportConfig)` is a public API function. Once this package is imported, Python
binds the name `unetkit.export` to the package itself, so the package answers that call too.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unetkit.config import ExportConfig
    from unetkit.export.onnx import ExportResult


class _CallablePackage(types.ModuleType):
    def __call__(self, config: ExportConfig) -> ExportResult:
        from unetkit.export.onnx import export_model

        return export_model(config)


sys.modules[__name__].__class__ = _CallablePackage
