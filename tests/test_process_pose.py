"""pipeline.process with the real PosePredictor over ultralytics stand-ins: the warp uses the
corners the predictor reports, and the pose thresholds come from the model card unless given."""

from __future__ import annotations

import json

import numpy as np
from chain_standins import FakePoseModel, FakeSegModel, TrueColonies
from process_runs import _status

from pipeline.chain import ChainModels
from pipeline.run import process_folder
from quadratseg.warp import transform_points


def test_the_real_pose_predictor_warps_with_the_corners_it_reports(raw_photos, tmp_path):
    """The corner model is 3 px off; the predictor refines the corners onto the frame, and the
    homography the chain records must be built from those refined corners (before: from the model's)."""
    import quadratseg.yolo_train
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task

    folder, truths, keys, _ = raw_photos
    fake = FakePoseModel(truths, offset_xy=(3.0, -2.0))
    original = quadratseg.yolo_train.build_model
    quadratseg.yolo_train.build_model = lambda weights: fake
    try:
        corners = PosePredictor("fake.pt", get_task("gridcorners"), warp_size=(256, 256))
    finally:
        quadratseg.yolo_train.build_model = original
    models = ChainModels(TrueColonies(truths), corners)
    out = tmp_path / "out"
    summary = process_folder(folder, out, models, "fp")
    assert summary["with_cover"] == len(truths)
    refined_any, errors = 0, []
    for key, t in zip(keys, truths, strict=True):
        record = json.loads((out / "photos" / f"{key}.json").read_text())
        refined = np.asarray(record["corners_xy"], dtype=float)
        truth = np.asarray(t["corners_raw_xy"])
        moved = np.abs(refined - truth - np.array([3.0, -2.0])).max(axis=1)
        refined_any += int((moved > 0.5).sum())
        h = np.asarray(record["homography_raw_to_warped"])
        frame = [[0, 0], [256, 0], [256, 256], [0, 256]]
        # the recorded corners (rounded to 1e-3 px) land on the warped frame's corners
        errors.append(np.abs(transform_points(refined, h) - frame).max())
    assert refined_any >= 1  # the stand-in disagrees with the refinement: the two must not be mixed
    assert max(errors) < 0.01, errors


def test_pose_thresholds_come_from_the_model_card_unless_given(one_photo, fake_weights, tmp_path):
    """The corner model's keypoints have confidence 0.6: a card recommending kpt_conf 0.7 makes the
    frame unfound, the option --corners-kpt-conf 0.5 overrides the card, a card saying 0.5 finds it;
    the card's detection threshold is what ultralytics is asked for."""
    from pipeline.process import process
    from quadratseg.model_card import write_model_card

    folder, truth, _ = one_photo
    fake = FakePoseModel([truth], kpt_conf=0.6)
    corners = fake_weights("corners", fake)
    seg = fake_weights("seg", FakeSegModel())
    write_model_card(corners, {"task": "gridcorners", "kpt_conf": 0.7, "conf": 0.05, "warp_size": 256})
    process(str(folder), str(tmp_path / "strict"), yolo=str(seg), corners=str(corners), warp_size=256)
    assert _status(tmp_path / "strict")[0]["corners"].startswith("stopped: no quadrat frame")
    assert fake.calls_kwargs[-1]["conf"] == 0.05
    process(
        str(folder),
        str(tmp_path / "given"),
        yolo=str(seg),
        corners=str(corners),
        warp_size=256,
        corners_kpt_conf=0.5,
        corners_conf=0.3,
    )
    assert _status(tmp_path / "given")[0]["corners"] == "ok"
    assert fake.calls_kwargs[-1]["conf"] == 0.3
    write_model_card(corners, {"kpt_conf": 0.5})
    process(str(folder), str(tmp_path / "card"), yolo=str(seg), corners=str(corners), warp_size=256)
    assert _status(tmp_path / "card")[0]["corners"] == "ok"
