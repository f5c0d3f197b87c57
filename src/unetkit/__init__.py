"""unetkit: U-Net semantic segmentation from a folder of images and masks to masks on new images.

The API (`unetkit.api`) is what every CLI command calls; networks (`create_model`, `UNet`, `build_model`)
are plain `nn.Module`s returning logits; `losses` and `metrics` are pure functions for one's own loop.
The names are resolved on first use (PEP 562), so `import unetkit` and `unetkit predict
--model model.onnx` do not import PyTorch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unetkit import metrics
    from unetkit.api import evaluate, export, load_model, plan, predict, report, resume, synth, train, train_config
    from unetkit.data.rle import read_rle_csv, rle_decode, rle_encode
    from unetkit.models.registry import build_model, create_model
    from unetkit.models.unet import UNet
    from unetkit.training import losses

_HOMES = {"UNet": "unetkit.models.unet", "build_model": "unetkit.models.registry", "create_model": "unetkit.models.registry",
          **dict.fromkeys(("evaluate", "export", "load_model", "plan", "predict", "report", "resume", "synth", "train",
                           "train_config"), "unetkit.api"),
          **dict.fromkeys(("read_rle_csv", "rle_decode", "rle_encode"), "unetkit.data.rle")}
_MODULES = {"losses": "unetkit.training.losses", "metrics": "unetkit.metrics"}

__all__ = ["UNet", "build_model", "create_model", "evaluate", "export", "load_model", "losses", "metrics", "plan",
           "predict", "read_rle_csv", "report", "resume", "rle_decode", "rle_encode", "synth", "train", "train_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'unetkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES, *_MODULES])
