"""The chain over a folder of photos: outputs, resumability and the cover tables.

The CLI is :mod:`pipeline.process`. Three-stage with ``--corners`` and ``--grid``, two-stage
without ``--grid``, single-stage (the photos are already warped quadrats) without
``--corners``; see :mod:`pipeline.chain`.

Outputs in ``OUT`` (keys: the photo's path relative to IMAGES, suffix kept):

- ``photos/<key>.json``: what each stage did, corners and homography (raw -> warped), grid
  points, observed share, cover rows. Written last for each photo: a rerun skips the photos
  whose record exists and was made with the same models and options, and redoes the others.
- ``warped/``, ``clean/`` (grid removed), ``overlays/`` images (JPEG; earlier versions wrote
  ``warped/`` and ``clean/`` as PNG, :func:`photo_output` finds either); ``instances/<key>.json``:
  colonies as polygons (warped frame) with label and confidence; ``class_maps/<key>.png`` (a
  semantic model's class indices, the classes in the record); ``grid_masks/<key>.png`` (255 on
  the pixels inpainting invented).
- ``status.csv`` (one row per photo: each stage's outcome), and the tables of
  :mod:`quadratseg.cover_table`: ``cover.csv`` (one row per photo x level x class: percent of the
  observed quadrat, interval, pixels, colonies, with ``--quadrat-cm`` the area over the whole
  quadrat and the observed area in cm^2; site/year/quadrat from ``--metadata``, the key's
  ``site/year/`` folders or the name), ``colonies.csv`` (one row per colony), ``cover_summary.csv``
  (per site, year, level and class: quadrats, mean, standard error, 95 % t interval);
  ``failures.csv``, ``timing.csv`` (seconds per stage).

A photo that fails is recorded with its reason and the run goes on; the exit code is 3 when any
photo failed. Memory holds a few photos at a time (the local engine reads ahead and writes behind:
:mod:`pipeline.engine_local`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.chain import ChainModels, PhotoResult, cover_classes, cover_method, run_stages
from pipeline.claims import DEFAULT_CLAIM_TTL_S, PhotoClaims
from quadratseg.atomic import atomic_write_bytes, atomic_write_text, sweep_stale_temporaries
from quadratseg.batch import BatchItem, BatchReport, scan_batch
from quadratseg.cover import CoverEstimate
from quadratseg.cover_table import (
    COLONY_COLUMNS,
    COVER_COLUMNS,
    SUMMARY_COLUMNS,
    colony_rows,
    colony_stats,
    cover_rows,
    summarize_cover,
    write_table,
)
from quadratseg.errors import QuadratsegError
from quadratseg.images import output_name, read_image_rgb
from quadratseg.options import as_number
from quadratseg.photo_meta import photo_places, read_photo_metadata
from quadratseg.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

STAGES = ("corners", "grid", "removal", "segmentation", "cover")
# per-photo outputs: folder and suffix (a rerun removes those the new result lacks)
PHOTO_OUTPUTS = {
    "warped": ".jpg",  # JPEG at OpenCV's quality 95: a resampled derivative of the photo, remade exactly
    "clean": ".jpg",  # from the raw photo and the record's homography; PNG took 10x the time, 6x the disk
    "class_maps": ".png",
    "grid_masks": ".png",
    "instances": ".json",
    "overlays": ".jpg",
}
# what earlier versions wrote in place of an output, removed with it (pipeline.tracking still reads them)
LEGACY_OUTPUTS = {"warped": ".png", "clean": ".png"}
RUN_FILE = "run.json"  # the current run: its fingerprint and photo keys (pipeline.points reads it)


def check_model_classes(models: ChainModels, taxonomy: Taxonomy) -> str:
    """The taxonomy level of the run's labels (:func:`pipeline.chain.cover_classes`): the level the
    model's card declares (``models.level``), else the finest that holds them (a warning when
    several do, :meth:`quadratseg.taxonomy.Taxonomy.model_level`), each model's classes checked.

    Raises:
        QuadratsegError: a model's class is in no taxonomy level (named, with close matches), a
            model's classes mix levels, or they are not of the level its card declares; before any
            photo is processed.
    """
    models_classes = {
        "colony model": list(models.segment.names.values()) if models.segment is not None else [],
        "semantic model": list(models.semantic.classes[1:]) if models.semantic is not None else [],
    }
    for name, classes in models_classes.items():
        if not classes:
            continue
        try:
            taxonomy.finest_level(classes)
        except QuadratsegError as error:
            raise QuadratsegError(
                f"the {name}'s classes do not fit the taxonomy ({error}); train it on taxonomy labels "
                "or point QUADRATSEG_TAXONOMY at a taxonomy that holds them"
            ) from error
    classes = cover_classes(models)
    if not classes:
        raise QuadratsegError("the segmentation model names no class")
    level, note = taxonomy.model_level(classes, models.level)
    if note:
        logger.warning("%s", note)
    return level


def _write_image(path: Path, image: np.ndarray, rgb: bool = True) -> None:
    """Write an RGB image (or a one-channel map, ``rgb=False``) atomically under a temporary name no
    other writer shares, encoded in the format of the path's suffix."""
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb else image)
    if not ok:
        raise OSError(f"cannot encode {path}")
    atomic_write_bytes(path, data.tobytes())


def photo_output(out: Path, folder: str, key: str) -> Path:
    """A photo's image in ``OUT/folder`` (``warped`` or ``clean``): this version's JPEG, else the PNG
    an earlier version wrote there; this version's path when neither exists."""
    path = out / folder / output_name(key, PHOTO_OUTPUTS[folder])
    legacy = out / folder / output_name(key, LEGACY_OUTPUTS[folder])
    return legacy if not path.is_file() and legacy.is_file() else path


def sweep_orphan_temporaries(job: PhotoJob) -> list[str]:
    """Remove the temporaries (``.NAME.tmp-PID-HEX``) of photo outputs that a writer killed mid-write
    left and a retry then finished: those of a photo whose record exists, is newer than the
    temporary (the record is written last, by the attempt that finished) and is claimed by no run
    now (a claim is the only way to write a photo's outputs). Returns their paths, relative to OUT.
    Other temporaries are left to :func:`quadratseg.atomic.sweep_stale_temporaries`."""
    import os

    from pipeline.claims import claim_path
    from quadratseg.atomic import TEMPORARY_NAME

    removed = []
    for folder, suffix in [*PHOTO_OUTPUTS.items(), ("photos", ".json")]:
        root = job.out / folder
        for parent, _dirs, files in os.walk(root):
            for name in files:
                if not TEMPORARY_NAME.match(name):
                    continue
                path = Path(parent) / name
                target = name[1:].rsplit(".tmp-", 1)[0]
                if not target.endswith(suffix):
                    continue
                key = (path.parent / target[: -len(suffix)]).relative_to(root).as_posix()
                record = job.record_path(key)
                try:
                    if claim_path(job.out, key).exists() or record.stat().st_mtime <= path.stat().st_mtime:
                        continue
                    path.unlink()
                except FileNotFoundError:  # no record yet, or renamed by its writer meanwhile
                    continue
                removed.append(path.relative_to(job.out).as_posix())
    return removed


def _write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=1))


def _nan_to_none(array: np.ndarray | None) -> Any:
    if array is None:
        return None
    return [[None if not np.isfinite(v) else round(float(v), 3) for v in row] for row in np.asarray(array)]


def single_stage_scaling(
    image_shape: tuple[int, ...],
    warp_size: tuple[int, int] | None,
    min_side_px: int = 32,
    max_aspect_off: float = 1.5,
) -> np.ndarray | None:
    """The (3, 3) homography (raw px -> warped px) resizing an already-warped quadrat photo of
    ``image_shape`` (H, W, ...) to ``warp_size=(width, height)``; None when there is no size or the
    photo has it already.

    Raises:
        QuadratsegError: the photo cannot be a warped quadrat: under ``min_side_px`` on a side, or
            its aspect ratio (width / height) more than ``max_aspect_off`` times off the warp size's
            (it would be stretched into a quadrat). The photo fails alone, its reason says what to do.

    Examples:
        >>> single_stage_scaling((256, 256, 3), (512, 512)).tolist()
        [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]
        >>> single_stage_scaling((256, 600, 3), (256, 256))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        quadratseg.errors.QuadratsegError: the photo is 600 x 256 px, an aspect ratio ...
    """
    height, width = image_shape[:2]
    if min(height, width) < min_side_px:
        raise QuadratsegError(
            f"the photo is {width} x {height} px, under {min_side_px} px on a side: too small for a "
            "quadrat (without --corners each photo must be an already-warped quadrat)"
        )
    if warp_size is None or tuple(warp_size) == (width, height):
        return None
    aspect, wanted = width / height, warp_size[0] / warp_size[1]
    if max(aspect / wanted, wanted / aspect) > max_aspect_off:
        raise QuadratsegError(
            f"the photo is {width} x {height} px, an aspect ratio (width / height) of {aspect:.2f}, "
            f"more than {max_aspect_off:g} times off the warped quadrat's {warp_size[0]} x "
            f"{warp_size[1]} px ({wanted:.2f}): without --corners each photo must be an already-warped "
            "quadrat, and this one would be stretched. Crop it to the quadrat, set --aspect to the "
            "quadrat's width / height, or give --corners for raw photos"
        )
    return np.diag([warp_size[0] / width, warp_size[1] / height, 1.0])


def photo_record(
    key: str,
    result: PhotoResult,
    fingerprint: str,
    seconds: dict[str, float],
    raw_size: tuple[int, int] | None = None,
    class_names: list[str] | None = None,
    classes: list[str] | None = None,
    level: str = "",
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON record of one processed photo (the resumability marker); ``class_names``: the
    classes of its class map's indices (background first), when it has one; ``classes`` and
    ``level``: the labels the models can give and their taxonomy level. ``grid_mask`` says whether
    ``grid_masks/<key>.png`` belongs to this record; ``source``: the photo file it was made from
    (:func:`photo_source`)."""
    return {
        "photo": key,
        "fingerprint": fingerprint,
        "source": source,
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
        "colony_stats": colony_stats(result.instances),
        "classes": list(classes or []),
        "level": level,
        "grid_mask": result.grid_mask is not None,
        "cover": [e.__dict__ for e in result.cover],
        "class_map_classes": list(class_names) if class_names and result.class_map is not None else None,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }


@dataclass(frozen=True)
class PhotoJob:
    """What every photo of a run needs besides its models (plain values: it travels to Ray's actors).

    ``warp_size=(width, height)`` resizes single-stage photos; ``classes``, ``level`` and
    ``class_names`` go into each record (:func:`photo_record`); ``colors``: label -> RGB of the
    overlays.
    """

    out: Path
    fingerprint: str
    overlays: bool = True
    warp_size: tuple[int, int] | None = None
    classes: tuple[str, ...] = ()
    level: str = ""
    class_names: tuple[str, ...] | None = None
    colors: dict[str, Any] | None = None

    def record_path(self, key: str) -> Path:
        """``photos/<key>.json``, the photo's record (written last)."""
        return self.out / "photos" / output_name(key, ".json")

    def done(self, key: str, photo: Path) -> bool:
        """True when the photo's record exists, was made with this run's fingerprint and from the
        file now at ``photo`` (:func:`same_photo`: a photo replaced under its name is redone)."""
        path = self.record_path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            # none, damaged, or a name this file system refuses (the claim then says why): redo
            return False
        if not isinstance(record, dict):
            return False
        return not record_mismatch(record, self.fingerprint, photo)


def photo_job(
    out_dir: str | Path,
    models: ChainModels,
    fingerprint: str,
    overlays: bool = True,
    warp_size: tuple[int, int] | None = None,
    taxonomy: Taxonomy | None = None,
) -> PhotoJob:
    """The :class:`PhotoJob` of a run: the models' classes checked (:func:`check_model_classes`)
    and the overlay colours of ``taxonomy`` (default: the configured one).

    Raises:
        QuadratsegError: a model's classes do not fit the taxonomy.
    """
    taxonomy = taxonomy or load_taxonomy()
    level = check_model_classes(models, taxonomy)
    check_calibration(models, level)
    return PhotoJob(
        out=Path(out_dir),
        fingerprint=fingerprint,
        overlays=overlays,
        warp_size=tuple(warp_size) if warp_size is not None else None,
        classes=tuple(cover_classes(models)),
        level=level,
        class_names=tuple(models.semantic.classes) if models.semantic is not None else None,
        colors={name: taxonomy.color(name) for name in taxonomy.classes()},
    )


def check_calibration(models: ChainModels, level: str) -> None:
    """Refuse fitted interval terms made for another chain: another taxonomy level, other units
    (colonies against class-map blocks), or colonies kept above another confidence threshold, before
    any photo is processed (terms without a record of them, fitted before they were recorded, are
    taken as they are)."""
    terms = models.calibration
    if terms is None:
        return
    method = cover_method(models)
    if terms.level and terms.level != level:
        raise QuadratsegError(
            f"--calibration: the terms were fitted at the {terms.level} level, this run's model reports "
            f"at {level}; fit them on a run of this model (python -m pipeline.calibrate)"
        )
    if terms.method and terms.method != method:
        raise QuadratsegError(
            f"--calibration: the terms were fitted on {terms.method} estimates, this chain makes "
            f"{method} ones (another --segment or --ensemble); fit them on a run of this chain"
        )
    conf = getattr(models.segment, "conf", None)
    if terms.fitted and terms.colony_conf is None and conf is not None:
        logger.warning(
            "--calibration: the terms record no colony threshold (fitted before one was recorded); "
            "this run keeps the colonies above %s: use terms fitted at it",
            conf,
        )
    if terms.colony_conf is not None and conf is not None and abs(conf - terms.colony_conf) > 1e-9:
        raise QuadratsegError(
            f"--calibration: the terms were fitted on colonies kept above confidence {terms.colony_conf}, "
            f"this run keeps those above {conf} (another --conf or model card); run with --conf "
            f"{terms.colony_conf} or fit them on a run at {conf}"
        )


def photo_source(path: Path) -> dict[str, Any]:
    """What a record keeps of the photo file it was made from: ``bytes``, ``mtime_ns`` and the
    content's ``sha256``."""
    stat = Path(path).stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path)}


def same_photo(source: dict[str, Any] | None, path: Path) -> bool:
    """Whether ``path`` holds the photo a record's ``source`` (:func:`photo_source`) describes: the
    same size and modification time, or (a copied or touched file) the same size and content hash.
    A record without a source (or a photo gone) is not the same.

    Examples:
        >>> same_photo(None, Path("any.jpg"))
        False
    """
    if not source:
        return False
    try:
        stat = Path(path).stat()
    except OSError:
        return False
    if stat.st_size != source.get("bytes"):
        return False
    return stat.st_mtime_ns == source.get("mtime_ns") or file_sha256(path) == source.get("sha256")


def claim_photo(job: PhotoJob, claims: PhotoClaims, item: BatchItem) -> str:
    """Whether this run processes ``item`` now, both engines' rule: ``"done"`` (its record is there
    with this run's fingerprint: looked at before the claim, and again after it, a photo another
    run finished meanwhile being let go), ``"held"`` (another live run holds it) or ``"claimed"``.

    Raises:
        pipeline.claims.ClaimError: the claim file cannot be written.
    """
    if job.done(item.key, item.path):
        return "done"
    if not claims.claim(item.key):
        return "held"
    if job.done(item.key, item.path):  # finished by another run between the look and the claim
        claims.release(item.key)
        return "done"
    return "claimed"


def read_photo(item: BatchItem) -> tuple[np.ndarray, float, dict[str, Any]]:
    """The photo as uint8 RGB (H, W, 3), EXIF-upright, the seconds the read took and the file it was
    read from (:func:`photo_source`, taken first: a file replaced during the read is redone)."""
    start = time.perf_counter()
    source = photo_source(item.path)
    image = read_image_rgb(item.path)
    return image, time.perf_counter() - start, source


def start_photo(image: np.ndarray, single_stage: bool, warp_size: tuple[int, int] | None) -> PhotoResult:
    """A raw photo (H, W, 3) as the chain's stages take it (:func:`pipeline.chain.run_stages`): in
    a single-stage run (no corner model: the photo is an already-warped quadrat) resized to
    ``warp_size=(width, height)`` first, the result's homography being that scaling (raw px ->
    warped px)."""
    scaling = single_stage_scaling(image.shape, warp_size) if single_stage else None
    if scaling is None:
        return PhotoResult(raw=image)
    interpolation = cv2.INTER_AREA if scaling[0, 0] < 1 else cv2.INTER_LINEAR
    return PhotoResult(raw=cv2.resize(image, warp_size, interpolation=interpolation), homography=scaling)


def chain_photo(image: np.ndarray, models: ChainModels, warp_size: tuple[int, int] | None) -> PhotoResult:
    """The chain on one raw photo (H, W, 3), started by :func:`start_photo`."""
    return run_stages(start_photo(image, models.corners is None, warp_size), models)


def write_photo(
    job: PhotoJob,
    key: str,
    raw_shape: tuple[int, ...],
    result: PhotoResult,
    seconds: dict[str, float],
    source: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Write one photo's outputs (images, instances, overlay) and then its record, each atomically;
    the earlier record and the outputs of an earlier run that this result lacks are removed first.
    ``raw_shape``: the raw photo's (H, W, ...); ``source``: the file it was read from
    (:func:`photo_source`; without it a rerun redoes the photo). Returns ``seconds`` with the
    ``write`` time added (as in the record)."""
    from quadratseg.visualize import draw_polygons

    out = job.out
    start = time.perf_counter()
    # the earlier record first: a failure below must not leave it beside outputs it no longer has
    job.record_path(key).unlink(missing_ok=True)
    for folder, suffix in [*PHOTO_OUTPUTS.items(), *LEGACY_OUTPUTS.items()]:  # what this result lacks
        (out / folder / output_name(key, suffix)).unlink(missing_ok=True)
    if result.warped is not None:
        _write_image(out / "warped" / output_name(key, PHOTO_OUTPUTS["warped"]), result.warped)
    if result.clean is not None and result.grid_mask is not None:
        _write_image(out / "clean" / output_name(key, PHOTO_OUTPUTS["clean"]), result.clean)
    if result.class_map is not None:
        _write_image(out / "class_maps" / output_name(key, ".png"), result.class_map, rgb=False)
    if result.grid_mask is not None:
        mask = result.grid_mask.astype(np.uint8) * 255
        _write_image(out / "grid_masks" / output_name(key, ".png"), mask, rgb=False)
    if result.clean is not None:
        instances = [
            {
                "label": inst.label,
                "score": round(inst.score, 4),
                "rings": [np.round(r, 2).tolist() for r in inst.rings],
            }
            for inst in result.instances
        ]
        # compact: an indent puts each vertex's numbers on lines of their own
        atomic_write_text(
            out / "instances" / output_name(key, ".json"), json.dumps(instances, separators=(",", ":"))
        )
        if job.overlays:
            overlay = draw_polygons(
                result.clean, [(i.label, i.rings) for i in result.instances], dict(job.colors or {})
            )
            _write_image(out / "overlays" / output_name(key, ".jpg"), overlay)
    seconds = {**seconds, "write": time.perf_counter() - start}
    _write_json(
        job.record_path(key),
        photo_record(
            key,
            result,
            job.fingerprint,
            seconds,
            (raw_shape[1], raw_shape[0]),
            list(job.class_names) if job.class_names is not None else None,
            list(job.classes),
            job.level,
            source,
        ),
    )
    logger.info("%s: %s", key, "; ".join(f"{stage} {result.status.get(stage, '-')}" for stage in STAGES))
    return seconds


def process_photo(job: PhotoJob, item: BatchItem, models: ChainModels) -> dict[str, float]:
    """Read, chain and write one photo (the three steps the local engine overlaps); returns the
    seconds per step (``read``, ``chain``, ``write``). Raises what the photo raised."""
    image, read_s, source = read_photo(item)
    start = time.perf_counter()
    result = chain_photo(image, models, job.warp_size)
    return write_photo(
        job, item.key, image.shape, result, {"read": read_s, "chain": time.perf_counter() - start}, source
    )


@dataclass
class EngineOutcome:
    """What an engine did with a run's photos: failures ``(key, path, reason)`` in any order,
    seconds per step summed over the photos processed, the photos skipped (done with this
    fingerprint, by an earlier run or a concurrent one) and the photos processed; with ``by_key`` a
    dict, each processed photo's seconds by key too (a Ray actor's rows)."""

    failures: list[tuple[str, str, str]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    skipped: int = 0
    processed: int = 0
    by_key: dict[str, dict[str, float]] | None = None

    def add_seconds(self, seconds: dict[str, float]) -> None:
        for stage, value in seconds.items():
            self.timing[stage] += value

    def add_done(self, key: str, seconds: dict[str, float]) -> None:
        """Count a photo processed, its seconds per step."""
        self.add_seconds(seconds)
        self.processed += 1
        if self.by_key is not None:
            self.by_key[key] = seconds


@dataclass(frozen=True)
class EngineOptions:
    """How a run is executed; none of it is part of the run's fingerprint (a run resumes across
    engines). ``models_factory``: a picklable callable ``(only=FIELDS) -> ChainModels`` building
    the models of the :class:`ChainModels` fields named (the others may be None), which each Ray
    actor calls once for its stage's models (the CLI passes :func:`pipeline.process.build_models`
    bound to the run's :class:`RunConfig`)."""

    engine: str = "local"
    prefetch: int = 2  # local engine: photos decoded ahead of the chain, and results queued for writing
    writers: int = 2  # local engine: threads writing photos' outputs at once (encoding releases the GIL)
    claim_ttl_s: float = DEFAULT_CLAIM_TTL_S
    ray_address: str | None = None
    ray_workers: int = 1
    ray_gpus_per_model: float = 0.0
    ray_cpus_per_model: float = 0.5
    models_factory: Any = None

    def __post_init__(self) -> None:
        """Each number checked against its range (:func:`quadratseg.options.as_number`, named by its
        option) and read as a number when given as text (the command line)."""
        checks = (
            ("writers", "--writers", {"minimum": 1, "integer": True}),
            ("prefetch", "prefetch", {"minimum": 1, "integer": True}),
            ("claim_ttl_s", "--claim-ttl", {"above": 0}),
            ("ray_workers", "--ray-workers", {"minimum": 1, "integer": True}),
            ("ray_gpus_per_model", "--ray-gpus-per-model", {"minimum": 0}),
            ("ray_cpus_per_model", "--ray-cpus-per-model", {"minimum": 0}),
        )
        for field_name, option, bounds in checks:
            object.__setattr__(self, field_name, as_number(option, getattr(self, field_name), **bounds))


ENGINES = ("local", "ray")
SUPERSEDED = (
    "redone by another run with other models or options on this output folder since this run's pass; "
    "not in this run's tables (rerun to redo it with this run's)"
)
OTHER_PHOTO = (
    "redone by another run on this output folder from another photo under the same name (another "
    "input folder, or the photo replaced) since this run's pass; not in this run's tables (rerun to "
    "redo it with this run's photo)"
)


def record_mismatch(record: dict[str, Any], fingerprint: str, photo: Path) -> str:
    """Why a photo's record is not this run's result for the file ``photo`` ("" when it is): made
    with another fingerprint (:data:`SUPERSEDED`), or from another photo file under the same key
    (:data:`OTHER_PHOTO`: another input folder on a shared output folder, or the photo replaced).

    Examples:
        >>> record_mismatch({"fingerprint": "other"}, "fp", Path("a.jpg")) == SUPERSEDED
        True
        >>> record_mismatch({"fingerprint": "fp", "source": None}, "fp", Path("a.jpg")) == OTHER_PHOTO
        True
    """
    if record.get("fingerprint") != fingerprint:
        return SUPERSEDED
    if not same_photo(record.get("source"), photo):
        return OTHER_PHOTO
    return ""


def check_output_folder(out_dir: str | Path) -> None:
    """Refuse an output folder that cannot be one, before anything is loaded or written: an existing
    file, a path through a file, or a folder (the nearest existing one above a new folder) that
    cannot be written.

    Raises:
        QuadratsegError: one line naming the folder and what to do.
    """
    import os

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise QuadratsegError(
            f"the output folder {out} is a file: give a folder (a new one, or the output folder of an "
            "earlier run)"
        )
    target = out.absolute()
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise QuadratsegError(f"cannot make the output folder {out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "the output folder" if existing == target else f"where the output folder {out} would go"
        raise QuadratsegError(f"cannot write in {existing} ({where}): choose a folder you can write to")


def prepare_output_folder(out_dir: str | Path) -> Path:
    """Make the output folder and its claims folder and write a file there (then removed), so an
    output folder where nothing can be written stops the run before any photo
    (:func:`check_output_folder` first). Returns the folder.

    Raises:
        QuadratsegError: one line naming the folder, why and what to do.
    """
    import os
    import secrets

    from pipeline.claims import CLAIMS_DIR

    check_output_folder(out_dir)
    out = Path(out_dir)
    try:
        (out / CLAIMS_DIR).mkdir(parents=True, exist_ok=True)
        probe = out / CLAIMS_DIR / f".write-check-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise QuadratsegError(
            f"cannot write in the output folder {out} ({exc.strerror or exc}): choose a folder you can "
            "write to"
        ) from None
    return out


def output_inside(images: str | Path, out_dir: str | Path) -> bool:
    """Whether the output folder lies inside the photo folder ``images`` (a rerun would read its
    files as photos but for :func:`quadratseg.images.scan_images`'s ``exclude``)."""
    source = Path(images).resolve()
    return source.is_dir() and Path(out_dir).resolve().is_relative_to(source)


def process_folder(
    images: str | Path,
    out_dir: str | Path,
    models: ChainModels,
    fingerprint: str,
    quadrat_cm: float | None = None,
    overlays: bool = True,
    metadata: str | Path | Mapping[str, dict[str, str]] | None = None,
    warp_size: tuple[int, int] | None = None,
    engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """Run the chain on every photo of ``images`` into ``out_dir`` (resumable); returns a summary.

    Without a corner model (single-stage: the photos are warped quadrats) each photo is resized to
    ``warp_size=(width, height)`` px when given (the size the models and ``quadrat_cm`` assume), the
    record's homography being that scaling (raw -> warped, for CoralNet points).

    Site, year and quadrat of each photo come from the ``metadata`` CSV (or its rows as
    :func:`quadratseg.photo_meta.read_photo_metadata` read them), else the key's folders,
    else its name (:func:`quadratseg.photo_meta.photo_places`); photos left without a site or a
    year, metadata rows that match no photo or several, and folders and names that disagree are
    named in warnings; the photos without site or year are counted in the summary
    (``photos_without_site_or_year``).

    The photos are the image files under ``images`` (:func:`quadratseg.images.scan_images`) but
    those under ``out_dir`` when it lies inside (said in the log); image-like files that cannot be
    read (HEIC, camera raw) are named in a warning and counted in the summary (``unreadable_images``).
    An output folder that is a file or where nothing can be written stops the run before any photo
    (:func:`prepare_output_folder`).

    ``engine`` (:class:`EngineOptions`): ``local`` (default: this process, reading and writing
    overlapped with the chain, :mod:`pipeline.engine_local`) or ``ray`` (:mod:`pipeline.engine_ray`).
    Either claims each photo in ``out_dir`` before it reads it (:mod:`pipeline.claims`): two runs on
    one output folder share its photos, each done once.
    """
    options = engine or EngineOptions()
    if options.engine not in ENGINES:
        raise QuadratsegError(f"--engine must be one of {', '.join(ENGINES)}, got {options.engine!r}")
    table = metadata or None  # a CSV to read, or its rows read already (pipeline.process checks them)
    if isinstance(table, str | Path):
        table = read_photo_metadata(table)
    out = prepare_output_folder(out_dir)
    swept = sweep_stale_temporaries(out, options.claim_ttl_s)
    if swept:
        logger.warning(
            "removed %d temporar%s left by a killed writer (untouched for over %g s): %s",
            len(swept),
            "y" if len(swept) == 1 else "ies",
            options.claim_ttl_s,
            ", ".join(str(p.relative_to(out)) for p in swept[:5]),
        )
    items, scan = scan_batch(images, exclude=[out])
    if output_inside(images, out):
        logger.info("the output folder %s is inside the photo folder: left out, not read as photos", out)
    places, notes = photo_places([item.key for item in items], table)
    for note in notes:  # unused metadata rows, folders and names that disagree
        logger.warning("%s", note)
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
    job = photo_job(out, models, fingerprint, overlays, warp_size, taxonomy)
    level = job.level
    started = time.perf_counter()
    if options.engine == "ray":
        from pipeline.engine_ray import run_ray

        outcome = run_ray(items, job, models, options)
    else:
        from pipeline.engine_local import run_local

        outcome = run_local(items, job, models, options)
    photos_s = time.perf_counter() - started
    orphans = sweep_orphan_temporaries(job)
    if orphans:
        logger.info("removed %d temporaries of photos a retry finished: %s", len(orphans), orphans[:5])
    order = {item.key: index for index, item in enumerate(items)}
    report = BatchReport(total=len(items), failures=sorted(outcome.failures, key=lambda f: order[f[0]]))
    report.write(out)
    # the tables are rebuilt from every photo record of this run's fingerprint and photo file, so a
    # resumed run reports all photos, and one another run redid meanwhile (with other options, or from
    # another photo under the same name) is not taken for its own
    taxonomy_rows, colony_table, status_rows = [], [], []
    failed = {key: reason for key, _path, reason in report.failures}
    for item in items:
        record_path = job.record_path(item.key)
        if item.key in failed or not record_path.is_file():
            status_rows.append({"photo": item.key, "error": failed.get(item.key, "not processed")})
            continue
        record = json.loads(record_path.read_text(encoding="utf-8"))
        mismatch = record_mismatch(record, fingerprint, item.path)  # rewritten since this run's pass
        if mismatch:
            status_rows.append({"photo": item.key, "error": mismatch})
            continue
        status_rows.append(
            {"photo": item.key, **record["status"], "colonies": record["colonies"], "error": ""}
        )
        size = record["warped_size"]
        if record["cover"]:
            estimates = models.table_estimates([CoverEstimate(**e) for e in record["cover"]])
            taxonomy_rows.extend(
                cover_rows(
                    item.key,
                    places[item.key],
                    estimates,
                    record["observed_share"],
                    taxonomy,
                    level,
                    quadrat_cm,
                    size,
                    calibration=models.calibration,
                )
            )
        colony_table.extend(
            colony_rows(item.key, places[item.key], record["colony_stats"], taxonomy, level, quadrat_cm, size)
        )
    current = [r["photo"] for r in status_rows if not r["error"]]
    terms = models.interval_terms()  # the tables' intervals: the terms are no part of the fingerprint
    run_record = {"fingerprint": fingerprint, "photos": current, "interval_terms": terms}
    source = getattr(models.segment, "conf_source", None)  # a SegPredictor's: given, card or default
    if source is not None:
        run_record["colony_conf"] = {"conf": models.segment.conf, "source": source}
    _write_json(out / RUN_FILE, run_record)
    write_table(out / "status.csv", ["photo", *STAGES, "colonies", "error"], status_rows)
    write_table(out / "cover.csv", COVER_COLUMNS, taxonomy_rows)
    write_table(out / "colonies.csv", COLONY_COLUMNS, colony_table)
    write_table(out / "cover_summary.csv", SUMMARY_COLUMNS, summarize_cover(taxonomy_rows))
    write_table(
        out / "timing.csv",
        ["stage", "seconds"],
        [{"stage": k, "seconds": round(v, 3)} for k, v in outcome.timing.items()],
    )
    from pipeline.report import write_process_report

    write_process_report(out)
    summary: dict[str, Any] = {
        # wall seconds of the photos' pass (the engine) and of the tables and report after it
        "seconds": {
            "photos": round(photos_s, 3),
            "tables": round(time.perf_counter() - started - photos_s, 3),
        },
        "photos": len(items),
        "processed": outcome.processed,
        "resumed_skipped": outcome.skipped,
        "failed": len(failed),
        "with_cover": sum(1 for r in status_rows if r.get("cover") == "ok"),
        "photos_without_site_or_year": len(unplaced),
        "unreadable_images": len(scan.unreadable),
        "variant": models.variant,
        "interval_terms": terms,
        "engine": options.engine,
        "out_dir": str(out),
    }
    report.raise_if_failed(out, json.dumps(summary))
    return summary


@dataclass(frozen=True)
class RunConfig:
    """Every option of a ``pipeline.process`` run (their meaning: :func:`pipeline.process.process`).

    The configuration is hashed (but the table options), with the content of every file it names
    (:func:`run_fingerprint`): a rerun skips a photo only when nothing it depends on changed.
    """

    yolo: str | None = None
    corners: str | None = None
    grid: str | None = None
    inpaint: str = "lama"
    grid_template: str | None = None
    warp_size: int | None = None
    allow_warp_size_mismatch: bool = False
    allow_scale_mismatch: bool = False
    aspect: float = 1.0
    quadrat_cm: float | None = None
    metadata: str | None = None
    corners_imgsz: int | None = None
    grid_imgsz: int | None = None
    yolo_imgsz: int | None = None
    corners_conf: float | None = None
    corners_kpt_conf: float | None = None
    corners_max_cost: float | None = None
    corners_refine: bool = True
    grid_conf: float | None = None
    grid_kpt_conf: float | None = None
    grid_max_cost: float | None = None
    conf: float | None = None  # None: the YOLO model card's
    include_inpainted: bool = False
    boundary_px: float = 0.0
    miss_pp: float = 0.0
    calibration: str | None = None
    overlays: bool = True
    segment: str = "yolo"
    mmseg_config: str | None = None
    mmseg_weights: str | None = None
    ensemble: str = "weighted"
    ensemble_weight: float = 0.5
    nms_iou: float = 0.5


RUN_FILES = ("yolo", "corners", "grid", "grid_template", "mmseg_weights")  # hashed by content
WEIGHT_FILES = ("yolo", "corners", "grid", "mmseg_weights")  # files that carry a model card
# options that change only the tables, rebuilt from the photo records on every run: not hashed
# (--overlays is hashed: overlays are images written per photo). The interval terms are among them:
# the tables re-derive every interval from the records (ChainModels.table_estimates), so new terms
# fitted by pipeline.calibrate cost a pass over the records, not over the models.
TABLE_OPTIONS = ("quadrat_cm", "metadata", "calibration", "boundary_px", "miss_pp")


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


def mmseg_config_text(config: str | Path) -> str:
    """The resolved text of an MMSeg config (its ``_base_`` chain merged), found as
    :func:`DINOv2_mmseg.runner.load_config` finds it (a bundled config may be given by name).

    Raises:
        QuadratsegError: no such config (the bundled ones are named).
    """
    from DINOv2_mmseg.runner import load_config

    return load_config(config).pretty_text


def run_fingerprint(config: RunConfig, extra_files: dict[str, str | Path | None] | None = None) -> str:
    """A short hash of the whole configuration but the table options (:data:`TABLE_OPTIONS`), with
    the package version, each file it names replaced by its content's hash (weights, their model
    cards and the templates the cards name, template), the MMSeg config by its resolved text
    (:func:`mmseg_config_text`: an edit of a ``_base_`` file counts) and ``extra_files`` (e.g. the
    LaMa weights from the settings) hashed by content too.

    Examples:
        >>> run_fingerprint(RunConfig(conf=0.3)) != run_fingerprint(RunConfig(conf=0.4))
        True
    """
    import quadratseg
    from quadratseg.model_card import model_card_path, read_model_card

    values: dict[str, Any] = {k: v for k, v in asdict(config).items() if k not in TABLE_OPTIONS}
    values["quadratseg_version"] = quadratseg.__version__
    if config.mmseg_config:
        text = mmseg_config_text(config.mmseg_config)
        values["mmseg_config"] = {"text_sha256": hashlib.sha256(text.encode()).hexdigest()}
    for name in RUN_FILES:
        path = getattr(config, name)
        if path:
            resolved = path  # weights paths are resolved by the CLI (pipeline.process.process_with)
            values[name] = {"sha256": file_sha256(resolved)}
            card = model_card_path(resolved)
            if name in WEIGHT_FILES and card.is_file():
                values[name]["card_sha256"] = file_sha256(card)
                template = read_model_card(resolved).get("template")  # a file beside the card
                if template:
                    values[name]["template_sha256"] = file_sha256(card.parent / str(template))
    for name, path in sorted((extra_files or {}).items()):
        values[f"file:{name}"] = file_sha256(path) if path else None
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
