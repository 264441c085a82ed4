import numpy as np
import pytest

from quadratseg.cover import label_map, percent_cover
from quadratseg.taxonomy import load_taxonomy


def square(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def test_cover_counts_overlaps_once_for_the_last_polygon():
    pairs = [("Acropora", square(0, 0, 6, 10)), ("Porites", square(4, 0, 10, 10))]
    cover = percent_cover(pairs, (10, 10))
    assert cover == {"Acropora": 40.0, "Porites": 60.0}
    index, names = label_map(pairs, (10, 10))
    assert names == ["Acropora", "Porites"] and index[0, 5] == 2


def test_cover_regrouped_by_taxonomy_level():
    pairs = [("Acropora", square(0, 0, 5, 10)), ("Montipora", square(5, 0, 10, 5))]
    cover = percent_cover(pairs, (10, 10), load_taxonomy(), "main_family")
    assert cover == {"Acroporidae": pytest.approx(75.0)}


def test_a_colony_with_a_hole_and_two_parts_covers_only_its_pixels():
    colony = [square(0, 0, 6, 6), square(2, 2, 4, 4), square(8, 8, 10, 10)]  # ring, hole, islet
    assert percent_cover([("Porites", colony)], (10, 10)) == {"Porites": 36.0 - 4.0 + 4.0}
