"""CVAT label specifications: the "Raw" label JSON of a CVAT project, and the objects behind it.

The same :class:`LabelSpec` serves the XML ``<labels>`` block, the REST ``labels`` payload and a
Nuclio ``function.yaml`` spec. Skeleton labels carry their point ``sublabels`` and an ``svg``.

Examples:
    >>> labels = labels_from_raw_config([{"name": "coral", "type": "polygon", "attributes": []}])
    >>> labels[0].type
    'polygon'
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quadratseg.errors import CvatFormatError

LABEL_TYPES = ("any", "bbox", "cuboid", "ellipse", "mask", "polygon", "polyline", "points", "skeleton", "tag")
INPUT_TYPES = ("select", "radio", "checkbox", "number", "text")


@dataclass
class AttributeSpec:
    """A label attribute; for ``number`` the values are ``[min, max, step]`` as strings."""

    name: str
    input_type: str = "text"
    mutable: bool = False
    values: list[str] = field(default_factory=list)
    default_value: str = ""
    # the server's database id (REST answers only): the ``spec_id`` of an annotation's attribute value
    id: int | None = field(default=None, compare=False)


@dataclass
class LabelSpec:
    """A CVAT label; skeletons have ``sublabels`` (type ``points``) and an ``svg`` drawing."""

    name: str
    type: str = "any"
    color: str = ""
    attributes: list[AttributeSpec] = field(default_factory=list)
    sublabels: list[LabelSpec] = field(default_factory=list)
    svg: str = ""
    # the server's database id (REST answers only); skeleton drawings may name sublabels by it
    id: int | None = field(default=None, compare=False)

    def attribute(self, name: str) -> AttributeSpec | None:
        """The attribute called ``name``, or None."""
        return next((a for a in self.attributes if a.name == name), None)

    def sublabel(self, name: str) -> LabelSpec | None:
        """The sublabel (skeleton point) called ``name``, or None."""
        return next((s for s in self.sublabels if s.name == name), None)


def _attribute_from_raw(raw: dict[str, Any], where: str) -> AttributeSpec:
    if "name" not in raw:
        raise CvatFormatError(f"{where}: an attribute has no 'name'")
    input_type = raw.get("input_type", "text")
    if input_type not in INPUT_TYPES:
        raise CvatFormatError(
            f"{where}: attribute {raw['name']!r} has input_type {input_type!r}; expected one of {INPUT_TYPES}"
        )
    return AttributeSpec(
        name=str(raw["name"]),
        input_type=input_type,
        mutable=bool(raw.get("mutable", False)),
        values=[str(v) for v in raw.get("values", [])],
        default_value=str(raw.get("default_value", "")),
        id=int(raw["id"]) if isinstance(raw.get("id"), int) else None,
    )


def label_from_raw(raw: dict[str, Any], where: str = "label config") -> LabelSpec:
    """Parse one label dict of CVAT's Raw label JSON (or REST ``labels`` entry)."""
    if not isinstance(raw, dict) or "name" not in raw:
        raise CvatFormatError(f"{where}: every label must be an object with a 'name', got {raw!r:.80}")
    name = str(raw["name"])
    label_type = raw.get("type", "any") or "any"
    if label_type == "rectangle":
        label_type = "bbox"
    if label_type not in LABEL_TYPES:
        raise CvatFormatError(
            f"{where}: label {name!r} has type {label_type!r}; expected one of {LABEL_TYPES}"
        )
    sublabels = [label_from_raw(s, f"{where} > {name}") for s in raw.get("sublabels", []) or []]
    if label_type == "skeleton" and not sublabels:
        raise CvatFormatError(f"{where}: skeleton label {name!r} has no sublabels (its points)")
    return LabelSpec(
        name=name,
        type=label_type,
        color=str(raw.get("color", "") or ""),
        attributes=[_attribute_from_raw(a, f"{where} > {name}") for a in raw.get("attributes", []) or []],
        sublabels=sublabels,
        svg=str(raw.get("svg", "") or ""),
        id=int(raw["id"]) if isinstance(raw.get("id"), int) else None,
    )


def labels_from_raw_config(raw: list[dict[str, Any]] | str | Path) -> list[LabelSpec]:
    """Parse CVAT's Raw label configuration (a JSON list, its text, or a JSON file path)."""
    where = "label config"
    if isinstance(raw, Path) or (isinstance(raw, str) and not raw.lstrip().startswith("[")):
        where = str(raw)
        try:
            raw = json.loads(Path(raw).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CvatFormatError(f"cannot read the CVAT label config {where}: {exc}") from exc
    elif isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CvatFormatError(f"the CVAT label config is not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise CvatFormatError(f"{where}: a CVAT label config is a JSON list of labels")
    labels = [label_from_raw(item, where) for item in raw]
    names = [label.name for label in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CvatFormatError(f"{where}: label name(s) used twice: {', '.join(duplicates)}")
    return labels


def label_to_raw(label: LabelSpec) -> dict[str, Any]:
    """One label as CVAT's Raw JSON dict (sublabels and svg only for skeletons)."""
    raw: dict[str, Any] = {"name": label.name, "type": label.type}
    if label.color:
        raw["color"] = label.color
    raw["attributes"] = [
        {
            "name": a.name,
            "input_type": a.input_type,
            "mutable": a.mutable,
            "values": list(a.values),
            "default_value": a.default_value,
        }
        for a in label.attributes
    ]
    if label.type == "skeleton":
        raw["sublabels"] = [label_to_raw(s) for s in label.sublabels]
        raw["svg"] = label.svg
    return raw


def labels_to_raw_config(labels: list[LabelSpec]) -> list[dict[str, Any]]:
    """Labels as CVAT's Raw label configuration (JSON-ready list)."""
    return [label_to_raw(label) for label in labels]


def confidence_attribute() -> AttributeSpec:
    """The ``confidence`` number attribute (0..100, step 1) every CRIOBE label carries."""
    return AttributeSpec("confidence", "number", True, ["0", "100", "1"], "100")


def skeleton_label(name: str, point_names: list[str], color: str = "", svg: str = "") -> LabelSpec:
    """A skeleton label whose sublabels are the named points (template order)."""
    return LabelSpec(
        name=name,
        type="skeleton",
        color=color,
        attributes=[confidence_attribute()],
        sublabels=[LabelSpec(name=p, type="points") for p in point_names],
        svg=svg,
    )


SVG_TAG = re.compile(r"<(line|circle)\b([^>]*)>")
SVG_ATTR = re.compile(r'([\w-]+)="([^"]*)"')


def skeleton_edges(spec: LabelSpec) -> list[tuple[int, int]]:
    """The edges of a CVAT skeleton label as pairs of 0-based sublabel indices, from its svg drawing.

    CVAT draws a skeleton as ``<circle data-node-id=..>`` nodes and ``<line data-node-from=..
    data-node-to=..>`` edges (escaped or not). A node names its sublabel by ``data-label-name``
    (exports, backups, label configs) or by ``data-label-id``, the sublabel's database id (what the
    server's REST API answers); a node with neither is the sublabel at its position (node ids count
    from 1 in sublabel order). Edges naming an unknown node are left out.

    Examples:
        >>> spec = LabelSpec("s", "skeleton", sublabels=[LabelSpec("a", id=7), LabelSpec("b", id=5)])
        >>> spec.svg = '<line data-node-from="1" data-node-to="2"></line>' + "".join(
        ...     f'<circle data-node-id="{n}" data-label-id="{i}"></circle>' for n, i in ((1, 5), (2, 7)))
        >>> skeleton_edges(spec)  # node 1 is sublabel id 5, the second sublabel
        [(1, 0)]
    """
    names = [s.name for s in spec.sublabels]
    index = {name: i for i, name in enumerate(names)}
    by_id = {str(s.id): i for i, s in enumerate(spec.sublabels) if s.id is not None}
    nodes: dict[str, int | None] = {}
    lines = []
    for tag, attributes in SVG_TAG.findall(html.unescape(spec.svg or "")):
        attrs = dict(SVG_ATTR.findall(attributes))
        if tag == "line" and attrs.get("data-type", "edge") == "edge":
            lines.append((attrs.get("data-node-from", ""), attrs.get("data-node-to", "")))
        elif tag == "circle" and attrs.get("data-node-id", "").isdigit():
            node, name, label_id = (
                attrs["data-node-id"],
                attrs.get("data-label-name"),
                attrs.get("data-label-id"),
            )
            if name is not None:
                nodes[node] = index.get(name)
            elif label_id is not None and by_id:
                nodes[node] = by_id.get(label_id)
            else:
                nodes[node] = int(node) - 1

    def node_index(node: str) -> int | None:
        i = nodes[node] if node in nodes else (int(node) - 1 if node.isdigit() else None)
        return i if i is not None and 0 <= i < len(names) else None

    edges = [(node_index(a), node_index(b)) for a, b in lines]
    return [(a, b) for a, b in edges if a is not None and b is not None and a != b]


def skeleton_svg(
    template_xy: list[list[float]] | tuple, names: list[str], edges: list[tuple[int, int]] = ()
) -> str:
    """CVAT's skeleton drawing: a circle per point (template in 0..1, drawn on CVAT's 100-unit canvas)
    and a line per edge (pairs of 0-based indices), with the data attributes CVAT reads."""
    pts = [(10 + 80 * float(x), 10 + 80 * float(y)) for x, y in template_xy]
    parts = [
        f'<line x1="{pts[a][0]:.3f}" y1="{pts[a][1]:.3f}" x2="{pts[b][0]:.3f}" y2="{pts[b][1]:.3f}" '
        f'stroke="black" data-type="edge" data-node-from="{a + 1}" stroke-width="0.5" '
        f'data-node-to="{b + 1}"></line>'
        for a, b in edges
    ]
    parts += [
        f'<circle r="0.75" stroke="black" fill="#b3b3b3" cx="{x:.3f}" cy="{y:.3f}" stroke-width="0.1" '
        f'data-type="element node" data-element-id="{i + 1}" data-node-id="{i + 1}" '
        f'data-label-name="{name}"></circle>'
        for i, ((x, y), name) in enumerate(zip(pts, names, strict=True))
    ]
    return "".join(parts)


def mask_labels_spec(class_names: list[str]) -> list[dict[str, Any]]:
    """A segmentation function's label spec: one ``mask`` label per class with the confidence attribute."""
    return [
        {"id": i, **label_to_raw(LabelSpec(name=name, type="mask", attributes=[confidence_attribute()]))}
        for i, name in enumerate(class_names)
    ]
