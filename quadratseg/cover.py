"""Percent cover of the quadrat by label, with intervals, at any taxonomy level.

Truth (polygons): cover is the share of the quadrat's pixels (warped frame) covered by each label;
where colonies overlap, a pixel counts once, for the colony listed last (CVAT's drawing order). A
colony is one ring (N, 2) or a list of rings (its parts and holes, even-odd rule), as FiftyOne
polylines hold it (:func:`percent_cover`, :func:`label_map`, :func:`cover_from_class_map`).

Predictions: cover over the *observed* quadrat, with an interval per photo and class, and
summaries over quadrats. The denominator ``V`` is the quadrat interior (the warped frame) minus the
pixels nobody saw: under the grid mask the pixels were invented by inpainting, so by default they
are no-data, left out of the numerator and the denominator (``observed_hw``).

The interval model (one for every segmenter; only the *units* differ):

- Units: a segmenter's prediction of a class on a photo is a set of units ``u`` with an observed
  area ``a_u`` (px), a score ``s_u`` and an outline length ``P_u`` (px). Instances
  (:func:`instance_cover`): a unit is a colony, its score the model's confidence. Class maps
  (:func:`semantic_cover`): a unit is the class's pixels in one ``block_px`` square block (pixels
  of a block share their fate, blocks are independent), its score their mean probability of the
  class (or vote share). ``percent`` is the masks' cover ``100 sum(a_u) / V``.
- A class predicted on the photo (``percent`` > 0). The error of the masks' cover is modelled as
  ``T - percent = m_c + sd * e``, ``e`` of median 0 and scale 1, with

  - ``m_c`` (the class term, ``bias_pp``): the class's systematic error (colonies missed or drawn
    wide, genus confusions), the mean of ``T - percent`` over held-out pairs of that class;
  - ``sd^2 = k^2 C + (b P / V)^2 + a^2`` (percentage points squared): the confidence term
    ``C = sum(a_u^2 s_u (1 - s_u)) / V^2`` (``confidence_sd`` = ``100 sqrt(C)``), the spread of a
    sum of units each right or wrong with odds given by its score, scaled by ``k``
    (``confidence_scale``) because scores are not calibrated probabilities; and the outline term,
    all outlines of the class on the photo off by ``b`` px together (``boundary_px``; ``P`` the
    summed outline length, ``perimeter_px``), a model's outline error being systematic; and the
    floor ``a`` (``floor_pp``), the error neither explains (without it a speck the model is sure
    of, whose two terms are about 0, gets a score in the hundreds, and the split-conformal ``q``
    of a few dozen pairs, their largest score, widens every interval to 0..100).

  ``centre = percent + m_c`` (never below 0) and the interval is ``centre -+ q sd`` clipped to
  0..100, ``q`` (``quantile``) making it hold 95 %. ``k``, ``b`` and ``a`` are fitted by the moments
  of the same formula (non-negative least squares of ``(T - centre)^2`` on ``C``, ``(P / V)^2`` and 1),
  ``q`` split-conformally on ``|T - centre| / sd`` (:func:`conformal_count`), both on the held-out
  pairs where the class is there.
- A class predicted where it is absent (a genus confusion, false colonies): ``T`` = 0. Its
  interval reaches 0 when ``percent <= a_c`` (``absent_pp``, the class's absence term): ``a_c`` is
  the split-conformal 95 % bound of the predicted covers of the held-out pairs where the class was
  predicted and absent, so 95 % of such pairs read "possibly none". Without it the predicted pairs
  hold 95 % together, and the confusions, a minority of small covers the model is sure of, far
  less (0.91 in the simulation of ``tests/test_cover_calibration.py``, 3 of 9 of YOLO's on the demo's
  held-out photos). With fewer than 19 such pairs the bound is the largest of them; with none, 0.
- A class not predicted on the photo (``percent`` = 0): ``T`` is the cover the model missed
  entirely, ``>= 0``. The interval is one-sided, ``[0, u_c]`` with centre 0 (``miss_pp`` = ``u_c``,
  the class's miss term), read as "if the model missed any of the class, at most ``u_c``": ``u_c``
  is the split-conformal 95 % bound of the true covers of the held-out pairs where the model saw
  none of the class *though it was there* (:func:`calibrate_miss_pp`). The pairs where the class
  was absent too are inside any such interval and are left out of the fit: with most genera absent
  from most photos, a bound over every unseen pair is held by the absent ones and covers a missed
  colony far less than 95 % of the time (0.45 of them in the simulation of
  ``tests/test_cover_calibration.py``, 0.88 of YOLO's on the demo's held-out photos). With fewer
  than 19 missed pairs the bound is the largest of them, which holds ``n / (n + 1)`` of the missed
  ones, not 95 %; with none it is 0 (the model missed no class it was shown), and the ``pairs``
  field (``missed``) says how many it rests on.
- Per class where the data allow, pooled otherwise: ``m_c``, ``u_c`` and ``a_c`` are fitted per
  class when the class has at least ``MIN_CLASS_PAIRS`` = 19 held-out pairs of that kind (predicted;
  missed; predicted and absent)
  (the fewest for which a split-conformal 95 % bound does not need every pair to be inside), and
  pooled over the classes otherwise; ``fit`` says which ("per-class" or "pooled").
- Assumptions: the held-out photos are exchangeable with the new ones (same model, same kind of
  reef and imaging); the coverage is marginal over each kind of pair (predicted where present,
  predicted where absent, missed) and, with per-class terms, per class; so it holds over the pairs
  present in the truth or the prediction, the ones a scientist reads, a little above 95 % over
  them together. The class terms are fitted on held-out pairs that ``q`` is fitted on too (``m_c``
  on every predicted pair, the confusions included, as the mean error of a predicted cover; ``q`` on
  those where the class is there); with few pairs this makes the intervals a little too narrow.
  Pairs of one photo share its light and reef, so a dozen photos' pairs are fewer independent
  draws than they look.
- Without a fit (:meth:`CoverCalibration.uncalibrated`, method without ``+calibrated``): ``m_c`` =
  0, ``k`` = 1 (``s_u`` taken as a probability; 0 for vote shares, which are not probabilities),
  ``q`` = 1.96, ``b`` and a pooled ``u`` as given (``--boundary-px``, ``--miss-pp``); such an
  interval only holds the terms given.
- Coarser taxonomy levels (:func:`regroup`): centres add; the members' half-widths add (a
  member whose interval reaches 0 by its absence term brings its lower end 0), which
  holds 95 % whatever the correlation between the classes' errors (the standard deviation of a sum
  is at most the sum of the standard deviations): exact when the errors move together (a shared
  outline bias), wider when they cancel (genus confusions within the group).

Point counts (CoralNet): the Wilson score interval of a binomial share (:func:`wilson_interval`).
Over quadrats (per site and year): mean, standard error and a Student-t interval
(:func:`mean_interval`); it covers the quadrat-to-quadrat variation only, not the model's error.

Examples:
    >>> round(wilson_interval(0, 10)[1], 3)
    0.278
    >>> (row,) = instance_cover(["Porites"], [1.0], [100], 1000, perimeters_px=[36], boundary_px=0.5)
    >>> row.percent, row.centre, row.sd
    (10.0, 10.0, 1.8)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
from quadratseg.taxonomy import Taxonomy

Z95 = 1.959963984540054
INSTANCE_METHOD = "instance-confidence"
SEMANTIC_METHOD = "class-probability-blocks"
VOTE_METHOD = "vote-share-blocks"
CALIBRATED = "+calibrated"
TERMS_TWICE = (
    "either fitted terms or --boundary-px/--miss-pp, not both: the fitted terms include the outline "
    "and miss terms"
)
MIN_CLASS_PAIRS = 19  # held-out pairs a class needs for its own term (conformal_count(19) = 19)


@dataclass(frozen=True)
class CoverEstimate:
    """Cover of one label on one photo: observed pixels, percent of the observed quadrat, the model's
    centre and interval (module docstring; percentages and percentage points)."""

    label: str
    pixels: int
    observed_pixels: int
    percent: float  # the masks' cover
    low: float
    high: float
    colonies: int  # colonies with observed pixels (0 for a class map)
    sd: float = 0.0  # of the two-sided part of the interval
    method: str = INSTANCE_METHOD
    perimeter_px: int = 0  # summed outline length of the label's units
    miss_pp: float = 0.0  # the one-sided miss term (a class not predicted on the photo)
    centre: float | None = None  # the model's centre (percent + the class term); None: percent
    confidence_sd: float = 0.0  # 100 sqrt(C), the unscaled confidence term
    half_width: float = 0.0  # q * sd before clipping
    # "per-class" or "pooled": how the class term was fitted; "summed": a coarser level's row that
    # adds up its members' terms because its level's own rest on too few pairs (cover_table)
    fit: str = "uncalibrated"


@dataclass(frozen=True)
class CoverCalibration:
    """The fitted terms of the cover intervals of one segmenter (module docstring)."""

    confidence_scale: float = 1.0  # k
    boundary_px: float = 0.0  # b
    quantile: float = Z95  # q
    floor_pp: float = 0.0  # a: the error neither the confidence nor the outline term explains
    bias_pp: dict[str, float] = field(default_factory=dict)  # m_c of the classes fitted on their own
    bias_pooled_pp: float = 0.0
    miss_by_class_pp: dict[str, float] = field(default_factory=dict)  # u_c
    miss_pooled_pp: float = 0.0
    # a_c: the predicted cover at or below which a class may be absent, its interval reaching 0
    absent_by_class_pp: dict[str, float] = field(default_factory=dict)
    absent_pooled_pp: float = 0.0
    fitted: bool = False
    # held-out pairs: predicted, not predicted, missed (present, not predicted), absent (predicted, not there)
    pairs: dict[str, int] = field(default_factory=dict)
    level: str = ""  # the taxonomy level of the pairs it was fitted on ("": not recorded)
    method: str = ""  # the units of the estimates it was fitted on (instance-confidence, ...)
    # the colony confidence threshold of the run it was fitted on (None: not recorded, or no colony model):
    # the colonies' units, and so the terms, depend on it
    colony_conf: float | None = None
    # the terms fitted at each coarser taxonomy level on the same photos, as dicts of these fields
    # (quadratseg.cover_table.fit_calibration); a level without them is regrouped (:func:`regroup`)
    levels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def uncalibrated(
        cls, boundary_px: float = 0.0, miss_pp: float = 0.0, scores_are_probabilities: bool = True
    ) -> CoverCalibration:
        """The terms without a fit: the given outline and miss terms, the scores taken as
        probabilities (or left out, for vote shares).

        Examples:
            >>> CoverCalibration.uncalibrated(miss_pp=1.5).miss("Porites")
            (1.5, 'uncalibrated')
        """
        if boundary_px < 0 or miss_pp < 0:
            raise ValueError(f"interval terms must be >= 0, got boundary_px={boundary_px}, miss_pp={miss_pp}")
        return cls(
            confidence_scale=1.0 if scores_are_probabilities else 0.0,
            boundary_px=boundary_px,
            miss_pooled_pp=miss_pp,
        )

    def present_pairs(self) -> int | None:
        """Held-out pairs predicted where the class was there: what ``k``, ``b``, ``a`` and ``q`` rest
        on (terms of an earlier version, which fitted them on every predicted pair, count those; None:
        terms that record no count, written by hand)."""
        for key in ("present", "predicted"):
            if key in self.pairs:
                return int(self.pairs[key])
        return None

    def bias(self, label: str) -> tuple[float, str]:
        """(m_c, how it was fitted) of a class predicted on the photo ("uncalibrated" when the fit
        had no pair predicted where its class was: then ``k``, ``b`` and ``q`` are the uncalibrated
        ones too)."""
        if not self.fitted or self.present_pairs() == 0:
            return 0.0, "uncalibrated"
        if label in self.bias_pp:
            return self.bias_pp[label], "per-class"
        return self.bias_pooled_pp, "pooled"

    def miss(self, label: str) -> tuple[float, str]:
        """(u_c, how it was fitted) of a class not predicted on the photo."""
        if not self.fitted or self.pairs.get("not_predicted") == 0:
            return self.miss_pooled_pp, "uncalibrated"
        if label in self.miss_by_class_pp:
            return self.miss_by_class_pp[label], "per-class"
        return self.miss_pooled_pp, "pooled"

    def absent(self, label: str) -> tuple[float, str]:
        """(a_c, how it was fitted) of a class predicted on the photo: at or below ``a_c`` % of
        predicted cover the class may not be there at all, and its interval reaches 0."""
        if not self.fitted or self.pairs.get("predicted") == 0:
            return 0.0, "uncalibrated"
        if label in self.absent_by_class_pp:
            return self.absent_by_class_pp[label], "per-class"
        return self.absent_pooled_pp, "pooled"

    def at_level(self, level: str) -> CoverCalibration | None:
        """The terms fitted at a coarser taxonomy level (None: none were, the level is regrouped).

        Examples:
            >>> terms = CoverCalibration(levels={"agnostic": {"miss_pooled_pp": 2.0, "fitted": True}})
            >>> terms.at_level("agnostic").miss_pooled_pp, terms.at_level("main_family")
            (2.0, None)
        """
        terms = self.levels.get(level)
        return None if terms is None else CoverCalibration(**terms)

    def to_json(self, path: str | Path) -> Path:
        """Write the terms as JSON (atomically); :meth:`from_json` reads them back."""
        from quadratseg.atomic import atomic_write_json

        return atomic_write_json(Path(path), asdict(self))

    @classmethod
    def from_json(cls, path: str | Path) -> CoverCalibration:
        """Read the terms :meth:`to_json` wrote."""
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def class_estimate(
    label: str,
    pixels: int,
    observed_px: int,
    units: int,
    confidence_var_px2: float,
    perimeter_px: float,
    method: str,
    calibration: CoverCalibration,
) -> CoverEstimate:
    """The cover and interval of one class on one photo from its units' totals (module docstring):
    observed pixels, number of units, ``sum(a_u^2 s_u (1 - s_u))`` (px^2) and summed outline (px)."""
    share = 100.0 * pixels / observed_px
    # rounded as stored before it is used: re-deriving the interval from a stored estimate
    # (:func:`reapplied`) then gives the very same interval
    confidence_sd = round(100.0 * math.sqrt(max(confidence_var_px2, 0.0)) / observed_px, 4)
    if pixels <= 0:
        upper, fit = calibration.miss(label)
        method += CALIBRATED if fit != "uncalibrated" else ("+miss" if upper > 0 else "")
        return CoverEstimate(
            label, 0, int(observed_px), 0.0, 0.0, round(min(upper, 100.0), 4), 0, 0.0, method,
            int(perimeter_px), round(upper, 4), 0.0, round(confidence_sd, 4), 0.0, fit,
        )  # fmt: skip
    bias, fit = calibration.bias(label)
    method += CALIBRATED if fit != "uncalibrated" else ("+boundary" if calibration.boundary_px > 0 else "")
    outline_sd = 100.0 * calibration.boundary_px * perimeter_px / observed_px
    sd = math.sqrt(
        (calibration.confidence_scale * confidence_sd) ** 2 + outline_sd**2 + calibration.floor_pp**2
    )
    centre = max(share + bias, 0.0)
    half = calibration.quantile * sd
    absent_pp, _ = calibration.absent(label)
    low = 0.0 if share <= absent_pp else max(centre - half, 0.0)  # so little, it may be a confusion
    return CoverEstimate(
        label, int(pixels), int(observed_px), round(share, 4), round(low, 4),
        round(min(centre + half, 100.0), 4), int(units), round(sd, 4), method, int(perimeter_px), 0.0,
        round(centre, 4), round(confidence_sd, 4), round(half, 4), fit,
    )  # fmt: skip


def reapplied(estimate: CoverEstimate, calibration: CoverCalibration) -> CoverEstimate:
    """The same class on the same photo under other interval terms: the interval re-derived from
    the fields no term changes (pixels, observed pixels, units, ``confidence_sd``, ``perimeter_px``
    and the method's unit kind), as :func:`class_estimate` makes it. Scores a fit on other held-out
    photos without running the models again; under the terms that made it, the estimate itself."""
    confidence_var_px2 = (estimate.confidence_sd * estimate.observed_pixels / 100.0) ** 2
    return class_estimate(
        estimate.label,
        estimate.pixels,
        estimate.observed_pixels,
        estimate.colonies,
        confidence_var_px2,
        estimate.perimeter_px,
        estimate.method.split("+")[0],
        calibration,
    )


def visible_areas(
    masks: Sequence[tuple[np.ndarray, tuple[int, int]]], frame_size: tuple[int, int], observed_hw: np.ndarray
) -> np.ndarray:
    """Observed pixels of each colony (N,) after overlaps: a pixel belongs to the colony listed
    last that covers it (pass colonies in ascending confidence so the surest one wins).

    Counted box by box: a colony's box mask, cut to the frame and to the observed pixels, minus the
    masks of the later colonies whose boxes meet its box, so the cost follows the colonies' boxes,
    not the frame's size; when the boxes add up to more than the frame (colonies piled on each
    other), one frame-sized owner map is painted instead (``benchmarks/bench_cover.py``).

    Args:
        masks: per colony its bool box mask (h, w) and its box origin (x0, y0) in the frame.
        frame_size: (width, height) of the frame.
        observed_hw: bool (H, W), pixels that count (the quadrat minus no-data).
    """
    width, height = frame_size
    boxes = np.zeros((len(masks), 4), dtype=np.int64)  # xa, ya, xb, yb, cut to the frame
    cut: list[np.ndarray | None] = []
    for i, (box, (x0, y0)) in enumerate(masks):
        h, w = box.shape
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if xa >= xb or ya >= yb:
            cut.append(None)
            continue
        boxes[i] = xa, ya, xb, yb
        cut.append(np.asarray(box[ya - y0 : yb - y0, xa - x0 : xb - x0], dtype=bool))
    if int(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()) > width * height:
        return _owner_map_areas(cut, boxes, frame_size, observed_hw)  # boxes piled up: one map is cheaper
    areas = np.zeros(len(masks), dtype=np.int64)
    for i, mine in enumerate(cut):
        if mine is None:
            continue
        xa, ya, xb, yb = (int(v) for v in boxes[i])
        mine = mine & observed_hw[ya:yb, xa:xb]
        later = boxes[i + 1 :]
        meets = (later[:, 0] < xb) & (later[:, 2] > xa) & (later[:, 1] < yb) & (later[:, 3] > ya)
        for j in np.flatnonzero(meets) + i + 1:
            other = cut[j]
            if other is None:
                continue
            ja, jb = int(boxes[j, 0]), int(boxes[j, 1])
            ia, ib = max(xa, ja), max(ya, jb)
            ic, id_ = min(xb, int(boxes[j, 2])), min(yb, int(boxes[j, 3]))
            mine[ib - ya : id_ - ya, ia - xa : ic - xa] &= ~other[ib - jb : id_ - jb, ia - ja : ic - ja]
        areas[i] = int(mine.sum())
    return areas


def _owner_map_areas(
    cut: list[np.ndarray | None], boxes: np.ndarray, frame_size: tuple[int, int], observed_hw: np.ndarray
) -> np.ndarray:
    """:func:`visible_areas` on a frame-sized map: each colony's mask (cut to the frame, its box
    ``boxes[i]`` = xa, ya, xb, yb) painted in order, then the observed pixels counted per owner."""
    width, height = frame_size
    owner = np.full((height, width), -1, dtype=np.int32)
    for i, mine in enumerate(cut):
        if mine is not None:
            xa, ya, xb, yb = (int(v) for v in boxes[i])
            owner[ya:yb, xa:xb][mine] = i
    owner[~observed_hw] = -1
    return np.bincount(owner.ravel() + 1, minlength=len(cut) + 1)[1:].astype(np.int64)


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
    calibration: CoverCalibration | None = None,
) -> list[CoverEstimate]:
    """Cover per label from colonies (their labels, confidences, observed areas and outline lengths)
    with the interval of the module docstring; ``classes`` adds rows for labels without colonies, so
    every photo reports every class. Without ``calibration``, the uncalibrated terms
    (``boundary_px``, ``miss_pp``, ``z``).
    """
    if calibration is None:
        calibration = CoverCalibration.uncalibrated(boundary_px, miss_pp)
        calibration = CoverCalibration(**{**asdict(calibration), "quantile": z})
    elif boundary_px or miss_pp:
        raise ValueError(TERMS_TWICE)
    if observed_px <= 0:
        raise ValueError("no observed pixel in the quadrat: cover is undefined")
    areas = np.asarray(areas_px, dtype=np.float64)
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    perimeters = np.zeros(len(areas)) if perimeters_px is None else np.asarray(perimeters_px, np.float64)
    label_array = np.asarray(list(labels), dtype=object)
    out = []
    for name in dict.fromkeys([*classes, *labels]):
        sel = (label_array == name) & (areas > 0) if len(areas) else np.zeros(0, bool)
        out.append(
            class_estimate(
                name,
                int(areas[sel].sum()),
                int(observed_px),
                int(sel.sum()),
                float((areas[sel] ** 2 * p[sel] * (1 - p[sel])).sum()),
                float(perimeters[sel].sum()),
                INSTANCE_METHOD,
                calibration,
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


def conformal_bound(scores: Sequence[float], target: float = 0.95) -> float:
    """The split-conformal bound of held-out non-negative scores: the :func:`conformal_count`-th
    smallest (0 without a score).

    Examples:
        >>> conformal_bound([0.1, 0.4, 0.2])
        0.4
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    return float(s[conformal_count(len(s), target) - 1]) if len(s) else 0.0


def calibrate_miss_pp(truths_pp: Sequence[float], target: float = 0.95) -> float:
    """The miss term ``u_c``: the split-conformal bound of the true covers of the held-out photo x
    class pairs where the model predicted none of the class *and the class was there* (the upper end
    of their one-sided interval). ``truths_pp`` are the true covers of every held-out pair the model
    did not predict; the absent ones (0) are left out, because they are inside any ``[0, u]`` and
    would let the bound hold 95 % of pairs most of which have nothing to miss (0 when the model
    missed nothing).

    Examples:
        >>> calibrate_miss_pp([0.0] * 38 + [0.4, 2.0])
        2.0
        >>> calibrate_miss_pp([0.0] * 38 + [float(v) for v in range(1, 21)])
        20.0
        >>> calibrate_miss_pp([0.0] * 38 + [float(v) for v in range(1, 41)])
        39.0
    """
    truths = np.asarray(truths_pp, dtype=np.float64)
    return conformal_bound(truths[truths > 0], target)


def fit_cover_calibration(
    estimates: Sequence[CoverEstimate],
    truths_pp: Sequence[float],
    target: float = 0.95,
    min_class_pairs: int = MIN_CLASS_PAIRS,
) -> CoverCalibration:
    """Fit the interval terms (module docstring) on held-out photo x class pairs.

    Args:
        estimates: the segmenter's estimates on held-out photos, every class on every photo (pass
            ``classes`` to the cover functions), from a run with or without a calibration (only
            ``percent``, ``confidence_sd``, ``perimeter_px`` and ``observed_pixels`` are read).
        truths_pp: the true cover of each pair (percent of the quadrat).
        target: the intervals' coverage.
        min_class_pairs: the fewest pairs of a kind for a class's own term.
    """
    if len(estimates) != len(truths_pp):
        raise ValueError(f"{len(estimates)} estimates for {len(truths_pp)} true covers")
    if not estimates:
        raise ValueError(
            "no held-out photo x class pair to fit the interval terms on: "
            "annotate photos the model did not train on"
        )
    truths = np.asarray(truths_pp, dtype=np.float64)
    seen = np.array([e.pixels > 0 for e in estimates], dtype=bool)
    labels = np.asarray([e.label for e in estimates], dtype=object)
    percent = np.asarray([e.percent for e in estimates], dtype=np.float64)
    missed = ~seen & (truths > 0)
    miss_by_class = {
        name: calibrate_miss_pp(truths[missed & (labels == name)], target)
        for name in dict.fromkeys(labels[missed])
        if int((missed & (labels == name)).sum()) >= min_class_pairs
    }
    absent = seen & (truths <= 0)  # predicted where the class is not: a genus confusion, a false colony
    absent_by_class = {
        name: conformal_bound(percent[absent & (labels == name)], target)
        for name in dict.fromkeys(labels[absent])
        if int((absent & (labels == name)).sum()) >= min_class_pairs
    }
    residual = truths - percent
    bias_by_class = {
        name: float(residual[seen & (labels == name)].mean())
        for name in dict.fromkeys(labels[seen])
        if int((seen & (labels == name)).sum()) >= min_class_pairs
    }
    bias_pooled = float(residual[seen].mean()) if seen.any() else 0.0
    bias = np.array([bias_by_class.get(name, bias_pooled) for name in labels[seen]])
    # the spread and q on the pairs where the class is there: the absent ones have the absence term
    present = (truths > 0)[seen]
    error = (truths[seen] - np.maximum(percent[seen] + bias, 0.0))[present]
    confidence_var = (np.asarray([e.confidence_sd for e in estimates], dtype=np.float64)[seen] ** 2)[present]
    outline = np.asarray(
        [100.0 * e.perimeter_px / e.observed_pixels for e in estimates], dtype=np.float64
    )[seen][present]  # fmt: skip
    k2, b2, a2 = fit_variance_terms(error**2, confidence_var, outline**2)
    sd = np.sqrt(k2 * confidence_var + b2 * outline**2 + a2)
    scores = np.divide(np.abs(error), sd, out=np.where(np.abs(error) > 1e-9, np.inf, 0.0), where=sd > 0)
    return CoverCalibration(
        confidence_scale=math.sqrt(k2),
        boundary_px=math.sqrt(b2),
        floor_pp=math.sqrt(a2),
        quantile=conformal_bound(scores, target) if len(scores) else Z95,
        bias_pp=bias_by_class,
        bias_pooled_pp=bias_pooled,
        miss_by_class_pp=miss_by_class,
        miss_pooled_pp=calibrate_miss_pp(truths[~seen], target),
        absent_by_class_pp=absent_by_class,
        absent_pooled_pp=conformal_bound(percent[absent], target),
        fitted=True,
        pairs={
            "predicted": int(seen.sum()),
            "not_predicted": int((~seen).sum()),
            "missed": int(missed.sum()),
            "absent": int(absent.sum()),
            "present": int((seen & (truths > 0)).sum()),
        },
    )


def fit_variance_terms(
    squared_errors: np.ndarray, confidence_var: np.ndarray, outline_sq: np.ndarray
) -> tuple[float, float, float]:
    """(k^2, b^2, a^2) >= 0 of ``E[error^2] = k^2 C + b^2 (P / V)^2 + a^2`` by non-negative least
    squares (``a``: the error of a pair whose confidence and outline terms are both about 0)."""
    from scipy.optimize import nnls

    if len(squared_errors) == 0:
        return 1.0, 0.0, 0.0
    design = np.stack([confidence_var, outline_sq, np.ones_like(confidence_var)], axis=1)
    scale = np.maximum(np.abs(design).max(axis=0), 1e-12)
    coef, _ = nnls(design / scale, squared_errors)
    return float(coef[0] / scale[0]), float(coef[1] / scale[1]), float(coef[2] / scale[2])


def block_sums(values_hw: np.ndarray, block_px: int) -> np.ndarray:
    """Sums of a map (H, W) over ``block_px`` square blocks (ceil(H / block_px), ceil(W / block_px))."""
    h, w = values_hw.shape
    bh, bw = -(-h // block_px), -(-w // block_px)
    padded = np.pad(values_hw, ((0, bh * block_px - h), (0, bw * block_px - w)))
    return padded.reshape(bh, block_px, bw, block_px).sum(axis=(1, 3))


def semantic_cover(
    probs_chw: np.ndarray,
    class_names: Sequence[str],
    observed_hw: np.ndarray,
    background: int = 0,
    block_px: int = 16,
    z: float = Z95,
    calibration: CoverCalibration | None = None,
    scores_are_probabilities: bool = True,
) -> list[CoverEstimate]:
    """Cover per class of a class-score map (C, H, W) over the observed pixels (H, W) with the
    interval of the module docstring (units: the class's pixels in each block); the background class
    is left out.

    Args:
        probs_chw: per-pixel class probabilities (softmax), or vote shares of an ensemble.
        class_names: the C class names.
        observed_hw: bool (H, W), pixels that count.
        background: the index of the background class.
        block_px: the side of a block of pixels sharing their fate.
        z: the uncalibrated interval's normal quantile.
        calibration: the fitted terms; without them the uncalibrated ones.
        scores_are_probabilities: False for vote shares: without a calibration the confidence term
            is then left out (a vote share is not a probability), and the method says so.
    """
    c = probs_chw.shape[0]
    if len(class_names) != c:
        raise ValueError(f"{len(class_names)} class names for {c} probability maps")
    observed = np.asarray(observed_hw, dtype=bool)
    total = int(observed.sum())
    if total <= 0:
        raise ValueError("no observed pixel in the quadrat: cover is undefined")
    if calibration is None:
        calibration = CoverCalibration.uncalibrated(scores_are_probabilities=scores_are_probabilities)
        calibration = CoverCalibration(**{**asdict(calibration), "quantile": z})
    method = SEMANTIC_METHOD if scores_are_probabilities else VOTE_METHOD
    top = probs_chw.argmax(axis=0)
    out = []
    for k, name in enumerate(class_names):
        if k == background:
            continue
        mine = (top == k) & observed
        n_b = block_sums(mine.astype(np.float64), block_px)
        mass = block_sums(np.where(mine, probs_chw[k], 0.0), block_px)
        q = np.divide(mass, n_b, out=np.zeros_like(mass), where=n_b > 0)
        out.append(
            class_estimate(
                name,
                int(mine.sum()),
                total,
                0,  # a class map has no colonies
                float((n_b**2 * q * (1 - q)).sum()),
                # the region's own outline (under the grid mask too, as a colony's mask has it):
                # the mask's edges are no outline of the class
                float(boundary_length_px(top == k)),
                method,
                calibration,
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
    """Cover at a coarser taxonomy level (module docstring): the pixels, centres and half-widths of
    the labels that map together add up, and so do the miss terms of those not seen on the photo.

    Adding the half-widths (not the variances) keeps 95 % whatever the correlation between the
    classes' errors: exact when they move together (one outline bias for the photo), wider when they
    cancel (pixels of one genus given to another of the same group). ``z`` is used for estimates
    read from records without a half-width.
    """
    groups: dict[str, list[CoverEstimate]] = {}
    for estimate in estimates:
        groups.setdefault(mapping(estimate.label), []).append(estimate)
    out = []
    for name, members in groups.items():
        observed = members[0].observed_pixels
        pixels = sum(m.pixels for m in members)
        seen = [m for m in members if m.pixels > 0]
        centre = sum(m.percent if m.centre is None else m.centre for m in seen)
        half = sum(m.half_width or z * m.sd for m in seen)
        # the members' unclipped lower ends (centre - half-width) add up; a member whose interval
        # reaches 0 by its absence term brings 0
        low = sum(
            min(m.low, (m.percent if m.centre is None else m.centre) - (m.half_width or z * m.sd))
            for m in seen
        )
        miss = sum(m.miss_pp for m in members if m.pixels <= 0)
        suffixes = dict.fromkeys(part for m in members for part in m.method.split("+")[1:])
        fits = {m.fit for m in members}
        out.append(
            CoverEstimate(
                name,
                pixels,
                observed,
                round(100 * pixels / observed, 4),
                round(max(low, 0.0), 4),
                round(min(centre + half + miss, 100.0), 4),
                sum(m.colonies for m in members),
                round(sum(m.sd for m in seen), 4),
                "+".join([members[0].method.split("+")[0], *suffixes]),
                sum(m.perimeter_px for m in members),
                round(miss, 4),
                round(centre, 4),
                round(math.sqrt(sum(m.confidence_sd**2 for m in members)), 4),
                round(half, 4),
                "pooled" if "pooled" in fits else members[0].fit,
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
