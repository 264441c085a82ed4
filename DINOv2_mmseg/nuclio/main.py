"""Nuclio handler of ``pth-mmseg-coralscopsegformer``: DINOv2 + SegFormer, refined with SAM/CoralSCoP.

Request ``{"image": <base64>, "threshold": <0..1, optional>}``; answer: CVAT ``mask`` shapes that
also carry ``points``, with integer-string confidences (the colony's mean class probability) and the
``unsure`` checkbox attribute (``"true"`` under ``QUADRATSEG_UNSURE_THRESHOLD``).
A thin adapter over :class:`DINOv2_mmseg.coral_pipeline.CoralPipeline`.
"""

from __future__ import annotations

import os
from pathlib import Path

from DINOv2_mmseg.coral_pipeline import CoralPipeline, cvat_answer
from DINOv2_mmseg.sam_refine import RefineConfig
from quadratseg.nuclio import json_response, parse_image_request

HERE = Path(__file__).resolve().parent


def init_context(context):
    """Load the segmentor and SAM once."""
    refine = RefineConfig(
        float(os.environ.get("QUADRATSEG_MIN_THRESHOLD", "0.5")),
        float(os.environ.get("QUADRATSEG_UNSURE_THRESHOLD", "0.75")),
    )
    context.user_data.pipeline = CoralPipeline(
        HERE / "best_segformer_config.py",
        HERE / "best_segformer.pth",
        HERE / "vit_b_coralscop.pth",
        refine,
        os.environ.get("QUADRATSEG_DEVICE", "auto"),
    )


def handler(context, event):
    """Serve one request."""
    try:
        _, image, threshold = parse_image_request(event.body, 0.0)
    except ValueError as exc:
        return json_response(context, {"error": str(exc)}, status_code=400)
    _, instances = context.user_data.pipeline(image)
    return json_response(context, cvat_answer(instances, (image.shape[1], image.shape[0]), threshold))
