"""Grid removal scored on real photos, where the pixels under the real strings are unknown.

The pixels *beside* the strings are known. A decoy mask of the grid's shape and line width is drawn
where no string runs, each backend fills it, and PSNR/SSIM inside the decoy compare the fill with the
real reef texture that was there:

- with the photo's 117 grid points (annotated or predicted), the decoy is the same lattice shifted
  by half a cell in both directions through the homography of the template onto the points: every
  decoy string runs midway between two real ones, and the shifted lattice stays inside the frame;
- without them (a quadrat without strings, or points unknown), the decoy is a lattice of the
  template's proportions on a random quadrilateral inset into the photo (seeded rotation, scale and
  perspective), away from the image border where frames sit.

The decoy strings are never extended to the border (the frame's pixels are left out). A decoy string
must cross the real strings that run across it; those crossings are inpainted with the rest but not
scored (:func:`scored_pixels`: the decoy minus the real grid mask at twice its width).

Examples:
    >>> kp = decoy_keypoints((400, 300), seed=0)
    >>> kp.shape, bool((kp[:, 0] > 0).all() and (kp[:, 0] < 400).all())
    ((117, 2), True)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from grid_inpainting.masks import default_line_width, grid_mask
from grid_inpainting.metrics import psnr, ssim
from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import GRID_COLS, GRID_ROWS, grid_template_xy

PHASE = 0.5  # of a cell: decoy strings midway between the real ones


def decoy_keypoints(
    frame_size: tuple[int, int], grid_xy: np.ndarray | None = None, seed: int = 0, phase: float = PHASE
) -> np.ndarray:
    """(117, 2) px points of a decoy lattice in a ``frame_size=(width, height)`` photo (module docstring).

    Args:
        grid_xy: the photo's real grid points (117, 2) px, NaN where missing; None when unknown.
        seed: the random quadrilateral's seed (without ``grid_xy``).
        phase: shift in cells along rows and columns (with ``grid_xy``).
    """
    template = grid_template_xy()
    width, height = frame_size
    if grid_xy is not None:
        points = np.asarray(grid_xy, dtype=np.float64)
        found = np.isfinite(points).all(axis=1)
        if found.sum() < 8:
            raise QuadratsegError(f"{int(found.sum())} of 117 grid points: too few to place a decoy lattice")
        homography, _ = cv2.findHomography(template[found], points[found])
        if homography is None:
            raise QuadratsegError("the grid points fit no homography (degenerate points)")
        shifted = template + phase * np.array([1.0 / (GRID_COLS + 1), 1.0 / (GRID_ROWS + 1)])
        out = cv2.perspectiveTransform(shifted[None], homography)[0]
    else:
        rng = np.random.default_rng(seed)
        side = min(width, height) * rng.uniform(0.7, 0.85)
        aspect = rng.uniform(0.9, 1.1)
        corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * [side * aspect, side]
        corners += rng.normal(0.0, 0.03 * side, corners.shape)  # perspective
        angle = np.deg2rad(rng.uniform(-8, 8))
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = corners @ rotation.T + [width / 2, height / 2]
        unit = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        homography = cv2.getPerspectiveTransform(unit.astype(np.float32), corners.astype(np.float32))
        out = cv2.perspectiveTransform(template[None], homography)[0]
    return np.clip(out, 0.0, [width - 1.0, height - 1.0])


def decoy_mask(
    frame_size: tuple[int, int],
    grid_xy: np.ndarray | None = None,
    line_width: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Bool (H, W) mask of the decoy lattice, strings ``line_width`` px wide (the grid mask's default),
    not extended to the border."""
    width = line_width if line_width is not None else default_line_width(frame_size)
    return grid_mask(decoy_keypoints(frame_size, grid_xy, seed), frame_size, width, to_border=False)


def scored_pixels(
    decoy: np.ndarray, grid_xy: np.ndarray | None = None, line_width: float | None = None
) -> np.ndarray:
    """The decoy's pixels that are scored: all of them without grid points, else those off the real
    strings (the real grid mask drawn twice as wide, to leave out the strings' blurred edges)."""
    if grid_xy is None:
        return decoy
    size = (decoy.shape[1], decoy.shape[0])
    width = 2 * (line_width if line_width is not None else default_line_width(size))
    return decoy & ~grid_mask(np.asarray(grid_xy, dtype=np.float64), size, width)


def score_real_photos(
    photos: list[tuple[str, np.ndarray, np.ndarray | None]],
    backends: list[Any],
    line_width: float | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per backend, PSNR and SSIM over the scored pixels of the decoy masks (:func:`scored_pixels`) of
    real photos (name, uint8 RGB (H, W, 3), grid points or None), means and per photo; and a
    before/after strip of the first photo."""
    masks = [
        decoy_mask((image.shape[1], image.shape[0]), grid, line_width, seed + i)
        for i, (_, image, grid) in enumerate(photos)
    ]
    scored = [scored_pixels(m, grid, line_width) for m, (_, _, grid) in zip(masks, photos, strict=True)]
    images = [image for _, image, _ in photos]
    holes = [
        np.where(m[..., None], 255, image).astype(np.uint8) for image, m in zip(images, masks, strict=True)
    ]
    results: dict[str, Any] = {}
    strips = {}
    for backend in backends:
        start = time.perf_counter()
        filled = backend.inpaint_batch(holes, masks)
        seconds = (time.perf_counter() - start) / len(photos)
        per_photo = {
            name: {
                "psnr_masked": round(psnr(out, image, score), 3),
                "ssim_masked": round(ssim(out, image, score), 4),
                "mask_share": round(float(mask.mean()), 4),
                "decoy": "between the strings" if grid is not None else "random lattice",
            }
            for (name, image, grid), out, mask, score in zip(photos, filled, masks, scored, strict=True)
        }
        results[backend.name] = {
            "psnr_masked": round(float(np.mean([p["psnr_masked"] for p in per_photo.values()])), 3),
            "ssim_masked": round(float(np.mean([p["ssim_masked"] for p in per_photo.values()])), 4),
            "seconds_per_image": round(seconds, 3),
            "photos": per_photo,
        }
        strips[backend.name] = np.concatenate([holes[0], filled[0], images[0]], axis=1)
    return results, strips


def load_real_photos(folder: str | Path, max_side: int = 0) -> list[tuple[str, np.ndarray, None]]:
    """Every photo under ``folder`` (upright, EXIF applied), downscaled to ``max_side`` px when > 0;
    an unreadable photo is skipped with a warning."""
    import logging

    from quadratseg.images import list_images, read_image_rgb

    out = []
    for path in list_images(folder):
        try:
            image = read_image_rgb(path)
        except QuadratsegError as exc:
            logging.getLogger(__name__).warning("skipped %s: %s", path, exc)
            continue
        scale = max_side / max(image.shape[:2]) if max_side else 1.0
        if scale < 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        out.append((path.name, image, None))
    if not out:
        raise QuadratsegError(f"no readable photo under {folder}")
    return out
