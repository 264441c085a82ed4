"""Pose thresholds, template and warp size travel with the model (its card) and are read by every consumer.

The CLIs and the predictor run as they are; the ultralytics model is the stand-in of
``pose_standins`` (real ``Results`` around a synthetic photo's true corners), whose weights folder
holds the card under test.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pose_standins import RAW_SIZE as RAW
from pose_standins import PointsModel, photo

from grid_pose_detection.predict import predict
from grid_pose_detection.predictor import DEFAULT_CONF, DEFAULT_KPT_CONF, PosePredictor
from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import corner_template_xy, grid_template_xy, save_template
from quadratseg.model_card import write_model_card
from quadratseg.warp import DEFAULT_WARP_SIZE


@pytest.fixture
def corner_setup(monkeypatch, tmp_path):
    """(photos folder with one synthetic photo, weights path whose model answers its true corners with
    keypoint confidence 0.8 on every call, the stand-in model)."""
    import quadratseg.yolo_train

    scene = photo(2)
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "q.png"), cv2.cvtColor(scene.raw, cv2.COLOR_RGB2BGR))

    class Repeating(PointsModel):
        def predict(self, images_bgr, **kwargs):
            self.answers = [scene.corners_raw_xy] * len(images_bgr)
            return super().predict(images_bgr, **kwargs)

    model = Repeating([], kpt_conf=0.8)
    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: model)
    weights = tmp_path / "model" / "best.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"stand-in")
    return folder, weights, model


def _run(folder, weights, out, **options):
    summary = json.loads(predict("gridcorners", str(weights), str(folder), str(out), **options))
    report = json.loads((out / "report.json").read_text())
    return summary, report[0]


def test_predict_takes_thresholds_from_the_card_unless_given(corner_setup, tmp_path):
    """No card: the documented defaults. A card's kpt_conf above the model's 0.8 loses every corner; the
    option given wins over the card; the card's box threshold and matching cost are what is used."""
    folder, weights, model = corner_setup
    summary, entry = _run(folder, weights, tmp_path / "none", warp_size=256)
    assert entry["found"] == 4 and entry["warp"] == "ok" and summary["warped"] == 1
    assert model.calls[-1]["conf"] == DEFAULT_CONF == 0.25 and DEFAULT_KPT_CONF == 0.5
    write_model_card(weights, {"task": "gridcorners", "conf": 0.02, "kpt_conf": 0.9})
    summary, entry = _run(folder, weights, tmp_path / "card", warp_size=256)
    assert entry["found"] == 0 and summary["warped"] == 0 and model.calls[-1]["conf"] == 0.02
    summary, entry = _run(folder, weights, tmp_path / "given", warp_size=256, kpt_conf=0.7, conf=0.3)
    assert entry["found"] == 4 and summary["warped"] == 1 and model.calls[-1]["conf"] == 0.3
    # a matching cost of 0.0001 (of the frame's side) keeps only the two corners the template is laid
    # through exactly (a start through a pair of detections): the card's max_cost is read
    write_model_card(weights, {"kpt_conf": 0.5, "max_cost": 0.0001})
    _, entry = _run(folder, weights, tmp_path / "cost", warp_size=256)
    assert entry["found"] == 2 and entry["warp"].startswith("corner(s)")
    _, entry = _run(folder, weights, tmp_path / "cost_given", warp_size=256, max_cost=0.3)
    assert entry["found"] == 4


def test_the_warp_size_comes_from_the_card_else_1920(corner_setup, tmp_path):
    folder, weights, _ = corner_setup
    _run(folder, weights, tmp_path / "default")
    assert cv2.imread(str(tmp_path / "default" / "warped" / "q.png")).shape == (1920, 1920, 3)
    assert DEFAULT_WARP_SIZE == 1920
    write_model_card(weights, {"task": "gridcorners", "warp_size": 320})
    _run(folder, weights, tmp_path / "card", aspect=2.0)
    assert cv2.imread(str(tmp_path / "card" / "warped" / "q.png")).shape == (160, 320, 3)
    with pytest.raises(QuadratsegError, match=r"--warp-size 256 disagrees with .*card.* 320 px"):
        _run(folder, weights, tmp_path / "refused", warp_size=256)
    _run(folder, weights, tmp_path / "forced", warp_size=256, allow_warp_size_mismatch=True)
    assert cv2.imread(str(tmp_path / "forced" / "warped" / "q.png")).shape == (256, 256, 3)


def test_a_grid_model_refuses_a_warp_it_was_not_trained_on(monkeypatch, tmp_path):
    import quadratseg.yolo_train

    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: PointsModel([]))
    weights = tmp_path / "grid" / "best.pt"
    weights.parent.mkdir()
    write_model_card(weights, {"task": "gridpose", "warp_size": 640, "template": "kp_template.npy"})
    save_template(grid_template_xy() * 0.98 + 0.01, weights.parent / "kp_template.npy")
    task = get_task("gridpose")
    with pytest.raises(QuadratsegError, match=r"--warp-size 1920 disagrees with the gridpose model's card"):
        PosePredictor(weights, task, warp_size=1920)
    predictor = PosePredictor(weights, task)
    assert predictor.warp_size == (640, 640)
    assert np.allclose(predictor.template, grid_template_xy() * 0.98 + 0.01)  # the card's template
    assert predictor.max_cost == task.max_cost and predictor.conf == DEFAULT_CONF
    assert PosePredictor(weights, task, warp_size=1920, allow_warp_size_mismatch=True).warp_size == (
        1920,
        1920,
    )
    explicit = PosePredictor(weights, task, template_xy=grid_template_xy())
    assert np.allclose(explicit.template, grid_template_xy())
    with pytest.raises(QuadratsegError, match=r"is a gridpose model.*gridcorners"):
        PosePredictor(weights, get_task("gridcorners"))
    write_model_card(weights, {"template": "missing.npy"})
    with pytest.raises(QuadratsegError, match=r"missing\.npy"):
        PosePredictor(weights, task)


def test_the_corner_card_template_is_read(monkeypatch, tmp_path):
    import quadratseg.yolo_train

    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: PointsModel([]))
    weights = tmp_path / "c" / "best.pt"
    weights.parent.mkdir()
    save_template(corner_template_xy() * 0.9, weights.parent / "corners.npy")
    write_model_card(weights, {"task": "gridcorners", "template": "corners.npy", "kpt_conf": 0.3})
    predictor = PosePredictor(weights, get_task("gridcorners"))
    assert np.allclose(predictor.template, corner_template_xy() * 0.9) and predictor.kpt_conf == 0.3
    assert predictor.warp_size == (1920, 1920)


def test_the_recommended_conf_is_the_one_that_completes_the_val_photos(monkeypatch, tmp_path):
    """A stand-in whose boxes score 0.12 (found from a threshold of 0.1 down) and whose top-left corner
    goes 25 px astray below a threshold of 0.005 (a worse box winning): 0.1, 0.05 and 0.01 complete every
    val photo, 0.001 none, 0.25 and 0.5 none (nothing found); the highest of the best, 0.1, is written
    with how."""
    import yaml

    import quadratseg.yolo_train
    from grid_pose_detection.card import write_pose_card
    from quadratseg.formats.keypoints_io import yolo_pose_line

    scenes = [photo(seed) for seed in (5, 6)]
    root = tmp_path / "layout"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for i, scene in enumerate(scenes):
        cv2.imwrite(str(root / "images" / "val" / f"{i}.png"), cv2.cvtColor(scene.raw, cv2.COLOR_RGB2BGR))
        lines = [yolo_pose_line(p[None], RAW) for p in scene.corners_raw_xy]  # the points layout
        (root / "labels" / "val" / f"{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(
        yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val"})
    )
    truths = {scene.raw.tobytes(): scene.corners_raw_xy for scene in scenes}

    class ThresholdedModel(PointsModel):
        def predict(self, images_bgr, **kwargs):
            self.answers = []
            for bgr in images_bgr:
                points = (
                    truths[np.ascontiguousarray(bgr[..., ::-1]).tobytes()] if kwargs["conf"] <= 0.12 else []
                )
                if kwargs["conf"] <= 0.005:
                    points = points + np.array([[25.0, 0.0], [0, 0], [0, 0], [0, 0]])
                self.answers.append(np.asarray(points, dtype=np.float64).reshape(-1, 2))
            return super().predict(images_bgr, **kwargs)

    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: ThresholdedModel([]))
    weights = tmp_path / "weights" / "best.pt"
    weights.parent.mkdir()
    card = write_pose_card(weights, "gridcorners", root / "data.yaml", imgsz=640)
    assert card["thresholds"]["success_by_conf"] == {
        "0.5": 0.0, "0.25": 0.0, "0.1": 1.0, "0.05": 1.0, "0.01": 1.0, "0.001": 0.0
    }  # fmt: skip
    assert card["conf"] == 0.1 and card["thresholds"]["images"] == 2
    assert card["thresholds"]["how"].startswith(
        "the box threshold that completed the most val images (100% of 2"
    )
    assert PosePredictor(weights, get_task("gridcorners")).conf == 0.1  # what every consumer then uses
    # the card states when a prediction is taken to show no frame, with the predictor's own thresholds
    from grid_pose_detection.predictor import MIN_FRAME_SIDES, MIN_WEAKEST_SIDE

    check = card["frame_check"]
    assert (check["sides_needed"], check["weakest_side"]) == (MIN_FRAME_SIDES, MIN_WEAKEST_SIDE)
    assert check["rule"].startswith("no frame unless 3 of the 4 sides")
