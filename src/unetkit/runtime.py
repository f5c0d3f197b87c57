"""Choosing the device, and the logger every module writes through."""

from __future__ import annotations

import logging

import torch

from unetkit.errors import UserError

log = logging.getLogger("unetkit")


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device(name)
