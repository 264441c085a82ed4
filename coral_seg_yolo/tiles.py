"""Tile origins shared by the YOLO-seg layout writer and the windowed predictor."""

from __future__ import annotations


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of ``tile`` px tiles covering ``length`` px, ``overlap`` (0..0.9) between neighbours.

    Examples:
        >>> tile_origins(256, 128, 0.25)
        [0, 96, 128]
    """
    if tile >= length:
        return [0]
    step = max(1, round(tile * (1 - overlap)))
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts
