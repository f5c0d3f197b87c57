"""Training throughput: the full pipeline against the bare network step, in one run.

pipeline: what `unetkit train` does for its first epoch, decoding of every file included:
load_labelled (decode + validate all images and masks) -> split -> preprocessing ->
ImageSamples in Batches (index, standardise, random flips) -> fwd + bwd + Adam step, through the
same `train_one_epoch` the trainer uses.
ceiling: the same model's fwd + bwd + Adam step on tensors already in memory, same batch
size, same threads, same number of steps.

Target (issue 3): pipeline >= 0.9 x ceiling on 2 CPU cores, i.e. data loading is never
the bottleneck. Uses ../shared/data/tgs-salt when present, else the synthetic set at the
TGS size (101 x 101). Last line: train_throughput: pipeline=X ceiling=Y ratio=Z (images/s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from unetkit.config import TrainConfig
from unetkit.data.augment import augment_config
from unetkit.data.dataset import load_labelled
from unetkit.data.loader import Batch, Batches, ImageSamples
from unetkit.data.pairing import find_pairs
from unetkit.data.preprocess import fit_preprocess
from unetkit.data.split import coverage_classes, stratified_split
from unetkit.data.synthetic import generate_synthetic
from unetkit.runtime import resolve_device
from unetkit.training.checkpoint import TrainState
from unetkit.training.loop import train_one_epoch
from unetkit.training.parts import Parts, build_parts
from unetkit.training.step import train_step

TGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tgs-salt"


def pipeline_epoch(data_dir: Path, parts: Parts, batch_size: int, max_images: int | None) -> tuple[int, float]:
    """(images trained, seconds) for decode-everything + one training epoch of the seed recipe."""
    config = TrainConfig()
    started = time.perf_counter()
    data = load_labelled(data_dir, 1, 1, show_progress=False)
    train_idx, _ = stratified_split(coverage_classes(data.coverage()), config.data.val_fraction, config.seed)
    if max_images:
        train_idx = train_idx[:max_images]
    train_set = data.subset(train_idx)
    preprocess = fit_preprocess(train_set.images, normalize=True, size_policy="pad", resize_to=128)
    batches = Batches(ImageSamples(train_set, preprocess, shuffle=True, augment=augment_config("seed"), seed=0), batch_size)
    _, seen, _ = train_one_epoch(parts, batches, 0, TrainState(), deadline=None)
    return seen, time.perf_counter() - started


def ceiling(parts: Parts, batch_size: int, size: int, steps: int) -> tuple[int, float]:
    """(images trained, seconds) for `steps` bare steps (the same train_step) on in-memory tensors."""
    batch = Batch(torch.randn(batch_size, 1, size, size), (torch.rand(batch_size, size, size) > 0.5).long(), None)
    parts.net.train()
    started = time.perf_counter()
    for _ in range(steps):
        train_step(parts, batch)
    return steps * batch_size, time.perf_counter() - started


def measure(data_dir: Path, batch_size: int, max_images: int | None) -> tuple[int, float, float]:
    """(images, pipeline images/s, ceiling images/s) for the seed model and recipe."""
    parts = build_parts(TrainConfig(batch_size=batch_size), steps_per_epoch=1, resume=None, class_weights=None,
                        device=resolve_device("auto"), monitor="val_loss")
    ceiling(parts, batch_size, 101, steps=3)  # warm-up: allocator, kernels
    images = max_images or round(len(find_pairs(data_dir)) * (1 - TrainConfig().data.val_fraction))
    steps = -(-images // batch_size)
    # The ceiling is measured half before and half after the pipeline, so drift in the machine's
    # speed during the run (other load, clocks) falls on both sides alike.
    before, before_s = ceiling(parts, batch_size, 101, steps=steps // 2)
    seen, pipeline_s = pipeline_epoch(data_dir, parts, batch_size, max_images)
    after, after_s = ceiling(parts, batch_size, 101, steps=steps - steps // 2)
    return seen, seen / pipeline_s, (before + after) / (before_s + after_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="labelled folder (default: TGS if present, else synthetic)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-images", type=int, default=None, help="cap the epoch (default: the whole training split)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data or (TGS if TGS.is_dir() else generate_synthetic(Path(scratch) / "syn", 1000, size=101))
        seen, pipeline_rate, ceiling_rate = measure(data_dir, args.batch_size, args.max_images)
    print(f"data: {data_dir}  threads: {torch.get_num_threads()}  batch: {args.batch_size}  images: {seen}")
    print(f"train_throughput: pipeline={pipeline_rate:.2f} ceiling={ceiling_rate:.2f} "
          f"ratio={pipeline_rate / ceiling_rate:.3f}")


if __name__ == "__main__":
    main()
