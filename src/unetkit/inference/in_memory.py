"""`unetkit.load_model(path)`: a model file that predicts NumPy arrays in memory (`predict`: masks with the stored
threshold and post-processing, `probabilities`: the maps) through the same `Predictor` (batching, tiles, TTA) and
channel rules as image files, so a mask from memory equals the one `unetkit predict` writes for the same pixels."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from unetkit.config import InferenceOptions
from unetkit.data.io import check_finite, to_channels
from unetkit.errors import UserError
from unetkit.export.model_file import SavedModel
from unetkit.inference.predictor import Predictor

_OPTIONS = frozenset(f.name for f in dataclasses.fields(InferenceOptions))


class LoadedModel:
    """A SavedModel (`.net`, `.preprocess`, `.threshold`, `.postprocess`, `.classes`, `.config`)
    with in-memory prediction. Images: (H, W) or (H, W, C) for one, (N, H, W) or (N, H, W, C) for a
    batch of one size, or a list of such images of any sizes; channels last."""

    def __init__(self, saved: SavedModel) -> None:
        self.saved = saved
        self._predictors: dict[InferenceOptions, Predictor] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "saved":  # not yet set (unpickling, copy): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.saved, name)

    def probabilities(self, images: np.ndarray | list[np.ndarray], **options: Any) -> np.ndarray | list[np.ndarray]:
        """Probability maps (K, H, W) float32 per image: (K, H, W) for one image, (N, K, H, W) for a
        batch, a list for a list. `options` are InferenceOptions fields (tile, tta, batch_size, ...)."""
        return self._run(images, options, lambda _, prob: prob)

    def predict(self, images: np.ndarray | list[np.ndarray], **options: Any) -> np.ndarray | list[np.ndarray]:
        """Masks at each image's size, as `unetkit predict` decides them: (H, W) uint8 0/1 for a binary model, class
        indices for several classes, (K, H, W) 0/1 for several labels; stacked for a batch, a list for a list."""
        return self._run(images, options, lambda predictor, prob: predictor.to_mask(prob))

    def _run(self, images: np.ndarray | list[np.ndarray], options: dict[str, Any],
             answer: Callable[[Predictor, np.ndarray], np.ndarray]) -> np.ndarray | list[np.ndarray]:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise UserError(f"unknown prediction option {unknown[0]} (options: {', '.join(sorted(_OPTIONS))})")
        if (chosen := InferenceOptions(**options)) not in self._predictors:
            self._predictors[chosen] = Predictor(self.saved, chosen)
        predictor = self._predictors[chosen]
        batch, shape = self._images(images)
        answers = [answer(predictor, prob) for _, _, prob in predictor.run(enumerate(batch))]
        return answers[0] if shape == "one" else np.stack(answers) if shape == "batch" else answers

    def _images(self, images: np.ndarray | list[np.ndarray]) -> tuple[list[np.ndarray], str]:
        """The images as (H, W, C) arrays of the model's channels, and how the answer is shaped. Three axes are one
        image when the last holds 1 to 4 channels, else a batch of (H, W) images: no photograph is 4 pixels wide."""
        channels = self.saved.config.in_channels
        if isinstance(images, (list, tuple)):
            return [self._image(np.asarray(image), channels, f"images[{i}]") for i, image in enumerate(images)], "list"
        array = np.asarray(images)
        if array.ndim == 2 or (array.ndim == 3 and 1 <= array.shape[2] <= 4):
            return [self._image(array, channels, "image")], "one"
        if array.ndim in (3, 4):
            return [self._image(image, channels, f"images[{i}]") for i, image in enumerate(array)], "batch"
        raise UserError(f"images of shape {array.shape}: expected (H, W[, C]) or (N, H, W[, C]), channels last")

    @staticmethod
    def _image(image: np.ndarray, channels: int, name: str) -> np.ndarray:
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or min(image.shape) < 1:
            raise UserError(f"{name} of shape {image.shape}: expected (H, W) or (H, W, C), channels last")
        if image.dtype.kind not in "uif" or image.dtype.itemsize > 8:
            raise UserError(f"{name}: dtype {image.dtype} is not an image's (unsigned or signed integers, or floats)")
        if image.shape[2] > 4 and image.shape[0] <= 4:
            raise UserError(f"{name} of shape {image.shape} looks channels-first; unetkit takes channels last "
                            f"(H, W, C): numpy.moveaxis(image, 0, -1)")
        check_finite(image, name)
        return to_channels(image, channels, name)
