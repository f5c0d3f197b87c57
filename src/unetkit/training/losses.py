"""Losses on logits, for binary (K=1, sigmoid) and multi-class (K>1, softmax) outputs.

All take logits (B, K, H, W) and class-index targets (B, H, W) and return a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"expected logits (B, K, H, W) and target (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits for K=1 (the seed's loss), softmax cross-entropy for K>1."""
    _check(logits, target)
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    return F.cross_entropy(logits, target.long())


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, computed over the whole batch per class (so empty images do not dominate)."""
    _check(logits, target)
    if logits.shape[1] == 1:
        prob = torch.sigmoid(logits[:, 0])
        truth = target.to(prob.dtype)
        intersection = (prob * truth).sum()
        return 1 - (2 * intersection + smooth) / (prob.sum() + truth.sum() + smooth)
    prob = torch.softmax(logits, dim=1)
    truth = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
    intersection = (prob * truth).sum((0, 2, 3))
    per_class = (2 * intersection + smooth) / (prob.sum((0, 2, 3)) + truth.sum((0, 2, 3)) + smooth)
    return 1 - per_class.mean()


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice, equally weighted."""
    return cross_entropy(logits, target) + soft_dice_loss(logits, target)


LOSSES: dict[str, LossFn] = {"bce": cross_entropy, "dice": soft_dice_loss, "bce_dice": bce_dice}


def get_loss(name: str) -> LossFn:
    """The loss function called `name` (validated by TrainConfig)."""
    return LOSSES[name]
