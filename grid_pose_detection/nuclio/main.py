"""Nuclio handler of ``pth-yolo-gridcorners`` / ``pth-yolo-gridpose``: one CVAT skeleton per image.

Request ``{"image": <base64>, "threshold": <keypoint confidence, optional>}``; answer: a list
with one ``skeleton`` shape whose ``elements`` are the points in template order (``outside: 1``
for points not found), or an empty list when no point was found or, for the corners, when the
predictor found all four and refused them as a frame (its ``warp_error``, logged): an annotator is
never handed a confident quadrat that the chain itself would not warp. A thin adapter over
:class:`grid_pose_detection.predictor.PosePredictor`.
"""

from __future__ import annotations

import os
from pathlib import Path

from grid_pose_detection.predictor import PosePredictor, skeleton_shape
from grid_pose_detection.tasks import get_task
from quadratseg.nuclio import json_response, parse_image_request

HERE = Path(__file__).resolve().parent


def init_context(context):
    """Load the model once; thresholds and template from the card beside it (``model_card.json``,
    ``kp_template.npy``), the box threshold overridden by ``QUADRATSEG_POSE_BOX_CONF`` when set."""
    task = get_task(os.environ["QUADRATSEG_POSE_TASK"])
    box_conf = os.environ.get("QUADRATSEG_POSE_BOX_CONF", "")
    context.user_data.predictor = PosePredictor(
        HERE / "best.pt",
        task,
        conf=float(box_conf) if box_conf else None,
        device=os.environ.get("QUADRATSEG_DEVICE", "auto"),
    )
    context.user_data.task = task


def handler(context, event):
    """Serve one request."""
    predictor = context.user_data.predictor
    try:
        _, image, threshold = parse_image_request(event.body, predictor.kpt_conf)
    except ValueError as exc:
        return json_response(context, {"error": str(exc)}, status_code=400)
    (prediction,) = predictor.predict([image], kpt_conf=threshold)
    if prediction.no_frame:
        # four corners the frame check refused: no quadrat, never a confident wrong one (with a corner
        # missing the skeleton still goes, that corner outside, for the annotator to place)
        context.logger.info(f"no frame answered: {prediction.no_frame}")
        return json_response(context, [])
    if not prediction.visible.any():
        return json_response(context, [])
    return json_response(context, [skeleton_shape(prediction, context.user_data.task)])
