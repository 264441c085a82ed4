"""Geometry of coral annotations: polygons, masks, CVAT run-length encoding, boxes.

Conventions (every function says which it uses):
- ``polygon_xy``: float array (N, 2) of pixel coordinates x, y in the image frame, where pixel
  (col, row) covers [col, col+1) x [row, row+1); CVAT and FiftyOne (after scaling) use this frame.
- ``mask``: bool array (H, W), ``frame_size=(width, height)``.
- ``xyxy``: [x_min, y_min, x_max, y_max]; for masks the max is exclusive unless said otherwise.
- :class:`PolygonWithHoles`: one exterior ring and any number of hole rings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError


@dataclass
class PolygonWithHoles:
    """A polygon in pixel coordinates: ``exterior`` (N, 2) and ``holes`` [(M, 2), ...]."""

    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)

    @property
    def area(self) -> float:
        """Area in px^2 (exterior minus holes, shoelace formula)."""
        return polygon_area(self.exterior) - sum(polygon_area(h) for h in self.holes)


def as_polygon_xy(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Convert any (N, 2)-like sequence of x, y to a float64 array (N, 2); raise on other shapes."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise QuadratsegError(f"a polygon must be a list of (x, y) points, got an array of shape {arr.shape}")
    return arr


def polygon_area(polygon_xy: np.ndarray) -> float:
    """Unsigned area of a simple ring (N, 2) in px^2 (shoelace)."""
    p = as_polygon_xy(polygon_xy)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _rasterize_even_odd(rings: Sequence[np.ndarray], frame_size: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies inside the rings under the even-odd rule, bool (H, W).

    A scanline fill: exact for the pixel-centre test (a rectangle from x=2 to x=6 covers
    columns 2..5), and holes given as extra rings are cut out by the same rule.
    """
    width, height = frame_size
    mask = np.zeros((height, width), dtype=bool)
    edges = []
    for ring in rings:
        r = as_polygon_xy(ring)
        if len(r) >= 3:
            edges.append(np.concatenate([r, np.roll(r, -1, axis=0)], axis=1))
    if not edges:
        return mask
    e = np.concatenate(edges)  # (E, 4): x0, y0, x1, y1
    e = e[e[:, 1] != e[:, 3]]  # horizontal edges never cross a scanline
    if not len(e):
        return mask
    row0 = max(int(np.floor(min(e[:, 1].min(), e[:, 3].min()))) - 1, 0)
    row1 = min(int(np.ceil(max(e[:, 1].max(), e[:, 3].max()))) + 1, height)
    if row1 <= row0:
        return mask
    yc = np.arange(row0, row1, dtype=np.float64)[:, None] + 0.5  # (R, 1) pixel-centre rows
    y0, y1 = e[None, :, 1], e[None, :, 3]
    crosses = ((y0 <= yc) & (yc < y1)) | ((y1 <= yc) & (yc < y0))
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = e[None, :, 0] + (yc - y0) * (e[None, :, 2] - e[None, :, 0]) / (y1 - y0)
    xs = np.where(crosses, xs, np.inf)
    xs.sort(axis=1)
    n_pairs = int(crosses.sum(axis=1).max()) // 2
    if n_pairs == 0:
        return mask
    xs = xs[:, : 2 * n_pairs]
    starts = np.ceil(xs[:, 0::2] - 0.5)
    ends = np.ceil(xs[:, 1::2] - 0.5)
    valid = np.isfinite(starts) & np.isfinite(ends)
    starts = np.clip(np.where(valid, starts, 0), 0, width).astype(np.int64)
    ends = np.clip(np.where(valid, ends, 0), 0, width).astype(np.int64)
    diff = np.zeros((row1 - row0, width + 1), dtype=np.int32)
    rows = np.broadcast_to(np.arange(row1 - row0)[:, None], starts.shape)
    keep = valid & (ends > starts)
    np.add.at(diff, (rows[keep], starts[keep]), 1)
    np.add.at(diff, (rows[keep], ends[keep]), -1)
    mask[row0:row1] = np.cumsum(diff, axis=1)[:, :width] > 0
    return mask


def polygons_to_mask(
    polygons: Sequence[PolygonWithHoles | np.ndarray], frame_size: tuple[int, int]
) -> np.ndarray:
    """Rasterize polygons (and their holes) into one bool mask (H, W).

    Args:
        polygons: rings (N, 2) or :class:`PolygonWithHoles`, pixel coordinates.
        frame_size: (width, height) of the image.

    Examples:
        >>> int(polygons_to_mask([np.array([[0, 0], [4, 0], [4, 2], [0, 2]])], (6, 3)).sum())
        8
    """
    width, height = frame_size
    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        rings = [poly.exterior, *poly.holes] if isinstance(poly, PolygonWithHoles) else [poly]
        mask |= _rasterize_even_odd(rings, frame_size)
    return mask


def polygon_to_mask(polygon_xy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Rasterize one ring (N, 2) into a bool mask (H, W); ``frame_size=(width, height)``."""
    return polygons_to_mask([as_polygon_xy(polygon_xy)], frame_size)


def mask_to_polygons(
    mask: np.ndarray, min_area: float = 4.0, tolerance: float = 0.0, _depth: int = 0
) -> list[PolygonWithHoles]:
    """Trace a bool mask (H, W) into polygons with holes, one per connected part.

    Args:
        mask: bool (H, W).
        min_area: parts and holes smaller than this many px^2 (specks) are dropped.
        tolerance: Douglas-Peucker simplification in px (0 keeps every contour vertex).

    Returns:
        Polygons in pixel coordinates, largest first. Boundaries are traced a quarter pixel
        inside the pixel edges (a lone pixel (c, r) becomes the square c+0.25..c+0.75), so
        :func:`polygons_to_mask` gives back exactly the same pixels.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if m.ndim != 2:
        raise QuadratsegError(f"mask must be 2-D (H, W), got shape {m.shape}")
    # Upsample x2 with nearest neighbour so contours can run along pixel edges, not centres.
    up = cv2.resize(m, (m.shape[1] * 2, m.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    up = cv2.copyMakeBorder(up, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]

    def to_xy(contour: np.ndarray) -> np.ndarray:
        c = contour[:, 0, :].astype(np.float64) - 1.0  # undo the border
        if tolerance > 0:
            c = cv2.approxPolyDP(c.astype(np.float32), tolerance * 2, True)[:, 0, :].astype(np.float64)
        # On the x2 grid the outer boundary of pixel k runs at 2k-0.5..2k+1.5; map back.
        return (c + 0.5) / 2.0

    results: list[PolygonWithHoles] = []
    for idx, (_next, _prev, child, parent) in enumerate(hierarchy):
        # RETR_CCOMP puts every outer boundary (islands inside holes too) at the top level.
        if parent != -1:
            continue
        exterior = to_xy(contours[idx])
        if len(exterior) < 3 or polygon_area(exterior) < min_area:
            continue
        holes = []
        if child != -1:
            # Trace each hole as the outline of its own (background) pixels, so that the hole
            # ring lies a quarter pixel inside the hole, like exteriors do.
            x, y, w, h = cv2.boundingRect(contours[idx])
            filled = np.zeros((h, w), dtype=np.uint8)
            cv2.drawContours(filled, [contours[idx] - np.array([x, y])], -1, 1, thickness=-1)
            hole_mask = (filled & (up[y : y + h, x : x + w] == 0)).astype(np.uint8)
            # Holes are 4-connected background (foreground is 8-connected): trace each one
            # alone, so two holes touching at a corner do not merge around foreground pixels.
            n, labels, stats, _ = cv2.connectedComponentsWithStats(hole_mask, connectivity=4)
            for k in range(1, n):
                hx, hy, hw, hh = stats[k, :4]
                component = (labels[hy : hy + hh, hx : hx + hw] == k).astype(np.uint8)
                component = cv2.copyMakeBorder(component, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
                hcs, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                for hc in hcs:
                    hole = to_xy(hc + np.array([x + hx - 1, y + hy - 1]))
                    if len(hole) >= 3 and polygon_area(hole) >= min_area:
                        holes.append(hole)
        results.append(PolygonWithHoles(exterior, holes))
    if results and _depth < 3:
        # A foreground pixel joined to its part only by a corner can end up inside a hole
        # outline; trace what the polygons miss as parts of their own so nothing is lost.
        missed = m.astype(bool) & ~polygons_to_mask(results, (m.shape[1], m.shape[0]))
        if missed.any():
            results.extend(mask_to_polygons(missed, min_area, tolerance, _depth + 1))
    results.sort(key=lambda p: -p.area)
    return results


def mask_to_xyxy(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box of a bool mask (H, W) as (x_min, y_min, x_max, y_max), max exclusive; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def polygon_to_xyxy(polygon_xy: np.ndarray) -> tuple[float, float, float, float]:
    """Box of a ring (N, 2) as (x_min, y_min, x_max, y_max) in pixel coordinates."""
    p = as_polygon_xy(polygon_xy)
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def mask_to_cvat_rle(mask: np.ndarray, xyxy: Sequence[float] | None = None) -> list[int]:
    """Encode a bool mask (H, W) as CVAT's mask ``points``: runs inside a box, then the box.

    The runs cover the box row-major and start with a background run (possibly 0); the last
    four numbers are ``left, top, right, bottom`` with right/bottom inclusive. Equal, number
    for number, to ``cvat_sdk.masks.encode_mask``.

    Args:
        mask: bool (H, W).
        xyxy: box (x_min, y_min, x_max, y_max) with exclusive max, floored/ceiled to integers;
            default: the tight box of the mask (1 x 1 at the origin when the mask is empty).
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != np.bool_:
        raise QuadratsegError(f"mask must be a bool array (H, W), got {m.dtype} {m.shape}")
    if xyxy is None:
        box = mask_to_xyxy(m)
        x1, y1, x2, y2 = box if box is not None else (0, 0, 1, 1)
    else:
        x1, y1 = int(np.floor(xyxy[0])), int(np.floor(xyxy[1]))
        x2, y2 = int(np.ceil(xyxy[2])), int(np.ceil(xyxy[3]))
        if not (0 <= x1 < x2 <= m.shape[1] and 0 <= y1 < y2 <= m.shape[0]):
            raise QuadratsegError(f"box {xyxy} is outside the {m.shape[1]}x{m.shape[0]} mask")
    flat = m[y1:y2, x1:x2].ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return [*runs, x1, y1, x2 - 1, y2 - 1]


def cvat_rle_to_mask(points: Sequence[float], frame_size: tuple[int, int]) -> np.ndarray:
    """Decode CVAT mask ``points`` (runs + inclusive box) into a bool mask (H, W).

    Raises:
        QuadratsegError: the box is outside ``frame_size=(width, height)`` or the runs do not
            fill the box.
    """
    if len(points) < 5:
        raise QuadratsegError(f"a CVAT mask needs runs and a 4-number box, got {len(points)} numbers")
    values = [int(v) for v in points]
    if any(float(a) != float(b) for a, b in zip(points, values, strict=True)):
        raise QuadratsegError("CVAT mask runs and box must be whole numbers")
    *runs, x1, y1, x2, y2 = values
    width, height = frame_size
    if not (0 <= x1 <= x2 < width and 0 <= y1 <= y2 < height):
        raise QuadratsegError(f"CVAT mask box {[x1, y1, x2, y2]} is outside the {width}x{height} image")
    box_w, box_h = x2 - x1 + 1, y2 - y1 + 1
    if sum(runs) != box_w * box_h:
        raise QuadratsegError(f"CVAT mask runs sum to {sum(runs)}, expected {box_w}x{box_h}={box_w * box_h}")
    values_per_run = np.arange(len(runs)) % 2 == 1
    crop = np.repeat(values_per_run, runs).reshape(box_h, box_w)
    mask = np.zeros((height, width), dtype=bool)
    mask[y1 : y2 + 1, x1 : x2 + 1] = crop
    return mask


def repair_polygon(polygon_xy: np.ndarray, min_area: float = 1.0) -> list[np.ndarray]:
    """Make a possibly invalid ring (self-crossing, repeated points) valid with shapely.

    A bow-tie becomes two rings; parts under ``min_area`` px^2 and rings with fewer than 3
    distinct points are dropped. Returns exterior rings (N, 2) without the closing point.
    Holes created by the repair are dropped; use :func:`mask_to_polygons` when holes matter.
    """
    from shapely.geometry import GeometryCollection, MultiPolygon, Polygon
    from shapely.validation import make_valid

    p = as_polygon_xy(polygon_xy)
    if len(np.unique(p, axis=0)) < 3:
        return []
    geom = Polygon(p)
    if not geom.is_valid:
        geom = make_valid(geom)
    parts: list[Polygon] = []
    stack = [geom]
    while stack:
        g = stack.pop()
        if isinstance(g, Polygon):
            parts.append(g)
        elif isinstance(g, MultiPolygon | GeometryCollection):
            stack.extend(g.geoms)
    rings = []
    for part in sorted(parts, key=lambda g: -g.area):
        if part.area < min_area:
            continue
        rings.append(np.asarray(part.exterior.coords, dtype=np.float64)[:-1])
    return rings
