"""One optimiser step, and the objective it minimises.

The objective is the segmentation loss of the current stage on the logits, plus, for nets whose `training_outputs`
carry them (the encoder U-Net), the TGS winners' extra terms:
- deep supervision: the same segmentation loss on every auxiliary map, each weighted `loss.aux_weight`; with
  `loss.aux_nonempty_only` (default) on the images with foreground only, as the winners did: emptiness is the image
  head's question, and a coarse map learns shapes better when empty images do not pull it towards "nothing anywhere";
- the image-level head: binary cross-entropy of its logits (B, K) against "does class k (the foreground, for a binary
  model) occur in this image", weighted `loss.image_weight`.
Nets without `training_outputs` (the seed) take the path they always took: `forward`, then the loss on its logits,
with the same operations and so the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unetkit.config import LossConfig
from unetkit.data.loader import Batch
from unetkit.models.encoder_unet import SegmentationOutputs
from unetkit.runtime import log
from unetkit.training.checkpoint import TrainState
from unetkit.training.losses import LossFn
from unetkit.training.parts import Parts


def presence(masks: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """Which classes occur in each image, (B, K) float 0/1: the image head's target. masks (B, H, W) class indices
    (K = 1: "any foreground pixel"), or multi-label (B, K, H, W) 0/1."""
    if masks.dim() == 4:
        return masks.flatten(2).amax(2).gt(0).float()
    valid = masks != ignore_index if ignore_index is not None else torch.ones_like(masks, dtype=torch.bool)
    if num_classes == 1:
        return ((masks > 0) & valid).flatten(1).any(1, keepdim=True).float()
    classes = torch.arange(num_classes, device=masks.device).view(1, -1, 1, 1)
    return ((masks[:, None] == classes) & valid[:, None]).flatten(2).any(2).float()


def training_loss(outputs: torch.Tensor | SegmentationOutputs, masks: torch.Tensor, weights: torch.Tensor | None,
                  loss_fn: LossFn, options: LossConfig, ignore_index: int | None = None) -> torch.Tensor:
    """The objective of one batch: `loss_fn` on the logits (B, K, H, W), plus the deep-supervision and
    image-head terms when `outputs` carries them (see the module's docstring)."""
    if isinstance(outputs, torch.Tensor):  # a plain SegmentationNet: exactly the seed's path
        return loss_fn(outputs.float(), masks, weights)
    loss = loss_fn(outputs.logits.float(), masks, weights)
    if outputs.aux_logits:
        # The images with foreground, found once per step: finding them waits for the device, once.
        keep = (presence(masks, 1, ignore_index).amax(1) > 0).nonzero().squeeze(1) if options.aux_nonempty_only \
            else None
        loss = loss + options.aux_weight * sum(_aux_term(aux.float(), masks, weights, loss_fn, keep)
                                               for aux in outputs.aux_logits)
    if outputs.image_logit is not None:
        target = presence(masks, outputs.logits.shape[1], ignore_index)
        loss = loss + options.image_weight * F.binary_cross_entropy_with_logits(outputs.image_logit.float(), target)
    return loss


def _aux_term(aux: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None, loss_fn: LossFn,
              keep: torch.Tensor | None) -> torch.Tensor:
    """The segmentation loss on one auxiliary map, over the images at the indices `keep` (all when None)."""
    if keep is None:
        return loss_fn(aux, masks, weights)
    if not len(keep):
        return aux.sum() * 0.0  # no image with foreground: no term, but the heads stay in the graph (DDP)
    return loss_fn(aux[keep], masks[keep], weights[keep] if weights is not None else None)


def enter_stage(parts: Parts, state: TrainState, progress: float) -> None:
    """Switch to the second stage once `progress` reaches loss.second_at; never back (sticky in TrainState)."""
    options = parts.config.loss
    if options.second_name is None or state.stage == 2 or progress < options.second_at:
        parts.stage = state.stage
        return
    state.stage = parts.stage = 2
    lr = f", peak lr {options.second_lr:g}" if options.second_lr is not None else ""
    log.info("second stage from step %d (%.0f%% of the run): loss %s%s", state.steps, 100 * progress,
             options.second_name, lr)
    if options.second_lr is not None and not parts.schedule.active:  # plateau: continue from the new lr
        for group in parts.optimizer.param_groups:
            group["lr"] = options.second_lr


def stage_peak(parts: Parts) -> float | None:
    """The schedule's peak learning rate for the current stage (None: optim.lr)."""
    return parts.config.loss.second_lr if parts.stage == 2 else None


def train_step(parts: Parts, batch: Batch) -> torch.Tensor:
    """Forward, backward, (clip), optimiser step, EMA update; returns the batch loss (a 0-d tensor on
    the device, not read back, so the step does not wait for the GPU)."""
    if parts.device.type == "cuda" and batch.images.device.type == "cpu":  # page-locked: asynchronous copies
        batch = batch._replace(images=batch.images.pin_memory(), masks=batch.masks.pin_memory(),
                               weights=batch.weights.pin_memory() if batch.weights is not None else None)
    images = batch.images.to(parts.device, non_blocking=True, memory_format=torch.channels_last)
    masks = batch.masks.to(parts.device, non_blocking=True)
    weights = batch.weights.to(parts.device, non_blocking=True) if batch.weights is not None else None
    parts.optimizer.zero_grad(set_to_none=True)
    with parts.autocast():
        outputs = parts.forward(images)
    loss = training_loss(outputs, masks, weights, parts.train_loss_fn, parts.config.loss,
                         parts.config.data.ignore_index)
    scaled = loss * batch.loss_scale if batch.loss_scale != 1.0 else loss  # DDP averages the ranks' gradients
    (parts.scaler.scale(scaled) if parts.scaler is not None else scaled).backward()
    if parts.scaler is not None:
        parts.scaler.unscale_(parts.optimizer)
    if parts.config.optim.grad_clip:
        torch.nn.utils.clip_grad_norm_(parts.net.parameters(), parts.config.optim.grad_clip)
    if parts.scaler is not None:
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
    else:
        parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update_parameters(parts.net)
    return loss.detach()
