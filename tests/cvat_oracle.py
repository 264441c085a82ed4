"""CVAT's side of the detector contract, to check our Nuclio answers the way CVAT reads them.

CVAT's lambda manager (``cvat/apps/lambda_manager/views.py``, ``_parse_anno``) turns a function's
``mask`` shape into what it stores: it takes the flat bitmap (all numbers but the last four),
run-length encodes it with datumaro's ``mask_tools.mask_to_rle(np.array(bitmap)[:, np.newaxis])``
and appends the box; with ``conv_mask_to_poly`` it stores the shape's ``points`` as a polygon
instead. The stored mask is then decoded with cvat-sdk's ``decode_mask``. None of our own
decoders is used here.

datumaro lives in a folder of its own (tests/cvat-oracle-requirements.txt); it is appended to
``sys.path`` so that the project's pinned packages keep precedence.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
ORACLE_DIRS = (REPO / ".venv" / "cvat-oracle", REPO / ".pixi" / "cvat-oracle")


def mask_to_rle():
    """datumaro's ``mask_tools.mask_to_rle`` (the function CVAT calls); fails when not installed."""
    for folder in ORACLE_DIRS:
        if (folder / "datumaro").is_dir() and str(folder) not in sys.path:
            sys.path.append(str(folder))
    try:
        from datumaro.util.mask_tools import mask_to_rle as function
    except ImportError as exc:
        pytest.fail(
            f"CVAT's mask conversion (datumaro) is not installed ({exc}): run `make install` "
            "or `pixi run -e all cvat-oracle` (tests/cvat-oracle-requirements.txt)"
        )
    return function


def cvat_stored_shape(answer_shape: dict[str, Any], conv_mask_to_poly: bool = False) -> dict[str, Any]:
    """What CVAT stores for one shape of a detector's answer: ``{"type", "points"}``.

    The shape first goes through JSON as the function's HTTP answer does (our handlers write it
    with :func:`quadratseg.nuclio.dumps`).
    """
    from quadratseg.nuclio import dumps

    answer_shape = json.loads(dumps(answer_shape))
    if answer_shape["type"] == "mask" and "points" in answer_shape and conv_mask_to_poly:
        return {"type": "polygon", "points": answer_shape["points"]}
    if answer_shape["type"] == "mask":
        points = answer_shape["mask"]
        xtl, ytl, xbr, ybr = points[-4:]
        rle = mask_to_rle()(np.array(points[:-4])[:, np.newaxis])["counts"].tolist()
        return {"type": "mask", "points": [*rle, xtl, ytl, xbr, ybr]}
    return {"type": answer_shape["type"], "points": answer_shape.get("points", [])}


def cvat_mask(answer_shape: dict[str, Any], frame_size: tuple[int, int]) -> np.ndarray:
    """The bool (H, W) mask CVAT shows for a ``mask`` shape of an answer (``frame_size=(W, H)``)."""
    from cvat_sdk.masks import decode_mask

    stored = cvat_stored_shape(answer_shape)
    assert stored["type"] == "mask", stored["type"]
    return decode_mask(stored["points"], image_width=frame_size[0], image_height=frame_size[1])


def polygon_raster(points: list[float], frame_size: tuple[int, int]) -> np.ndarray:
    """A polygon's pixels drawn by PIL (not by our rasterizer), bool (H, W)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("1", frame_size, 0)
    xy = np.asarray(points, dtype=float).reshape(-1, 2)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in (xy - 0.5)], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0
