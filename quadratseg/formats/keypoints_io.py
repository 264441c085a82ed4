"""Ordered keypoints on disk: COCO keypoints JSON and YOLO pose txt (read and write).

Keypoints are float (K, 2) pixel arrays in template order with NaN for missing points.
- COCO: ``{"images": [{id, file_name, width, height}], "annotations": [{image_id, category_id,
  keypoints: [x, y, v] * K, num_keypoints, bbox}], "categories": [{id, name, keypoints, skeleton}]}``;
  ``v = 0`` is a missing point (x = y = 0 by COCO's convention), 1 occluded, 2 visible.
- YOLO pose: one line per object, ``class cx cy w h x1 y1 v1 ...`` normalized to the image.

Examples:
    >>> import numpy as np
    >>> line = yolo_pose_line(np.array([[10.0, 20.0], [np.nan, np.nan]]), (100, 100))
    >>> parse_yolo_pose_line(line, (100, 100), 2).tolist()
    [[10.0, 20.0], [nan, nan]]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError


def coco_keypoints_document(
    items: list[tuple[str, tuple[int, int], np.ndarray]], category: str, point_names: list[str]
) -> dict[str, Any]:
    """COCO keypoints JSON for (file name, (width, height), keypoints (K, 2)) items."""
    images, annotations = [], []
    for i, (name, (w, h), kp) in enumerate(items, start=1):
        images.append({"id": i, "file_name": name, "width": int(w), "height": int(h)})
        flat = []
        ok = np.isfinite(kp).all(axis=1)
        for (x, y), visible in zip(kp.tolist(), ok, strict=True):
            flat += [round(x, 3), round(y, 3), 2] if visible else [0, 0, 0]
        present = kp[ok]
        bbox = [0, 0, 0, 0]
        if len(present):
            x0, y0 = present.min(axis=0)
            x1, y1 = present.max(axis=0)
            bbox = [
                round(float(x0), 3),
                round(float(y0), 3),
                round(float(x1 - x0), 3),
                round(float(y1 - y0), 3),
            ]
        annotations.append(
            {
                "id": i,
                "image_id": i,
                "category_id": 1,
                "keypoints": flat,
                "num_keypoints": int(ok.sum()),
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
        )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": category, "keypoints": point_names, "skeleton": []}],
    }


def read_coco_keypoints(path: str | Path, n_points: int) -> dict[str, tuple[tuple[int, int], np.ndarray]]:
    """``{file name: ((width, height), keypoints (n_points, 2))}`` from a COCO keypoints JSON.

    Raises:
        QuadratsegError: unreadable JSON, or an annotation whose keypoint count is not ``n_points``.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise QuadratsegError(f"cannot read COCO keypoints {path}: {exc}") from None
    images = {img["id"]: img for img in doc.get("images", [])}
    out = {}
    for ann in doc.get("annotations", []):
        image = images.get(ann.get("image_id"))
        if image is None:
            raise QuadratsegError(
                f"{path}: annotation {ann.get('id')} refers to a missing image {ann.get('image_id')}"
            )
        flat = np.asarray(ann.get("keypoints", []), dtype=np.float64)
        if flat.size != 3 * n_points:
            raise QuadratsegError(
                f"{path}: image {image['file_name']!r} has {flat.size // 3} keypoints, expected {n_points}"
            )
        triples = flat.reshape(n_points, 3)
        kp = triples[:, :2].copy()
        kp[triples[:, 2] <= 0] = np.nan
        out[image["file_name"]] = ((int(image["width"]), int(image["height"])), kp)
    return out


def yolo_pose_line(
    keypoints_xy: np.ndarray,
    frame_size: tuple[int, int],
    class_id: int = 0,
    visible: np.ndarray | None = None,
    box_xyxy: tuple[float, float, float, float] | None = None,
) -> str:
    """One YOLO pose line: ``class cx cy w h`` then ``x y v`` per point, normalized to the image.

    ``v`` is 2 for a visible point, 0 for a missing one (NaN: written as 0 0 0) or one marked
    invisible in ``visible`` (its coordinates are kept). The box defaults to the present points'.
    """
    w, h = frame_size
    kp = np.asarray(keypoints_xy, dtype=np.float64)
    ok = np.isfinite(kp).all(axis=1)
    vis = ok if visible is None else (ok & np.asarray(visible, dtype=bool))
    if box_xyxy is not None:
        x0, y0, x1, y1 = box_xyxy
    elif ok.any():
        x0, y0 = kp[ok].min(axis=0)
        x1, y1 = kp[ok].max(axis=0)
    else:
        x0 = y0 = x1 = y1 = 0.0
    values: list[float | int] = [class_id, (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
    for (x, y), present, seen in zip(kp.tolist(), ok, vis, strict=True):
        values += [x / w, y / h, 2 if seen else 0] if present else [0.0, 0.0, 0]
    return " ".join(str(v) if isinstance(v, int) else f"{v:.6f}" for v in values)


def parse_yolo_pose_line(line: str, frame_size: tuple[int, int], n_points: int) -> np.ndarray:
    """Keypoints (n_points, 2) px of a YOLO pose line (``x y v`` or ``x y`` per point)."""
    values = [float(v) for v in line.split()]
    rest = values[5:]
    w, h = frame_size
    if len(rest) == 3 * n_points:
        triples = np.asarray(rest).reshape(n_points, 3)
        kp = triples[:, :2] * [w, h]
        kp[triples[:, 2] <= 0] = np.nan
        return kp
    if len(rest) == 2 * n_points:
        return np.asarray(rest).reshape(n_points, 2) * [w, h]
    raise QuadratsegError(
        f"a YOLO pose line has {len(rest)} keypoint values; expected {n_points} points (x y [v])"
    )


def read_yolo_pose(path: str | Path, frame_size: tuple[int, int], n_points: int) -> np.ndarray:
    """Keypoints of the first object in a YOLO pose txt file."""
    path = Path(path)
    if not path.is_file():
        raise QuadratsegError(f"{path} does not exist (expected a YOLO pose label beside the image)")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise QuadratsegError(f"{path} has no object")
    return parse_yolo_pose_line(lines[0], frame_size, n_points)
