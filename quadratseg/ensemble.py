"""Pixel-level fusion of an instance model (colonies) and a semantic model (class probabilities).

Both become per-class score maps (C, H, W) over the same classes, background first:

- colonies: class ``k`` scores the highest confidence of a colony of that class covering the pixel,
  background scores 1 minus the highest colony score there (:func:`instance_score_maps`);
- a semantic model gives its softmax probabilities as they are.

Fusions (:func:`fuse_scores`), the result again (C, H, W) summing to 1 per pixel:

- ``weighted``: ``w * colonies + (1 - w) * semantic``, renormalized;
- ``voting``: each model votes for its most likely class with its own score; the class with the
  larger summed vote wins, and the fused scores are the vote shares (two models that agree give
  1, a disagreement gives the winner its share of the votes). A vote share is not a probability:
  the cover intervals use it only with fitted terms (:mod:`quadratseg.cover`).

Instance-level (:func:`nms_instances`), ``nms``: the colonies of both models (the semantic model's
as connected regions of its class map) pooled, most confident first; a colony whose mask overlaps
one already kept by IoU >= a threshold is dropped. Class-agnostic, since a pixel belongs to one
colony: where the models disagree on a colony's genus, the surer one decides.

Examples:
    >>> a = np.array([[[0.2]], [[0.8]]]); b = np.array([[[0.6]], [[0.4]]])
    >>> fuse_scores(a, b, "weighted").round(2).ravel().tolist()
    [0.4, 0.6]
    >>> fuse_scores(a, b, "voting").round(2).ravel().tolist()
    [0.43, 0.57]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from quadratseg.instances import Instance, mask_iou

ENSEMBLES = ("weighted", "voting", "nms")
PIXEL_ENSEMBLES = ("weighted", "voting")


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
    raise ValueError(f"unknown pixel ensemble {method!r}; choose one of {', '.join(PIXEL_ENSEMBLES)}")


def nms_instances(instances: Sequence[Instance], iou_threshold: float = 0.5) -> list[Instance]:
    """Greedy class-agnostic mask non-maximum suppression: colonies in descending score, each kept
    unless its IoU with a kept one reaches ``iou_threshold`` (module docstring).

    Examples:
        >>> big = Instance("Porites", 0.9, np.ones((4, 4), bool))
        >>> same = Instance("Acropora", 0.6, np.ones((4, 3), bool))
        >>> away = Instance("Pocillopora", 0.5, np.ones((2, 2), bool), (10, 10))
        >>> [(i.label, i.score) for i in nms_instances([same, away, big])]
        [('Porites', 0.9), ('Pocillopora', 0.5)]
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"the NMS IoU threshold must be within (0, 1], got {iou_threshold}")
    kept: list[Instance] = []
    for inst in sorted(instances, key=lambda i: -i.score):
        if all(mask_iou(inst, other) < iou_threshold for other in kept):
            kept.append(inst)
    return kept
