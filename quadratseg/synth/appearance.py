"""Textures of the synthetic reef: seabed, coral colonies by genus, and the photo's degradations.

Everything is a small pure function of a ``numpy.random.Generator`` and sizes, returning
float32 RGB images in 0..255 (H, W, 3) or masks, so a scene is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class GenusLook:
    """How a genus looks: two colours (RGB), a surface pattern, its frequency, and its outline."""

    base: tuple[int, int, int]
    accent: tuple[int, int, int]
    pattern: str
    frequency: float
    lobes: float  # 0 = round (massive), 1 = deeply lobed (branching)
    size: float  # typical radius as a fraction of the quadrat side


# One look per finegrained genus: colour and pattern differ so that models can learn them.
GENUS_LOOKS: dict[str, GenusLook] = {
    "Acanthastrea": GenusLook((150, 105, 85), (85, 140, 80), "cells", 6, 0.25, 0.06),
    "Acropora": GenusLook((190, 170, 120), (120, 95, 70), "spots", 10, 0.9, 0.09),
    "Astreopora": GenusLook((175, 140, 105), (115, 85, 65), "spots", 5, 0.3, 0.07),
    "Atrea": GenusLook((145, 135, 75), (85, 75, 45), "meander", 7, 0.3, 0.06),
    "Fungia": GenusLook((205, 185, 150), (145, 115, 95), "radial", 36, 0.1, 0.04),
    "Goniastrea": GenusLook((165, 155, 65), (95, 85, 35), "cells", 10, 0.2, 0.07),
    "Leptastrea": GenusLook((115, 90, 125), (65, 55, 90), "spots", 12, 0.3, 0.05),
    "Merulinidae": GenusLook((115, 145, 120), (65, 90, 80), "meander", 11, 0.35, 0.08),
    "Millepora": GenusLook((215, 195, 115), (185, 160, 85), "smooth", 3, 0.7, 0.08),
    "Montastrea": GenusLook((135, 100, 65), (85, 65, 45), "cells", 4, 0.2, 0.07),
    "Montipora": GenusLook((125, 75, 105), (185, 140, 165), "stripes", 8, 0.6, 0.09),
    "Other": GenusLook((95, 100, 95), (55, 60, 55), "noise", 4, 0.5, 0.06),
    "Pavona/Leptoseris": GenusLook((155, 120, 55), (105, 75, 35), "stripes", 15, 0.45, 0.08),
    "Pocillopora": GenusLook((195, 115, 130), (135, 75, 90), "spots", 15, 0.75, 0.06),
    "Porites": GenusLook((175, 155, 85), (150, 125, 65), "smooth", 8, 0.15, 0.11),
    "Psammocora": GenusLook((105, 120, 145), (75, 85, 110), "rings", 8, 0.3, 0.05),
}

WATER_RGB = np.array([25.0, 105.0, 125.0], dtype=np.float32)


def smooth_noise(rng: np.random.Generator, shape_hw: tuple[int, int], cells: int) -> np.ndarray:
    """Value noise in 0..1, float32 (H, W), with about ``cells`` features across the longer side."""
    h, w = shape_hw
    cells = max(2, int(cells))
    small = rng.random((max(2, round(cells * h / max(h, w))) + 1, max(2, round(cells * w / max(h, w))) + 1))
    return cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def fractal_noise(
    rng: np.random.Generator, shape_hw: tuple[int, int], octaves: tuple[int, ...]
) -> np.ndarray:
    """Sum of :func:`smooth_noise` octaves (cells per side), normalized to 0..1, float32 (H, W)."""
    total = np.zeros(shape_hw, dtype=np.float32)
    weight_sum = 0.0
    for i, cells in enumerate(octaves):
        weight = 0.6**i
        total += weight * smooth_noise(rng, shape_hw, cells)
        weight_sum += weight
    total /= weight_sum
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def seabed(rng: np.random.Generator, shape_hw: tuple[int, int], darker: float = 1.0) -> np.ndarray:
    """Sand and rubble texture, float32 RGB (H, W, 3) in 0..255."""
    h, w = shape_hw
    side = max(h, w)
    base = np.array([172.0, 160.0, 128.0], dtype=np.float32) * darker
    large = fractal_noise(rng, shape_hw, (4, 12))
    fine = smooth_noise(rng, shape_hw, side // 6)
    image = base[None, None, :] * (0.75 + 0.35 * large[..., None]) + (fine[..., None] - 0.5) * 40.0
    # rubble: a few darker and lighter pebbles
    n_pebbles = int(rng.integers(20, 60) * (side / 1024) ** 2) + 5
    layer = np.zeros(shape_hw, dtype=np.float32)
    for _ in range(n_pebbles):
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(2, 1 + side // 60)), int(rng.integers(2, 1 + side // 80)))
        cv2.ellipse(layer, center, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(-1, 1)), -1)
    layer = cv2.GaussianBlur(layer, (0, 0), 1.0)
    image += layer[..., None] * 35.0
    return image.clip(0, 255)


def _pattern(look: GenusLook, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Surface pattern in 0..1 on coordinates (u, v) normalized by the colony radius."""
    theta = rng.uniform(0, np.pi)
    ur = u * np.cos(theta) + v * np.sin(theta)
    vr = -u * np.sin(theta) + v * np.cos(theta)
    f = look.frequency * np.pi
    phase = rng.uniform(0, 2 * np.pi)
    if look.pattern == "spots":
        p = (np.sin(f * ur + phase) * np.sin(f * vr + phase)) > 0.35
        return cv2.GaussianBlur(p.astype(np.float32), (0, 0), 0.8)
    if look.pattern == "stripes":
        return 0.5 + 0.5 * np.sin(f * ur + phase)
    if look.pattern == "rings":
        return 0.5 + 0.5 * np.sin(f * np.hypot(u, v) + phase)
    if look.pattern == "radial":
        return (0.5 + 0.5 * np.sin(look.frequency * np.arctan2(v, u))) * np.clip(np.hypot(u, v) * 3, 0, 1)
    if look.pattern == "meander":
        return 0.5 + 0.5 * np.sin(f * ur + 2.5 * np.sin(0.5 * f * vr + phase))
    if look.pattern == "cells":
        return 1.0 - np.abs(np.sin(f * ur + phase)) * np.abs(np.sin(f * vr + phase))
    cells = max(2, int(look.frequency * 3))
    return smooth_noise(rng, u.shape, cells)


def colony_outline(
    rng: np.random.Generator,
    center_xy: tuple[float, float],
    radius: float,
    lobes: float,
    n_vertices: int | None = None,
) -> np.ndarray:
    """An irregular blob: ring (n_vertices, 2) in pixels around ``center_xy``.

    The radius varies with a few harmonics; ``lobes`` (0..1) raises the high harmonics so
    branching genera get deeper lobes than massive ones. By default the outline has about one
    vertex per 3 px of circumference (24..160), so colonies of one image have different vertex
    counts, as hand-drawn CVAT polygons do; the count uses no random draw.
    """
    if n_vertices is None:
        n_vertices = int(np.clip(round(2 * np.pi * radius / 3.0), 24, 160))
    angles = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
    r = np.ones_like(angles)
    for k in range(2, 8):
        amplitude = rng.uniform(0, 0.22 / k**0.5) * (0.4 + lobes if k >= 4 else 1.0)
        r += amplitude * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None) * radius
    return np.stack([center_xy[0] + r * np.cos(angles), center_xy[1] + r * np.sin(angles)], axis=1)


def paint_colony(
    canvas: np.ndarray, polygon_xy: np.ndarray, look: GenusLook, rng: np.random.Generator
) -> None:
    """Paint one colony into a float32 RGB canvas (H, W, 3) in place, clipped to the canvas."""
    h, w = canvas.shape[:2]
    x0, y0 = np.floor(polygon_xy.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(polygon_xy.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    bh, bw = y1 - y0, x1 - x0
    local = polygon_xy - np.array([x0, y0])
    mask = np.zeros((bh, bw), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round((local - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    if not mask.any():
        return
    centre = local.mean(axis=0)
    radius = max(float(np.linalg.norm(local - centre, axis=1).mean()), 1.0)
    yy, xx = np.mgrid[0:bh, 0:bw].astype(np.float32)
    u, v = (xx + 0.5 - centre[0]) / radius, (yy + 0.5 - centre[1]) / radius
    p = _pattern(look, u, v, rng).astype(np.float32)
    base, accent = np.array(look.base, np.float32), np.array(look.accent, np.float32)
    colour = base[None, None, :] * (1 - p[..., None]) + accent[None, None, :] * p[..., None]
    # shading: darker towards the rim, like a dome lit from above
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    shade = 0.72 + 0.33 * np.clip(inside / (0.45 * radius), 0, 1)
    colour *= shade[..., None]
    colour += rng.normal(0, 6, colour.shape).astype(np.float32)
    region = canvas[y0:y1, x0:x1]
    m = mask.astype(bool)
    region[m] = colour[m].clip(0, 255)


def degrade(
    image: np.ndarray, rng_values: dict[str, np.ndarray | float], noise: np.ndarray | None
) -> np.ndarray:
    """Underwater photo look: colour cast, haze, vignette, blur, sensor noise; returns uint8 RGB.

    ``rng_values`` holds the per-photo draws (see :func:`draw_photo_conditions`) so that two
    renderings of the same scene (with and without grid) degrade identically.
    """
    img = image.astype(np.float32) * np.asarray(rng_values["cast"], np.float32)[None, None, :]
    haze = float(rng_values["haze"])
    img = img * (1 - haze) + WATER_RGB[None, None, :] * haze
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1.0 - float(rng_values["vignette"]) * r2 / 2.0)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), float(rng_values["blur"]))
    if noise is not None:
        img += noise
    return img.clip(0, 255).astype(np.uint8)


def draw_photo_conditions(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """Random camera and water conditions of one photo."""
    return {
        "cast": np.array([rng.uniform(0.72, 0.9), rng.uniform(0.97, 1.05), rng.uniform(1.0, 1.12)]),
        "haze": float(rng.uniform(0.06, 0.22)),
        "vignette": float(rng.uniform(0.1, 0.35)),
        "blur": float(rng.uniform(0.5, 1.1)),
        "noise": float(rng.uniform(1.5, 4.5)),
    }
