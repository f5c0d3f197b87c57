"""Choosing the device, and the logger every module writes through."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from unetkit import distributed
from unetkit.errors import UserError

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm

T = TypeVar("T")

log = logging.getLogger("unetkit")


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; under torchrun each process takes the GPU of its LOCAL_RANK."""
    import torch  # here, not at the top: the ONNX prediction path imports this module without torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU (use --device cpu or auto)")
    return torch.device("cuda", distributed.local_rank()) if name == "cuda" and distributed.launched() else torch.device(name)


class _LogLines:
    """A file for tqdm that turns each refresh into one log line (log files, CI, `nohup`); the cursor
    moves tqdm writes around a second, nested bar (the tiles of one image) are dropped."""

    def write(self, text: str) -> None:
        if line := text.replace("\x1b[A", "").strip("\r\n "):  # cursor up: what tqdm writes after a nested bar
            log.info("%s", line)

    def flush(self) -> None:
        pass


def progress(iterable: Iterable[T] | None = None, **options: Any) -> tqdm[T]:
    """A tqdm bar where a person watches, on rank 0 only: live on a terminal or in a notebook; elsewhere (stderr
    sent to a file) a log line every 30 seconds from the first 30 on, so a long run's progress shows in its log
    too and a short one (or an error) adds no line. Silent where logging keeps only warnings (`-q`)."""
    from tqdm import tqdm

    if not distributed.is_main() or (log.hasHandlers() and not log.isEnabledFor(logging.INFO)):
        return tqdm(iterable, disable=True, **options)
    if sys.stderr.isatty() or "ipykernel" in sys.modules:
        return tqdm(iterable, **options)
    return tqdm(iterable, file=_LogLines(), delay=30, mininterval=30, maxinterval=60, ascii=True, leave=False,
                **{k: v for k, v in options.items() if k != "leave"})


def has_bf16(device: torch.device) -> bool:
    """True where bf16 runs natively: CUDA GPUs of compute capability 8.0 (Ampere) and later, and
    CPUs with AVX512-BF16 or AMX instructions (Linux, read from /proc/cpuinfo).

    Not `torch.cuda.is_bf16_supported()` nor mkldnn's bf16 check: both also say yes where bf16 is
    only emulated (V100, T4, AVX512 without BF16), which is slower than fp16 or fp32.
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return device.type == "cpu" and bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux); empty elsewhere, where the CPU then trains in fp32."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return frozenset(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return frozenset()
