"""Demo stage: the whole chain on the raw test photos with the models the demo trained.

Predicted corners -> warp -> predicted grid -> grid removal (OpenCV Telea: no LaMa weights in the
demo, named as such) -> YOLO colonies -> cover over the observed quadrat with intervals. Scored
against the synthetic truth: cover error per genus (percentage points), the share of true covers
inside the 95 % intervals (calibration), and a CoralNet-style point CSV sampled from the truth
scored at the chain's predictions through the chain's own homographies.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.chain import ChainModels
from pipeline.points import score_points
from pipeline.run import process_folder
from quadratseg.cover import (
    CoverCalibration,
    CoverEstimate,
    fit_cover_calibration,
    interval_coverage,
    label_map,
    percent_cover,
    reapplied,
    wilson_interval,
)
from quadratseg.cover_table import write_table
from quadratseg.formats.coralnet import SUBSTRATE, sample_points, write_coralnet_csv
from quadratseg.synth.dataset import coral_rings, export_image_path, load_truth
from quadratseg.warp import transform_points

EVAL_SPLIT = "test"
CALIBRATION_SPLIT = "val"
ENSEMBLE_LEVEL = "main_family"
POINTS_PER_PHOTO = 50


def true_cover(truth: dict[str, Any], level: str = "finegrained") -> dict[str, float]:
    """Cover (%) of one synthetic quadrat over its whole warped interior at a taxonomy level (a
    colony's holes, its dead patches, are not coral)."""
    from quadratseg.taxonomy import load_taxonomy

    pairs = [(c["label"], coral_rings(c)) for c in truth["corals"]]
    return percent_cover(pairs, tuple(truth["warped_size"]), load_taxonomy(), level)


def level_rows(cover_csv: Path, level: str) -> list[dict[str, str]]:
    """The rows of a ``cover.csv`` at one taxonomy level."""
    with cover_csv.open(encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["level"] == level]


def level_mae(truths: list[dict[str, Any]], cover_csv: Path, level: str) -> float | None:
    """Mean absolute cover error (percentage points) at ``level`` over photo x class pairs present in
    the truth or the prediction."""
    rows = level_rows(cover_csv, level)
    errors = [
        abs((float(row["percent"]) if row else 0.0) - truth) for truth, row in compared(truths, rows, level)
    ]
    return round(float(np.mean(errors)), 3) if errors else None


def segmenter_variants(models: ChainModels, semantic: Any) -> dict[str, ChainModels]:
    """The chains the demo compares: YOLO alone and, with the demo's MMSeg model, MMSeg alone and
    the three ensembles (all with the same corner, grid and removal stages)."""
    from dataclasses import replace

    variants = {"yolo": models}
    if semantic is not None:
        variants["mmseg"] = replace(models, segment=None, semantic=semantic)
        for method in ("weighted", "voting", "nms"):
            variants[method] = replace(models, semantic=semantic, ensemble=method)
    return variants


def calibrated_run(ctx: Any, name: str, models: ChainModels, root: Path) -> dict[str, Any]:
    """One segmenter's chain: its interval terms fitted on the validation photos (held out), then
    the test photos with them, scored against the truth (interval coverage at the model's own
    level, cover error at the main-family level)."""
    from dataclasses import replace

    val_dir, val_truths = split_photos(ctx, CALIBRATION_SPLIT, root)
    val_out = root / f"out_{CALIBRATION_SPLIT}_{name}"
    process_folder(val_dir, val_out, models, fingerprint=f"demo-{name}-val-{time.time()}")
    calibration, pairs = fit_on_run(val_out, val_truths, root / f"calibration_{name}.json")
    test_dir, truths = split_photos(ctx, EVAL_SPLIT, root)
    out = root / f"out_{EVAL_SPLIT}_{name}"
    start = time.perf_counter()
    summary = process_folder(
        test_dir, out, replace(models, calibration=calibration), fingerprint=f"demo-{name}-{time.time()}"
    )
    estimates, values = record_pairs(out, truths)
    held_out = [
        pairs
        for run_dir, split_truths in ((val_out, val_truths), (out, truths))
        for t in split_truths
        for pairs in [record_pairs(run_dir, [t])]
        if pairs[0]
    ]
    return {
        "summary": summary,
        "seconds": time.perf_counter() - start,
        "out": out,
        "truths": truths,
        "calibration": calibration or CoverCalibration(),
        "calibration_pairs": pairs,
        "coverage": pair_coverage(estimates, values),
        "coverage_counts": pair_coverage_counts(estimates, values),
        "coverage_every_pair": pair_coverage_counts(estimates, values, every_pair=True),
        "coverage_by_kind": pair_coverage_by_kind(estimates, values),
        "coverage_by_level": {lv: level_coverage(out, truths, lv) for lv in ("main_family", "agnostic")},
        "coverage_resplit": resplit_coverage(held_out, seed=ctx.seed) if len(held_out) >= 4 else None,
        "median_width": pair_median_width(estimates, values),
        "main_family_mae": level_mae(covered(out, truths), out / "cover.csv", ENSEMBLE_LEVEL),
    }


def level_coverage(out_dir: Path, truths: list[dict[str, Any]], level: str) -> dict[str, Any]:
    """Interval coverage and median width of a run's ``cover.csv`` rows at ``level`` over the photo x
    label pairs present in the truth or the prediction (the photos that reached a cover)."""
    rows = level_rows(out_dir / "cover.csv", level)
    pairs = [(truth, row) for truth, row in compared(covered(out_dir, truths), rows, level) if row]
    inside = sum(float(r["low"]) - 1e-6 <= truth <= float(r["high"]) + 1e-6 for truth, r in pairs)
    widths = [float(r["high"]) - float(r["low"]) for _, r in pairs]
    return {
        "inside": int(inside),
        "pairs": len(pairs),
        "median_width_pp": round(float(np.median(widths)), 3) if widths else None,
    }


def warp_error_px(out_dir: Path, truths: list[dict[str, Any]], points_per_side: int = 9) -> float | None:
    """Mean distance (px, the chain's warped frame) between where the chain's raw -> warped
    homography puts a grid of points of the true quadrat and where they belong, over the photos whose
    frame was found: each point of the true warped frame is taken to the raw photo by the truth's
    homography, then back by the chain's."""
    errors = []
    for t in truths:
        record = json.loads((out_dir / "photos" / f"{t['name']}.json").read_text(encoding="utf-8"))
        if record["homography_raw_to_warped"] is None:
            continue
        (tw, th), (pw, ph) = t["warped_size"], record["warped_size"]
        u, v = np.meshgrid(np.linspace(0, tw, points_per_side), np.linspace(0, th, points_per_side))
        true_xy = np.stack([u.ravel(), v.ravel()], axis=1)
        raw_xy = transform_points(true_xy, np.asarray(t["homography_warped_to_raw"]))
        chain_xy = transform_points(raw_xy, np.asarray(record["homography_raw_to_warped"]))
        errors.append(float(np.linalg.norm(chain_xy - true_xy * [pw / tw, ph / th], axis=1).mean()))
    return round(float(np.mean(errors)), 3) if errors else None


def truth_points_csv(truths: list[dict[str, Any]], out_csv: Path, seed: int) -> Path:
    """A CoralNet-style CSV of points labelled from the truth: sampled in each true quadrat, written
    in raw-photo pixels, label = the true genus there (``substrate`` off colonies and in their holes)."""
    rows = []
    for t in truths:
        size = tuple(t["warped_size"])
        index, names = label_map([(c["label"], coral_rings(c)) for c in t["corals"]], size)
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


def split_photos(ctx: Any, split: str, root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A folder of the raw photos of one split (links to the synthetic export) and their truth."""
    truths = [t for t in load_truth(ctx.synthetic_dir) if t["subset"] == split]
    photos = root / f"photos_{split}"
    photos.mkdir(parents=True, exist_ok=True)
    for t in truths:
        link = photos / t["name"]
        if not link.exists():
            source = export_image_path(ctx.synthetic_dir / "cvat_exports" / "corners", split, t["name"])
            link.symlink_to(source.resolve())
    return photos, truths


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


def covered(out_dir: Path, truths: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The truths of the photos a chain run in ``out_dir`` took to a cover (a photo whose frame was
    not found has no cover to score)."""
    return [
        t
        for t in truths
        if json.loads((out_dir / "photos" / f"{t['name']}.json").read_text(encoding="utf-8"))["cover"]
    ]


def record_pairs(out_dir: Path, truths: list[dict[str, Any]]) -> tuple[list[CoverEstimate], list[float]]:
    """(estimates, true covers) of every photo x class a chain run wrote in ``out_dir/photos/`` (at
    the model's own taxonomy level), for the photos of ``truths`` that reached a cover."""
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    estimates, values = [], []
    for t in truths:
        record = json.loads((out_dir / "photos" / f"{t['name']}.json").read_text(encoding="utf-8"))
        found = [CoverEstimate(**e) for e in record["cover"]]
        if not found:
            continue
        real = true_cover(t, taxonomy.finest_level(e.label for e in found))
        estimates.extend(found)
        values.extend(real.get(e.label, 0.0) for e in found)
    return estimates, values


def fit_on_run(
    out_dir: Path, truths: list[dict[str, Any]], terms_json: Path
) -> tuple[CoverCalibration | None, int]:
    """The interval terms fitted on a chain run over held-out photos as ``python -m
    pipeline.calibrate`` fits them (on the run and a truth table, ``truth_cover_<run>.csv`` beside
    the run), written to ``terms_json``: (the terms, None when no photo reached a cover; the photo x
    class pairs at the model's level they used)."""
    from pipeline.calibration import fit_run, read_calibration, read_truth_csv

    estimates, _ = record_pairs(out_dir, truths)
    if not estimates:
        return None, 0
    truth_csv = out_dir.parent / f"truth_cover_{out_dir.name}.csv"
    rows = [  # a photo with no coral is listed by a row with no label
        {"photo": t["name"], "label": label, "percent": round(value, 6)}
        for t in truths
        for label, value in ({k: v for k, v in true_cover(t).items() if v > 0} or {"": 0.0}).items()
    ]
    write_table(truth_csv, ["photo", "label", "percent"], rows)
    terms, _ = fit_run(out_dir, read_truth_csv(truth_csv))
    terms.to_json(terms_json)
    return read_calibration(terms_json), len(estimates)


def pair_median_width(estimates: list[CoverEstimate], values: list[float]) -> float | None:
    """Median width (percentage points) of the intervals over the pairs :func:`pair_coverage`
    scores: a coverage means little beside intervals as wide as 0..100."""
    widths = [e.high - e.low for v, e in zip(values, estimates, strict=True) if v > 0 or e.pixels > 0]
    return round(float(np.median(widths)), 3) if widths else None


def pair_coverage_counts(
    estimates: list[CoverEstimate], values: list[float], every_pair: bool = False
) -> dict[str, Any]:
    """The coverage of :func:`pair_coverage` as counts, with the Wilson 95 % interval of the share:
    on a few dozen pairs a coverage of 0.85 and one of 0.95 may not differ, and the report says so.
    ``every_pair``: over every photo x class pair, absent classes included (a class absent and not
    seen is inside its ``[0, miss]``, so this is the higher figure); the default leaves out the pairs
    absent from truth and prediction, the ones the terms are fitted to hold 95 % of (the pairs
    predicted where the class is and where it is not, and the missed ones)."""
    kept = [(v, e) for v, e in zip(values, estimates, strict=True) if every_pair or v > 0 or e.pixels > 0]
    share = interval_coverage([v for v, _ in kept], [e.low for _, e in kept], [e.high for _, e in kept])
    inside = round(share * len(kept)) if kept else 0
    low, high = wilson_interval(inside, len(kept))
    return {"inside": inside, "pairs": len(kept), "wilson_95": [round(low, 3), round(high, 3)]}


def pair_coverage_by_kind(estimates: list[CoverEstimate], values: list[float]) -> dict[str, dict[str, int]]:
    """Pairs inside their intervals, by kind: a class predicted where it is (``predicted_present``),
    predicted where it is absent (``predicted_absent``, a genus confusion or a false colony), and
    present but not predicted (``missed``, under the one-sided miss term). The terms are fitted to
    hold 95 % over each kind (:func:`quadratseg.cover.fit_cover_calibration`); on a dozen photos a
    kind's figure rests on a few pairs, which :func:`resplit_coverage` puts beside it."""
    kinds: dict[str, dict[str, int]] = {
        k: {"inside": 0, "pairs": 0} for k in ("predicted_present", "predicted_absent", "missed")
    }
    for value, e in zip(values, estimates, strict=True):
        if e.pixels > 0:
            kind = "predicted_present" if value > 0 else "predicted_absent"
        elif value > 0:
            kind = "missed"
        else:
            continue
        kinds[kind]["pairs"] += 1
        kinds[kind]["inside"] += int(interval_coverage([value], [e.low], [e.high]) == 1.0)
    return kinds


def resplit_coverage(
    photos: list[tuple[list[CoverEstimate], list[float]]], splits: int = 200, seed: int = 0
) -> dict[str, Any]:
    """The interval coverage of the fit over random halves of the held-out photos: each split fits
    the terms on one half (:func:`quadratseg.cover.fit_cover_calibration`) and scores them on the
    other (:func:`quadratseg.cover.reapplied`, no model run again). One fixed split of a dozen
    photos moves by several points with which photos fell where (pairs of one photo share its
    light and reef); the mean over splits estimates the method's coverage on photos like these,
    and the 10th-90th percentiles show one split's spread.

    Args:
        photos: per held-out photo, its (estimates, true covers) at the model's level.
        splits: random halvings.
        seed: of the halvings.
    """
    if len(photos) < 4:
        raise ValueError(f"re-split coverage needs at least 4 photos (two per half), got {len(photos)}")
    rng = np.random.default_rng(seed)
    half = len(photos) // 2
    present, every, widths = [], [], []
    kinds: dict[str, list[int]] = {}  # kind -> [inside, pairs] over every split
    for _ in range(splits):
        order = rng.permutation(len(photos))
        fit_on = [photos[i] for i in order[:half]]
        scored = [photos[i] for i in order[half:]]
        calibration = fit_cover_calibration(
            [e for estimates, _ in fit_on for e in estimates], [v for _, values in fit_on for v in values]
        )
        estimates = [reapplied(e, calibration) for found, _ in scored for e in found]
        values = [v for _, found in scored for v in found]
        counts = pair_coverage_counts(estimates, values)
        if counts["pairs"]:
            present.append(counts["inside"] / counts["pairs"])
            widths.append(pair_median_width(estimates, values))
        all_pairs = pair_coverage_counts(estimates, values, every_pair=True)
        every.append(all_pairs["inside"] / all_pairs["pairs"])
        for kind, count in pair_coverage_by_kind(estimates, values).items():
            total = kinds.setdefault(kind, [0, 0])
            total[0], total[1] = total[0] + count["inside"], total[1] + count["pairs"]

    def spread(values: list[float], name: str) -> dict[str, float | None]:
        if not values:
            return {f"{name}_mean": None, f"{name}_p10": None, f"{name}_p90": None}
        return {
            f"{name}_mean": round(float(np.mean(values)), 4),
            f"{name}_p10": round(float(np.percentile(values, 10)), 4),
            f"{name}_p90": round(float(np.percentile(values, 90)), 4),
        }

    return {
        "photos": len(photos),
        "splits": splits,
        **spread(present, "present"),
        **spread(every, "every"),
        "median_width_pp": round(float(np.median(widths)), 3) if widths else None,
        # each kind's pairs of every split together: the coverage the method gives that kind
        "by_kind": {
            kind: round(inside / pairs, 4) if pairs else None for kind, (inside, pairs) in kinds.items()
        },
    }


def pair_coverage(estimates: list[CoverEstimate], values: list[float]) -> float | None:
    """Share of true covers inside the intervals over the photo x class pairs present in the truth or
    the prediction (a class absent from both is inside any interval of it)."""
    counts = pair_coverage_counts(estimates, values)
    return round(counts["inside"] / counts["pairs"], 4) if counts["pairs"] else None


def per_segmenter(groups: dict[str, dict[str, Any]], describe: Any) -> str:
    """``"yolo a, b; mmseg a, b"``: each segmenter's figures (name -> counts), each described by
    ``describe(name, counts)``, for the report's sentences."""
    return "; ".join(
        f"{segmenter} " + ", ".join(describe(name, counts) for name, counts in figures.items())
        for segmenter, figures in groups.items()
    )


def stage(ctx: Any) -> dict[str, Any]:
    """Run each segmenter's chain on the raw validation photos (to fit its interval terms) and on the
    raw test photos (scored against the truth)."""
    from grid_inpainting.inpaint import DEMO_CHAIN_BACKEND, select_backend
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
        inpaint=select_backend(DEMO_CHAIN_BACKEND, ctx.settings),
    )
    runs = {
        name: calibrated_run(ctx, name, variant, root)
        for name, variant in segmenter_variants(models, ctx.shared.get("semantic_segmenter")).items()
    }
    yolo = runs["yolo"]
    summary, truths, out = yolo["summary"], yolo["truths"], yolo["out"]
    pairs = compared(covered(out, truths), level_rows(out / "cover.csv", "finegrained"))
    errors = [abs((float(row["percent"]) if row else 0.0) - truth) for truth, row in pairs]
    estimates, values = record_pairs(out, truths)
    calibration = yolo["calibration"]
    points_csv = truth_points_csv(truths, root / "truth_points.csv", ctx.seed)
    mapping = identity_mapping(load_taxonomy().classes(), root / "label_mapping.csv")
    framed = [
        t for t in truths if json.loads((out / "photos" / f"{t['name']}.json").read_text())["warped_size"]
    ]
    points = (
        score_points(out, points_csv, mapping)
        if framed
        else dict.fromkeys(
            ("point_accuracy", "scored", "outside_quadrat", "cover_mae_pp", "dense_inside_point_interval")
        )
    )
    metrics = {
        "photos": summary["photos"],
        "failed": summary["failed"],
        "with_cover": summary["with_cover"],
        "variant": summary["variant"],
        "cover_mae_pp": round(float(np.mean(errors)), 3) if errors else None,
        "centre_mae_pp": round(
            float(
                np.mean([abs(e.centre - v) for e, v in zip(estimates, values, strict=True) if v or e.pixels])
            ),
            3,
        )
        if estimates
        else None,
        # per segmenter, on the test photos, photo x class pairs present in the truth or the prediction
        "interval_coverage": {name: run["coverage"] for name, run in runs.items()},
        "interval_coverage_counts": {name: run["coverage_counts"] for name, run in runs.items()},
        # the same over every photo x class pair, absent classes included (each inside its [0, miss])
        "interval_coverage_every_pair": {name: run["coverage_every_pair"] for name, run in runs.items()},
        "interval_median_width_pp": {name: run["median_width"] for name, run in runs.items()},
        # present pairs by kind: predicted where present, predicted where absent, missed
        "interval_coverage_by_kind": {name: run["coverage_by_kind"] for name, run in runs.items()},
        # at the main-family and agnostic levels (their own fitted terms), present pairs
        "interval_coverage_by_level": {name: run["coverage_by_level"] for name, run in runs.items()},
        # fitted on one random half of the validation and test photos, scored on the other half
        "interval_coverage_resplit": {name: run["coverage_resplit"] for name, run in runs.items()},
        "interval_method": estimates[0].method if estimates else None,
        "cover_comparisons": len(errors),
        "warp_mean_px_error": warp_error_px(out, truths),
        "calibration_pairs": yolo["calibration_pairs"],
        "boundary_px": round(calibration.boundary_px, 3),
        "confidence_scale": round(calibration.confidence_scale, 3),
        "quantile": round(calibration.quantile, 3),
        "floor_pp": round(calibration.floor_pp, 3),
        "miss_pp": round(calibration.miss_pooled_pp, 3),
        "absent_pp": round(calibration.absent_pooled_pp, 3),
        "class_terms": {
            name: {
                "fitted": run["calibration"].fitted,
                "per_class_bias": sorted(run["calibration"].bias_pp),
                "per_class_miss": sorted(run["calibration"].miss_by_class_pp),
                "pairs": run["calibration"].pairs,
            }
            for name, run in runs.items()
        },
        "main_family_cover_mae_pp": {name: run["main_family_mae"] for name, run in runs.items()},
        "point_accuracy": points["point_accuracy"],
        "points_scored": points["scored"],
        "points_outside_quadrat": points["outside_quadrat"],
        "point_cover_mae_pp": points["cover_mae_pp"],
        "dense_inside_point_interval": points["dense_inside_point_interval"],
        "seconds_per_photo": round(yolo["seconds"] / max(summary["photos"], 1), 3),
        "seconds": round(time.perf_counter() - start, 2),
    }
    section = ctx.report.section("The chain on raw photos (pipeline.process)")
    coverage = ", ".join(
        f"{k} {v} ({c['inside']} of {c['pairs']} pairs, Wilson 95 % {c['wilson_95'][0]}-{c['wilson_95'][1]}; "
        f"median width {metrics['interval_median_width_pp'][k]} pp)"
        for k, v in metrics["interval_coverage"].items()
        for c in [metrics["interval_coverage_counts"][k]]
    )
    section.paragraphs.append(
        f"pipeline.process ran the {metrics['variant']} chain on the {summary['photos']} raw "
        f"{EVAL_SPLIT} photos with the models trained above (predicted corners and grid, no annotation): "
        f"{summary['with_cover']} reached a cover, {summary['failed']} failed, "
        f"{metrics['seconds_per_photo']} s per photo; the chain's warp is {metrics['warp_mean_px_error']} px "
        f"from the true quadrat on average. Cover per genus over the observed quadrat (the "
        f"pixels under the grid mask are left out) is {metrics['cover_mae_pp']} percentage points from "
        f"the truth on average over {metrics['cover_comparisons']} photo x genus pairs "
        f"({metrics['centre_mae_pp']} for the intervals' centres). Each segmenter's interval terms "
        f"were fitted on its own run over the {CALIBRATION_SPLIT} photos (YOLO: "
        f"{metrics['calibration_pairs']} photo x genus pairs, outline term {metrics['boundary_px']} px, "
        f"confidence scale {metrics['confidence_scale']}, floor {metrics['floor_pp']} percentage points, "
        f"quantile {metrics['quantile']}, pooled miss "
        f"term {metrics['miss_pp']} percentage points); share of the true covers inside the 95 % "
        f"intervals on the test photos: {coverage}; over every photo x class pair, absent classes "
        "included (each inside its one-sided interval): "
        + ", ".join(
            f"{k} {c['inside']} of {c['pairs']}" for k, c in metrics["interval_coverage_every_pair"].items()
        )
        + ". By kind (inside of pairs): "
        + per_segmenter(
            metrics["interval_coverage_by_kind"],
            lambda kind, c: f"{kind.replace('_', ' ')} {c['inside']} of {c['pairs']}",
        )
        + ". At coarser levels, with the terms fitted at each level (inside of pairs, median width): "
        + per_segmenter(
            metrics["interval_coverage_by_level"],
            lambda level, c: f"{level} {c['inside']} of {c['pairs']} ({c['median_width_pp']} pp)",
        )
        + ". Fitted on a random half of the validation and test photos and scored on the other half, "
        "over many such halvings (mean, 10th-90th percentile; the spread is one split's luck): "
        + ", ".join(
            f"{k} {r['present_mean']} ({r['present_p10']}-{r['present_p90']})"
            for k, r in metrics["interval_coverage_resplit"].items()
            if r
        )
        + f". {points['scored']} CoralNet-style points "
        "sampled from the truth, "
        f"mapped into the quadrat with the predicted corners: {100 * (points['point_accuracy'] or 0):.1f} % "
        "labelled right. Main-family cover error by segmentation (percentage points): "
        + ", ".join(f"{k} {v}" for k, v in metrics["main_family_cover_mae_pp"].items())
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
                ["calibration_<segmenter>.json", "each segmenter's interval terms, fitted on val photos"],
                ["truth_points.csv", "CoralNet-style points from the truth (scored)"],
            ],
        )
    )
    return metrics
