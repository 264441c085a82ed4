"""Sub-pixel refinement against the generator's geometry: corners and string crossings it drew."""

from __future__ import annotations

import numpy as np
import pytest

from grid_pose_detection.predictor import (
    PosePrediction,
    homography_filled_grid,
    no_grid_reason,
    refine_prediction,
)
from grid_pose_detection.tasks import get_task
from quadratseg.keypoint_refine import on_straight_strings, refine_grid_crossings, refine_quadrat_corners
from quadratseg.keypoints import TemplateMatch, grid_template_xy
from quadratseg.synth.scene import render_quadrat


@pytest.fixture(scope="module")
def quadrats():
    """Three synthetic quadrats (768 x 576 photos, 640 px warped) with different draws."""
    return [
        render_quadrat(np.random.default_rng([5, i]), (768, 576), 640, ["Acropora", "Porites", "Pocillopora"])
        for i in range(3)
    ]


def test_corners_move_to_the_frames_inner_corners(quadrats):
    rng = np.random.default_rng(0)
    before, after = [], []
    for q in quadrats:
        noisy = q.corners_raw_xy + rng.uniform(-4, 4, (4, 2))
        result = refine_quadrat_corners(q.raw, noisy)
        assert result.refined.all() and (result.confidence > 0.5).all()
        before.append(np.linalg.norm(noisy - q.corners_raw_xy, axis=1))
        after.append(np.linalg.norm(result.points_xy - q.corners_raw_xy, axis=1))
        assert np.allclose(result.shift_px, np.linalg.norm(result.points_xy - noisy, axis=1))
    assert np.mean(before) > 2.0
    assert np.mean(after) < 0.3 and np.max(after) < 0.8  # measured: 0.08 px mean


def test_crossings_move_to_the_strings_bright_or_dark(quadrats):
    rng = np.random.default_rng(1)
    for q in quadrats:
        spacing = q.warped_size[0] / 14
        noisy = q.grid_warped_xy + rng.uniform(-5, 5, q.grid_warped_xy.shape)
        for image in (q.warped, 255 - q.warped):  # dark strings on a bright seabed too
            result = refine_grid_crossings(
                image, noisy, spacing / 4, q.grid_line_width_px, grid_shape=(9, 13)
            )
            error = np.linalg.norm(result.points_xy - q.grid_warped_xy, axis=1)
            assert result.refined.mean() > 0.97
            assert error[result.refined].mean() < 0.6  # measured: 0.4 px mean from 3.8 px
            # a point that did not refine kept its input position
            assert np.array_equal(result.points_xy[~result.refined], noisy[~result.refined])


def test_points_without_evidence_keep_their_place_and_are_flagged(quadrats):
    q = quadrats[0]
    spacing = q.warped_size[0] / 14
    cell_centres = q.grid_warped_xy[:3] + spacing / 2  # half a spacing from every string
    result = refine_grid_crossings(q.warped, cell_centres, spacing / 4, q.grid_line_width_px)
    assert not result.refined.any() and (result.confidence == 0).all()
    assert np.array_equal(result.points_xy, cell_centres)
    # without a grid drawn, no proposed crossing is confirmed
    bare = render_quadrat(np.random.default_rng([5, 0]), (768, 576), 640, ["Acropora"], grid=False)
    result = refine_grid_crossings(bare.warped, bare.grid_warped_xy, spacing / 4, 3.0, grid_shape=(9, 13))
    assert result.refined.mean() < 0.05
    # corners without all four, or far from any frame, stay where they were
    half = q.corners_raw_xy.copy()
    half[2] = np.nan
    assert not refine_quadrat_corners(q.raw, half).refined.any()


def test_straight_string_check_rejects_a_point_off_its_row_and_column():
    grid = grid_template_xy() * 700
    grid[20] += [6.0, 6.0]
    ok = on_straight_strings(grid, (9, 13), 2.0)
    assert not ok[20] and ok.sum() == 116


def _prediction(points_xy: np.ndarray) -> PosePrediction:
    k = len(points_xy)
    found = np.isfinite(points_xy).all(axis=1)
    index = np.where(found, np.arange(k), -1)
    return PosePrediction(
        points_xy.copy(),
        found.astype(float),
        TemplateMatch(points_xy, index, np.zeros(k), 0),
        found.sum(),
        (640, 640),
    )


def test_grid_points_the_model_missed_are_proposed_and_kept_only_where_strings_cross(quadrats):
    q = quadrats[1]
    task = get_task("gridpose")
    rng = np.random.default_rng(2)
    partial = q.grid_warped_xy + rng.normal(0, 2.0, q.grid_warped_xy.shape)
    missed = rng.permutation(117)[:30]
    partial[missed] = np.nan
    assert homography_filled_grid(partial[:5], grid_template_xy()[:5]) is None  # too few to fit
    prediction = _prediction(partial)
    refine_prediction(q.warped, prediction, task, grid_template_xy())
    assert (
        prediction.filled[missed].mean() > 0.9
        and not prediction.filled[np.setdiff1d(np.arange(117), missed)].any()
    )
    error = np.linalg.norm(prediction.keypoints_xy - q.grid_warped_xy, axis=1)
    assert np.nanmean(error) < 0.6 and np.nanmax(error) < 2.5
    assert (prediction.scores[prediction.filled] > 0).all()
    # the same on the photo without a grid: nothing is filled in
    bare = render_quadrat(np.random.default_rng([5, 1]), (768, 576), 640, ["Acropora"], grid=False)
    prediction = _prediction(partial)
    refine_prediction(bare.warped, prediction, task, grid_template_xy())
    assert prediction.filled.sum() <= 2


def test_a_photo_without_grid_is_said_so_with_a_reason():
    few = np.full((117, 2), np.nan)
    few[:10] = grid_template_xy()[:10] * 640
    reason = no_grid_reason(_prediction(few))
    assert reason.startswith("no grid: 10 of 117 intersections found") and "skipped" in reason
    assert no_grid_reason(_prediction(grid_template_xy() * 640)) == ""
