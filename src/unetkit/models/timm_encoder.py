"""The one place that imports timm: encoders by name, with their weights and input statistics.

Why a torchvision stand-in: timm imports torchvision at import time (`FrozenBatchNorm2d` in `timm.layers`; datasets,
transforms and `InterpolationMode` in `timm.data`, which every timm model file imports). We use none of timm's data
pipeline, and a torchvision wheel only loads beside the exact torch build it was compiled for, so unetkit installs
timm without torchvision. When torchvision does not import, `import_timm` puts stand-ins in `sys.modules` for the
duration of `import timm` only: a faithful `FrozenBatchNorm2d` (timm freezes batch norm with it) and the names timm's
data modules bind, whose classes raise ImportError when built. A working torchvision is always preferred."""

from __future__ import annotations

import difflib
import enum
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetkit.config import ModelConfig
from unetkit.data.io import first_line
from unetkit.errors import UserError


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (torchvision.ops.misc's, line for line):
    (B, C, H, W) -> (B, C, H, W). All four are buffers, so nothing trains and the state dict matches."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)  # present when loading a BatchNorm2d's state
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        bias = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + bias

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.weight.shape[0]}, eps={self.eps})"


# torchvision.transforms.functional.InterpolationMode's members and values.
InterpolationMode = enum.Enum("InterpolationMode", {value.upper().replace("-", "_"): value for value in (
    "nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos")})


class NeedsTorchvision:
    """Base of the stand-ins for torchvision classes that nothing here builds: building one is an ImportError."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ImportError(f"{type(self).__name__} needs torchvision, which is not installed beside this torch")


def _stand_in_modules() -> dict[str, types.ModuleType]:
    """The torchvision modules and names timm binds at import time (see the module docstring)."""
    modules = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.datasets",
        "torchvision.transforms", "torchvision.transforms.functional")}
    modules["torchvision.ops.misc"].FrozenBatchNorm2d = FrozenBatchNorm2d  # type: ignore[attr-defined]
    modules["torchvision.transforms.functional"].InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    for name in ("CIFAR100", "CIFAR10", "MNIST", "KMNIST", "FashionMNIST", "ImageFolder"):
        setattr(modules["torchvision.datasets"], name, type(name, (NeedsTorchvision,), {}))
    modules["torchvision.transforms"].ToTensor = type("ToTensor", (NeedsTorchvision,), {})  # type: ignore[attr-defined]
    return modules


@contextmanager
def torchvision_stand_in(extra: dict[str, types.ModuleType] | None = None) -> Iterator[None]:
    """Stand-in torchvision modules in sys.modules while the block runs, when the real one does not load;
    `extra`: more torchvision submodules by name (public: benchmarks/peer_smp.py adds torchvision.models,
    which segmentation_models_pytorch imports beside timm)."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):  # missing, or built for another torch (RuntimeError)
        pass
    else:
        yield
        return
    modules = _stand_in_modules() | (extra or {})
    for name, module in modules.items():  # each submodule an attribute of its parent, as an import binds it
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(modules[parent], child, module)
    for name in [key for key in sys.modules if key == "torchvision" or key.startswith("torchvision.")]:
        del sys.modules[name]  # leftovers of a torchvision that failed half-way
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in modules.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def import_timm() -> types.ModuleType:
    """timm, imported on first use (importing unetkit.models does not import it)."""
    if sys.modules.get("timm") is not None:
        return sys.modules["timm"]
    try:
        with torchvision_stand_in():
            import timm
    except ImportError as exc:
        if exc.name == "timm":
            raise UserError("arch 'unet' needs timm: pip install 'unetkit[encoders]'") from None
        raise
    return timm


def create_encoder(config: ModelConfig) -> nn.Module:
    """The timm model `config.encoder` with features_only=True, weights as `config.pretrained` says:
    (B, in_channels, H, W) -> one map per level, (B, C_i, H / r_i, W / r_i) (`feature_info` gives C_i, r_i)."""
    timm = import_timm()
    if not timm.is_model(config.encoder):
        close = difflib.get_close_matches(config.encoder, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (timm.list_models() lists the names)"
        raise UserError(f"config field 'model.encoder': unknown timm model '{config.encoder}'{hint}")
    kwargs: dict[str, Any] = {"features_only": True, "in_chans": config.in_channels}
    if config.pretrained == "none":
        return _create(timm, config.encoder, pretrained=False, **kwargs)
    if config.pretrained != "imagenet":
        return _from_file(timm, config.encoder, Path(config.pretrained), **kwargs)
    try:
        return _create(timm, config.encoder, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # no network, no cached copy, no published weights
        raise UserError(f"model.pretrained 'imagenet': could not get timm's weights for '{config.encoder}' "
                        f"({first_line(exc)}); offline, download the model.safetensors of timm's hub entry "
                        "elsewhere and set model.pretrained to its path") from None


def _create(timm: types.ModuleType, name: str, **kwargs: Any) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except (RuntimeError, AssertionError) as exc:  # timm's refusal of features_only for some models
        if kwargs.get("pretrained") or "feature" not in str(exc).lower():
            raise
        raise UserError(f"config field 'model.encoder': timm model '{name}' cannot return feature maps "
                        "(features_only)") from None


def _from_file(timm: types.ModuleType, name: str, path: Path, **kwargs: Any) -> nn.Module:
    """Weights from a .safetensors file: either the encoder's own state dict (keys of
    `encoder.state_dict()`), or a timm classifier checkpoint (keys of the full model, as timm's hub
    publishes them), which timm adapts (classifier dropped, first convolution fitted to in_channels)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise UserError(f"model.pretrained '{path}': expected 'none', 'imagenet' or a .safetensors file")
    if not path.is_file():
        raise UserError(f"model.pretrained '{path}': file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"model.pretrained '{path}': not a safetensors file ({first_line(exc)})") from None
    encoder = _create(timm, name, pretrained=False, **kwargs)
    try:
        if set(state) == set(encoder.state_dict()):
            encoder.load_state_dict(state)
            return encoder
        return _create(timm, name, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"model.pretrained '{path}': weights do not fit encoder '{name}' ({first_line(exc)})") from None


def encoder_mean_std(encoder: nn.Module, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (pixels scaled to [0, 1]) that the encoder's pretrained weights expect.
    timm fits RGB weights to other channel counts (`adapt_input_conv`): one channel gets the sum of the
    three filters, hence the RGB average; n channels reuse them cyclically (i % 3), and so do the statistics."""
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))  # ImageNet's, timm's default
    std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
    if in_channels == 1:
        return (sum(mean) / len(mean),), (sum(std) / len(std),)
    return tuple(mean[i % len(mean)] for i in range(in_channels)), tuple(std[i % len(std)] for i in range(in_channels))
