"""Demo stage: train the corner and grid pose models briefly, evaluate them, show the warped quadrats.

Uses the FiftyOne datasets the data_engineering stage built (``demo_corners`` on raw photos,
``demo_grid`` on warped photos). Training is short (CPU minutes), so the figures measure a
working pipeline, not a finished model; the report says how long each model trained.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2

from grid_pose_detection.evaluate import evaluate_samples
from grid_pose_detection.predictor import PosePredictor
from grid_pose_detection.prepare_data import write_pose_layout
from grid_pose_detection.tasks import get_task
from quadratseg.keypoints import grid_neighbour_pairs
from quadratseg.visualize import draw_keypoints
from quadratseg.yolo_train import load_experiment, train_yolo

DATASETS = {"gridcorners": "demo_corners", "gridpose": "demo_grid"}
TRAINING = {"gridcorners": {"epochs": 40, "imgsz": 320}, "gridpose": {"epochs": 40, "imgsz": 320}}


def _train_and_evaluate(ctx: Any, task_name: str) -> tuple[dict[str, Any], PosePredictor]:
    import fiftyone as fo

    task = get_task(task_name)
    samples = fo.load_dataset(DATASETS[task_name])
    root = ctx.out_dir / "pose" / task_name
    write_pose_layout(task, samples, root, overwrite=True)
    config = load_experiment(
        task.config,
        {**TRAINING[task_name], "batch": 4, "workers": 0, "plots": False, "patience": 100, "seed": ctx.seed},
    )
    start = time.perf_counter()
    run = train_yolo(config, root / "data.yaml", ctx.out_dir / "runs", task_name, ctx.settings.num_threads)
    seconds = time.perf_counter() - start
    predictor = PosePredictor(
        run["best"], task, kpt_conf=0.3, imgsz=TRAINING[task_name]["imgsz"], warp_size=(768, 768)
    )
    metrics = evaluate_samples(predictor, samples.match_tags(["val", "test"]), warp_size=768)
    metrics["train_seconds"] = round(seconds, 1)
    metrics["epochs"] = TRAINING[task_name]["epochs"]
    return metrics, predictor


def stage(ctx: Any) -> dict[str, Any]:
    """Train, evaluate and illustrate both pose tasks."""
    import fiftyone as fo

    start = time.perf_counter()
    corners, corner_model = _train_and_evaluate(ctx, "gridcorners")
    grid, grid_model = _train_and_evaluate(ctx, "gridpose")
    section = ctx.report.section("Corners and grid (grid_pose_detection)")
    section.paragraphs.append(
        f"YOLO11n-pose trained from scratch for {corners['epochs']} epochs on the raw photos "
        f"({corners['train_seconds']} s) and {grid['epochs']} epochs on the warped photos ({grid['train_seconds']} s) "
        f"at 320 px, on CPU. On the val/test images: corner error {corners['mean_px_error']} px, grid error "
        f"{grid['mean_px_error']} px (mean, image pixels), template matching complete on "
        f"{100 * grid['matching_success_rate']:.0f} % of grids and {100 * corners['matching_success_rate']:.0f} % of "
        "corner sets. Upstream targets (< 5 px corners, < 3 px grid, > 95 % matching) assume full training."
    )
    section.tables.append(
        (
            "Pose metrics (val + test)",
            ["task", "mean px", "p95 px", "matching success", "found", "train s"],
            [
                [
                    t,
                    m["mean_px_error"],
                    m["p95_px_error"],
                    m["matching_success_rate"],
                    m["found_share"],
                    m["train_seconds"],
                ]
                for t, m in (("gridcorners", corners), ("gridpose", grid))
            ],
        )
    )
    sample = fo.load_dataset(DATASETS["gridcorners"]).match_tags("test").first()
    raw = cv2.cvtColor(cv2.imread(sample.filepath), cv2.COLOR_BGR2RGB)
    (pred,) = corner_model.predict([raw])
    overlay = draw_keypoints(
        raw,
        pred.keypoints_xy,
        (255, 40, 40),
        max(4, raw.shape[1] // 150),
        [(0, 1), (1, 2), (2, 3), (3, 0)],
        numbered=True,
    )
    ctx.report.add_image(
        section, "pose_corners", overlay, f"predicted corners on {Path(sample.filepath).name}"
    )
    if pred.homography is not None:
        ctx.report.add_image(
            section, "pose_warped", corner_model.warp(raw, pred), "quadrat warped with the predicted corners"
        )
    else:
        section.paragraphs.append(f"No warp for this image: {pred.warp_error}")
    gsample = fo.load_dataset(DATASETS["gridpose"]).match_tags("test").first()
    warped = cv2.cvtColor(cv2.imread(gsample.filepath), cv2.COLOR_BGR2RGB)
    (gpred,) = grid_model.predict([warped])
    ctx.report.add_image(
        section,
        "pose_grid",
        draw_keypoints(
            warped, gpred.keypoints_xy, (250, 220, 40), 3, [tuple(p) for p in grid_neighbour_pairs()]
        ),
        f"predicted grid, {int(gpred.visible.sum())} of 117 points matched",
    )
    return {
        "corner_mean_px_error": corners["mean_px_error"],
        "grid_mean_px_error": grid["mean_px_error"],
        "matching_success_rate": grid["matching_success_rate"],
        "corner_matching_success_rate": corners["matching_success_rate"],
        "corner_warp_mean_px_error": corners.get("warp_mean_px_error"),
        "gridcorners": corners,
        "gridpose": {k: v for k, v in grid.items() if k != "per_point_mean_px_error"},
        "seconds": round(time.perf_counter() - start, 2),
        "note": "val + test images of the demo set; errors in image pixels",
    }
