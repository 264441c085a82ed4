"""Nuclio handler of ``pth-mmseg-coralscopsegformer``: DINOv2 + SegFormer, refined with SAM/CoralSCoP.

Request ``{"image": <base64>, "threshold": <0..1, optional>}``; answer: CVAT ``mask`` shapes that
also carry ``points``, with integer-string confidences (the colony's mean class probability).
A thin adapter over :class:`DINOv2_mmseg.predict.CoralPipeline`.
"""

from __future__ import annotations

import os
from pathlib import Path

from DINOv2_mmseg.predict import CoralPipeline
from DINOv2_mmseg.refine import RefineConfig
from quadratseg.instances import cvat_shapes
from quadratseg.nuclio import decode_image_b64, json_response, parse_body

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
        data = parse_body(event.body)
        if "image" not in data:
            raise ValueError("the request needs 'image' (base64)")
        image = decode_image_b64(data["image"])
        threshold = float(data.get("threshold", 0.0))
    except (ValueError, TypeError) as exc:
        return json_response(context, {"error": str(exc)}, status_code=400)
    _, instances = context.user_data.pipeline(image)
    return json_response(context, cvat_shapes(instances, (image.shape[1], image.shape[0]), threshold))
