"""The corner model's stand-in for tests of the real PosePredictor: an ultralytics pose model answering
chosen points as real ``ultralytics.engine.results.Results``, the predictor built over it, and synthetic
photo-quadrats whose true corners are known."""

from __future__ import annotations

import numpy as np
from chain_standins import point_results

from grid_pose_detection.predictor import PosePredictor
from grid_pose_detection.tasks import get_task
from quadratseg.synth.scene import render_quadrat

RAW_SIZE = (640, 480)
WARP = (256, 256)


class PointsModel:
    """An ultralytics pose model answering the given points (M, 2) px per call, keypoint confidence
    ``kpt_conf`` each, box confidence 0.9."""

    task = "pose"

    def __init__(self, answers: list[np.ndarray], kpt_conf: float = 0.8):
        self.answers, self.kpt_conf = list(answers), kpt_conf
        self.overrides, self.names, self.calls = {"imgsz": 640}, {0: "corner"}, []

    def predict(self, images_bgr, **kwargs):
        self.calls.append(kwargs)
        return [point_results(image, self.answers.pop(0), self.kpt_conf, self.names) for image in images_bgr]


def predictor_over(model, monkeypatch, **options) -> PosePredictor:
    """The real PosePredictor of the corner task whose weights build ``model``."""
    import quadratseg.yolo_train

    monkeypatch.setattr(quadratseg.yolo_train, "build_model", lambda weights: model)
    return PosePredictor("stand-in.pt", get_task("gridcorners"), **{"warp_size": WARP, **options})


def photo(seed: int):
    """A synthetic photo-quadrat (640 x 480) with its true inner corners."""
    return render_quadrat(np.random.default_rng(seed), RAW_SIZE, 256, ["Acropora", "Porites", "Fungia"])
