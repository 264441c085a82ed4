"""Cover of truth polygons and of predictions over the observed quadrat, intervals and summaries,
against hand-made masks and numbers."""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg.cover import (
    instance_cover,
    interval_coverage,
    label_map,
    mean_interval,
    percent_cover,
    regroup,
    visible_areas,
    wilson_interval,
)
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


def test_visible_areas_count_observed_pixels_once_for_the_last_colony():
    frame = (10, 10)
    a = (np.ones((4, 4), bool), (0, 0))
    b = (np.ones((4, 4), bool), (2, 2))  # overlaps a on a 2 x 2 block, painted last
    observed = np.ones((10, 10), bool)
    observed[0, :] = False  # a grid string's row, invented by inpainting
    areas = visible_areas([a, b], frame, observed)
    assert areas.tolist() == [8, 16]  # a: 16 minus b's 2 x 2 block, minus its unobserved row


def test_visible_areas_equal_painting_the_colonies_in_order_pixel_by_pixel():
    """Box-wise counting against the plain rule, painted pixel by pixel: overlapping chains, boxes
    partly or wholly outside the frame, empty masks and unobserved pixels."""
    rng = np.random.default_rng(3)
    for _ in range(40):
        width, height = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        observed = rng.random((height, width)) > 0.2
        masks = []
        for _ in range(int(rng.integers(0, 12))):
            h, w = int(rng.integers(1, 15)), int(rng.integers(1, 15))
            origin = (int(rng.integers(-8, width + 2)), int(rng.integers(-8, height + 2)))
            masks.append((rng.random((h, w)) > rng.choice([0.0, 0.4, 1.0]), origin))
        owner = -np.ones((height, width), int)
        for k, (box, (x0, y0)) in enumerate(masks):
            for (r, c), inside in np.ndenumerate(box):
                if inside and 0 <= x0 + c < width and 0 <= y0 + r < height:
                    owner[y0 + r, x0 + c] = k
        expected = [int(((owner == k) & observed).sum()) for k in range(len(masks))]
        assert visible_areas(masks, (width, height), observed).tolist() == expected


def test_instance_cover_interval_follows_the_confidences():
    sure = instance_cover(["Acropora"], [1.0], [500], 10_000, ["Acropora", "Porites"])
    assert [e.label for e in sure] == ["Acropora", "Porites"]
    assert sure[0].percent == sure[0].low == sure[0].high == 5.0 and sure[1].percent == 0.0
    unsure = instance_cover(["Acropora", "Acropora"], [0.5, 0.9], [500, 300], 10_000)[0]
    sd = np.sqrt(500**2 * 0.25 + 300**2 * 0.09) / 10_000 * 100
    assert unsure.percent == 8.0 and unsure.colonies == 2
    assert unsure.sd == pytest.approx(sd, abs=1e-3)
    assert unsure.low == pytest.approx(8.0 - 1.96 * sd, abs=1e-2)
    with pytest.raises(ValueError, match="no observed pixel"):
        instance_cover([], [], [], 0)
    grouped = regroup(
        instance_cover(["Acropora", "Porites"], [0.5, 0.5], [100, 300], 1000), lambda label: "coral"
    )
    assert len(grouped) == 1 and grouped[0].percent == 40.0 and grouped[0].colonies == 2
    assert grouped[0].sd == pytest.approx(5.0 + 15.0, abs=1e-3)  # sds add (quadratseg.cover.regroup)


def test_intervals_and_summaries():
    low, high = wilson_interval(20, 100)
    assert low == pytest.approx(0.1333, abs=1e-3) and high == pytest.approx(0.2888, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    mean, se, lo, _ = mean_interval([10.0, 12.0, 14.0])
    assert (mean, se) == (12.0, pytest.approx(2 / np.sqrt(3)))
    assert lo == pytest.approx(12 - 4.3027 * 2 / np.sqrt(3), abs=1e-3)
    assert np.isnan(mean_interval([5.0])[1])
    assert interval_coverage([1.0, 5.0], [0.0, 0.0], [2.0, 4.0]) == 0.5
    # the calibration check: normal draws inside their 95 % normal intervals, about 95 % of the time
    rng = np.random.default_rng(0)
    truth = rng.normal(10, 2, 4000)
    assert 0.93 < interval_coverage(truth, np.full(4000, 10 - 1.96 * 2), np.full(4000, 10 + 1.96 * 2)) < 0.97


def test_outline_term_without_a_fit():
    from quadratseg.cover import boundary_length_px

    square = np.zeros((12, 12), bool)
    square[1:11, 1:11] = True
    assert boundary_length_px(square) == 36  # the 10 x 10 square's ring of pixels
    with_outline = instance_cover(["Porites"], [1.0], [100], 1000, perimeters_px=[36], boundary_px=0.5)[0]
    assert with_outline.sd == pytest.approx(100 * 36 * 0.5 / 1000) and with_outline.perimeter_px == 36
    assert with_outline.method == "instance-confidence+boundary" and with_outline.fit == "uncalibrated"


def test_semantic_cover_from_class_probabilities():
    from quadratseg.cover import semantic_cover

    h = w = 32
    probs = np.zeros((3, h, w))
    probs[0] = 1.0
    probs[:, :16, :16] = np.array([0.0, 1.0, 0.0])[:, None, None]  # a sure Acropora block
    probs[:, 16:, 16:] = np.array([0.4, 0.0, 0.6])[:, None, None]  # an unsure Porites block
    observed = np.ones((h, w), bool)
    acro, pori = semantic_cover(probs, ["background", "Acropora", "Porites"], observed, block_px=16)
    assert (acro.label, acro.percent, acro.sd) == ("Acropora", 25.0, 0.0)
    assert pori.percent == 25.0 and pori.method == "class-probability-blocks"
    assert pori.sd == pytest.approx(100 * np.sqrt(256**2 * 0.24) / 1024, abs=1e-3)
    observed[:16, :16] = False  # the Acropora block unseen: out of numerator and denominator
    acro, pori = semantic_cover(probs, ["background", "Acropora", "Porites"], observed, block_px=16)
    assert acro.percent == 0.0 and pori.percent == pytest.approx(100 * 256 / 768, abs=1e-3)


def test_the_miss_term_bounds_the_classes_not_seen_and_is_fitted_on_their_true_covers():
    from quadratseg.cover import calibrate_miss_pp, conformal_count

    rows = instance_cover(["Porites"], [1.0], [100], 1000, classes=["Porites", "Acropora"], miss_pp=1.5)
    by_label = {r.label: r for r in rows}
    acro, pori = by_label["Acropora"], by_label["Porites"]
    assert (acro.percent, acro.low, acro.high, acro.miss_pp) == (0.0, 0.0, 1.5, 1.5)  # none seen, up to 1.5
    assert acro.method == "instance-confidence+miss"
    assert (pori.low, pori.high, pori.miss_pp, pori.method) == (10.0, 10.0, 0.0, "instance-confidence")
    with pytest.raises(ValueError, match="interval terms must be >= 0"):
        instance_cover(["Porites"], [1.0], [100], 1000, miss_pp=-1)
    # finite-sample level: with n held-out pairs, ceil((n + 1) * 0.95) must be inside
    assert [conformal_count(n) for n in (1, 18, 19, 39)] == [1, 18, 19, 38]
    # 60 held-out pairs where the class was not predicted: 20 truly absent, 40 missed colonies; the
    # bound holds 95 % of the missed ones (the absent ones are inside any [0, u])
    truths = np.r_[np.zeros(20), np.linspace(0.1, 4.0, 40)]
    miss = calibrate_miss_pp(truths)
    assert miss == pytest.approx(3.9) and (truths[20:] <= miss).sum() == 39 == conformal_count(40)
    assert calibrate_miss_pp(np.zeros(30)) == 0.0  # never missed: nothing added
    assert calibrate_miss_pp(truths[-10:]) == pytest.approx(4.0)  # fewer than 19 pairs: all inside


def test_an_estimate_reapplied_under_other_terms_equals_one_made_with_them():
    from quadratseg.cover import CoverCalibration, reapplied

    first = CoverCalibration(boundary_px=1.0, quantile=2.0, floor_pp=0.2, fitted=True, pairs={"predicted": 5})
    other = CoverCalibration(
        confidence_scale=0.5, boundary_px=3.0, quantile=2.5, bias_pooled_pp=1.0, miss_pooled_pp=4.0,
        absent_pooled_pp=6.0, fitted=True, pairs={"predicted": 5, "not_predicted": 5},
    )  # fmt: skip
    args = (["Porites", "Porites", "Acropora"], [0.9, 0.4, 0.7], [4000, 900, 2500], 50_000, ["Fungia"])
    perimeters = [260, 110, 190]
    before = instance_cover(*args, perimeters_px=perimeters, calibration=first)
    after = instance_cover(*args, perimeters_px=perimeters, calibration=other)
    again = [reapplied(e, other) for e in before]
    assert [(e.low, e.high, e.centre, e.miss_pp, e.method) for e in again] == [
        (e.low, e.high, e.centre, e.miss_pp, e.method) for e in after
    ]
    assert again == after  # every field, to the last digit
    assert [reapplied(e, first) for e in before] == before  # under its own terms, the estimate itself
    assert [e.high for e in before] != [e.high for e in after]  # the terms do move the intervals
    acropora = next(e for e in after if e.label == "Acropora")  # 5 % predicted, at most 6 %: maybe absent
    assert acropora.percent == 5.0 and acropora.low == 0.0 < acropora.centre - acropora.half_width


def test_a_group_adds_its_members_lower_ends_one_reaching_0_by_its_absence_term():
    from quadratseg.cover import CoverCalibration, regroup

    terms = CoverCalibration(
        quantile=1.0, floor_pp=0.5, absent_pooled_pp=3.0, fitted=True, pairs={"predicted": 5}
    )
    porites, montipora = instance_cover(
        ["Porites", "Montipora"], [0.99, 0.99], [5000, 1000], 50_000, calibration=terms
    )  # 10 % and 2 %: the Montipora may be a confusion
    assert montipora.low == 0.0 and porites.low == pytest.approx(10.0 - porites.half_width)
    (group,) = regroup([porites, montipora], lambda label: "Scleractinia")
    assert group.low == pytest.approx(porites.low, abs=1e-4)  # not 12 % minus both half-widths
    assert group.high == pytest.approx(porites.high + montipora.high, abs=1e-3)
