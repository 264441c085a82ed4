"""TagLab projects: read and write TagLab's own project JSON (surveys, regions, classes, correspondences).

TagLab (cnr-isti-vclab/TagLab) keeps a project in one JSON file, loaded by ``Project(**data)``
(``source/Project.py``). The parts this module reads and writes, with TagLab's own key names:

- ``labels``: ``{name: {"id", "name", "description", "fill": [r, g, b], "border", "visible"}}``
  (``source/Label.py``); TagLab always adds ``Empty``.
- ``images``: one per survey (``source/Image.py``): ``id`` (the key correspondences use), ``name``,
  ``width``, ``height`` (px), ``map_px_to_mm_factor`` (mm per pixel, a *string*: TagLab converts
  it on load), ``acquisition_date`` (``YYYY-MM-DD``), ``channels`` (``[{"filename", "type": "RGB"}]``),
  ``annotations`` (``{"regions": [...], "points": [...]}``; older files hold the list of regions).
- a region (``source/Blob.py``, ``Blob.fromDict``): ``bbox`` ([top, left, width, height] px),
  ``centroid`` ([x, y]), ``area`` (px^2), ``perimeter``, ``contour``, ``inner contours``,
  ``class name``, ``instance name``, ``blob name``, ``id``, ``note``, ``data``. Contours are
  TagLab's compact string: the points times 10, truncated to integers, as differences from
  the previous point (the first from (0, 0)), space-separated (``Blob.toPoints`` /
  ``Blob.toContour``); older files hold ``[[x, y], ...]`` lists, which are read too.
- ``correspondences``: ``{"<source id>-<target id>": {"source", "target", "correspondences":
  [[genet, blob1, blob2, area1 cm^2, area2 cm^2, class, action, split/fuse], ...]}}``
  (``source/Correspondences.py``; a row of 7 lacks the genet). ``blob1 = -1`` is a colony born
  in the target, ``blob2 = -1`` one dead; actions ``same``, ``grow``, ``shrink``, ``born``,
  ``dead`` (``n/s`` not set); split/fuse ``none``, ``split``, ``fuse`` (``n/s``).

Coordinates: ``contour_xy`` are TagLab's map pixels as stored, (x, y) with the *centre* of pixel
(row r, column c) at (c, r) (TagLab traces its masks with skimage and fills them back with
``cv2.fillPoly`` on rounded points). The core's frame (:mod:`quadratseg.geometry`) puts that
centre at (c + 0.5, r + 0.5): add :data:`PIXEL_CENTRE_OFFSET` to go there.

TagLab accepts a file with a region whose class is not among its labels (it paints it red);
:func:`read_taglab_project` and :func:`write_taglab_project` refuse it, naming the region. Regions of
class ``Empty`` are unclassified: TagLab's correspondences (``autoMatch``, ``assignDead``,
``assignBorn``) leave them out.

:func:`write_taglab_project` builds a project from scratch, with only the parts above. To give a
project read from a file new correspondences and change nothing else (dictionary, maps' grid,
metadata, georeference, regions' instance names and data, points, layers), read it with
:func:`read_taglab_json` and :func:`parse_taglab_project`, and write :func:`with_correspondences`
with :func:`write_taglab_json`.

Examples:
    >>> encode_contour(np.array([[8.0, 114.4], [7.0, 114.4]]))
    '80 1144 -10 0'
    >>> decode_contour("80 1144 -10 0").tolist()
    [[8.0, 114.4], [7.0, 114.4]]
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.atomic import atomic_write_text
from quadratseg.errors import QuadratsegError
from quadratseg.track.matching import link_event

PIXEL_CENTRE_OFFSET = 0.5  # TagLab xy + 0.5 = the core's xy (pixel centres at half pixels)
EMPTY_CLASS = "Empty"  # TagLab's label of unclassified regions, always in its dictionary
EVENTS = ("same", "grow", "shrink", "born", "dead", "n/s")
SIZE_EVENTS = ("same", "grow", "shrink")  # the events TagLab recomputes from the areas on load
SPLIT_FUSE = ("none", "split", "fuse", "n/s")
CORRESPONDENCE_COLUMNS = ("Genet", "Blob1", "Blob2", "Area1", "Area2", "Class", "Action", "Split\\Fuse")
# keys Blob.fromDict reads without a default (a missing one stops TagLab's loader with a KeyError)
REGION_KEYS = (
    "bbox",
    "centroid",
    "area",
    "perimeter",
    "contour",
    "inner contours",
    "class name",
    "instance name",
    "blob name",
    "id",
    "note",
)
# keys of an image this module needs (TagLab gives the others defaults)
IMAGE_KEYS = ("id", "width", "height", "map_px_to_mm_factor", "annotations")
# the keyword arguments of TagLab's Project(**data): a file key outside them stops its loader
PROJECT_KEYS = (
    "filename",
    "working_area",
    "dictionary_name",
    "dictionary_description",
    "labels",
    "images",
    "correspondences",
    "genet",
    "region_attributes",
    "spatial_reference_system",
    "metadata",
    "image_metadata_template",
    "markers",
)
BBOX_PAD_PX = 4  # TagLab's Mask.pointsBox(contour, 4): the box TagLab fills a region's mask in


@dataclass(eq=False)
class TaglabRegion:
    """One TagLab region (a colony): outer contour and holes in TagLab's map pixels (x, y).

    Attributes:
        id: TagLab's region ``id`` (unique within its survey; correspondences refer to it).
        class_name: TagLab class (a key of the project's labels).
        contour_xy: outer contour (N, 2), map px, pixel centres at integers (module docstring).
        inner_contours_xy: holes, each (M, 2), same frame.
        note: TagLab's free-text note.
    """

    id: int
    class_name: str
    contour_xy: np.ndarray
    inner_contours_xy: list[np.ndarray] = field(default_factory=list)
    note: str = ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaglabRegion):
            return NotImplemented
        return (
            (self.id, self.class_name, self.note) == (other.id, other.class_name, other.note)
            and _same_array(self.contour_xy, other.contour_xy)
            and len(self.inner_contours_xy) == len(other.inner_contours_xy)
            and all(
                _same_array(a, b)
                for a, b in zip(self.inner_contours_xy, other.inner_contours_xy, strict=True)
            )
        )

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """TagLab's box of the region (top, left, width, height) map px, as ``Mask.pointsBox(contour, 4)``."""
        points = np.asarray(self.contour_xy, dtype=np.float64).reshape(-1, 2)
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        pad = BBOX_PAD_PX
        return int(y0) - pad, int(x0) - pad, int(x1 - x0) + 2 * pad, int(y1 - y0) + 2 * pad

    def mask(self) -> tuple[np.ndarray, tuple[int, int]]:
        """The region's pixels as TagLab's ``Blob.getMask`` draws them: uint8 (height, width) of
        :attr:`bbox`, 1 inside the rounded outer contour and 0 in the holes, and its (left, top)
        map px origin."""
        import cv2

        top, left, width, height = self.bbox
        origin = np.array([left, top])
        mask = np.zeros((max(height, 1), max(width, 1)), np.uint8)
        cv2.fillPoly(mask, [np.round(self.contour_xy).astype(np.int32) - origin], 1)
        for hole in self.inner_contours_xy:
            cv2.fillPoly(mask, [np.round(hole).astype(np.int32) - origin], 0)
        return mask, (left, top)

    @property
    def area_px(self) -> float:
        """Area in map px^2 as TagLab counts it (the pixels of :meth:`mask`; its matcher's sizes)."""
        return float(np.count_nonzero(self.mask()[0]))


@dataclass
class TaglabSurvey:
    """One TagLab image (a survey of the plot).

    Attributes:
        name: TagLab's image ``id`` (what correspondences name; written as both ``id`` and ``name``).
        date: acquisition date, ISO ``YYYY-MM-DD`` ("" when the file has none).
        width, height: map size in px.
        px_to_mm: ``map_px_to_mm_factor``, millimetres per map pixel.
        regions: the survey's regions.
        image_path: the RGB channel's file as the project names it, or None.
    """

    name: str
    date: str
    width: int
    height: int
    px_to_mm: float
    regions: list[TaglabRegion] = field(default_factory=list)
    image_path: str | None = None


@dataclass
class TaglabLink:
    """One correspondence row between two surveys (TagLab's ``Correspondences`` table).

    ``source_id`` is None for a colony ``born`` in the target, ``target_id`` None for one ``dead``
    (TagLab writes -1; the writer takes -1 or None). ``event`` is one of :data:`EVENTS`,
    ``split_fuse`` one of :data:`SPLIT_FUSE`.
    """

    source_survey: str
    source_id: int | None
    target_survey: str
    target_id: int | None
    event: str
    split_fuse: str = "none"


@dataclass
class TaglabProject:
    """Surveys in date order, classes with their fill colours (r, g, b), and links between surveys."""

    surveys: list[TaglabSurvey]
    classes: dict[str, tuple[int, int, int]]
    links: list[TaglabLink] = field(default_factory=list)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return np.asarray(a).shape == np.asarray(b).shape and np.allclose(a, b, rtol=0, atol=1e-9)


def decode_contour(value: Any, where: str = "contour") -> np.ndarray:
    """TagLab's stored contour -> (N, 2) float map px (``Blob.toContour``): the compact string of
    deltas times 10, or an older ``[[x, y], ...]`` list."""
    try:
        if isinstance(value, str):
            deltas = np.array([int(v) for v in value.split()], dtype=np.int64)
            if len(deltas) % 2:
                raise ValueError(f"{len(deltas)} numbers, not (x, y) pairs")
            return np.cumsum(deltas.reshape(-1, 2), axis=0) / 10.0
        points = np.asarray(value, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"shape {points.shape}, not (N, 2)")
        return points
    except (TypeError, ValueError) as exc:
        raise QuadratsegError(f"{where}: not a TagLab contour ({exc})") from exc


def encode_contour(contour_xy: np.ndarray) -> str:
    """(N, 2) map px -> TagLab's compact contour string (``Blob.toPoints``; tenths of a pixel).

    Points are rounded to the tenth (TagLab truncates), so a contour read back is written unchanged.
    """
    tenths = np.rint(np.asarray(contour_xy, dtype=np.float64).reshape(-1, 2) * 10).astype(np.int64)
    deltas = np.diff(tenths, axis=0, prepend=np.zeros((1, 2), dtype=np.int64))
    return " ".join(str(int(v)) for v in deltas.reshape(-1))


def _require(mapping: Any, keys: tuple[str, ...], where: str, what: str) -> None:
    if not isinstance(mapping, dict):
        raise QuadratsegError(f"{where}: expected a JSON object for the {what}, got {type(mapping).__name__}")
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise QuadratsegError(
            f"{where}: the {what} lacks {', '.join(repr(k) for k in missing)}, which TagLab's loader "
            "requires; save the project again from TagLab or fix the file"
        )


def _color(value: Any, where: str) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise QuadratsegError(f"{where}: fill {value!r} is not an [r, g, b] colour of 0..255")
    return rgb  # type: ignore[return-value]


def _check_date(date: str, where: str, allow_empty: bool) -> str:
    if date == "" and allow_empty:
        return ""
    try:
        datetime.datetime.strptime(date, "%Y-%m-%d")
    except (TypeError, ValueError):
        raise QuadratsegError(
            f"{where}: acquisition date {date!r} is not YYYY-MM-DD (TagLab replaces such a date by "
            "1955-11-05 and reorders the surveys); give the survey its date"
        ) from None
    return date


def _read_region(data: Any, where: str) -> TaglabRegion:
    if isinstance(data, dict) and "id" in data:
        where = f"{where} (id {data['id']!r})"
    _require(data, REGION_KEYS, where, "region")
    try:
        region_id = int(data["id"])
    except (TypeError, ValueError):
        raise QuadratsegError(f"{where}: region id {data['id']!r} is not an integer") from None
    inner = data["inner contours"]
    if not isinstance(inner, list):
        raise QuadratsegError(f"{where}: 'inner contours' is not a list")
    return TaglabRegion(
        id=region_id,
        class_name=str(data["class name"]),
        contour_xy=decode_contour(data["contour"], f"{where}, contour"),
        inner_contours_xy=[decode_contour(c, f"{where}, inner contour {k}") for k, c in enumerate(inner)],
        note=str(data["note"] or ""),
    )


def _read_survey(data: Any, where: str) -> TaglabSurvey:
    if isinstance(data, dict) and "id" in data:
        where = f"{where} ({str(data['id'])!r})"
    _require(data, IMAGE_KEYS, where, "image")
    name = str(data["id"])
    scale = str(data["map_px_to_mm_factor"]).strip()
    try:
        px_to_mm = float(scale)
    except ValueError:
        px_to_mm = math.nan
    if not (math.isfinite(px_to_mm) and px_to_mm > 0):
        raise QuadratsegError(
            f"{where}: map_px_to_mm_factor {data['map_px_to_mm_factor']!r} is not a positive number of mm "
            "per pixel; set the map's pixel size in TagLab (Edit > Edit Maps Info) and save"
        )
    annotations = data["annotations"]
    regions = annotations.get("regions") if isinstance(annotations, dict) else annotations
    if not isinstance(regions, list):
        raise QuadratsegError(f"{where}: 'annotations' holds no list of regions")
    channels = data.get("channels") or []
    rgb = [c.get("filename") for c in channels if isinstance(c, dict) and c.get("type", "RGB") == "RGB"]
    survey = TaglabSurvey(
        name=name,
        date=_check_date(str(data.get("acquisition_date") or ""), where, allow_empty=True),
        width=int(data["width"]),
        height=int(data["height"]),
        px_to_mm=px_to_mm,
        regions=[_read_region(r, f"{where}, region {k}") for k, r in enumerate(regions)],
        image_path=rgb[0] if rgb else None,
    )
    ids = [r.id for r in survey.regions]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise QuadratsegError(
            f"{where}: region ids {twice[:10]} are used twice; ids must be unique per image"
        )
    return survey


def _optional_id(value: Any, where: str) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QuadratsegError(f"{where}: region id {value!r} is not an integer") from None
    return None if number < 0 else number


def _read_links(data: Any, surveys: dict[str, TaglabSurvey]) -> list[TaglabLink]:
    links: list[TaglabLink] = []
    for key, table in (data or {}).items():
        where = f"correspondences {key!r}"
        _require(table, ("source", "target", "correspondences"), where, "correspondence table")
        source, target = str(table["source"]), str(table["target"])
        for side in (source, target):
            if side not in surveys:
                raise QuadratsegError(
                    f"{where}: image {side!r} is not in the project (images: {sorted(surveys)})"
                )
        for k, row in enumerate(table["correspondences"]):
            row_where = f"{where}, row {k}"
            if not isinstance(row, list) or len(row) not in (7, 8):
                raise QuadratsegError(
                    f"{row_where}: expected the 8 columns {CORRESPONDENCE_COLUMNS}, got {row!r}"
                )
            row = row if len(row) == 8 else [-1, *row]
            _, blob1, blob2, _, _, _, action, split_fuse = row
            link = TaglabLink(
                source,
                _optional_id(blob1, row_where),
                target,
                _optional_id(blob2, row_where),
                str(action),
                str(split_fuse),
            )
            _check_link(link, surveys, row_where)
            links.append(link)
    return links


def _check_link(link: TaglabLink, surveys: dict[str, TaglabSurvey], where: str) -> None:
    if link.event not in EVENTS:
        raise QuadratsegError(f"{where}: event {link.event!r} is not one of TagLab's {EVENTS}")
    if link.split_fuse not in SPLIT_FUSE:
        raise QuadratsegError(f"{where}: split/fuse {link.split_fuse!r} is not one of TagLab's {SPLIT_FUSE}")
    if link.source_id is None and link.target_id is None:
        raise QuadratsegError(f"{where}: a link needs a source or a target region")
    for survey, region_id in ((link.source_survey, link.source_id), (link.target_survey, link.target_id)):
        if survey not in surveys:
            raise QuadratsegError(
                f"{where}: survey {survey!r} is not in the project (surveys: {sorted(surveys)})"
            )
        if region_id is not None and region_id not in {r.id for r in surveys[survey].regions}:
            raise QuadratsegError(f"{where}: survey {survey!r} has no region with id {region_id}")


def _check_classes(project: TaglabProject) -> None:
    known = set(project.classes) | {EMPTY_CLASS}
    for survey in project.surveys:
        for region in survey.regions:
            if region.class_name not in known:
                import difflib

                close = difflib.get_close_matches(region.class_name, sorted(known), n=3, cutoff=0.6)
                hint = f" (close: {', '.join(map(repr, close))})" if close else ""
                raise QuadratsegError(
                    f"survey {survey.name!r}, region {region.id}: class {region.class_name!r} is not among "
                    f"the project's labels{hint}; add it to TagLab's labels or fix the region"
                )


def read_taglab_json(path: str | Path) -> dict[str, Any]:
    """A TagLab project file's JSON object, as it is (:func:`parse_taglab_project` reads it).

    Raises:
        QuadratsegError: the file is missing or not JSON, or an old-style project.
    """
    path = Path(path)
    if not path.is_file():
        raise QuadratsegError(f"TagLab project {path} does not exist; pass the project's .json file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QuadratsegError(f"TagLab project {path} is not JSON ({exc})") from exc
    if isinstance(data, dict) and "Map File" in data:
        raise QuadratsegError(
            f"{path} is an old-style TagLab project ('Map File'); open it in TagLab and save it again"
        )
    return data


def parse_taglab_project(data: Any, where: str) -> TaglabProject:
    """Surveys (in date order, as TagLab orders them), classes and links of a TagLab project's JSON
    object (``where``: the file, for messages).

    Raises:
        QuadratsegError: see :func:`read_taglab_project`.
    """
    _require(data, ("labels", "images"), where, "project")
    classes = {
        str(name): _color(label.get("fill") if isinstance(label, dict) else None, f"{where}, label {name!r}")
        for name, label in data["labels"].items()
    }
    surveys = [_read_survey(im, f"{where}, image {k}") for k, im in enumerate(data["images"])]
    names = [s.name for s in surveys]
    if len(set(names)) != len(names):
        raise QuadratsegError(f"{where}: image ids {names} are not unique")
    surveys.sort(key=lambda s: s.date or "1955-11-05")  # TagLab's order (undated maps get its 1955-11-05)
    project = TaglabProject(
        surveys, classes, _read_links(data.get("correspondences"), {s.name: s for s in surveys})
    )
    try:
        _check_classes(project)
    except QuadratsegError as exc:
        raise QuadratsegError(f"{where}: {exc}") from None
    return project


def read_taglab_project(path: str | Path) -> TaglabProject:
    """Read a TagLab project JSON into surveys (in date order, as TagLab orders them), classes, links.

    Raises:
        QuadratsegError: the file is missing or not JSON, a key TagLab's loader needs is missing
            (named with the image and region), a region's class is not among the labels, a contour
            cannot be decoded, a date is not ``YYYY-MM-DD``, or a correspondence names an unknown
            image or region.
    """
    return parse_taglab_project(read_taglab_json(path), str(path))


def _region_dict(region: TaglabRegion) -> dict[str, Any]:
    contour = np.asarray(region.contour_xy, dtype=np.float64).reshape(-1, 2)
    if len(contour) < 3 or not np.isfinite(contour).all():
        raise QuadratsegError(
            f"region {region.id}: the contour needs 3 or more finite points, got {len(contour)}"
        )
    # what Blob.fromDict reads; TagLab recomputes nothing but the mask from these on load
    mask, (left, top) = region.mask()
    ring = np.vstack([contour, contour[:1]])
    perimeter = float(np.hypot(*np.diff(ring, axis=0).T).sum())
    for hole in region.inner_contours_xy:
        h = np.asarray(hole, dtype=np.float64).reshape(-1, 2)
        perimeter += float(np.hypot(*np.diff(np.vstack([h, h[:1]]), axis=0).T).sum())
    ys, xs = np.nonzero(mask)
    if len(xs):  # the mask's centroid, as Blob.calculateCentroid
        cx, cy = float(xs.mean() + left), float(ys.mean() + top)
    else:  # a sliver under one pixel: the vertex mean
        cx, cy = (float(v) for v in contour.mean(axis=0))
    return {
        "bbox": list(region.bbox),  # top, left, width, height
        "centroid": [math.trunc(10 * cx) / 10, math.trunc(10 * cy) / 10],
        "area": float(len(xs)),
        "perimeter": math.trunc(10 * perimeter) / 10,
        "contour": encode_contour(contour),
        "inner contours": [encode_contour(h) for h in region.inner_contours_xy],
        "class name": region.class_name,
        "instance name": f"coral{region.id}",
        "blob name": f"c-{region.id:d}-{cx:.1f}x-{cy:.1f}y",
        "id": int(region.id),
        "note": region.note,
        "data": {},
    }


def _label_dict(name: str, rgb: tuple[int, int, int]) -> dict[str, Any]:
    fill = list(_color(rgb, f"class {name!r}"))
    return {
        "id": name,
        "name": name,
        "description": None,
        "fill": fill,
        "border": [200, 200, 200],
        "visible": True,
    }


def _correspondences(project: TaglabProject) -> dict[str, Any]:
    surveys = {s.name: s for s in project.surveys}
    tables: dict[str, Any] = {}
    for k, link in enumerate(project.links):
        link = TaglabLink(
            link.source_survey,
            None if link.source_id is None or link.source_id < 0 else int(link.source_id),
            link.target_survey,
            None if link.target_id is None or link.target_id < 0 else int(link.target_id),
            link.event,
            link.split_fuse,
        )
        _check_link(link, surveys, f"link {k}")
        source, target = surveys[link.source_survey], surveys[link.target_survey]
        by_id_s = {r.id: r for r in source.regions}
        by_id_t = {r.id: r for r in target.regions}
        region_s = by_id_s.get(link.source_id) if link.source_id is not None else None
        region_t = by_id_t.get(link.target_id) if link.target_id is not None else None
        # areas as TagLab's Correspondences.area_in_sq_cm: px^2 * (mm/px)^2 / 100
        area1 = region_s.area_px * source.px_to_mm**2 / 100.0 if region_s else 0.0
        area2 = region_t.area_px * target.px_to_mm**2 / 100.0 if region_t else 0.0
        class_name = (region_s or region_t).class_name  # type: ignore[union-attr]
        event = link.event
        if region_s and region_t and event in SIZE_EVENTS:
            # what TagLab shows once it opens the file: Correspondences.updateAreas recomputes a
            # grow / shrink / same row from the two regions' areas at its 1.05 threshold
            event = link_event(area1, area2)
        key = f"{source.name}-{target.name}"
        table = tables.setdefault(key, {"source": source.name, "target": target.name, "correspondences": []})
        table["correspondences"].append(
            [
                -1,
                -1 if link.source_id is None else link.source_id,
                -1 if link.target_id is None else link.target_id,
                round(area1, 4),
                round(area2, 4),
                class_name,
                event,
                link.split_fuse,
            ]
        )
    return tables


def taglab_project_dict(project: TaglabProject, filename: str = "") -> dict[str, Any]:
    """The JSON object TagLab's ``Project(**data)`` loads (every key among its arguments).

    Raises:
        QuadratsegError: a region's class is not among ``classes``, a survey's date is not
            ``YYYY-MM-DD``, its scale is not positive, region ids repeat in a survey, or a link
            names an unknown survey or region or an event outside TagLab's vocabulary.
    """
    _check_classes(project)
    names = [s.name for s in project.surveys]
    if len(set(names)) != len(names):
        raise QuadratsegError(f"survey names {names} are not unique; TagLab's correspondences key on them")
    images = []
    for survey in project.surveys:
        where = f"survey {survey.name!r}"
        _check_date(survey.date, where, allow_empty=False)
        if not (math.isfinite(survey.px_to_mm) and survey.px_to_mm > 0):
            raise QuadratsegError(
                f"{where}: px_to_mm {survey.px_to_mm!r} must be a positive number of mm per pixel"
            )
        ids = [r.id for r in survey.regions]
        if len(set(ids)) != len(ids):
            raise QuadratsegError(f"{where}: region ids repeat; TagLab needs one id per region")
        images.append(
            {
                "rect": [0.0, 0.0, 0.0, 0.0],
                "map_px_to_mm_factor": repr(float(survey.px_to_mm)),
                "width": int(survey.width),
                "height": int(survey.height),
                "annotations": {"regions": [_region_dict(r) for r in survey.regions], "points": []},
                "layers": [],
                "channels": [{"filename": survey.image_path, "type": "RGB"}] if survey.image_path else [],
                "id": survey.name,
                "name": survey.name,
                "workspace": [],
                "export_dataset_area": [],
                "acquisition_date": survey.date,
                "georef_filename": "",
                "metadata": {},
            }
        )
    labels = {name: _label_dict(name, rgb) for name, rgb in project.classes.items()}
    labels.setdefault(EMPTY_CLASS, _label_dict(EMPTY_CLASS, (127, 127, 127)))
    return {
        "filename": filename,
        "working_area": None,
        "dictionary_name": "quadratseg",
        "dictionary_description": "",
        "labels": labels,
        "images": images,
        "correspondences": _correspondences(project),
        "genet": {},
        "region_attributes": {"name": "", "description": "", "data": []},
        "spatial_reference_system": None,
        "metadata": {},
        "image_metadata_template": {},
        "markers": {},
    }


def write_taglab_project(project: TaglabProject, path: str | Path) -> None:
    """Write ``project`` as a TagLab project JSON, atomically (all checks pass before the file is
    touched; a reader sees the old file or the new one). ``classes`` gain TagLab's ``Empty``.

    Raises:
        QuadratsegError: see :func:`taglab_project_dict`.
    """
    path = Path(path)
    data = taglab_project_dict(project, filename=path.name)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def with_correspondences(
    data: dict[str, Any], project: TaglabProject, links: list[TaglabLink]
) -> dict[str, Any]:
    """The TagLab project JSON object ``data`` with its ``correspondences`` replaced by ``links``
    (TagLab's table, areas from the regions of ``project``, the surveys ``data`` was read into by
    :func:`parse_taglab_project`); every other key (dictionary, images with their grid, metadata,
    georeference, regions with their instance names and data, points, layers) as it is.

    Raises:
        QuadratsegError: a link names an unknown survey or region or an event outside TagLab's
            vocabulary.
    """
    from dataclasses import replace

    return {**data, "correspondences": _correspondences(replace(project, links=links))}


def write_taglab_json(data: dict[str, Any], path: str | Path) -> None:
    """Write a TagLab project JSON object (e.g. :func:`with_correspondences`'s) atomically."""
    atomic_write_text(Path(path), json.dumps(data, indent=1) + "\n")
