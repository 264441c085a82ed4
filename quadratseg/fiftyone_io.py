"""FiftyOne glue: CVAT shapes <-> FiftyOne labels, and the field names every module reads.

Coordinates in FiftyOne are normalized to the image, (x / width, y / height).

Fields of a pulled sample:
- ``gt_polylines``: coral polygons as closed, filled ``Polylines`` (label at the project's
  taxonomy level, ``confidence`` attribute when CVAT had it); ``gt_polylines_<level>`` hold the
  same polygons with labels mapped to each coarser taxonomy level (:func:`derive_level_fields`;
  a polygon keeps its label id in every level's field, so it can be followed across levels).
  A colony whose CVAT shape has a non-empty ``lineage`` attribute (its lineage id across
  surveys, :func:`quadratseg.labelsets.lineage_attribute`) has the polyline attribute
  ``lineage`` (a string), which the push sends back to CVAT.
- ``gt_corners`` / ``gt_grid``: the ``quadrat_corner`` / ``grid`` skeletons as ``Keypoints``
  holding one ``Keypoint`` whose points are in template order (the skeleton's sublabel order);
  other skeleton labels go to ``gt_<label>``. Points marked ``outside`` in CVAT and points
  missing from the skeleton are NaN (FiftyOne's missing point: the App does not draw it, its
  COCO export writes ``v = 0``). The coordinates CVAT keeps for outside points are not lost:
  the ``Keypoint`` attribute ``cvat_outside_points`` (:data:`OUTSIDE_POINTS_ATTR`, only on
  keypoints with an outside point) holds them, one (x, y) per point, NaN for every point that
  is not outside; :func:`keypoints_to_pixels` gives them back for the push to CVAT and YOLO
  pose labels. The dataset declares each skeleton field's ``KeypointSkeleton`` (point names in
  template order, edges from the CVAT label's drawing or the core label sets: the corners as a
  closed quadrilateral, the grid's neighbours along rows and columns), so the App draws the
  frame and the grid (:func:`declare_skeletons`).
- ``cvat_task_id``, ``cvat_task_name``, ``cvat_subset``, ``cvat_project_name``, ``cvat_frame``,
  ``cvat_image_name``; ``area``, ``year``, ``quadrat_id`` from the image name's folders or name
  (:func:`quadratseg.photo_meta.photo_place`, the pipeline's parser); the subset as a tag.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_labels import LabelSpec, skeleton_edges
from quadratseg.formats.cvat_xml import Shape
from quadratseg.geometry import cvat_rle_to_mask, mask_to_polygons, polygon_area, repair_polygon
from quadratseg.labelsets import LINEAGE_ATTRIBUTE, corner_labels, grid_labels
from quadratseg.photo_meta import photo_place
from quadratseg.taxonomy import LEVELS, Taxonomy

POLYLINES_FIELD = "gt_polylines"
SKELETON_FIELDS = {"quadrat_corner": "gt_corners", "grid": "gt_grid"}
OUTSIDE_POINTS_ATTR = "cvat_outside_points"  # Keypoint attribute: CVAT's coordinates of outside points


def level_field(level: str) -> str:
    """Field holding the polygons mapped to a taxonomy level (the source level uses ``gt_polylines``)."""
    return f"{POLYLINES_FIELD}_{level}"


def skeleton_field(label: str) -> str:
    """Field of a skeleton label: ``gt_corners``, ``gt_grid``, or ``gt_<label>`` for others."""
    return SKELETON_FIELDS.get(label, f"gt_{re.sub(r'[^0-9A-Za-z]+', '_', label).strip('_').lower()}")


def parse_quadrat_name(file_name: str) -> dict[str, Any]:
    """The sample fields of a photo's place, by the pipeline's parser (folders, then name:
    :func:`quadratseg.photo_meta.photo_place`): ``MooreaE2B_2020_05.jpg`` or
    ``MooreaE2B/2020/05.jpg`` -> ``{"area": "MooreaE2B", "year": 2020, "quadrat_id": "05"}``; {} when
    the site or the year is unknown."""
    place = photo_place(file_name)
    if not (place["site"] and place["year"]):
        return {}
    return {"area": place["site"], "year": int(place["year"]), "quadrat_id": place["quadrat"]}


@dataclass
class ConversionLog:
    """What the conversion dropped or repaired, with a few examples each (for grouped warnings)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        """Count one event of ``kind``; keep the first three examples."""
        self.counts[kind] += 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < 3:
            self.examples[kind].append(example)

    def lines(self) -> list[str]:
        """One line per kind: ``dropped 12 polygons with < 3 points, e.g. ...``."""
        return [
            f"{kind}: {n} (e.g. {'; '.join(self.examples[kind])})" for kind, n in sorted(self.counts.items())
        ]


def _usable_ring(points_xy: np.ndarray, where: str, log: ConversionLog) -> np.ndarray | None:
    """The ring (N, 2) if it has 3+ distinct points and an area; None (logged) otherwise."""
    p = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(p).all():
        log.add("polygons dropped (non-finite coordinates)", where)
        return None
    if len(p) < 3:
        log.add("polygons dropped (fewer than 3 distinct points)", where)
        return None
    if polygon_area(p) <= 0.5:
        few = len(np.unique(p, axis=0)) < 3
        if not few and sum(polygon_area(r) for r in repair_polygon(p, min_area=0.5)) > 0.5:
            return p  # self-crossing lobes whose signed areas cancel (a bow-tie): repaired later
        log.add(
            "polygons dropped (fewer than 3 distinct points)" if few else "polygons dropped (zero area)",
            where,
        )
        return None
    return p


def mask_rings(
    rle: list[int], frame_size: tuple[int, int], where: str, log: ConversionLog
) -> list[np.ndarray]:
    """A CVAT mask (REST points: runs, then the inclusive box, px) -> the rings (N, 2) px of one colony.

    Decoded and traced inside the mask's own box (a 7360 x 4912 photo is 36 Mpx; its masks are
    small), with the core's exact :func:`cvat_rle_to_mask` and :func:`mask_to_polygons`, then
    shifted into the image frame. One mask is one colony: its rings are every part's exterior and
    every hole, read under the even-odd rule (the colony model of :mod:`quadratseg.instances`),
    so one FiftyOne polyline holds them all. Malformed masks, masks outside the image and empty
    masks are dropped (logged); a box reaching past the image is clipped to it (logged).

    Runs that stop short of the box (some third-party encoders never write the last run) get
    the missing run back: runs alternate, so it takes the value that follows the last written
    run (background after foreground, foreground after background), which keeps the box tight.
    """
    width, height = frame_size
    try:
        *runs, x1, y1, x2, y2 = (int(v) for v in rle)
        box_w, box_h = x2 - x1 + 1, y2 - y1 + 1
        if min(runs, default=-1) < 0 or box_w < 1 or box_h < 1:
            raise QuadratsegError(f"box {[x1, y1, x2, y2]} or negative runs")
        short = box_w * box_h - sum(runs)
        if short > 0:  # encoders that forget to write the last run; CVAT shows the mask all the same
            runs.append(short)
            log.add("masks repaired (runs short of the box: the missing last run restored)", where)
        local = cvat_rle_to_mask([*runs, 0, 0, box_w - 1, box_h - 1], (box_w, box_h))
    except (QuadratsegError, ValueError) as exc:
        log.add("masks dropped (malformed run-length encoding)", f"{where} ({exc})")
        return []
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2 + 1, width), min(y2 + 1, height)
    if cx2 <= cx1 or cy2 <= cy1:
        log.add("masks dropped (outside the image)", f"{where} (box {[x1, y1, x2, y2]})")
        return []
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2 + 1, y2 + 1):
        log.add("masks clipped to the image", f"{where} (box {[x1, y1, x2, y2]})")
        local = local[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]
    parts = mask_to_polygons(local, min_area=4.0, tolerance=0.5)
    if not parts:
        log.add("masks dropped (empty or under 4 px^2)", where)
        return []
    shift = np.array([cx1, cy1], dtype=np.float64)
    return [ring + shift for p in parts for ring in (p.exterior, *p.holes)]


def invalid_rings(rings: list[np.ndarray]) -> np.ndarray:
    """Which rings (each (N_i, 2) px, N_i >= 3, any mix of lengths) are invalid polygons, bool (R,).

    One vectorized shapely check over the concatenated rings (``indices`` tells them apart).
    """
    import shapely

    if not rings:
        return np.zeros(0, dtype=bool)
    coords = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in rings])
    indices = np.repeat(np.arange(len(rings)), [len(r) for r in rings])
    polygons = shapely.polygons(shapely.linearrings(coords, indices=indices))
    return ~shapely.is_valid(polygons)


def shapes_to_polylines(
    shapes: list[Shape], frame_size: tuple[int, int], where: str, log: ConversionLog
) -> list[tuple[str, list[np.ndarray], dict[str, str]]]:
    """Polygon and mask shapes -> one (label, rings [(N, 2) px, ...], attributes) per colony, in
    CVAT's drawing order (``z_order``, then as listed): where colonies overlap, the later one is on
    top, as every consumer of the colonies reads them (a pixel belongs to the last colony over it).

    A polygon is one ring; a self-crossing one is repaired with shapely (a bow-tie becomes one
    colony of two parts). A mask keeps its parts and holes (:func:`mask_rings`). Every shape that
    gives no colony is logged with the reason, so a caller can account for each shape of the input.
    """
    out: list[tuple[str, list[np.ndarray], dict[str, str]]] = []
    polygon_rows: list[int] = []  # rows of ``out`` that hold one drawn polygon, to check for validity
    # CVAT's stacking: by z_order, ties as listed (a stable sort); the last colony is on top
    for shape in sorted(shapes, key=lambda s: s.z_order):
        if not shape.label:
            log.add("shapes dropped (no label)", f"{where} (a {shape.type})")
        elif shape.type == "polygon":
            ring = _usable_ring(shape.points, where, log)
            if ring is not None:
                polygon_rows.append(len(out))
                out.append((shape.label, [ring], shape.attributes))
        elif shape.type == "mask":
            rings = mask_rings(shape.rle, frame_size, f"{where} ({shape.label})", log)
            if rings:
                out.append((shape.label, rings, shape.attributes))
        elif shape.type in ("box", "polyline", "points"):
            log.add(f"{shape.type} shapes ignored (not coral polygons)", f"{where} ({shape.label})")
    invalid = invalid_rings([out[row][1][0] for row in polygon_rows])
    for row, bad in zip(polygon_rows, invalid, strict=True):
        if not bad:
            continue
        label, (ring,), attrs = out[row]
        parts = repair_polygon(ring, min_area=0.5)
        log.add(
            "polygons repaired (self-crossing)" if parts else "polygons dropped (nothing left after repair)",
            where,
        )
        out[row] = (label, parts, attrs)
    return [colony for colony in out if colony[1]]


def skeleton_points(
    shape: Shape, spec: LabelSpec, where: str, log: ConversionLog
) -> tuple[np.ndarray, list[bool]]:
    """Skeleton elements in the order of the label's sublabels: (K, 2) px (NaN if missing), visible flags."""
    order = [s.name for s in spec.sublabels]
    index = {name: i for i, name in enumerate(order)}
    points = np.full((len(order), 2), np.nan)
    visible = [False] * len(order)
    for element in shape.elements:
        i = index.get(element.label)
        if i is None or not len(element.points):
            log.add("skeleton elements ignored (unknown point name)", f"{where} ({element.label})")
            continue
        points[i] = element.points[0]
        visible[i] = not element.outside
    n_missing = int(np.isnan(points[:, 0]).sum())
    if n_missing:
        log.add(
            "skeleton points missing (stored as NaN, invisible)", f"{where} ({n_missing} of {len(order)})"
        )
    return points, visible


def keypoint_skeleton(spec: LabelSpec) -> Any:
    """FiftyOne's ``KeypointSkeleton`` of a CVAT skeleton label: its sublabel names in order, its edges.

    The edges are the label's own (:func:`skeleton_edges`). A label drawn without edges (CRIOBE's
    corner and grid projects) takes those of the core label set of the same name and points
    (:mod:`quadratseg.labelsets`: the 4 corners as a closed quadrilateral; each of the 9 x 13 grid
    intersections joined to its neighbours along its row and its column).
    """
    import fiftyone as fo

    names = [s.name for s in spec.sublabels]
    edges = skeleton_edges(spec)
    if not edges:
        core = {c.name: c for c in (*corner_labels(), *grid_labels())}.get(spec.name)
        if core is not None and [c.name for c in core.sublabels] == names:
            edges = skeleton_edges(core)
    return fo.KeypointSkeleton(labels=names, edges=[[a, b] for a, b in edges])


def declare_skeletons(dataset: Any, labels: Iterable[LabelSpec]) -> list[str]:
    """Declare the ``KeypointSkeleton`` of every skeleton label's field the dataset has (the App draws
    the points' names and edges); returns the fields declared. Skeletons of other fields are kept."""
    schema = dataset.get_field_schema()
    skeletons = dict(dataset.skeletons)
    declared = []
    for spec in labels:
        field_name = skeleton_field(spec.name)
        if spec.sublabels and field_name in schema:
            skeletons[field_name] = keypoint_skeleton(spec)
            declared.append(field_name)
    if declared:
        dataset.skeletons = skeletons  # the setter saves the dataset
    return declared


def frame_labels(
    shapes: list[Shape],
    frame_size: tuple[int, int],
    labels: dict[str, LabelSpec],
    aliases: dict[str, str] | None = None,
    where: str = "",
    log: ConversionLog | None = None,
) -> dict[str, Any]:
    """FiftyOne label fields of one image from its CVAT shapes (see module docstring).

    Polygon labels are renamed through ``aliases``; coarser taxonomy fields are derived for a
    whole dataset afterwards by :func:`derive_level_fields`. ``confidence`` (CVAT's 0..100
    attribute) becomes the polyline's confidence in 0..1; a non-empty ``lineage`` attribute the
    polyline's ``lineage`` string.
    """
    import fiftyone as fo

    log = log if log is not None else ConversionLog()
    aliases = aliases or {}
    w, h = frame_size
    scale = np.array([w, h], dtype=np.float64)
    fields: dict[str, Any] = {}
    polylines = shapes_to_polylines(shapes, frame_size, where, log)
    if polylines or any(lab.type in ("polygon", "mask", "any") for lab in labels.values()):
        items = []
        for label, rings, attrs in polylines:
            poly = fo.Polyline(
                label=aliases.get(label, label),
                # one polyline per colony, its rings read even-odd; tuples: mongoengine wraps lists
                points=[[tuple(p) for p in (ring / scale).tolist()] for ring in rings],
                closed=True,
                filled=True,
            )
            conf = attrs.get("confidence", "")
            if conf.replace(".", "", 1).isdigit():
                poly.confidence = min(float(conf), 100.0) / 100.0
            lineage = str(attrs.get(LINEAGE_ATTRIBUTE, "")).strip()
            if lineage:  # CVAT's default for a text attribute is "": no lineage given
                poly[LINEAGE_ATTRIBUTE] = lineage
            items.append(poly)
        fields[POLYLINES_FIELD] = fo.Polylines(polylines=items)
    for shape in shapes:
        if shape.type != "skeleton" or not shape.label:  # unlabelled: logged by shapes_to_polylines
            continue
        spec = labels.get(shape.label)
        if spec is None or not spec.sublabels:
            log.add("skeletons ignored (label not in the project)", f"{where} ({shape.label})")
            continue
        points_px, visible = skeleton_points(shape, spec, where, log)
        field_name = skeleton_field(shape.label)
        nan = (float("nan"), float("nan"))
        normalized = [nan if math.isnan(x) else (x / w, y / h) for x, y in points_px.tolist()]
        shown = [p if seen else nan for p, seen in zip(normalized, visible, strict=True)]
        outside = [nan if seen else p for p, seen in zip(normalized, visible, strict=True)]
        keypoint = fo.Keypoint(label=shape.label, points=shown)
        if any(not math.isnan(x) for x, _ in outside):  # CVAT's coordinates of its outside points
            keypoint[OUTSIDE_POINTS_ATTR] = outside
        if field_name in fields:
            fields[field_name].keypoints.append(keypoint)
            log.add("images with several skeletons of one label", f"{where} ({shape.label})")
        else:
            fields[field_name] = fo.Keypoints(keypoints=[keypoint])
    return fields


def derive_level_fields(samples: Any, taxonomy: Taxonomy, source_level: str = "finegrained") -> list[str]:
    """(Re)write ``gt_polylines_<level>`` for every level coarser than ``source_level``.

    Runs as one database pipeline per level (FiftyOne's ``map_labels`` + ``clone_sample_field``),
    so it costs a fraction of building the labels in Python. Returns the fields written.
    """
    written = []
    if POLYLINES_FIELD not in samples.get_field_schema():
        return written
    for level in LEVELS[LEVELS.index(source_level) + 1 :]:
        target = level_field(level)
        if target in samples.get_field_schema():
            samples.delete_sample_field(target)
        samples.map_labels(POLYLINES_FIELD, taxonomy.mapping(level, source_level)).clone_sample_field(
            POLYLINES_FIELD, target
        )
        written.append(target)
    return written


def keypoints_to_pixels(
    keypoint: Any, frame_size: tuple[int, int], with_outside: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A FiftyOne Keypoint -> (K, 2) float pixel coordinates and a visible (K,) bool array.

    A point is visible when it has coordinates in ``points``; the others are NaN. With
    ``with_outside``, points CVAT marked outside get back the coordinates kept in
    ``cvat_outside_points`` (still not visible), as CVAT skeletons and YOLO pose labels (``v = 0``)
    hold them. Keypoints pulled before outside points became NaN (outside coordinates in
    ``points``, a ``visible`` list beside them) read the same way.

    Examples:
        >>> import fiftyone as fo
        >>> nan = float("nan")
        >>> kp = fo.Keypoint(points=[(0.5, 0.5), (nan, nan)], cvat_outside_points=[(nan, nan), (0.25, 1.0)])
        >>> points, visible = keypoints_to_pixels(kp, (100, 10))
        >>> points.tolist(), visible.tolist()
        ([[50.0, 5.0], [nan, nan]], [True, False])
        >>> keypoints_to_pixels(kp, (100, 10), with_outside=True)[0].tolist()
        [[50.0, 5.0], [25.0, 10.0]]
    """
    scale = np.array(frame_size, dtype=np.float64)
    pts = np.asarray(keypoint.points, dtype=np.float64).reshape(-1, 2) * scale
    vis = np.isfinite(pts).all(axis=1)
    legacy_visible = getattr(keypoint, "visible", None)
    if legacy_visible is not None:
        vis &= np.asarray(legacy_visible, dtype=bool)
    outside = getattr(keypoint, OUTSIDE_POINTS_ATTR, None)
    if not with_outside:
        pts[~vis] = np.nan
    elif outside is not None:
        kept = np.asarray(outside, dtype=np.float64).reshape(-1, 2) * scale
        if len(kept) != len(pts):
            raise ValueError(
                f"a {keypoint.label!r} keypoint has {len(pts)} points but {len(kept)} {OUTSIDE_POINTS_ATTR}; "
                "pull it again from CVAT"
            )
        restore = ~vis & np.isfinite(kept).all(axis=1)
        pts[restore] = kept[restore]
    return pts, vis


def polylines_to_shapes(polylines: Any, frame_size: tuple[int, int]) -> list[Shape]:
    """FiftyOne Polylines -> CVAT shapes in pixels (confidence as an integer string 0..100, the
    ``lineage`` attribute as its string when the polyline has one).

    A colony of one ring is a polygon; a colony of several rings (parts, holes: even-odd) is a
    CVAT mask (REST run-length encoding), the only CVAT shape that holds it whole.
    """
    from quadratseg.geometry import PolygonWithHoles, mask_to_cvat_rle, polygons_to_mask

    w, h = frame_size
    shapes = []
    for poly in polylines.polylines if polylines is not None else []:
        rings = [np.asarray(r, dtype=np.float64) * np.array([w, h]) for r in poly.points if len(r) >= 3]
        if not rings:
            continue
        attributes = {}
        if poly.confidence is not None:
            attributes["confidence"] = str(round(100 * float(poly.confidence)))
        lineage = poly.get_field(LINEAGE_ATTRIBUTE) if poly.has_field(LINEAGE_ATTRIBUTE) else None
        if lineage is not None and str(lineage).strip():
            attributes[LINEAGE_ATTRIBUTE] = str(lineage).strip()
        source = "auto" if poly.confidence is not None else "manual"
        if len(rings) == 1:
            shapes.append(Shape("polygon", poly.label, points=rings[0], attributes=attributes, source=source))
            continue
        mask = polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], frame_size)
        if mask.any():
            rle = mask_to_cvat_rle(mask)
            shapes.append(Shape("mask", poly.label, rle=rle, attributes=attributes, source=source))
    return shapes


def keypoints_to_shapes(keypoints: Any, frame_size: tuple[int, int], spec: LabelSpec) -> list[Shape]:
    """FiftyOne Keypoints -> CVAT skeletons, elements in ``spec``'s sublabel order.

    NaN points go out as ``outside``: at the coordinates kept in ``cvat_outside_points`` for the
    points CVAT had marked outside, at (0, 0) for points missing from the skeleton.
    """
    shapes = []
    for kp in keypoints.keypoints if keypoints is not None else []:
        pts, vis = keypoints_to_pixels(kp, frame_size, with_outside=True)
        if len(pts) != len(spec.sublabels):
            raise ValueError(
                f"a {kp.label!r} keypoint has {len(pts)} points but the CVAT skeleton {spec.name!r} has "
                f"{len(spec.sublabels)}; push it to a project with the matching skeleton"
            )
        elements = [
            Shape("points", sub.name, points=np.nan_to_num(pts[i : i + 1]), outside=not bool(vis[i]))
            for i, sub in enumerate(spec.sublabels)
        ]
        shapes.append(Shape("skeleton", spec.name, elements=elements))
    return shapes


def load_dataset(name: str) -> Any:
    """The FiftyOne dataset ``name``; a :class:`QuadratsegError` naming the datasets there are otherwise
    (FiftyOne's own "not found" names none), with the closest names first."""
    import difflib

    import fiftyone as fo

    if fo.dataset_exists(name):
        return fo.load_dataset(name)
    names = fo.list_datasets()
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    listed = (
        ", ".join(names) if names else "none yet: pull a CVAT project into FiftyOne first (quadratseg-pull)"
    )
    raise QuadratsegError(f"no FiftyOne dataset named {name!r}{hint}; datasets: {listed}")
