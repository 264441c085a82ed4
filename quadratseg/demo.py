"""The end-to-end demo on embedded defaults: ``python -m quadratseg.demo`` (``make demo``).

It generates a synthetic set, then runs each pipeline stage in order. Every stage is a
function ``stage(ctx) -> dict`` that returns its metrics (with ``seconds``) and adds a
section to the report; ``outputs/demo/summary.json`` holds one object per stage, named
after its module, and ``outputs/demo/report.html`` shows the pictures.

Stages of the pipeline modules are named by import path in :data:`STAGES`, so the core
never imports a pipeline module; a stage whose module is not installed is reported as
skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.cover import percent_cover
from quadratseg.keypoints import (
    GRID_COLS,
    GRID_MAX_COST,
    GRID_ROWS,
    grid_neighbour_pairs,
    grid_template_xy,
    match_to_template,
)
from quadratseg.report import Report
from quadratseg.settings import Settings
from quadratseg.synth.dataset import SynthConfig, export_image_path, generate_dataset, load_truth
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_keypoints, draw_polygons
from quadratseg.warp import transform_points, warp_quadrat

logger = logging.getLogger(__name__)

# Stages in pipeline order, as "module:function"; each module adds its own as it lands.
STAGES: list[str] = [
    "quadratseg.demo:core_stage",
    "data_engineering.demo:stage",
    "grid_pose_detection.demo:stage",
    "grid_inpainting.demo:stage",
    "coral_seg_yolo.demo:stage",
    "DINOv2_mmseg.demo:stage",
]


@dataclass
class DemoContext:
    """What stages share: folders, the synthetic set, settings, the report and earlier results."""

    out_dir: Path
    synthetic_dir: Path
    settings: Settings
    report: Report
    seed: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    training_scale: float = 1.0  # share of each stage's training epochs (tests run tiny trainings)
    shared: dict[str, Any] = field(default_factory=dict)  # results later stages use (e.g. predicted grids)

    def read_rgb(self, path: Path) -> np.ndarray:
        """Read an image file as uint8 RGB (H, W, 3), upright (the core's reader)."""
        from quadratseg.images import read_image_rgb

        return read_image_rgb(path)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB between two uint8 images (inside ``mask`` (H, W) bool when given)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def projective_lattice(corners_xy: np.ndarray, depth: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Image points of the quadrat's (u, v) lattice, u, v in steps of 1 / 2**depth, by line geometry.

    The image of the quadrat's centre is where its diagonals cross, and the image of an edge
    midpoint is where the line from the centre to the vanishing point of the two other edges
    crosses that edge (parallel edges: the plain midpoint); subdividing ``depth`` times gives the
    lattice without any homography, so it checks :func:`quadrat_homography` independently.

    Returns:
        (image points (N, 2), their (u, v) in the unit quadrat (N, 2)).
    """

    def line(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.cross([*p, 1.0], [*q, 1.0])

    def meet(l1: np.ndarray, l2: np.ndarray) -> np.ndarray:
        x = np.cross(l1, l2)
        return x[:2] / x[2]

    def split(quad: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        tl, tr, br, bl = quad
        centre = meet(line(tl, br), line(tr, bl))
        v_lr = np.cross(line(tl, bl), line(tr, br))  # vanishing point of the left/right edges
        v_tb = np.cross(line(tl, tr), line(bl, br))  # of the top/bottom edges

        def mid(a: np.ndarray, b: np.ndarray, vanishing: np.ndarray) -> np.ndarray:
            # homogeneous: a vanishing point at infinity (parallel edges) gives the parallel line
            return meet(np.cross([*centre, 1.0], vanishing), line(a, b))

        return {
            (0, 0): tl,
            (2, 0): tr,
            (2, 2): br,
            (0, 2): bl,
            (1, 1): centre,
            (1, 0): mid(tl, tr, v_lr),
            (1, 2): mid(bl, br, v_lr),
            (0, 1): mid(tl, bl, v_tb),
            (2, 1): mid(tr, br, v_tb),
        }

    n = 2**depth
    points = {(0, 0): corners_xy[0], (n, 0): corners_xy[1], (n, n): corners_xy[2], (0, n): corners_xy[3]}
    cells = [((0, 0), n)]
    while cells and cells[0][1] > 1:
        next_cells = []
        for (u0, v0), size in cells:
            quad = np.array(
                [
                    points[(u0, v0)],
                    points[(u0 + size, v0)],
                    points[(u0 + size, v0 + size)],
                    points[(u0, v0 + size)],
                ],
                dtype=np.float64,
            )
            half = size // 2
            for (a, b), xy in split(quad).items():
                points.setdefault((u0 + a * half, v0 + b * half), xy)
            next_cells += [((u0 + a * half, v0 + b * half), half) for a in (0, 1) for b in (0, 1)]
        cells = next_cells
    keys = sorted(points)
    return np.array([points[k] for k in keys]), np.array(keys, dtype=np.float64) / n


def string_offsets_px(gridded: np.ndarray, clean: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Distance (px) of each grid string of a warped image from its analytic place.

    The strings are where ``gridded`` and ``clean`` (the same photo without grid) differ; string
    j of ``cols`` lies at x = (j + 1) / (cols + 1) of the width, string i at y = (i + 1) / (rows + 1)
    of the height (pixel-corner coordinates). Each string's position is the centroid of the
    difference profile within a third of the spacing around its analytic place (inf: none there).
    """
    diff = np.abs(gridded.astype(np.float64) - clean.astype(np.float64)).sum(axis=2)
    offsets = []
    for axis, n, length in ((0, cols, diff.shape[1]), (1, rows, diff.shape[0])):
        profile = diff.mean(axis=axis)
        profile = np.clip(profile - np.median(profile), 0.0, None)
        spacing = length / (n + 1)
        for k in range(n):
            centre = (k + 1) * spacing
            lo, hi = (
                max(0, int(np.floor(centre - spacing / 3))),
                min(length, int(np.ceil(centre + spacing / 3))),
            )
            window = profile[lo:hi]
            mass = float(window.sum())
            position = float((window * (np.arange(lo, hi) + 0.5)).sum() / mass) if mass > 0 else np.inf
            offsets.append(abs(position - centre))
    return np.array(offsets)


def _matching_selfcheck(truths: list[dict[str, Any]], seed: int) -> float:
    """Share of images whose jittered, shuffled, incomplete true grid (with false points) matches back.

    Success: every true detection lands on its own template point, and no missing point
    takes a true detection (a false point lying on a missing point's place may fill it: it
    cannot be told apart).
    """
    rng = np.random.default_rng([seed, 3])
    template = grid_template_xy()
    ok = 0
    for t in truths:
        size = t["warped_size"]
        true_xy = np.asarray(t["grid_warped_xy"])
        keep = rng.permutation(len(true_xy))[: len(true_xy) - 5]
        det = true_xy[keep] + rng.normal(0, 2.0, (len(keep), 2))
        det = np.vstack([det, rng.uniform(0, size[0], (5, 2))])
        order = rng.permutation(len(det))
        match = match_to_template(det[order], template, GRID_MAX_COST, frame_size=tuple(size))
        position = np.argsort(order)  # unshuffled detection j sits at position[j]
        kept_ok = np.array_equal(match.detection_index[keep], position[: len(keep)])
        missing = np.setdiff1d(np.arange(len(true_xy)), keep)
        taken = match.detection_index[missing]
        false_positions = set(position[len(keep) :].tolist())
        ok += int(kept_ok and all(i < 0 or int(i) in false_positions for i in taken))
    return ok / max(len(truths), 1)


def core_stage(ctx: DemoContext) -> dict[str, Any]:
    """Synthetic quadrats: what was made, warp and matching self-checks, and the true cover."""
    start = time.perf_counter()
    truths = load_truth(ctx.synthetic_dir)
    exports = ctx.synthetic_dir / "cvat_exports"
    # Warp checks against analytic truth (not against another output of the same warp): lattice
    # points built by line geometry from the corners, the exported grid points, and the strings of
    # the warped photo, each compared with where the quadrat's geometry puts them.
    lattice_errors, grid_errors, string_offsets = [], [], []
    for t in truths:
        raw = ctx.read_rgb(export_image_path(exports / "corners", t["subset"], t["name"]))
        clean = ctx.read_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"]))
        size = tuple(t["warped_size"])
        corners = np.asarray(t["corners_raw_xy"], dtype=np.float64)
        warped, homography = warp_quadrat(raw, corners, size)
        points, uv = projective_lattice(corners)
        lattice_errors.append(float(np.abs(transform_points(points, homography) - uv * size).max()))
        grid = transform_points(np.asarray(t["grid_raw_xy"]), homography)
        grid_errors.append(float(np.abs(grid - grid_template_xy() * size).max()))
        string_offsets.extend(string_offsets_px(warped, clean, GRID_ROWS, GRID_COLS).tolist())
    taxonomy = load_taxonomy()
    covers: dict[str, dict[str, list[float]]] = {"finegrained": {}, "main_family": {}}
    for t in truths:
        pairs = [(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]]
        for level in covers:
            for label, value in percent_cover(pairs, tuple(t["warped_size"]), taxonomy, level).items():
                covers[level].setdefault(label, []).append(value)
    n = len(truths)
    mean_cover = {
        level: {k: round(sum(v) / n, 2) for k, v in sorted(values.items())}
        for level, values in covers.items()
    }
    metrics = {
        "images": n,
        "colonies": sum(len(t["corals"]) for t in truths),
        "warp_lattice_max_error_px": round(max(lattice_errors), 6),
        "warp_grid_truth_max_error_px": round(max(grid_errors), 4),
        "warp_string_mean_offset_px": round(float(np.mean(string_offsets)), 3),
        "warp_string_max_offset_px": round(float(np.max(string_offsets)), 3),
        "template_matching_selfcheck_rate": _matching_selfcheck(truths, ctx.seed),
        "mean_cover_percent": mean_cover,
    }

    section = ctx.report.section("Synthetic quadrats (quadratseg)")
    section.paragraphs.append(
        f"{n} synthetic photo-quadrats with the truth of every stage. The warp from the true corners "
        f"puts a 5 x 5 lattice built from the corners by line geometry on its analytic place within "
        f"{metrics['warp_lattice_max_error_px']} px and the true grid points within "
        f"{metrics['warp_grid_truth_max_error_px']} px; in the warped photos the grid strings lie "
        f"{metrics['warp_string_mean_offset_px']} px (mean; max {metrics['warp_string_max_offset_px']} px) "
        "from their analytic place; "
        f"template matching recovers the jittered, shuffled, incomplete true grid (5 points removed, "
        f"5 false points added) on {100 * metrics['template_matching_selfcheck_rate']:.0f} % of images."
    )
    section.tables.append(
        (
            "Mean true cover per quadrat (%), finegrained",
            ["genus", "cover %"],
            [[k, v] for k, v in mean_cover["finegrained"].items()],
        )
    )
    section.tables.append(
        (
            "Mean true cover per quadrat (%), main families",
            ["family", "cover %"],
            [[k, v] for k, v in mean_cover["main_family"].items()],
        )
    )
    t = truths[0]
    raw = ctx.read_rgb(export_image_path(exports / "corners", t["subset"], t["name"]))
    warped = ctx.read_rgb(export_image_path(exports / "grid", t["subset"], t["name"]))
    clean = ctx.read_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"]))
    radius = max(3, raw.shape[1] // 300)
    overlay_raw = draw_keypoints(
        raw,
        np.asarray(t["grid_raw_xy"]),
        (250, 220, 40),
        max(2, radius // 2),
        edges=[tuple(p) for p in grid_neighbour_pairs()],
    )
    overlay_raw = draw_keypoints(
        overlay_raw,
        np.asarray(t["corners_raw_xy"]),
        (255, 30, 30),
        radius * 2,
        edges=[(0, 1), (1, 2), (2, 3), (3, 0)],
        numbered=True,
    )
    colors = {name: taxonomy.color(name) for name in taxonomy.classes()}
    overlay_clean = draw_polygons(
        clean, [(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]], colors
    )
    ctx.report.add_image(section, "synth_raw", raw, f"raw photo {t['name']}")
    ctx.report.add_image(section, "synth_raw_truth", overlay_raw, "true corners (red, 1-4) and grid (yellow)")
    ctx.report.add_image(section, "synth_warped", warped, "warped with the true corners")
    ctx.report.add_image(section, "synth_clean_truth", overlay_clean, "grid-free truth with coral polygons")
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return metrics


def _resolve(stage: str) -> Callable[[DemoContext], dict[str, Any]]:
    module_name, func_name = stage.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_demo(
    settings: Settings,
    out_dir: str | Path = "outputs/demo",
    images: int = 24,
    size: int = 768,
    seed: int = 0,
    stages: list[str] | None = None,
    training_scale: float = 1.0,
) -> dict[str, Any]:
    """Generate the synthetic set and run every stage; write summary.json and report.html.

    Returns:
        The summary: one object per stage (named after its module) plus ``demo`` totals.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (
        settings.fiftyone_database_dir is None
        and not settings.fiftyone_database_uri
        and "fiftyone" not in sys.modules
    ):
        # the demo's datasets live in a database of its own, beside its outputs, under a name of its
        # own (FiftyOne attaches to any running mongod of the user, whatever its folder)
        os.environ["FIFTYONE_DATABASE_DIR"] = str((out / "fiftyone_db").resolve())
        os.environ.setdefault("FIFTYONE_DATABASE_NAME", "quadratseg_demo")
    synthetic_dir = out / "synthetic"
    synth_start = time.perf_counter()
    generate_dataset(synthetic_dir, SynthConfig(images=images, seed=seed, size=size), overwrite=True)
    synth_seconds = time.perf_counter() - synth_start
    ctx = DemoContext(out, synthetic_dir, settings, Report(out), seed, training_scale=training_scale)
    summary: dict[str, Any] = {}
    for stage in stages or STAGES:
        module_name = stage.split(":")[0]
        key = module_name.split(".")[0]
        logger.info("demo stage %s", stage)
        try:
            func = _resolve(stage)
        except ImportError as exc:
            logger.warning("stage %s skipped: %s (install its extra, see README)", stage, exc)
            summary[key] = {"skipped": str(exc)}
            continue
        summary[key] = func(ctx)
        if key == "quadratseg":
            summary[key]["synth_seconds"] = round(synth_seconds, 2)
        ctx.summary = summary
    summary["demo"] = {
        "seconds": round(time.perf_counter() - start, 2),
        "images": images,
        "size": size,
        "seed": seed,
    }
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    tmp.replace(out / "summary.json")
    report_path = ctx.report.write(summary)
    logger.info("wrote %s and %s", out / "summary.json", report_path)
    return summary


def main(out_dir: str | None = None, images: int = 24, size: int = 768, seed: int = 0) -> str:
    """Run the end-to-end demo on the synthetic set and write summary.json and report.html.

    Args:
        out_dir: output folder (summary.json, report.html, img/, synthetic/); default:
            QUADRATSEG_OUTPUTS_DIR/demo.
        images: synthetic quadrats to generate.
        size: raw photo width in px.
        seed: random seed of the synthetic set.

    Returns:
        The path of report.html.
    """
    from quadratseg.cli import current_settings, output_path

    settings = current_settings()
    out = output_path(out_dir, "demo", settings)
    run_demo(settings, out, images, size, seed)
    return str(out / "report.html")


if __name__ == "__main__":
    from quadratseg.cli import run

    run(main, name="quadratseg.demo")
