"""A fingerprint of a labelled folder: what the data looks like, measured in bounded memory.

The training plan (training/plan.py) chooses patch size, batch size, depth and normalisation from it, as nnU-Net
does from its "dataset fingerprint". Intensities come from a random sample of pixels, in the file's own units.
Object scale: a foreground component's width is the side of its largest inscribed square, 2 * max chessboard
distance - 1 (exact for axis-aligned strips of odd width, close for other strips and curves: a thin-structure hint);
its extent is the longer side of its bounding box. Orientation: street scenes (sky above, road below) differ a lot
between the masks' top and bottom halves; vessels, cells and membranes do not, and the plan lets only the latter be
flipped upside down and rotated.

Bounded memory: TIFF and .npy files above `LARGE_PIXELS` are never decoded whole. Their pixels are sampled from
`SAMPLE_ROWS` random rows; their masks are read in bands (data/regions.py) and measured in pieces: class counts over
every piece, widths on pieces spread over the image (widths are local, a band cut does not change them), extents on a
strided copy (extents need the whole object; the copy loses widths below its stride, which the bands measure). PNG,
JPEG and GIF cannot be read partially and are decoded whole, one at a time.

Small masks of one size wait in a stack of up to `STACK_PIXELS` and are counted, labelled and measured as one 3-D
array whose neighbourhoods lie in the image plane: a folder of thousands of small masks costs a few array operations
per stack instead of per mask, with the same figures and the same random draws, in the folder's order.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.data.io import channels_equal, drop_uniform_alpha, read_array
from unetkit.data.masks import BINARY_ENCODINGS, ClassPalette, mask_channels, read_class_palette, read_raw_mask
from unetkit.data.pairing import DataSource, Pair, find_pairs
from unetkit.data.regions import is_large, open_rows
from unetkit.errors import UserError

SAMPLE_BUDGET = 1_000_000  # intensity samples over the folder (per channel)
MIN_SAMPLES = 256  # per image, however many images
SAMPLE_ROWS = 16  # random rows read from a large image for its intensity sample
BAND_PIXELS = 2**21  # pixels per band read from a large mask (rows = BAND_PIXELS // width)
CHUNK_PIXELS = 2**19  # pixels per piece of a band that is counted and measured (distance maps are int32)
WIDTH_PIXELS = 2**24  # full-resolution mask pixels per image measured for component widths
EXTENT_SIDE = 1024  # longest side of the strided mask copy on which extents are measured
MAX_COMPONENTS = 2000  # component measures kept per image (a random subset beyond)
STACK_PIXELS = 2**22  # mask pixels measured as one stack
_PLANE_CROSS = np.zeros((3, 3, 3), bool)  # 4-neighbours within each mask of a stack (ndimage.label's 2-D default)
_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)
_PLANE_SQUARE = np.zeros((3, 3, 3), bool)  # 8-neighbours within each mask: the chessboard metric of one plane
_PLANE_SQUARE[1] = True


@dataclass(frozen=True)
class Fingerprint:
    """What a labelled folder holds. Sizes are (height, width); intensities are in the file's units."""

    data_dir: str
    n_images: int
    size_min: tuple[int, int]
    size_median: tuple[int, int]
    size_max: tuple[int, int]
    same_size: bool
    channels: int  # 1 gray (RGB with equal channels counts as gray), 3 colour, 4 colour + varying alpha
    dtypes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, from `sampled_pixels` pixels
    std: tuple[float, ...]
    percentile_00_5: tuple[float, ...]
    percentile_99_5: tuple[float, ...]
    sampled_pixels: int
    num_classes: int  # 1 = binary masks; K > 1 = class indices 0..K-1
    class_share: tuple[float, ...]  # pixel share per class: (background, foreground) for binary masks
    class_image_share: tuple[float, ...]  # share of images holding each class
    foreground_image_share: float  # share of images with any foreground
    foreground_width: float | None  # median inscribed diameter of foreground components (px); None if none
    object_size_median: float | None  # median longer bounding-box side of components (px)
    object_size_p90: float | None
    up_down_difference: float = 0.0  # total variation distance of the class shares of the top and bottom halves
    left_right_difference: float = 0.0  # the same for the left and right halves

    @property
    def max_side(self) -> int:
        return max(self.size_max)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples become lists), equal to what reading it back from JSON gives."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def fingerprint(data_dir: DataSource | str | os.PathLike[str], *, num_classes: int | None = None) -> Fingerprint:
    """Measure DIR/images + DIR/masks in bounded memory. `num_classes` None reads masks as binary when every mask
    fits a binary encoding, else as class indices; K > 1 with DIR/classes.yaml reads them through its colours or values."""
    pairs = find_pairs(data_dir)
    measure = Measure(len(pairs), read_class_palette(data_dir, num_classes) if num_classes else None, num_classes=num_classes)
    for pair in pairs:
        measure.add(pair)
    return measure.result(str(data_dir))


class Measure:
    """The fingerprint of a folder, measured pair by pair in the folder's order. A reader that decodes the pairs
    anyway (data/dataset.py::survey) hands over its arrays, so no file is decoded twice. `palette`: classes.yaml's,
    None for binary masks, class indices or multi-label masks."""

    def __init__(self, n_pairs: int, palette: ClassPalette | None, *, num_classes: int | None = None,
                 ignore_index: int | None = None, seed: int = 0, multilabel: bool = False) -> None:
        self.palette, self.num_classes, self.ignore_index, self.multilabel = palette, num_classes, ignore_index, multilabel
        self.rng = np.random.default_rng(seed)
        self.sizes: list[tuple[int, int]] = []
        self.dtypes: set[str] = set()
        self.samples: list[tuple[np.ndarray, bool]] = []  # (n, C) raw pixels, gray?
        self.counts: list[Counter[int]] = []  # per mask, pixels per stored value
        self.widths: list[float] = []
        self.extents: list[float] = []
        self.halves: tuple[Counter[int], ...] = tuple(Counter() for _ in range(4))  # top, bottom, left, right
        self.per_image = max(MIN_SAMPLES, SAMPLE_BUDGET // max(n_pairs, 1))
        self.stack: list[tuple[Pair, np.ndarray, np.ndarray]] = []  # whole pairs whose masks wait to be measured

    def add(self, pair: Pair, image: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """`image`, `mask`: as io.read_array and masks.read_raw_mask read them, or None to read here (by rows when large)."""
        image = read_array(pair.image) if image is None and not is_large(pair.image) else image
        mask = read_raw_mask(pair.mask, self.palette) if mask is None and not is_large(pair.mask) else mask
        if image is None or mask is None or mask.shape[0] > max(1, CHUNK_PIXELS // mask.shape[1]):  # not one piece
            self._measure_stack()
            self._sample_image(pair.image, image)
            return self._measure_mask(pair, mask)
        if self.stack and (mask.shape[:2] != self.stack[0][2].shape[:2]
                           or (len(self.stack) + 1) * math.prod(mask.shape[:2]) > STACK_PIXELS):
            self._measure_stack()
        self.stack.append((pair, image, mask))

    def result(self, data_dir: str) -> Fingerprint:
        self._measure_stack()
        num_classes, ignore_index = self.num_classes, self.ignore_index
        sizes = np.array(self.sizes)
        channels = max(1 if gray else sample.shape[1] for sample, gray in self.samples)
        values = np.concatenate([np.repeat(s, channels, axis=1) if s.shape[1] == 1 else s for s, _ in self.samples]
                                ).astype(np.float64)
        class_counts = _class_counts(self.counts, num_classes, ignore_index, data_dir)
        present = np.array([counts > 0 for counts in class_counts])
        total = class_counts.sum(axis=0)
        widths, extents = np.array(self.widths), np.array(self.extents)
        return Fingerprint(
            data_dir=data_dir, n_images=len(sizes), size_min=_pair(sizes.min(axis=0)),
            size_median=_pair(np.median(sizes, axis=0)), size_max=_pair(sizes.max(axis=0)),
            same_size=bool((sizes == sizes[0]).all()), channels=int(channels), dtypes=tuple(sorted(self.dtypes)),
            mean=_floats(values.mean(axis=0)), std=_floats(values.std(axis=0)), sampled_pixels=len(values),
            percentile_00_5=_floats(np.percentile(values, 0.5, axis=0)),
            percentile_99_5=_floats(np.percentile(values, 99.5, axis=0)),
            num_classes=1 if class_counts.shape[1] == 2 and num_classes in (None, 1) else class_counts.shape[1],
            class_share=_floats(total / max(1, total.sum())), class_image_share=_floats(present.mean(axis=0)),
            foreground_image_share=float(present[:, 1:].any(axis=1).mean()),
            foreground_width=float(np.median(widths)) if len(widths) else None,
            object_size_median=float(np.median(extents)) if len(extents) else None,
            object_size_p90=float(np.percentile(extents, 90)) if len(extents) else None,
            up_down_difference=_difference(*self.halves[:2], ignore_index),
            left_right_difference=_difference(*self.halves[2:], ignore_index),
        )

    def _sample_image(self, path: Path, pixels: np.ndarray | None) -> None:
        """Up to `per_image` random pixels (n, C) of one image (`pixels`; None: a large one, read by rows)."""
        if pixels is None:
            with open_rows(path, None) as reader:
                height, width, dtype = reader.height, reader.width, reader.dtype
                rows = np.sort(self.rng.choice(height, size=min(height, SAMPLE_ROWS), replace=False))
                pixels = np.concatenate([reader(int(y), int(y) + 1) for y in rows])
        else:
            (height, width), dtype = pixels.shape[:2], pixels.dtype
        pixels = drop_uniform_alpha(pixels)
        gray = channels_equal(pixels)
        flat = pixels.reshape(-1, pixels.shape[2])
        chosen = flat[self.rng.choice(len(flat), size=min(self.per_image, len(flat)), replace=False)]
        self.sizes.append((int(height), int(width)))
        self.dtypes.add(str(np.dtype(dtype)))
        self.samples.append((chosen[:, :1] if gray else chosen, gray))

    def _measure_mask(self, pair: Pair, mask: np.ndarray | None) -> None:
        """Value counts, component widths and extents of one mask (`mask`; None: a large one, read band by band)."""
        if mask is None:
            with open_rows(pair.mask, mask_channels(self.palette, self.multilabel)) as reader:
                height, width = reader.height, reader.width
                step = max(1, BAND_PIXELS // width)
                bands = (reader(y, min(y + step, height)) for y in range(0, height, step))
                stride = math.ceil(max(height, width) / EXTENT_SIDE)
                return self._measure_bands(bands, pair.mask, height, stride, math.ceil(height / step))
        self._measure_bands([mask], pair.mask, mask.shape[0], 1)

    def _measure_stack(self) -> None:
        """The waiting pairs measured as one stack of masks, recorded pair by pair as `add` would one at a time."""
        if not self.stack:
            return
        waiting, self.stack = self.stack, []
        codes = np.stack([self._codes(mask, pair.mask) for pair, _, mask in waiting])
        counts = _count_regions(codes, 0, codes.shape[1], self.halves)
        foreground = self._foreground(codes)
        labels, n = ndimage.label(foreground, _PLANE_CROSS)
        widths, extents = _component_widths(foreground, labels, n), _extents(labels, n)
        ends = np.maximum.accumulate(labels.reshape(len(codes), -1).max(axis=1))  # labels run mask by mask
        for (pair, image, _), counted, start, end in zip(waiting, counts, [0, *ends[:-1].tolist()], ends.tolist()):
            self._sample_image(pair.image, image)
            self.counts.append(counted)
            self.widths.extend(_subset(widths[start:end], self.rng).tolist())
            self.extents.extend(_subset(extents[start:end], self.rng).tolist())

    def _codes(self, band: np.ndarray, path: Path) -> np.ndarray:
        """A mask band (rows, W, C) as read -> (rows, W) codes: palette indices, stored values, or any label set."""
        if self.multilabel:
            band = np.any(band != 0, axis=2, keepdims=True).astype(np.uint8)
        return self.palette.indices(band, path) if self.palette else _stored_codes(band, path)

    def _foreground(self, codes: np.ndarray) -> np.ndarray:
        return codes != 0 if self.ignore_index is None else (codes != 0) & (codes != self.ignore_index)

    def _measure_bands(self, bands: Any, path: Path, height: int, stride: int, n_bands: int = 1) -> None:
        """Fold (rows, W, C) bands of one mask of several pieces into the measures; `stride` > 1 measures extents on a
        strided copy."""
        counts: Counter[int] = Counter()
        widths: list[np.ndarray] = []
        strided: list[np.ndarray] = []
        every = max(1, math.ceil(n_bands * BAND_PIXELS / WIDTH_PIXELS)) if n_bands > 1 else 1
        offset = 0  # first row of the piece
        for index, band in enumerate(bands):
            codes = self._codes(band, path)
            step = max(1, CHUNK_PIXELS // codes.shape[1])
            for piece in (codes[y:y + step][None] for y in range(0, len(codes), step)):  # a stack of one
                counts.update(_count_regions(piece, offset, height, self.halves)[0])
                foreground = self._foreground(piece)
                if index % every == 0 and foreground.any():
                    widths.append(_component_widths(foreground, *ndimage.label(foreground, _PLANE_CROSS)))
                if stride == 1:
                    strided.append(foreground[0])
                else:  # keep rows whose index is a multiple of the stride, every stride-th column
                    strided.append(foreground[0, (-offset) % stride::stride, ::stride].copy())  # not a view of the piece
                offset += piece.shape[1]
        self.counts.append(counts)
        self.widths.extend(_subset(np.concatenate(widths) if widths else np.zeros(0), self.rng).tolist())
        whole = np.concatenate(strided)[None]
        if whole.any():
            labels, n = ndimage.label(whole, _PLANE_CROSS)
            self.extents.extend(_subset(_extents(labels, n) * stride, self.rng).tolist())


def _count_regions(pieces: np.ndarray, offset: int, height: int, halves: tuple[Counter[int], ...]) -> list[Counter[int]]:
    """The code counts of each piece of a stack (N, rows, W); those of its rows in the top and bottom halves of the
    masks (the middle row of an odd height in neither) and of its left and right halves are added to `halves`. Codes
    under 256 (nearly every mask) take one bincount of the codes tagged by piece and region instead of five counts
    each, and so do 0/65535 masks, counted as 0/1 with the 1s reported under their stored value."""
    n, rows, width = pieces.shape
    top, bottom = max(0, min(rows, height // 2 - offset)), min(rows, max(0, (height + 1) // 2 - offset))
    high, scale = int(pieces.max()) if pieces.size else 0, 1
    if high >= 256 and np.count_nonzero(pieces) == np.count_nonzero(single := pieces == high):
        pieces, scale = single.view(np.uint8), high
    elif pieces.size == 0 or high >= 256:
        for piece in pieces:
            parts = (piece[:top], piece[bottom:], piece[:, : width // 2], piece[:, (width + 1) // 2 :])
            for counter, part in zip(halves, parts):
                counter.update(_value_counts(part))
        return [Counter(_value_counts(piece)) for piece in pieces]
    region = np.repeat([0, 3, 6], [top, bottom - top, rows - bottom])[:, None] + np.repeat([0, 1, 2], [
        width // 2, width % 2, width // 2])  # 3 * row third + column third
    tagged = np.bincount(((np.arange(n)[:, None, None] * 9 + region) * 256 + pieces).reshape(-1),
                         minlength=n * 9 * 256).reshape(n, 3, 3, 256)
    sums = (tagged[:, 0].sum((0, 1)), tagged[:, 2].sum((0, 1)), tagged[:, :, 0].sum((0, 1)), tagged[:, :, 2].sum((0, 1)))
    for counter, counted in zip(halves, sums):
        counter.update(_present(counted, scale))
    return [Counter(_present(counted, scale)) for counted in tagged.sum((1, 2))]


def _present(counted: np.ndarray, scale: int) -> dict[int, int]:
    present = np.flatnonzero(counted)
    return dict(zip((present * scale).tolist(), counted[present].tolist()))


def _value_counts(codes: np.ndarray) -> dict[int, int]:
    """Pixels per value present, for the rare masks `_count_regions` cannot tag (16-bit values of several kinds)."""
    values, counted = np.unique(codes, return_counts=True)
    return dict(zip(values.tolist(), counted.tolist()))


def _difference(first: Counter[int], second: Counter[int], ignore_index: int | None) -> float:
    """Total variation distance of two value counts' distributions (0: the same, 1: disjoint), ignored value left out."""
    values = sorted((set(first) | set(second)) - {ignore_index})
    a, b = (np.array([counts[v] for v in values], np.float64) for counts in (first, second))
    return 0.0 if a.sum() == 0 or b.sum() == 0 else round(0.5 * float(np.abs(a / a.sum() - b / b.sum()).sum()), 6)


def _stored_codes(band: np.ndarray, path: Path) -> np.ndarray:
    """A mask band (rows, W, 1) as non-negative integer codes (rows, W): stored values, integral."""
    values = band[:, :, 0]
    if not np.issubdtype(values.dtype, np.integer):
        if not np.all(values == np.round(values)):
            raise UserError(f"{path}: mask holds fractional values; masks hold class indices or 0/1, 0/255, 0/65535")
        values = values.astype(np.int64)
    if values.min() < 0:
        raise UserError(f"{path}: mask holds negative values; masks hold class indices or 0/1, 0/255, 0/65535")
    return values


def _component_widths(foreground: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """2 * (largest chessboard distance to background) - 1 per connected component of a stack (`labels`, `n`:
    ndimage.label's): the side of its largest inscribed square (px). Chessboard distances are int32 (the Euclidean map
    takes 4x the memory)."""
    distance = ndimage.distance_transform_cdt(foreground, metric=_PLANE_SQUARE)
    largest = np.zeros(n + 1, distance.dtype)  # ndimage.maximum's per-call overhead outweighs a small mask's work
    np.maximum.at(largest, labels[foreground], distance[foreground])
    return 2 * largest[1:].astype(float) - 1


def _extents(labels: np.ndarray, n: int) -> np.ndarray:
    """The longer bounding-box side of each component of a stack (`labels`, `n`: ndimage.label's)."""
    return np.array([max(b[1].stop - b[1].start, b[2].stop - b[2].start) for b in ndimage.find_objects(labels, n)], float)


def _subset(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= MAX_COMPONENTS else rng.choice(values, MAX_COMPONENTS, replace=False)


def _class_counts(counts: list[Counter[int]], num_classes: int | None, ignore_index: int | None, data_dir: str) -> np.ndarray:
    """(n_masks, K) pixel counts per class: binary when every mask fits a binary encoding, else indices."""
    counts = [Counter({v: n for v, n in c.items() if v != ignore_index and n}) for c in counts]
    if num_classes in (None, 1, 2):
        encodings = [next((pair for pair in BINARY_ENCODINGS if set(c) <= set(pair)), None) for c in counts]
        if None not in encodings:
            return np.array([[c[0], c[encoding[1]]] for c, encoding in zip(counts, encodings)], np.int64)
        if num_classes == 1:
            raise UserError(f"{data_dir}: masks hold values other than a binary encoding (0/1, 0/255, 0/65535)")
    width = 1 + max((max(c) for c in counts if c), default=0)
    if width > 256:
        raise UserError(f"{data_dir}: masks hold values up to {width - 1}: neither binary masks nor class indices")
    width = max(width, num_classes or 2)
    return np.array([[c[v] for v in range(width)] for c in counts], np.int64)


def _pair(values: np.ndarray) -> tuple[int, int]:
    return int(round(float(values[0]))), int(round(float(values[1])))


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in np.atleast_1d(values))
