"""Overlays for reports and predictions: keypoints, skeleton edges, coral polygons.

All functions take and return uint8 RGB images (H, W, 3) and never modify their input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (r, g, b)."""
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def draw_keypoints(
    image: np.ndarray,
    points_xy: np.ndarray,
    color: tuple[int, int, int] = (255, 40, 40),
    radius: int = 4,
    edges: Iterable[tuple[int, int]] = (),
    numbered: bool = False,
) -> np.ndarray:
    """Draw points (N, 2) px, skipping NaN rows, with optional edges (index pairs) and numbers."""
    out = image.copy()
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    thickness = max(1, radius // 2)
    for a, b in edges:
        if np.isfinite(pts[[a, b]]).all():
            cv2.line(
                out,
                tuple(np.round(pts[a]).astype(int)),
                tuple(np.round(pts[b]).astype(int)),
                color,
                thickness,
                cv2.LINE_AA,
            )
    for i, p in enumerate(pts):
        if not np.isfinite(p).all():
            continue
        centre = tuple(np.round(p).astype(int))
        cv2.circle(out, centre, radius, color, -1, cv2.LINE_AA)
        cv2.circle(out, centre, radius, (0, 0, 0), 1, cv2.LINE_AA)
        if numbered:
            cv2.putText(
                out,
                str(i + 1),
                (centre[0] + radius, centre[1] - radius),
                cv2.FONT_HERSHEY_SIMPLEX,
                max(0.4, radius / 8),
                color,
                1,
                cv2.LINE_AA,
            )
    return out


def draw_polygons(
    image: np.ndarray,
    polygons: Iterable[tuple[str, np.ndarray | Sequence[np.ndarray]]],
    colors: dict[str, str] | None = None,
    alpha: float = 0.45,
    with_labels: bool = True,
) -> np.ndarray:
    """Fill (label, colony) pairs with their label colour, outline and name them; a colony is a
    ring (N, 2) px or a list of rings (parts and holes, even-odd: holes stay unfilled)."""
    out = image.copy()
    fill = image.copy()
    items = [
        (label, [ring] if isinstance(ring, np.ndarray) and ring.ndim == 2 else list(ring))
        for label, ring in polygons
    ]
    colors = colors or {}
    for label, rings in items:
        color = hex_to_rgb(colors.get(label, "#ff00ff"))
        pts = [np.round(np.asarray(r)).astype(np.int32) for r in rings]
        cv2.fillPoly(fill, pts, color, cv2.LINE_AA)  # one call over all rings: even-odd
    out = cv2.addWeighted(fill, alpha, out, 1 - alpha, 0)
    scale = max(0.35, image.shape[1] / 2000)
    for label, rings in items:
        if not rings:
            continue
        color = hex_to_rgb(colors.get(label, "#ff00ff"))
        pts = [np.round(np.asarray(r)).astype(np.int32) for r in rings]
        cv2.polylines(out, pts, True, color, max(1, image.shape[1] // 600), cv2.LINE_AA)
        if with_labels:
            x, y = pts[0].min(axis=0)
            cv2.putText(
                out,
                label,
                (int(x), max(int(y) - 3, 10)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
    return out
