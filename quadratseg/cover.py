"""Percent cover of the quadrat by label, with intervals, at any taxonomy level.

Two kinds of input, one module:

- Truth (polygons): cover is the share of the quadrat's pixels (warped frame) covered by each label;
  where colonies overlap, a pixel counts once, for the colony listed last (CVAT's drawing order). A
  colony is one ring (N, 2) or a list of rings (its parts and holes, even-odd rule), as FiftyOne
  polylines hold it (:func:`percent_cover`, :func:`label_map`, :func:`cover_from_class_map`).

- Predictions: cover over the *observed* quadrat, with intervals, and summaries over quadrats;
  pure arithmetic on masks and numbers (the chain from raw photos to cover feeds it):

- The denominator is the quadrat interior (the warped frame) minus the pixels nobody saw: under
  the grid mask the pixels were invented by inpainting, so by default they are no-data, left
  out of the numerator and the denominator (:func:`instance_cover`, ``observed_hw``).
- Interval per photo, method ``instance-confidence`` (+ ``boundary`` when ``boundary_px`` > 0):
  each predicted colony ``i`` of a class is taken to exist with probability ``p_i`` (its
  confidence), independently; its observed area is ``a_i`` pixels out of ``V``, and its outline
  may sit ``boundary_px`` off all around, moving its area by ``perimeter_i * boundary_px``. The
  cover's variance is ``sum(a_i^2 p_i (1 - p_i) + (perimeter_i * boundary_px)^2) / V^2`` and the
  interval is the normal one, clipped to 0..100. The confidence term says which colonies the
  model was unsure of; the boundary term how well it drew them, with ``boundary_px`` fitted on
  held-out photos (:func:`calibrate_boundary_px`).
- Neither term sees a colony the model missed entirely, and a missed colony only ever lowers the
  cover: the miss term ``miss_pp`` (method ``+miss``) raises every upper bound, including those of
  classes with no colony on the photo, by the cover the model is seen to miss on held-out photos
  (:func:`calibrate_miss_pp`). Both terms are fitted split-conformally (:func:`conformal_count`):
  with ``n`` held-out photo x class pairs, ``ceil((n + 1) * 0.95)`` of them must fall inside,
  which for fewer than 19 pairs means all of them. The demo fits both on its validation photos
  and reports the share of true covers inside the 95 % intervals on the test photos.
- Interval per photo from a semantic model, method ``class-probability-blocks``: the cover is the
  share of observed pixels whose most probable class is the label; pixels of one ``block_px``
  square block share their fate (neighbouring pixels are not independent draws), blocks are
  independent, and a block of ``n_b`` observed pixels whose mean probability of the label is
  ``q_b`` adds ``n_b^2 q_b (1 - q_b)`` to the variance times ``V^2``
  (:func:`semantic_cover`).
- Point counts (CoralNet): the Wilson score interval of a binomial share (:func:`wilson_interval`).
- Over quadrats (per site and year): mean, standard error and a Student-t interval
  (:func:`mean_interval`).

Examples:
    >>> round(wilson_interval(0, 10)[1], 3)
    0.278
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
from quadratseg.taxonomy import Taxonomy

Z95 = 1.959963984540054
INSTANCE_METHOD = "instance-confidence"
BOUNDARY_METHOD = "instance-confidence+boundary"
SEMANTIC_METHOD = "class-probability-blocks"


@dataclass(frozen=True)
class CoverEstimate:
    """Cover of one label on one photo: observed pixels, percent of the observed quadrat, interval."""

    label: str
    pixels: int
    observed_pixels: int
    percent: float
    low: float
    high: float
    colonies: int
    sd: float = 0.0  # standard deviation of ``percent``, percentage points
    method: str = INSTANCE_METHOD
    perimeter_px: int = 0  # summed outline length of the label's colonies
    miss_pp: float = 0.0  # the miss term added to ``high`` (percentage points)


def visible_areas(
    masks: Sequence[tuple[np.ndarray, tuple[int, int]]], frame_size: tuple[int, int], observed_hw: np.ndarray
) -> np.ndarray:
    """Observed pixels of each colony (N,) after overlaps: a pixel belongs to the colony listed
    last that covers it (pass colonies in ascending confidence so the surest one wins).

    Args:
        masks: per colony its bool box mask (h, w) and its box origin (x0, y0) in the frame.
        frame_size: (width, height) of the frame.
        observed_hw: bool (H, W), pixels that count (the quadrat minus no-data).
    """
    width, height = frame_size
    owner = np.full((height, width), -1, dtype=np.int32)
    for i, (box, (x0, y0)) in enumerate(masks):
        h, w = box.shape
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if xa >= xb or ya >= yb:
            continue
        region = owner[ya:yb, xa:xb]
        region[box[ya - y0 : yb - y0, xa - x0 : xb - x0]] = i
    owner[~observed_hw] = -1
    counts = np.bincount(owner.ravel() + 1, minlength=len(masks) + 1)
    return counts[1:].astype(np.int64)


def boundary_length_px(box_mask: np.ndarray) -> int:
    """Outline length of a colony's bool mask (h, w), in pixels: its pixels with a 4-neighbour outside."""
    m = np.pad(np.asarray(box_mask, dtype=bool), 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return int((m[1:-1, 1:-1] & ~inner).sum())


def instance_cover(
    labels: Sequence[str],
    scores: Sequence[float],
    areas_px: Sequence[int],
    observed_px: int,
    classes: Iterable[str] = (),
    z: float = Z95,
    perimeters_px: Sequence[int] | None = None,
    boundary_px: float = 0.0,
    miss_pp: float = 0.0,
) -> list[CoverEstimate]:
    """Cover per label from colonies (their labels, confidences, observed areas and outline
    lengths) with the interval of the module docstring; ``classes`` adds zero rows for labels
    without colonies, so every photo reports every class.
    """
    if boundary_px < 0 or miss_pp < 0:
        raise ValueError(f"interval terms must be >= 0, got boundary_px={boundary_px}, miss_pp={miss_pp}")
    if observed_px <= 0:
        raise ValueError("no observed pixel in the quadrat: cover is undefined")
    areas = np.asarray(areas_px, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    perimeters = (
        np.zeros(len(areas)) if perimeters_px is None else np.asarray(perimeters_px, dtype=np.float64)
    )
    method = (BOUNDARY_METHOD if boundary_px > 0 else INSTANCE_METHOD) + ("+miss" if miss_pp > 0 else "")
    names = list(dict.fromkeys([*classes, *labels]))
    out = []
    for name in names:
        sel = np.array([label == name for label in labels], dtype=bool)
        pixels = float(areas[sel].sum()) if sel.any() else 0.0
        var = (
            float((areas[sel] ** 2 * p[sel] * (1 - p[sel]) + (perimeters[sel] * boundary_px) ** 2).sum())
            if sel.any()
            else 0.0
        )
        share, sd = pixels / observed_px, math.sqrt(var) / observed_px
        out.append(
            CoverEstimate(
                name,
                int(pixels),
                int(observed_px),
                round(100 * share, 4),
                round(100 * max(share - z * sd, 0.0), 4),
                round(min(100 * (share + z * sd) + miss_pp, 100.0), 4),
                int((sel & (areas > 0)).sum()),
                round(100 * sd, 4),
                method,
                int(perimeters[sel].sum()) if sel.any() else 0,
                miss_pp,
            )
        )
    return out


def conformal_count(n: int, target: float = 0.95) -> int:
    """How many of ``n`` held-out values a split-conformal fit must cover for ``target`` coverage of
    a new one: ``ceil((n + 1) * target)``, at most ``n`` (then the level is not guaranteed).

    Examples:
        >>> conformal_count(100), conformal_count(10)
        (96, 10)
    """
    return min(n, math.ceil((n + 1) * target - 1e-9))


def calibrate_boundary_px(
    errors_pp: Sequence[float],
    confidence_sd_pp: Sequence[float],
    perimeter_share: Sequence[float],
    target: float = 0.95,
    z: float = Z95,
    limit_px: float = 50.0,
) -> float:
    """The smallest ``boundary_px`` whose intervals hold :func:`conformal_count` of held-out errors.

    Only rows with predicted colonies (``perimeter_share`` > 0) take part: an outline term cannot
    explain a class the model did not predict at all (:func:`calibrate_miss_pp` covers those).
    Capped at ``limit_px``.

    Args:
        errors_pp: per photo and class, predicted minus true cover (percentage points).
        confidence_sd_pp: the confidence term's standard deviation for the same rows.
        perimeter_share: their summed outline length divided by the observed pixels (1/px).
    """
    per_all = 100 * np.asarray(perimeter_share, dtype=np.float64)
    keep = per_all > 0
    e = np.abs(np.asarray(errors_pp, dtype=np.float64))[keep]
    sd = np.asarray(confidence_sd_pp, dtype=np.float64)[keep]
    per = per_all[keep]

    need = conformal_count(len(e), target)

    def covered(b: float) -> int:
        return int((e <= z * np.sqrt(sd**2 + (per * b) ** 2) + 1e-9).sum())

    if len(e) == 0 or covered(0.0) >= need:
        return 0.0
    if covered(limit_px) < need:
        return limit_px
    lo, hi = 0.0, limit_px
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if covered(mid) >= need else (mid, hi)
    return hi


def calibrate_miss_pp(
    truths_pp: Sequence[float],
    lows_pp: Sequence[float],
    highs_pp: Sequence[float],
    target: float = 0.95,
) -> float:
    """The smallest ``miss_pp`` that, added to the upper bounds, puts :func:`conformal_count` of the
    held-out true covers inside their intervals.

    Rows are every photo x class pair present in the truth or the prediction, a class the model
    missed entirely having the interval (0, 0). Only true covers above their interval can be
    reached; when too many lie below, the largest shortfall is returned.

    Examples:
        >>> calibrate_miss_pp([1.0, 2.0, 0.5], [0.5, 0.0, 0.4], [1.5, 0.0, 0.6])
        2.0
    """
    t, lo, hi = (np.asarray(v, dtype=np.float64) for v in (truths_pp, lows_pp, highs_pp))
    inside = (t >= lo - 1e-9) & (t <= hi + 1e-9)
    missing = conformal_count(len(t), target) - int(inside.sum())
    if missing <= 0:
        return 0.0
    shortfalls = np.sort((t - hi)[(t > hi + 1e-9) & (t >= lo - 1e-9)])
    if len(shortfalls) == 0:
        return 0.0
    return float(shortfalls[min(missing, len(shortfalls)) - 1])


def semantic_cover(
    probs_chw: np.ndarray,
    class_names: Sequence[str],
    observed_hw: np.ndarray,
    background: int = 0,
    block_px: int = 16,
    z: float = Z95,
) -> list[CoverEstimate]:
    """Cover per class of a class-probability map (C, H, W) over the observed pixels (H, W), with the
    ``class-probability-blocks`` interval (module docstring); the background class is left out."""
    c, h, w = probs_chw.shape
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} probability maps")
    observed = np.asarray(observed_hw, dtype=bool)
    total = int(observed.sum())
    if total <= 0:
        raise ValueError("no observed pixel in the quadrat: cover is undefined")
    top = probs_chw.argmax(axis=0)
    bh, bw = -(-h // block_px), -(-w // block_px)
    pad = ((0, bh * block_px - h), (0, bw * block_px - w))
    obs_blocks = np.pad(observed, pad).reshape(bh, block_px, bw, block_px).sum(axis=(1, 3)).astype(np.float64)
    out = []
    for k, name in enumerate(class_names):
        if k == background:
            continue
        pixels = int(((top == k) & observed).sum())
        mass = (
            np.pad(np.where(observed, probs_chw[k], 0.0), pad)
            .reshape(bh, block_px, bw, block_px)
            .sum(axis=(1, 3))
        )
        q = np.divide(mass, obs_blocks, out=np.zeros_like(mass), where=obs_blocks > 0)
        sd = float(np.sqrt((obs_blocks**2 * q * (1 - q)).sum())) / total
        share = pixels / total
        out.append(
            CoverEstimate(
                name,
                pixels,
                total,
                round(100 * share, 4),
                round(100 * max(share - z * sd, 0.0), 4),
                round(100 * min(share + z * sd, 1.0), 4),
                0,
                round(100 * sd, 4),
                SEMANTIC_METHOD,
            )
        )
    return out


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a binomial share (0..1); (0, 1) with no trial."""
    if trials <= 0:
        return 0.0, 1.0
    share = successes / trials
    denom = 1 + z**2 / trials
    centre = (share + z**2 / (2 * trials)) / denom
    half = z * math.sqrt(share * (1 - share) / trials + z**2 / (4 * trials**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, standard error, low, high) of quadrat values with a Student-t interval.

    One quadrat gives its value with an undefined spread (NaN error and bounds).
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no value to summarize")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    se = float(x.std(ddof=1) / math.sqrt(len(x)))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * se
    return mean, se, mean - half, mean + half


def interval_coverage(truths: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> float:
    """Share of true values inside their intervals (a calibration check of the intervals)."""
    t, lo, hi = (np.asarray(v, dtype=np.float64) for v in (truths, lows, highs))
    if len(t) == 0:
        return float("nan")
    return float(((t >= lo - 1e-9) & (t <= hi + 1e-9)).mean())


def regroup(
    estimates: Sequence[CoverEstimate], mapping: Callable[[str], str], z: float = Z95
) -> list[CoverEstimate]:
    """Cover at a coarser taxonomy level: pixels and variances of the labels that map together add up
    (colonies of different labels are disjoint, so their pixel counts add)."""
    groups: dict[str, list[CoverEstimate]] = {}
    for estimate in estimates:
        groups.setdefault(mapping(estimate.label), []).append(estimate)
    out = []
    for name, members in groups.items():
        observed = members[0].observed_pixels
        pixels = sum(m.pixels for m in members)
        sd = math.sqrt(sum(m.sd**2 for m in members))  # independent colonies: variances add
        miss = max(m.miss_pp for m in members)
        share = 100 * pixels / observed
        out.append(
            CoverEstimate(
                name,
                pixels,
                observed,
                round(share, 4),
                round(max(share - z * sd, 0.0), 4),
                round(min(share + z * sd + miss, 100.0), 4),
                sum(m.colonies for m in members),
                round(sd, 4),
                members[0].method,
                sum(m.perimeter_px for m in members),
                miss,
            )
        )
    return out


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
