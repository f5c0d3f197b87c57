"""Losses on logits, for binary (K=1, sigmoid) and multi-class (K>1, softmax) outputs.

All take logits (B, K, H, W) and class-index targets (B, H, W) (or, multi-label, 0/1 targets (B, K, H, W) with an
independent sigmoid per channel) and return a scalar; an optional per-pixel weight map (B, H, W) scales each pixel's
term where the loss is a sum over pixels (cross-entropy, focal). Pixels equal to `ignore_index` count nowhere.

Written here rather than taken from segmentation_models.pytorch: these few functions are all unetkit needs from it,
and the same definitions must hold for weight maps, ignore_index and the binary/multi-class switch in every loss.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from unetkit.config import LossConfig
from unetkit.errors import UserError

LossFn = Callable[..., torch.Tensor]
DEFAULTS = LossConfig()  # the knobs when a loss is called without them (tests, benchmarks)


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if target.dim() == 4 and target.shape == logits.shape:  # multi-label
        return
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"expected logits (B, K, H, W) and target (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")


def _valid(target: torch.Tensor, ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(target with ignored pixels set to 0, float mask of pixels that count)."""
    if ignore_index is None:
        return target.long(), torch.ones_like(target, dtype=torch.float32)
    keep = target != ignore_index
    return torch.where(keep, target, 0).long(), keep.float()


def _pixel_weights(target: torch.Tensor, valid: torch.Tensor, weight_map: torch.Tensor | None,
                   options: LossConfig) -> torch.Tensor:
    """w(x) = w_c(x) + border(x): class weight of the true class plus the additive border term."""
    weights = torch.ones_like(valid)
    if options.class_weights is not None:
        weights = torch.tensor(options.class_weights, dtype=valid.dtype, device=valid.device)[target]
    if weight_map is not None:
        weights = weights + weight_map
    return weights * valid


def _mean_of(term: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, target: torch.Tensor,
             weight_map: torch.Tensor | None, options: LossConfig, ignore_index: int | None) -> torch.Tensor:
    """The mean of `term` of each pixel's cross-entropy (-log p_true): plain over multi-label channels,
    else weighted by `_pixel_weights` over the pixels that count."""
    if target.dim() == 4:  # multi-label: one binary cross-entropy per channel
        return term(F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")).mean()
    target, valid = _valid(target, ignore_index)
    if logits.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, target, reduction="none")
    weights = _pixel_weights(target, valid, weight_map, options)
    return (term(per_pixel) * weights).sum() / weights.sum().clamp(min=1e-6)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
                  options: LossConfig = DEFAULTS, ignore_index: int | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits for K=1 (the seed's loss), softmax cross-entropy for K>1; with `weight_map`
    the U-Net paper's weighted cross-entropy (see data/weights.py)."""
    _check(logits, target)
    if target.dim() == 4:  # multi-label: torch's own mean, whose gradient rounds once
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return _mean_of(lambda ce: ce, logits, target, weight_map, options, ignore_index)


def focal(logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
          options: LossConfig = DEFAULTS, ignore_index: int | None = None) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma, easy pixels fade."""
    _check(logits, target)
    return _mean_of(lambda ce: (1 - (-ce).exp()) ** options.focal_gamma * ce, logits, target, weight_map, options,
                    ignore_index)


def _soft_counts(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft (TP, FP, FN) per class over the batch: (K,) each, foreground only for K=1."""
    _check(logits, target)
    if target.dim() == 4:  # multi-label: every channel is its own foreground
        prob, truth = torch.sigmoid(logits), target.to(logits.dtype)
    else:
        target, valid = _valid(target, ignore_index)
        if logits.shape[1] == 1:
            prob = torch.sigmoid(logits[:, 0])[:, None]
            truth = target[:, None].to(prob.dtype)
        else:
            prob = torch.softmax(logits, dim=1)
            truth = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
        prob, truth = prob * valid[:, None], truth * valid[:, None]
    return (prob * truth).sum((0, 2, 3)), (prob * (1 - truth)).sum((0, 2, 3)), ((1 - prob) * truth).sum((0, 2, 3))


def _class_mean(per_class: torch.Tensor, options: LossConfig) -> torch.Tensor:
    if options.class_weights is None or len(per_class) == 1:
        return per_class.mean()
    weights = torch.tensor(options.class_weights, dtype=per_class.dtype, device=per_class.device)
    return (per_class * weights).sum() / weights.sum()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
                   options: LossConfig = DEFAULTS, ignore_index: int | None = None, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch per class (so empty images do not dominate)."""
    tp, fp, fn = _soft_counts(logits, target, ignore_index)
    return _class_mean(1 - (2 * tp + smooth) / (2 * tp + fp + fn + smooth), options)


def tversky(logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
            options: LossConfig = DEFAULTS, ignore_index: int | None = None, smooth: float = 1.0) -> torch.Tensor:
    """1 - Tversky index TP / (TP + alpha FP + beta FN): beta > alpha favours recall (small objects)."""
    tp, fp, fn = _soft_counts(logits, target, ignore_index)
    index = (tp + smooth) / (tp + options.tversky_alpha * fp + options.tversky_beta * fn + smooth)
    return _class_mean(1 - index, options)


def _lovasz_gradient(truth_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at sorted errors (Berman et al. 2018, alg. 1)."""
    total = truth_sorted.sum()
    intersection = total - truth_sorted.cumsum(0)
    union = total + (1 - truth_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz(logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None,
           options: LossConfig = DEFAULTS, ignore_index: int | None = None, *, elu: bool = False) -> torch.Tensor:
    """Lovász hinge per image (K=1, as the TGS winners used it) or Lovász-softmax (K>1).

    A convex surrogate that optimises IoU directly; best used to fine-tune after BCE. `elu` ("lovasz_elu"): the hinge
    on elu(x) + 1 instead of x, as several TGS top teams trained their second stage. elu(x) + 1 is positive and
    smooth: a background pixel's hinge error 1 + elu(x) + 1 never vanishes, so every background pixel keeps a (fading,
    as x -> -inf) push downwards, where the plain hinge stops at x = -1; foreground pixels see x + 1 for x > 0 (the
    hinge shifted by one). Sigmoid outputs only (binary, multi-label); softmax outputs get the plain Lovász-softmax.
    """
    _check(logits, target)
    if target.dim() == 4:  # multi-label: the hinge per (image, label) map
        flat = target.shape[0] * target.shape[1]
        return lovasz(logits.reshape(flat, 1, *logits.shape[2:]), target.reshape(flat, *target.shape[2:]), elu=elu)
    if elu and logits.shape[1] == 1:
        logits = F.elu(logits) + 1
    target, valid = _valid(target, ignore_index)
    losses = []
    for image in range(logits.shape[0]):
        keep = valid[image].flatten() > 0
        if logits.shape[1] == 1:
            truth = target[image].flatten()[keep].to(logits.dtype)
            errors_sorted, order = torch.sort(1 - logits[image, 0].flatten()[keep] * (2 * truth - 1), descending=True)
            losses.append(torch.dot(F.relu(errors_sorted), _lovasz_gradient(truth[order])))
        else:
            prob = torch.softmax(logits[image], dim=0).flatten(1)[:, keep]
            labels = target[image].flatten()[keep]
            per_class = []
            for cls in range(logits.shape[1]):
                truth = (labels == cls).to(prob.dtype)
                if truth.sum() == 0:
                    continue  # Lovász-softmax "present" classes only
                errors_sorted, order = torch.sort((truth - prob[cls]).abs(), descending=True)
                per_class.append(torch.dot(errors_sorted, _lovasz_gradient(truth[order])))
            losses.append(torch.stack(per_class).mean() if per_class else logits.sum() * 0)
    return torch.stack(losses).mean()


def _sum_of(*parts: LossFn) -> LossFn:
    return lambda *args, **kwargs: sum(part(*args, **kwargs) for part in parts)


LOSSES: dict[str, LossFn] = {
    "bce": cross_entropy,  # binary or softmax cross-entropy, by the number of classes
    "weighted_ce": cross_entropy,  # the same, with the paper's border weight map (data/weights.py)
    "dice": soft_dice_loss,
    "bce_dice": _sum_of(cross_entropy, soft_dice_loss),
    "focal": focal,
    "tversky": tversky,
    "lovasz": lovasz,
    "lovasz_elu": partial(lovasz, elu=True),  # the hinge on elu(x) + 1 (TGS winners' second stage)
    "bce_lovasz": _sum_of(cross_entropy, lovasz),
    "focal_dice": _sum_of(focal, soft_dice_loss),
}


# Losses whose pixels are weighted by the paper's border map (computed per training mask).
BORDER_WEIGHTED = frozenset({"weighted_ce"})


def get_loss(name: str, field: str = "loss.name") -> LossFn:
    """The loss function called `name`; an unknown name is one line naming `field` and the known losses."""
    if name not in LOSSES:
        raise UserError(f"config field '{field}': '{name}' is not one of {', '.join(LOSSES)}")
    return LOSSES[name]
