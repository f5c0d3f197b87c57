"""Batch augmentation applied identically to images and masks.

The seed recipe needs only random horizontal flips, which is one `torch.where` on the
batch already in memory: cheaper than any library round trip. Richer augmentation
(elastic, affine, photometric) is the job of a library and comes with its own module.
"""

from __future__ import annotations

import numpy as np
import torch


def random_hflip(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample left-right with probability 0.5: images (B, C, H, W), masks (B, H, W)."""
    flip = torch.from_numpy(rng.random(images.shape[0]) < 0.5)
    if not flip.any():
        return images, masks
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    masks = torch.where(flip.view(-1, 1, 1), masks.flip(-1), masks)
    return images, masks
