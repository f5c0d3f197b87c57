from __future__ import annotations

import pytest

from unetkit.data.memory import available_memory, check_side_fits
from unetkit.errors import UserError


def test_a_side_that_fits_passes_and_one_that_does_not_names_the_largest_that_fits() -> None:
    check_side_fits("--size", 100, 100.0, "one image", available=100 * 100 * 100)  # exactly fits
    with pytest.raises(UserError, match=r"^--size 101: one image at 101x101 needs 0\.0 GiB, more than the 0\.0 GiB "
                                        r"of memory available here; at most 100 fits$"):
        check_side_fits("--size", 101, 100.0, "one image", available=100 * 100 * 100)


def test_available_memory_is_a_positive_number_of_bytes() -> None:
    assert available_memory() > 2**20
