"""What a network's output means, written once: logits -> probabilities -> hard masks.

One output channel is binary (sigmoid, threshold); K > 1 channels are classes (softmax, argmax),
unless `multilabel` makes each an independent sigmoid label. Everything that reads outputs asks this
module, on torch tensors or NumPy arrays alike, so it imports no torch: ONNX prediction runs without
it. Every function takes (N, K, H, W) arrays and anything with `num_classes` and `multilabel`.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import numpy as np

Array = TypeVar("Array")  # torch.Tensor or np.ndarray


class OutputSpec(Protocol):
    num_classes: int
    multilabel: bool


def uses_sigmoid(config: OutputSpec) -> bool:
    """True when every output channel is an independent probability (binary or multi-label)."""
    return config.num_classes == 1 or config.multilabel


def is_binary(config: OutputSpec) -> bool:
    """One foreground class against background: a threshold and the min-area / empty-mask rules apply."""
    return config.num_classes == 1 and not config.multilabel


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach")


def probabilities(logits: Array, config: OutputSpec) -> Array:
    """(N, K, H, W) logits -> probabilities: sigmoid per channel, or softmax over the K classes."""
    if _is_tensor(logits):
        return logits.sigmoid() if uses_sigmoid(config) else logits.softmax(1)  # type: ignore[attr-defined]
    from scipy.special import expit, softmax

    return (expit(logits) if uses_sigmoid(config) else softmax(logits, axis=1)).astype(np.float32)  # type: ignore[return-value]


def as_logits(probs: Array, config: OutputSpec, eps: float = 1e-7) -> Array:
    """The inverse of `probabilities` (up to clamping at eps): what losses and ensembles take.
    Clamping at 1e-7 is what Keras does before its cross-entropy on probabilities."""
    if _is_tensor(probs):
        return probs.clamp(eps, 1 - eps).logit() if uses_sigmoid(config) else probs.clamp(min=eps).log()  # type: ignore[attr-defined]
    clipped = np.clip(probs, eps, 1 - eps if uses_sigmoid(config) else 1.0)
    return (np.log(clipped / (1 - clipped)) if uses_sigmoid(config) else np.log(clipped)).astype(np.float32)  # type: ignore[return-value]


def hard_mask(probs: Array, config: OutputSpec, threshold: float = 0.5) -> Array:
    """(N, K, H, W) probabilities -> uint8 masks: (N, H, W) 0/1 (binary) or class indices (argmax),
    or (N, K, H, W) 0/1 for multi-label models."""
    if uses_sigmoid(config):  # binary: the one foreground channel; multi-label: every label
        mask: Any = (probs if config.multilabel else probs[:, 0]) > threshold  # type: ignore[index]
    else:
        mask = probs.argmax(1)  # type: ignore[attr-defined]
    return mask.byte() if _is_tensor(mask) else mask.astype(np.uint8)


def foreground(probs: Array, config: OutputSpec) -> Array:
    """The probability of "anything there", what thresholds are tuned on: (N, H, W) for binary and
    multi-class models (1 - background), (N * K, H, W) for multi-label ones (every label map)."""
    if config.multilabel:
        return probs.reshape(-1, *probs.shape[2:])  # type: ignore[attr-defined]
    return probs[:, 0] if config.num_classes == 1 else 1 - probs[:, 0]  # type: ignore[index]
