"""Test-time augmentation: the probabilities of flipped/rotated copies averaged after undoing each
transform (exact: flips and 90-degree rotations only move pixels). "hflip" adds the left-right mirror,
for images with a fixed up and down (TGS, street scenes); "flips" the three mirrorings (nnU-Net's 2-D
mirroring); "d4" all eight symmetries of the square. Arrays are torch tensors or NumPy (ONNX prediction).

A view the training augmentation never drew is not a free vote: on TGS, whose augmentation flips
left-right only, "flips" scored well below "hflip" (benchmarks/RESULTS.md, `benchmarks/quality.py
--tta`); `unseen_views` counts such views, so prediction can say so."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from unetkit.errors import UserError

TTA_MODES = ("none", "hflip", "flips", "d4")  # identity; + left-right; + the three mirrorings; + the transposed four
Array = TypeVar("Array")  # torch.Tensor or np.ndarray, (N, C, H, W)
_PROBE = np.arange(9).reshape(1, 1, 3, 3)  # a view is told apart by where it moves these nine values (unseen_views)


@dataclass(frozen=True)
class Symmetry:
    """A pixel permutation of (N, C, H, W) tensors: optional transpose of H and W, then flips."""

    transpose: bool = False
    flip_h: bool = False
    flip_w: bool = False

    def apply(self, x: Array) -> Array:
        return self._flip(x.swapaxes(-2, -1) if self.transpose else x)

    def invert(self, x: Array) -> Array:
        x = self._flip(x)
        return x.swapaxes(-2, -1) if self.transpose else x

    def _flip(self, x: Any) -> Any:
        dims = [d for d, on in ((-2, self.flip_h), (-1, self.flip_w)) if on]
        return x if not dims else x.flip(dims) if hasattr(x, "flip") else np.flip(x, dims)


def symmetries(mode: str) -> tuple[Symmetry, ...]:
    """The transforms of a TTA mode, identity first."""
    if mode not in TTA_MODES:
        raise UserError(f"config field 'tta': '{mode}' is not one of {', '.join(TTA_MODES)}")
    every = tuple(Symmetry(t, h, w) for t in (False, True) for h in (False, True) for w in (False, True))
    return every[: 2 ** TTA_MODES.index(mode)]  # 1, 2, 4 or 8 views


def averaged(forward: Callable[[Array], Array], x: Array, mode: str, finish: Callable[[Array], Array]) -> Array:
    """Mean over the symmetries of `mode` of finish(forward(.)), each result mapped back to x's frame;
    `finish` (activation, resizing) runs after the inverse, so what is averaged is probabilities."""
    transforms = symmetries(mode)
    total = finish(forward(x))
    for symmetry in transforms[1:]:
        total = total + finish(symmetry.invert(forward(symmetry.apply(x))))
    return total / len(transforms) if len(transforms) > 1 else total


@functools.cache
def _drawn_views(hflip: bool, vflip: bool, rotate90: bool) -> frozenset[bytes]:
    """The views (as a 3 x 3 probe's bytes) of the group that random left-right flips, up-down flips and quarter turns
    generate. Worked out, not read off the flags: an up-down flip composed with a quarter turn is a transpose."""
    moves = [m for m, on in ((lambda x: np.flip(x, -1), hflip), (lambda x: np.flip(x, -2), vflip),
                             (lambda x: np.rot90(x, axes=(-2, -1)), rotate90)) if on]
    seen, frontier = {_PROBE.tobytes()}, [_PROBE]
    while frontier:
        reached = [move(x) for x in frontier for move in moves]
        frontier = [x for x in reached if x.tobytes() not in seen]
        seen.update(x.tobytes() for x in frontier)
    return frozenset(seen)


def unseen_views(mode: str, *, hflip: bool, vflip: bool, rotate90: bool) -> int:
    """How many of `mode`'s views the training augmentation's flips and turns never produce."""
    drawn = _drawn_views(hflip, vflip, rotate90)
    return sum(s.apply(_PROBE).tobytes() not in drawn for s in symmetries(mode))


def widest_seen(*, hflip: bool, vflip: bool, rotate90: bool) -> str:
    """The TTA mode with the most views, all of them drawn in training."""
    return [m for m in TTA_MODES if not unseen_views(m, hflip=hflip, vflip=vflip, rotate90=rotate90)][-1]
