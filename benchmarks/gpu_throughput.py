"""The GPU fast path against fp32 eager PyTorch, training and inference, in one run.

fp32 eager: the seed U-Net in PyTorch's default memory layout, fp32, a plain training step
(forward, BCE, backward, Adam) on batches copied to the device as a user's loop would. fast:
unetkit's own `train_step` with the parts `unetkit train` builds on this device (bf16 autocast
where the GPU has it, else fp16 with a grad scaler; channels_last; pinned memory and non-
blocking copies; `--compile` adds torch.compile). Both train on the same 256 x 256 crops, batch
32 (issue 6), fed by unetkit's ImageSamples (standardisation and flips, or --augment strong,
on the CPU): in the caller's thread for the reference, in the threads `unetkit train` uses on
this device for the fast path. A CPU that cannot keep up shows as a ceiling: `loader` is the
iterator alone, in images/s. The
reference keeps PyTorch's defaults, TF32 convolutions on Ampere and later included, so the
speed-up is not flattered by a slow fp32. Inference: a batch of 256 x 256 tiles through the
network in fp32 eager against `Predictor` (precision auto). Runs on the CPU too (where the fast
path is channels_last alone); the target (fast >= 3 x fp32 eager for training) is for CUDA
GPUs. Augmentation alone: the `strong` pipeline at the same shape and batch through
ImageSamples (albumentations on the CPU, in the caller's thread) against DeviceSamples
(data/device_augment.py's torch ops on this device, the set held there), images/s.

Last line: gpu_throughput: device=NAME fp32_train=X fast_train=Y train_speedup=Z fp32_infer=U
fast_infer=V cpu_augment=A device_augment=D augment_ratio=D/A (images/s).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from unetkit.config import DataConfig, InferenceOptions, ModelConfig, RuntimeConfig, TrainConfig
from unetkit.data.augment import augment_config
from unetkit.data.dataset import LabelledSet
from unetkit.data.device_batches import DeviceSamples
from unetkit.data.loader import Batch, Batches, ImageSamples, default_workers
from unetkit.data.preprocess import identity_preprocess
from unetkit.export.model_file import SavedModel
from unetkit.inference.predictor import Predictor
from unetkit.models import UNet
from unetkit.runtime import resolve_device
from unetkit.training.parts import build_parts
from unetkit.training.step import train_step


def crops(n: int, size: int) -> LabelledSet:
    """n random 8-bit crops with blob masks: the pixels do not matter for speed, only their shapes."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 1), dtype=np.uint8)
    masks = (rng.random((n, size, size)) > 0.5).astype(np.uint8)
    return LabelledSet([str(i) for i in range(n)], images, masks, [])


def endless(batches: Batches) -> Iterator[Batch]:
    epoch = 0
    while True:
        yield from batches.epoch(epoch)
        epoch += 1


def default_layout(x: torch.Tensor) -> torch.Tensor:
    """x with PyTorch's default (N, C, H, W) strides. Batches arrive as a permuted view of (N, H, W, C)
    pixels, and with one channel such a view counts as contiguous and channels-last at once, so
    convolutions would take the channels-last path; the reference must not."""
    return torch.empty(x.shape, dtype=x.dtype).copy_(x)


def rate(step: Callable[[], None], images_per_step: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images per second over `steps` calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * images_per_step / (time.perf_counter() - started)


def eager_train_rate(batches: Iterator[Batch], device: torch.device, batch_size: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    net = UNet().to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> None:
        batch = next(batches)
        images, masks = default_layout(batch.images).to(device), batch.masks.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(images)[:, 0], masks.float())
        loss.backward()
        optimizer.step()

    return rate(step, batch_size, steps, warmup, device)


def fast_train_rate(batches: Iterator[Batch], config: TrainConfig, steps: int, warmup: int) -> float:
    parts = build_parts(config, steps_per_epoch=steps + warmup, resume=None, class_weights=None,
                        device=resolve_device(config.runtime.device), monitor="val_loss")
    parts.net.train()
    return rate(lambda: train_step(parts, next(batches)), config.batch_size, steps, warmup, parts.device)


def infer_rates(device_name: str, batch_size: int, size: int, steps: int, warmup: int) -> tuple[float, float]:
    torch.manual_seed(0)
    saved = SavedModel(UNet().eval(), identity_preprocess(1))
    tiles = np.random.default_rng(1).integers(0, 255, (batch_size, size, size, 1), dtype=np.uint8)
    device = resolve_device(device_name)
    eager = UNet().to(device).eval()
    eager.load_state_dict(saved.net.state_dict())

    @torch.inference_mode()
    def eager_step() -> None:
        torch.sigmoid(eager(default_layout(saved.preprocess.to_tensor(tiles)).to(device)))

    torch.backends.cudnn.benchmark = False  # PyTorch's default for the reference (build_parts turned it on)
    fp32 = rate(eager_step, batch_size, steps, warmup, device)
    predictor = Predictor(saved, InferenceOptions(device=device_name, batch_size=batch_size, tile=size))
    fast = rate(lambda: predictor.forward(tiles), batch_size, steps, warmup, device)
    return fp32, fast


def augment_rates(data: LabelledSet, device: torch.device, batch_size: int, steps: int,
                  warmup: int) -> tuple[float, float]:
    """images/s of the `strong` pipeline: albumentations (ImageSamples, the CPU, one thread) and
    DeviceSamples on `device`; both cut, augment and standardise, neither trains."""
    strong = augment_config("strong")
    on_cpu = endless(Batches(ImageSamples(data, identity_preprocess(1), shuffle=True, augment=strong, seed=0), batch_size))
    cpu = rate(lambda: next(on_cpu), batch_size, steps, 1, torch.device("cpu"))
    held = endless(Batches(DeviceSamples(data, identity_preprocess(1), shuffle=True, device=device, augment=strong,
                                         seed=0), batch_size))
    return cpu, rate(lambda: next(held), batch_size, steps, warmup, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="fast path with torch.compile (longer warm-up)")
    parser.add_argument("--augment", default="seed", choices=("seed", "strong"),
                        help="the pipeline feeding both (strong: elastic, affine, ...; shows when the CPU limits)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "cpu"
    data = crops(4 * args.batch_size, args.size)
    config = TrainConfig(batch_size=args.batch_size, runtime=RuntimeConfig(device=args.device, compile=args.compile),
                         model=ModelConfig(), data=DataConfig(augment=args.augment))

    def feed(workers: int = 0) -> Iterator[Batch]:
        return endless(Batches(ImageSamples(data, identity_preprocess(1), shuffle=True, augment=augment_config(args.augment),
                                            seed=0), args.batch_size, workers=workers))

    workers = default_workers(device.type)  # what `unetkit train` uses on this device
    batches = feed(workers)
    loader = rate(lambda: next(batches), args.batch_size, args.steps, 1, torch.device("cpu"))
    fp32_train = eager_train_rate(feed(), device, args.batch_size, args.steps, args.warmup)
    fast_train = fast_train_rate(feed(workers), config, args.steps, args.warmup + (20 if args.compile else 0))
    fp32_infer, fast_infer = infer_rates(args.device, args.batch_size, args.size, args.steps, args.warmup)
    cpu_augment, device_augment = augment_rates(data, device, args.batch_size, args.steps, args.warmup)
    print(f"loader (ImageSamples alone, {args.augment} augmentation, {workers} threads): {loader:.1f} images/s")
    print(f"training, {args.size}x{args.size} batch {args.batch_size}: fp32 eager {fp32_train:.1f} images/s, "
          f"fast path {fast_train:.1f} images/s (amp {config.runtime.amp}, channels_last, compile {args.compile})")
    print(f"inference, {args.size}x{args.size} batch {args.batch_size}: fp32 eager {fp32_infer:.1f} images/s, "
          f"Predictor {fast_infer:.1f} images/s")
    print(f"augmentation (strong), {args.size}x{args.size} batch {args.batch_size}: albumentations on the CPU "
          f"{cpu_augment:.1f} images/s, device pipeline on {name} {device_augment:.1f} images/s "
          f"({device_augment / cpu_augment:.2f}x)")
    print(f"gpu_throughput: device={name} fp32_train={fp32_train:.1f} fast_train={fast_train:.1f} "
          f"train_speedup={fast_train / fp32_train:.2f} fp32_infer={fp32_infer:.1f} fast_infer={fast_infer:.1f} "
          f"cpu_augment={cpu_augment:.1f} device_augment={device_augment:.1f} "
          f"augment_ratio={device_augment / cpu_augment:.2f}")


if __name__ == "__main__":
    main()
