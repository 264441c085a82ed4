"""Coral colonies as every segmentation module returns them, and their CVAT detector answer.

COCO instance documents live here too.

One model of a colony everywhere: **one instance = one colony**, which may have several parts
(a colony split by a dead patch or by the frame) and holes (sand inside a ring of coral). An
:class:`Instance` holds its exact pixels as a bool mask inside its box; polygons (with holes,
one per part) are traced from that mask on demand with the core's exact mask -> polygon code.

One serving contract for YOLO-seg and DINOv2 + SAM alike (:func:`cvat_shapes`): CVAT's detector
``mask`` answer (the flat row-major 0/1 bitmap of the box followed by the inclusive box
``xtl, ytl, xbr, ybr``; CVAT's lambda manager run-length encodes it itself), ``points`` beside it
(the outline CVAT uses instead with ``conv_mask_to_poly``), and integer-string confidences
(CVAT's number attributes accept nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.geometry import (
    PolygonWithHoles,
    as_polygon_xy,
    mask_to_polygons,
    mask_to_xyxy,
    polygons_to_mask,
)


@dataclass(eq=False)
class Instance:
    """One coral colony: class name, score 0..1 and its exact pixels.

    Attributes:
        label: class name.
        score: 0..1.
        box_mask: bool (h, w), the colony's pixels inside its box; may hold several parts and holes.
        origin_xy: (x0, y0), the image-frame pixel of ``box_mask[0, 0]``.
        extra: what a producer wants to report with it (e.g. ``{"unsure": True}``).

    Examples:
        >>> ring = np.array([[2, 1], [6, 1], [6, 4], [2, 4]], float)
        >>> inst = Instance.from_polygons("Porites", 0.9, [ring])
        >>> inst.xyxy, inst.area
        ((2, 1, 6, 4), 12)
    """

    label: str
    score: float
    box_mask: np.ndarray
    origin_xy: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = np.asarray(self.box_mask)
        if m.ndim != 2 or m.dtype != np.bool_:
            raise QuadratsegError(f"an instance mask must be bool (h, w), got {m.dtype} {m.shape}")
        self.origin_xy = (int(self.origin_xy[0]), int(self.origin_xy[1]))

    @classmethod
    def from_mask(
        cls,
        label: str,
        score: float,
        mask: np.ndarray,
        origin_xy: tuple[int, int] = (0, 0),
        extra: dict[str, Any] | None = None,
    ) -> Instance | None:
        """An instance from a bool mask (h, w) whose top-left pixel is ``origin_xy`` in the image
        frame (a full-frame mask: origin (0, 0)); cropped to its tight box; None when empty."""
        box = mask_to_xyxy(mask)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=bool)
        return cls(label, float(score), crop, (origin_xy[0] + x0, origin_xy[1] + y0), dict(extra or {}))

    @classmethod
    def from_polygons(
        cls,
        label: str,
        score: float,
        polygons: Sequence[PolygonWithHoles | np.ndarray],
        frame_size: tuple[int, int] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Instance | None:
        """An instance from its parts: rings (N, 2) or :class:`PolygonWithHoles`, pixel frame.

        Pixels are those whose centre lies inside (holes cut out, parts unioned), rasterized
        inside the box of every ring; ``frame_size=(width, height)`` clips to the image. None when
        no pixel centre is covered. A colony's :attr:`rings` (parts and holes in one list) read
        back even-odd is ``[PolygonWithHoles(rings[0], rings[1:])]``: a second part among the
        "holes" lies outside the first part and is filled by the even-odd rule.

        Examples:
            >>> a, b = np.array([[0, 0], [2, 0], [2, 2], [0, 2]]), np.array([[4, 0], [6, 0], [6, 2], [4, 2]])
            >>> Instance.from_polygons("Porites", 1.0, [PolygonWithHoles(a, [b])]).area
            8
        """
        parts = [
            p if isinstance(p, PolygonWithHoles) else PolygonWithHoles(as_polygon_xy(p)) for p in polygons
        ]
        if not parts:
            return None
        xy = np.concatenate([ring for p in parts for ring in (p.exterior, *p.holes)])
        x0, y0 = (max(int(np.floor(v)), 0) for v in xy.min(axis=0))
        x1, y1 = (int(np.ceil(v)) for v in xy.max(axis=0))
        if frame_size is not None:
            x1, y1 = min(x1, frame_size[0]), min(y1, frame_size[1])
        if x1 <= x0 or y1 <= y0:
            return None
        shift = np.array([x0, y0], dtype=np.float64)
        local = [PolygonWithHoles(p.exterior - shift, [h - shift for h in p.holes]) for p in parts]
        return cls.from_mask(label, score, polygons_to_mask(local, (x1 - x0, y1 - y0)), (x0, y0), extra)

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """Box (x_min, y_min, x_max, y_max) in the image frame, max exclusive."""
        x0, y0 = self.origin_xy
        h, w = self.box_mask.shape
        return x0, y0, x0 + w, y0 + h

    @property
    def area(self) -> int:
        """Pixels of the colony (holes excluded, every part included)."""
        return int(np.count_nonzero(self.box_mask))

    @cached_property
    def polygons(self) -> list[PolygonWithHoles]:
        """Every part with its holes, traced exactly from the mask (largest first), image frame."""
        shift = np.array(self.origin_xy, dtype=np.float64)
        return [
            PolygonWithHoles(p.exterior + shift, [h + shift for h in p.holes])
            for p in mask_to_polygons(self.box_mask, min_area=0.0)
        ]

    @property
    def rings(self) -> list[np.ndarray]:
        """Every ring (N, 2) of the colony, image frame: each part's exterior, then its holes
        (read them with the even-odd rule, as FiftyOne polylines and :func:`draw_polygons` do)."""
        return [ring for part in self.polygons for ring in (part.exterior, *part.holes)]

    def outline_rings(self, tolerance: float = 1.0) -> list[np.ndarray]:
        """:attr:`rings` simplified (Douglas-Peucker, ``tolerance`` px): what a polygon editor or
        a polygon evaluation wants (a traced pixel outline has a vertex at every step). Rings that
        collapse under 3 points are left out."""
        return [simple for simple in (simplify_ring(r, tolerance) for r in self.rings) if len(simple) >= 3]

    @property
    def polygon_xy(self) -> np.ndarray:
        """Outline (N, 2) of the largest part: what a single CVAT polygon can carry."""
        polygons = self.polygons
        if not polygons:
            raise QuadratsegError(f"instance {self.label!r} has no pixel")
        return polygons[0].exterior

    def full_mask(self, frame_size: tuple[int, int]) -> np.ndarray:
        """The colony as a bool mask (H, W) of a ``frame_size=(width, height)`` image."""
        width, height = frame_size
        mask = np.zeros((height, width), dtype=bool)
        self.paint(mask, True)
        return mask

    def paint(self, target: np.ndarray, value: Any) -> None:
        """Set ``target[pixel] = value`` for the colony's pixels (``target`` is (H, W, ...), image frame)."""
        x0, y0, x1, y1 = self.xyxy
        h, w = target.shape[:2]
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if cx1 <= cx0 or cy1 <= cy0:
            return
        crop = self.box_mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        target[cy0:cy1, cx0:cx1][crop] = value

    def within(self, xyxy: tuple[int, int, int, int]) -> np.ndarray:
        """The colony as a bool mask (y1 - y0, x1 - x0) over the box ``xyxy`` (x0, y0, x1, y1; image
        frame, max exclusive), larger or smaller than its own box (pixels outside are left out)."""
        x0, y0, x1, y1 = xyxy
        canvas = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        self.shifted(-x0, -y0).paint(canvas, True)
        return canvas

    def shifted(self, dx: int, dy: int) -> Instance:
        """The same colony with its box moved by (dx, dy) px (e.g. from a tile to the image frame)."""
        return Instance(
            self.label,
            self.score,
            self.box_mask,
            (self.origin_xy[0] + dx, self.origin_xy[1] + dy),
            self.extra,
        )


def mask_iou(a: Instance, b: Instance) -> float:
    """Intersection over union of two colonies' pixels (image frame), computed over their boxes' union.

    Examples:
        >>> a = Instance("A", 1.0, np.ones((4, 4), bool))
        >>> b = Instance("B", 1.0, np.ones((4, 4), bool), (2, 0))
        >>> round(mask_iou(a, b), 3), mask_iou(a, Instance("C", 1.0, np.ones((2, 2), bool), (9, 9)))
        (0.333, 0.0)
    """
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    if ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0:
        return 0.0
    box = (min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1))
    first, second = a.within(box), b.within(box)
    union = np.count_nonzero(first | second)
    return float(np.count_nonzero(first & second) / union) if union else 0.0


def exclusive_instances(
    instances: Sequence[Instance], frame_size: tuple[int, int], min_kept: float = 0.5
) -> list[tuple[int, Instance]]:
    """Colonies as a map of the reef, where a pixel belongs to one colony: each pixel goes to the
    surest colony covering it (highest score; the later one on a tie), each colony is cut to the
    pixels it keeps, and one that keeps less than ``min_kept`` of its area is left out (a second
    answer on a colony with another genus, a low-score outline around surer ones).

    Args:
        instances: colonies in one frame of ``frame_size=(width, height)`` px.
        frame_size: (width, height) of that frame.
        min_kept: share of its own pixels a colony must keep, 0..1.

    Returns:
        (index in ``instances``, the colony cut to its own pixels) for each colony kept, in input order.

    Examples:
        >>> sure = Instance("Porites", 0.9, np.ones((4, 4), bool))
        >>> again = Instance("Acropora", 0.4, np.ones((4, 4), bool))
        >>> edge = Instance("Acropora", 0.5, np.ones((4, 4), bool), (3, 0))
        >>> [(i, c.label, c.area) for i, c in exclusive_instances([again, sure, edge], (8, 4))]
        [(1, 'Porites', 16), (2, 'Acropora', 12)]
    """
    if not 0.0 <= min_kept <= 1.0:
        raise QuadratsegError(f"min_kept must be within 0..1, got {min_kept}")
    width, height = frame_size
    owner = np.full((height, width), -1, dtype=np.int32)
    for index in sorted(range(len(instances)), key=lambda i: instances[i].score):
        instances[index].paint(owner, index)
    kept = []
    for index, inst in enumerate(instances):
        own = inst.box_mask & (owner_box(owner, inst.xyxy) == index)
        if own.any() and np.count_nonzero(own) >= min_kept * inst.area:
            kept.append((index, Instance(inst.label, inst.score, own, inst.origin_xy, inst.extra)))
    return kept


def owner_box(owner_hw: np.ndarray, xyxy: tuple[int, int, int, int]) -> np.ndarray:
    """``owner_hw`` (H, W) over the box ``xyxy`` (x0, y0, x1, y1; max exclusive), -1 outside the frame."""
    x0, y0, x1, y1 = xyxy
    height, width = owner_hw.shape
    box = np.full((y1 - y0, x1 - x0), -1, dtype=owner_hw.dtype)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 > cx0 and cy1 > cy0:
        box[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = owner_hw[cy0:cy1, cx0:cx1]
    return box


POINTS_TOLERANCE_PX = 1.0  # outline simplification for CVAT polygons (CVAT's own functions use 2.5)


def simplify_ring(ring_xy: np.ndarray, tolerance: float) -> np.ndarray:
    """A ring (N, 2) simplified with Douglas-Peucker (``tolerance`` px); may come back under 3 points."""
    import cv2

    return cv2.approxPolyDP(ring_xy.astype(np.float32), tolerance, True)[:, 0, :].astype(np.float64)


def cvat_detector_mask(inst: Instance) -> np.ndarray:
    """CVAT's detector ``mask`` for one colony: the flat row-major 0/1 bitmap of its box, then the
    box ``xtl, ytl, xbr, ybr`` (inclusive), as CVAT's serverless ``to_cvat_mask`` writes it; a 1-D
    integer array (a JSON list once written by :func:`quadratseg.nuclio.dumps`)."""
    x0, y0, x1, y1 = inst.xyxy
    return np.concatenate([inst.box_mask.ravel().astype(np.int64), [x0, y0, x1 - 1, y1 - 1]])


def outline_xy(inst: Instance, tolerance: float = POINTS_TOLERANCE_PX) -> np.ndarray:
    """The outer outline (N, 2) px of a colony's largest part through pixel centres, simplified by
    ``tolerance`` px: what CVAT keeps with ``conv_mask_to_poly`` (a CVAT polygon has one ring).
    Traced directly on the box mask (cheap), unlike the exact :attr:`Instance.polygons`."""
    import cv2

    contours, _ = cv2.findContours(inst.box_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    simple = cv2.approxPolyDP(largest, tolerance, True) if len(largest) > 3 else largest
    if len(simple) < 3:  # a line or a point: its box corners, so CVAT still gets a polygon
        return inst.polygon_xy
    return simple[:, 0, :].astype(np.float64) + np.array(inst.origin_xy) + 0.5


def cvat_shapes(
    instances: list[Instance], frame_size: tuple[int, int], threshold: float = 0.0
) -> list[dict[str, Any]]:
    """CVAT detector answer: one ``mask`` shape per colony (:func:`cvat_detector_mask`), with
    ``points`` (:func:`outline_xy` of its largest part) for ``conv_mask_to_poly``. Serialize it with
    :func:`quadratseg.nuclio.dumps` (the masks are numpy arrays).

    Instances below ``threshold`` (0..1) and those with no pixel inside the
    ``frame_size=(width, height)`` image are left out.
    """
    width, height = frame_size
    shapes = []
    for inst in instances:
        if inst.score < threshold:
            continue
        x0, y0, x1, y1 = inst.xyxy
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            inst = Instance.from_mask(inst.label, inst.score, inst.full_mask(frame_size), extra=inst.extra)
            if inst is None:
                continue
        confidence = str(round(100 * inst.score))
        outline = outline_xy(inst)
        shapes.append(
            {
                "label": inst.label,
                "type": "mask",
                "mask": cvat_detector_mask(inst),
                "points": [round(float(v), 2) for v in outline.ravel()],
                "confidence": confidence,
                "attributes": [{"name": "confidence", "value": confidence}],
            }
        )
    return shapes


class CocoInstances:
    """Accumulates images and their instances into a COCO instance-segmentation document.

    Examples:
        >>> doc = CocoInstances(["Acropora"])
        >>> square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
        >>> doc.add_image("q.jpg", (8, 8), [Instance.from_polygons("Acropora", 0.9, [square])])
        1
        >>> doc.to_dict()["annotations"][0]["bbox"], doc.to_dict()["annotations"][0]["area"]
        ([0, 0, 4, 4], 16)
    """

    def __init__(self, class_names: list[str]):
        self.categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
        self._category_id = {c["name"]: c["id"] for c in self.categories}
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add_image(self, file_name: str, frame_size: tuple[int, int], instances: list[Instance]) -> int:
        """Add one image (``frame_size=(width, height)``) and its instances; return its id."""
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": frame_size[0], "height": frame_size[1]}
        )
        for inst in instances:
            x0, y0, x1, y1 = inst.xyxy
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": self._category_id[inst.label],
                    "segmentation": coco_segmentation(inst, frame_size),
                    "area": inst.area,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": round(inst.score, 4),
                    "iscrowd": 0,
                    **({"attributes": inst.extra} if inst.extra else {}),
                }
            )
        return image_id

    def to_dict(self) -> dict[str, Any]:
        """The COCO document: ``images``, ``annotations``, ``categories``."""
        return {"images": self.images, "annotations": self.annotations, "categories": self.categories}


def coco_segmentation(inst: Instance, frame_size: tuple[int, int]) -> list[list[float]] | dict[str, Any]:
    """COCO ``segmentation`` of a colony in a ``frame_size=(width, height)`` image.

    A colony without holes: one polygon per part (COCO unions the polygons of an annotation).
    A colony with holes: uncompressed RLE (``{"size": [H, W], "counts": [...]}``, column-major
    runs starting with background), the only COCO form that carries holes; pycocotools and
    FiftyOne read both.
    """
    parts = inst.polygons
    if not any(p.holes for p in parts):
        return [np.round(p.exterior.ravel(), 2).tolist() for p in parts]
    width, height = frame_size
    flat = inst.full_mask(frame_size).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [height, width], "counts": runs}
