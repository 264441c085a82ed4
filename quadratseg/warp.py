"""Perspective warp of a quadrat from its 4 corners (image and points).

Frames: *image* pixels (x right, y down, pixel (c, r) covers [c, c+1) x [r, r+1)) and *warped*
pixels of an ``output_size=(width, height)`` image in which the quadrat's TL, TR, BR, BL
corners land on (0, 0), (w, 0), (w, h), (0, h). Homographies map image -> warped and act on
pixel coordinates in that convention; :func:`warp_image` converts to OpenCV's pixel-centre
convention internally so image and points stay consistent to the sub-pixel.

Examples:
    >>> corners = np.array([[10, 10], [90, 12], [95, 80], [5, 85]], float)
    >>> H = quadrat_homography(corners, (100, 100))
    >>> np.allclose(transform_points(corners, H), [[0, 0], [100, 0], [100, 100], [0, 100]])
    True
"""

from __future__ import annotations

import cv2
import numpy as np

from quadratseg.errors import DegenerateQuadrilateralError

DEFAULT_WARP_SIZE = 1920
"""Default side in px of a warped quadrat everywhere: what annotators label in the bridge and what
the YOLO recipe trains at. A consumer takes the side from its model's card (``warp_size``) when the
card has one; tests and the demo pass small sizes explicitly."""


def check_quadrilateral(corners_xy: np.ndarray, min_area: float = 16.0) -> None:
    """Refuse corners that cannot define a warp.

    Args:
        corners_xy: (4, 2) TL, TR, BR, BL in image pixels.
        min_area: smallest acceptable quadrilateral area, px^2.

    Raises:
        DegenerateQuadrilateralError: missing (NaN) corners, collinear or repeated corners,
            self-crossing or wrongly ordered corners, a non-convex or tiny quadrilateral.
    """
    c = np.asarray(corners_xy, dtype=np.float64)
    if c.shape != (4, 2):
        raise DegenerateQuadrilateralError(f"a quadrat needs 4 corners (4, 2), got shape {c.shape}")
    if not np.isfinite(c).all():
        missing = [
            name
            for name, ok in zip(("TL", "TR", "BR", "BL"), np.isfinite(c).all(axis=1), strict=True)
            if not ok
        ]
        raise DegenerateQuadrilateralError(f"corner(s) {', '.join(missing)} are missing; cannot warp")
    edges = np.roll(c, -1, axis=0) - c
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    scale = max(float(np.abs(edges).max()), 1e-9) ** 2
    if np.any(np.abs(cross) <= 1e-6 * scale):
        raise DegenerateQuadrilateralError(f"corners {c.round(1).tolist()} are collinear or repeated")
    if not (np.all(cross > 0) or np.all(cross < 0)):
        raise DegenerateQuadrilateralError(
            f"corners {c.round(1).tolist()} cross each other or make a non-convex shape; "
            "they must be TL, TR, BR, BL around the quadrat"
        )
    if np.all(cross < 0):
        raise DegenerateQuadrilateralError(
            f"corners {c.round(1).tolist()} run counter-clockwise; the order must be TL, TR, BR, BL "
            "(clockwise on the image)"
        )
    x, y = c[:, 0], c[:, 1]
    area = abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0
    if area < min_area:
        raise DegenerateQuadrilateralError(f"the quadrilateral area {area:.1f} px^2 is below {min_area}")


def warped_size(width_px: int, aspect: float = 1.0) -> tuple[int, int]:
    """(width, height) px of a warped quadrat ``width_px`` wide whose sides are in ratio
    ``aspect`` = width / height (1 for square quadrats, 2 for a 1 x 0.5 m one).

    Examples:
        >>> warped_size(1000, 2.0)
        (1000, 500)
    """
    if not aspect > 0:
        raise ValueError(f"the quadrat aspect (width / height) must be positive, got {aspect}")
    return int(width_px), max(1, round(width_px / aspect))


def quadrat_homography(corners_xy: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Homography (3, 3) from image pixels to warped pixels (see module docstring).

    Args:
        corners_xy: (4, 2) TL, TR, BR, BL in image pixels; checked by :func:`check_quadrilateral`.
        output_size: (width, height) of the warped image.
    """
    check_quadrilateral(corners_xy)
    w, h = output_size
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    return cv2.getPerspectiveTransform(np.asarray(corners_xy, np.float32), dst.astype(np.float32)).astype(
        np.float64
    )


def transform_points(points_xy: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Apply a homography to points (N, 2); NaN rows stay NaN."""
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p).all(axis=1)
    if ok.any():
        hom = np.c_[p[ok], np.ones(ok.sum())] @ np.asarray(homography, dtype=np.float64).T
        out[ok] = hom[:, :2] / hom[:, 2:3]
    return out


def _centre_convention(homography: np.ndarray) -> np.ndarray:
    """The same mapping expressed on pixel-centre indices (OpenCV's convention)."""
    to_corner = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], dtype=np.float64)
    to_centre = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]], dtype=np.float64)
    return to_centre @ homography @ to_corner


def warp_image(
    image: np.ndarray,
    homography: np.ndarray,
    output_size: tuple[int, int],
    interpolation: int = cv2.INTER_LINEAR,
    border_value: float | tuple[float, ...] = 0,
) -> np.ndarray:
    """Warp an image (H, W[, C]) with an image->output homography into ``output_size=(w, h)``."""
    return cv2.warpPerspective(
        image,
        _centre_convention(homography),
        tuple(int(v) for v in output_size),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def warp_quadrat(
    image: np.ndarray, corners_xy: np.ndarray, output_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Crop and rectify the quadrat: returns (warped image (h, w[, C]), homography image->warped).

    Keep the homography to map points back with ``transform_points(p, np.linalg.inv(H))``.
    """
    homography = quadrat_homography(corners_xy, output_size)
    return warp_image(image, homography, output_size), homography


def band_outside_quadrat(
    shape_hw: tuple[int, int], corners_xy: np.ndarray, near: float, far: float
) -> np.ndarray:
    """Pixels (H, W) bool of an image whose centres lie outside the quadrat by more than ``near`` and
    at most ``far`` of its side: the frame's bars and what lies beyond them, as bands around it.

    The distance is measured in the quadrat's own plane, the quadrat its unit square (the warp of
    :func:`quadrat_homography`), so a bar of the frame is a band of one width however the camera looked
    at it: the largest of a pixel's distances beyond the four sides (a square-cornered band), beyond
    the left and right sides as a share of the quadrat's width, beyond the top and bottom of its
    height. Pixels on the far side of the camera's horizon of that plane are never in a band.

    Args:
        shape_hw: (height, width) of the image.
        corners_xy: (4, 2) TL, TR, BR, BL in image pixels (pixel-corner coordinates).
        near: the band's inner distance from the quadrat, a share of its side, ``0 <= near < far``.
        far: the band's outer distance from the quadrat, a share of its side.

    Raises:
        ValueError: ``near`` or ``far`` out of order or negative.

    Examples:
        >>> square = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
        >>> band = band_outside_quadrat((40, 40), square, 0.0, 0.25)  # 5 px beyond each side
        >>> int(band.sum()), bool(band[20, 32]), bool(band[20, 36]), bool(band[20, 20])
        (500, True, False, False)
    """
    if not 0.0 <= near < far:
        raise ValueError(f"a band needs 0 <= near < far (shares of the side), got near={near}, far={far}")
    c = np.asarray(corners_xy, dtype=np.float64).reshape(4, 2)
    homography = quadrat_homography(c, (1, 1))
    if (homography @ np.r_[c.mean(axis=0), 1.0])[2] < 0:  # the quadrat's side of the horizon: w > 0
        homography = -homography
    h, w = shape_hw
    x = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    y = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    m = homography.astype(np.float32)
    den = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    ahead = den > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / den
        v = (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / den
    beyond = np.maximum(np.maximum(-u, u - 1.0), np.maximum(-v, v - 1.0))
    return ahead & (beyond > near) & (beyond <= far)
