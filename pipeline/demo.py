"""The end-to-end demo on embedded defaults: ``python -m pipeline.demo`` (``make demo``).

It generates a synthetic set, then runs each pipeline stage in order. Every stage is a
function ``stage(ctx) -> dict`` that returns its metrics (with ``seconds``) and adds a
section to the report; ``outputs/demo/summary.json`` holds one object per stage, named
after its module, and ``outputs/demo/report.html`` shows the pictures.

Stages are named by import path in :data:`STAGES`: a stage whose module is not installed is
reported as skipped with the reason, never silently dropped. The last stage runs the whole chain
(:mod:`pipeline.process`) on the raw test photos with the models the earlier stages trained.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.atomic import atomic_write_json
from quadratseg.cover import percent_cover
from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import GRID_COLS, GRID_ROWS, grid_neighbour_pairs, grid_template_xy
from quadratseg.report import Report
from quadratseg.settings import Settings
from quadratseg.synth.checks import matching_selfcheck, projective_lattice, string_offsets_px
from quadratseg.synth.dataset import (
    SynthConfig,
    assign_subsets,
    coral_rings,
    export_image_path,
    generate_dataset,
    load_truth,
    truth_grid,
)
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_keypoints, draw_polygons
from quadratseg.warp import transform_points, warp_quadrat

logger = logging.getLogger(__name__)

# Stages in pipeline order, as "module:function"; summary.json names each after its module
# (the synthetic set's checks: "quadratseg"; the chain: "process").
STAGES: list[str] = [
    "pipeline.demo:core_stage",
    "data_engineering.demo:stage",
    "grid_pose_detection.demo:stage",
    "grid_inpainting.demo:stage",
    "coral_seg_yolo.demo:stage",
    "DINOv2_mmseg.demo:stage",
    "pipeline.demo_process:stage",
    "pipeline.track_demo:stage",
    "loopback.demo:stage",
]


# The demo's synthetic set per world: (photos, share held out for val and again for test). Each world
# holds out at least 12 photos to fit the intervals (val) and 12 to score (test): with 5 of each a
# coverage rested on five photos' reefs and its terms on 38 predicted pairs. The simple world trains
# on 12 photos (YOLO's mask mAP@0.5 0.75 on the 12 test photos at its last epoch, against 0.87 on 5
# with 14 training photos and its checkpoint picked on val), the varied one on 36.
DEMO_SETS = {"simple": (36, 1 / 3), "varied": (60, 0.2)}
DEFAULT_WORLD = "varied"  # the realistic regime; simple: the fast toy of the unit tests
# Photos whose true grid crossings lie within this many px of the template count as having straight
# strings: the strings' offsets from their analytic places are measured on them only.
STRAIGHT_SAG_PX = 0.5

STAGE_KEYS = {
    "pipeline.demo:core_stage": "quadratseg",
    "pipeline.demo_process:stage": "process",
    "pipeline.track_demo:stage": "track",
}


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
    shared_data: Path | None = None  # real third-party files (QUADRATSEG_SHARED_DATA), None when absent
    world: str = "simple"  # the synthetic world of the set (quadratseg.synth: simple or varied)

    def read_rgb(self, path: Path) -> np.ndarray:
        """Read an image file as uint8 RGB (H, W, 3), upright (the core's reader)."""
        from quadratseg.images import read_image_rgb

        return read_image_rgb(path)


def grid_sag_px(truth: dict[str, Any]) -> float | None:
    """How far (px, warped frame) a photo's true grid crossings lie from the template's straight-string
    places at most (the varied world's strings sag), or None without a grid."""
    grid = truth_grid(truth)
    if grid is None:
        return None
    return float(np.abs(grid - grid_template_xy() * np.asarray(truth["warped_size"], float)).max())


def true_colonies(truth: dict[str, Any]) -> list[tuple[str, list[np.ndarray]]]:
    """(label, rings) of a photo's true colonies: outline then holes (``coral_rings``), the form cover
    and label maps take, so a dead patch inside a colony is not counted as coral."""
    return [(c["label"], coral_rings(c)) for c in truth["corals"]]


def core_stage(ctx: DemoContext) -> dict[str, Any]:
    """Synthetic quadrats: what was made, warp and matching self-checks, and the true cover.

    Photos whose frame has no grid (varied world) have no grid checks; the string offsets are
    measured on the photos whose strings are straight (true crossings within
    :data:`STRAIGHT_SAG_PX` of the template), a sagging string being off its analytic place by design,
    and in the varied world inside the true string mask (the strings' shadows are not strings).
    """
    start = time.perf_counter()
    truths = load_truth(ctx.synthetic_dir)
    exports = ctx.synthetic_dir / "cvat_exports"
    # Warp checks against analytic truth (not against another output of the same warp): lattice
    # points built by line geometry from the corners, the exported grid points, and the strings of
    # the warped photo, each compared with where the quadrat's geometry puts them.
    lattice_errors, grid_errors, string_offsets, sags = [], [], [], []
    straight = 0
    for t in truths:
        raw = ctx.read_rgb(export_image_path(exports / "corners", t["subset"], t["name"]))
        size = tuple(t["warped_size"])
        corners = np.asarray(t["corners_raw_xy"], dtype=np.float64)
        warped, homography = warp_quadrat(raw, corners, size)
        points, uv = projective_lattice(corners)
        lattice_errors.append(float(np.abs(transform_points(points, homography) - uv * size).max()))
        grid_raw = truth_grid(t, "raw")
        if grid_raw is None:
            continue
        # the true crossings in the warped frame: the template's places, moved by any sag
        grid = transform_points(grid_raw, homography)
        grid_errors.append(float(np.abs(grid - truth_grid(t)).max()))
        sags.append(grid_sag_px(t))
        if sags[-1] <= STRAIGHT_SAG_PX:
            clean = ctx.read_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"]))
            if t.get("string_mask"):  # varied world: the strings' own pixels, their shadows left out
                on_strings = cv2.imread(str(ctx.synthetic_dir / t["string_mask"]), cv2.IMREAD_GRAYSCALE) > 0
                warped, clean = warped * on_strings[..., None], clean * on_strings[..., None]
            string_offsets.extend(string_offsets_px(warped, clean, GRID_ROWS, GRID_COLS).tolist())
            straight += 1
    with_grid = [t for t in truths if truth_grid(t) is not None]
    taxonomy = load_taxonomy()
    covers: dict[str, dict[str, list[float]]] = {"finegrained": {}, "main_family": {}}
    for t in truths:
        for level in covers:
            for label, value in percent_cover(
                true_colonies(t), tuple(t["warped_size"]), taxonomy, level
            ).items():
                covers[level].setdefault(label, []).append(value)
    n = len(truths)
    mean_cover = {
        level: {k: round(sum(v) / n, 2) for k, v in sorted(values.items())}
        for level, values in covers.items()
    }
    metrics = {
        "images": n,
        "world": ctx.world,
        "colonies": sum(len(t["corals"]) for t in truths),
        "photos_without_grid": n - len(with_grid),
        "warp_lattice_max_error_px": round(max(lattice_errors), 6),
        "warp_grid_truth_max_error_px": round(max(grid_errors), 4) if grid_errors else None,
        # the string offsets over the photos with straight strings only (the others sag)
        "warp_string_photos": straight,
        "warp_string_mean_offset_px": round(float(np.mean(string_offsets)), 3) if string_offsets else None,
        "warp_string_max_offset_px": round(float(np.max(string_offsets)), 3) if string_offsets else None,
        "grid_sag_max_px": round(max(sags), 3) if sags else None,
        "grid_sag_mean_px": round(float(np.mean(sags)), 3) if sags else None,
        "template_matching_selfcheck_rate": matching_selfcheck(with_grid, ctx.seed) if with_grid else None,
        "mean_cover_percent": mean_cover,
    }

    section = ctx.report.section("Synthetic quadrats (quadratseg)")
    section.paragraphs.append(
        f"{n} synthetic photo-quadrats ({ctx.world} world) with the truth of every stage"
        + (
            f"; {metrics['photos_without_grid']} of them have a frame without a grid (diagonal strings or "
            "none), so they have no grid checks"
            if metrics["photos_without_grid"]
            else ""
        )
        + ". The warp from the true corners "
        f"puts a 5 x 5 lattice built from the corners by line geometry on its analytic place within "
        f"{metrics['warp_lattice_max_error_px']} px and the true grid points within "
        f"{metrics['warp_grid_truth_max_error_px']} px of their true warped places; "
        + (
            f"in the warped photos of the {straight} quadrats whose strings are straight (true crossings "
            f"within {STRAIGHT_SAG_PX} px of the template) the strings"
            + (" (inside their true mask: their shadows left out)" if ctx.world != "simple" else "")
            + " lie "
            f"{metrics['warp_string_mean_offset_px']} px (mean; max {metrics['warp_string_max_offset_px']} "
            "px) from their analytic place"
            if straight
            else "no quadrat has straight strings to measure the strings' offsets on"
        )
        + (
            f" (the strings sag by up to {metrics['grid_sag_max_px']} px, {metrics['grid_sag_mean_px']} px "
            "on average over the photos with a grid)"
            if sags and metrics["grid_sag_max_px"] > STRAIGHT_SAG_PX
            else ""
        )
        + "; "
        + (
            f"template matching recovers the jittered, shuffled, incomplete true grid (5 points removed, "
            f"5 false points added) on {100 * metrics['template_matching_selfcheck_rate']:.0f} % of the "
            "photos with a grid."
            if with_grid
            else "no photo has a grid for the template matching self-check."
        )
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
    t = with_grid[0] if with_grid else truths[0]  # a photo with a grid shows every truth
    raw = ctx.read_rgb(export_image_path(exports / "corners", t["subset"], t["name"]))
    warped = ctx.read_rgb(export_image_path(exports / "grid", t["subset"], t["name"]))
    clean = ctx.read_rgb(export_image_path(exports / "segmentation", t["subset"], t["name"]))
    radius = max(3, raw.shape[1] // 300)
    overlay_raw = raw
    if truth_grid(t, "raw") is not None:
        overlay_raw = draw_keypoints(
            raw,
            truth_grid(t, "raw"),
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
    overlay_clean = draw_polygons(clean, true_colonies(t), colors)
    ctx.report.add_image(section, "synth_raw", raw, f"raw photo {t['name']}")
    ctx.report.add_image(section, "synth_raw_truth", overlay_raw, "true corners (red, 1-4) and grid (yellow)")
    ctx.report.add_image(section, "synth_warped", warped, "warped with the true corners")
    ctx.report.add_image(section, "synth_clean_truth", overlay_clean, "grid-free truth with coral colonies")
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return metrics


def _resolve(stage: str) -> Callable[[DemoContext], dict[str, Any]]:
    module_name, func_name = stage.split(":")
    return getattr(importlib.import_module(module_name), func_name)


DEMO_MARK = ".quadratseg-demo"  # written into the output folder: a rerun may empty it
KEEP = ("fiftyone_db",)  # the demo's FiftyOne database (its datasets are replaced by name)


def fresh_demo_folder(out: Path) -> None:
    """Make ``out`` an empty demo folder: every stage starts from nothing, so an earlier run's files
    (photo records a stage would resume, links to another set's photos, trained weights) are never
    taken for this run's. The FiftyOne database folder (:data:`KEEP`) stays.

    Raises:
        QuadratsegError: ``out`` holds files and is not an earlier demo's folder (no
            :data:`DEMO_MARK`, no ``summary.json``); nothing in it is touched.
    """
    import shutil

    if out.exists() and any(out.iterdir()):
        if not ((out / DEMO_MARK).is_file() or (out / "summary.json").is_file()):
            raise QuadratsegError(
                f"{out} is not a demo's output folder (no {DEMO_MARK} or summary.json) and is not empty: "
                "the demo empties its folder before a run; give --out a new or empty folder"
            )
        for entry in out.iterdir():
            if entry.name in KEEP:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARK).write_text("an output folder of python -m pipeline.demo; a rerun empties it\n")


MIN_TRAIN_PHOTOS = 3  # the grid template is fitted on the training photos, each point on 3 or more
TRAINING_STAGES = ("grid_pose_detection.demo:stage",)  # the stages that need MIN_TRAIN_PHOTOS


def demo_synth_config(world: str, images: int, seed: int, size: int) -> SynthConfig:
    """The demo's synthetic set: ``images`` photos (0: the world's default of :data:`DEMO_SETS`)
    split with the world's held-out share."""
    default_images, holdout_share = DEMO_SETS.get(world, DEMO_SETS["simple"])
    return SynthConfig(
        images=images or default_images, seed=seed, size=size, world=world, holdout_share=holdout_share
    )


def check_training_photos(config: SynthConfig, stages: list[str]) -> None:
    """Stop before anything is written when the split leaves fewer than :data:`MIN_TRAIN_PHOTOS`
    training photos and a stage that needs them runs (the message names the fewest ``--images``
    that do)."""

    def train_photos(n: int) -> int:
        return assign_subsets(n, config.seed, config.holdout_share).count("train")

    if not set(stages) & set(TRAINING_STAGES) or train_photos(config.images) >= MIN_TRAIN_PHOTOS:
        return
    enough = next(n for n in range(config.images + 1, 100) if train_photos(n) >= MIN_TRAIN_PHOTOS)
    raise QuadratsegError(
        f"--images {config.images}: the {config.world} world's demo holds out "
        f"{config.holdout_share:.0%} of the photos for validation and as many for test, which leaves "
        f"{train_photos(config.images)} to train on; the grid template needs {MIN_TRAIN_PHOTOS}: give "
        f"--images {enough} or more"
    )


# Stages whose training starts from models shipped in the repository (in the varied world): stage ->
# the "module:function" that gives its training (demo_training, or demo_starts for both pose models)
# and the arguments after the world. Called ahead, they check the shipped
# file and its card as the stage will.
SHIPPED_STARTS = {
    "grid_pose_detection.demo:stage": ("grid_pose_detection.demo:demo_starts", ()),
    "coral_seg_yolo.demo:stage": ("coral_seg_yolo.demo:demo_training", ()),
    "DINOv2_mmseg.demo:stage": ("DINOv2_mmseg.demo:demo_training", ()),
}


def check_shipped_models(world: str, stages: list[str]) -> None:
    """Check the shipped models the stages will start from before anything is written (each stage's
    own ``demo_training``: the file's sha256, and for YOLO and MMSeg its card's classes and sizes): a missing,
    altered or unfit file stops the demo at once with the command that makes it again, not after the
    stages before it have trained. The simple world starts from none; a stage whose module or
    libraries are not installed is left to skip as it does."""
    for stage in stages:
        if stage not in SHIPPED_STARTS:
            continue
        function, args = SHIPPED_STARTS[stage]
        try:
            _resolve(stage)
            training = _resolve(function)
        except ImportError:
            continue
        training(world, *args)


def run_demo(
    settings: Settings,
    out_dir: str | Path = "outputs/demo",
    images: int = 0,
    size: int = 768,
    seed: int = 0,
    stages: list[str] | None = None,
    training_scale: float = 1.0,
    world: str = DEFAULT_WORLD,
) -> dict[str, Any]:
    """Generate the synthetic set and run every stage; write summary.json and report.html.

    Args:
        settings: the project's settings.
        out_dir: output folder (summary.json, report.html, img/, synthetic/), emptied first
            (:func:`fresh_demo_folder`).
        images: synthetic quadrats to generate (0: the world's :data:`DEMO_SETS`).
        size: raw photo width in px.
        seed: random seed of the synthetic set and of the trainings.
        stages: "module:function" names to run (default: :data:`STAGES`).
        training_scale: share of each stage's training epochs.
        world: the synthetic world, ``simple`` or ``varied`` (see docs/synthetic.md).

    Returns:
        The summary: one object per stage (named after its module) plus ``demo`` totals.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    config = demo_synth_config(world, images, seed, size)
    config.validate()
    check_training_photos(
        config, stages or STAGES
    )  # a wrong world or size stops here, before any folder is emptied
    check_shipped_models(world, stages or STAGES)
    fresh_demo_folder(out)
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
    generate_dataset(synthetic_dir, config, overwrite=True)
    synth_seconds = time.perf_counter() - synth_start
    ctx = DemoContext(
        out, synthetic_dir, settings, Report(out), seed, training_scale=training_scale, world=world
    )
    reference = settings.shared_data_dir or Path(__file__).resolve().parents[2] / "shared" / "data"
    ctx.shared_data = reference if reference.is_dir() else None
    summary: dict[str, Any] = {}
    for stage in stages or STAGES:
        module_name = stage.split(":")[0]
        key = STAGE_KEYS.get(stage, module_name.split(".")[0])
        logger.info("demo stage %s", stage)
        try:
            func = _resolve(stage)
        except ImportError as exc:
            logger.warning("stage %s skipped: %s (install its extra, see README)", stage, exc)
            summary[key] = {"skipped": str(exc), "missing_package": exc.name}
            continue
        summary[key] = func(ctx)
        if stage.endswith(":core_stage"):
            summary[key]["synth_seconds"] = round(synth_seconds, 2)
        ctx.summary = summary
    summary["demo"] = {
        "seconds": round(time.perf_counter() - start, 2),
        "world": world,
        "images": config.images,
        "photos_per_split": dict(Counter(t["subset"] for t in load_truth(synthetic_dir))),
        "size": size,
        "seed": seed,
        "stage_seconds": {
            key: value["seconds"]
            for key, value in summary.items()
            if isinstance(value, dict) and "seconds" in value
        },
    }
    atomic_write_json(out / "summary.json", summary)
    report_path = ctx.report.write(summary)
    logger.info("wrote %s and %s", out / "summary.json", report_path)
    return summary


def main(
    out_dir: str | None = None, images: int = 0, size: int = 768, seed: int = 0, world: str = DEFAULT_WORLD
) -> str:
    """Run the end-to-end demo on the synthetic set and write summary.json and report.html.

    Args:
        out_dir: output folder (summary.json, report.html, img/, synthetic/), emptied first but for
            its FiftyOne database (a folder of anything else is refused); default:
            QUADRATSEG_OUTPUTS_DIR/demo.
        images: synthetic quadrats to generate (0: 60 in the varied world, 36 / 12 / 12 in train,
            val and test; 36 in the simple one, a third each).
        size: raw photo width in px.
        seed: random seed of the synthetic set.
        world: ``varied`` (the default: frames, reefs and water drawn per photo; docs/synthetic.md)
            or ``simple`` (a pale frame on sand, the fast toy of the unit tests).

    Returns:
        The path of report.html.
    """
    from quadratseg.cli import current_settings, output_path

    settings = current_settings()
    out = output_path(out_dir, "demo", settings)
    summary = run_demo(settings, out, images, size, seed, world=world)
    skipped = skipped_stages(summary)
    if skipped:
        raise QuadratsegError(
            f"the demo ran without the stages {', '.join(skipped)} ({out / 'summary.json'} says why): "
            "install every extra with make install (pip install -e '.[all,dev]' and ./loopback)"
        )
    return str(out / "report.html")


def skipped_stages(summary: dict[str, Any]) -> list[str]:
    """The stages a demo summary marks skipped for a missing package (the demo then fails; a stage
    skipped for missing data, such as ../shared/data, is not one of them).

    Examples:
        >>> skipped_stages({"bridge": {"skipped": "x", "missing_package": "loopback"}, "demo": {}})
        ['bridge']
        >>> skipped_stages({"bridge": {"skipped": "the CVAT stand-in needs ../shared/data"}})
        []
    """
    return [key for key, value in summary.items() if isinstance(value, dict) and value.get("missing_package")]


if __name__ == "__main__":
    from quadratseg.cli import run

    run(main, name="pipeline.demo")
