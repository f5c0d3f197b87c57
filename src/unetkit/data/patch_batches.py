"""Training samples of patches: `PatchSamples` draws each batch from a `PatchSampler` over a PatchSet.

Patch j of global batch b of an epoch is drawn, and augmented, by generators seeded with (seed, epoch, b, j) alone: a
rank draws only its own patches, N ranks train on exactly the patches one process would (augmentation included), and
a resumed run draws those of an uninterrupted one. The first `forced(n)` patches of each global batch are centred on a
class (nnU-Net's foreground oversampling).

With an affine or elastic warp each patch is read with a margin (`warp_margin`), warped and cut back to its centre, so
the warp pulls no reflected border in; the border loss weights (weighted_ce) are computed on that larger patch too, so
objects cut by the patch edge keep their true distances.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from unetkit.data.augment import AugmentConfig, Augmenter, batch_seed, describe, warp_margin
from unetkit.data.io import dtype_range
from unetkit.data.loader import Batch, host_batch
from unetkit.data.patch_set import PatchSet
from unetkit.data.patches import PatchSampler
from unetkit.data.preprocess import Preprocess

MAX_BATCHES_PER_EPOCH = 250  # nnU-Net's epoch is 250 batches too
PATCH_STREAM = 3  # a patch's generator key after (seed, epoch, batch, patch): apart from other streams


class PatchSamples:
    """Epochs of `patches_per_epoch` random patches (0: the training pixels over a patch's, at least one batch and at
    most MAX_BATCHES_PER_EPOCH batches) in global batches of `batch_size`; a sample's key is its position in its batch."""

    def __init__(self, data: PatchSet, preprocess: Preprocess, batch_size: int, *, patch_size: int,
                 foreground_share: float, patches_per_epoch: int = 0, augment: AugmentConfig | None = None,
                 seed: int = 0, weight_map: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        margin = warp_margin(describe(augment), patch_size) if augment is not None else 0  # warps: read a margin
        self.sampler = PatchSampler(data.sources, patch_size, classes=data.classes, foreground_share=foreground_share,
                                    margin=margin, locations=data.locations)
        self.preprocess, self.batch_size, self.patch_size, self.seed = preprocess, batch_size, patch_size, seed
        self.augment, self.weight_map = Augmenter(augment) if augment is not None else None, weight_map
        auto = math.ceil(data.pixels / patch_size**2)
        self.patches_per_epoch = patches_per_epoch or min(max(auto, batch_size), MAX_BATCHES_PER_EPOCH * batch_size)

    def __len__(self) -> int:
        return self.patches_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        return np.arange(self.patches_per_epoch) % self.batch_size

    def batch(self, epoch: int, number: int, keys: np.ndarray, rank: int) -> Batch:
        size = min(self.batch_size, self.patches_per_epoch - number * self.batch_size)
        forced = self.sampler.forced(size)
        inner = slice(self.sampler.margin, self.sampler.margin + self.patch_size)  # the patch inside its margin
        drawn = []
        for position in map(int, keys):
            rng = np.random.default_rng((self.seed, epoch, number, position, PATCH_STREAM))
            image, mask, *_ = self.sampler.draw(rng, position < forced)
            weight = self.weight_map(mask)[None] if self.weight_map is not None else None
            image, mask = image.astype(np.float32)[None] / dtype_range(image.dtype), mask[None]  # bit depths may differ
            if self.augment is not None:  # seeded by the patch, not the rank: N ranks draw what one process draws
                image, mask, weight = self.augment(image, mask, weight, batch_seed(self.seed, epoch, number, position))
            drawn.append([a[0, inner, inner] for a in (image, mask, weight) if a is not None])
        images, masks, *weights = (np.stack(arrays) for arrays in zip(*drawn))
        return host_batch(self.preprocess, images, masks, weights[0] if weights else None)

    def in_order(self) -> PatchSamples:
        return self
