"""The colony table's measurements against shapes of known size."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

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


def simulated_survey(rng, photos, genera, observed_px=1_000_000):
    """Photos of a reef where each genus is present on a quarter of them and a detector misses a
    present genus a third of the time: per photo (estimates of every genus, true cover per genus)."""
    from quadratseg.cover import instance_cover

    out = []
    for _ in range(photos):
        labels, scores, areas, perimeters, truth = [], [], [], [], {}
        for name in genera:
            truth[name] = float(rng.lognormal(np.log(2.0), 0.7)) if rng.random() < 0.25 else 0.0
            if truth[name] and rng.random() > 1 / 3:
                area = int(truth[name] * observed_px / 100 * rng.normal(0.95, 0.1))
                labels.append(name)
                scores.append(0.8)
                areas.append(max(area, 10))
                perimeters.append(int(2.2 * np.sqrt(np.pi * max(area, 10))))
        estimates = instance_cover(labels, scores, areas, observed_px, genera, perimeters_px=perimeters)
        out.append((estimates, truth))
    return out


def test_coarser_levels_take_their_own_fitted_terms_and_stay_informative():
    """The cover of a family or of all coral sums its genera; adding the miss term of every genus not
    seen (each a bound on a genus that is missed) held the truth but widened 'coral' to most of the
    quadrat. Terms fitted at each level on the same held-out photos hold about 95 % and stay narrow."""
    from quadratseg.cover import reapplied
    from quadratseg.cover_table import cover_rows, fit_calibration
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    genera = taxonomy.classes("finegrained")
    rng = np.random.default_rng(7)
    held_out = simulated_survey(rng, 300, genera)
    calibration = fit_calibration(held_out, taxonomy, "finegrained")
    assert set(calibration.levels) == {"extended", "main_family", "agnostic"}
    fine_only = replace(calibration, levels={})  # the terms of the model's level alone: regrouped above it

    def scored(terms):
        inside, widths = [], []
        for estimates, truth in simulated_survey(np.random.default_rng(8), 400, genera):
            recorded = [reapplied(e, terms) for e in estimates]  # the run's estimates, with the terms
            rows = cover_rows("p.jpg", {}, recorded, 1.0, taxonomy, "finegrained", calibration=terms)
            coral = next(r for r in rows if r["level"] == "agnostic")
            true = sum(truth.values())
            inside.append(coral["low"] - 1e-6 <= true <= coral["high"] + 1e-6)
            widths.append(coral["high"] - coral["low"])
        return float(np.mean(inside)), float(np.median(widths))

    coverage, width = scored(calibration)
    summed_coverage, summed_width = scored(fine_only)
    assert 0.92 <= coverage <= 0.99, coverage
    assert summed_coverage >= 0.99 and summed_width > 3 * width, (summed_width, width)
    # the terms travel in the JSON the run reads
    from quadratseg.cover import CoverCalibration

    assert CoverCalibration(**json.loads(json.dumps(asdict(calibration)))).at_level("agnostic") == (
        calibration.at_level("agnostic")
    )


def test_a_level_whose_terms_rest_on_too_few_photos_adds_up_its_members_terms():
    """Terms fitted at the agnostic level on 12 photos rest on 12 'coral' pairs: a split-conformal
    bound on fewer than 19 cannot hold 95 % (it held 0.87-0.91 on re-splits of the demo's photos), so
    those rows keep the members' terms added up, which hold."""
    from quadratseg.cover import reapplied, regroup
    from quadratseg.cover_table import cover_rows, fit_calibration
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    genera = taxonomy.classes("finegrained")
    calibration = fit_calibration(
        simulated_survey(np.random.default_rng(3), 12, genera), taxonomy, "finegrained"
    )
    assert calibration.at_level("agnostic").pairs["predicted"] == 12
    (estimates, _truth), *_ = simulated_survey(np.random.default_rng(4), 1, genera)
    recorded = [reapplied(e, calibration) for e in estimates]
    rows = cover_rows("p.jpg", {}, recorded, 1.0, taxonomy, "finegrained", calibration=calibration)
    coral = next(r for r in rows if r["level"] == "agnostic")
    (summed,) = regroup(recorded, lambda label: taxonomy.map_label(label, "agnostic"))
    assert (coral["low"], coral["high"]) == (summed.low, summed.high) and coral["fit"] == "summed"


def test_a_levels_own_terms_need_19_pairs_predicted_where_the_group_was():
    """The spread and ``q`` rest on the pairs predicted where the class was: 30 predicted pairs of
    which 28 are confusions give a ``q`` of 2 pairs, and the level keeps its members' terms."""
    from quadratseg.cover import CoverCalibration
    from quadratseg.cover_table import level_terms_hold

    mostly_absent = CoverCalibration(
        fitted=True, pairs={"predicted": 30, "absent": 28, "present": 2, "missed": 25}
    )
    assert not level_terms_hold(mostly_absent, predicted=True) and level_terms_hold(
        mostly_absent, predicted=False
    )
    assert mostly_absent.bias("Porites")[1] == "pooled"
    assert (
        CoverCalibration(fitted=True, pairs={"predicted": 3, "present": 0}).bias("Porites")[1]
        == "uncalibrated"
    )
    # terms of an earlier version, fitted on every predicted pair, count those
    assert level_terms_hold(CoverCalibration(fitted=True, pairs={"predicted": 19}), predicted=True)
