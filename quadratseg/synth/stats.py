"""Image statistics that compare synthetic photos with real ones (colour, texture, cast).

Each photo is first scaled so that its shorter side is :data:`STATS_SIDE` px (INTER_AREA), so
that scale-dependent figures (edges, spectra) compare photos of any size. The figures:

- ``L_mean``, ``L_std``, ``a_mean``, ``b_mean``: CIELAB (L* 0..100, a*, b* about -128..127) of all pixels;
- ``L_p5``, ``L_p95``: 5th and 95th percentiles of L*;
- ``saturation``: mean HSV saturation (0..1);
- ``cast_gb_r``: (mean G + mean B) / 2 over mean R (1: neutral; > 1: blue-green water);
- ``spectrum_slope``: slope of the radially averaged power spectrum of the grey image in log-log,
  over 4..96 cycles per image (natural photos: about -2; smooth blobs: steeper);
- ``edge_density``: share of pixels on Canny edges (grey, thresholds 60 / 150, after a 1 px blur).
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

STATS_SIDE = 384
STAT_NAMES = (
    "L_mean",
    "L_std",
    "L_p5",
    "L_p95",
    "a_mean",
    "b_mean",
    "saturation",
    "cast_gb_r",
    "spectrum_slope",
    "edge_density",
)


def to_stats_size(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) scaled so its shorter side is :data:`STATS_SIDE` px."""
    h, w = image_rgb.shape[:2]
    k = STATS_SIDE / min(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)


def spectrum_slope(grey: np.ndarray, f_lo: float = 4.0, f_hi: float = 96.0) -> float:
    """Log-log slope of the radially averaged power spectrum of a grey image (H, W) float.

    The central square crop is Hann-windowed; frequencies in cycles per image side.
    """
    h, w = grey.shape
    n = min(h, w)
    y0, x0 = (h - n) // 2, (w - n) // 2
    g = grey[y0 : y0 + n, x0 : x0 + n].astype(np.float64)
    g = (g - g.mean()) * np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fftshift(np.fft.fft2(g))) ** 2
    yy, xx = np.indices(power.shape)
    r = np.hypot(yy - n // 2, xx - n // 2).round().astype(int)
    radial = np.bincount(r.ravel(), power.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    f = np.arange(len(radial))
    keep = (f >= f_lo) & (f <= min(f_hi, n // 2 - 1)) & (radial > 0)
    slope, _ = np.polyfit(np.log(f[keep]), np.log(radial[keep]), 1)
    return float(slope)


def photo_stats(image_rgb: np.ndarray) -> dict[str, float]:
    """The statistics (see the module docstring) of one uint8 RGB photo (H, W, 3)."""
    img = to_stats_size(np.asarray(image_rgb, np.uint8))
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float64)
    big_l = lab[..., 0] * 100.0 / 255.0
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    rgb_mean = img.reshape(-1, 3).mean(axis=0)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (0, 0), 1.0), 60, 150)
    return {
        "L_mean": float(big_l.mean()),
        "L_std": float(big_l.std()),
        "L_p5": float(np.percentile(big_l, 5)),
        "L_p95": float(np.percentile(big_l, 95)),
        "a_mean": float(a.mean()),
        "b_mean": float(b.mean()),
        "saturation": float(hsv[..., 1].mean() / 255.0),
        "cast_gb_r": float((rgb_mean[1] + rgb_mean[2]) / 2 / max(rgb_mean[0], 1e-6)),
        "spectrum_slope": spectrum_slope(grey.astype(np.float64)),
        "edge_density": float((edges > 0).mean()),
    }


def summarize(stats: Iterable[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each statistic over photos."""
    rows = list(stats)
    return {
        k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in STAT_NAMES
    }


def distance(
    synthetic: dict[str, tuple[float, float]], real: dict[str, tuple[float, float]], scale: dict[str, float]
) -> dict[str, float]:
    """Per statistic, |mean synthetic - mean real| / ``scale`` (the tolerance unit of each figure)."""
    return {k: abs(synthetic[k][0] - real[k][0]) / scale[k] for k in STAT_NAMES}


def quadrat_fill(corners_xy: np.ndarray, photo_wh: tuple[int, int]) -> float:
    """How much of the photo the quadrat fills: its mean inner side (corners (4, 2) px, TL TR BR BL)
    over the photo's shorter side (the 7 CoralSCoP photos: 0.71).

    Examples:
        >>> quadrat_fill(np.array([[10, 10], [90, 10], [90, 90], [10, 90]]), (100, 120))
        0.8
    """
    c = np.asarray(corners_xy, dtype=np.float64)
    return float(np.linalg.norm(np.roll(c, -1, axis=0) - c, axis=1).mean() / min(photo_wh))
