"""CLI: import a TagLab project into a FiftyOne dataset (and from there into CVAT).

    python -m data_engineering.taglab_import PROJECT.json --mapping taglab_classes.csv \\
        --dataset plot_a [--images-dir maps/] [--cvat-project "Plot A colonies" --subset train]

Each TagLab image (a survey) becomes one sample whose file is the survey's RGB map (found in
``--images-dir``, in the folder the project names it in or by file name, else at the path the project
names, relative to the project file; two surveys never take one file).
Each region becomes one closed, filled ``Polyline`` in ``gt_polylines``: its outer contour then its
inner contours (holes) as rings read even-odd, the project's colony model
(:mod:`quadratseg.fiftyone_io`); the push sends a colony with holes to CVAT as a mask. TagLab's
contours step along pixel edges; points within 0.05 px of the line through their neighbours are
dropped (about half of them; areas change by less than 0.01 %), so that a whole map fits in one
sample (MongoDB's 16 MB per document, every taxonomy level's copy included); a survey that still
does not fit is skipped with that reason.

Classes go through a mapping file, a CSV ``taglab,label``: one row per TagLab class, ``label``
a class of our taxonomy at ``--level`` or ``ignore`` (regions left out: sand, algae...). A TagLab
class used by a region with no row stops the import before anything is written, naming close
rows and close taxonomy labels. The scale comes from TagLab's ``map_px_to_mm_factor``.

What a sample holds: ``gt_polylines`` (and ``gt_polylines_<level>`` for every coarser level),
each polyline with ``taglab_id`` (the region's TagLab id), ``taglab_class`` and ``area_cm2``
(TagLab's pixel count x mm^2 per px / 100); ``taglab_survey`` (the image id), ``acquisition_date``,
``year``, ``px_to_mm`` (mm per map pixel) and ``taglab_project`` (the file name). With TagLab's
correspondences between surveys, each polyline also carries ``lineage`` (the colony's lineage id
across the surveys, as ``pipeline.track`` names it: a split's pieces take a suffix) and ``parents``
(the lineages a fusion joined), which the push sends to CVAT (:func:`taglab_lineages`).

A survey whose map is missing or of another size than the project says is skipped with its
reason; the import fails only when no survey is left. The dataset is built under a staging name
and takes ``--dataset``'s name once complete.
"""

from __future__ import annotations

import csv
import difflib
import gc
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.formats.taglab import PIXEL_CENTRE_OFFSET, TaglabProject, TaglabSurvey, read_taglab_project
from quadratseg.taxonomy import LEVELS, Taxonomy
from quadratseg.text_files import read_utf8_text

logger = logging.getLogger(__name__)
IGNORE = "ignore"
STAGING_SUFFIX = ".importing"
SIMPLIFY_PX = 0.05  # contour points closer than this to their neighbours' line are dropped
MAX_SAMPLE_BYTES = 15_000_000  # MongoDB's documents stop at 16 MiB; FiftyOne keeps a sample in one


def class_key(name: str) -> str:
    """A TagLab class name as the mapping matches it: without surrounding spaces, in Unicode's
    composed form (an editor may write "é" as "e" and an accent).

    Examples:
        >>> class_key(" Pore\u0301s ") == "Por\u00e9s"
        True
    """
    import unicodedata

    return unicodedata.normalize("NFC", name.strip())


def read_class_mapping(path: str | Path) -> dict[str, str]:
    """TagLab class (:func:`class_key`) -> our label (or ``ignore``) from a CSV ``taglab,label``.

    Raises:
        QuadratsegError: the file is missing, its header is not ``taglab,label``, or a class is listed twice.
    """
    path = Path(path)
    if not path.exists():
        raise QuadratsegError(
            f"class mapping {path} does not exist; write a CSV 'taglab,label' with one row per TagLab class "
            f"(label: one of our taxonomy's labels, or {IGNORE})"
        )
    rows = list(csv.DictReader(io.StringIO(read_utf8_text(path, "class mapping"), newline="")))
    if not rows or not {"taglab", "label"} <= set(rows[0]):
        raise QuadratsegError(f"{path}: the header must be 'taglab,label'")
    mapping: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        name, label = class_key(row["taglab"] or ""), (row["label"] or "").strip()
        if not name or not label:
            raise QuadratsegError(f"{path}, line {line}: empty TagLab class or label")
        if name in mapping:
            raise QuadratsegError(f"{path}, line {line}: TagLab class {name!r} is listed twice")
        mapping[name] = label
    return mapping


def check_class_mapping(
    project: TaglabProject, mapping: dict[str, str], taxonomy: Taxonomy, level: str, source: str
) -> dict[str, str]:
    """The mapping of every class a region uses (its name as the project spells it, matched to a row
    by :func:`class_key`), checked: each has a row, each row's label is in the taxonomy at ``level``
    (or is ``ignore``).

    Raises:
        QuadratsegError: every unmapped class named with the mapping's close rows and the close
            taxonomy labels (difflib); every target outside the taxonomy with close labels.
    """
    used = sorted({r.class_name for s in project.surveys for r in s.regions})
    known = taxonomy.classes(level)
    problems = []
    mapping = {**mapping, **{name: mapping[class_key(name)] for name in used if class_key(name) in mapping}}
    for name in used:
        if name not in mapping:
            rows = difflib.get_close_matches(name, list(mapping), n=3, cutoff=0.6)
            labels = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            labels += [lab for lab in known if lab.lower() in name.lower() and lab not in labels]
            hint = []
            if rows:
                hint.append(f"close rows: {', '.join(map(repr, rows))}")
            if labels:
                hint.append(f"close {level} labels: {', '.join(map(repr, labels[:3]))}")
            problems.append(f"{name!r} has no mapping" + (f" ({'; '.join(hint)})" if hint else ""))
        elif mapping[name] != IGNORE and mapping[name] not in known:
            close = difflib.get_close_matches(mapping[name], known, n=3, cutoff=0.6)
            problems.append(
                f"{name!r} maps to {mapping[name]!r}, which is not a {level} label"
                + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
            )
    if problems:
        raise QuadratsegError(
            f"{source}: TagLab classes the mapping does not place: {'; '.join(problems)}. Add a row "
            f"'<TagLab class>,<label>' per class (label: a {level} label or {IGNORE})"
        )
    return {name: mapping[name] for name in used}


def thin_ring(ring_xy: np.ndarray, tolerance_px: float = SIMPLIFY_PX) -> np.ndarray:
    """A ring (N, 2) px without the points that lie within ``tolerance_px`` of the line through
    their neighbours (Douglas-Peucker); the ring itself when fewer than 3 points would be left.

    TagLab traces contours along pixel edges at half-pixel steps: about half their points sit on
    straight runs, and a whole map of colonies must fit in one FiftyOne sample.
    """
    import shapely

    ring = np.asarray(ring_xy, dtype=np.float64).reshape(-1, 2)
    if tolerance_px <= 0 or len(ring) < 4:
        return ring
    line = shapely.LineString(np.vstack([ring, ring[:1]])).simplify(tolerance_px, preserve_topology=False)
    thinned = np.asarray(line.coords, dtype=np.float64)[:-1]
    return thinned if len(thinned) >= 3 else ring


def region_rings_normalized(
    contour_xy: np.ndarray,
    holes_xy: list[np.ndarray],
    frame_size: tuple[int, int],
    tolerance_px: float = SIMPLIFY_PX,
) -> list[list[tuple[float, float]]]:
    """A region's rings (TagLab map px, pixel centres at integers) -> FiftyOne's normalized rings.

    Each ring is thinned (:func:`thin_ring`), shifted by
    :data:`~quadratseg.formats.taglab.PIXEL_CENTRE_OFFSET` into the core's frame (pixel centres at
    half pixels), then divided by ``frame_size = (width, height)``; outer ring first, holes after
    (even-odd).
    """
    scale = np.array(frame_size, dtype=np.float64)
    return [
        [tuple(p) for p in ((thin_ring(ring, tolerance_px) + PIXEL_CENTRE_OFFSET) / scale).tolist()]
        for ring in (contour_xy, *holes_xy)
    ]


def taglab_lineages(project: TaglabProject) -> tuple[dict[tuple[str, int], tuple[str, str]], str]:
    """Each region's ``(lineage, parents)`` by ``(survey name, region id)`` from the project's
    correspondences: the surveys in date order, the links of each consecutive pair, lineage ids as
    ``pipeline.track`` gives them (:func:`quadratseg.track.lineage.assign_lineages`, the regions' pixel
    areas); and why there are none ("" when there are). Links between surveys that are not consecutive
    are not followed (the note says how many)."""
    from quadratseg.track.lineage import assign_lineages
    from quadratseg.track.matching import Link

    if len(project.surveys) < 2 or not project.links:
        return {}, "the project has no correspondences"
    if any(not s.date for s in project.surveys):
        return {}, "a survey has no acquisition date: the surveys cannot be ordered"
    surveys = sorted(project.surveys, key=lambda s: s.date)
    index = [{int(r.id): k for k, r in enumerate(s.regions)} for s in surveys]
    position = {s.name: k for k, s in enumerate(surveys)}
    intervals: list[list[Link]] = [[] for _ in surveys[1:]]
    unused = 0
    for link in project.links:
        k = position.get(link.source_survey)
        if k is None or position.get(link.target_survey) != k + 1:
            unused += 1
            continue
        # the reader refused links to regions a survey lacks (quadratseg.formats.taglab)
        source = None if link.source_id is None else index[k][int(link.source_id)]
        target = None if link.target_id is None else index[k + 1][int(link.target_id)]
        intervals[k].append(Link(source, target, "", link.event, link.split_fuse))
    lineages, parents = assign_lineages([[float(r.area_px) for r in s.regions] for s in surveys], intervals)
    out = {
        (s.name, int(r.id)): (lineages[k][j], parents[k][j])
        for k, s in enumerate(surveys)
        for j, r in enumerate(s.regions)
    }
    note = f"{unused} correspondence(s) between surveys not consecutive by date not followed"
    return out, note if unused else ""


def find_survey_image(survey: TaglabSurvey, project_path: Path, images_dir: Path | None) -> Path:
    """The survey's RGB map on disk.

    Raises:
        QuadratsegError: the project names no map, or it is in neither place (both named).
    """
    if not survey.image_path:
        raise QuadratsegError(f"survey {survey.name!r} names no RGB map in the project")
    parts = Path(survey.image_path.replace("\\", "/")).parts
    name = parts[-1]
    # under --images-dir: in the folder the project names it in (maps of one name, a folder a survey),
    # else by its name
    candidates = (
        ([images_dir / parts[-2] / name] if len(parts) > 1 else []) + [images_dir / name]
        if images_dir is not None
        else []
    )
    given = Path(survey.image_path)
    candidates += (
        [given] if given.is_absolute() else [project_path.parent / given, project_path.parent / name]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise QuadratsegError(
        f"survey {survey.name!r}: its map {survey.image_path!r} is not at {', '.join(map(str, candidates))}; "
        "pass --images-dir with the folder holding the maps"
    )


def map_size(path: Path) -> tuple[int, int]:
    """(width, height) of a survey's map as the project's readers show it
    (:func:`quadratseg.images.image_size`, from the header: no pixel is decoded), with PIL's
    decompression-bomb guard lifted for that read, so an orthomosaic above its 179 Mpx is measured
    like any other map (the import runs in one thread; the guard is put back at once).

    Raises:
        ImageReadError: the file is missing or not an image.
    """
    import warnings

    from PIL import Image

    from quadratseg.images import image_size

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return image_size(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def survey_sample(
    survey: TaglabSurvey,
    image: Path,
    mapping: dict[str, str],
    project_name: str,
    label_copies: int = 1,
    lineages: dict[tuple[str, int], tuple[str, str]] | None = None,
) -> tuple[Any, dict[str, int]]:
    """One FiftyOne sample of a survey (see the module docstring) and its polylines per label.

    ``label_copies``: how many polyline fields the sample will hold (``gt_polylines`` and one per
    coarser taxonomy level), to check that it fits in one database document. ``lineages``: each
    region's (lineage, parents) (:func:`taglab_lineages`), given to its polyline.

    Raises:
        QuadratsegError: the map's size is not the survey's width x height, or its colonies are too
            many points for one FiftyOne sample.
    """
    import bson
    import fiftyone as fo

    size = map_size(image)
    if size != (survey.width, survey.height):
        raise QuadratsegError(
            f"survey {survey.name!r}: map {image} is {size[0]}x{size[1]} px but the project says "
            f"{survey.width}x{survey.height}; pass the map the project was annotated on"
        )
    polylines, counts = [], {}
    cm2_per_px = survey.px_to_mm**2 / 100.0
    for region in survey.regions:
        label = mapping[region.class_name]
        if label == IGNORE:
            continue
        poly = fo.Polyline(
            label=label,
            points=region_rings_normalized(region.contour_xy, region.inner_contours_xy, size),
            closed=True,
            filled=True,
        )
        poly["taglab_id"] = int(region.id)
        poly["taglab_class"] = region.class_name
        poly["area_cm2"] = round(region.area_px * cm2_per_px, 4)
        if lineages and (survey.name, int(region.id)) in lineages:
            poly["lineage"], poly["parents"] = lineages[(survey.name, int(region.id))]
        polylines.append(poly)
        counts[label] = counts.get(label, 0) + 1
    field = fo.Polylines(polylines=polylines)
    size_bytes = len(bson.encode({"gt_polylines": field.to_dict()})) * label_copies
    if size_bytes > MAX_SAMPLE_BYTES:
        raise QuadratsegError(
            f"survey {survey.name!r}: its {len(polylines)} colonies take {size_bytes / 1e6:.0f} MB over "
            f"{label_copies} label field(s), more than one FiftyOne sample holds (16 MB); export the map "
            "in tiles from TagLab (File > Export > Export New Training Dataset) or import fewer classes"
        )
    sample = fo.Sample(
        filepath=str(image.resolve()),
        metadata=fo.ImageMetadata(width=size[0], height=size[1], size_bytes=image.stat().st_size),
        taglab_project=project_name,
        taglab_survey=survey.name,
        acquisition_date=survey.date,
        year=int(survey.date[:4]) if survey.date else None,
        px_to_mm=float(survey.px_to_mm),
        gt_polylines=field,
    )
    return sample, counts


def import_taglab_project(
    project_path: str | Path,
    mapping_path: str | Path,
    dataset_name: str,
    taxonomy: Taxonomy,
    level: str = "finegrained",
    images_dir: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Import a TagLab project into the FiftyOne dataset ``dataset_name`` (module docstring).

    Everything that can be checked is checked before the dataset is touched: the project, the
    class mapping, the dataset name. Returns a summary: surveys imported and skipped (with the
    reason), regions per label, regions ignored.

    Raises:
        QuadratsegError: the project or the mapping is invalid, a class has no mapping, the dataset
            exists and ``overwrite`` is off, or no survey could be imported.
    """
    import fiftyone as fo

    from quadratseg.fiftyone_io import derive_level_fields

    project_path = Path(project_path)
    project = read_taglab_project(project_path)
    mapping = check_class_mapping(
        project, read_class_mapping(mapping_path), taxonomy, level, str(project_path)
    )
    if fo.dataset_exists(dataset_name) and not overwrite:
        raise QuadratsegError(f"FiftyOne dataset {dataset_name!r} exists; pass --overwrite to replace it")
    images = Path(images_dir) if images_dir is not None else None
    copies = len(LEVELS) - LEVELS.index(level)  # gt_polylines and one field per coarser level
    samples, skipped, per_label = [], {}, {}
    lineages, lineage_note = taglab_lineages(project)
    if lineage_note and project.links:
        logger.warning("lineages: %s", lineage_note)
    taken: dict[Path, str] = {}  # a map file -> the survey it was taken for
    for survey in project.surveys:
        try:
            image = find_survey_image(survey, project_path, images)
            if image.resolve() in taken:
                raise QuadratsegError(
                    f"survey {survey.name!r}: its map {survey.image_path!r} resolves to {image}, the map of "
                    f"survey {taken[image.resolve()]!r}; pass --images-dir with a folder per survey as the "
                    "project names them"
                )
            sample, counts = survey_sample(survey, image, mapping, project_path.name, copies, lineages)
            taken[image.resolve()] = survey.name
        except (QuadratsegError, OSError) as exc:
            skipped[survey.name] = str(exc)
            logger.warning("skipped %s", exc)
            continue
        samples.append(sample)
        for label, n in counts.items():
            per_label[label] = per_label.get(label, 0) + n
    if not samples:
        raise QuadratsegError(
            f"no survey of {project_path} could be imported: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    staging_name = dataset_name + STAGING_SUFFIX
    if fo.dataset_exists(staging_name):
        fo.delete_dataset(staging_name)
    staging = fo.Dataset(staging_name, persistent=True)
    imported = [sample.taglab_survey for sample in samples]
    try:
        staging.add_samples(samples, progress=False)
        # in-memory samples are reloaded by every later field edit (minutes for a map of colonies)
        del samples, sample
        gc.collect()
        derive_level_fields(staging, taxonomy, level)
        staging.info["taglab_project"] = str(project_path.resolve())
        staging.info["taglab_class_mapping"] = mapping
        staging.save()
    except BaseException:
        fo.delete_dataset(staging_name)
        raise
    if fo.dataset_exists(dataset_name):
        fo.delete_dataset(dataset_name)
    staging.name = dataset_name
    regions = sum(len(s.regions) for s in project.surveys if s.name not in skipped)
    return {
        "dataset": dataset_name,
        "surveys_imported": imported,
        "surveys_skipped": skipped,
        "regions_per_label": dict(sorted(per_label.items())),
        "regions_ignored": regions - sum(per_label.values()),
        "lineages": "from the correspondences" + (f" ({lineage_note})" if lineage_note else "")
        if lineages
        else f"none: {lineage_note}",
    }


def taglab_import(
    project: str,
    mapping: str,
    dataset: str | None = None,
    images_dir: str | None = None,
    level: str = "finegrained",
    taxonomy: str | None = None,
    overwrite: bool = False,
    cvat_project: str | None = None,
    subset: str = "train",
    task_name: str | None = None,
) -> str:
    """Import a TagLab project into FiftyOne, and optionally push it into a CVAT project.

    Args:
        project: the TagLab project (.json).
        mapping: CSV 'taglab,label': our label (at --level) or 'ignore' for every TagLab class in use.
        dataset: FiftyOne dataset to write (default: the project file's name without .json).
        images_dir: folder holding the surveys' RGB maps (default: the paths the project names,
            relative to the project file).
        level: taxonomy level of the mapping's labels (finegrained, extended, main_family, agnostic).
        taxonomy: another taxonomy CSV (default: the built-in one).
        overwrite: replace an existing dataset of that name.
        cvat_project: push the imported colonies into this CVAT project (its labels must hold ours;
            colonies with holes go as masks), through the same push as create_cvat_annotation_tasks.
        subset: CVAT subset of the pushed task.
        task_name: name of the pushed task (default: the dataset's name).

    Returns:
        JSON: the import summary, with the CVAT task ids when pushed.
    """
    from quadratseg.cli import as_name, current_settings
    from quadratseg.taxonomy import load_taxonomy

    dataset = as_name(dataset) or Path(project).stem
    summary = import_taglab_project(
        project, mapping, dataset, load_taxonomy(taxonomy), level, images_dir, overwrite=overwrite
    )
    if cvat_project:
        from data_engineering.push import push_samples
        from quadratseg.fiftyone_io import load_dataset

        summary["cvat_task_ids"] = push_samples(
            load_dataset(dataset),
            as_name(cvat_project),
            "gt_polylines",
            "polygons",
            subset,
            as_name(task_name) or dataset,
            current_settings(),
        )
    return json.dumps(summary, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(taglab_import, name="data_engineering.taglab_import")
