"""Percent cover of the quadrat by label, from coral polygons, at any taxonomy level.

Cover is the share of the quadrat's pixels (warped frame) covered by each label; where
colonies overlap, a pixel counts once, for the colony listed last (CVAT's drawing order). A colony
is one ring (N, 2) or a list of rings (its parts and holes, even-odd rule), as FiftyOne polylines
hold it.

Examples:
    >>> square = np.array([[0, 0], [5, 0], [5, 10], [0, 10]], float)
    >>> percent_cover([("Acropora", square)], (10, 10))
    {'Acropora': 50.0}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
from quadratseg.taxonomy import Taxonomy


def label_map(
    labelled_polygons: Iterable[tuple[str, np.ndarray | Sequence[np.ndarray]]], frame_size: tuple[int, int]
) -> tuple[np.ndarray, list[str]]:
    """Rasterize (label, colony) pairs into an index map (H, W) int32 (0 = no coral); a colony is a
    ring (N, 2) or a list of rings (parts and holes, even-odd).

    Returns the map and the label of each index starting at 1.
    """
    width, height = frame_size
    index = np.zeros((height, width), dtype=np.int32)
    names: list[str] = []
    for label, polygon in labelled_polygons:
        if label not in names:
            names.append(label)
        rings = [polygon] if isinstance(polygon, np.ndarray) and polygon.ndim == 2 else list(polygon)
        if not rings:
            continue
        colony = PolygonWithHoles(np.asarray(rings[0], float), [np.asarray(r, float) for r in rings[1:]])
        index[polygons_to_mask([colony], frame_size)] = names.index(label) + 1
    return index, names


def percent_cover(
    labelled_polygons: Iterable[tuple[str, np.ndarray]],
    frame_size: tuple[int, int],
    taxonomy: Taxonomy | None = None,
    level: str = "finegrained",
) -> dict[str, float]:
    """Percent of the ``frame_size=(width, height)`` area covered by each label (re-grouped to ``level``).

    Labels are finegrained when ``taxonomy`` is given; without it they are used as they are.
    """
    pairs = list(labelled_polygons)
    if taxonomy is not None and level != "finegrained":
        mapped = taxonomy.map_labels([label for label, _ in pairs], level)
        pairs = [(m, p) for m, (_, p) in zip(mapped, pairs, strict=True)]
    index, names = label_map(pairs, frame_size)
    counts = np.bincount(index.ravel(), minlength=len(names) + 1)
    total = float(index.size)
    return {name: round(float(100.0 * counts[i + 1] / total), 3) for i, name in enumerate(names)}


def cover_from_class_map(
    class_map: np.ndarray, class_names: list[str], background: int = 0
) -> dict[str, float]:
    """Percent of the frame covered by each class of a class-index map (H, W), background left out.

    Examples:
        >>> cover_from_class_map(np.array([[0, 1], [1, 2]]), ["background", "Acropora", "Porites"])
        {'Acropora': 50.0, 'Porites': 25.0}
    """
    counts = np.bincount(class_map.ravel(), minlength=len(class_names))
    total = float(class_map.size)
    return {
        name: round(float(100.0 * counts[k] / total), 3)
        for k, name in enumerate(class_names)
        if k != background
    }
