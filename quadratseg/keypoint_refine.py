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
EDGE_SEGMENTS = 12  # a side is cut into this many pieces, each averaged along the side
EDGE_SNR = 4.0  # an edge of a piece's mean profile stands this many noise units above the profile's
SUPPORT_WEIGHT = 0.25  # choosing a side's edge: a segment more on a line outweighs 1/48 of the radius nearer
MIN_EDGE_NOISE = 0.5  # gray levels per px: the noise floor of a flat (rendered) profile
# and this many robust standard deviations of the reef's own mean-profile gradients: real reef texture is
# correlated over many pixels, so pixel noise alone lets texture edges through (calibrated with
# bench_grid.py --frame-check: the largest value that confirms the 7 real frames at their hand corners)
REEF_EDGE_SNR = 2.8
MIN_TEXTURE_RADIUS = 5  # px: the least band half-width (a quadrat side of 200 px) to measure texture in


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


def _side_view(canvas: np.ndarray, side: int) -> np.ndarray:
    """The canvas turned so that ``side`` (0 top, 1 right, 2 bottom, 3 left) is at the top: rows run
    across the side (the interior below), columns along it."""
    return np.rot90(canvas, k=side)  # rot90 k times counter-clockwise: side k comes to the top


def _view_to_canvas(points_view: np.ndarray, side: int, n: int) -> np.ndarray:
    """Points (N, 2) of :func:`_side_view` back to canvas coordinates (the canvas is square, side n)."""
    pts = np.asarray(points_view, dtype=np.float64).reshape(-1, 2)
    for _ in range(side % 4):  # undo one counter-clockwise turn: (x, y) -> (n - y, x)
        pts = np.stack([n - pts[:, 1], pts[:, 0]], axis=1)
    return pts


def _parabolic_peak(values: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Sub-sample offsets (in [-0.5, 0.5]) of the peaks at indices ``k`` of the rows of ``values``."""
    k = np.asarray(k)
    out = np.zeros(len(k))
    inner = (k > 0) & (k < values.shape[1] - 1)
    rows = np.flatnonzero(inner)
    left, mid, right = values[rows, k[inner] - 1], values[rows, k[inner]], values[rows, k[inner] + 1]
    denom = left - 2 * mid + right
    safe = np.abs(denom) > 1e-9
    out[rows[safe]] = np.clip(0.5 * (left[safe] - right[safe]) / denom[safe], -0.5, 0.5)
    return out


def reef_gradient_sd(
    view: np.ndarray, starts: np.ndarray, length: int, pad: int, radius: int, valid: np.ndarray | None = None
) -> float:
    """Robust standard deviation (1.4826 x median absolute value) of the gradients across the side of the
    pieces' mean profiles over the reef just inside the search band (rows ``pad + radius + 2`` to
    ``pad + 3 * radius + 4`` of :func:`_side_view`, where no frame edge can lie); 0 where no piece has
    those rows inside the photo."""
    lo, hi = pad + radius + 2, min(pad + 3 * radius + 4, view.shape[0])
    if hi - lo < 3:
        return 0.0
    rows = view[lo:hi].astype(np.float64)
    keep = [a for a in starts if valid is None or bool(valid[lo:hi, a : a + length].all())]
    if not keep:
        return 0.0
    profiles = np.stack([rows[:, a : a + length].mean(axis=1) for a in keep])
    return 1.4826 * float(np.median(np.abs(profiles[:, 2:] - profiles[:, :-2]) / 2.0))


def side_edge_candidates(
    view: np.ndarray,
    pad: int,
    size: int,
    radius: int,
    segments: int = EDGE_SEGMENTS,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, list[np.ndarray], float, list[np.ndarray]]:
    """Straight-edge candidates across one side of the quadrat, segment by segment.

    The middle 76 % of the side (``view``: :func:`_side_view`, the side's expected edge at row ``pad``) is
    cut into ``segments`` pieces; each piece's mean profile across the side (rows ``pad - radius - 1`` to
    ``pad + radius + 1``, ``pad >= radius + 3``) averages texture away while a straight edge along the
    side keeps its full step.
    Candidates are the local maxima of the profile's absolute gradient that stand ``EDGE_SNR`` noise
    units above it (either polarity: a bar may be brighter or darker than the reef, a part of the side
    either). A candidate is *strong* where it also stands ``REEF_EDGE_SNR`` robust standard deviations
    of the reef's own gradients (the smaller of :func:`reef_gradient_sd`, just inside the band, and the
    band's inner half's): on a real reef the pieces' mean profiles keep texture edges far above the
    pixel noise, and a line through such edges on half the pieces would pass for a frame's side; the
    frame check counts strong candidates only, the line's place is chosen from all of them.

    ``valid`` (the view's shape, bool): pixels inside the photo; a segment reaching outside it has no
    candidate (the photo's own border is a straight edge too).

    Returns:
        (segment centres along the side (S,) px, per segment an array of candidate rows (pixel-corner,
        across the side, sub-pixel), the side's bar coherence: the median correlation of the segments'
        mean profiles with their median profile, about 1 along a bar (its stripes and edges run along the
        side), low over reef texture, and per segment which candidates are strong (bool arrays)).
    """
    lo, hi = pad - radius - 1, pad + radius + 2  # one row more each side: a peak at the radius is a peak
    first, last = pad + int(0.12 * size), pad + int(0.88 * size)
    length = max((last - first) // segments, 4)
    starts = np.arange(first, last - length + 1, length)
    strip = view[lo - 1 : hi + 1].astype(np.float64)
    profiles = np.stack([strip[:, a : a + length].mean(axis=1) for a in starts])  # (S, rows lo-1 .. hi)
    inside = (
        np.ones(len(starts), dtype=bool)
        if valid is None
        else np.array([bool(valid[lo - 1 : hi + 1, a : a + length].all()) for a in starts])
    )
    z = profiles - profiles.mean(axis=1, keepdims=True)
    z /= z.std(axis=1, keepdims=True) + 1e-6
    typical = np.median(z[inside], axis=0) if inside.any() else np.zeros(z.shape[1])
    typical = (typical - typical.mean()) / (typical.std() + 1e-6)
    coherence = float(np.median(np.where(inside, (z * typical).mean(axis=1), 0.0)))
    grad = np.abs(profiles[:, 2:] - profiles[:, :-2]) / 2.0  # at rows lo .. hi-1
    # the noise of a piece's mean gradient: the photo's pixel noise along the side, averaged over the piece
    pixel_noise = 1.4826 * float(np.median(np.abs(np.diff(strip, axis=1)))) / np.sqrt(2)
    noise = max(pixel_noise / np.sqrt(2 * length), MIN_EDGE_NOISE)
    # the reef's own texture: the smaller of its gradients just inside the band and in the band's inner
    # half (a narrow band holding a blurred frame edge would take the edge itself for texture)
    # (a band of a few rows holds too few of the reef's: a string or the edge itself would be taken for
    # its texture, so a small photo's quadrat keeps every edge)
    reef_sd = 0.0
    if inside.any() and radius >= MIN_TEXTURE_RADIUS:
        reef_sd = min(
            reef_gradient_sd(view, starts, length, pad, radius, valid),
            1.4826 * float(np.median(grad[inside][:, pad + 2 - lo :])),
        )
    strong_above = max(EDGE_SNR * noise, REEF_EDGE_SNR * reef_sd)
    peak = np.zeros_like(grad, dtype=bool)
    peak[:, 1:-1] = (grad[:, 1:-1] > grad[:, :-2]) & (grad[:, 1:-1] >= grad[:, 2:])
    peak &= (grad >= EDGE_SNR * noise) & inside[:, None]
    candidates, strong = [], []
    for i in range(len(starts)):
        k = np.flatnonzero(peak[i])
        candidates.append(lo + k + _parabolic_peak(grad[i : i + 1].repeat(len(k), 0), k) + 0.5)
        strong.append(grad[i, k] >= strong_above)
    return starts + length / 2.0, candidates, coherence, strong


def best_side_line(
    centres: np.ndarray,
    candidates: list[np.ndarray],
    expected_row: float,
    tolerance_px: float = 1.5,
    radius_px: float = 10.0,
) -> tuple[np.ndarray | None, float]:
    """The straight edge of one side: (row = a + b * along as (a, b), share of segments on it).

    Every line through two candidates of different segments is scored by the share of segments with a
    candidate within ``tolerance_px`` of it. Of the lines on at least ``MIN_EDGE_INLIERS`` of the
    segments, the one nearest ``expected_row`` over the side (the larger distance at its two ends) is
    taken, less ``SUPPORT_WEIGHT * radius_px`` per share of segments on it (a bar has several straight
    edges: the tube's, a strip's, tape; the model's corners say which); with none that well supported,
    the best supported one and its share. (None, 0) without two segments holding a candidate.
    """
    pts = [(c, r) for c, rows in zip(centres, candidates, strict=True) for r in rows]
    if len({c for c, _ in pts}) < 2:
        return None, 0.0
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    seg = np.searchsorted(np.unique(xs), xs)
    ends = np.array([centres[0], centres[-1]], dtype=np.float64)
    i, j = np.triu_indices(len(xs), k=1)
    keep = xs[i] != xs[j]
    i, j = i[keep], j[keep]
    slope = (ys[j] - ys[i]) / (xs[j] - xs[i])
    intercept = ys[i] - slope * xs[i]
    residual = np.abs(intercept[:, None] + slope[:, None] * xs[None, :] - ys[None, :]) <= tolerance_px
    n_seg = len(centres)
    support = np.array([len(np.unique(seg[r])) for r in residual]) / n_seg
    off = np.abs(intercept[:, None] + slope[:, None] * ends[None, :] - expected_row).max(axis=1)
    good = support >= MIN_EDGE_INLIERS
    score = np.where(good, off - SUPPORT_WEIGHT * radius_px * support, np.inf) if good.any() else -support
    best = int(np.argmin(score))
    on = residual[best]
    if on.sum() >= 2:  # least squares through the candidates on the line
        b, a = np.polyfit(xs[on], ys[on], 1)
        return np.array([a, b]), float(support[best])
    return np.array([intercept[best], slope[best]]), float(support[best])


def _edge_samples(
    view: np.ndarray, line: np.ndarray, pad: int, size: int, window: float, chunk: int
) -> np.ndarray:
    """Edge points (N, 2) in view px along one side: every ``chunk`` px, the strongest gradient (either
    polarity) within ``window`` px of the side's straight edge ``line`` (row = a + b * along), sub-pixel."""
    along = np.arange(pad + int(0.12 * size), pad + int(0.88 * size) - chunk + 1, chunk)
    centre = along + chunk / 2.0
    expected = line[0] + line[1] * centre
    w = int(np.ceil(window)) + 1
    base = np.floor(expected).astype(int) - w  # rows base .. base + 2w
    n = view.shape[0]
    if len(along) < 3 or base.min() < 1 or base.max() + 2 * w + 1 >= n:
        return np.zeros((0, 2))
    offsets = np.arange(-1, 2 * w + 2)
    rows = base[:, None] + offsets[None, :]  # (chunks, 2w + 3)
    cols = along[:, None] + np.arange(chunk)[None, :]
    profiles = np.stack([view[rows[c]][:, cols[c]].mean(axis=1) for c in range(len(along))])
    grad = np.abs(profiles[:, 2:] - profiles[:, :-2]) / 2.0  # at rows base .. base + 2w
    position = base[:, None] + np.arange(2 * w + 1)[None, :] + 0.5
    grad = np.where(np.abs(position - expected[:, None]) <= window, grad, -1.0)
    k = np.argmax(grad, axis=1)
    y = base + k + _parabolic_peak(grad, k) + 0.5
    strong = grad[np.arange(len(k)), k] > 0
    return np.stack([centre, y], axis=1)[strong]


def _intersect(l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
    p = np.cross(l1, l2)
    return p[:2] / p[2] if abs(p[2]) > 1e-12 else np.array([np.nan, np.nan])


def _side_line(
    view: np.ndarray, valid: np.ndarray, pad: int, size: int, radius: int, chunk: int
) -> tuple[np.ndarray | None, float, float]:
    """The inner frame edge of one side in view px (row = a + b * along as (a, b), or None), how well it
    is supported (the smaller of the share of the side's segments on the line, :func:`best_side_line`,
    and the bar coherence, :func:`side_edge_candidates`), and how well the photo confirms a frame's
    side there: the same for the best line through the segments' strong candidates only. The line is
    then refitted, sub-pixel, to the strongest gradient within ``STRAIGHT_EDGE_PX + 0.5`` of it every
    ``chunk`` px when at least ``MIN_EDGE_INLIERS`` of those samples lie within ``STRAIGHT_EDGE_PX`` of
    the refit."""
    centres, candidates, coherence, strong = side_edge_candidates(view, pad, size, radius, valid=valid)
    coarse, share = best_side_line(centres, candidates, float(pad), radius_px=float(radius))
    if coarse is None:
        return None, 0.0, 0.0
    share = min(share, max(coherence, 0.0))
    strong_rows = [rows[keep] for rows, keep in zip(candidates, strong, strict=True)]
    _, evidence = best_side_line(centres, strong_rows, float(pad), radius_px=float(radius))
    evidence = min(evidence, max(coherence, 0.0))
    samples = _edge_samples(view, coarse, pad, size, STRAIGHT_EDGE_PX + 0.5, chunk)
    if len(samples) >= 3:
        fine, inliers = _fit_line(samples, STRAIGHT_EDGE_PX)
        if inliers >= MIN_EDGE_INLIERS and np.isfinite(fine).all() and abs(fine[1]) > 1e-6:
            # a x + b y + c = 0 -> y = -(c + a x) / b
            return np.array([-fine[2] / fine[1], -fine[0] / fine[1]]), share, evidence
    return coarse, share, evidence


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

    ``side_straightness`` (top, right, bottom, left) is the share of each side's segments whose mean
    profile has a strong edge (:func:`side_edge_candidates`) on the side's straight line
    (:func:`best_side_line`), at most the bar's coherence: about 1 where the frame's
    straight edge runs along the whole side, over half where coral, tape or a camera mount hide parts of a
    real bar, below half where the corners are far from the frame and the segments' edges fall on texture.

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
    inside = warp_image(
        np.ones(image_rgb.shape[:2], np.uint8), to_canvas, canvas.shape[::-1], cv2.INTER_NEAREST
    )
    n = canvas.shape[0]
    lines, support, straight = [], [], np.zeros(4)
    for k in range(4):
        line, share, evidence = _side_line(
            _side_view(canvas, k), _side_view(inside, k) > 0, pad, size, radius, chunk_px
        )
        straight[k] = evidence
        support.append(share)
        if line is None:
            lines.append(np.full(3, np.nan))
            continue
        ends = np.array([[pad, line[0] + line[1] * pad], [pad + size, line[0] + line[1] * (pad + size)]])
        p, q = np.c_[_view_to_canvas(ends, k, n), np.ones(2)]
        lines.append(np.cross(p, q))
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
