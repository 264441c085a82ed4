"""Coral colonies as every segmentation module returns them, and their CVAT detector answer.

COCO instance documents live here too (image listing: :mod:`quadratseg.images`).

One serving contract for YOLO-seg and DINOv2 + SAM alike: ``mask`` shapes (CVAT RLE inside
the box) that also carry ``points`` (the polygon CVAT uses with ``conv_mask_to_poly``), and
integer-string confidences (CVAT's number attributes accept nothing else).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quadratseg.geometry import polygon_area, polygon_to_cvat_rle, polygon_to_xyxy


@dataclass
class Instance:
    """One coral colony: class name, score 0..1, outline (N, 2) px in the image frame.

    ``extra`` carries what a producer wants to report with it (e.g. ``{"unsure": True}``).
    """

    label: str
    score: float
    polygon_xy: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def cvat_shapes(
    instances: list[Instance], frame_size: tuple[int, int], threshold: float = 0.0
) -> list[dict[str, Any]]:
    """CVAT detector answer: ``mask`` shapes (RLE + box) that also carry ``points`` (the polygon).

    Instances below ``threshold`` (0..1) are left out; ``frame_size=(width, height)``.
    """
    shapes = []
    for inst in instances:
        if inst.score < threshold:
            continue
        rle = polygon_to_cvat_rle(inst.polygon_xy, frame_size)
        if rle is None:
            continue
        confidence = str(round(100 * inst.score))
        shapes.append(
            {
                "label": inst.label,
                "type": "mask",
                "points": [round(float(v), 2) for v in inst.polygon_xy.ravel()],
                "mask": rle,
                "confidence": confidence,
                "attributes": [{"name": "confidence", "value": confidence}],
            }
        )
    return shapes


class CocoInstances:
    """Accumulates images and their instances into a COCO instance-segmentation document.

    Example:
        >>> doc = CocoInstances(["Acropora"])
        >>> square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
        >>> doc.add_image("q.jpg", (8, 8), [Instance("Acropora", 0.9, square)])
        1
        >>> doc.to_dict()["annotations"][0]["bbox"]
        [0.0, 0.0, 4.0, 4.0]
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
            x0, y0, x1, y1 = polygon_to_xyxy(inst.polygon_xy)
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": self._category_id[inst.label],
                    "segmentation": [np.round(inst.polygon_xy.ravel(), 2).tolist()],
                    "area": polygon_area(inst.polygon_xy),
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
