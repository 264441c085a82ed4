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
from quadratseg.cover import label_map, percent_cover
from quadratseg.cover_stats import interval_coverage
from quadratseg.formats.coralnet import SUBSTRATE, sample_points, write_coralnet_csv
from quadratseg.synth.dataset import export_image_path, load_truth
from quadratseg.warp import transform_points

EVAL_SPLIT = "test"
POINTS_PER_PHOTO = 50


def true_cover(truth: dict[str, Any]) -> dict[str, float]:
    """Finegrained cover (%) of one synthetic quadrat over its whole warped interior."""
    pairs = [(c["label"], np.asarray(c["polygon_xy"])) for c in truth["corals"]]
    return percent_cover(pairs, tuple(truth["warped_size"]))


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


def stage(ctx: Any) -> dict[str, Any]:
    """Run ``pipeline.process`` on the raw test photos and score it against the truth."""
    from grid_inpainting.inpaint import select_backend
    from quadratseg.taxonomy import load_taxonomy

    start = time.perf_counter()
    pose = ctx.shared.get("pose_predictors", {})
    segment = ctx.shared.get("seg_predictor")
    if segment is None or "gridcorners" not in pose or "gridpose" not in pose:
        return {"skipped": "the pose and segmentation stages did not run"}
    truths = [t for t in load_truth(ctx.synthetic_dir) if t["subset"] == EVAL_SPLIT]
    root = ctx.out_dir / "process"
    photos = root / "photos_in"
    photos.mkdir(parents=True, exist_ok=True)
    for t in truths:
        link = photos / t["name"]
        if not link.exists():
            source = export_image_path(ctx.synthetic_dir / "cvat_exports" / "corners", EVAL_SPLIT, t["name"])
            link.symlink_to(source.resolve())
    models = ChainModels(
        segment=segment,
        corners=pose["gridcorners"],
        grid=pose["gridpose"],
        inpaint=select_backend("opencv-telea", ctx.settings),
    )
    chain_start = time.perf_counter()
    summary = process_folder(photos, root / "out", models, fingerprint=f"demo-{time.time()}")
    chain_seconds = time.perf_counter() - chain_start
    # cover against the truth, per photo and class (classes in the truth or the prediction)
    rows = list(csv.DictReader((root / "out" / "cover.csv").open(encoding="utf-8")))
    predicted = {(r["photo"], r["label"]): r for r in rows if r["level"] == "finegrained"}
    errors, truth_values, lows, highs = [], [], [], []
    for t in truths:
        real = true_cover(t)
        labels = {
            label for (photo, label), r in predicted.items() if photo == t["name"] and float(r["percent"]) > 0
        }
        for label in sorted(labels | {k for k, v in real.items() if v > 0}):
            row = predicted.get((t["name"], label))
            value = float(row["percent"]) if row else 0.0
            errors.append(abs(value - real.get(label, 0.0)))
            truth_values.append(real.get(label, 0.0))
            lows.append(float(row["low"]) if row else 0.0)
            highs.append(float(row["high"]) if row else 0.0)
    points_csv = truth_points_csv(truths, root / "truth_points.csv", ctx.seed)
    mapping = identity_mapping(load_taxonomy().classes(), root / "label_mapping.csv")
    points = score_points(root / "out", points_csv, mapping)
    metrics = {
        "photos": summary["photos"],
        "failed": summary["failed"],
        "with_cover": summary["with_cover"],
        "variant": summary["variant"],
        "cover_mae_pp": round(float(np.mean(errors)), 3) if errors else None,
        "interval_coverage": round(interval_coverage(truth_values, lows, highs), 4) if errors else None,
        "cover_comparisons": len(errors),
        "interval_method": rows[0]["method"] if rows else None,
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
        f"{EVAL_SPLIT} photos "
        f"with the models trained above (predicted corners and grid, no annotation): {summary['with_cover']} "
        f"reached a cover, {summary['failed']} failed, {metrics['seconds_per_photo']} s per photo. "
        f"Cover per genus over the observed quadrat (the pixels under the grid mask are left out) is "
        f"{metrics['cover_mae_pp']} percentage points from the truth on average over "
        f"{metrics['cover_comparisons']} photo x genus pairs; "
        f"{100 * (metrics['interval_coverage'] or 0):.0f} % of the true covers lie inside the 95 % "
        f"intervals ({metrics['interval_method']}: it reflects which colonies the model was unsure of, "
        "not their outlines; a share far below 95 % says the intervals are too narrow). "
        f"{points['scored']} CoralNet-style points sampled from the truth, mapped into the quadrat "
        f"with the predicted corners: {100 * points['point_accuracy']:.1f} % labelled right."
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
