"""The chain's geometry through the real PosePredictor: the warp is built from the corners it reports.

The ultralytics model is a stand-in answering real ``ultralytics.engine.results.Results`` (one object
per keypoint, the ``points`` layout) around a synthetic photo whose true corners are known; everything
after the model (matching, refinement, homography, the CLI's ``warped/`` and ``homographies.json``)
is the project's own code.
"""

from __future__ import annotations

import numpy as np
import pytest
from pose_standins import RAW_SIZE, WARP, PointsModel, photo, predictor_over

from grid_pose_detection.predictor import MIN_FRAME_SIDES, MIN_SIDE_EVIDENCE, MIN_WEAKEST_SIDE
from quadratseg.synth.scene import render_quadrat
from quadratseg.warp import quadrat_homography, transform_points


def homography_error_px(homography: np.ndarray, true_corners: np.ndarray, size=WARP) -> float:
    """Largest distance (warped px) between where ``homography`` puts points of the quadrat and where
    the true corners' homography puts them (a 17 x 17 lattice over the quadrat, corners included)."""
    true_h = quadrat_homography(true_corners, size)
    u, v = np.meshgrid(np.linspace(0, size[0], 17), np.linspace(0, size[1], 17))
    warped = np.stack([u.ravel(), v.ravel()], axis=1)
    raw = transform_points(warped, np.linalg.inv(true_h))
    return float(np.linalg.norm(transform_points(raw, homography) - warped, axis=1).max())


SEEDS = (1, 2, 3, 4)


def test_the_homography_is_built_from_the_refined_corners(monkeypatch):
    """True corners + N(0, 3 px): the refined corners are sub-pixel, and so must be the warp made of them
    (before: the homography came from the model's corners, several px off). The third photo's TR corner is
    6.9 px off, at the search radius (2.5 % of the side): its side's edge is searched one px beyond the
    radius and found, so that corner refines too (before: it kept the model's place, a warp 7 px off)."""
    rng = np.random.default_rng(7)
    scenes = [photo(seed) for seed in SEEDS]
    noisy = [s.corners_raw_xy + rng.normal(0, 3.0, (4, 2)) for s in scenes]
    model = PointsModel(noisy)
    predictor = predictor_over(model, monkeypatch)
    predictions = predictor.predict([s.raw for s in scenes])
    model_errors, warp_errors = [], []
    for scene, answer, pred in zip(scenes, noisy, predictions, strict=True):
        assert pred.homography is not None and pred.warp_error == "" and pred.refined.all()
        model_errors.append(homography_error_px(quadrat_homography(answer, WARP), scene.corners_raw_xy))
        warp_errors.append(homography_error_px(pred.homography, scene.corners_raw_xy))
        assert predictor.warp(scene.raw, pred).shape == (256, 256, 3)
    assert [round(e, 1) for e in model_errors] == [3.8, 2.5, 7.1, 5.7]  # the stand-in's own warps
    assert max(warp_errors) < 0.5, warp_errors  # measured: 0.05 to 0.1 px
    frame = [[0, 0], [256, 0], [256, 256], [0, 256]]
    for pred in predictions:  # the homography is the one of the corners the prediction reports
        assert np.allclose(transform_points(pred.keypoints_xy, pred.homography), frame, atol=1e-3)


def test_a_model_that_disagrees_with_the_photo_gives_no_frame(monkeypatch):
    """Corners shifted 60 px right and 20 px down, or put at the middles of the frame's sides (valid
    quadrilaterals both), or only three of them: no frame and why, never a warp made of corners the
    photo does not show."""
    scene = photo(1)
    true = scene.corners_raw_xy
    shifted, diamond = true + np.array([60.0, 20.0]), (true + np.roll(true, -1, axis=0)) / 2
    model = PointsModel([shifted, diamond, true[:3]])
    predictor = predictor_over(model, monkeypatch)
    predictions = predictor.predict([scene.raw] * 3)
    for pred in predictions:
        assert pred.homography is None and predictor.warp(scene.raw, pred) is None
    for pred in predictions[:2]:
        assert pred.warp_error.startswith("corners TL, TR, BR, BL not confirmed by the frame: ")
        straight = pred.side_straightness
        assert (straight >= MIN_SIDE_EVIDENCE).sum() < MIN_FRAME_SIDES or straight.min() < MIN_WEAKEST_SIDE
    assert "BL" in predictions[2].warp_error and "missing" in predictions[2].warp_error
    assert predictions[2].visible.tolist() == [True, True, True, False]
    # refinement off: the model's own corners are used as they are (an explicit choice)
    model.answers = [shifted]
    (plain,) = predictor.predict([scene.raw], refine=False)
    assert plain.homography is not None and plain.warp_error == ""
    assert homography_error_px(plain.homography, true) > 50


def test_the_predict_cli_warps_with_the_refined_corners(monkeypatch, tmp_path):
    """``grid_pose_detection.predict``: ``homographies.json`` and ``warped/`` carry the warp of the refined
    corners (the photo's true quadrat to a fraction of a pixel), not the model's."""
    import json

    import cv2

    import quadratseg.yolo_train
    from grid_pose_detection.predict import predict

    scene = photo(2)
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "q.png"), cv2.cvtColor(scene.raw, cv2.COLOR_RGB2BGR))
    noisy = scene.corners_raw_xy + np.random.default_rng(7).normal(0, 3.0, (4, 2))
    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: PointsModel([noisy]))
    weights = tmp_path / "model" / "best.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"stand-in")
    out = tmp_path / "out"
    summary = json.loads(predict("gridcorners", str(weights), str(folder), str(out), warp_size=256))
    assert summary["warped"] == 1
    homography = np.asarray(json.loads((tmp_path / "out" / "homographies.json").read_text())["q.png"])
    assert homography_error_px(quadrat_homography(noisy, WARP), scene.corners_raw_xy) > 2.0
    assert homography_error_px(homography, scene.corners_raw_xy) < 0.5
    warped = cv2.imread(str(tmp_path / "out" / "warped" / "q.png"))
    truth = cv2.cvtColor(scene.warped, cv2.COLOR_RGB2BGR).astype(float)
    assert warped.shape == (256, 256, 3)
    # the delivered warp is the true quadrat: the same image as the generator's own warp, but the edges
    assert np.abs(warped[8:-8, 8:-8].astype(float) - truth[8:-8, 8:-8]).mean() < 2.0


@pytest.mark.parametrize("roll, turns", [(90, -1), (180, 2), (-90, 1)])
def test_a_rolled_camera_gives_corners_and_warp_as_the_photo_shows_them(monkeypatch, roll, turns):
    """The camera turned by a quarter or half turn: the model's corners (the quadrat's own TL, TR, BR, BL,
    shuffled, 1 px off) come out clockwise from the photo's top-left, refined, and the warp shows the
    quadrat as the photo does (the generator's upright warp turned by the same roll)."""
    scene = render_quadrat(np.random.default_rng(3), RAW_SIZE, 256, ["Acropora", "Porites"], roll_deg=roll)
    rng = np.random.default_rng(0)
    answer = scene.corners_raw_xy[rng.permutation(4)] + rng.normal(0, 1.0, (4, 2))
    predictor = predictor_over(PointsModel([answer]), monkeypatch)
    (pred,) = predictor.predict([scene.raw])
    image_order = (int(np.argmin(scene.corners_raw_xy.sum(axis=1))) + np.arange(4)) % 4
    assert np.abs(pred.keypoints_xy - scene.corners_raw_xy[image_order]).max() < 0.5
    assert pred.refined.all() and pred.homography is not None
    warped = predictor.warp(scene.raw, pred).astype(float)
    as_shown = np.rot90(scene.warped, turns).astype(float)  # np.rot90 turns counter-clockwise for k > 0
    assert np.abs(warped[8:-8, 8:-8] - as_shown[8:-8, 8:-8]).mean() < 2.0


@pytest.mark.parametrize("turn", [0, 1])
def test_a_rectangular_quadrat_warps_to_its_proportions_whichever_way_it_was_photographed(monkeypatch, turn):
    """A 1 x 0.5 m quadrat (aspect 2) photographed with its long side up the photo was labelled by the
    photo's x axis: its short side became TL-TR and was stretched to the warp's width (4:1 out of
    proportion). The corners now take the labelling whose TL-TR side is the long one."""
    wide = np.array([[100.0, 150.0], [500.0, 150.0], [500.0, 350.0], [100.0, 350.0]])  # 400 x 200 px
    corners = wide if turn == 0 else np.array([[220.0, 40.0], [420.0, 40.0], [420.0, 440.0], [220.0, 440.0]])
    predictor = predictor_over(PointsModel([corners]), monkeypatch, warp_size=(512, 256), refine=False)
    (prediction,) = predictor.predict([np.zeros((480, 640, 3), np.uint8)])
    tl, tr, _, bl = prediction.keypoints_xy
    assert np.linalg.norm(tr - tl) == pytest.approx(400.0) and np.linalg.norm(bl - tl) == pytest.approx(200.0)
    h = prediction.homography
    scale = [
        np.linalg.norm(transform_points(np.array([tl + d]), h)[0] - transform_points(np.array([tl]), h)[0])
        for d in ((tr - tl) / 400.0, (bl - tl) / 200.0)
    ]
    assert scale[0] == pytest.approx(scale[1], rel=0.01)  # one scale along both sides: no stretch
