"""Colonies followed across yearly surveys of fixed quadrats: the work behind ``python -m pipeline.track``.

Reads ``pipeline.process`` output folders (:func:`track_process_outputs`) or a TagLab project
(:func:`track_taglab_project`), aligns each consecutive pair of surveys, matches and follows their
colonies, and writes the outputs listed in :mod:`pipeline.track`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.run import check_output_folder as check_writable_folder
from pipeline.run import photo_output
from quadratseg.atomic import atomic_output_dir, atomic_write_json
from quadratseg.cover_table import cm_per_px, write_table
from quadratseg.errors import QuadratsegError
from quadratseg.geometry import PolygonWithHoles
from quadratseg.images import output_name, read_image_rgb
from quadratseg.instances import Instance, exclusive_instances
from quadratseg.options import as_number
from quadratseg.photo_meta import photo_date, photo_places, read_photo_metadata
from quadratseg.taxonomy import LEVELS, load_taxonomy
from quadratseg.track.demography import DEMOGRAPHY_COLUMNS, demography_rows
from quadratseg.track.lineage import COLONY_TRACK_COLUMNS, LINK_COLUMNS, QuadratTrack, track_quadrat
from quadratseg.track.matching import get_matcher
from quadratseg.track.registration import Registration, RegistrationLimits, register_masks, register_photos
from quadratseg.track.survey import Survey

logger = logging.getLogger(__name__)


# TagLab maps taken as co-registered must agree on their pixel size within this share
PIXEL_SIZE_RTOL = 0.005
PROBLEM_COLUMNS = ["site", "quadrat", "source_survey", "target_survey", "problem"]
# what an output folder holds (write_outputs): a folder holding only these is an earlier run's, replaced
OUTPUT_NAMES = frozenset(
    {
        "links.csv",
        "colonies.csv",
        "demography.csv",
        "registrations.csv",
        "problems.csv",
        "summary.json",
        "report.html",
        "img",
        "taglab",
        "taglab_project.json",
    }
)
REGISTRATION_COLUMNS = [
    "site",
    "quadrat",
    "source_survey",
    "target_survey",
    "ok",
    "method",
    "correlation",
    "turn_deg",
    "residual_px",
    "inliers",
    "matches",
    "shift_px",
    "scale",
    "angle_deg",
    "reason",
]


def check_track_output_folder(out_dir: str | Path) -> Path:
    """``out_dir`` if the outputs may go there: a folder ``pipeline.process`` could write to
    (:func:`pipeline.run.check_output_folder`), new or holding only an earlier run's outputs
    (:data:`OUTPUT_NAMES`), which they replace as a whole.

    Raises:
        QuadratsegError: it is a file or cannot be written, or a folder holding anything else (nothing
            is touched).
    """

    check_writable_folder(out_dir)  # a file, a path through a file, a folder that cannot be written
    out = Path(out_dir)
    others = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES) if out.is_dir() else []
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise QuadratsegError(
            f"--out {out} holds other files ({shown}): the tracking outputs replace that folder as a "
            "whole; give a new folder, or one an earlier pipeline.track wrote"
        )
    return out


@dataclass
class PhotoSurvey:
    """A survey read from a ``pipeline.process`` output: its colonies and where its photo is."""

    survey: Survey
    image: Path | None  # grid-free photo when there is one, else the warped photo
    grid_mask: Path | None
    level: str = ""  # the taxonomy level of its labels, as its record says (pipeline.run)


def instances_from_json(items: Sequence[dict[str, Any]], frame_size: tuple[int, int]) -> list[Instance]:
    """Colonies of an ``instances/<key>.json`` file (a colony's parts and holes in one list of
    rings, read even-odd as :attr:`quadratseg.instances.Instance.rings` writes them; warped
    frame); a colony without pixels is left out."""
    out = []
    for item in items:
        rings = [np.asarray(r, dtype=np.float64) for r in item.get("rings", [])]
        if not rings:
            continue
        inst = Instance.from_polygons(
            item["label"], float(item.get("score", 1.0)), [PolygonWithHoles(rings[0], rings[1:])], frame_size
        )
        if inst is not None:
            out.append(inst)
    return out


def read_process_output(
    out_dir: str | Path, quadrat_cm: float, metadata: str | Path | None = None, label: str | None = None
) -> tuple[list[PhotoSurvey], list[dict[str, str]]]:
    """The surveys of one ``pipeline.process`` output folder (its latest run's photos, ``run.json``,
    else every record) and the photos left out with the reason (no quadrat found, no instances, a
    record another run with other models or options rewrote since).
    Each survey is named ``<label>/<key>`` (``label``: the folder's name by default)."""
    width_cm = as_number("--quadrat-cm", quadrat_cm, above=0)
    out = Path(out_dir)
    if not (out / "photos").is_dir():
        raise QuadratsegError(
            f"{out} is not a pipeline.process output (no photos/ folder); "
            "run python -m pipeline.process first"
        )
    run_file = out / "run.json"
    current: dict[str, dict[str, Any]] | None = None  # the latest run's records (None: no run.json)
    if run_file.is_file():
        from pipeline.points import load_records

        keys = json.loads(run_file.read_text(encoding="utf-8"))["photos"]
        current, _others = load_records(out)
    else:
        keys = sorted(
            str(p.relative_to(out / "photos"))[: -len(".json")] for p in (out / "photos").rglob("*.json")
        )
    table = read_photo_metadata(metadata) if metadata else None
    places, _notes = photo_places(keys, table)
    surveys, problems = [], []
    for key in keys:
        place = places[key]
        record = (
            current.get(key)
            if current is not None
            else json.loads((out / "photos" / output_name(key, ".json")).read_text(encoding="utf-8"))
        )
        name = f"{label or out.name}/{key}"
        problem = {
            "site": place["site"],
            "quadrat": place["quadrat"],
            "source_survey": name,
            "target_survey": "",
        }
        if not place["year"]:
            problems.append({**problem, "problem": f"{key}: no year (give --metadata or site/year/ folders)"})
            continue
        if record is None:  # rewritten with other models or options since (pipeline.points.load_records)
            problems.append(
                {
                    **problem,
                    "problem": f"{key}: redone by a run with other models or options after this folder's "
                    "latest run (run.json); rerun pipeline.process into it",
                }
            )
            continue
        size = record.get("warped_size")
        instances_path = out / "instances" / output_name(key, ".json")
        if not size or not instances_path.is_file():
            status = record.get("status", {})
            problems.append({**problem, "problem": f"{key}: no colonies to follow (stages: {status})"})
            continue
        frame = (int(size[0]), int(size[1]))
        answers = instances_from_json(json.loads(instances_path.read_text(encoding="utf-8")), frame)
        # a pixel of the reef is one colony (pipeline.chain.reef_colonies, which a run before it made
        # its instances files without): overlapping answers leave the surer one; ids stay the file's
        exclusive = exclusive_instances(answers, frame)
        clean, warped = (photo_output(out, folder, key) for folder in ("clean", "warped"))
        grid = out / "grid_masks" / output_name(key, ".png")
        survey = Survey(
            name,
            photo_date(key, place),  # the day its name or metadata gives, else the year
            frame,
            cm_per_px(width_cm, frame),  # the quadrat's width across the warp (checked positive)
            [colony for _, colony in exclusive],
            ids=[index for index, _ in exclusive],
            site=place["site"],
            quadrat=place["quadrat"],
        )
        image = clean if clean.is_file() else warped if warped.is_file() else None
        surveys.append(
            PhotoSurvey(survey, image, grid if grid.is_file() else None, str(record.get("level") or ""))
        )
    return surveys, problems


def group_by_quadrat(surveys: Sequence[PhotoSurvey]) -> dict[tuple[str, str], list[PhotoSurvey]]:
    """Surveys per (site, quadrat), in date order."""
    groups: dict[tuple[str, str], list[PhotoSurvey]] = defaultdict(list)
    for s in surveys:
        groups[(s.survey.site, s.survey.quadrat)].append(s)
    return {k: sorted(v, key=lambda s: s.survey.year) for k, v in sorted(groups.items())}


def align_photos(fixed: PhotoSurvey, moving: PhotoSurvey, limits: RegistrationLimits) -> Registration:
    """Register ``moving`` to ``fixed`` from their photos (grid masks left out)."""
    import cv2

    if fixed.image is None or moving.image is None:
        missing = fixed if fixed.image is None else moving
        return Registration(False, f"{missing.survey.name} has no warped photo to align with")
    ignore = [
        cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 if p is not None else None
        for p in (fixed.grid_mask, moving.grid_mask)
    ]
    return register_photos(
        read_image_rgb(fixed.image), read_image_rgb(moving.image), ignore[0], ignore[1], limits
    )


def pair_problem(source: Survey, target: Survey) -> str:
    """Why a pair cannot be matched before any alignment (a survey without colonies), else ''."""
    empty = [s.name for s in (source, target) if not s.colonies]
    if empty:
        return (
            f"{' and '.join(empty)} has no colonies: matching it would count every colony dead or born; "
            "check its segmentation (status.csv) before following this quadrat"
        )
    return ""


def track_runs(
    group: Sequence[Survey],
    align: Any,
    matcher_name: str,
) -> tuple[list[QuadratTrack], list[dict[str, Any]], list[dict[str, str]]]:
    """Follow one quadrat's surveys (date order): each consecutive pair is checked
    (:func:`pair_problem`, same date) and aligned (``align(k) -> Registration`` for surveys k, k + 1);
    a refused pair ends a run of linked surveys and the next survey starts a new one (lineage ids
    then carry the run, ``r2-L1``). Returns the tracks, the registration rows and the problems."""
    matcher = get_matcher(matcher_name)
    tracks, reg_rows, problems = [], [], []
    site, quadrat = group[0].site, group[0].quadrat
    runs: list[list[int]] = [[0]]
    homographies: list[list[np.ndarray | None]] = [[]]
    registrations: list[list[dict[str, Any]]] = [[]]
    for k in range(len(group) - 1):
        source, target = group[k], group[k + 1]
        where = {"site": site, "quadrat": quadrat, "source_survey": source.name, "target_survey": target.name}
        reason = pair_problem(source, target)
        if not reason and source.year == target.year:
            reason = (
                f"surveys {source.name} and {target.name} have the same date {source.date}; keep one, "
                "or give each its own date (metadata CSV)"
            )
        registration = Registration(False, reason) if reason else align(k)
        summary = registration.summary()
        reg_rows.append({**where, **{c: summary.get(c, "") for c in REGISTRATION_COLUMNS[4:]}})
        if not registration.ok:
            problems.append({**where, "problem": registration.reason})
            logger.warning("%s -> %s refused: %s", source.name, target.name, registration.reason)
            runs.append([k + 1])
            homographies.append([])
            registrations.append([])
            continue
        runs[-1].append(k + 1)
        homographies[-1].append(registration.homography)
        registrations[-1].append(summary)
    for r, (members, hs, regs) in enumerate(zip(runs, homographies, registrations, strict=True)):
        if len(members) < 2:
            continue
        track = track_quadrat([group[i] for i in members], hs, matcher, regs)
        if len(runs) > 1 and r > 0:
            for row in track.colonies:
                row["lineage"] = f"r{r + 1}-{row['lineage']}"
                row["parents"] = ";".join(f"r{r + 1}-{p}" for p in row["parents"].split(";") if p)
        tracks.append(track)
    return tracks, reg_rows, problems


def with_taxonomy(rows: list[dict[str, Any]], level: str = "") -> list[dict[str, Any]]:
    """``colonies.csv`` rows with the class at every taxonomy level (empty at levels finer than the
    labels', or everywhere when the labels are not taxonomy classes: TagLab's own names). ``level``:
    the labels' level as the surveys' records say it (an extended model's labels are also genus
    names); "" takes the finest that holds them."""
    taxonomy = load_taxonomy()
    labels = {r["label"] for r in rows}
    try:
        level = taxonomy.model_level(labels, level)[0] if labels else level or LEVELS[0]
    except QuadratsegError:
        return [{**r, **dict.fromkeys(LEVELS, "")} for r in rows]
    coarser = LEVELS[LEVELS.index(level) :]
    return [
        {
            **r,
            **{
                lv: taxonomy.map_label(r["label"], lv, source=level) if lv in coarser else "" for lv in LEVELS
            },
        }
        for r in rows
    ]


def shared_areas_m2(tracks: Sequence[QuadratTrack]) -> dict[tuple[str, str, str, str], float]:
    """Per tracked interval (site, quadrat, start date, end date), the m^2 of reef both its photos
    show (the demography's recruits are counted there)."""
    return {
        (i.source.site, i.source.quadrat, i.source.date, i.target.date): i.shared_area_cm2() / 1e4
        for t in tracks
        for i in t.intervals
    }


def write_outputs(
    out_dir: str | Path,
    tracks: Sequence[QuadratTrack],
    reg_rows: Sequence[dict[str, Any]],
    problems: Sequence[dict[str, str]],
    quadrat_area_m2: dict[tuple[str, str], float],
    summary_extra: dict[str, Any] | None = None,
    report: bool = True,
    images: dict[str, Path] | None = None,
    taglab_export: bool = True,
    level: str = "",
    extra: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """Write every table, ``summary.json``, the report and (``taglab_export``) each quadrat's
    colonies and links as a TagLab project ``taglab/<site>_<quadrat>.json``; returns the summary.
    ``level``: the labels' taxonomy level (:func:`with_taxonomy`); ``extra(folder)`` writes more
    outputs into the folder. The outputs appear as a set or not at all: written into a temporary
    sibling of ``out_dir`` that replaces it once complete (:func:`check_track_output_folder`)."""
    out = check_track_output_folder(out_dir)
    links = [row for t in tracks for row in t.link_rows()]
    colonies = with_taxonomy([row for t in tracks for row in t.colonies], level)
    # the intervals tracked: a refused pair between two runs of a quadrat is no interval
    shared = shared_areas_m2(tracks)
    demography = demography_rows(colonies, quadrat_area_m2, intervals=set(shared), shared_area_m2=shared)
    events: dict[str, int] = defaultdict(int)
    for row in links:
        events[row["event"]] += 1
    residuals = [float(r["residual_px"]) for r in reg_rows if r.get("ok") is True]
    summary = {
        "quadrats": len({(t.surveys[0].site, t.surveys[0].quadrat) for t in tracks}),
        "surveys": sum(len(t.surveys) for t in tracks),
        "intervals": sum(len(t.intervals) for t in tracks),
        "links": sum(1 for r in links if r["source_id"] != "" and r["target_id"] != ""),
        "events": dict(sorted(events.items())),
        "lineages": len({(r["site"], r["quadrat"], r["lineage"]) for r in colonies}),
        "registration_residual_px": round(float(np.median(residuals)), 3) if residuals else None,
        "refused_pairs": len(problems),
        **(summary_extra or {}),
    }
    with atomic_output_dir(out, overwrite=True) as folder:
        write_table(folder / "links.csv", LINK_COLUMNS, links)
        write_table(
            folder / "colonies.csv", [*COLONY_TRACK_COLUMNS[:8], *LEVELS, *COLONY_TRACK_COLUMNS[8:]], colonies
        )
        write_table(folder / "demography.csv", DEMOGRAPHY_COLUMNS, demography)
        write_table(folder / "registrations.csv", REGISTRATION_COLUMNS, reg_rows)
        write_table(folder / "problems.csv", PROBLEM_COLUMNS, problems)
        atomic_write_json(folder / "summary.json", summary)
        if taglab_export:
            write_taglab_exports(folder / "taglab", tracks)
        if extra is not None:
            extra(folder)
        if report:
            from pipeline.track_report import write_track_report

            write_track_report(folder, tracks, images)
    return summary


def write_taglab_exports(folder: Path, tracks: Sequence[QuadratTrack]) -> None:
    """Each quadrat run's colonies and links as a TagLab project ``<site>_<quadrat>.json`` in ``folder``
    (``_from_<date>`` added for a run after a refused pair)."""
    from quadratseg.formats.taglab import write_taglab_project

    names: set[str] = set()
    for t in tracks:
        first = t.surveys[0]
        name = f"{first.site}_{first.quadrat}".replace("/", "_")
        name = name if name not in names else f"{name}_from_{first.date}"  # a run after a refused pair
        names.add(name)
        write_taglab_project(track_to_taglab(t), folder / f"{name}.json")


def track_process_outputs(
    surveys: Sequence[str | Path],
    out_dir: str | Path,
    matcher: str = "graph",
    metadata: str | Path | None = None,
    quadrat_cm: float = 100.0,
    limits: RegistrationLimits | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Follow the colonies of ``pipeline.process`` outputs (see the module docstring).

    Raises:
        QuadratsegError: a bad ``quadrat_cm``, ``matcher`` or ``out_dir`` (before anything is read
            or written), surveys of different taxonomy levels, or no quadrat with two surveys that
            could be followed.
    """
    quadrat_cm = as_number("--quadrat-cm", quadrat_cm, above=0)
    get_matcher(matcher)
    check_track_output_folder(out_dir)
    photo_surveys, problems = [], []
    names = [Path(folder).name for folder in surveys]
    for folder, name in zip(surveys, names, strict=True):
        label = name if names.count(name) == 1 else Path(folder).as_posix()  # two folders of one name
        found, skipped = read_process_output(folder, quadrat_cm, metadata, label)
        photo_surveys.extend(found)
        problems.extend(skipped)
    levels = sorted({s.level for s in photo_surveys if s.level})
    if len(levels) > 1:
        raise QuadratsegError(
            f"the surveys were segmented at different taxonomy levels ({', '.join(levels)}): their "
            "colonies' classes cannot be compared; process them with models of one level"
        )
    tracks, reg_rows = [], []
    area_m2 = (quadrat_cm / 100.0) ** 2
    areas: dict[tuple[str, str], float] = {}
    for key, group in group_by_quadrat(photo_surveys).items():
        if len(group) < 2:
            problems.append(
                {
                    "site": key[0],
                    "quadrat": key[1],
                    "source_survey": group[0].survey.name,
                    "target_survey": "",
                    "problem": "only one survey of this quadrat: nothing to follow",
                }
            )
            continue
        frame = group[0].survey.frame_size
        areas[key] = area_m2 * frame[1] / frame[0]  # a rectangular quadrat: quadrat_cm is its width

        def align(k: int, group: list[PhotoSurvey] = group) -> Registration:
            return align_photos(group[k], group[k + 1], limits or RegistrationLimits())

        found_tracks, rows, refused = track_runs([s.survey for s in group], align, matcher)
        tracks.extend(found_tracks)
        reg_rows.extend(rows)
        problems.extend(refused)
    if not tracks:
        raise QuadratsegError(
            f"no quadrat has two surveys that could be followed ({len(photo_surveys)} surveys read; "
            + (f"first problem: {problems[0]['problem']}" if problems else "pair them by site and quadrat")
            + ")"
        )
    images = {s.survey.name: s.image for s in photo_surveys if s.image is not None}
    return write_outputs(
        out_dir,
        tracks,
        reg_rows,
        problems,
        areas,
        {"matcher": matcher},
        report,
        images,
        level="".join(levels),
    )


def taglab_surveys(project: Any, plot: str) -> list[Survey]:
    """The surveys of a TagLab project (:class:`quadratseg.formats.taglab.TaglabProject`) as
    :class:`Survey` objects of quadrat ``plot``: regions in the core's frame, ids TagLab's region
    ids, cm per px from the maps' mm per px. Regions of class ``Empty`` (unclassified) are left out,
    as TagLab's own correspondences leave them out (no link, no birth, no death)."""
    from quadratseg.formats.taglab import EMPTY_CLASS, PIXEL_CENTRE_OFFSET

    surveys = []
    for s in project.surveys:
        frame = (int(s.width), int(s.height))
        colonies, ids = [], []
        for region in s.regions:
            if region.class_name == EMPTY_CLASS:
                continue
            rings = [
                np.asarray(ring, float) + PIXEL_CENTRE_OFFSET
                for ring in (region.contour_xy, *region.inner_contours_xy)
            ]
            inst = Instance.from_polygons(
                region.class_name, 1.0, [PolygonWithHoles(rings[0], rings[1:])], frame
            )
            if inst is not None:
                colonies.append(inst)
                ids.append(int(region.id))
        surveys.append(Survey(s.name, str(s.date), frame, float(s.px_to_mm) / 10.0, colonies, ids, "", plot))
    return surveys


def track_taglab_project(
    project_path: str | Path,
    out_dir: str | Path,
    matcher: str = "graph",
    align_outlines: bool = False,
    report: bool = True,
) -> dict[str, Any]:
    """Follow the regions of a TagLab project's surveys (images, ordered by acquisition date); ids in
    ``links.csv`` are TagLab's region ids. The input project with our correspondences (and nothing
    else changed) is written as ``taglab_project.json``."""
    from quadratseg.formats.taglab import (
        parse_taglab_project,
        read_taglab_json,
        with_correspondences,
        write_taglab_json,
    )

    get_matcher(matcher)
    check_track_output_folder(out_dir)
    data = read_taglab_json(project_path)
    project = parse_taglab_project(data, str(project_path))
    surveys = taglab_surveys(project, Path(project_path).stem)
    if len(surveys) < 2:
        raise QuadratsegError(
            f"{project_path} has {len(surveys)} survey(s); following colonies needs two or more"
        )
    undated = [s.name for s in surveys if not s.date]
    if undated:
        raise QuadratsegError(
            f"{project_path}: survey(s) {', '.join(undated)} have no acquisition date; set it in TagLab "
            "(image info) so the surveys can be ordered"
        )
    surveys.sort(key=lambda s: s.year)

    def align(k: int) -> Registration:
        source, target = surveys[k], surveys[k + 1]
        if not align_outlines:
            if source.frame_size != target.frame_size:
                return Registration(
                    False,
                    f"maps {source.name} {source.frame_size} and {target.name} {target.frame_size} differ "
                    "in size; align them in TagLab, or pass --align-outlines",
                )
            if not np.isclose(source.cm_per_px, target.cm_per_px, rtol=PIXEL_SIZE_RTOL, atol=0.0):
                # the same pixels at another scale are no co-registered maps: events in pixels and
                # growth in cm^2 would disagree
                return Registration(
                    False,
                    f"maps {source.name} ({10 * source.cm_per_px:g} mm/px) and {target.name} "
                    f"({10 * target.cm_per_px:g} mm/px) differ in pixel size "
                    "(map_px_to_mm_factor); align them in TagLab, or pass --align-outlines",
                )
            return Registration(True, "", np.eye(3), 0, 0.0)
        union = [np.zeros((s.frame_size[1], s.frame_size[0]), bool) for s in (source, target)]
        for mask, survey in zip(union, (source, target), strict=True):
            for inst in survey.colonies:
                inst.paint(mask, True)
        return register_masks(union[0], union[1])

    tracks, reg_rows, problems = track_runs(surveys, align, matcher)
    if not tracks:
        raise QuadratsegError(
            f"no pair of surveys in {project_path} could be followed: {problems[0]['problem']}"
        )
    first = surveys[0]
    area = {("", first.quadrat): first.frame_size[0] * first.frame_size[1] * (first.cm_per_px / 100) ** 2}
    links = [link for t in tracks for link in taglab_links(t)]
    exported = with_correspondences(data, project, links)

    def write_project(folder: Path) -> None:
        write_taglab_json(exported, folder / "taglab_project.json")

    extra = {"matcher": matcher, "taglab": str(project_path)}
    return write_outputs(
        out_dir, tracks, reg_rows, problems, area, extra, report, taglab_export=False, extra=write_project
    )


def taglab_links(track: QuadratTrack) -> list[Any]:
    """The track's rows as TagLab correspondences (region ids: the surveys' colony ids)."""
    from quadratseg.formats.taglab import TaglabLink

    return [
        TaglabLink(
            row["source_survey"],
            int(row["source_id"]) if row["source_id"] != "" else None,
            row["target_survey"],
            int(row["target_id"]) if row["target_id"] != "" else None,
            row["event"],
            row["split_fuse"],
        )
        for row in track.link_rows()
    ]


def track_to_taglab(track: QuadratTrack) -> Any:
    """One quadrat's surveys, colonies and links as a TagLab project: regions in TagLab's map pixels
    (a TagLab region has one outline: each part of a colony is a region, its largest keeping the
    colony's id, the others new ids after the survey's last, noted "part k of colony N"), classes
    with the taxonomy's colours, mm per px from the surveys' scale, a year-only date as 1 January
    of that year. A link between colonies joins every part of one to every part of the other
    (:func:`part_links`)."""
    from quadratseg.formats.taglab import PIXEL_CENTRE_OFFSET, TaglabProject, TaglabRegion, TaglabSurvey

    taxonomy = load_taxonomy()
    surveys, classes = [], {}
    parts: dict[str, dict[int, list[int]]] = {}
    for survey in track.surveys:
        regions = []
        spare = max((int(i) for i in survey.ids), default=-1) + 1
        parts[survey.name] = {}
        for colony_id, inst in zip(survey.ids, survey.colonies, strict=True):
            ids = parts[survey.name].setdefault(int(colony_id), [])
            for k, part in enumerate(inst.polygons):
                ids.append(int(colony_id) if k == 0 else spare + len(ids) - 1)
                note = f"part {k + 1} of colony {colony_id}" if len(inst.polygons) > 1 else ""
                regions.append(
                    TaglabRegion(
                        ids[-1],
                        inst.label,
                        part.exterior - PIXEL_CENTRE_OFFSET,
                        [hole - PIXEL_CENTRE_OFFSET for hole in part.holes],
                        note,
                    )
                )
            spare += len(ids) - 1
            colour = taxonomy.color(inst.label).lstrip("#")
            classes[inst.label] = tuple(int(colour[k : k + 2], 16) for k in (0, 2, 4))
        date = survey.date if len(survey.date) == 10 else f"{survey.date[:4]}-01-01"
        width, height = survey.frame_size
        surveys.append(TaglabSurvey(survey.name, date, width, height, survey.cm_per_px * 10, regions))
    return TaglabProject(surveys, classes, part_links(taglab_links(track), parts))


def part_links(links: Sequence[Any], parts: dict[str, dict[int, list[int]]]) -> list[Any]:
    """TagLab correspondences between regions from ``links`` between colonies: each link joins
    every region (part) of its source colony to every region of its target colony (``parts``:
    survey -> colony id -> region ids); a dead or born colony's parts are each dead or born. The
    split / fuse mark follows TagLab's own rule (``Correspondences.assignSplit`` / ``assignFuse``):
    a source region in several rows is a split, a target region in several rows a fusion (fusion
    wins), on every row, so the file's marks are those TagLab's own matching would give."""
    rows = []
    for link in links:
        # a colony with no parts listed stays one region of its own id (a region the project
        # lacks is then refused by the writer, with its name)
        sources = (
            [None]
            if link.source_id is None
            else parts[link.source_survey].get(link.source_id, [link.source_id])
        )
        targets = (
            [None]
            if link.target_id is None
            else parts[link.target_survey].get(link.target_id, [link.target_id])
        )
        rows += [replace(link, source_id=s, target_id=t) for s in sources for t in targets]
    linked = [r for r in rows if r.source_id is not None and r.target_id is not None]
    from_source = Counter((r.source_survey, r.source_id) for r in linked)
    into_target = Counter((r.target_survey, r.target_id) for r in linked)
    marked = []
    for r in rows:
        if r.source_id is not None and r.target_id is not None:
            if into_target[(r.target_survey, r.target_id)] > 1:
                r = replace(r, split_fuse="fuse")
            elif from_source[(r.source_survey, r.source_id)] > 1:
                r = replace(r, split_fuse="split")
        marked.append(r)
    return marked
