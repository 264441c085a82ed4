"""The chain over a folder of photos: outputs, resumability and the cover tables.

The CLI is :mod:`pipeline.process`. Three-stage with ``--corners`` and ``--grid``, two-stage
without ``--grid``, single-stage (the photos are already warped quadrats) without
``--corners``; see :mod:`pipeline.chain`.

Outputs in ``OUT`` (keys: the photo's path relative to IMAGES, suffix kept):

- ``photos/<key>.json``: what each stage did, corners and homography (raw -> warped), grid
  points, observed share, cover rows. Written last for each photo: a rerun skips the photos
  whose record exists and was made with the same models and options, and redoes the others.
- ``warped/``, ``clean/`` (grid removed), ``overlays/`` images; ``instances/<key>.json``:
  colonies as polygons (warped frame) with label and confidence.
- ``status.csv`` (one row per photo: each stage's outcome), ``cover.csv`` (one row per photo x
  level x class: percent of the observed quadrat, 95 % interval, pixels, colonies, cm^2 with
  ``--quadrat-cm``, site/year/quadrat from ``--metadata``, the key's ``site/year/`` folders or
  the name), ``cover_summary.csv`` (per site,
  year, level and class: quadrats, mean, standard error, 95 % t interval), ``failures.csv``,
  ``timing.csv`` (seconds per stage).

A photo that fails is recorded with its reason and the run goes on; the exit code is 3 when any
photo failed. Memory holds one photo at a time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.chain import ChainModels, PhotoResult, run_chain
from quadratseg.atomic import atomic_write_bytes, atomic_write_text
from quadratseg.batch import BatchItem, batch_items, run_batch
from quadratseg.cover import CoverEstimate, mean_interval, regroup
from quadratseg.errors import QuadratsegError
from quadratseg.images import output_name, read_image_rgb
from quadratseg.photo_meta import photo_place, read_photo_metadata
from quadratseg.taxonomy import LEVELS, load_taxonomy

logger = logging.getLogger(__name__)

COVER_COLUMNS = [
    "photo",
    "site",
    "year",
    "quadrat",
    "level",
    "label",
    "percent",
    "low",
    "high",
    "sd",
    "pixels",
    "observed_pixels",
    "observed_share",
    "area_cm2",
    "colonies",
    "perimeter_px",
    "method",
]
SUMMARY_COLUMNS = ["site", "year", "level", "label", "quadrats", "mean", "se", "low", "high"]
STAGES = ("corners", "grid", "removal", "segmentation", "cover")


def _write_image(path: Path, image: np.ndarray, rgb: bool = True) -> None:
    """Write an RGB image (or a one-channel map, ``rgb=False``) atomically under a temporary name no
    other writer shares, encoded in the format of the path's suffix."""
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb else image)
    if not ok:
        raise OSError(f"cannot encode {path}")
    atomic_write_bytes(path, data.tobytes())


def _write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=1))


def _nan_to_none(array: np.ndarray | None) -> Any:
    if array is None:
        return None
    return [[None if not np.isfinite(v) else round(float(v), 3) for v in row] for row in np.asarray(array)]


def cover_rows(
    key: str,
    estimates: list[CoverEstimate],
    observed_share: float,
    taxonomy: Any,
    quadrat_cm: float | None = None,
    warped_size: tuple[int, int] | None = None,
    place: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The ``cover.csv`` rows of one photo at the model's level and every coarser one (regrouped
    from the same estimates); ``area_cm2`` when the quadrat's width in cm and the warped size are
    known; site, year and quadrat from ``place`` (default: :func:`quadratseg.photo_meta.photo_place`)."""
    names = place if place is not None else photo_place(key)
    cm2_per_px = (quadrat_cm / warped_size[0]) ** 2 if quadrat_cm and warped_size else None  # square px
    source = taxonomy.finest_level(e.label for e in estimates)
    rows = []
    for level in LEVELS[LEVELS.index(source) :]:
        estimates_at = (
            estimates
            if level == source
            else regroup(
                estimates, lambda label, level=level: taxonomy.map_label(label, level, source=source)
            )
        )
        for e in estimates_at:
            rows.append(
                {
                    "photo": key,
                    **names,
                    "level": level,
                    "label": e.label,
                    "percent": e.percent,
                    "low": e.low,
                    "high": e.high,
                    "sd": e.sd,
                    "pixels": e.pixels,
                    "observed_pixels": e.observed_pixels,
                    "observed_share": round(observed_share, 4),
                    "area_cm2": round(e.pixels * cm2_per_px, 2) if cm2_per_px else "",
                    "colonies": e.colonies,
                    "perimeter_px": e.perimeter_px,
                    "method": e.method,
                    "miss_pp": e.miss_pp,
                }
            )
    return rows


def summarize_cover(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``cover_summary.csv``: per site, year, level and label, the mean cover over quadrats with its
    standard error and 95 % Student-t interval."""
    groups: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        groups[(row["site"], row["year"], row["level"], row["label"])].append(float(row["percent"]))
    out = []
    for (site, year, level, label), values in sorted(groups.items()):
        mean, se, low, high = mean_interval(values)
        out.append(
            {
                "site": site,
                "year": year,
                "level": level,
                "label": label,
                "quadrats": len(values),
                "mean": round(mean, 4),
                "se": round(se, 4) if np.isfinite(se) else "",
                "low": round(max(low, 0.0), 4) if np.isfinite(low) else "",
                "high": round(min(high, 100.0), 4) if np.isfinite(high) else "",
            }
        )
    return out


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, handle.getvalue())


def photo_record(
    key: str,
    result: PhotoResult,
    fingerprint: str,
    seconds: dict[str, float],
    raw_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The JSON record of one processed photo (the resumability marker)."""
    return {
        "photo": key,
        "fingerprint": fingerprint,
        "raw_size": list(raw_size) if raw_size else None,
        "status": result.status,
        "corners_xy": _nan_to_none(result.corners_xy),
        "homography_raw_to_warped": result.homography.tolist() if result.homography is not None else None,
        "grid_xy": _nan_to_none(result.grid_xy),
        "warped_size": [int(result.warped.shape[1]), int(result.warped.shape[0])]
        if result.warped is not None
        else None,
        "observed_share": round(result.observed_share, 4) if result.observed_hw is not None else None,
        "colonies": len(result.instances),
        "cover": [e.__dict__ for e in result.cover],
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


def process_folder(
    images: str | Path,
    out_dir: str | Path,
    models: ChainModels,
    fingerprint: str,
    quadrat_cm: float | None = None,
    overlays: bool = True,
    metadata: str | Path | None = None,
) -> dict[str, Any]:
    """Run the chain on every photo of ``images`` into ``out_dir`` (resumable); returns a summary.

    Site, year and quadrat of each photo come from the ``metadata`` CSV, else the key's folders,
    else its name (:func:`quadratseg.photo_meta.photo_place`); photos left without a site or a
    year are named in a warning and counted in the summary (``photos_without_site_or_year``).
    """
    from quadratseg.visualize import draw_polygons

    table = read_photo_metadata(metadata) if metadata else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = batch_items(images)
    places = {item.key: photo_place(item.key, table) for item in items}
    unplaced = [key for key, place in places.items() if not (place["site"] and place["year"])]
    if unplaced:
        logger.warning(
            "%d photo%s no site or year (pooled as one unnamed site and year in cover_summary.csv): "
            "%s%s; give them a --metadata CSV (photo,site,year,quadrat) or site/year/ folders",
            len(unplaced),
            " has" if len(unplaced) == 1 else "s have",
            ", ".join(unplaced[:10]),
            f" and {len(unplaced) - 10} more" if len(unplaced) > 10 else "",
        )
    taxonomy = load_taxonomy()
    colors = {name: taxonomy.color(name) for name in taxonomy.classes()}
    timing: dict[str, float] = defaultdict(float)
    skipped = 0

    def one(item: BatchItem) -> None:
        nonlocal skipped
        record_path = out / "photos" / output_name(item.key, ".json")
        if record_path.is_file():
            try:
                if json.loads(record_path.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
                    skipped += 1
                    return
            except json.JSONDecodeError:
                pass  # a damaged record: redo the photo
        start = time.perf_counter()
        image = read_image_rgb(item.path)
        seconds = {"read": time.perf_counter() - start}
        start = time.perf_counter()
        result = run_chain(image, models)
        seconds["chain"] = time.perf_counter() - start
        start = time.perf_counter()
        if result.warped is not None:
            _write_image(out / "warped" / output_name(item.key, ".png"), result.warped)
        if result.clean is not None and result.grid_mask is not None:
            _write_image(out / "clean" / output_name(item.key, ".png"), result.clean)
        if result.class_map is not None:
            _write_image(out / "class_maps" / output_name(item.key, ".png"), result.class_map, rgb=False)
        if result.clean is not None:
            instances = [
                {
                    "label": inst.label,
                    "score": round(inst.score, 4),
                    "rings": [np.round(r, 2).tolist() for r in inst.rings],
                }
                for inst in result.instances
            ]
            _write_json(out / "instances" / output_name(item.key, ".json"), instances)
            if overlays:
                overlay = draw_polygons(result.clean, [(i.label, i.rings) for i in result.instances], colors)
                _write_image(out / "overlays" / output_name(item.key, ".jpg"), overlay)
        seconds["write"] = time.perf_counter() - start
        for stage, value in seconds.items():
            timing[stage] += value
        _write_json(
            record_path,
            photo_record(item.key, result, fingerprint, seconds, (image.shape[1], image.shape[0])),
        )
        logger.info(
            "%s: %s",
            item.key,
            "; ".join(f"{stage} {result.status.get(stage, '-')}" for stage in STAGES),
        )

    report = run_batch(items, one, "processing photos")
    report.write(out)
    # the tables are rebuilt from every photo record, so a resumed run reports all photos
    taxonomy_rows, status_rows = [], []
    failed = {key: reason for key, _path, reason in report.failures}
    for item in items:
        record_path = out / "photos" / output_name(item.key, ".json")
        if item.key in failed or not record_path.is_file():
            status_rows.append({"photo": item.key, "error": failed.get(item.key, "not processed")})
            continue
        record = json.loads(record_path.read_text(encoding="utf-8"))
        status_rows.append(
            {"photo": item.key, **record["status"], "colonies": record["colonies"], "error": ""}
        )
        if record["cover"]:
            estimates = [CoverEstimate(**e) for e in record["cover"]]
            taxonomy_rows.extend(
                cover_rows(
                    item.key,
                    estimates,
                    record["observed_share"],
                    taxonomy,
                    quadrat_cm=quadrat_cm,
                    warped_size=tuple(record["warped_size"]),
                    place=places[item.key],
                )
            )
    _write_csv(out / "status.csv", ["photo", *STAGES, "colonies", "error"], status_rows)
    _write_csv(out / "cover.csv", COVER_COLUMNS, taxonomy_rows)
    _write_csv(out / "cover_summary.csv", SUMMARY_COLUMNS, summarize_cover(taxonomy_rows))
    _write_csv(
        out / "timing.csv",
        ["stage", "seconds"],
        [{"stage": k, "seconds": round(v, 3)} for k, v in timing.items()],
    )
    from pipeline.report import write_process_report

    write_process_report(out)
    summary = {
        "photos": len(items),
        "processed": len(items) - len(failed) - skipped,
        "resumed_skipped": skipped,
        "failed": len(failed),
        "with_cover": sum(1 for r in status_rows if r.get("cover") == "ok"),
        "photos_without_site_or_year": len(unplaced),
        "variant": models.variant,
        "out_dir": str(out),
    }
    report.raise_if_failed(out, json.dumps(summary))
    return summary


@dataclass(frozen=True)
class RunConfig:
    """Every option of a ``pipeline.process`` run (their meaning: :func:`pipeline.process.process`).

    The configuration is hashed whole, with the content of every file it names
    (:func:`run_fingerprint`): a rerun skips a photo only when nothing it depends on changed.
    """

    yolo: str | None = None
    corners: str | None = None
    grid: str | None = None
    inpaint: str = "lama"
    grid_template: str | None = None
    warp_size: int | None = None
    allow_warp_size_mismatch: bool = False
    aspect: float = 1.0
    quadrat_cm: float | None = None
    metadata: str | None = None
    corners_imgsz: int | None = None
    grid_imgsz: int | None = None
    yolo_imgsz: int | None = None
    corners_conf: float | None = None
    corners_kpt_conf: float | None = None
    corners_max_cost: float | None = None
    grid_conf: float | None = None
    grid_kpt_conf: float | None = None
    grid_max_cost: float | None = None
    conf: float = 0.25
    include_inpainted: bool = False
    boundary_px: float = 0.0
    miss_pp: float = 0.0
    overlays: bool = True
    segment: str = "yolo"
    mmseg_config: str | None = None
    mmseg_weights: str | None = None
    ensemble: str = "weighted"
    ensemble_weight: float = 0.5
    nms_iou: float = 0.5


RUN_FILES = ("yolo", "corners", "grid", "grid_template", "mmseg_config", "mmseg_weights", "metadata")
WEIGHT_FILES = ("yolo", "corners", "grid", "mmseg_weights")  # files that carry a model card


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content (hex), read in 1 MiB chunks.

    Raises:
        QuadratsegError: the file does not exist.
    """
    target = Path(path)
    if not target.is_file():
        raise QuadratsegError(f"{target} does not exist (or is not a file)")
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_fingerprint(config: RunConfig, extra_files: dict[str, str | Path | None] | None = None) -> str:
    """A short hash of the whole configuration, each file it names replaced by its content's hash
    (weights, their model cards, template, metadata, MMSeg config) and ``extra_files`` (e.g. the
    LaMa weights from the settings) hashed by content too.

    Examples:
        >>> run_fingerprint(RunConfig(conf=0.3)) != run_fingerprint(RunConfig(conf=0.4))
        True
    """
    from quadratseg.cli import weights_path
    from quadratseg.model_card import model_card_path

    values: dict[str, Any] = asdict(config)
    for name in RUN_FILES:
        path = getattr(config, name)
        if path:
            resolved = weights_path(path) if name in WEIGHT_FILES else path
            values[name] = {"sha256": file_sha256(resolved)}
            card = model_card_path(resolved)
            if name in WEIGHT_FILES and card.is_file():
                values[name]["card_sha256"] = file_sha256(card)
    for name, path in sorted((extra_files or {}).items()):
        values[f"file:{name}"] = file_sha256(path) if path else None
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
