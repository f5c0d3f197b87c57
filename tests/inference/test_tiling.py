from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.data.preprocess import Preprocess
from unetkit.export.model_file import SavedModel
from unetkit.inference.predictor import Predictor
from unetkit.inference.tiling import TileGrid, assemble, axis_starts, blended_rows, importance_map
from unetkit.models import UNet

SHAPES = [(1, 700), (700, 1), (300, 517), (257, 257), (50, 40), (64, 64), (65, 129)]


@pytest.mark.parametrize("size", [1, 15, 64, 65, 255, 256, 257, 1000, 4096])
def test_axis_starts_cover_every_pixel_and_end_flush(size: int) -> None:
    tile = min(64, size)
    starts = axis_starts(size, tile, 0.25)
    covered = np.zeros(size, dtype=int)
    for start in starts:
        covered[start : start + tile] += 1
    assert covered.min() >= 1 and starts[0] == 0 and starts[-1] + tile == size
    assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))  # step int(64 * 0.75) = 48 at most


def test_axis_starts_match_the_common_grid() -> None:
    # 4096 with 256 tiles, overlap 0.25: step 192, (4096 - 256) / 192 = 20 steps, 21 tiles, the last at 3840
    starts = axis_starts(4096, 256, 0.25)
    assert len(starts) == 21 and starts[1] == 192 and starts[-1] == 3840


def test_importance_map_is_a_centred_gaussian_clamped_above_zero() -> None:
    weights = importance_map(256, 200, "gaussian")
    assert weights.shape == (256, 200) and weights.dtype == np.float32
    assert np.array_equal(weights, weights[::-1]) and np.array_equal(weights, weights[:, ::-1])
    assert abs(float(weights.max()) - np.exp(-(0.5**2) / (2 * 32**2)) * np.exp(-(0.5**2) / (2 * 25**2))) < 1e-6
    assert float(weights.min()) == pytest.approx(1e-3)  # exp(-8) x exp(-8) at the corner, clamped
    assert np.array_equal(importance_map(7, 9, "constant"), np.ones((7, 9)))


def _blend(image: np.ndarray, tile: int, predict, blend: str = "gaussian", batch_size: int = 5,
           backend: str = "torch") -> np.ndarray:
    """Tiles (N, C, h, w) through `predict` (NumPy (N, K, h, w) out), blended on torch tensors or on NumPy arrays."""
    grid = TileGrid.plan(image.shape[0], image.shape[1], tile, 0.25)
    weights = importance_map(grid.tile_h, grid.tile_w, blend)
    rows = np.ascontiguousarray(image.transpose(2, 0, 1).astype(np.float32))  # (C, H, W), the network's input
    if backend == "torch":
        bands = blended_rows(lambda y0, y1: torch.from_numpy(rows[:, y0:y1]), grid,
                             lambda t: torch.from_numpy(predict(t.numpy())), 1, batch_size=batch_size,
                             weights=torch.from_numpy(weights))
    else:
        bands = blended_rows(lambda y0, y1: rows[:, y0:y1], grid, predict, 1, batch_size=batch_size, weights=weights)
    return assemble(bands, 1, image.shape[0], image.shape[1])


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize("shape", SHAPES)
def test_weights_sum_correctly_at_borders_and_corners(shape: tuple[int, int], blend: str, backend: str) -> None:
    # every tile predicts 1 everywhere: the blend is exactly 1 only if each pixel's weights are normalised
    image = np.zeros((*shape, 1), np.uint8)
    out = _blend(image, 64, lambda tiles: np.ones((len(tiles), 1, *tiles.shape[2:]), np.float32), blend,
                 backend=backend)
    assert np.abs(out - 1.0).max() < 1e-6


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
@pytest.mark.parametrize("shape", SHAPES)
def test_pointwise_model_tiled_equals_the_image(shape: tuple[int, int], batch_size: int, backend: str) -> None:
    # a per-pixel "model" (value / 255): any misplaced tile or row shows up as a difference
    image = np.random.default_rng(1).integers(0, 255, (*shape, 1), dtype=np.uint8)
    out = _blend(image, 64, lambda t: t / np.float32(255),
                 batch_size=batch_size, backend=backend)
    assert np.abs(out[0] - image[:, :, 0] / 255).max() < 1e-6


def test_open_rows_stay_within_two_tiles() -> None:
    # bounded memory: before the rows of a tile row are read, all rows two tiles above it are handed on
    image = np.zeros((2000, 100, 1), np.uint8)
    grid = TileGrid.plan(2000, 100, 64, 0.25)
    emitted = [0]
    reads: list[tuple[int, int]] = []

    def read(y0: int, y1: int) -> np.ndarray:
        reads.append((y0, emitted[0]))
        return torch.from_numpy(image[y0:y1].transpose(2, 0, 1).astype(np.float32))

    for y0, band in blended_rows(read, grid, lambda t: torch.zeros(len(t), 1, 64, 64), 1, batch_size=4,
                                 weights=torch.from_numpy(importance_map(64, 64, "gaussian"))):
        assert y0 == emitted[0]  # consecutive, in order
        emitted[0] += band.shape[1]
    assert emitted[0] == 2000
    assert [y for y, _ in reads] == list(grid.ys)  # each tile row read once
    assert all(y - done <= 2 * 64 for y, done in reads)


def _saved(depth: int = 1, num_classes: int = 1) -> SavedModel:
    torch.manual_seed(0)
    return SavedModel(UNet(start_neurons=4, depth=depth, num_classes=num_classes).eval(), Preprocess((0.5,), (0.25,)))


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_tiled_matches_whole_image_for_a_small_receptive_field(blend: str) -> None:
    # depth-1 U-Net: receptive field about 25 px, inside the 16-px overlap's reach from either tile.
    # Measured 0.0045 (gaussian) and 0.0046 (constant); the tolerance is 0.01.
    saved = _saved()
    image = np.random.default_rng(0).integers(0, 255, (1, 300, 517, 1), dtype=np.uint8)
    whole = Predictor(saved, device="cpu", tile=1024).probabilities(image)
    tiled = Predictor(saved, device="cpu", tile=64, blend=blend, batch_size=7).probabilities(image)
    assert tiled.shape == whole.shape == (1, 1, 300, 517)
    assert np.abs(tiled - whole).max() < 0.01


def test_multiclass_tiles_stay_distributions() -> None:
    saved = _saved(num_classes=3)
    image = np.random.default_rng(0).integers(0, 255, (1, 150, 97, 1), dtype=np.uint8)
    prob = Predictor(saved, device="cpu", tile=48).probabilities(image)[0]
    assert prob.shape == (3, 150, 97) and np.abs(prob.sum(0) - 1).max() < 1e-5


@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (17, 1000), (100, 100)])
def test_odd_sizes_through_the_predictor(shape: tuple[int, int]) -> None:
    predictor = Predictor(_saved(depth=2), device="cpu", tile=64)
    image = np.random.default_rng(0).integers(0, 255, (*shape, 1), dtype=np.uint8)
    assert predictor.needs_tiles(*shape)
    out = list(predictor.run([("a", image), ("b", np.zeros((5, 5, 1), np.uint8))]))
    assert [key for key, _, _ in out] == ["a", "b"]
    assert out[0][2].shape == (1, *shape) and out[1][2].shape == (1, 5, 5)


def _sliding_window(predictor: Predictor, image: np.ndarray) -> np.ndarray:
    """The plain algorithm, written out: every tile standardised and predicted on its own from raw pixels,
    weighted into whole-image sums, divided once at the end."""
    grid = TileGrid.plan(image.shape[0], image.shape[1], predictor.tile, predictor.overlap)
    weights = importance_map(grid.tile_h, grid.tile_w, predictor.blend).astype(np.float64)
    total = np.zeros((predictor.num_classes, *image.shape[:2]))
    weight_sum = np.zeros(image.shape[:2])
    for y in grid.ys:
        for x in grid.xs:
            tile = image[None, y : y + grid.tile_h, x : x + grid.tile_w]
            total[:, y : y + grid.tile_h, x : x + grid.tile_w] += predictor.forward(tile)[0].numpy() * weights
            weight_sum[y : y + grid.tile_h, x : x + grid.tile_w] += weights
    return (total / weight_sum).astype(np.float32)


@pytest.mark.parametrize(("num_classes", "tta", "shape"), [(1, "none", (1000, 1000)), (3, "flips", (300, 517))])
def test_tiled_equals_a_plain_sliding_window(num_classes: int, tta: str, shape: tuple[int, int]) -> None:
    # batches of 7 span tile rows; the rows are standardised once and blended in place, the reference per tile
    predictor = Predictor(_saved(depth=2, num_classes=num_classes), device="cpu", tile=128, batch_size=7, tta=tta)
    image = np.random.default_rng(3).integers(0, 255, (*shape, 1), dtype=np.uint8)
    tiled = predictor.tiled(image)
    assert tiled.shape == (num_classes, *shape)
    assert np.abs(tiled - _sliding_window(predictor, image)).max() < 1e-5


def test_an_image_inside_one_tile_equals_its_whole_image_prediction() -> None:
    # one tile: every pixel's weight divides out, so tiling must change nothing
    predictor = Predictor(_saved(depth=2), device="cpu", tile=64)
    image = np.random.default_rng(4).integers(0, 255, (48, 60, 1), dtype=np.uint8)
    whole = predictor.probabilities(image[None])[0]
    assert np.abs(predictor.tiled(image) - whole).max() < 1e-6
