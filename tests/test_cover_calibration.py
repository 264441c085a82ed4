"""The cover intervals' model, fitted on held-out photos and checked on fresh ones.

A simulated detector with realistic errors (colonies missed, outlines drawn wide by a bias shared on
a photo, confidences that are not probabilities, false colonies) on photos with many colonies per
class: the intervals fitted with :func:`quadratseg.cover.fit_cover_calibration` on calibration
photos and applied by :func:`quadratseg.cover.instance_cover` on fresh photos must hold the true
cover about 95 % of the time.
"""

from __future__ import annotations

import numpy as np
import pytest

from quadratseg.cover import (
    MIN_CLASS_PAIRS,
    Z95,
    CoverCalibration,
    CoverEstimate,
    fit_cover_calibration,
    instance_cover,
    interval_coverage,
    semantic_cover,
)

CLASSES = ("Acropora", "Porites", "Pocillopora", "Montipora", "Fungia")
MEAN_COLONIES = (14.0, 9.0, 6.0, 3.0, 0.4)  # per photo; Fungia mostly absent
DETECTED = (0.85, 0.75, 0.9, 0.7, 0.6)  # share of the true colonies the detector finds
OBSERVED_PX = 1_000_000


def simulate_photo(rng):
    """One photo: the detector's colonies (labels, confidences, areas, outline lengths in px) and the
    true cover per class (percent of the observed pixels)."""
    outline_bias = rng.normal(1.5, 1.0)  # px, shared by the photo's colonies (the model draws wide)
    labels, scores, areas, perimeters, truth = [], [], [], [], {}
    for name, mean, found in zip(CLASSES, MEAN_COLONIES, DETECTED, strict=True):
        true_areas = rng.lognormal(np.log(1500), 0.8, rng.poisson(mean))
        truth[name] = 100 * true_areas.sum() / OBSERVED_PX
        for area in true_areas[rng.random(len(true_areas)) < found]:
            perimeter = 1.3 * 2 * np.sqrt(np.pi * area)  # a rough outline
            labels.append(name)
            scores.append(float(rng.beta(4, 2)))  # real colonies: confidences about 0.67
            areas.append(int(max(area + perimeter * (outline_bias + rng.normal(0, 1.0)), 10)))
            perimeters.append(int(perimeter))
        for _ in range(rng.poisson(0.15 * mean)):  # false colonies: smaller, less sure
            area = rng.lognormal(np.log(800), 0.7)
            labels.append(name)
            scores.append(float(rng.beta(2, 3)))
            areas.append(int(area))
            perimeters.append(int(1.3 * 2 * np.sqrt(np.pi * area)))
    return labels, scores, areas, perimeters, truth


def estimates_of(photos, calibration=None, classes=CLASSES):
    """(estimates, truths) of every photo x class, through the real applying function."""
    estimates, truths = [], []
    for labels, scores, areas, perimeters, truth in photos:
        for e in instance_cover(
            labels, scores, areas, OBSERVED_PX, classes, perimeters_px=perimeters, calibration=calibration
        ):
            estimates.append(e)
            truths.append(truth[e.label])
    return estimates, truths


def test_fitted_intervals_hold_95_percent_of_fresh_true_covers():
    rng = np.random.default_rng(0)
    calibration_photos = [simulate_photo(rng) for _ in range(400)]
    fresh_photos = [simulate_photo(rng) for _ in range(1000)]
    calibration = fit_cover_calibration(*estimates_of(calibration_photos))
    estimates, truths = estimates_of(fresh_photos, calibration)
    assert len(estimates) == 5000
    coverage = interval_coverage(truths, [e.low for e in estimates], [e.high for e in estimates])
    assert 0.93 <= coverage <= 0.98, coverage  # the absent unseen pairs are inside any [0, u]
    predicted = [(t, e) for t, e in zip(truths, estimates, strict=True) if e.pixels > 0]
    missed = [(t, e) for t, e in zip(truths, estimates, strict=True) if e.pixels == 0 and t > 0]
    assert len(predicted) > 3000 and len(missed) > 100
    for pairs, most in ((predicted, 0.97), (missed, 0.99)):  # both parts hold on their own
        share = interval_coverage(
            [t for t, _ in pairs], [e.low for _, e in pairs], [e.high for _, e in pairs]
        )
        assert 0.93 <= share <= most, share  # about 140 missed pairs: a wider band
    # the centre is the model's: on the fresh photos its mean error per class is near 0, while the
    # masks' own cover (drawn wide, colonies missed) is off by class: measured 0.14, -0.11, 0.13 pp
    centre_error, mask_error = [], []
    for name in CLASSES:
        mine = [(t, e) for t, e in predicted if e.label == name]
        centre_error.append(np.mean([e.centre - t for t, e in mine]))
        mask_error.append(np.mean([e.percent - t for t, e in mine]))
    assert max(np.abs(centre_error)) < 0.06 and max(np.abs(mask_error)) > 0.1
    assert all(e.method == "instance-confidence+calibrated" for e in estimates)


def test_the_outline_term_is_applied_with_the_formula_it_was_fitted_with():
    # four colonies of a class, all sure: only the outline term is left; it moves the class's cover
    # by b * (sum of the outlines), the colonies' outlines moving together
    calibration = CoverCalibration(boundary_px=0.5, fitted=True)
    (row,) = instance_cover(
        ["Porites"] * 4, [1.0] * 4, [400] * 4, 10_000, perimeters_px=[80] * 4, calibration=calibration
    )
    assert row.sd == pytest.approx(100 * 0.5 * 320 / 10_000)  # 1.6 pp, not 0.8 (one outline at a time)
    # and fitting finds b back from held-out rows of several colonies each
    rng = np.random.default_rng(3)
    rows, truths = [], []
    for _ in range(600):
        k = int(rng.integers(1, 8))
        perimeters = rng.integers(40, 120, k)
        areas = rng.integers(200, 900, k)
        (e,) = instance_cover(["Porites"] * k, [1.0] * k, list(areas), 10_000, perimeters_px=list(perimeters))
        rows.append(e)
        truths.append(e.percent + 100 * perimeters.sum() * rng.normal(0, 0.5) / 10_000)
    fitted = fit_cover_calibration(rows, truths)
    assert fitted.boundary_px * fitted.quantile / Z95 == pytest.approx(0.5, rel=0.1)


def test_the_centre_moves_by_the_class_bias_and_the_interval_is_centred_on_it():
    rng = np.random.default_rng(4)
    rows, truths = [], []
    for i in range(200):  # Acropora is under-drawn by 2 pp, Porites right; 40 photos without Fungia
        label = ("Acropora", "Porites")[i % 2]
        (e,) = instance_cover([label] * 3, [0.8] * 3, [500, 700, 900], 100_000, perimeters_px=[90, 100, 110])
        rows.append(e)
        truths.append(e.percent + (2.0 if label == "Acropora" else 0.0) + rng.normal(0, 0.3))
    for i in range(60):  # 40 Fungia colonies missed, up to 1.2 pp; 20 photos without Fungia
        rows.extend(instance_cover([], [], [], 100_000, ["Fungia"]))
        truths.append(0.0 if i % 3 == 0 else 0.03 * (i - i // 3))
    calibration = fit_cover_calibration(rows, truths)
    assert calibration.bias_pp["Acropora"] == pytest.approx(2.0, abs=0.1)
    assert calibration.bias_pp["Porites"] == pytest.approx(0.0, abs=0.1)
    rows = instance_cover(
        ["Acropora", "Porites"],
        [0.8, 0.8],
        [2000, 2000],
        100_000,
        ["Fungia", "Pavona/Leptoseris"],
        perimeters_px=[300, 300],
        calibration=calibration,
    )
    fungia, pavona, acro, pori = rows  # the classes asked for first, then those of the colonies
    assert acro.centre == pytest.approx(acro.percent + calibration.bias_pp["Acropora"], abs=1e-4)
    assert (acro.low + acro.high) / 2 == pytest.approx(acro.centre, abs=1e-3)
    assert acro.fit == pori.fit == "per-class"
    # a class not seen on the photo: the one-sided interval [0, its held-out 95 % bound]
    assert (fungia.percent, fungia.centre, fungia.low) == (0.0, 0.0, 0.0)
    assert fungia.high == pytest.approx(1.17) and fungia.fit == "per-class" and fungia.miss_pp == 1.17
    # a class with fewer held-out pairs than MIN_CLASS_PAIRS takes the pooled value, and says so
    assert MIN_CLASS_PAIRS == 19
    assert pavona.fit == "pooled" and pavona.high == pytest.approx(calibration.miss_pooled_pp)


class HalfPorites:
    """A semantic model answering the same probabilities for any photo: the left half Porites at
    ``p``, the right half background at 0.7 and Acropora at 0.3 (classes: background first)."""

    classes = ("background", "Porites", "Acropora")

    def __init__(self, p=0.9):
        self.p = p

    def predict_probs(self, image):
        h, w = image.shape[:2]
        probs = np.zeros((len(self.classes), h, w), np.float32)
        probs[:, :, w // 2 :] = np.array([0.7, 0.0, 0.3])[:, None, None]
        probs[:, :, : w // 2] = np.array([1 - self.p, self.p, 0.0])[:, None, None]
        return probs


class TwoColonies:
    """An instance model answering two Acropora colonies: the left half at confidence 0.5, the top
    right quarter at 0.8."""

    def __init__(self):
        self.names = {0: "Acropora"}

    def predict(self, image):
        from quadratseg.instances import Instance

        h, w = image.shape[:2]
        return [
            Instance("Acropora", 0.5, np.ones((h, w // 2), bool), (0, 0)),
            Instance("Acropora", 0.8, np.ones((h // 2, w // 2), bool), (w // 2, 0)),
        ]


def chain_cover(models, size=64):
    from pipeline.chain import run_chain

    result = run_chain(np.zeros((size, size, 3), np.uint8), models)
    return {e.label: e for e in result.cover}


def test_semantic_and_pixel_ensemble_intervals_take_the_outline_and_miss_terms():
    from pipeline.chain import ChainModels

    plain = chain_cover(ChainModels(None, semantic=HalfPorites()))
    terms = chain_cover(ChainModels(None, semantic=HalfPorites(), boundary_px=2.0, miss_pp=1.5))
    porites, acropora = terms["Porites"], terms["Acropora"]
    outline_sd = 100 * 2.0 * porites.perimeter_px / porites.observed_pixels
    assert porites.perimeter_px == 2 * 64 + 2 * 32 - 4  # the ring of the 32 x 64 half (frame edges count)
    assert porites.sd == pytest.approx(np.hypot(plain["Porites"].sd, outline_sd), abs=1e-3)
    assert porites.method == "class-probability-blocks+boundary"
    assert (acropora.percent, acropora.high, acropora.method) == (0.0, 1.5, "class-probability-blocks+miss")
    for ensemble in ("weighted", "voting"):
        fused = chain_cover(
            ChainModels(
                TwoColonies(), semantic=HalfPorites(), ensemble=ensemble, boundary_px=2.0, miss_pp=1.5
            )
        )
        assert (
            fused["Porites"].sd
            >= 100 * 2.0 * fused["Porites"].perimeter_px / fused["Porites"].observed_pixels
        )
        assert fused["Porites"].perimeter_px > 0 and fused["Acropora"].percent == 25.0


def test_vote_shares_are_not_read_as_probabilities_without_a_calibration():
    from pipeline.chain import ChainModels
    from quadratseg.cover import CoverCalibration

    voting = chain_cover(ChainModels(TwoColonies(), semantic=HalfPorites(), ensemble="voting"))
    weighted = chain_cover(ChainModels(TwoColonies(), semantic=HalfPorites(), ensemble="weighted"))
    # Porites wins the left half's vote with a share of 0.9 / (0.9 + 0.5): not a probability
    assert voting["Porites"].percent == 50.0
    assert voting["Porites"].confidence_sd > 0 and voting["Porites"].sd == 0.0
    assert voting["Porites"].method == "vote-share-blocks"
    assert weighted["Porites"].sd > 0 and weighted["Porites"].method == "class-probability-blocks"
    # with a fit, the vote shares' spread counts with its fitted scale
    fitted = CoverCalibration(confidence_scale=0.5, fitted=True)
    calibrated = chain_cover(
        ChainModels(TwoColonies(), semantic=HalfPorites(), ensemble="voting", calibration=fitted)
    )
    assert calibrated["Porites"].sd == pytest.approx(0.5 * voting["Porites"].confidence_sd, abs=1e-3)
    assert calibrated["Porites"].method == "vote-share-blocks+calibrated"


def test_a_semantic_model_whose_classes_disagree_with_its_maps_is_refused():
    from pipeline.chain import ChainModels

    class TwoNames(HalfPorites):
        classes = ("background", "Porites")  # two names for HalfPorites' three maps

        def predict_probs(self, image):
            return HalfPorites().predict_probs(image)

    with pytest.raises(ValueError, match="2 class names for 3 probability maps"):
        chain_cover(ChainModels(None, semantic=TwoNames()))


def test_coarser_levels_hold_95_percent_when_the_classes_errors_move_together():
    from quadratseg.cover import regroup

    calibration = CoverCalibration(boundary_px=1.0, confidence_scale=0.0, fitted=True)
    rng = np.random.default_rng(5)
    inside = {"together": [], "cancelling": []}
    for _ in range(4000):
        rows = instance_cover(
            ["Acropora", "Montipora"], [1.0, 1.0], [30_000, 20_000], 1_000_000,
            perimeters_px=[5_000, 4_000], calibration=calibration,
        )  # fmt: skip
        (family,) = regroup(rows, lambda label: "Acroporidae")
        assert family.half_width == pytest.approx(sum(r.half_width for r in rows), abs=1e-3)
        assert family.centre == pytest.approx(sum(r.centre for r in rows), abs=1e-3)
        shared = rng.normal()  # one outline bias for the photo: both genera drawn too wide
        together = sum(r.centre + r.sd * shared for r in rows)
        swap = rng.normal() * rows[0].sd  # pixels of one genus given to the other: they cancel
        cancelling = (rows[0].centre + swap) + (rows[1].centre - swap)
        inside["together"].append(family.low <= together <= family.high)
        inside["cancelling"].append(family.low <= cancelling <= family.high)
    # the variances added would hold about 83 % of the first kind
    assert 0.93 <= np.mean(inside["together"]) <= 0.97 and np.mean(inside["cancelling"]) == 1.0


def test_a_group_adds_the_miss_terms_of_its_classes_not_seen():
    from quadratseg.cover import regroup

    rows = instance_cover(
        ["Porites"], [1.0], [100], 1000, classes=["Porites", "Acropora", "Montipora"], miss_pp=1.5
    )
    (coral,) = regroup(rows, lambda label: "coral")
    assert (coral.percent, coral.low, coral.high, coral.miss_pp) == (10.0, 10.0, 13.0, 3.0)
    (unseen,) = regroup(rows[1:], lambda label: "Acroporidae")
    assert (unseen.percent, unseen.low, unseen.high) == (0.0, 0.0, 3.0)


@pytest.mark.parametrize(
    ("segment", "semantic", "ensemble", "mode", "method"),
    [
        (True, False, "", "instances", "instance-confidence"),
        (False, True, "", "semantic", "class-probability-blocks"),
        (True, True, "weighted", "pixel-ensemble", "class-probability-blocks"),
        (True, True, "voting", "pixel-ensemble", "vote-share-blocks"),
        (True, True, "nms", "nms", "instance-confidence"),
    ],
)
def test_each_segmentation_mode_has_its_own_cover_contract(segment, semantic, ensemble, mode, method):
    from pipeline.chain import SEGMENTATION_MODES, ChainModels, cover_classes, run_chain, segmentation_mode

    models = ChainModels(
        TwoColonies() if segment else None, semantic=HalfPorites() if semantic else None, ensemble=ensemble
    )
    assert segmentation_mode(models) == mode and set(SEGMENTATION_MODES) == {
        "instances", "semantic", "pixel-ensemble", "nms",
    }  # fmt: skip
    result = run_chain(np.zeros((64, 64, 3), np.uint8), models)
    assert {e.method for e in result.cover} == {method}
    # the labels of the mode's cover, known before any photo: an ensemble reports the class map's
    assert [e.label for e in result.cover] == cover_classes(models)
    assert cover_classes(models) == (["Acropora"] if mode == "instances" else ["Porites", "Acropora"])
    assert (result.class_map is not None) == (mode in ("semantic", "pixel-ensemble"))
    assert bool(result.instances) == (mode in ("instances", "nms", "pixel-ensemble"))


def test_a_chain_without_a_segmenter_is_refused():
    from pipeline.chain import ChainModels, run_chain

    with pytest.raises(ValueError, match="no segmentation model"):
        run_chain(np.zeros((64, 64, 3), np.uint8), ChainModels(None))


def test_fitting_without_held_out_pairs_is_refused():
    with pytest.raises(ValueError, match="no held-out photo x class pair"):
        fit_cover_calibration([], [])
    (row,) = instance_cover(["Porites"], [1.0], [100], 1000)
    with pytest.raises(ValueError, match="1 estimates for 2 true covers"):
        fit_cover_calibration([row], [1.0, 2.0])


def test_a_kind_of_pair_absent_from_the_fit_is_reported_uncalibrated():
    unseen_only = instance_cover([], [], [], 1000, ["Porites"]) * 20
    calibration = fit_cover_calibration(unseen_only, [0.0] * 19 + [0.5])
    assert calibration.pairs == {"predicted": 0, "not_predicted": 20, "missed": 1, "absent": 0, "present": 0}
    acropora, porites = instance_cover(["Porites"], [0.5], [100], 1000, ["Acropora"], calibration=calibration)
    assert (porites.fit, porites.sd) == ("uncalibrated", 5.0) and porites.centre == porites.percent
    assert (acropora.fit, acropora.high) == ("pooled", 0.5)
    assert (porites.method, acropora.method) == ("instance-confidence", "instance-confidence+calibrated")


CLASS_NAMES = ["background", "Acropora", "Porites", "Pocillopora"]


def simulate_class_map(rng, size=64):
    """One photo of a semantic model: (probabilities (C, H, W), true cover per class). Colonies are
    disks; the model's logits are the truth plus spatially correlated noise, Porites under-called, and
    its softmax over-confident (temperature 1/4)."""
    from scipy.ndimage import gaussian_filter

    truth = np.zeros((size, size), int)
    yy, xx = np.mgrid[:size, :size]
    for k, mean in ((1, 3.0), (2, 2.0), (3, 0.5)):
        for _ in range(rng.poisson(mean)):
            cy, cx = rng.uniform(0, size, 2)
            truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(3, 9) ** 2] = k
    logits = 3.0 * np.eye(len(CLASS_NAMES))[truth].transpose(2, 0, 1)
    logits += 6.0 * np.stack([gaussian_filter(rng.normal(size=(size, size)), 3) for _ in CLASS_NAMES])
    logits[2] -= 0.8
    probs = np.exp(4 * logits - (4 * logits).max(axis=0))
    real = {name: 100 * float((truth == k).mean()) for k, name in enumerate(CLASS_NAMES) if k}
    return probs / probs.sum(axis=0), real


def test_class_map_intervals_fitted_on_held_out_photos_hold_95_percent():
    rng = np.random.default_rng(0)
    observed = np.ones((64, 64), bool)

    def run(photos, calibration=None):
        estimates, truths = [], []
        for probs, real in photos:
            for e in semantic_cover(probs, CLASS_NAMES, observed, block_px=8, calibration=calibration):
                estimates.append(e)
                truths.append(real[e.label])
        return estimates, truths

    calibration_photos = [simulate_class_map(rng) for _ in range(400)]
    fresh_photos = [simulate_class_map(rng) for _ in range(1000)]
    calibration = fit_cover_calibration(*run(calibration_photos))
    estimates, truths = run(fresh_photos, calibration)
    assert len(estimates) == 3000
    coverage = interval_coverage(truths, [e.low for e in estimates], [e.high for e in estimates])
    # 95 % over each kind of pair (predicted where present, predicted where absent, missed): together
    # a little more
    assert 0.93 <= coverage <= 0.98, coverage
    # the same maps with the softmax taken at its word: 84.5 % (and 100 % with the former block
    # interval, which gave every class the spread of the whole block)
    plain, truths = run(fresh_photos)
    assert interval_coverage(truths, [e.low for e in plain], [e.high for e in plain]) < 0.88
    # the softmax is over-confident: the fitted intervals are the wider ones
    assert np.mean([e.high - e.low for e in estimates]) > np.mean([e.high - e.low for e in plain])


def test_fitted_terms_and_uncalibrated_terms_together_are_refused():
    from pipeline.chain import ChainModels

    fitted = CoverCalibration(fitted=True)
    with pytest.raises(ValueError, match="either fitted terms or --boundary-px/--miss-pp"):
        instance_cover(["Porites"], [1.0], [100], 1000, boundary_px=1.0, calibration=fitted)
    with pytest.raises(ValueError, match="either fitted terms or --boundary-px/--miss-pp"):
        chain_cover(ChainModels(TwoColonies(), miss_pp=1.0, calibration=fitted))


def test_an_ensemble_reports_its_colonies_at_the_class_map_s_level():
    from pipeline.chain import ChainModels, cover_classes, run_chain

    class Families(HalfPorites):
        classes = ("background", "Poritidae", "Acroporidae")  # main families; the colonies are genera

    for ensemble in ("weighted", "voting", "nms"):
        models = ChainModels(TwoColonies(), semantic=Families(), ensemble=ensemble)
        result = run_chain(np.zeros((64, 64, 3), np.uint8), models)
        assert cover_classes(models) == ["Poritidae", "Acroporidae"]
        assert result.instances and {i.label for i in result.instances} <= {"Poritidae", "Acroporidae"}, (
            ensemble
        )


def test_a_speck_with_no_spread_does_not_blow_every_interval_up():
    """A 2-pixel speck predicted where the truth has none: its confidence and outline terms are
    almost 0, so after the pooled class term its error divided by its sd is in the hundreds. The
    split-conformal bound of ~30 pairs is their largest score: without a term for the error that
    neither confidence nor outline explain, every interval of the segmenter became [0, 100]."""
    rng = np.random.default_rng(0)
    estimates, truths = [], []
    for _ in range(30):  # ordinary pairs: an error of about 1 pp, confidence sd 1 pp
        percent = float(rng.uniform(3, 20))
        estimates.append(
            CoverEstimate("Porites", 1000, OBSERVED_PX, percent, 0, 0, 3, confidence_sd=1.0, perimeter_px=800)
        )
        truths.append(percent + float(rng.normal(0.0, 1.0)))
    estimates.append(  # the speck
        CoverEstimate("Porites", 2, OBSERVED_PX, 0.0002, 0, 0, 1, confidence_sd=0.0001, perimeter_px=6)
    )
    truths.append(0.0)
    fitted = fit_cover_calibration(estimates, truths)
    (row,) = instance_cover(
        ["Porites"], [0.6], [100_000], OBSERVED_PX, perimeters_px=[1500], calibration=fitted
    )
    assert row.high - row.low < 20.0, (fitted, row)
    assert fitted.quantile < 50.0, fitted


def test_a_class_maps_outline_is_its_regions_not_the_grid_masks_edges():
    """The outline term counts where the class's region meets another class: the grid mask that
    crosses a region (pixels left out of the cover) adds no outline, as a colony's own mask has none
    there either (the instance path measures each colony's whole mask)."""
    probs = np.zeros((2, 64, 64))
    probs[0] = 1.0
    probs[:, 16:48, 16:48] = [[[0.0]], [[1.0]]]  # one 32 x 32 region of class 1
    observed = np.ones((64, 64), bool)
    (whole,) = semantic_cover(probs, ["background", "Porites"], observed, background=0)
    observed[:, 30:33] = False  # a string's mask across the region
    (crossed,) = semantic_cover(probs, ["background", "Porites"], observed, background=0)
    assert whole.perimeter_px == 124 and crossed.perimeter_px == whole.perimeter_px, (whole, crossed)


def sparse_photo(rng, classes=20):
    """One photo of a reef where each of ``classes`` genera is present on a fifth of the photos, and
    the model misses a present genus entirely a third of the time: (labels, scores, areas, outlines,
    true cover per class)."""
    labels, scores, areas, perimeters, truth = [], [], [], [], {}
    for i in range(classes):
        name = f"Genus{i:02d}"
        present = rng.random() < 0.2
        truth[name] = float(rng.lognormal(np.log(3.0), 0.8)) if present else 0.0
        if present and rng.random() > 1 / 3:
            area = int(truth[name] * OBSERVED_PX / 100 * rng.normal(1.0, 0.05))
            labels.append(name)
            scores.append(0.8)
            areas.append(max(area, 10))
            perimeters.append(int(2 * np.sqrt(np.pi * area)))
    return labels, scores, areas, perimeters, truth


def test_a_genus_the_model_missed_is_inside_its_one_sided_interval_95_percent_of_the_time():
    # most genera are absent from most photos: a bound over every pair the model did not predict is
    # held by the absent ones (true cover 0) and says little of a genus that is there and was missed;
    # the scientist reads "0 to u" as "if any was missed, at most u"
    rng = np.random.default_rng(11)
    names = [f"Genus{i:02d}" for i in range(20)]

    def pairs(photos, calibration=None):
        return estimates_of(photos, calibration, classes=names)

    fit_estimates, fit_truths = pairs([sparse_photo(rng) for _ in range(300)])
    calibration = fit_cover_calibration(fit_estimates, fit_truths)
    estimates, truths = pairs([sparse_photo(rng) for _ in range(1000)], calibration)
    missed = [(t, e) for t, e in zip(truths, estimates, strict=True) if e.pixels == 0 and t > 0]
    assert len(missed) > 1000
    share = interval_coverage([t for t, _ in missed], [e.low for _, e in missed], [e.high for _, e in missed])
    assert 0.93 <= share <= 0.97, share
    present = [(t, e) for t, e in zip(truths, estimates, strict=True) if e.pixels > 0 or t > 0]
    share = interval_coverage(
        [t for t, _ in present], [e.low for _, e in present], [e.high for _, e in present]
    )
    assert share >= 0.94, share
    missed_fit = sum(1 for t, e in zip(fit_truths, fit_estimates, strict=True) if e.pixels == 0 and t > 0)
    assert calibration.pairs["missed"] == missed_fit


def confusing_photo(rng, classes=12):
    """One photo where each of ``classes`` genera is present on a third of the photos, and the model
    calls a tenth of the colonies it finds by another genus, often one absent from the photo (a genus
    confusion: that genus then has cover predicted where it has none): (labels, scores, areas,
    outlines, true cover per class)."""
    names = [f"Genus{i:02d}" for i in range(classes)]
    labels, scores, areas, perimeters, truth = [], [], [], [], dict.fromkeys(names, 0.0)
    for name in names:
        if rng.random() >= 1 / 3:
            continue
        true_areas = rng.lognormal(np.log(4000), 0.8, 1 + rng.poisson(4))
        truth[name] = 100 * true_areas.sum() / OBSERVED_PX
        for area in true_areas[rng.random(len(true_areas)) < 0.8]:
            confused = rng.random() < 0.1
            labels.append(names[rng.integers(classes)] if confused else name)
            scores.append(float(rng.beta(3, 2) if confused else rng.beta(4, 2)))  # about as sure
            areas.append(int(area * rng.normal(1.0, 0.1)))
            perimeters.append(int(2.6 * np.sqrt(np.pi * area)))
    return labels, scores, areas, perimeters, truth


def test_a_genus_predicted_where_it_is_absent_is_inside_its_interval_95_percent_of_the_time():
    # a genus confusion puts cover on a genus the photo lacks: an interval that keeps it above 0 says
    # with 95 % confidence that the genus is there; the terms must hold over these pairs too, not only
    # over the predicted pairs together (where the confusions are a tenth)
    rng = np.random.default_rng(5)
    names = [f"Genus{i:02d}" for i in range(12)]
    fit_estimates, fit_truths = estimates_of([confusing_photo(rng) for _ in range(300)], classes=names)
    calibration = fit_cover_calibration(fit_estimates, fit_truths)
    estimates, truths = estimates_of([confusing_photo(rng) for _ in range(1000)], calibration, classes=names)
    kinds = {
        "predicted where absent": [
            (t, e) for t, e in zip(truths, estimates, strict=True) if e.pixels and t == 0
        ],
        "predicted where present": [
            (t, e) for t, e in zip(truths, estimates, strict=True) if e.pixels and t > 0
        ],
        "missed": [(t, e) for t, e in zip(truths, estimates, strict=True) if not e.pixels and t > 0],
    }
    assert len(kinds["predicted where absent"]) > 300
    for kind, pairs in kinds.items():
        share = interval_coverage(
            [t for t, _ in pairs], [e.low for _, e in pairs], [e.high for _, e in pairs]
        )
        assert share >= 0.93, (kind, share)
    absent_fit = sum(1 for t, e in zip(fit_truths, fit_estimates, strict=True) if e.pixels and t == 0)
    assert calibration.pairs["absent"] == absent_fit
