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
from unetkit.data.regions import LARGE_PIXELS, can_stream, open_rows
from unetkit.errors import UserError

SAMPLE_BUDGET = 1_000_000  # intensity samples over the folder (per channel)
MIN_SAMPLES = 256  # per image, however many images
SAMPLE_ROWS = 16  # random rows read from a large image for its intensity sample
BAND_PIXELS = 2**21  # pixels per band read from a large mask (rows = BAND_PIXELS // width)
CHUNK_PIXELS = 2**19  # pixels per piece of a band that is counted and measured (distance maps are int32)
WIDTH_PIXELS = 2**24  # full-resolution mask pixels per image measured for component widths
EXTENT_SIDE = 1024  # longest side of the strided mask copy on which extents are measured
MAX_COMPONENTS = 2000  # component measures kept per image (a random subset beyond)


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

    def add(self, pair: Pair, image: np.ndarray | None = None, mask: np.ndarray | None = None) -> None:
        """`image`, `mask`: as io.read_array and masks.read_raw_mask read them, or None to read here (by rows when large)."""
        self._sample_image(pair.image, image)
        self._measure_mask(pair, mask)

    def result(self, data_dir: str) -> Fingerprint:
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
        """Up to `per_image` random pixels (n, C) of one image (`pixels` when given), read by rows when it is large."""
        if pixels is None and can_stream(path):
            with open_rows(path, None) as reader:
                height, width, dtype = reader.height, reader.width, reader.dtype
                if height * width > LARGE_PIXELS:
                    rows = np.sort(self.rng.choice(height, size=min(height, SAMPLE_ROWS), replace=False))
                    pixels = np.concatenate([reader(int(y), int(y) + 1) for y in rows])
                else:
                    pixels = reader(0, height)
        else:
            pixels = read_array(path) if pixels is None else pixels
            (height, width), dtype = pixels.shape[:2], pixels.dtype
        pixels = drop_uniform_alpha(pixels)
        gray = channels_equal(pixels)
        flat = pixels.reshape(-1, pixels.shape[2])
        chosen = flat[self.rng.choice(len(flat), size=min(self.per_image, len(flat)), replace=False)]
        self.sizes.append((int(height), int(width)))
        self.dtypes.add(str(np.dtype(dtype)))
        self.samples.append((chosen[:, :1] if gray else chosen, gray))

    def _measure_mask(self, pair: Pair, mask: np.ndarray | None) -> None:
        """Value counts, component widths and extents of one mask (`mask` when given), band by band when large."""
        if mask is None and can_stream(pair.mask):
            with open_rows(pair.mask, mask_channels(self.palette, self.multilabel)) as reader:
                height, width = reader.height, reader.width
                if height * width <= LARGE_PIXELS:
                    return self._measure_bands([reader(0, height)], pair.mask, height, 1)
                step = max(1, BAND_PIXELS // width)
                bands = (reader(y, min(y + step, height)) for y in range(0, height, step))
                stride = math.ceil(max(height, width) / EXTENT_SIDE)
                return self._measure_bands(bands, pair.mask, height, stride, math.ceil(height / step))
        mask = read_raw_mask(pair.mask, self.palette) if mask is None else mask
        self._measure_bands([mask], pair.mask, mask.shape[0], 1)

    def _measure_bands(self, bands: Any, path: Path, height: int, stride: int, n_bands: int = 1) -> None:
        """Fold (rows, W, C) bands of one mask into the measures; `stride` > 1 measures extents on a strided copy."""
        if self.multilabel:  # any label set counts as foreground
            bands = (np.any(band != 0, axis=2, keepdims=True).astype(np.uint8) for band in bands)
        palette, ignore_index = self.palette, self.ignore_index
        counts: Counter[int] = Counter()
        widths: list[np.ndarray] = []
        strided: list[np.ndarray] = []
        every = max(1, math.ceil(n_bands * BAND_PIXELS / WIDTH_PIXELS)) if n_bands > 1 else 1
        offset = 0  # first row of the piece
        labelled = None  # the last piece's components: a mask of one piece is labelled once, for widths and extents
        for index, band in enumerate(bands):
            codes = palette.indices(band, path) if palette else _stored_codes(band, path)
            step = max(1, CHUNK_PIXELS // codes.shape[1])
            for piece in (codes[y:y + step] for y in range(0, len(codes), step)):
                _count_regions(piece, offset, height, counts, self.halves)
                foreground = piece != 0 if ignore_index is None else (piece != 0) & (piece != ignore_index)
                if index % every == 0 and foreground.any():
                    labelled = ndimage.label(foreground)
                    widths.append(_component_widths(foreground, *labelled))
                if stride == 1:
                    strided.append(foreground)
                else:  # keep rows whose index is a multiple of the stride, every stride-th column
                    strided.append(foreground[(-offset) % stride::stride, ::stride].copy())  # not a view of the piece
                offset += len(piece)
        self.counts.append(counts)
        self.widths.extend(_subset(np.concatenate(widths) if widths else np.zeros(0), self.rng).tolist())
        whole = np.concatenate(strided)
        if whole.any():
            labels, n = labelled if len(strided) == 1 and stride == 1 and labelled is not None else ndimage.label(whole)
            boxes = ndimage.find_objects(labels, n)
            extents = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes], float) * stride
            self.extents.extend(_subset(extents, self.rng).tolist())


def _count_regions(piece: np.ndarray, offset: int, height: int, whole: Counter[int],
                   halves: tuple[Counter[int], ...]) -> None:
    """Add the piece's code counts to `whole`, and those of its rows in the top and bottom halves of the mask (the
    middle row of an odd height in neither) and of its left and right halves to `halves`. Codes under 256 (nearly
    every mask) take one bincount of the codes tagged by region instead of five counts, and so do 0/65535 masks,
    counted as 0/1 with the 1s reported under their stored value."""
    rows, width = piece.shape
    top, bottom = max(0, min(rows, height // 2 - offset)), min(rows, max(0, (height + 1) // 2 - offset))
    high, scale = int(piece.max()) if piece.size else 0, 1
    if high >= 256 and np.count_nonzero(piece) == np.count_nonzero(single := piece == high):
        piece, scale = single.view(np.uint8), high
    elif piece.size == 0 or high >= 256:
        parts = (piece, piece[:top], piece[bottom:], piece[:, : width // 2], piece[:, (width + 1) // 2 :])
        for counter, part in zip((whole, *halves), parts):
            counter.update(_value_counts(part))
        return
    region = np.repeat([0, 3, 6], [top, bottom - top, rows - bottom])[:, None] + np.repeat([0, 1, 2], [
        width // 2, width % 2, width // 2])  # 3 * row third + column third
    tagged = np.bincount((region * 256 + piece).reshape(-1), minlength=9 * 256).reshape(3, 3, 256)
    sums = (tagged.sum((0, 1)), tagged[0].sum(0), tagged[2].sum(0), tagged[:, 0].sum(0), tagged[:, 2].sum(0))
    for counter, counted in zip((whole, *halves), sums):
        present = np.flatnonzero(counted)
        counter.update(dict(zip((present * scale).tolist(), counted[present].tolist())))


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
    """2 * (largest chessboard distance to background) - 1 per connected component (`labels`, `n`: ndimage.label's):
    the side of its largest inscribed square (px). Chessboard distances are int32 (the Euclidean map takes 4x the
    memory)."""
    distance = ndimage.distance_transform_cdt(foreground, metric="chessboard")
    largest = np.zeros(n + 1, distance.dtype)  # ndimage.maximum's per-call overhead outweighs a small mask's work
    np.maximum.at(largest, labels[foreground], distance[foreground])
    return 2 * largest[1:].astype(float) - 1


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
