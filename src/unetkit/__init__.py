"""unetkit: U-Net semantic segmentation from a folder of images and masks to masks on new images.

The public API: `UNet` (the network, preset "seed" by default), `build_model`, `train`,
`resume`, `predict`, `evaluate`, `export`, `report`, `synth`, `plan` and `load_model`; every CLI command
(`unetkit ...`) is one call of these. `rle_encode`, `rle_decode` and `read_rle_csv` read and write
the run-length CSV that `predict --rle` writes.

The names are resolved on first use (PEP 562), so `import unetkit` and `unetkit predict
--model model.onnx` do not import PyTorch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unetkit.api import evaluate, export, load_model, plan, predict, report, resume, synth, train
    from unetkit.data.rle import read_rle_csv, rle_decode, rle_encode
    from unetkit.models.registry import build_model
    from unetkit.models.unet import UNet

_API = ("evaluate", "export", "load_model", "plan", "predict", "report", "resume", "synth", "train")
_HOMES = {"UNet": "unetkit.models.unet", "build_model": "unetkit.models.registry", **dict.fromkeys(_API, "unetkit.api"),
          "read_rle_csv": "unetkit.data.rle", "rle_decode": "unetkit.data.rle", "rle_encode": "unetkit.data.rle"}

__all__ = ["UNet", "build_model", "evaluate", "export", "load_model", "plan", "predict", "read_rle_csv", "report",
           "resume", "rle_decode", "rle_encode", "synth", "train"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'unetkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
