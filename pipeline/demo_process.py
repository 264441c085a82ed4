"""Demo stage: the whole chain on the raw test photos with the models the demo trained.

Predicted corners -> warp -> predicted grid -> grid removal (OpenCV Telea: no LaMa weights in the
demo, named as such) -> YOLO colonies -> cover over the observed quadrat with intervals. Scored
against the synthetic truth: cover error per genus (percentage points), the share of true covers
inside the 95 % intervals (calibration), and a CoralNet-style point CSV sampled from the truth
scored at the chain's predictions through the chain's own homographies.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.chain import ChainModels
from pipeline.points import score_points
from pipeline.run import process_folder
from quadratseg.cover import (
    Z95,
    calibrate_boundary_px,
    calibrate_miss_pp,
    interval_coverage,
    label_map,
    percent_cover,
)
from quadratseg.formats.coralnet import SUBSTRATE, sample_points, write_coralnet_csv
from quadratseg.synth.dataset import export_image_path, load_truth
from quadratseg.warp import transform_points

EVAL_SPLIT = "test"
CALIBRATION_SPLIT = "val"
ENSEMBLE_LEVEL = "main_family"
POINTS_PER_PHOTO = 50


def true_cover(truth: dict[str, Any], level: str = "finegrained") -> dict[str, float]:
    """Cover (%) of one synthetic quadrat over its whole warped interior at a taxonomy level."""
    from quadratseg.taxonomy import load_taxonomy

    pairs = [(c["label"], np.asarray(c["polygon_xy"])) for c in truth["corals"]]
    return percent_cover(pairs, tuple(truth["warped_size"]), load_taxonomy(), level)


def level_mae(truths: list[dict[str, Any]], cover_csv: Path, level: str) -> float | None:
    """Mean absolute cover error (percentage points) at ``level`` over photo x class pairs present in
    the truth or the prediction."""
    with cover_csv.open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["level"] == level]
    errors = [
        abs((float(row["percent"]) if row else 0.0) - truth) for truth, row in compared(truths, rows, level)
    ]
    return round(float(np.mean(errors)), 3) if errors else None


def compare_segmenters(ctx: Any, models: ChainModels, root: Path) -> dict[str, float | None]:
    """Cover error at the main-family level on the test photos: YOLO alone, MMSeg alone and the three
    ensembles, each through the whole chain (the demo's MMSeg model knows the main families)."""
    from dataclasses import replace

    semantic = ctx.shared.get("semantic_segmenter")
    truths = [t for t in load_truth(ctx.synthetic_dir) if t["subset"] == EVAL_SPLIT]
    out = {"yolo": level_mae(truths, root / f"out_{EVAL_SPLIT}" / "cover.csv", ENSEMBLE_LEVEL)}
    if semantic is None:
        return out
    variants = {
        "mmseg": replace(models, segment=None, semantic=semantic),
        "weighted": replace(models, semantic=semantic, ensemble="weighted"),
        "voting": replace(models, semantic=semantic, ensemble="voting"),
        "nms": replace(models, semantic=semantic, ensemble="nms"),
    }
    photos = root / f"photos_{EVAL_SPLIT}"
    for name, variant in variants.items():
        process_folder(photos, root / f"out_{name}", variant, fingerprint=f"demo-{name}-{time.time()}")
        out[name] = level_mae(truths, root / f"out_{name}" / "cover.csv", ENSEMBLE_LEVEL)
    return out


def truth_points_csv(truths: list[dict[str, Any]], out_csv: Path, seed: int) -> Path:
    """A CoralNet-style CSV of points labelled from the truth: sampled in each true quadrat, written
    in raw-photo pixels, label = the true genus there (``substrate`` off colonies)."""
    rows = []
    for t in truths:
        size = tuple(t["warped_size"])
        index, names = label_map([(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]], size)
        warped = sample_points(size, POINTS_PER_PHOTO, "random", seed)
        raw = transform_points(warped, np.asarray(t["homography_warped_to_raw"]))
        for (x, y), (u, v) in zip(raw, warped, strict=True):
            k = int(index[int(v), int(u)])
            rows.append((t["name"], float(x), float(y), names[k - 1] if k else SUBSTRATE))
    return write_coralnet_csv(rows, out_csv)


def identity_mapping(labels: list[str], path: Path) -> Path:
    """The label mapping of a CSV written with our own labels (each maps to itself)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["coralnet", "label"])
        writer.writerows([[label, label] for label in labels] + [[SUBSTRATE, SUBSTRATE]])
    return path


def _run_split(
    ctx: Any, split: str, models: ChainModels, root: Path
) -> tuple[dict[str, Any], list, list, float]:
    """The chain on the raw photos of one split: (summary, finegrained cover rows, truths, seconds)."""
    truths = [t for t in load_truth(ctx.synthetic_dir) if t["subset"] == split]
    photos = root / f"photos_{split}"
    photos.mkdir(parents=True, exist_ok=True)
    for t in truths:
        link = photos / t["name"]
        if not link.exists():
            source = export_image_path(ctx.synthetic_dir / "cvat_exports" / "corners", split, t["name"])
            link.symlink_to(source.resolve())
    start = time.perf_counter()
    summary = process_folder(photos, root / f"out_{split}", models, fingerprint=f"demo-{split}-{time.time()}")
    seconds = time.perf_counter() - start
    with (root / f"out_{split}" / "cover.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["level"] == "finegrained"]
    return summary, rows, truths, seconds


def compared(
    truths: list[dict[str, Any]], rows: list[dict[str, str]], level: str = "finegrained"
) -> list[tuple[float, dict[str, str] | None]]:
    """(true cover, predicted row or None) per photo and class present in the truth or the prediction,
    ``rows`` being cover.csv rows at ``level``."""
    predicted = {(r["photo"], r["label"]): r for r in rows}
    pairs = []
    for t in truths:
        real = true_cover(t, level)
        labels = {
            label for (photo, label), r in predicted.items() if photo == t["name"] and float(r["percent"]) > 0
        }
        for label in sorted(labels | {k for k, v in real.items() if v > 0}):
            pairs.append((real.get(label, 0.0), predicted.get((t["name"], label))))
    return pairs


def fit_interval_terms(pairs: list[tuple[float, dict[str, str] | None]]) -> tuple[float, float, float]:
    """(boundary_px, miss_pp, coverage of the confidence term alone) fitted on held-out (true cover,
    cover.csv row) pairs of a chain run without either term (quadratseg.cover)."""
    predicted = [(truth, row) for truth, row in pairs if row is not None and int(row["colonies"]) > 0]
    boundary = calibrate_boundary_px(
        [float(row["percent"]) - truth for truth, row in predicted],
        [float(row["sd"]) for _, row in predicted],
        [float(row["perimeter_px"]) / float(row["observed_pixels"]) for _, row in predicted],
    )
    lows, highs = [], []
    for _, row in pairs:
        if row is None or int(row["colonies"]) == 0:
            lows.append(0.0)
            highs.append(0.0)
            continue
        per = 100 * float(row["perimeter_px"]) / float(row["observed_pixels"])
        half = Z95 * float(np.hypot(float(row["sd"]), per * boundary))
        lows.append(max(float(row["percent"]) - half, 0.0))
        highs.append(min(float(row["percent"]) + half, 100.0))
    truths = [truth for truth, _ in pairs]
    miss = calibrate_miss_pp(truths, lows, highs)
    alone = interval_coverage(
        truths,
        [float(row["low"]) if row else 0.0 for _, row in pairs],
        [float(row["high"]) if row else 0.0 for _, row in pairs],
    )
    return boundary, miss, alone


def stage(ctx: Any) -> dict[str, Any]:
    """Run the chain on the raw validation photos (to fit the intervals' outline term) and on the
    raw test photos (scored against the truth)."""
    from grid_inpainting.inpaint import select_backend
    from quadratseg.taxonomy import load_taxonomy

    start = time.perf_counter()
    pose = ctx.shared.get("pose_predictors", {})
    segment = ctx.shared.get("seg_predictor")
    if segment is None or "gridcorners" not in pose or "gridpose" not in pose:
        return {"skipped": "the pose and segmentation stages did not run"}
    root = ctx.out_dir / "process"
    models = ChainModels(
        segment=segment,
        corners=pose["gridcorners"],
        grid=pose["gridpose"],
        inpaint=select_backend("opencv-telea", ctx.settings),
    )
    # the outline and miss terms of the intervals, fitted on the validation photos (held out)
    _, val_rows, val_truths, _ = _run_split(ctx, CALIBRATION_SPLIT, models, root)
    val_pairs = compared(val_truths, val_rows)
    models.boundary_px, models.miss_pp, alone = fit_interval_terms(val_pairs)
    summary, rows, truths, chain_seconds = _run_split(ctx, EVAL_SPLIT, models, root)
    pairs = compared(truths, rows)
    errors = [abs((float(row["percent"]) if row else 0.0) - truth) for truth, row in pairs]
    lows = [float(row["low"]) if row else 0.0 for _, row in pairs]
    highs = [float(row["high"]) if row else 0.0 for _, row in pairs]
    truth_values = [truth for truth, _ in pairs]
    segmenters = compare_segmenters(ctx, models, root)
    points_csv = truth_points_csv(truths, root / "truth_points.csv", ctx.seed)
    mapping = identity_mapping(load_taxonomy().classes(), root / "label_mapping.csv")
    points = score_points(root / f"out_{EVAL_SPLIT}", points_csv, mapping)
    metrics = {
        "photos": summary["photos"],
        "failed": summary["failed"],
        "with_cover": summary["with_cover"],
        "variant": summary["variant"],
        "cover_mae_pp": round(float(np.mean(errors)), 3) if errors else None,
        "interval_coverage": round(interval_coverage(truth_values, lows, highs), 4) if errors else None,
        # the same on the classes the model predicted on the photo (a class it missed entirely is
        # outside any interval of this method)
        "interval_coverage_predicted_classes": round(
            interval_coverage(
                [truth for truth, row in pairs if row and int(row["colonies"]) > 0],
                [float(row["low"]) for _, row in pairs if row and int(row["colonies"]) > 0],
                [float(row["high"]) for _, row in pairs if row and int(row["colonies"]) > 0],
            ),
            4,
        )
        if any(row and int(row["colonies"]) > 0 for _, row in pairs)
        else None,
        "missed_classes": sum(
            1 for truth, row in pairs if truth > 0 and not (row and int(row["colonies"]) > 0)
        ),
        "cover_comparisons": len(errors),
        "interval_method": rows[0]["method"] if rows else None,
        "boundary_px": round(models.boundary_px, 3),
        "miss_pp": round(models.miss_pp, 3),
        "calibration_pairs": len(val_pairs),
        "interval_coverage_on_calibration_split": round(alone, 4) if val_pairs else None,
        "main_family_cover_mae_pp": segmenters,
        "point_accuracy": points["point_accuracy"],
        "points_scored": points["scored"],
        "points_outside_quadrat": points["outside_quadrat"],
        "point_cover_mae_pp": points["cover_mae_pp"],
        "dense_inside_point_interval": points["dense_inside_point_interval"],
        "seconds_per_photo": round(chain_seconds / max(summary["photos"], 1), 3),
        "seconds": round(time.perf_counter() - start, 2),
    }
    section = ctx.report.section("The chain on raw photos (pipeline.process)")
    section.paragraphs.append(
        f"pipeline.process ran the {metrics['variant']} chain on the {summary['photos']} raw "
        f"{EVAL_SPLIT} photos with the models trained above (predicted corners and grid, no annotation): "
        f"{summary['with_cover']} reached a cover, {summary['failed']} failed, "
        f"{metrics['seconds_per_photo']} s per photo. Cover per genus over the observed quadrat (the "
        f"pixels under the grid mask are left out) is {metrics['cover_mae_pp']} percentage points from "
        f"the truth on average over {metrics['cover_comparisons']} photo x genus pairs. Intervals "
        f"({metrics['interval_method']}): the outline term ({metrics['boundary_px']} px) and the miss "
        f"term ({metrics['miss_pp']} percentage points on every upper bound) were fitted split-"
        f"conformally on {metrics['calibration_pairs']} photo x genus pairs of the {CALIBRATION_SPLIT} "
        "photos, where the confidence term alone held "
        f"{100 * (metrics['interval_coverage_on_calibration_split'] or 0):.0f} % of the true covers; on "
        f"the test photos {100 * (metrics['interval_coverage'] or 0):.0f} % of the true covers lie "
        f"inside the 95 % intervals ({100 * (metrics['interval_coverage_predicted_classes'] or 0):.0f} % "
        f"on the classes the model predicted; {metrics['missed_classes']} photo x genus pairs were missed "
        f"entirely, covered only by the miss term). {points['scored']} CoralNet-style points "
        "sampled from the truth, "
        f"mapped into the quadrat with the predicted corners: {100 * points['point_accuracy']:.1f} % "
        "labelled right. Main-family cover error by segmentation (percentage points): "
        + ", ".join(f"{k} {v}" for k, v in segmenters.items())
        + " (YOLO alone, MMSeg alone, the two fused per pixel by weights or votes, and their colonies "
        "pooled with mask NMS)."
    )
    section.tables.append(
        (
            "Outputs",
            ["file", "what"],
            [
                ["status.csv", "each stage's outcome per photo"],
                ["cover.csv", "cover per photo x level x class with 95 % intervals"],
                ["cover_summary.csv", "mean over quadrats per site/year with t intervals"],
                ["truth_points.csv", "CoralNet-style points from the truth (scored)"],
            ],
        )
    )
    return metrics
