"""Boundary metrics on shapes whose figures can be worked out by hand (derivations in docs/metrics.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from unetkit.boundary import boundary, boundary_figures


def _square(side: int, shift: int = 0, size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[10 : 10 + side, 5 + shift : 5 + side + shift] = True
    return mask


def _disc(radius: float, size: int = 64) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return (rows - 32) ** 2 + (cols - 32) ** 2 <= radius**2


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_a_square_shifted_by_k_has_hd95_k_and_assd_k_over_2(k: int) -> None:
    truth, pred = _square(40), _square(40, shift=k)
    # Half the boundary (the two sides across the shift) sits k away, the rest 0..k: HD95 = k;
    # the distances sum to 2k(s-1) over 4(s-1) boundary pixels each way: ASSD = k / 2.
    found = boundary_figures(pred, truth)
    assert found["hd95"] == pytest.approx(k, abs=1e-12)
    assert found["assd"] == pytest.approx(k / 2, abs=1e-12)


@pytest.mark.parametrize("k,tau", [(3, 1), (3, 2), (5, 2), (5, 4)])
def test_nsd_of_a_shifted_square_counts_the_boundary_within_tau(k: int, tau: int) -> None:
    side = 40
    truth, pred = _square(side), _square(side, shift=k)
    # Within tau < k each way: the s-k-1+tau top and bottom pixels and 2(tau+1) of the near side, of 4(s-1).
    found = boundary_figures(pred, truth, tolerances=(tau, k))
    assert found[f"nsd@{tau}"] == pytest.approx((2 * side - 2 * k + 4 * tau) / (4 * side - 4), abs=1e-12)
    assert found[f"nsd@{k}"] == 1.0


def test_spacing_scales_distances_along_their_axis() -> None:
    truth, pred = _square(40), _square(40, shift=2)  # shifted along x (columns)
    assert boundary_figures(pred, truth, spacing=(1.0, 0.5))["hd95"] == pytest.approx(1.0, abs=1e-12)
    assert boundary_figures(pred, truth, spacing=(3.0, 1.0))["hd95"] == pytest.approx(2.0, abs=1e-12)


def test_a_disc_against_a_larger_concentric_disc_is_the_difference_of_radii() -> None:
    small, large = _disc(10), _disc(16)
    # Every boundary pixel lies within one pixel of its circle, so each distance is 6 +- 1.
    found = boundary_figures(small, large, tolerances=(4, 8))
    assert abs(found["hd95"] - 6) <= 1.0
    assert abs(found["assd"] - 6) <= 1.0
    assert found["nsd@4"] == 0.0
    assert found["nsd@8"] == 1.0


def test_identical_masks_score_perfectly() -> None:
    mask = _disc(12)
    assert boundary_figures(mask, mask, tolerances=(0,)) == {"hd95": 0.0, "assd": 0.0, "nsd@0": 1.0}


def test_empty_cases_follow_the_documented_rule() -> None:
    empty, mask = np.zeros((64, 64), bool), _disc(8)
    assert boundary_figures(empty, empty, tolerances=(2,)) == {"hd95": 0.0, "assd": 0.0, "nsd@2": 1.0}
    diagonal = math.hypot(63, 63)
    for pred, truth in ((empty, mask), (mask, empty)):
        assert boundary_figures(pred, truth, tolerances=(2,)) == {"hd95": diagonal, "assd": diagonal, "nsd@2": 0.0}
    assert boundary_figures(empty, mask, spacing=(2.0, 1.0))["hd95"] == pytest.approx(math.hypot(126, 63))


def test_a_mask_touching_the_image_border_has_its_boundary_there() -> None:
    full = np.ones((5, 6), bool)
    assert boundary(full).sum() == 2 * 5 + 2 * 6 - 4


@pytest.mark.parametrize("seed", range(4))
def test_figures_equal_the_definition_computed_pair_by_pair(seed: int) -> None:
    """Every boundary pixel against every other, no distance transform: the definitions of the module
    docstring (MONAI's), to 1e-9, on random blobs (some touching the border) and an anisotropic pixel."""
    rng = np.random.default_rng(seed)
    pred, truth = (ndimage.gaussian_filter(rng.standard_normal((24, 30)), 2.5) > 0.1 for _ in range(2))
    spacing, tau = (1.5, 0.5), 1.2
    a, b = np.argwhere(boundary(pred)) * spacing, np.argwhere(boundary(truth)) * spacing
    distances = np.linalg.norm(a[:, None] - b[None], axis=-1)
    p_to_t, t_to_p = distances.min(axis=1), distances.min(axis=0)
    both = np.concatenate([p_to_t, t_to_p])
    found = boundary_figures(pred, truth, spacing, (tau,))
    assert found["hd95"] == pytest.approx(max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95)), abs=1e-9)
    assert found["assd"] == pytest.approx(both.mean(), abs=1e-9)
    assert found[f"nsd@{tau:g}"] == pytest.approx((both <= tau).mean(), abs=1e-9)
