"""Sub-pixel refinement of quadrat keypoints on the image evidence.

A keypoint model puts a point near its place; the photo says exactly where it is:

- a grid intersection is where two strings cross. In the *warped* frame the strings run nearly
  along the image axes, so inside a small window the column profile (mean over rows) peaks at
  the vertical string and the row profile at the horizontal one; the centroid of each peak is
  the crossing, to a fraction of a pixel (:func:`refine_grid_crossings`).
- a quadrat corner is the *inner* corner of the frame: where the inner edges of two bars meet.
  Each side of the quadrat is re-located as a straight line fitted to the strongest edge found
  across it near its predicted place, and the corners are where adjacent lines cross
  (:func:`refine_quadrat_corners`); hundreds of edge samples per side make it sub-pixel.

Both search within a bounded radius and return a per-point confidence (0..1); a point whose
evidence is too weak or lies beyond the radius keeps its input position and is flagged as not
refined. Frames: pixel-corner coordinates (pixel (c, r) covers [c, c+1) x [r, r+1)), as in
:mod:`quadratseg.warp`.

Examples:
    >>> import numpy as np
    >>> image = np.full((64, 64, 3), 60, np.uint8)
    >>> image[:, 30:32] = 230; image[20:22, :] = 230  # strings crossing at (31, 21)
    >>> refined = refine_grid_crossings(image, np.array([[28.0, 24.0]]), radius_px=8)
    >>> refined.points_xy.round(1).tolist(), refined.refined.tolist()
    ([[31.0, 21.0]], [True])
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from quadratseg.warp import quadrat_homography, transform_points, warp_image

MIN_RIDGE_SNR = 3.0  # a string's peak must stand this many noise units above its shoulders
MIN_EDGE_INLIERS = 0.5  # share of a side's edge samples on the fitted line
STRAIGHT_EDGE_PX = 1.0  # a frame side is a straight edge: its samples lie this close to its line


@dataclass
class Refinement:
    """Refined points (K, 2) px, whether each moved to image evidence, its confidence and shift."""

    points_xy: np.ndarray
    refined: np.ndarray  # (K,) bool; False: the input position was kept
    confidence: np.ndarray  # (K,) 0..1; 0 where not refined
    shift_px: np.ndarray  # (K,) distance moved, 0 where not refined
    side_straightness: np.ndarray | None = None  # corners: (4,) top, right, bottom, left (see below)


def _gray(image: np.ndarray) -> np.ndarray:
    """float32 (H, W) luminance of a uint8 RGB (H, W, 3) or gray (H, W) image."""
    if image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return image.astype(np.float32)


def ridge_position(profile: np.ndarray, half_width: int, polarity: float) -> tuple[float, float]:
    """Sub-pixel index of the strongest ridge of a 1-D ``profile`` and its signal-to-noise ratio.

    ``polarity`` +1 looks for a bright line, -1 for a dark one. The ridge's strength is its value
    above the higher of its two shoulders (``half_width + 2`` samples away); its position is the
    centroid of the profile above that shoulder level within ``half_width``. Index ``i`` is the
    centre of sample ``i`` (add 0.5 for pixel-corner coordinates). Returns (nan, 0) when there
    is no ridge.
    """
    p = polarity * np.asarray(profile, dtype=np.float64)
    n = len(p)
    gap = half_width + 2
    if n < 2 * gap + 1:
        return float("nan"), 0.0
    centre = p[gap : n - gap]
    shoulders = np.maximum(p[: n - 2 * gap], p[2 * gap :])
    strength = centre - shoulders
    k = int(np.argmax(strength)) + gap
    noise = 1.4826 * float(np.median(np.abs(np.diff(p)))) / np.sqrt(2) + 1e-6
    snr = float(strength[k - gap]) / noise
    lo, hi = max(k - half_width, 0), min(k + half_width + 1, n)
    base = max(p[max(k - gap, 0)], p[min(k + gap, n - 1)])
    weights = np.clip(p[lo:hi] - base, 0.0, None)
    if weights.sum() <= 0:
        return float("nan"), 0.0
    return float((weights * np.arange(lo, hi)).sum() / weights.sum()), snr


def _crossing(
    gray: np.ndarray, xy: np.ndarray, radius: int, half_width: int, polarity: float
) -> tuple[float, float, float]:
    """(x, y, snr) of the string crossing nearest ``xy`` within ``radius`` px (nan when none)."""
    h, w = gray.shape
    x0, y0 = int(np.floor(xy[0] - radius)), int(np.floor(xy[1] - radius))
    x1, y1 = int(np.ceil(xy[0] + radius)), int(np.ceil(xy[1] + radius))
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    patch = gray[y0:y1, x0:x1]
    if patch.shape[0] < 2 * half_width + 5 or patch.shape[1] < 2 * half_width + 5:
        return float("nan"), float("nan"), 0.0
    cx, snr_x = ridge_position(patch.mean(axis=0), half_width, polarity)
    cy, snr_y = ridge_position(patch.mean(axis=1), half_width, polarity)
    return x0 + cx + 0.5, y0 + cy + 0.5, min(snr_x, snr_y)


def refine_grid_crossings(
    warped_rgb: np.ndarray,
    points_xy: np.ndarray,
    radius_px: float,
    string_width_px: float = 3.0,
    polarity: float | None = None,
    min_snr: float = MIN_RIDGE_SNR,
    grid_shape: tuple[int, int] | None = None,
) -> Refinement:
    """Move grid points (K, 2) of a *warped* quadrat image to the crossing of their two strings.

    Args:
        warped_rgb: uint8 (H, W, 3) or (H, W) warped quadrat, strings roughly along the axes.
        points_xy: (K, 2) px, NaN rows stay NaN and unrefined.
        radius_px: search half-window; a crossing farther than this is not taken. About a
            quarter of the string spacing keeps the neighbouring strings out of the window.
        string_width_px: expected string width (the peak's half width is derived from it).
        polarity: +1 bright strings, -1 dark; None: decided by the points (the polarity
            whose crossings stand out more on most points).
        min_snr: weakest accepted peak, in noise units of the profile.
        grid_shape: (rows, cols) of row-major points: each refined point must then also lie on the
            straight strings fitted through its row's and its column's refined points (within
            ``max(1.5, string_width_px)`` px), which rejects a coral ridge taken for a string.
    """
    gray = _gray(warped_rgb)
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    radius = max(round(radius_px), 3)
    half_width = max(1, int(np.ceil(string_width_px / 2)))
    ok = np.isfinite(pts).all(axis=1)
    polarities = [polarity] if polarity is not None else [1.0, -1.0]
    results = {}
    for pol in polarities:
        found = np.full((len(pts), 3), np.nan)
        for i in np.flatnonzero(ok):
            found[i] = _crossing(gray, pts[i], radius, half_width, pol)
        results[pol] = found
    chosen = max(results, key=lambda pol: float(np.nanmedian(results[pol][:, 2])) if ok.any() else 0.0)
    found = results[chosen]
    shift = np.linalg.norm(found[:, :2] - pts, axis=1)
    good = ok & np.isfinite(shift) & (found[:, 2] >= min_snr) & (shift <= radius_px)
    if grid_shape is not None:
        good &= on_straight_strings(
            np.where(good[:, None], found[:, :2], np.nan), grid_shape, max(1.5, string_width_px)
        )
    out = pts.copy()
    out[good] = found[good, :2]
    confidence = np.where(good, np.clip(found[:, 2] / (4.0 * min_snr), 0.0, 1.0), 0.0)
    return Refinement(out, good, confidence, np.where(good, shift, 0.0))


def on_straight_strings(
    points_xy: np.ndarray, grid_shape: tuple[int, int], tolerance_px: float
) -> np.ndarray:
    """(K,) bool: each row-major grid point lies within ``tolerance_px`` of the straight lines fitted
    (robustly) through the other points of its row and of its column; False for NaN points and for
    points whose row or column has fewer than 3 points to fit."""
    rows, cols = grid_shape
    grid = np.asarray(points_xy, dtype=np.float64).reshape(rows, cols, 2)
    ok = np.zeros((rows, cols), dtype=bool)
    ok_row = np.zeros((rows, cols), dtype=bool)
    for lines, transpose in ((grid, False), (grid.transpose(1, 0, 2), True)):
        target = ok_row if not transpose else ok.T
        for i, line_pts in enumerate(lines):
            present = np.isfinite(line_pts).all(axis=1)
            if present.sum() < 3:
                continue
            line, _ = _fit_line(line_pts[present], tolerance_px)
            if not np.isfinite(line).all():
                continue
            residual = np.abs(line_pts[present] @ line[:2] + line[2])
            target[i, np.flatnonzero(present)] = residual <= tolerance_px
    return (ok & ok_row).ravel()


def _fit_line(points_xy: np.ndarray, tolerance_px: float, rounds: int = 3) -> tuple[np.ndarray, float]:
    """Robust line (a, b, c) with a x + b y + c = 0, |(a, b)| = 1, and its inlier share."""
    inliers = np.ones(len(points_xy), dtype=bool)
    line = np.array([np.nan, np.nan, np.nan])
    for _ in range(rounds):
        if inliers.sum() < 3:
            return np.array([np.nan, np.nan, np.nan]), 0.0
        p = points_xy[inliers]
        mean = p.mean(axis=0)
        _, _, vt = np.linalg.svd(p - mean)
        normal = vt[1]
        line = np.array([normal[0], normal[1], -float(normal @ mean)])
        residual = np.abs(points_xy @ line[:2] + line[2])
        inliers = residual <= max(tolerance_px, 2.5 * float(np.median(residual[inliers])))
    return line, float(inliers.mean())


def _edge_samples(canvas: np.ndarray, side: int, pad: int, size: int, radius: int, chunk: int) -> np.ndarray:
    """Edge points (N, 2) in canvas px across one side of the quadrat (0 top, 1 right, 2 bottom,
    3 left), searched within ``radius`` of where the side should be, in chunks of ``chunk`` px.

    The strongest gradient across the side is taken, with the polarity (interior darker or
    brighter than the frame) shared by most chunks of that side.
    """
    # put every side in the "top" orientation: rows across the side, the interior below
    view = np.rot90(canvas, k=side)  # rot90 k times counter-clockwise: side k comes to the top
    lo, hi = pad - radius, pad + radius + 1
    along = np.arange(pad + int(0.12 * size), pad + int(0.88 * size) - chunk + 1, chunk)
    if len(along) < 3 or lo < 1:
        return np.zeros((0, 2))
    strip = view[lo - 1 : hi + 1]  # rows lo-1 .. hi
    profiles = np.stack([strip[:, a : a + chunk].mean(axis=1) for a in along])  # (chunks, rows)
    grad = (profiles[:, 2:] - profiles[:, :-2]) / 2.0  # at rows lo .. hi-1
    signs = np.sign(grad[np.arange(len(grad)), np.argmax(np.abs(grad), axis=1)])
    sign = 1.0 if (signs >= 0).sum() >= (signs < 0).sum() else -1.0
    g = sign * grad
    k = np.argmax(g, axis=1)
    rows = k.astype(np.float64)
    inner = (k > 0) & (k < g.shape[1] - 1)
    left, mid, right = g[inner, k[inner] - 1], g[inner, k[inner]], g[inner, k[inner] + 1]
    denom = left - 2 * mid + right
    rows[inner] += np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    strong = g[np.arange(len(g)), k] > 0
    y = lo + rows + 0.5  # pixel-corner coordinate of the edge, across the side
    x = along + chunk / 2.0
    pts_view = np.stack([x, y], axis=1)[strong]
    # back from the rotated view to canvas coordinates (the canvas is square, side n)
    n = canvas.shape[0]
    for _ in range(side % 4):  # undo one counter-clockwise turn: (x, y) -> (n - y, x)
        pts_view = np.stack([n - pts_view[:, 1], pts_view[:, 0]], axis=1)
    return pts_view


def _intersect(l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    p = np.cross(l1, l2)
    return p[:2] / p[2] if abs(p[2]) > 1e-12 else np.array([np.nan, np.nan])


def refine_quadrat_corners(
    image_rgb: np.ndarray,
    corners_xy: np.ndarray,
    radius_px: float | None = None,
    chunk_px: int = 6,
    min_inliers: float = MIN_EDGE_INLIERS,
) -> Refinement:
    """Move the 4 corners TL, TR, BR, BL (4, 2) px of a raw photo to the frame's inner corners.

    The photo is warped with the given corners into a square of about the quadrat's size in
    pixels with a margin of ``radius_px``; each side's inner frame edge is found across the side
    within that margin and fitted as a line; corners are where adjacent lines cross, mapped
    back to the photo. A corner whose two lines are not both well supported (inlier share below
    ``min_inliers``) or that would move farther than ``radius_px`` keeps its input position.

    ``side_straightness`` (top, right, bottom, left) is the share of each side's edge samples within
    ``STRAIGHT_EDGE_PX`` of its fitted line: about 1 where the frame's straight edge runs along the
    side, below 0.25 where the corners are far from the frame and the samples fall on texture.

    Args:
        image_rgb: uint8 (H, W, 3) or (H, W) photo.
        corners_xy: (4, 2) TL, TR, BR, BL in photo pixels; all four are needed.
        radius_px: search distance across each side (default 2.5 % of the mean side length).
        chunk_px: edge samples are taken every ``chunk_px`` along a side, each the mean of that
            many columns.
        min_inliers: share of a side's samples that must lie on its line.
    """
    corners = np.asarray(corners_xy, dtype=np.float64).reshape(4, 2)
    unrefined = Refinement(corners.copy(), np.zeros(4, bool), np.zeros(4), np.zeros(4), np.zeros(4))
    if not np.isfinite(corners).all():
        return unrefined
    side = float(np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1).mean())
    radius_px = radius_px if radius_px is not None else max(4.0, 0.025 * side)
    size = max(round(side), 32)
    radius = int(np.ceil(radius_px))
    pad = radius + 3
    try:
        to_square = quadrat_homography(corners, (size, size))
    except ValueError:
        return unrefined
    to_canvas = np.array([[1, 0, pad], [0, 1, pad], [0, 0, 1]], dtype=np.float64) @ to_square
    canvas = warp_image(_gray(image_rgb), to_canvas, (size + 2 * pad, size + 2 * pad))
    lines, support, straight = [], [], np.zeros(4)
    for k in range(4):
        samples = _edge_samples(canvas, k, pad, size, radius, chunk_px)
        line, share = _fit_line(samples, 1.0) if len(samples) >= 3 else (np.full(3, np.nan), 0.0)
        lines.append(line)
        support.append(share)
        if np.isfinite(line).all():
            straight[k] = float((np.abs(samples @ line[:2] + line[2]) <= STRAIGHT_EDGE_PX).mean())
    # corner i lies on sides i-1 and i (TL: left + top, TR: top + right, ...)
    out = corners.copy()
    refined = np.zeros(4, dtype=bool)
    confidence = np.zeros(4)
    shift = np.zeros(4)
    back = np.linalg.inv(to_canvas)
    for i in range(4):
        a, b = (i - 1) % 4, i
        if min(support[a], support[b]) < min_inliers or not (
            np.isfinite(lines[a]).all() and np.isfinite(lines[b]).all()
        ):
            continue
        point = transform_points(_intersect(lines[a], lines[b])[None], back)[0]
        moved = float(np.linalg.norm(point - corners[i]))
        if not np.isfinite(moved) or moved > radius_px:
            continue
        out[i], refined[i], shift[i] = point, True, moved
        confidence[i] = min(support[a], support[b])
    return Refinement(out, refined, confidence, shift, straight)
