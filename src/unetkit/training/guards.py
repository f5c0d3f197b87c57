"""Checks a training run passes before it loads an image or writes a byte: where it writes, and
whether the sizes it was asked for can be held in this machine's memory.

They sit apart from the runner so that each refusal is one line a user can act on, made before
the run folder exists (a refused run leaves nothing behind to resume or to clean up).
"""

from __future__ import annotations

from pathlib import Path

from unetkit.config import TrainConfig
from unetkit.data.dataset import find_pairs
from unetkit.data.memory import check_side_fits
from unetkit.data.pairing import DataSource
from unetkit.errors import UserError
from unetkit.training.plan import BYTES_PER_PIXEL_PER_NEURON


def check_run_folder(config: TrainConfig) -> None:
    """The run folder may not be the data folder, nor lie inside a folder images or masks are read
    from: the run's files (config.yaml, samples, checkpoints) would sit among the images, and every
    later run on the folder would meet them as images without masks. A sibling folder such as
    DATA/runs/ is fine (the review page keeps its fine-tunes there)."""
    out = Path(config.out_dir).resolve()
    data = config.data
    root = Path(data.data_dir) if data.data_dir else None
    read = [("--data", folder) for folder in (root, root / "images", root / "masks", root / "labels")] if root else []
    read += [(flag, Path(folder)) for flag, folder in (("--images", data.images_dir), ("--masks", data.masks_dir),
                                                       ("--fov", data.fov_dir)) if folder]
    for flag, folder in read:
        inside = folder.resolve() in out.parents and not (root is not None and folder == root)
        if out == folder.resolve() or inside:
            raise UserError(f"{config.out_dir}: the run folder is {'' if out == folder.resolve() else 'inside '}"
                            f"{folder} ({flag}), where images or masks are read; choose an --out outside it")


def check_training_sizes(config: TrainConfig) -> None:
    """data.resize_to (resize) and data.pad_to (pad_crop) against the memory available, before any
    image is read. Lower bounds: the stacked resized set (float32 images and masks, held twice
    while stacked) plus one training step on one image; or one image and its mask padded."""
    data, channels = config.data, config.model.in_channels
    per_image = 2 * (4 * channels + 1)  # bytes per pixel of an image (float32) and its mask, twice while stacked
    if data.size_policy == "resize":
        count = len(find_pairs(DataSource.from_fields(data)))
        step = BYTES_PER_PIXEL_PER_NEURON * config.model.start_neurons  # bytes per pixel of one training step
        check_side_fits("data.resize_to", data.resize_to, count * per_image + step,
                        f"the {count} images resized and one training step")
    elif data.size_policy == "pad_crop":
        check_side_fits("data.pad_to", data.pad_to, per_image, "one image and its mask padded")
