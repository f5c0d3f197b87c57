"""Choosing the device, and the logger every module writes through."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from unetkit import distributed
from unetkit.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("unetkit")


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; asking for CUDA without one is a user error.

    Under torchrun each process takes the GPU of its LOCAL_RANK.
    """
    import torch  # here, not at the top: the ONNX prediction path imports this module without torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    if name == "cuda" and distributed.launched():
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)


def progress_hidden() -> bool | None:
    """tqdm's `disable`: bars only on rank 0 of a torchrun job, and only on a terminal (None)."""
    return None if distributed.is_main() else True


def has_bf16(device: torch.device) -> bool:
    """True for CUDA GPUs with native bf16 (compute capability 8.0, Ampere, and later).

    Not `torch.cuda.is_bf16_supported()`: by default it also says yes where bf16 is only
    emulated (V100, T4), which is slower than fp16, and it asks the current device.
    """
    import torch

    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
