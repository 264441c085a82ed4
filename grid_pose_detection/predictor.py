"""Pose predictions put in template order: the function the CLI, the evaluation and the Nuclio handler share.

Raw keypoints of every detected instance with a keypoint confidence above ``kpt_conf`` form an
unordered set of detections; Hungarian matching against the task's template (normalized by
the image size, ``max_cost`` as upstream) puts them in template order. Missing points stay
missing (NaN), extra detections are dropped. For corners, the perspective warp of the quadrat
follows, refused with a reason when fewer than 4 corners were found or they are degenerate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grid_pose_detection.tasks import PoseTask
from quadratseg.errors import DegenerateQuadrilateralError
from quadratseg.keypoints import TemplateMatch, match_to_template, validate_template
from quadratseg.warp import quadrat_homography, warp_image


@dataclass
class PosePrediction:
    """Keypoints of one image in template order (pixels, NaN if missing) and how they were found."""

    keypoints_xy: np.ndarray
    scores: np.ndarray  # (K,) keypoint confidence, 0 where missing
    match: TemplateMatch
    n_raw: int
    frame_size: tuple[int, int]
    homography: np.ndarray | None = None  # image -> warped (corners task)
    warp_error: str = ""  # why no warp was made
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def visible(self) -> np.ndarray:
        """(K,) bool: the point was found."""
        return np.isfinite(self.keypoints_xy).all(axis=1)


def raw_keypoints(result: Any, kpt_conf: float) -> tuple[np.ndarray, np.ndarray]:
    """All keypoints of an ultralytics result whose confidence reaches ``kpt_conf``: (M, 2) px, (M,)."""
    kps = getattr(result, "keypoints", None)
    if kps is None or kps.xy is None or len(kps.xy) == 0:
        return np.zeros((0, 2)), np.zeros(0)
    xy = kps.xy.cpu().numpy().reshape(-1, 2)
    conf = kps.conf.cpu().numpy().reshape(-1) if kps.conf is not None else np.ones(len(xy))
    keep = (conf >= kpt_conf) & np.isfinite(xy).all(axis=1) & (xy > 0).any(axis=1)
    return xy[keep], conf[keep]


def order_keypoints(
    detections_xy: np.ndarray,
    scores: np.ndarray,
    template_xy: np.ndarray,
    max_cost: float,
    frame_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, TemplateMatch]:
    """Detections (M, 2) px -> template order (K, 2) px with NaN for missing, and their scores."""
    match = match_to_template(detections_xy, template_xy, max_cost, frame_size=frame_size)
    ordered_scores = np.zeros(len(template_xy))
    found = match.detection_index >= 0
    ordered_scores[found] = scores[match.detection_index[found]]
    return match.keypoints_xy, ordered_scores, match


class PosePredictor:
    """A trained YOLO-pose model for one task, with its template."""

    def __init__(
        self,
        weights: str | Path,
        task: PoseTask,
        template_xy: np.ndarray | None = None,
        conf: float = 0.25,
        kpt_conf: float = 0.5,
        imgsz: int | None = None,
        device: str = "auto",
        warp_size: tuple[int, int] = (1024, 1024),
    ):
        from quadratseg.yolo_train import build_model

        self.model = build_model(weights)
        self.task = task
        self.template = validate_template(
            template_xy if template_xy is not None else task.template(), task.n_points
        )
        self.conf, self.kpt_conf = conf, kpt_conf
        self.imgsz = imgsz or int(self.model.overrides.get("imgsz", 640) or 640)
        self.device = None if device == "auto" else device
        self.warp_size = warp_size

    def predict(self, images_rgb: list[np.ndarray], kpt_conf: float | None = None) -> list[PosePrediction]:
        """Predictions for uint8 RGB images (H, W, 3); ``kpt_conf`` overrides the keypoint
        confidence for this call only (a served request's ``threshold``)."""
        kpt_conf = self.kpt_conf if kpt_conf is None else kpt_conf
        bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images_rgb]  # ultralytics takes BGR arrays
        results = self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False)
        out = []
        for image, result in zip(images_rgb, results, strict=True):
            size = (image.shape[1], image.shape[0])
            det, scores = raw_keypoints(result, kpt_conf)
            ordered, ordered_scores, match = order_keypoints(
                det, scores, self.template, self.task.max_cost, size
            )
            prediction = PosePrediction(ordered, ordered_scores, match, len(det), size)
            if self.task.name == "gridcorners":
                try:
                    prediction.homography = quadrat_homography(ordered, self.warp_size)
                except DegenerateQuadrilateralError as exc:
                    prediction.warp_error = str(exc)
            out.append(prediction)
        return out

    def warp(self, image_rgb: np.ndarray, prediction: PosePrediction) -> np.ndarray | None:
        """The rectified quadrat of a corners prediction (None when it could not be warped)."""
        if prediction.homography is None:
            return None
        return warp_image(image_rgb, prediction.homography, self.warp_size)


def skeleton_shape(prediction: PosePrediction, task: PoseTask) -> dict[str, Any]:
    """The CVAT detector answer for one prediction: one skeleton, elements in template order.

    Missing points get ``outside: 1`` (CVAT keeps them hidden); confidences are integer strings.
    """
    spec = task.cvat_labels()[0]
    elements = []
    for i, sub in enumerate(spec.sublabels):
        found = bool(np.isfinite(prediction.keypoints_xy[i]).all())
        x, y = prediction.keypoints_xy[i] if found else (0.0, 0.0)
        elements.append(
            {
                "label": sub.name,
                "type": "points",
                "points": [float(x), float(y)],
                "outside": 0 if found else 1,
                "confidence": str(round(100 * float(prediction.scores[i]))),
            }
        )
    found_scores = prediction.scores[prediction.visible]
    confidence = str(round(100 * float(found_scores.mean()))) if len(found_scores) else "0"
    return {
        "label": spec.name,
        "type": "skeleton",
        "confidence": confidence,
        "attributes": [{"name": "confidence", "value": confidence}],
        "elements": elements,
    }
