"""The demo's tracking stage: synthetic quadrats surveyed in two years, through the whole chain
(predicted corners, grid removal, segmentation) and ``pipeline.track``, scored against the true
lineages of :mod:`quadratseg.synth.years`.

``summary.json`` gets a ``track`` object: ``link_precision``, ``link_recall``, ``event_accuracy``,
``growth_mae_cm2`` and ``registration_residual_px`` through the chain (graph matcher), the same
figures for TagLab's rule, and with the true masks (the chain's segmentation replaced by the truth,
the photos' alignment kept).

Scoring (:mod:`quadratseg.track.evaluate`): each year's true colonies are mapped into the chain's
warped frame (true warped -> raw -> the chain's warp) and paired with the predicted colonies by
IoU >= 0.5; a true link counts found when the prediction links the two colonies paired with its ends.
True links of a quadrat the chain could not follow (no frame found, a pair refused) count as missed.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.geometry import PolygonWithHoles
from quadratseg.images import output_name
from quadratseg.instances import Instance
from quadratseg.synth.years import YearsConfig, generate_years
from quadratseg.track.evaluate import LinkScore, pair_with_truth, score_interval
from quadratseg.track.matching import Link
from quadratseg.warp import transform_points

logger = logging.getLogger(__name__)

QUADRATS = 3
YEARS = 2
QUADRAT_CM = 100.0


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def truth_in_chain_frame(truth: dict[str, Any], record: dict[str, Any]) -> list[Instance | None]:
    """A photo's true colonies (true warped frame) in the frame the chain warped it to: through the
    true warped -> raw homography and the record's raw -> warped one (identity when the record has
    none: the photo was a warped quadrat already); None for a colony that leaves the frame."""
    size = tuple(record["warped_size"])
    chain = record.get("homography_raw_to_warped")
    mapping = (
        np.asarray(chain) @ np.asarray(truth["homography_warped_to_raw"]) if chain is not None else np.eye(3)
    )
    out: list[Instance | None] = []
    for coral in truth["corals"]:
        rings = [
            np.asarray(coral["polygon_xy"], float),
            *(np.asarray(h, float) for h in coral.get("holes_xy", [])),
        ]
        moved = [transform_points(r, mapping) for r in rings]
        out.append(Instance.from_polygons(coral["label"], 1.0, [PolygonWithHoles(moved[0], moved[1:])], size))
    return out


def read_instances(out_dir: Path, key: str, size: Sequence[int]) -> list[Instance]:
    """The chain's colonies of one photo (``instances/<key>.json``)."""
    from pipeline.tracking import instances_from_json

    path = out_dir / "instances" / output_name(key, ".json")
    if not path.is_file():
        return []
    return instances_from_json(json.loads(path.read_text(encoding="utf-8")), (int(size[0]), int(size[1])))


def score_tracking(years_dir: Path, outs: Sequence[Path], track_dir: Path) -> dict[str, Any]:
    """Link precision and recall, event accuracy and growth error of a ``pipeline.track`` output
    against the true lineages of a :func:`quadratseg.synth.years.generate_years` set whose years were
    processed into ``outs`` (one ``pipeline.process`` output per year, in order)."""
    intervals = json.loads((years_dir / "lineages.json").read_text(encoding="utf-8"))["intervals"]
    truths = [
        {t["name"]: t for t in json.loads((years_dir / out.name / "truth.json").read_text())["images"]}
        for out in outs
    ]
    links = _rows(track_dir / "links.csv")
    total = LinkScore()
    for interval in intervals:
        names = (interval["source_survey"], interval["target_survey"])
        year = [next(k for k, t in enumerate(truths) if name in t) for name in names]
        pairs, areas = [], []
        for k, name in zip(year, names, strict=True):
            record_path = outs[k] / "photos" / output_name(name, ".json")
            record = json.loads(record_path.read_text()) if record_path.is_file() else {}
            truth = truths[k][name]
            scale = (QUADRAT_CM / truth["warped_size"][0]) ** 2
            true_area = [c["area_px"] * scale for c in truth["corals"]]
            if not record.get("warped_size"):
                pairs.append({})
                areas.append(([], true_area))
                continue
            size = record["warped_size"]
            predicted = read_instances(outs[k], name, size)
            pairs.append(pair_with_truth(predicted, truth_in_chain_frame(truth, record), 0.5))
            areas.append(([p.area * (QUADRAT_CM / size[0]) ** 2 for p in predicted], true_area))
        survey = [f"{outs[k].name}/{name}" for k, name in zip(year, names, strict=True)]
        rows = [r for r in links if (r["source_survey"], r["target_survey"]) == tuple(survey)]
        predicted_rows = [
            Link(
                int(r["source_id"]) if r["source_id"] else None,
                int(r["target_id"]) if r["target_id"] else None,
                r["class"],
                r["event"],
                r["split_fuse"],
            )
            for r in rows
        ]
        true_rows = [Link(**row) for row in interval["rows"]]
        total.add(
            score_interval(
                predicted_rows,
                true_rows,
                pairs[0],
                pairs[1],
                (areas[0][0], areas[1][0]),
                (areas[0][1], areas[1][1]),
            )
        )
    return total.metrics()


def true_mask_outputs(years_dir: Path, outs: Sequence[Path], root: Path) -> list[Path]:
    """Copies of the chain's outputs whose colonies are the truth (mapped into the chain's frame):
    tracking them measures registration and matching without the segmentation's errors."""
    copies = []
    for out in outs:
        copy = root / out.name
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(out, copy, ignore=shutil.ignore_patterns("overlays", "report.html", "img"))
        truths = {
            t["name"]: t for t in json.loads((years_dir / out.name / "truth.json").read_text())["images"]
        }
        for name, truth in truths.items():
            record_path = copy / "photos" / output_name(name, ".json")
            if not record_path.is_file():
                continue
            record = json.loads(record_path.read_text())
            if not record.get("warped_size"):
                continue
            colonies = [c for c in truth_in_chain_frame(truth, record) if c is not None]
            items = [
                {"label": c.label, "score": 1.0, "rings": [r.tolist() for r in c.rings]} for c in colonies
            ]
            (copy / "instances" / output_name(name, ".json")).write_text(json.dumps(items), encoding="utf-8")
        copies.append(copy)
    return copies


def stage(ctx: Any) -> dict[str, Any]:
    """Two synthetic years of a few quadrats through the chain with the demo's trained models, then
    ``pipeline.track``; figures against the true lineages."""
    from grid_inpainting.inpaint import DEMO_CHAIN_BACKEND, select_backend
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder
    from pipeline.tracking import track_process_outputs

    start = time.perf_counter()
    pose = ctx.shared.get("pose_predictors", {})
    segment = ctx.shared.get("seg_predictor")
    if segment is None or "gridcorners" not in pose or "gridpose" not in pose:
        return {"skipped": "the pose and segmentation stages did not run"}
    manifest_path = Path(ctx.synthetic_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    world = manifest.get("config", {}).get("world", "simple")
    size = int(manifest.get("config", {}).get("warped_size", 512))
    root = Path(ctx.out_dir) / "track"
    if root.exists():
        # an earlier demo's outputs: its photo records would be resumed (same photo names and run
        # fingerprint) and their colonies, made by that demo's models, scored as these models'
        shutil.rmtree(root)
    config = YearsConfig(quadrats=QUADRATS, years=YEARS, seed=ctx.seed, size=size, world=world)
    years_dir = generate_years(root / "years", config, overwrite=True)
    models = ChainModels(
        segment=segment,
        corners=pose["gridcorners"],
        grid=pose["gridpose"],
        inpaint=select_backend(DEMO_CHAIN_BACKEND, ctx.settings),
    )
    outs = []
    for y in range(YEARS):
        year = str(config.first_year + y)
        photos = years_dir / year / "cvat_exports" / "corners" / "images" / "test"
        out = root / "process" / year
        try:
            process_folder(
                photos, out, models, f"track-demo-{ctx.seed}", quadrat_cm=QUADRAT_CM, overlays=False
            )
        except ValueError as error:  # photos that failed are in failures.csv; the others are tracked
            logger.warning("track demo, %s: %s", year, error)
        outs.append(out)
    figures: dict[str, Any] = {}
    summaries: dict[str, Any] = {}
    for matcher in ("graph", "taglab"):
        track_dir = root / f"chain_{matcher}"
        try:
            summaries[matcher] = track_process_outputs(outs, track_dir, matcher, quadrat_cm=QUADRAT_CM)
        except ValueError as error:
            summaries[matcher] = {"error": str(error)}
        figures[matcher] = score_tracking(years_dir, outs, track_dir)
    truth_outs = true_mask_outputs(years_dir, outs, root / "true_masks")
    try:
        summaries["true_masks"] = track_process_outputs(
            truth_outs, root / "true_masks_graph", quadrat_cm=QUADRAT_CM
        )
    except ValueError as error:
        summaries["true_masks"] = {"error": str(error)}
    true_figures = score_tracking(years_dir, truth_outs, root / "true_masks_graph")
    chain = figures["graph"]
    metrics: dict[str, Any] = {
        "world": world,
        "quadrats": QUADRATS,
        "years": YEARS,
        "link_precision": chain["link_precision"],
        "link_recall": chain["link_recall"],
        "event_accuracy": chain["event_accuracy"],
        "growth_mae_cm2": chain["growth_mae_cm2"],
        "registration_residual_px": summaries["graph"].get("registration_residual_px"),
        "true_links": chain["true_links"],
        # true links whose two colonies the segmentation found (IoU >= 0.5): the rest no matcher can find
        "reachable_links": chain["reachable_links"],
        "link_recall_of_reachable": chain["link_recall_of_reachable"],
        "refused_pairs": summaries["graph"].get("refused_pairs"),
        "taglab_rule": figures["taglab"],
        "true_masks": true_figures,
        "seconds": 0.0,
    }
    section = ctx.report.section("Colonies across years (pipeline.track)")
    section.paragraphs.append(
        f"{QUADRATS} synthetic quadrats ({world} world) surveyed in {YEARS} years with true lineages "
        "(growth, shrinkage, partial mortality, death, recruitment, fission, fusion, the frame re-placed a "
        "few cm off, another light), each photo through the chain with the models trained above (predicted "
        "corners and grid, grid removal, YOLO colonies), then python -m pipeline.track. Links through the "
        f"chain (overlap graph): precision {chain['link_precision']}, recall {chain['link_recall']} over "
        f"{chain['true_links']} true links ({chain['reachable_links']} with both colonies found by the "
        f"segmentation, of which {chain['link_recall_of_reachable']} linked); event accuracy "
        f"{chain['event_accuracy']}; growth error {chain['growth_mae_cm2']} cm^2 per year; alignment "
        f"residual {metrics['registration_residual_px']} px. TagLab's rule on the same colonies: precision "
        f"{figures['taglab']['link_precision']}, recall {figures['taglab']['link_recall']}. With the true "
        f"masks: precision {true_figures['link_precision']}, recall {true_figures['link_recall']}."
    )
    pair = root / "chain_graph" / "img" / "pair_0_0.jpg"
    if pair.is_file():
        ctx.report.add_image(
            section, "track_pair", ctx.read_rgb(pair), "two years side by side, links drawn", 1400
        )
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    return metrics
