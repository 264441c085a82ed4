"""CVAT's REST (and backup) annotation JSON <-> the project's :class:`Shape`.

The REST API and project backups describe a shape as ``{"type", "label_id" | "label", "points":
[x0, y0, x1, y1, ...], "frame", "occluded", "outside", "z_order", "attributes": [...],
"elements": [...]}``; ``rectangle`` points are ``[xtl, ytl, xbr, ybr]`` and ``mask`` points are
CVAT's mask RLE. Attributes carry ``spec_id`` (REST) or the attribute name (backups).

Examples:
    >>> s = shape_from_rest({"type": "polygon", "label": "Acropora", "points": [0, 0, 4, 0, 4, 3]})
    >>> s.points.tolist()
    [[0.0, 0.0], [4.0, 0.0], [4.0, 3.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from quadratseg.errors import CvatFormatError
from quadratseg.formats.cvat_xml import Shape

REST_TO_SHAPE = {
    "rectangle": "box",
    "polygon": "polygon",
    "polyline": "polyline",
    "points": "points",
    "mask": "mask",
    "skeleton": "skeleton",
}
SHAPE_TO_REST = {v: k for k, v in REST_TO_SHAPE.items()}


def _label_name(raw: Mapping[str, Any], label_names: Mapping[int, str] | None, where: str) -> str:
    if raw.get("label") is not None:
        return str(raw["label"])
    label_id = raw.get("label_id")
    if label_names is not None and label_id in label_names:
        return label_names[label_id]
    raise CvatFormatError(
        f"{where}: shape refers to label id {label_id!r}, which the project does not define"
    )


def _attributes(raw: Mapping[str, Any], attribute_names: Mapping[int, str] | None) -> dict[str, str]:
    out = {}
    for attr in raw.get("attributes", []) or []:
        name = attr.get("name") or attr.get("spec")
        if name is None and attribute_names is not None:
            name = attribute_names.get(attr.get("spec_id"))
        if name is not None:
            out[str(name)] = str(attr.get("value", ""))
    return out


def shape_from_rest(
    raw: Mapping[str, Any],
    label_names: Mapping[int, str] | None = None,
    attribute_names: Mapping[int, str] | None = None,
    where: str = "annotations",
) -> Shape:
    """Convert one REST/backup shape dict into a :class:`Shape` (pixel coordinates)."""
    rest_type = raw.get("type")
    if rest_type not in REST_TO_SHAPE:
        raise CvatFormatError(
            f"{where}: unsupported shape type {rest_type!r}; expected one of {list(REST_TO_SHAPE)}"
        )
    shape_type = REST_TO_SHAPE[rest_type]
    points = list(raw.get("points", []) or [])
    shape = Shape(
        type=shape_type,
        label=_label_name(raw, label_names, where),
        occluded=bool(raw.get("occluded", False)),
        outside=bool(raw.get("outside", False)),
        z_order=int(raw.get("z_order", 0) or 0),
        source=str(raw.get("source", "manual") or "manual"),
        attributes=_attributes(raw, attribute_names),
        group=int(raw.get("group", 0) or 0),
    )
    if shape_type == "mask":
        shape.rle = [int(v) for v in points]
    elif shape_type == "skeleton":
        shape.elements = [
            shape_from_rest(e, label_names, attribute_names, f"{where} > skeleton")
            for e in raw.get("elements", [])
        ]
    else:
        if len(points) % 2:
            raise CvatFormatError(f"{where}: a {rest_type} has an odd number of coordinates ({len(points)})")
        shape.points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return shape


def rest_points(shape: Shape) -> list[float]:
    """A shape's flat REST ``points``: x0, y0, x1, y1... (mask: its RLE; skeleton: empty)."""
    if shape.type == "mask":
        return [float(v) for v in shape.rle]
    if shape.type == "skeleton":
        return []
    return [float(v) for v in np.asarray(shape.points, dtype=np.float64).ravel()]


def shape_to_rest(
    shape: Shape, frame: int, label_ids: Mapping[str, int], attribute_ids: Mapping[tuple[str, str], int]
) -> dict[str, Any]:
    """A :class:`Shape` as a REST ``LabeledShapeRequest`` dict (label and attribute ids resolved).

    ``label_ids`` maps top-level label names, and ``"skeleton/point"`` names of skeleton
    sublabels, to CVAT label ids; ``attribute_ids`` maps (label name, attribute name) to the
    spec id (attributes the project does not define are dropped).
    """
    if shape.label not in label_ids:
        raise CvatFormatError(f"label {shape.label!r} is not in the CVAT project; known: {sorted(label_ids)}")
    points = rest_points(shape)
    out: dict[str, Any] = {
        "type": SHAPE_TO_REST[shape.type],
        "frame": frame,
        "label_id": label_ids[shape.label],
        "points": points,
        "occluded": shape.occluded,
        "outside": shape.outside,
        "z_order": shape.z_order,
        "source": shape.source,
        "group": shape.group,
        "attributes": [
            {"spec_id": attribute_ids[(shape.label, name)], "value": value}
            for name, value in shape.attributes.items()
            if (shape.label, name) in attribute_ids
        ],
    }
    if shape.type == "skeleton":
        prefix = f"{shape.label}/"
        sub_ids = {k[len(prefix) :]: v for k, v in label_ids.items() if k.startswith(prefix)}
        out["elements"] = [shape_to_rest(e, frame, sub_ids, attribute_ids) for e in shape.elements]
    return out
