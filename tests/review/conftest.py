"""Review fixtures: a small image folder with masks, and a tiny random model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unetkit.data.io import write_png
from unetkit.data.masks import class_table
from unetkit.data.preprocess import identity_preprocess
from unetkit.data.synthetic import synthetic_example
from unetkit.export.model_file import save_model
from unetkit.models import UNet


def review_folder(root: Path, n: int, size: int, *, empty_masks: bool = False) -> Path:
    """root/images and root/masks: n synthetic examples (masks all background with `empty_masks`)."""
    for index in range(n):
        image, mask = synthetic_example(index, size=size, seed=7)
        write_png(root / "images" / f"img_{index:03d}.png", image)
        write_png(root / "masks" / f"img_{index:03d}.png", np.zeros_like(mask) if empty_masks else mask)
    return root


def tiny_model(path: Path, seed: int = 0) -> Path:
    """A random small binary U-Net as a unetkit model file, its output layer scaled so that the doubt
    scores differ from image to image."""
    torch.manual_seed(seed)
    net = UNet(start_neurons=4, depth=2)
    with torch.no_grad():  # spread the logits (std 3 on noise): probabilities from near 0 to near 1
        logits = net.eval()(torch.rand(1, 1, 32, 32)) - net.head.bias
        net.head.weight.mul_(3.0 / float(logits.std()))
        net.head.bias.copy_(-3.0 * logits.mean() / logits.std())
    save_model(path, net, identity_preprocess(1), threshold=0.5)
    return path


def classes_model(path: Path, data_dir: Path, num_classes: int, seed: int = 0) -> Path:
    """A random small multi-class U-Net as a unetkit model file, with the classes of data_dir/classes.yaml
    stored as `train` stores them."""
    torch.manual_seed(seed)
    save_model(path, UNet(start_neurons=4, depth=2, num_classes=num_classes), identity_preprocess(1),
               training={"classes": class_table(data_dir, num_classes)})
    return path
