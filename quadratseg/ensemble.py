"""Pixel-level fusion of an instance model (colonies) and a semantic model (class probabilities).

Both become per-class score maps (C, H, W) over the same classes, background first:

- colonies: class ``k`` scores the highest confidence of a colony of that class covering the pixel,
  background scores 1 minus the highest colony score there (:func:`instance_score_maps`);
- a semantic model gives its softmax probabilities as they are.

Fusions (:func:`fuse_scores`), the result again (C, H, W) summing to 1 per pixel:

- ``weighted``: ``w * colonies + (1 - w) * semantic``, renormalized;
- ``voting``: each model votes for its most likely class with its own score; the class with the
  larger summed vote wins, and the fused scores are the vote shares (two models that agree give
  1, a disagreement gives the winner its share of the votes).

Example:
    >>> a = np.array([[[0.2]], [[0.8]]]); b = np.array([[[0.6]], [[0.4]]])
    >>> fuse_scores(a, b, "weighted").round(2).ravel().tolist()
    [0.4, 0.6]
    >>> fuse_scores(a, b, "voting").round(2).ravel().tolist()
    [0.43, 0.57]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ENSEMBLES = ("weighted", "voting")


def instance_score_maps(
    colonies: Sequence[tuple[int, float, np.ndarray, tuple[int, int]]],
    n_classes: int,
    frame_size: tuple[int, int],
) -> np.ndarray:
    """Score maps (n_classes, H, W) float32 of colonies given as (class index >= 1, confidence,
    bool box mask (h, w), box origin (x0, y0)) in a ``frame_size=(width, height)`` frame."""
    width, height = frame_size
    scores = np.zeros((n_classes, height, width), dtype=np.float32)
    for k, score, box, (x0, y0) in colonies:
        if not 1 <= k < n_classes:
            raise ValueError(f"class index {k} is not a colony class of {n_classes} (0 is background)")
        h, w = box.shape
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if xa >= xb or ya >= yb:
            continue
        region = scores[k, ya:yb, xa:xb]
        inside = box[ya - y0 : yb - y0, xa - x0 : xb - x0]
        region[inside] = np.maximum(region[inside], score)
    scores[0] = 1.0 - scores[1:].max(axis=0) if n_classes > 1 else 1.0
    return scores


def fuse_scores(colonies: np.ndarray, semantic: np.ndarray, method: str, weight: float = 0.5) -> np.ndarray:
    """Fused per-class scores (C, H, W) of two maps of the same shape (module docstring)."""
    if colonies.shape != semantic.shape:
        raise ValueError(f"score maps of different shapes: {colonies.shape} and {semantic.shape}")
    if method == "weighted":
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the ensemble weight must be within 0..1, got {weight}")
        fused = weight * colonies + (1.0 - weight) * semantic
        return fused / np.maximum(fused.sum(axis=0, keepdims=True), 1e-12)
    if method == "voting":
        votes = np.zeros_like(semantic, dtype=np.float64)
        for scores in (colonies, semantic):
            top = scores.argmax(axis=0)
            np.put_along_axis(
                votes, top[None], np.take_along_axis(votes, top[None], 0) + scores.max(axis=0)[None], 0
            )
        return votes / np.maximum(votes.sum(axis=0, keepdims=True), 1e-12)
    raise ValueError(f"unknown ensemble {method!r}; choose one of {', '.join(ENSEMBLES)}")
