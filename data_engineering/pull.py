"""Pull a CVAT project (any source) into a FiftyOne dataset: exact, resumable, safe.

How a pull stays safe:
1. Everything that can be checked before writing is checked first: task filters, labels
   against the taxonomy (unknown labels stop the pull with close matches), shapes.
2. Work happens in a *staging* dataset (``<name>.pulling``), a copy of the current dataset.
   Each task is applied as a unit: its old samples are removed, its new samples added, and
   the task's fingerprint recorded in the staging dataset's info.
3. Only when every task is done does the staging dataset replace the dataset. A pull that is
   killed leaves the dataset as it was; the next pull finds the staging dataset, keeps the
   tasks it already finished, and completes the rest, without duplicates.

Modes: ``task_tracking`` (default: pull tasks that are new or whose content changed),
``skip_existing`` (pull only tasks not yet in the dataset), ``force_refresh`` (rebuild).
Media are stored as ``<media_dir>/<project>/task_<id>/<file name>``, so equal file names in
different tasks never collide.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quadratseg.atomic import atomic_write_bytes
from quadratseg.cvat_tasks import ProjectData, TaskData, check_labels_defined
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import (
    POLYLINES_FIELD,
    ConversionLog,
    declare_skeletons,
    derive_level_fields,
    frame_labels,
    parse_quadrat_name,
)
from quadratseg.images import decode_image_rgb
from quadratseg.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

MODES = ("task_tracking", "skip_existing", "force_refresh")
STAGING_SUFFIX = ".pulling"
INFO_KEY = "cvat_tasks"  # dataset.info[INFO_KEY] = {task id: its content fingerprint | the label map's}


@dataclass
class PullSummary:
    """What a pull did; ``as_dict()`` is what the CLI prints and the demo reports."""

    dataset: str
    project: str
    tasks_pulled: list[int] = field(default_factory=list)
    tasks_kept: list[int] = field(default_factory=list)
    tasks_filtered: dict[str, str] = field(default_factory=dict)  # task id -> why
    images: int = 0
    images_skipped: list[str] = field(default_factory=list)
    samples_per_split: dict[str, int] = field(default_factory=dict)
    shapes_per_label: dict[str, int] = field(default_factory=dict)
    shapes_per_split_label: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return dict(self.__dict__)


def safe_dir_name(name: str) -> str:
    """A file-system-safe folder name for a project or task."""
    return re.sub(r"[^0-9A-Za-z._-]+", "_", name).strip("._") or "project"


def select_tasks(
    project: ProjectData, allowed_subsets: tuple[str, ...], statuses: tuple[str, ...]
) -> tuple[list[TaskData], dict[str, str]]:
    """Tasks to consider, and why the others were left out (status or subset)."""
    chosen, filtered = [], {}
    allowed = {s.lower() for s in allowed_subsets}
    for task in project.tasks:
        if statuses and task.status not in statuses:
            filtered[str(task.id)] = f"status {task.status!r} (only {', '.join(statuses)})"
        elif allowed and task.subset.lower() not in allowed:
            filtered[str(task.id)] = f"subset {task.subset!r} (allowed: {', '.join(sorted(allowed))})"
        else:
            chosen.append(task)
    return chosen, filtered


def _polygon_labels(project: ProjectData, tasks: list[TaskData]) -> set[str]:
    # unlabelled shapes (label="") are dropped by the conversion, with a warning
    shapes = (s for t in tasks for f in t.frames for s in f.shapes)
    return {s.label for s in shapes if s.type in ("polygon", "mask") and s.label}


def _write_media(data: bytes, target: Path) -> tuple[int, int]:
    """Decode-check and store an image atomically (bytes as CVAT has them, EXIF kept).

    Returns the (width, height) of the upright picture (EXIF orientation applied): the frame CVAT
    shows, annotates and reports (its manifest swaps width and height for orientations 5..8).
    """
    image = decode_image_rgb(data, "from CVAT")  # ImageReadError is a ValueError
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data):
        atomic_write_bytes(target, data)  # the umask's permissions: media are shared like any file
    return image.shape[1], image.shape[0]


def _task_samples(
    project: ProjectData,
    task: TaskData,
    media_root: Path,
    aliases: dict[str, str],
    log: ConversionLog,
    summary: PullSummary,
) -> list[Any]:
    import fiftyone as fo

    labels = {lab.name: lab for lab in project.labels}
    folder = media_root / f"task_{task.id}"
    samples = []
    seen: Counter = Counter()
    for frame in task.frames:
        where = f"task {task.name!r} (id {task.id}), image {frame.name!r}"
        file_name = Path(frame.name).name
        seen[file_name] += 1
        if seen[file_name] > 1:  # same name twice in one task (different sub-folders in CVAT)
            file_name = f"{Path(file_name).stem}__frame{frame.frame}{Path(file_name).suffix}"
            log.add("duplicate file names within a task (renamed with the frame number)", where)
        target = folder / file_name
        try:
            width, height = _write_media(frame.load_bytes(), target)
        except (OSError, ValueError, KeyError) as exc:
            summary.images_skipped.append(f"{where}: {exc}")
            continue
        if (frame.width, frame.height) not in ((0, 0), (width, height)):
            summary.images_skipped.append(
                f"{where}: the image is {width}x{height} (upright, EXIF orientation applied) "
                f"but CVAT says {frame.width}x{frame.height}"
            )
            continue
        fields = frame_labels(frame.shapes, (width, height), labels, aliases, where, log)
        sample = fo.Sample(
            filepath=str(target.resolve()),
            tags=[task.subset] if task.subset else [],
            metadata=fo.ImageMetadata(width=width, height=height, size_bytes=target.stat().st_size),
            cvat_task_id=task.id,
            cvat_task_name=task.name,
            cvat_subset=task.subset,
            cvat_project_name=project.name,
            cvat_frame=frame.frame,
            cvat_image_name=frame.name,
            **parse_quadrat_name(frame.name),
            **fields,
        )
        samples.append(sample)
    return samples


def pull_project(
    project: ProjectData,
    dataset_name: str,
    media_dir: Path,
    taxonomy: Taxonomy,
    mode: str = "task_tracking",
    allowed_subsets: tuple[str, ...] = ("train", "val", "test"),
    statuses: tuple[str, ...] = ("completed",),
    source_level: str = "finegrained",
    aliases: dict[str, str] | None = None,
) -> PullSummary:
    """Bring ``dataset_name`` up to date with ``project`` (see the module docstring).

    Raises:
        QuadratsegError: unknown mode, no task left after filtering, labels outside the
            taxonomy (:class:`~quadratseg.errors.UnknownLabelError`), or no image could be read.
    """
    import fiftyone as fo
    from fiftyone import ViewField as F
    from tqdm import tqdm

    start = time.perf_counter()
    if mode not in MODES:
        raise QuadratsegError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    aliases = dict(aliases or {})
    summary = PullSummary(dataset_name, project.name)
    check_labels_defined(project)
    tasks, summary.tasks_filtered = select_tasks(project, allowed_subsets, statuses)
    if not tasks:
        reasons = "; ".join(f"task {k}: {v}" for k, v in summary.tasks_filtered.items()) or "it has no tasks"
        raise QuadratsegError(f"nothing to pull from project {project.name!r}: {reasons}")
    taxonomy.check_labels(_polygon_labels(project, tasks), source_level, aliases)

    staging_name = dataset_name + STAGING_SUFFIX
    if mode == "force_refresh":
        if fo.dataset_exists(staging_name):
            fo.delete_dataset(staging_name)
        staging = fo.Dataset(staging_name, persistent=True)
    elif fo.dataset_exists(staging_name):
        staging = fo.load_dataset(staging_name)
        logger.info("resuming the interrupted pull found in %s", staging_name)
    elif fo.dataset_exists(dataset_name):
        staging = fo.load_dataset(dataset_name).clone(staging_name, persistent=True)
    else:
        staging = fo.Dataset(staging_name, persistent=True)
    done: dict[str, str] = dict(staging.info.get(INFO_KEY, {}))
    # what a task's samples depend on besides its CVAT content: the label map renames its colonies
    conversion = hashlib.sha1(
        json.dumps({"aliases": sorted(aliases.items()), "level": source_level}).encode()
    ).hexdigest()[:12]

    def version(task: TaskData) -> str:
        return f"{task.fingerprint()}|labels:{conversion}"

    def needs_pull(task: TaskData) -> bool:
        key = str(task.id)
        if mode == "skip_existing":
            return key not in done
        return done.get(key) != version(task)

    media_root = Path(media_dir) / safe_dir_name(project.name)
    log = ConversionLog()
    to_pull = [t for t in tasks if needs_pull(t)]
    pulling = {t.id for t in to_pull}
    summary.tasks_kept = [t.id for t in tasks if t.id not in pulling]
    for task in tqdm(to_pull, desc=f"pulling {project.name}", unit="task", disable=None):
        skipped_before = len(summary.images_skipped)
        samples = _task_samples(project, task, media_root, aliases, log, summary)
        staging.delete_samples(staging.match(F("cvat_task_id") == task.id))
        if samples:
            # the first sample is validated against the schema; the rest are built by the same
            # code with the same field types, so their validation is skipped (half the time)
            staging.add_samples(samples[:1], progress=False)
            staging.add_samples(samples[1:], progress=False, validate=False)
        del samples  # in-memory samples are reloaded by every later field edit: let them go
        if len(summary.images_skipped) > skipped_before:
            # an image of it could not be read: the task is not done, the next pull takes it again
            done.pop(str(task.id), None)
        else:
            done[str(task.id)] = version(task)
        staging.info[INFO_KEY] = done
        staging.save()
        summary.tasks_pulled.append(task.id)
    # tasks that left the selection (deleted in CVAT, reopened, moved out of the allowed subsets)
    wanted = {t.id for t in tasks}
    stale = [int(k) for k in done if int(k) not in wanted]
    if stale:
        staging.delete_samples(staging.match(F("cvat_task_id").is_in(stale)))
        for k in stale:
            done.pop(str(k), None)
        summary.warnings.append(f"removed the samples of tasks no longer selected: {sorted(stale)}")
    if staging.count() == 0:
        fo.delete_dataset(staging_name)
        hint = ""
        if all("missing" in line for line in summary.images_skipped):
            hint = (
                ". The export holds annotations only: export it again with images, or put the images "
                "in images/ beside its annotations.xml"
            )
        raise QuadratsegError(
            f"no image of project {project.name!r} could be read: "
            + "; ".join(summary.images_skipped[:3])
            + hint
        )
    gc.collect()
    derive_level_fields(staging, taxonomy, source_level)
    declare_skeletons(staging, project.labels)  # the App draws the corners' frame and the grid
    staging.info[INFO_KEY] = done
    staging.info["cvat_project_name"] = project.name
    staging.info["cvat_source"] = project.source
    staging.save()
    # swap: the old dataset goes only once the new one is complete
    if fo.dataset_exists(dataset_name):
        fo.delete_dataset(dataset_name)
    staging.name = dataset_name

    summary.images = staging.count()
    summary.samples_per_split = dict(sorted(staging.count_sample_tags().items()))
    if POLYLINES_FIELD in staging.get_field_schema():
        summary.shapes_per_label = dict(
            sorted(staging.count_values(f"{POLYLINES_FIELD}.polylines.label").items())
        )
        for split in summary.samples_per_split:
            counts = staging.match_tags(split).count_values(f"{POLYLINES_FIELD}.polylines.label")
            summary.shapes_per_split_label[split] = dict(sorted(counts.items()))
    summary.warnings.extend(log.lines())
    for line in summary.warnings:
        logger.warning("%s", line)
    for line in summary.images_skipped[:10]:
        logger.warning("skipped %s", line)
    summary.seconds = round(time.perf_counter() - start, 2)
    logger.info(
        "%s: pulled %d task(s), kept %d, filtered %d; %d images (%s); %d skipped; %.1f s",
        dataset_name,
        len(summary.tasks_pulled),
        len(summary.tasks_kept),
        len(summary.tasks_filtered),
        summary.images,
        ", ".join(f"{k}: {v}" for k, v in summary.samples_per_split.items()),
        len(summary.images_skipped),
        summary.seconds,
    )
    staging.info["last_pull"] = {k: v for k, v in summary.as_dict().items() if k != "shapes_per_split_label"}
    staging.save()
    return summary
