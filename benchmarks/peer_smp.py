"""The peer of benchmarks/quality.py: an smp U-Net trained as its users train it, predicted as unetkit predicts.

segmentation_models_pytorch (smp 0.6.0, a benchmark-only dependency) is installed like timm,
`pip install --no-deps segmentation-models-pytorch==0.6.0`, and imported under the torchvision
stand-in unetkit imports timm with (models/timm_encoder.py). smp needs more of torchvision than
timm does: its resnet encoders subclass `torchvision.models.resnet.ResNet` and build it from
`BasicBlock`, so `torchvision.models.resnet` is added here with a faithful copy of those two
(torchvision's code, line for line: same layers, names and initialisation, so the network and its
state dict are smp's `Unet("resnet18")`); the names of its other encoders (DenseNet, VGG,
MobileNetV2, Bottleneck) are bound to classes that say they need torchvision.

Training, as the plain smp recipe reads (`PeerConfig`): `smp.Unet("resnet18", encoder_weights=None)`,
images scaled to [0, 1] and standardised with ImageNet's statistics (smp's preprocessing for the
encoder), a random crop of `crop` pixels per image per epoch (images smaller than that padded by
reflection, as albumentations' PadIfNeeded does) with a random one of the eight flips and quarter
turns, batches of 8 in random order, Adam at its own default rate with a cosine decay laid over the
time budget (checked between steps), BCE + Dice (multi-class: cross-entropy + Dice, both skipping
the ignored value, smp's losses), no validation, the last weights.

Prediction (`PeerEngine`): a unetkit PredictionEngine, so `evaluate`'s scoring path
(inference/evaluation.py's run_evaluation) scores the peer exactly as it scores a unetkit model:
whole images reflected up to a multiple of 32 and cropped back; images over `PREDICT_TILE`
through unetkit's sliding window; sigmoid and 0.5, or softmax and argmax.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config import InferenceOptions, ModelConfig
from unetkit.data.dataset import load_pair
from unetkit.data.masks import read_class_palette
from unetkit.data.pairing import find_pairs
from unetkit.data.preprocess import Preprocess
from unetkit.inference.engine import PredictionEngine
from unetkit.inference.tta import averaged
from unetkit.models.timm_encoder import NeedsTorchvision, torchvision_stand_in
from unetkit.outputs import probabilities
from unetkit.runtime import resolve_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE = 32  # smp's U-Net halves five times: inputs must be multiples of this
PREDICT_TILE = 1024  # larger images are predicted by unetkit's sliding window of this side
WEIGHTS = "peer.safetensors"


@dataclass(frozen=True)
class PeerConfig:
    """How the peer trains: smp's plain recipe (see the module docstring)."""

    encoder: str = "resnet18"
    crop: int = 256  # random crops of this side (smaller images: the side rounded up to a multiple of 32)
    batch_size: int = 8
    lr: float = 1e-3  # Adam's default, decayed by a cosine to 0 over the budget


# ---- smp, imported under the torchvision stand-in ----

def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups, bias=False,
                     dilation=dilation)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock: (B, inplanes, H, W) -> (B, planes, H / stride, W / stride)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, norm_layer: Any = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.resnet.ResNet (its layers, names and initialisation; smp drops fc and avgpool)."""

    def __init__(self, block: type[nn.Module], layers: list[int], num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64,
                 replace_stride_with_dilation: list[bool] | None = None, norm_layer: Any = None) -> None:
        super().__init__()
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes, self.dilation = 64, 1
        dilate = replace_stride_with_dilation or [False, False, False]
        if len(dilate) != 3:
            raise ValueError(f"replace_stride_with_dilation should be None or a 3-element tuple, got {dilate}")
        self.groups, self.base_width = groups, width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)  # type: ignore[attr-defined]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: Any, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        norm_layer, downsample, previous_dilation = self._norm_layer, None, self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation,
                        norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width, dilation=self.dilation,
                         norm_layer=norm_layer) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _models_stand_in() -> dict[str, types.ModuleType]:
    """torchvision.models and the submodules smp's encoders import from."""
    modules = {name: types.ModuleType(name) for name in (
        "torchvision.models", "torchvision.models.resnet", "torchvision.models.densenet", "torchvision.models.vgg")}
    resnet = modules["torchvision.models.resnet"]
    resnet.ResNet, resnet.BasicBlock = ResNet, BasicBlock  # type: ignore[attr-defined]
    resnet.Bottleneck = type("Bottleneck", (NeedsTorchvision, nn.Module), {"expansion": 4})  # type: ignore[attr-defined]
    modules["torchvision.models.densenet"].DenseNet = type("DenseNet", (NeedsTorchvision, nn.Module), {})  # type: ignore[attr-defined]
    modules["torchvision.models.vgg"].VGG = type("VGG", (NeedsTorchvision, nn.Module), {})  # type: ignore[attr-defined]
    modules["torchvision.models.vgg"].make_layers = NeedsTorchvision  # type: ignore[attr-defined]
    modules["torchvision.models"].MobileNetV2 = type("MobileNetV2", (NeedsTorchvision, nn.Module), {})  # type: ignore[attr-defined]
    return modules


def import_smp() -> types.ModuleType:
    """segmentation_models_pytorch; SystemExit with the install line when it is missing."""
    if sys.modules.get("segmentation_models_pytorch") is not None:
        return sys.modules["segmentation_models_pytorch"]
    try:
        with torchvision_stand_in(_models_stand_in()):
            import segmentation_models_pytorch as smp
    except ImportError as exc:
        if exc.name != "segmentation_models_pytorch":
            raise
        raise SystemExit("quality: the smp peer needs segmentation_models_pytorch: "
                         "pip install --no-deps segmentation-models-pytorch==0.6.0") from None
    return smp


def build_net(config: PeerConfig, num_classes: int) -> nn.Module:
    """smp.Unet(encoder, encoder_weights=None): (B, 3, H, W) -> (B, num_classes, H, W) logits, H and W multiples of 32."""
    return import_smp().Unet(config.encoder, encoder_weights=None, in_channels=3, classes=num_classes)


# ---- training ----

def _standardised(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) raw pixels -> (N, 3, H, W) float32, scaled by the bit depth and standardised as ImageNet."""
    scale = float(np.iinfo(images.dtype).max) if np.issubdtype(images.dtype, np.integer) else 1.0
    x = torch.from_numpy(np.ascontiguousarray(images, np.float32) / scale).permute(0, 3, 1, 2)
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _padded_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, ...) reflected at the bottom and right up to at least (height, width)."""
    pad = [(0, max(height - array.shape[0], 0)), (0, max(width - array.shape[1], 0))] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, mode="reflect" if max(pad[0][1], pad[1][1]) < min(array.shape[:2]) else "symmetric")


def _sample(image: np.ndarray, mask: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random crop x crop window of (H, W, 3) and (H, W), under a random one of the square's eight symmetries."""
    image, mask = _padded_to(image, crop, crop), _padded_to(mask, crop, crop)
    y, x = rng.integers(0, image.shape[0] - crop + 1), rng.integers(0, image.shape[1] - crop + 1)
    image, mask = image[y:y + crop, x:x + crop], mask[y:y + crop, x:x + crop]
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    image, mask = np.rot90(image, turns), np.rot90(mask, turns)
    if flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    return image, mask


def _loss(logits: torch.Tensor, masks: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """BCE + Dice (binary) or cross-entropy + Dice (classes), smp's Dice."""
    losses = import_smp().losses
    if num_classes == 1:
        target = masks.float().unsqueeze(1)
        return F.binary_cross_entropy_with_logits(logits, target) + losses.DiceLoss("binary")(logits, target)
    ce = F.cross_entropy(logits, masks.long(), ignore_index=-100 if ignore_index is None else ignore_index)
    return ce + losses.DiceLoss("multiclass", ignore_index=ignore_index)(logits, masks.long())


def train_peer(train_dir: Path, out: Path, *, num_classes: int, ignore_index: int | None, budget_min: float,
               seed: int, config: PeerConfig = PeerConfig(), max_epochs: int | None = None,
               device: str = "auto") -> dict[str, Any]:
    """Train the peer on the labelled folder `train_dir` for `budget_min` minutes (at least one step;
    at most `max_epochs` epochs) on `device`; its last weights go to out/WEIGHTS. Returns epochs, steps,
    the crop side and the minutes spent (loading included)."""
    from safetensors.torch import save_file

    started = time.monotonic()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    palette = read_class_palette(train_dir, num_classes, ignore_index)
    data = [load_pair(pair, 3, num_classes, ignore_index, palette) for pair in find_pairs(train_dir)]
    side = min(min(image.shape[:2]) for image, _ in data)
    crop = min(config.crop, math.ceil(side / STRIDE) * STRIDE)
    place = resolve_device(device)
    net = build_net(config, num_classes).to(place).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    budget_s, epochs, steps = budget_min * 60, 0, 0
    training_started = time.monotonic()
    while max_epochs is None or epochs < max_epochs:
        order = rng.permutation(len(data))
        for first in range(0, len(order), config.batch_size):
            progress = (time.monotonic() - training_started) / budget_s
            if progress >= 1 and steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            batch = [_sample(*data[i], crop, rng) for i in order[first:first + config.batch_size]]
            images = _standardised(np.stack([image for image, _ in batch])).to(place)
            masks = torch.from_numpy(np.stack([mask for _, mask in batch]).astype(np.int64)).to(place)
            optimizer.zero_grad(set_to_none=True)
            _loss(net(images), masks, num_classes, ignore_index).backward()
            optimizer.step()
            steps += 1
        else:
            epochs += 1
            continue
        break
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / f".{WEIGHTS}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(temporary))
    os.replace(temporary, out / WEIGHTS)
    return {"epochs": epochs, "steps": steps, "crop": crop, "minutes": (time.monotonic() - started) / 60}


# ---- prediction ----

@dataclass(frozen=True)
class PeerModel:
    """What unetkit's prediction needs to know of the peer (inference/engine.py's AppliedModel)."""

    config: ModelConfig
    preprocess: Preprocess
    threshold: float
    postprocess: dict[str, int]
    training: dict[str, Any]
    classes: list[dict[str, Any]]


class PeerEngine(PredictionEngine):
    """The peer network behind unetkit's engine: batching, sliding window, TTA and masks are unetkit's."""

    def __init__(self, out: Path, *, num_classes: int, ignore_index: int | None, options: InferenceOptions,
                 config: PeerConfig = PeerConfig()) -> None:
        from safetensors.torch import load_file

        model = ModelConfig(in_channels=3, num_classes=num_classes)
        saved = PeerModel(model, Preprocess(IMAGENET_MEAN, IMAGENET_STD), 0.5, {},
                          {"config": {"data": {"ignore_index": ignore_index}}}, [])
        super().__init__(saved, dataclasses.replace(options, tile=options.tile or PREDICT_TILE))
        self.device = resolve_device(options.device)
        self.net = build_net(config, num_classes)
        self.net.load_state_dict(load_file(str(out / WEIGHTS)))
        self.net.to(self.device).eval()

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) raw images -> (N, 3, H, W) standardised float32 on the device."""
        return _standardised(images).to(self.device)

    @torch.inference_mode()
    def network(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """(N, 3, H, W) from `prepare` -> (N, K, H, W) float32 probabilities on the device (padded to the
        encoder's stride for the network, cropped back)."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % STRIDE, -width % STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if max(pad_h, pad_w) < min(height, width) else "replicate")

        def finish(logits: torch.Tensor) -> torch.Tensor:
            return probabilities(logits[..., :height, :width].float(), self.saved.config)

        return averaged(self.net, x, self.tta, finish)
