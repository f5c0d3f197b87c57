"""The encoder U-Net (arch "unet"): a timm encoder, our decoder, the TGS winners' options.

Decoder: one `DecoderBlock` per encoder level below the deepest, then blocks without a skip down to stride 1 (one
for a ResNet, two for a ConvNeXt, whose first map is at stride 4). The block ending at stride s has
`model.start_neurons * s` channels: with the default 16, smp's decoder widths (256 ... 16), and the seed U-Net's
meaning ("filters at the first level, doubled every level down"). Options (config.py says what each adds): scSE
attention, hypercolumn (finest first), deep supervision (a 1x1 head on every block but the last, read by
`training_outputs`) and a classification head whose probability, with `image_gate`, gates what `forward` predicts
(`gate_logits`). The head is 1x1 (smp's is 3x3). No dropout: the winners' decoders had none; batch norm regularises.

The gate lives in the logits rather than in a second output so that every path that averages, stitches or exports
per-pixel maps (tiling, TTA, ensembles, ONNX) carries it without knowing of it."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config import ModelConfig
from unetkit.errors import UserError
from unetkit.models.base import SegmentationNet, pad_to_multiple
from unetkit.models.blocks import DecoderBlock
from unetkit.outputs import uses_sigmoid

ATTENTIONS = ("none", "scse")  # model.attention


class SegmentationOutputs(NamedTuple):
    """Everything the net predicts for training, all cropped to the input's (H, W)."""

    logits: torch.Tensor  # (B, K, H, W), what `forward` returns
    aux_logits: list[torch.Tensor]  # deep supervision: (B, K, H, W) per decoder level, deepest first; [] when off
    image_logit: torch.Tensor | None  # (B, K) image-level logits with classification_head, else None


class EncoderUNet(SegmentationNet):
    """U-Net on a timm encoder: (B, in_channels, H, W) of any H, W -> logits (B, num_classes, H, W)."""

    OPTIONS = frozenset({"encoder", "pretrained", "start_neurons", "attention", "hypercolumn", "deep_supervision",
                         "classification_head", "image_gate"})

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "unet":
            raise ValueError(f"EncoderUNet builds arch 'unet', not {config.arch!r}; use models.build_model")
        if config.attention not in ATTENTIONS:
            raise UserError(f"config field 'model.attention': '{config.attention}' is not one of {', '.join(ATTENTIONS)}")
        from unetkit.models.timm_encoder import create_encoder, encoder_mean_std  # timm only when needed

        self.config = config
        self.encoder = create_encoder(config)
        channels: list[int] = self.encoder.feature_info.channels()
        reductions: list[int] = self.encoder.feature_info.reduction()
        # Per-channel (mean, std) of [0, 1] pixels the pretrained encoder expects (ImageNet's for most),
        # fitted to in_channels; meaningful only when `model.pretrained` is not "none".
        self.input_mean_std = encoder_mean_std(self.encoder, config.in_channels)

        blocks, widths, self.strides = [], [], []  # output width and stride of each decoder block
        width, stride = channels[-1], reductions[-1]
        targets = [(reductions[level], channels[level]) for level in reversed(range(len(channels) - 1))]
        while stride > 1:
            target, skip = targets.pop(0) if targets else (stride // 2, 0)
            if target < 1 or stride % target:
                raise UserError(f"config field 'model.encoder': '{config.encoder}' has feature strides "
                                f"{reductions}; the decoder needs each to divide the next")
            out = config.start_neurons * target
            blocks.append(DecoderBlock(width, skip, out, scale=stride // target, scse=config.attention == "scse"))
            width, stride = out, target
            widths.append(width)
            self.strides.append(stride)
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(sum(widths) if config.hypercolumn else width, config.num_classes, kernel_size=1)
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(w, config.num_classes, kernel_size=1) for w in widths[:-1]) if config.deep_supervision else None
        self.image_head = nn.Linear(channels[-1], config.num_classes) if config.classification_head else None

    @property
    def multiple(self) -> int:
        """The encoder's largest reduction (32 for ResNets, EfficientNets, ConvNeXts)."""
        return max(self.encoder.feature_info.reduction())

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, H, W), H and W multiples of `multiple` -> deepest encoder map (B, C_deep, H/32, W/32)
        and every decoder block's output, deepest first, the last at (B, start_neurons, H, W)."""
        features = self.encoder(x)
        skips = features[-2::-1]
        y, outputs = features[-1], []
        for level, block in enumerate(self.decoder):
            y = block(y, skips[level] if level < len(skips) else None)
            outputs.append(y)
        return features[-1], outputs

    def _segmentation_head(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """Decoder outputs -> logits (B, K, H, W); hypercolumn: all levels upsampled and concatenated."""
        if not self.config.hypercolumn:
            return self.head(outputs[-1])
        levels = [outputs[-1]] + [F.interpolate(y, scale_factor=s, mode="bilinear", align_corners=False)
                                  for y, s in zip(reversed(outputs[:-1]), reversed(self.strides[:-1]))]
        return self.head(torch.cat(levels, dim=1))

    def _image_logits(self, deepest: torch.Tensor) -> torch.Tensor | None:
        """(B, K) image-level logits from the deepest encoder map's global average; None without the head."""
        return self.image_head(deepest.mean(dim=(2, 3))) if self.image_head is not None else None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        deepest, outputs = self._decode(x)
        logits = self._segmentation_head(outputs)
        image = self._image_logits(deepest) if self.config.image_gate else None
        return logits if image is None else gate_logits(logits, image, exclusive=not uses_sigmoid(self.config))

    def training_outputs(self, x: torch.Tensor) -> SegmentationOutputs:
        """(B, C, H, W) of any H, W -> logits, deep-supervision logits and image logits (SegmentationOutputs),
        padded and cropped as `forward` does; `logits` equals `forward(x)` but for the image gate, which
        is left out so that the pixel loss and the image loss each train their own head."""
        x, crop = pad_to_multiple(x, self.multiple)
        deepest, outputs = self._decode(x)
        aux = [crop(F.interpolate(head(y), scale_factor=s, mode="bilinear", align_corners=False))
               for head, y, s in zip(self.aux_heads, outputs, self.strides)] if self.aux_heads is not None else []
        return SegmentationOutputs(crop(self._segmentation_head(outputs)), aux, self._image_logits(deepest))


def gate_logits(logits: torch.Tensor, image_logits: torch.Tensor, *, exclusive: bool) -> torch.Tensor:
    """Pixel logits (B, K, H, W) gated by image logits (B, K): the logits whose probabilities are the pixel's times
    the image's. Sigmoid outputs: logit(sigmoid(a) * sigmoid(c)), from softplus alone so that it is exact for any a, c
    (a confident head leaves `a`; one sure of "nothing here" drives every pixel below any threshold) and exports to
    ONNX as it stands. Softmax outputs: every foreground class k >= 1 gets log sigmoid(c_k) added before the softmax,
    so an absent class gives its pixels to the others."""
    c = image_logits[:, :, None, None]
    if exclusive:
        return torch.cat([logits[:, :1], logits[:, 1:] - F.softplus(-c[:, 1:])], dim=1)
    # log p = logsig(a) + logsig(c); log(1 - p) = logaddexp(logsig(-a), logsig(a) + logsig(-c))
    log_p = -F.softplus(-logits) - F.softplus(-c)
    first, second = -F.softplus(logits), -F.softplus(-logits) - F.softplus(c)
    log_not_p = first + F.softplus(second - first)
    return log_p - log_not_p
