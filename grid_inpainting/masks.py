"""Grid masks from the 117 ordered keypoints (9 rows x 13 columns, row-major, pixel coordinates).

The mask is drawn along the strings: a segment between every pair of horizontally or
vertically neighbouring intersections, extended from the outer intersections to the image
border (the strings run on to the frame). Missing keypoints (NaN) are interpolated from the
grid's other points through the homography of the template, or their segments are skipped;
a segment is never drawn to (0, 0).

Examples:
    >>> from quadratseg.keypoints import grid_template_xy
    >>> mask = grid_mask((grid_template_xy() * 512), (512, 512), line_width=6)
    >>> mask.dtype, mask.shape
    (dtype('bool'), (512, 512))
"""

from __future__ import annotations

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import GRID_COLS, GRID_ROWS, N_GRID, grid_neighbour_pairs, grid_template_xy
from quadratseg.warp import transform_points

# Chosen by measurement on the synthetic set (``python -m grid_inpainting.evaluate --widths``):
# at 1024 px, widths of 0.4 / 0.7 / 0.9 / 1.2 % of the side cover 54 / 91 / 98.3 / 99.95 % of
# the true string pixels (strings drawn ~5 px wide, blurred by the photo) with masks of
# 10 / 18 / 22 / 26 % of the image. 0.9 % is the knee; raise it for thicker strings.
DEFAULT_WIDTH_FRACTION = 0.009


def default_line_width(frame_size: tuple[int, int]) -> float:
    """Mask line width in px for an image of ``frame_size=(w, h)`` (8.6 px at 960, 17 px at 1920)."""
    return max(3.0, DEFAULT_WIDTH_FRACTION * max(frame_size))


def check_grid_keypoints(
    keypoints_xy: np.ndarray, frame_size: tuple[int, int], where: str = ""
) -> np.ndarray:
    """Return keypoints as float (117, 2) or raise saying what is wrong (count, shape, outside the image)."""
    kp = np.asarray(keypoints_xy, dtype=np.float64)
    prefix = f"{where}: " if where else ""
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise QuadratsegError(
            f"{prefix}grid keypoints must be an array (117, 2) of x, y; got shape {kp.shape}"
        )
    if kp.shape[0] != N_GRID:
        raise QuadratsegError(
            f"{prefix}expected {N_GRID} grid keypoints (9 x 13, row-major), got {kp.shape[0]}; "
            "give missing points as NaN (or null in JSON) instead of leaving them out"
        )
    w, h = frame_size
    ok = np.isfinite(kp).all(axis=1)
    tolerance = 0.05 * max(w, h)
    outside = ok & (
        (kp[:, 0] < -tolerance)
        | (kp[:, 0] > w + tolerance)
        | (kp[:, 1] < -tolerance)
        | (kp[:, 1] > h + tolerance)
    )
    if outside.any():
        idx = np.flatnonzero(outside)[:5].tolist()
        raise QuadratsegError(
            f"{prefix}keypoint(s) {[i + 1 for i in idx]} lie outside the {w}x{h} image "
            f"(e.g. {kp[idx[0]].round(1).tolist()}); were they made on an image of another size?"
        )
    return kp


def interpolate_missing(keypoints_xy: np.ndarray, rows: int = GRID_ROWS, cols: int = GRID_COLS) -> np.ndarray:
    """Fill NaN keypoints from the others: the template mapped by the homography of the present points.

    Needs at least 4 present points that are not all on one line; otherwise returns the input.
    """
    kp = np.asarray(keypoints_xy, dtype=np.float64).copy()
    ok = np.isfinite(kp).all(axis=1)
    if ok.all() or ok.sum() < 4:
        return kp
    template = grid_template_xy(rows, cols)
    h, _ = cv2.findHomography(template[ok], kp[ok], 0)
    if h is None or not np.isfinite(h).all():
        return kp
    kp[~ok] = transform_points(template[~ok], h)
    return kp


def _border_extensions(
    kp: np.ndarray, rows: int, cols: int, frame_size: tuple[int, int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Segments from the outer intersections to the image border, along each string."""
    w, h = frame_size
    grid = kp.reshape(rows, cols, 2)
    far = 2.0 * max(w, h)
    segments = []

    def extend(inner: np.ndarray, outer: np.ndarray) -> None:
        if not (np.isfinite(inner).all() and np.isfinite(outer).all()):
            return
        direction = outer - inner
        norm = np.linalg.norm(direction)
        if norm > 0:
            segments.append((outer, outer + direction / norm * far))

    for i in range(rows):
        extend(grid[i, 1], grid[i, 0])
        extend(grid[i, -2], grid[i, -1])
    for j in range(cols):
        extend(grid[1, j], grid[0, j])
        extend(grid[-2, j], grid[-1, j])
    return segments


def grid_mask(
    keypoints_xy: np.ndarray,
    frame_size: tuple[int, int],
    line_width: float | None = None,
    dilation: int = 0,
    missing: str = "interpolate",
    to_border: bool = True,
    rows: int = GRID_ROWS,
    cols: int = GRID_COLS,
) -> np.ndarray:
    """Bool mask (H, W) of the grid strings.

    Args:
        keypoints_xy: (rows*cols, 2) intersections in pixels, row-major; NaN where missing.
        frame_size: (width, height) of the image.
        line_width: stroke width in px (default: :func:`default_line_width`).
        dilation: extra px of dilation after drawing (0: none).
        missing: ``interpolate`` (fill NaN points from the grid) or ``skip`` (drop their segments).
        to_border: extend the outer strings to the image border.
    """
    if missing not in ("interpolate", "skip"):
        raise QuadratsegError(f"missing must be 'interpolate' or 'skip', got {missing!r}")
    kp = check_grid_keypoints(keypoints_xy, frame_size)
    if missing == "interpolate":
        kp = interpolate_missing(kp, rows, cols)
    width = float(line_width) if line_width is not None else default_line_width(frame_size)
    if width <= 0:
        raise QuadratsegError(f"line_width must be positive, got {width}")
    w, h = frame_size
    mask = np.zeros((h, w), dtype=np.uint8)
    segments = [(kp[a], kp[b]) for a, b in grid_neighbour_pairs(rows, cols)]
    if to_border:
        segments += _border_extensions(kp, rows, cols, frame_size)
    shift = 4
    thickness = max(1, round(width))
    for p, q in segments:
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            continue  # a missing point's segments are skipped, never drawn to (0, 0)
        p0 = tuple(int(v) for v in np.round((p - 0.5) * (1 << shift)))
        p1 = tuple(int(v) for v in np.round((q - 0.5) * (1 << shift)))
        cv2.line(mask, p0, p1, 1, thickness, cv2.LINE_8, shift)
    if dilation > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
        mask = cv2.dilate(mask, kernel)
    return mask.astype(bool)


def estimate_line_width(
    image: np.ndarray, keypoints_xy: np.ndarray, max_width: float = 60.0, samples_per_segment: int = 3
) -> float:
    """Estimate the string width in px from the image: the median width of the bright/dark ridge
    across the strings, sampled at a few points of each segment.

    The profile perpendicular to a segment is compared with its ends (the background); the
    width is the run of samples that differ from the background by more than half the peak.
    """
    gray = (
        cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if image.ndim == 3
        else image.astype(np.float32)
    )
    kp = np.asarray(keypoints_xy, dtype=np.float64)
    h, w = gray.shape
    half = int(max_width)
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    widths = []
    for a, b in grid_neighbour_pairs():
        p, q = kp[a], kp[b]
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            continue
        d = q - p
        length = np.linalg.norm(d)
        if length < 4:
            continue
        normal = np.array([-d[1], d[0]]) / length
        for t in np.linspace(0.25, 0.75, samples_per_segment):
            centre = p + t * d - 0.5
            xs = centre[0] + offsets * normal[0]
            ys = centre[1] + offsets * normal[1]
            if xs.min() < 0 or ys.min() < 0 or xs.max() > w - 1 or ys.max() > h - 1:
                continue
            profile = cv2.remap(
                gray, xs.astype(np.float32)[None, :], ys.astype(np.float32)[None, :], cv2.INTER_LINEAR
            )[0]
            background = np.median(np.r_[profile[: half // 2], profile[-half // 2 :]])
            contrast = np.abs(profile - background)
            peak = contrast[half - 3 : half + 4].max()
            if peak < 8:
                continue
            above = contrast > peak / 2
            left = half
            while left > 0 and above[left - 1]:
                left -= 1
            right = half
            while right < len(above) - 1 and above[right + 1]:
                right += 1
            widths.append(right - left + 1)
    if not widths:
        raise QuadratsegError("could not measure the string width: no contrasted string found along the grid")
    return float(np.median(widths))
