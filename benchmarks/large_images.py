"""Training on large images (issue 14): peak memory at 20000^2, patch pipeline against the bare step,
and patch training against whole-image training at equal time.

memory: `unetkit train` in a child process on a folder of 20000 x 20000 tiled TIFFs (one scene for
training, one for validation; thin curvilinear lines and bodies, 3 classes), patches of 256, one
epoch; the child's peak RSS (ru_maxrss) is the figure. Target: <= 2 GB.
throughput: on a set of 4096^2 TIFFs (read by region), `train_one_epoch` over PatchSamples (patch
reads, foreground centring, the seed recipe's flips, standardisation) against the same `train_step`
on patches already in memory, same batch, half measured before and half after. Target: ratio >= 0.9.
Opening the files and scanning their masks happens once per run and is reported apart.
quality: at equal wall time on scenes small enough to train whole (1024^2 by default), patch
training (256^2 patches) against whole-image training; validation IoU (foreground classes pooled)
of each on the same held-out scenes.

Last line: large_images: peak_rss_mb=M side=S pipeline=P ceiling=C ratio=R patch_iou=X whole_iou=Y
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unetkit.api import train
from unetkit.config import DataConfig, ModelConfig, TrainConfig
from unetkit.data.augment import augment_config
from unetkit.data.dataset import survey
from unetkit.data.loader import Batch, Batches
from unetkit.data.patch_batches import PatchSamples
from unetkit.data.patch_set import patch_set_of
from unetkit.data.preprocess import fit_preprocess
from unetkit.data.synthetic import write_large_synthetic
from unetkit.training.checkpoint import TrainState
from unetkit.training.loop import train_one_epoch
from unetkit.training.parts import build_parts
from unetkit.training.step import train_step

CLASSES = 3  # background, bodies, thin lines


def scenes(work: Path, name: str, n: int, side: int, seed: int) -> Path:
    """`n` synthetic scenes of side^2 in work/name, reused when an earlier run (same --work) wrote them."""
    folder = work / f"{name}_{n}x{side}_{seed}"
    if not (folder / "masks").is_dir() or len(list((folder / "masks").glob("*.tif"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        write_large_synthetic(folder, n, side=side, classes=CLASSES, seed=seed)
    return folder


def peak_memory(work: Path, side: int, patch: int, patches: int) -> float:
    """Peak RSS (MB) of `unetkit train` on two side x side scenes (one trains, one validates)."""
    data = scenes(work, "huge", 2, side, seed=7)
    shutil.rmtree(work / "huge_run", ignore_errors=True)
    command = [sys.executable, "-m", "unetkit", "-q", "train", "--data", str(data), "--out", str(work / "huge_run"),
               "--num-classes", str(CLASSES), "--patch-size", str(patch), "--epochs", "1", "--batch-size", "8",
               "--val-fraction", "0.5", "--device", "cpu", "--set", f"data.patches_per_epoch={patches}"]
    subprocess.run(command, check=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def throughput(work: Path, images: int, side: int, patch: int, batch_size: int, steps: int) -> tuple[float, float]:
    """(pipeline, ceiling) patches/s for the seed U-Net on `images` scenes of side^2 read by region."""
    data_dir = scenes(work, "throughput", images, side, seed=3)
    config = TrainConfig(batch_size=batch_size, model=ModelConfig(num_classes=CLASSES))
    parts = build_parts(config, steps_per_epoch=steps, resume=None, class_weights=None, device=torch.device("cpu"),
                        monitor="val_loss")
    shape = (batch_size, 1, patch, patch)
    bare = Batch(torch.randn(shape), torch.randint(0, CLASSES, (batch_size, patch, patch)), None)

    def ceiling(n: int) -> tuple[int, float]:
        started = time.perf_counter()
        for _ in range(n):
            train_step(parts, bare)
        return n * batch_size, time.perf_counter() - started

    started = time.perf_counter()
    patch_set = patch_set_of(survey(data_dir, 1, CLASSES, measure=False, show_progress=False), CLASSES)
    preprocess = fit_preprocess(patch_set.statistics_images(np.random.default_rng(0), patch, 32), normalize=True,
                                size_policy="pad", resize_to=128)
    print(f"throughput: {images} scenes of {side}^2 opened and their masks scanned in "
          f"{time.perf_counter() - started:.1f} s (once per run, before the first step)", flush=True)
    batches = Batches(PatchSamples(patch_set, preprocess, batch_size, patch_size=patch, foreground_share=0.33,
                                   patches_per_epoch=steps * batch_size, augment=augment_config("seed")), batch_size)
    ceiling(2)  # warm-up
    before, before_s = ceiling(steps // 2)
    started = time.perf_counter()
    _, seen, _ = train_one_epoch(parts, batches, 0, TrainState(), deadline=None)
    pipeline_s = time.perf_counter() - started
    after, after_s = ceiling(steps - steps // 2)
    return seen / pipeline_s, (before + after) / (before_s + after_s)


def quality(work: Path, images: int, side: int, patch: int, minutes: float) -> tuple[float, float]:
    """(patch IoU, whole IoU): validation IoU after `minutes` of each on the same scenes and split."""
    data_dir = scenes(work, "quality", images, side, seed=5)
    base = TrainConfig(data=DataConfig(data_dir=str(data_dir), val_fraction=0.25, augment="seed"), epochs=1000,
                       time_budget_min=minutes, early_stopping_patience=0, schedule=dataclasses.replace(
                           TrainConfig().schedule, name="cosine"),
                       model=ModelConfig(num_classes=CLASSES, start_neurons=8, batch_norm=True), runtime=dataclasses.replace(
                           TrainConfig().runtime, device="cpu"))
    figures = []
    for name, patch_size, batch in (("patch", patch, 8), ("whole", 0, 2)):
        shutil.rmtree(work / f"quality_{name}", ignore_errors=True)
        config = dataclasses.replace(base, out_dir=str(work / f"quality_{name}"), batch_size=batch,
                                     data=dataclasses.replace(base.data, patch_size=patch_size))
        result = train(config)
        figures.append(float(result.val_metrics["foreground_iou"] if "foreground_iou" in result.val_metrics
                             else result.val_metrics["iou"]))
        print(f"quality {name}: {result.val_metrics}  epochs {result.epochs_done}", flush=True)
    return figures[0], figures[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--huge-side", type=int, default=20000, help="side of the memory test's scenes (0: skip)")
    parser.add_argument("--side", type=int, default=4096, help="side of the throughput scenes")
    parser.add_argument("--images", type=int, default=12, help="throughput scenes")
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="throughput steps on each side")
    parser.add_argument("--quality-side", type=int, default=1024, help="side of the quality scenes (0: skip)")
    parser.add_argument("--quality-images", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=5.0, help="training time of each quality run")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        peak = peak_memory(work, args.huge_side, args.patch, 4 * args.batch_size) if args.huge_side else float("nan")
        print(f"memory: side={args.huge_side} peak_rss_mb={peak:.0f}", flush=True)
        pipeline, ceiling = throughput(work, args.images, args.side, args.patch, args.batch_size, args.steps)
        print(f"throughput: pipeline={pipeline:.2f} ceiling={ceiling:.2f} patches/s", flush=True)
        patch_iou, whole_iou = (quality(work, args.quality_images, args.quality_side, args.patch, args.minutes)
                                if args.quality_side else (float("nan"), float("nan")))
    print(f"large_images: peak_rss_mb={peak:.0f} side={args.huge_side} pipeline={pipeline:.2f} ceiling={ceiling:.2f} "
          f"ratio={pipeline / ceiling:.3f} patch_iou={patch_iou:.4f} whole_iou={whole_iou:.4f}")


if __name__ == "__main__":
    main()
