"""The colony table's measurements against shapes of known size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quadratseg.cover_table import outline_length_px


def _disk(radius):
    yy, xx = np.mgrid[:401, :401]
    return (xx - 200) ** 2 + (yy - 200) ** 2 <= radius**2


def _diamond():
    mask = np.zeros((401, 401), np.uint8)
    cv2.fillPoly(mask, [np.array([[200, 50], [350, 200], [200, 350], [50, 200]], np.int32)], 1)
    return mask.astype(bool)


@pytest.mark.parametrize(
    ("mask", "true_length"),
    [
        (_disk(150), 2 * np.pi * 150),  # before (boundary pixels counted): 848 of 942.5
        (_disk(20), 2 * np.pi * 20),  # 112 of 125.7
        (_diamond(), 4 * 150 * 2**0.5),  # a square turned 45 degrees: 600 of 848.5
    ],
)
def test_a_colony_outline_is_measured_as_its_length(mask, true_length):
    assert outline_length_px(mask) == pytest.approx(true_length, rel=0.01)


def test_a_ring_counts_its_inner_outline_too():
    ring = _disk(150) & ~_disk(50)
    assert outline_length_px(ring) == pytest.approx(2 * np.pi * 200, rel=0.01)
