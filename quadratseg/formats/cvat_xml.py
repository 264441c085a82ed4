"""Read and write "CVAT for images 1.1" XML (task and project exports).

Shapes keep CVAT's own vocabulary: ``box``, ``polygon``, ``polyline``, ``points``, ``mask`` and
``skeleton`` (whose ``elements`` are ``points`` shapes with ``outside``/``occluded`` flags).
Coordinates are pixels in the image frame. Masks are stored as CVAT's REST ``points``
(runs inside the box, then the inclusive box ``left, top, right, bottom``), see
:func:`quadratseg.geometry.cvat_rle_to_mask`.

Examples:
    >>> doc = read_cvat_xml("annotations.xml")  # doctest: +SKIP
    >>> [s.label for s in doc.images[0].shapes]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from quadratseg.errors import CvatFormatError
from quadratseg.formats.cvat_labels import AttributeSpec, LabelSpec

SHAPE_TAGS = ("box", "polygon", "polyline", "points", "mask", "skeleton")


@dataclass
class Shape:
    """One annotation; ``points`` (N, 2) px for polygon/polyline/points, (2, 2) xyxy for box.

    For ``mask``, ``rle`` holds CVAT's REST mask points; for ``skeleton``, ``elements`` holds the
    point shapes (each with one point, ``outside`` when the point is not visible).
    """

    type: str
    label: str
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    occluded: bool = False
    outside: bool = False
    z_order: int = 0
    source: str = "manual"
    attributes: dict[str, str] = field(default_factory=dict)
    elements: list[Shape] = field(default_factory=list)
    rle: list[int] = field(default_factory=list)
    group: int = 0


@dataclass
class ImageAnnotations:
    """An ``<image>`` entry: file name, size (width, height), shapes, tags, and task/subset."""

    id: int
    name: str
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    subset: str = ""
    task_id: int | None = None


@dataclass
class TaskInfo:
    """A task as listed in the ``<meta>`` of a project export (or the one task of a task export)."""

    id: int
    name: str
    subset: str = ""
    size: int = 0


@dataclass
class CvatDocument:
    """A whole XML file: labels, tasks, images; ``project_name`` is empty for a task export."""

    labels: list[LabelSpec] = field(default_factory=list)
    images: list[ImageAnnotations] = field(default_factory=list)
    tasks: list[TaskInfo] = field(default_factory=list)
    project_name: str = ""
    project_id: int | None = None

    def label(self, name: str) -> LabelSpec | None:
        """Top-level label called ``name``, or None."""
        return next((lab for lab in self.labels if lab.name == name), None)


# ----------------------------------------------------------------------------- reading


def _parse_points(text: str, where: str) -> np.ndarray:
    text = (text or "").strip()
    if not text:
        return np.zeros((0, 2))
    try:
        pts = [tuple(float(v) for v in pair.split(",")) for pair in text.split(";")]
        arr = np.asarray(pts, dtype=np.float64)
    except ValueError as exc:
        raise CvatFormatError(f"{where}: cannot read points {text[:60]!r} ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise CvatFormatError(f"{where}: points must be 'x,y;x,y;...', got {text[:60]!r}")
    return arr


def _flag(elem: ET.Element, name: str) -> bool:
    return elem.get(name, "0").strip().lower() in {"1", "true"}


def _attributes(elem: ET.Element) -> dict[str, str]:
    return {a.get("name", ""): (a.text or "") for a in elem.findall("attribute")}


def _label_from_xml(elem: ET.Element) -> tuple[LabelSpec, str]:
    attributes = []
    for a in elem.findall("attributes/attribute"):
        values_text = a.findtext("values") or ""
        # CVAT writes one value per line; older files (and datumaro's) separate them by spaces.
        values = values_text.split("\n") if "\n" in values_text else values_text.split()
        values = [v for v in values if v]
        attributes.append(
            AttributeSpec(
                name=a.findtext("name") or "",
                input_type=a.findtext("input_type") or "text",
                mutable=(a.findtext("mutable") or "False").strip().lower() == "true",
                values=values,
                default_value=a.findtext("default_value") or "",
            )
        )
    label = LabelSpec(
        name=elem.findtext("name") or "",
        type=elem.findtext("type") or "any",
        color=elem.findtext("color") or "",
        attributes=attributes,
        svg=elem.findtext("svg") or "",
    )
    return label, elem.findtext("parent") or ""


def _labels_from_meta(labels_elem: ET.Element | None) -> list[LabelSpec]:
    if labels_elem is None:
        return []
    top: list[LabelSpec] = []
    children: list[tuple[LabelSpec, str]] = []
    for elem in labels_elem.findall("label"):
        label, parent = _label_from_xml(elem)
        (children.append((label, parent)) if parent else top.append(label))
    by_name = {lab.name: lab for lab in top}
    for child, parent in children:
        if parent not in by_name:
            raise CvatFormatError(f"label {child.name!r} names a parent {parent!r} that is not a label")
        by_name[parent].sublabels.append(child)
    return top


def _shape_from_xml(elem: ET.Element, where: str) -> Shape:
    tag = elem.tag
    label = elem.get("label", "")
    common = {
        "label": label,
        "occluded": _flag(elem, "occluded"),
        "outside": _flag(elem, "outside"),
        "z_order": int(float(elem.get("z_order", "0") or 0)),
        "source": elem.get("source", "manual"),
        "attributes": _attributes(elem),
        "group": int(elem.get("group_id", "0") or 0),
    }
    where = f"{where}, <{tag} label={label!r}>"
    if tag == "box":
        try:
            xyxy = [float(elem.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr")]
        except ValueError:
            raise CvatFormatError(f"{where}: a box needs numeric xtl, ytl, xbr, ybr") from None
        return Shape("box", points=np.asarray(xyxy).reshape(2, 2), **common)
    if tag in ("polygon", "polyline", "points"):
        return Shape(tag, points=_parse_points(elem.get("points", ""), where), **common)
    if tag == "mask":
        try:
            runs = [int(v) for v in (elem.get("rle") or "").replace(" ", "").split(",") if v]
            left, top = int(elem.get("left", "")), int(elem.get("top", ""))
            width, height = int(elem.get("width", "")), int(elem.get("height", ""))
        except ValueError:
            raise CvatFormatError(f"{where}: a mask needs integer rle, left, top, width, height") from None
        return Shape("mask", rle=[*runs, left, top, left + width - 1, top + height - 1], **common)
    if tag == "skeleton":
        elements = [_shape_from_xml(p, where) for p in elem.findall("points")]
        return Shape("skeleton", elements=elements, **common)
    raise CvatFormatError(f"{where}: unsupported shape <{tag}>")


def read_cvat_xml(path: str | Path) -> CvatDocument:
    """Read a "CVAT for images 1.1" XML file (task or project export).

    Raises:
        CvatFormatError: the file is missing, not XML, a video (track) export, or has
            malformed shapes; the message names the file and the image.
    """
    path = Path(path)
    if not path.is_file():
        raise CvatFormatError(f"{path} does not exist; pass the annotations.xml of a CVAT export")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise CvatFormatError(f"{path} is not valid XML ({exc})") from None
    if root.tag != "annotations":
        raise CvatFormatError(f"{path}: the root element is <{root.tag}>, expected <annotations>")
    version = (root.findtext("version") or "").strip()
    if version and version != "1.1":
        raise CvatFormatError(f"{path}: CVAT XML version {version!r}; this reader knows version 1.1")
    if root.find("track") is not None:
        raise CvatFormatError(
            f"{path} is a 'CVAT for video' export (it has <track> elements); export the task as "
            "'CVAT for images 1.1' instead"
        )
    doc = CvatDocument()
    meta = root.find("meta")
    if meta is not None:
        project = meta.find("project")
        owner = project
        for tag in ("task", "job"):
            if owner is None:
                owner = meta.find(tag)
        if owner is not None:
            doc.labels = _labels_from_meta(owner.find("labels"))
        if project is not None:
            doc.project_name = project.findtext("name") or ""
            pid = project.findtext("id")
            doc.project_id = int(pid) if pid and pid.strip().isdigit() else None
            task_elems = project.findall("tasks/task")
        else:
            # a job export has <meta><job> (id, size, subset; no task id or name): the job
            # stands for the task, named job_<id>
            task_elems = [t for t in [meta.find("task"), meta.find("job")] if t is not None][:1]
        for t in task_elems:
            tid = (t.findtext("id") or "").strip()
            size = (t.findtext("size") or "").strip()
            name = t.findtext("name") or ""
            doc.tasks.append(
                TaskInfo(
                    id=int(tid) if tid.isdigit() else 0,
                    name=name if name or t.tag != "job" else f"job_{tid}",
                    subset=t.findtext("subset") or "",
                    size=int(size) if size.isdigit() else 0,
                )
            )
    for elem in root.findall("image"):
        where = f"{path.name}, image {elem.get('name', '?')!r}"
        try:
            image = ImageAnnotations(
                id=int(elem.get("id", "")),
                name=elem.get("name", ""),
                width=int(elem.get("width", "")),
                height=int(elem.get("height", "")),
                subset=elem.get("subset", ""),
                task_id=int(elem.get("task_id")) if elem.get("task_id") else None,
            )
        except ValueError:
            raise CvatFormatError(f"{where}: <image> needs integer id, width and height") from None
        for child in elem:
            if child.tag == "tag":
                image.tags.append(child.get("label", ""))
            elif child.tag in SHAPE_TAGS:
                image.shapes.append(_shape_from_xml(child, where))
        doc.images.append(image)
    if len(doc.tasks) == 1 and not doc.project_name:
        for image in doc.images:
            image.task_id = image.task_id if image.task_id is not None else doc.tasks[0].id
            image.subset = image.subset or doc.tasks[0].subset
    return doc


# ----------------------------------------------------------------------------- writing


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _points_text(points: np.ndarray) -> str:
    return ";".join(f"{_fmt(x)},{_fmt(y)}" for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2))


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    elem = ET.SubElement(parent, tag)
    if text is not None:
        elem.text = text
    return elem


def _labels_to_xml(parent: ET.Element, labels: list[LabelSpec]) -> None:
    labels_elem = _sub(parent, "labels")

    def add(label: LabelSpec, parent_name: str = "") -> None:
        elem = _sub(labels_elem, "label")
        _sub(elem, "name", label.name)
        if label.color:
            _sub(elem, "color", label.color)
        _sub(elem, "type", label.type)
        attrs = _sub(elem, "attributes")
        for a in label.attributes:
            ae = _sub(attrs, "attribute")
            _sub(ae, "name", a.name)
            _sub(ae, "mutable", str(a.mutable))
            _sub(ae, "input_type", a.input_type)
            _sub(ae, "default_value", a.default_value)
            _sub(ae, "values", "\n".join(a.values))
        if label.type == "skeleton":
            _sub(elem, "svg", label.svg)
        if parent_name:
            _sub(elem, "parent", parent_name)
        for sub in label.sublabels:
            add(sub, label.name)

    for label in labels:
        add(label)


def _shape_to_xml(parent: ET.Element, shape: Shape, in_skeleton: bool = False) -> None:
    attrs: dict[str, str] = {
        "label": shape.label,
        "source": shape.source,
        "occluded": str(int(shape.occluded)),
    }
    if in_skeleton:
        attrs["outside"] = str(int(shape.outside))
    if shape.type == "box":
        (x1, y1), (x2, y2) = np.asarray(shape.points).reshape(2, 2)
        attrs.update(xtl=_fmt(x1), ytl=_fmt(y1), xbr=_fmt(x2), ybr=_fmt(y2))
    elif shape.type in ("polygon", "polyline", "points"):
        attrs["points"] = _points_text(shape.points)
    elif shape.type == "mask":
        *runs, left, top, right, bottom = shape.rle
        attrs.update(
            rle=", ".join(str(r) for r in runs),
            left=str(left),
            top=str(top),
            width=str(right - left + 1),
            height=str(bottom - top + 1),
        )
    elif shape.type != "skeleton":
        raise CvatFormatError(f"cannot write a shape of type {shape.type!r}; types: {SHAPE_TAGS}")
    if not in_skeleton:
        attrs["z_order"] = str(shape.z_order)
        if shape.group:
            attrs["group_id"] = str(shape.group)
    elem = ET.SubElement(parent, shape.type, attrs)
    for element in shape.elements:
        _shape_to_xml(elem, element, in_skeleton=True)
    for name, value in shape.attributes.items():
        _sub(elem, "attribute", value).set("name", name)


def cvat_document_to_xml(doc: CvatDocument) -> ET.ElementTree:
    """Build the XML tree of a document (project export when ``project_name`` is set)."""
    root = ET.Element("annotations")
    _sub(root, "version", "1.1")
    meta = _sub(root, "meta")
    now = datetime.now(UTC).isoformat()
    is_project = bool(doc.project_name)
    if is_project:
        owner = _sub(meta, "project")
        _sub(owner, "id", str(doc.project_id or 1))
        _sub(owner, "name", doc.project_name)
        _sub(owner, "created", now)
        _sub(owner, "updated", now)
        _labels_to_xml(owner, doc.labels)
        tasks_elem = _sub(owner, "tasks")
        for task in doc.tasks:
            te = _sub(tasks_elem, "task")
            _sub(te, "id", str(task.id))
            _sub(te, "name", task.name)
            _sub(te, "size", str(task.size))
            _sub(te, "mode", "annotation")
            _sub(te, "overlap", "0")
            _sub(te, "subset", task.subset)
    else:
        owner = _sub(meta, "task")
        task = doc.tasks[0] if doc.tasks else TaskInfo(1, "task", "", len(doc.images))
        _sub(owner, "id", str(task.id))
        _sub(owner, "name", task.name)
        _sub(owner, "size", str(task.size or len(doc.images)))
        _sub(owner, "mode", "annotation")
        _sub(owner, "overlap", "0")
        _sub(owner, "subset", task.subset)
        _labels_to_xml(owner, doc.labels)
    _sub(meta, "dumped", now)
    for image in doc.images:
        attrs = {"id": str(image.id), "name": image.name}
        if is_project:
            attrs.update(subset=image.subset, task_id=str(image.task_id if image.task_id is not None else ""))
        attrs.update(width=str(image.width), height=str(image.height))
        ie = ET.SubElement(root, "image", attrs)
        for tag in image.tags:
            ET.SubElement(ie, "tag", {"label": tag, "source": "manual"})
        for shape in image.shapes:
            _shape_to_xml(ie, shape)
    tree = ET.ElementTree(root)
    ET.indent(tree, space="  ")
    return tree


def write_cvat_xml(doc: CvatDocument, path: str | Path) -> Path:
    """Write ``doc`` as "CVAT for images 1.1" XML, atomically (no half-written file on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = cvat_document_to_xml(doc)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            tree.write(fh, encoding="utf-8", xml_declaration=True)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
