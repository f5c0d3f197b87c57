"""Running a batch through a network a few samples at a time, so that each layer's activations stay in the CPU's
last-level cache.

On a CPU a convolution is bound by memory traffic once its input and output outgrow the cache: a batch of sixteen
256 x 256 tiles through a 16-wide first level writes 64 MB per layer, where a pass of two to four tiles stays in cache
and runs markedly faster per tile (benchmarks/RESULTS.md, "the tiler against MONAI"). The batch size a user sets keeps
its meaning (tiles cut, blended and copied together). The largest activation per sample is measured (forward hooks),
not derived from the architecture, so the rule holds for any network. GPUs want large batches: nothing is split there."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch
from torch import nn

CACHE_SHARE = 0.5  # of the last-level cache that one pass's largest activation may fill
FALLBACK_CACHE_BYTES = 32 * 2**20  # where the OS does not say (a common server L3)


def last_level_cache_bytes(cpu_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Size of the largest cache the first CPU reports (Linux sysfs), else FALLBACK_CACHE_BYTES."""
    sizes = []
    for index in cpu_dir.glob("index*"):
        with contextlib.suppress(OSError):
            found = re.fullmatch(r"(\d+)([KMG]?)", (index / "size").read_text().strip())
            if found:
                sizes.append(int(found[1]) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[found[2]])
    return max(sizes, default=FALLBACK_CACHE_BYTES)


class CacheSizedPasses:
    """Calls `net` on a CPU batch in passes of as many samples as fit CACHE_SHARE of the cache."""

    def __init__(self, net: nn.Module, cache_bytes: int | None = None) -> None:
        self.net = net
        self.budget = CACHE_SHARE * (cache_bytes or last_level_cache_bytes())
        self._largest: dict[tuple[object, ...], int] = {}  # input shape and kind -> bytes per sample

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.shape[0] == 1:
            return self.net(x)
        outputs, start = [], 0
        if self.per_pass(x) is None:
            self._largest[_shape_key(x)], first = _largest_activation(self.net, x[:1])
            outputs, start = [first], 1
        per_pass = self.per_pass(x) or 1
        if start == 0 and per_pass >= x.shape[0]:
            return self.net(x)
        outputs += [self.net(x[i : i + per_pass]) for i in range(start, x.shape[0], per_pass)]
        return torch.cat(outputs)

    def per_pass(self, x: torch.Tensor) -> int | None:
        """Samples per pass for inputs like x, once a batch like it has run (None before)."""
        largest = self._largest.get(_shape_key(x))
        return None if largest is None else max(1, int(self.budget // max(1, largest)))


def _shape_key(x: torch.Tensor) -> tuple[object, ...]:
    """What the largest activation per sample depends on: the sample's shape, its dtype and autocast."""
    return tuple(x.shape[1:]), x.dtype, torch.is_autocast_enabled("cpu")


def _largest_activation(net: nn.Module, sample: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(bytes of the largest tensor any module outputs for `sample`, the network's output)."""
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                largest = max(largest, tensor.numel() * tensor.element_size())

    hooks = [module.register_forward_hook(record) for module in net.modules()]
    try:
        out = net(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return largest, out

