"""CLI: keypoint errors, template-matching success and (corners) warp errors on a FiftyOne split.

    python -m grid_pose_detection.evaluate gridpose best.pt DATASET [--split test] [--data data.yaml]

- ``matching_success_rate``: share of images whose every visible true keypoint was found *and*
  put in its own template slot: the point predicted in slot i lies within half the distance from
  true point i to its nearest neighbour (a grid found in the right place but shifted by a row or
  mirrored counts as a failure).
- ``complete_rate``: share of images whose every visible true keypoint was found (in some slot).
- ``pck_1pct``: share of visible true keypoints whose predicted point (same slot) lies within
  1 % of the quadrat side (the side measured on the truth: the mean edge of the true quadrat,
  whose corners come from the template fitted to the true points); missing points count as misses.
- ``mean_px_error`` / ``p95_px_error``: distance between matched and true keypoints (visible truth).
- corners: ``warp_mean_px_error``: how far the predicted warp moves points of the true warped
  quadrat (a 10 x 10 lattice), in warped pixels (``warp_size``).
- ``refined_share``: share of the predicted points that moved to image evidence (sub-pixel
  refinement); ``filled``: grid points the model missed, proposed by the grid's homography and
  confirmed by a string crossing; ``no_grid``: images taken to have no grid.
- with ``--data``: ultralytics' own pose mAP@0.5 and mAP@0.5:0.95 on the same split.
- with ``--ablation``: the same figures without refinement, under ``without_refinement``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from grid_pose_detection.predictor import PosePredictor
from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import keypoints_to_pixels
from quadratseg.images import read_image_rgb
from quadratseg.keypoints import quadrat_side_px
from quadratseg.warp import quadrat_homography, transform_points


def warp_error(
    true_corners: np.ndarray, predicted_corners: np.ndarray, warp_size: int | tuple[int, int]
) -> float:
    """Mean displacement (warped px) of a 10 x 10 lattice of the true warped quadrat, predicted warp.

    Both warps map to the same ``warp_size`` (a side, or (width, height) for rectangular
    quadrats); 0 when the predicted corners are the true ones.
    """
    size = (warp_size, warp_size) if isinstance(warp_size, int) else tuple(warp_size)
    true_h = quadrat_homography(true_corners, size)
    predicted_h = quadrat_homography(predicted_corners, size)
    lattice = np.stack(np.meshgrid(np.linspace(0, size[0], 10), np.linspace(0, size[1], 10)), -1).reshape(
        -1, 2
    )
    through = transform_points(transform_points(lattice, np.linalg.inv(true_h)), predicted_h)
    return float(np.linalg.norm(through - lattice, axis=1).mean())


PCK_SHARE = 0.01  # PCK tolerance: 1 % of the quadrat side


def slot_assignment(
    predicted_xy: np.ndarray, truth_xy: np.ndarray, visible: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per true point: found (visible, with a prediction in its slot) and right (that prediction
    lies closer to it than half the distance to its nearest other visible true point, so no other
    true point is nearer). Both (K,) bool, False where the truth is not visible."""
    found = np.isfinite(predicted_xy).all(axis=1) & visible
    right = np.zeros(len(truth_xy), dtype=bool)
    idx = np.flatnonzero(visible)
    if found.any():
        gaps = np.linalg.norm(truth_xy[idx][:, None, :] - truth_xy[idx][None, :, :], axis=2)
        np.fill_diagonal(gaps, np.inf)
        radius = np.full(len(truth_xy), np.inf)
        radius[idx] = gaps.min(axis=1) / 2 if len(idx) > 1 else np.inf
        d = np.linalg.norm(np.nan_to_num(predicted_xy, nan=np.inf) - truth_xy, axis=1)
        right = found & (d < radius)
    return found, right


def pck(
    predicted_xy: np.ndarray, truth_xy: np.ndarray, visible: np.ndarray, side_px: float
) -> tuple[int, int]:
    """(points within PCK_SHARE * side_px of their truth, visible true points)."""
    d = np.linalg.norm(predicted_xy - truth_xy, axis=1)
    hit = visible & np.isfinite(d) & (np.nan_to_num(d, nan=np.inf) <= PCK_SHARE * side_px)
    return int(hit.sum()), int(visible.sum())


def evaluate_samples(
    predictor: PosePredictor,
    samples: Any,
    warp_size: int | tuple[int, int] | None = None,
    refine: bool | None = None,
    ablation: bool = False,
) -> dict[str, Any]:
    """Errors and matching success of ``predictor`` on FiftyOne samples holding the task's keypoints.

    ``warp_size`` (a side or (width, height)) of the corner warp errors defaults to the predictor's.
    ``refine`` overrides the predictor's sub-pixel refinement; ``ablation`` adds the figures
    without it under ``without_refinement``.
    """
    warp_size = predictor.warp_size if warp_size is None else warp_size
    result = _evaluate(predictor, samples, warp_size, refine)
    if ablation:
        plain = _evaluate(predictor, samples, warp_size, refine=False)
        result["without_refinement"] = {k: v for k, v in plain.items() if k != "per_point_mean_px_error"}
    return result


def _evaluate(
    predictor: PosePredictor, samples: Any, warp_size: int | tuple[int, int], refine: bool | None
) -> dict[str, Any]:
    task = predictor.task
    errors, per_point, successes, warp_errors, images = [], [[] for _ in range(task.n_points)], 0, [], 0
    complete, pck_hits, pck_total, template = 0, 0, 0, task.template()
    refined = filled = no_grid = 0
    for sample in samples:
        value = sample[task.field]
        if value is None or not value.keypoints:
            continue
        image = read_image_rgb(sample.filepath)
        truth, visible = keypoints_to_pixels(value.keypoints[0], (image.shape[1], image.shape[0]))
        (pred,) = predictor.predict([image], refine=refine)
        images += 1
        if pred.refined is not None:
            refined += int(pred.refined.sum())
            filled += int(pred.filled.sum())
        no_grid += int(bool(pred.no_grid))
        found, right = slot_assignment(pred.keypoints_xy, truth, visible)
        complete += int(found.sum() == visible.sum())
        successes += int(right.sum() == visible.sum())
        side = quadrat_side_px(truth, visible, template)
        if side is not None:
            hits, total = pck(pred.keypoints_xy, truth, visible, side)
            pck_hits, pck_total = pck_hits + hits, pck_total + total
        d = np.linalg.norm(pred.keypoints_xy - truth, axis=1)
        errors.extend(d[found].tolist())
        for i in np.flatnonzero(found):
            per_point[i].append(float(d[i]))
        if task.name == "gridcorners" and pred.homography is not None and visible.all():
            warp_errors.append(warp_error(truth, pred.keypoints_xy, warp_size))
    if images == 0:
        raise QuadratsegError(f"no sample with {task.field} to evaluate")
    result = {
        "images": images,
        "matching_success_rate": round(successes / images, 4),
        "complete_rate": round(complete / images, 4),
        "pck_1pct": round(pck_hits / pck_total, 4) if pck_total else None,
        "mean_px_error": round(float(np.mean(errors)), 3) if errors else None,
        "p95_px_error": round(float(np.percentile(errors, 95)), 3) if errors else None,
        "found_share": round(len(errors) / max(images * task.n_points, 1), 4),
        "refined_share": round(refined / max(len(errors), 1), 4),
        "filled": filled,
        "no_grid": no_grid,
        "per_point_mean_px_error": [round(float(np.mean(v)), 2) if v else None for v in per_point],
    }
    if task.name == "gridcorners":
        result["warped"] = len(warp_errors)
        result["warp_mean_px_error"] = round(float(np.mean(warp_errors)), 3) if warp_errors else None
        result["warp_p95_px_error"] = round(float(np.percentile(warp_errors, 95)), 3) if warp_errors else None
    return result


def ultralytics_metrics(
    weights: str, data: str, split: str, imgsz: int | None = None, device: str = "auto"
) -> dict[str, float]:
    """Pose mAP from ultralytics' own validator on the prepared split (``device`` auto: its choice)."""
    from quadratseg.yolo_train import run_validator

    _, metrics = run_validator(weights, data, split, imgsz, device)
    return {
        "pose_map50": round(float(metrics.pose.map50), 4),
        "pose_map50_95": round(float(metrics.pose.map), 4),
        "box_map50": round(float(metrics.box.map50), 4),
    }


def evaluate(
    task: str,
    weights: str,
    dataset: str,
    split: str = "test",
    data: str | None = None,
    conf: float | None = None,
    kpt_conf: float | None = None,
    max_cost: float | None = None,
    imgsz: int | None = None,
    warp_size: int | None = None,
    ablation: bool = False,
) -> str:
    """Evaluate a pose model on the samples of a FiftyOne dataset tagged with --split.

    Args:
        task: gridcorners or gridpose.
        weights: trained model.
        dataset: FiftyOne dataset with the task's keypoints.
        split: sample tag to evaluate (test, val, train).
        data: data.yaml of prepare_data, to add ultralytics' pose mAP.
        conf: detection (box) confidence threshold (default: the model card's, else 0.25).
        kpt_conf: keypoint confidence threshold (default: the model card's, else 0.5).
        max_cost: matching threshold, share of the photo's longer side (default: the card's, else
            the task's).
        imgsz: inference size (default: the training size).
        warp_size: warped side for the corner warp errors (default: the card's, else 1920).
        ablation: also report the figures without sub-pixel refinement.

    Returns:
        The metrics as JSON.
    """
    from quadratseg.cli import device, weights_path
    from quadratseg.fiftyone_io import load_dataset

    weights = weights_path(weights)  # names and lists arrive as typed: quadratseg.cli.run keeps text
    spec = get_task(task)
    view = load_dataset(dataset).match_tags(split)
    predictor = PosePredictor(
        weights,
        spec,
        conf=conf,
        kpt_conf=kpt_conf,
        max_cost=max_cost,
        imgsz=imgsz,
        device=device(),
        warp_size=warp_size,
        allow_warp_size_mismatch=True,  # the warp error is measured at any size
    )
    result = evaluate_samples(predictor, view, predictor.warp_size, ablation=ablation)
    result["settings"] = {
        "conf": predictor.conf,
        "kpt_conf": predictor.kpt_conf,
        "max_cost": predictor.max_cost,
        "from": predictor.settings.sources,
    }
    if data:
        result.update(ultralytics_metrics(weights, data, split, imgsz, device()))
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(evaluate, name="grid_pose_detection.evaluate")
