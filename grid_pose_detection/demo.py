"""Demo stage: train the corner and grid pose models briefly, evaluate them, show the warped quadrats.

Uses the FiftyOne datasets the data_engineering stage built (``demo_corners`` on raw photos,
``demo_grid`` on warped photos). Training is short (CPU minutes, from scratch), so the figures
measure a working pipeline, not a finished model; the report says how long each model trained.
The grid model's keypoints are handed to the grid-removal stage (``ctx.shared``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from grid_pose_detection.evaluate import evaluate_samples
from grid_pose_detection.predictor import PosePredictor
from grid_pose_detection.prepare_data import write_pose_layout
from grid_pose_detection.tasks import get_task
from quadratseg.images import read_image_rgb
from quadratseg.keypoints import grid_neighbour_pairs
from quadratseg.visualize import draw_keypoints
from quadratseg.yolo_train import load_experiment, train_yolo

DATASETS = {"gridcorners": "demo_corners", "gridpose": "demo_grid"}
# Short CPU training from scratch: SGD at lr 0.01 learns where AdamW at 0.001 stalls this early;
# no early stopping (pose mAP stays 0 for tens of epochs while the points converge). nbs = batch:
# ultralytics accumulates gradients up to a nominal batch of 64, so with 14 images (2 batches per
# epoch) it would step the optimizer once every 4 epochs; stepping every batch halves the time to a
# given error (corners: 36.9 px after 150 epochs in 127 s, against 40.5 px after 300 in 263 s).
# Corners: 320 px, keypoint loss doubled (pose 24), lr0 0.02 (71 px at 256 px, 200 epochs, defaults).
# Grid: the 117-point head costs ~1.5 s per epoch here; 150 epochs find the grid's box (mAP50 0.99)
# but not yet its points (265 px off), so the demo spends only 20 epochs on it.
TRAINING = {
    "gridcorners": {"epochs": 150, "imgsz": 320, "pose": 24.0, "lr0": 0.02},
    "gridpose": {"epochs": 20, "imgsz": 256},
}
SHORT_RUN = {
    "optimizer": "SGD",
    "lr0": 0.01,
    "mosaic": 0.0,
    "patience": 0,
    "batch": 8,
    "nbs": 8,
    "workers": 0,
    "plots": False,
}
WARP_SIZE = 768
EVAL_SPLIT = "test"


def _train_and_evaluate(ctx: Any, task_name: str) -> tuple[dict[str, Any], PosePredictor]:
    import fiftyone as fo

    task = get_task(task_name)
    samples = fo.load_dataset(DATASETS[task_name])
    root = ctx.out_dir / "pose" / task_name
    write_pose_layout(task, samples, root, overwrite=True)
    epochs = max(1, round(TRAINING[task_name]["epochs"] * ctx.training_scale))
    config = load_experiment(
        task.config, {**SHORT_RUN, **TRAINING[task_name], "epochs": epochs, "seed": ctx.seed}
    )
    start = time.perf_counter()
    run = train_yolo(config, root / "data.yaml", ctx.out_dir / "runs", task_name, ctx.settings.num_threads)
    seconds = time.perf_counter() - start
    imgsz = TRAINING[task_name]["imgsz"]
    # low thresholds: a briefly trained model is unsure of its boxes before its points are useless
    predictor = PosePredictor(
        run["best"], task, conf=0.05, kpt_conf=0.2, imgsz=imgsz, warp_size=(WARP_SIZE, WARP_SIZE)
    )
    # the test split: val picked the checkpoint (best.pt), so its figures would flatter the model
    metrics = evaluate_samples(predictor, samples.match_tags(EVAL_SPLIT), warp_size=WARP_SIZE)
    metrics["train_seconds"] = round(seconds, 1)
    metrics["epochs"] = epochs
    metrics["imgsz"] = imgsz
    return metrics, predictor


def stage(ctx: Any) -> dict[str, Any]:
    """Train, evaluate and illustrate both pose tasks."""
    import fiftyone as fo

    start = time.perf_counter()
    corners, corner_model = _train_and_evaluate(ctx, "gridcorners")
    grid, grid_model = _train_and_evaluate(ctx, "gridpose")
    section = ctx.report.section("Corners and grid (grid_pose_detection)")
    section.paragraphs.append(
        f"YOLO11n-pose trained from scratch on CPU: {corners['epochs']} epochs on the raw photos at "
        f"{corners['imgsz']} px ({corners['train_seconds']} s) and {grid['epochs']} epochs on the "
        f"warped photos at {grid['imgsz']} px ({grid['train_seconds']} s). On the "
        f"{corners['images']} test images: "
        f"corner error {corners['mean_px_error']} px and grid error {grid['mean_px_error']} px "
        "(mean, image pixels); every point found and in its own template slot on "
        f"{100 * grid['correct_assignment_rate']:.0f} % of grids and "
        f"{100 * corners['correct_assignment_rate']:.0f} % of corner sets; PCK (within 1 % of the "
        f"quadrat side) {grid['pck_1pct']} for the grid and {corners['pck_1pct']} for the corners. "
        "Upstream's targets (< 5 px corners, < 3 px grid, > 95 % matching) are for fully trained models."
    )
    rows = [
        [
            t,
            m["mean_px_error"],
            m["p95_px_error"],
            m["correct_assignment_rate"],
            m["pck_1pct"],
            m["found_share"],
            m["train_seconds"],
        ]
        for t, m in (("gridcorners", corners), ("gridpose", grid))
    ]
    section.tables.append(
        (
            f"Pose metrics ({EVAL_SPLIT} split)",
            ["task", "mean px", "p95 px", "all in right slot", "PCK@1%", "found", "train s"],
            rows,
        )
    )
    sample = fo.load_dataset(DATASETS["gridcorners"]).match_tags("test").first()
    raw = read_image_rgb(sample.filepath)
    (pred,) = corner_model.predict([raw])
    edges = [(0, 1), (1, 2), (2, 3), (3, 0)]
    overlay = draw_keypoints(
        raw, pred.keypoints_xy, (255, 40, 40), max(4, raw.shape[1] // 150), edges, numbered=True
    )
    ctx.report.add_image(
        section, "pose_corners", overlay, f"predicted corners on {Path(sample.filepath).name}"
    )
    warped = corner_model.warp(raw, pred)
    if warped is not None:
        ctx.report.add_image(section, "pose_warped", warped, "quadrat warped with the predicted corners")
    else:
        section.paragraphs.append(f"No warp for this image: {pred.warp_error}")
    # the grid model's keypoints for every warped photo, for the grid-removal stage
    grid_samples = fo.load_dataset(DATASETS["gridpose"])
    predicted = {}
    for s in grid_samples:
        image = read_image_rgb(s.filepath)
        predicted[s.cvat_image_name] = grid_model.predict([image])[0].keypoints_xy
    ctx.shared["grid_keypoints"] = predicted
    gsample = grid_samples.match_tags("test").first()
    gimage = read_image_rgb(gsample.filepath)
    gkp = predicted[gsample.cvat_image_name]
    found = int((gkp == gkp).all(axis=1).sum())
    grid_edges = [tuple(p) for p in grid_neighbour_pairs()]
    ctx.report.add_image(
        section,
        "pose_grid",
        draw_keypoints(gimage, gkp, (250, 220, 40), 3, grid_edges),
        f"predicted grid, {found} of 117 points matched",
    )
    return {
        "corner_mean_px_error": corners["mean_px_error"],
        "grid_mean_px_error": grid["mean_px_error"],
        "correct_assignment_rate": grid["correct_assignment_rate"],
        "corner_correct_assignment_rate": corners["correct_assignment_rate"],
        "pck_1pct": grid["pck_1pct"],
        "corner_pck_1pct": corners["pck_1pct"],
        "corner_warp_mean_px_error": corners.get("warp_mean_px_error"),
        "gridcorners": {k: v for k, v in corners.items() if k != "per_point_mean_px_error"},
        "gridpose": {k: v for k, v in grid.items() if k != "per_point_mean_px_error"},
        "split": EVAL_SPLIT,
        "note": "test images of the demo set (val picked the checkpoints); errors in image pixels",
        "seconds": round(time.perf_counter() - start, 2),
    }
