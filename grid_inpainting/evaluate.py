"""CLI: grid removal quality where the clean truth is known (a synthetic set).

    python -m grid_inpainting.evaluate outputs/synthetic --backends opencv-telea,opencv-ns[,lama]
    python -m grid_inpainting.evaluate outputs/synthetic --widths 0.005,0.009,0.012   # choose a width

For each backend: PSNR inside the grid mask and on the whole image, SSIM, against the
clean truth; the untouched gridded input is scored the same way (``psnr_masked_input``) so
the gain is visible. Writes ``evaluation.json`` and before/after/truth strips. Photos whose frame
has no grid (the varied world's diagonal strings or none) have nothing to remove: they are left
out and counted (``images_without_grid``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from grid_inpainting.inpaint import remove_grid, select_backend
from grid_inpainting.masks import grid_mask
from grid_inpainting.metrics import psnr, ssim
from quadratseg.atomic import atomic_write_text
from quadratseg.errors import QuadratsegError
from quadratseg.images import read_image_rgb
from quadratseg.synth import load_truth
from quadratseg.synth.dataset import export_image_path, truth_grid

logger = logging.getLogger(__name__)


def photos_without_grid(synthetic_dir: Path, limit: int = 0) -> list[str]:
    """Names of the synthetic photos (the first ``limit``; 0: all) whose frame has no grid."""
    truths = load_truth(synthetic_dir)
    return [t["name"] for t in (truths[:limit] if limit else truths) if truth_grid(t) is None]


def load_pairs(synthetic_dir: Path, limit: int = 0) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, gridded warped image, clean truth, grid keypoints (117, 2) warped px) for each synthetic
    image whose frame has a grid (of the first ``limit``; 0: all); the others are left out, and logged."""
    exports = Path(synthetic_dir) / "cvat_exports"
    truths = load_truth(synthetic_dir)
    truths = truths[:limit] if limit else truths
    kept = [t for t in truths if truth_grid(t) is not None]
    if len(kept) < len(truths):
        logger.info("%d of %d photos have no grid: left out", len(truths) - len(kept), len(truths))
    return [
        (
            t["name"],
            read_image_rgb(export_image_path(exports / "grid", t["subset"], t["name"])),
            read_image_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"])),
            np.asarray(t["grid_warped_xy"], dtype=np.float64),
        )
        for t in kept
    ]


def strip(before: np.ndarray, after: np.ndarray, truth: np.ndarray, height: int = 360) -> np.ndarray:
    """before | after | truth side by side, each resized to ``height``."""

    def fit(img: np.ndarray) -> np.ndarray:
        return cv2.resize(
            img, (round(img.shape[1] * height / img.shape[0]), height), interpolation=cv2.INTER_AREA
        )

    gap = np.full((height, 6, 3), 255, np.uint8)
    return np.hstack([fit(before), gap, fit(after), gap, fit(truth)])


def evaluate_backends(
    pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    backends: list[Any],
    line_width: float | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Scores per backend (means over images) and one strip per backend (first image)."""
    results: dict[str, Any] = {}
    strips = {}
    images = [p[1] for p in pairs]
    keypoints = [p[3] for p in pairs]
    for backend in backends:
        start = time.perf_counter()
        removed = remove_grid(images, keypoints, backend, line_width)
        seconds = (time.perf_counter() - start) / len(pairs)
        rows = []
        for (_, gridded, truth, _), r in zip(pairs, removed, strict=True):
            rows.append(
                {
                    "psnr_masked": psnr(r.image, truth, r.mask),
                    "psnr_masked_input": psnr(gridded, truth, r.mask),
                    "psnr": psnr(r.image, truth),
                    "psnr_input": psnr(gridded, truth),
                    "ssim": ssim(r.image, truth),
                    "ssim_masked": ssim(r.image, truth, r.mask),
                    "ssim_input": ssim(gridded, truth),
                }
            )
        results[backend.name] = {k: round(float(np.mean([row[k] for row in rows])), 3) for k in rows[0]}
        results[backend.name]["seconds_per_image"] = round(seconds, 3)
        results[backend.name]["line_width_px"] = round(removed[0].line_width, 2)
        strips[backend.name] = strip(pairs[0][1], removed[0].image, pairs[0][2])
    return results, strips


def width_coverage(
    pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], fractions: list[float]
) -> dict[str, Any]:
    """Share of the true string pixels (where gridded and clean differ) covered by the mask, per width."""
    out = {}
    for fraction in fractions:
        covered, area = [], []
        for _, gridded, truth, kp in pairs:
            strings = np.abs(gridded.astype(int) - truth.astype(int)).max(axis=2) > 12
            size = (gridded.shape[1], gridded.shape[0])
            mask = grid_mask(kp, size, line_width=fraction * max(size))
            covered.append((strings & mask).sum() / max(strings.sum(), 1))
            area.append(mask.mean())
        out[str(fraction)] = {
            "string_coverage": round(float(np.mean(covered)), 4),
            "mask_share": round(float(np.mean(area)), 4),
        }
    return out


def evaluate(
    synthetic_dir: str | None = None,
    backends: str = "opencv-telea,opencv-ns",
    out_dir: str | None = None,
    lama_model: str | None = None,
    line_width: float | None = None,
    limit: int = 0,
    widths: str | None = None,
    real: str | None = None,
    max_side: int = 1024,
    seed: int = 0,
) -> str:
    """Score grid removal against the clean truth of a synthetic set, or on real photos with --real.

    On real photos the pixels under the strings are unknown: grid-shaped decoy masks are drawn beside
    the strings (grid_inpainting.real_eval), filled by each backend, and scored against the real
    pixels there (real_evaluation.json and one strip per backend: decoy, fill, photo).

    Args:
        synthetic_dir: a set made by `python -m quadratseg.synth` (not with --real).
        backends: comma-separated: lama, opencv-telea, opencv-ns.
        out_dir: where evaluation.json and the strips go
            (default: QUADRATSEG_OUTPUTS_DIR/grid_inpainting_eval).
        lama_model: LaMa TorchScript file for the lama backend (default: LAMA_MODEL).
        line_width: mask width in px (default: 0.9 % of the image side).
        limit: evaluate only the first N images (0: all).
        widths: comma-separated width fractions to measure string coverage instead.
        real: a folder of real photos (searched recursively) to score with decoy masks.
        max_side: with --real, photos are downscaled to this many px on their long side (0: as they are).
        seed: with --real, the seed of the decoy lattices.

    Returns:
        The scores as JSON: per backend, and ``images`` (scored) and ``images_without_grid`` (left out).
    """
    from quadratseg.cli import as_names, current_settings, output_path, weights_path

    settings = current_settings()
    out = output_path(out_dir, "grid_inpainting_eval", settings)
    if real:
        from grid_inpainting.real_eval import load_real_photos, score_real_photos

        photos = load_real_photos(real, max_side)
        lama = weights_path(lama_model, settings)
        chosen = [select_backend(b, settings, lama) for b in as_names(backends)]
        result, strips = score_real_photos(photos, chosen, line_width, seed)
        out.mkdir(parents=True, exist_ok=True)
        for name, image in strips.items():
            cv2.imwrite(str(out / f"real_strip_{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        atomic_write_text(out / "real_evaluation.json", json.dumps(result, indent=2))
        return json.dumps(result, indent=2)
    if not synthetic_dir:
        raise QuadratsegError("give a synthetic set (SYNTHETIC_DIR) or real photos (--real FOLDER)")
    pairs = load_pairs(Path(synthetic_dir), limit)
    without = photos_without_grid(Path(synthetic_dir), limit)
    if not pairs:
        raise QuadratsegError(
            f"no photo of {synthetic_dir} has a grid ({len(without)} frames without one): "
            "generate a set with gridded frames (the simple world, or more varied photos)"
        )
    out.mkdir(parents=True, exist_ok=True)
    if widths:
        result: dict[str, Any] = {
            "width_coverage": width_coverage(pairs, [float(w) for w in as_names(widths)])
        }
    else:
        lama = weights_path(lama_model, settings)
        chosen = [select_backend(b, settings, lama) for b in as_names(backends)]
        result, strips = evaluate_backends(pairs, chosen, line_width)
        for name, image in strips.items():
            cv2.imwrite(str(out / f"strip_{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    result["images"] = len(pairs)
    result["images_without_grid"] = len(without)
    atomic_write_text(out / "evaluation.json", json.dumps(result, indent=2))
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(evaluate, name="grid_inpainting.evaluate")
