"""Nuclio handler of ``pth-lama``: remove the grid from one image given its 117 keypoints.

Request: ``{"image": <base64>, "keypoints": [[x, y] x 117] (null for a missing point),
"line_width": <px, optional>}``. Response: ``{"image": <base64 PNG>, "width", "height",
"backend", "line_width"}``. A thin adapter over :func:`grid_inpainting.inpaint.remove_grid`,
the function the local pipeline and the bridge also use.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from grid_inpainting.inpaint import LamaBackend, OpenCVBackend, remove_grid
from quadratseg.errors import QuadratsegError
from quadratseg.nuclio import decode_image_b64, encode_image_b64, json_response, parse_body

WEIGHTS = Path(__file__).resolve().parent / "big-lama.pt"


def init_context(context):
    """Load the backend chosen at packaging time (QUADRATSEG_INPAINT_BACKEND) once."""
    name = os.environ.get("QUADRATSEG_INPAINT_BACKEND", "lama")
    if name == "lama":
        backend = LamaBackend(WEIGHTS, device=os.environ.get("QUADRATSEG_DEVICE", "auto"))
    else:
        context.logger.warn(f"grid removal uses the OpenCV backend {name} (chosen when packaging)")
        backend = OpenCVBackend(name.split("-", 1)[1])
    context.user_data.backend = backend


def handler(context, event):
    """Serve one request (see the module docstring)."""
    try:
        data = parse_body(event.body)
        if "image" not in data or "keypoints" not in data:
            raise ValueError("the request needs 'image' (base64) and 'keypoints' ([[x, y] x 117])")
        image = decode_image_b64(data["image"])
        keypoints = np.array(
            [[np.nan, np.nan] if p is None else p for p in data["keypoints"]], dtype=np.float64
        )
        width = data.get("line_width")
        (result,) = remove_grid(
            [image], [keypoints], context.user_data.backend, float(width) if width else None
        )
    except (ValueError, QuadratsegError) as exc:
        return json_response(context, {"error": str(exc)}, status_code=400)
    h, w = result.image.shape[:2]
    return json_response(
        context,
        {
            "image": encode_image_b64(result.image),
            "width": w,
            "height": h,
            "backend": result.backend,
            "line_width": result.line_width,
        },
    )
