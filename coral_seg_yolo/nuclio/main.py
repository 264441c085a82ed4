"""Nuclio handler of the coral segmentation function (e.g. ``pth-yolo-coralsegv4``).

Request ``{"image": <base64>, "threshold": <0..1, optional>}``; answer: CVAT ``mask`` shapes that
also carry ``points`` (a polygon, used when CVAT converts masks to polygons), integer-string
confidences. A thin adapter over :class:`coral_seg_yolo.predictor.SegPredictor`.
"""

from __future__ import annotations

import os
from pathlib import Path

from coral_seg_yolo.predictor import SegPredictor, card_windows
from quadratseg.instances import cvat_shapes
from quadratseg.nuclio import json_response, parse_image_request

HERE = Path(__file__).resolve().parent


def init_context(context):
    """Load the model once; windows of the size its card says it was trained on (a tiled model)."""
    windows = card_windows(HERE / "best.pt")
    context.user_data.predictor = SegPredictor(
        HERE / "best.pt", device=os.environ.get("QUADRATSEG_DEVICE", "auto"), tile=windows.get("tile", 640)
    )
    context.user_data.method = os.environ.get("QUADRATSEG_SEG_METHOD", "direct")


def handler(context, event):
    """Serve one request."""
    try:
        _, image, threshold = parse_image_request(event.body, 0.5)
    except ValueError as exc:
        return json_response(context, {"error": str(exc)}, status_code=400)
    predictor = context.user_data.predictor
    instances = predictor.predict(image, method=context.user_data.method, conf=min(threshold, predictor.conf))
    return json_response(context, cvat_shapes(instances, (image.shape[1], image.shape[0]), threshold))
