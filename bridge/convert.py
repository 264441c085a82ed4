"""Function answers (CVAT's detector format) -> shapes for CVAT's REST API, as CVAT's own lambda
manager would store them.

A detector answers a list of ``{label, type, points | mask | elements, confidence, attributes}``
(``docs/nuclio.md``). CVAT's REST API wants ``LabeledShapeRequest`` objects instead:

- ``label`` (a name) -> ``label_id`` of the project's label of that name; unknown labels are left
  out and reported (CVAT drops them too);
- ``mask``: the detector's flat box bitmap + ``xtl, ytl, xbr, ybr`` -> CVAT's run-length encoding
  (:func:`quadratseg.geometry.mask_to_cvat_rle`, equal to ``cvat_sdk.masks.encode_mask``), or with
  ``conv_mask_to_poly`` the answer's ``points`` as a ``polygon`` (as CVAT does: only when the answer
  carries points);
- ``skeleton``: each element's label (a sublabel name) -> that sublabel's id, ``outside`` kept;
- attributes by name -> ``spec_id``; a ``number`` attribute is kept only when its value is an
  integer string, as CVAT requires;
- coordinates divided by the scale the frame was sent at (:func:`bridge.functions.encode_frame`),
  so shapes land on the frame's own pixels; every shape ``source: "auto"``.

Examples:
    >>> labels = project_labels([{"id": 3, "name": "Porites", "type": "any", "attributes": []}])
    >>> shapes, unknown = to_cvat_shapes(
    ...     [{"label": "Porites", "type": "polygon", "points": [0, 0, 4, 0, 4, 4]},
    ...      {"label": "Nope", "type": "polygon", "points": [0, 0, 1, 1, 2, 0]}], labels, frame=5)
    >>> shapes[0]["label_id"], shapes[0]["frame"], shapes[0]["source"], unknown
    (3, 5, 'auto', {'Nope'})
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quadratseg.formats.cvat_labels import LabelSpec, label_from_raw


def project_labels(raw_labels: list[dict[str, Any]]) -> dict[str, LabelSpec]:
    """{name: :class:`quadratseg.formats.cvat_labels.LabelSpec`} (ids of labels, sublabels and
    attributes included) of the labels CVAT lists (``GET /api/labels?project_id=``)."""
    return {
        raw["name"]: label_from_raw(raw, "CVAT project labels")
        for raw in raw_labels
        if not raw.get("has_parent")
    }


def _attributes(answer: dict[str, Any], label: LabelSpec) -> list[dict[str, Any]]:
    out = []
    for item in answer.get("attributes") or []:
        spec = label.attribute(str(item.get("name")))
        value = str(item.get("value", ""))
        if spec is None or spec.id is None or (spec.input_type == "number" and not value.isnumeric()):
            continue
        out.append({"spec_id": spec.id, "value": value})
    return out


def mask_to_rle(flat_mask: list[float], scale: float = 1.0) -> list[float]:
    """A detector mask (flat 0/1 bitmap of its box, then ``xtl, ytl, xbr, ybr`` inclusive) in a frame
    sent at ``scale`` -> CVAT's RLE ``points`` in frame pixels (the project's one encoder,
    :func:`quadratseg.geometry.mask_to_cvat_rle`)."""
    import cv2

    from quadratseg.geometry import mask_to_cvat_rle

    xtl, ytl, xbr, ybr = (int(v) for v in flat_mask[-4:])
    width, height = xbr - xtl + 1, ybr - ytl + 1
    bitmap = np.asarray(flat_mask[:-4], dtype=np.uint8)
    if bitmap.size != width * height:
        raise ValueError(f"mask of {bitmap.size} values for a {width} x {height} box")
    bitmap = bitmap.reshape(height, width)
    if scale != 1.0:  # back to frame pixels: the box's corners scale, the bitmap follows (nearest)
        x0, y0 = int(np.floor(xtl / scale)), int(np.floor(ytl / scale))
        x1, y1 = int(np.ceil((xbr + 1) / scale)), int(np.ceil((ybr + 1) / scale))
        bitmap = cv2.resize(bitmap, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        xtl, ytl = x0, y0
    box = bitmap.astype(bool)
    if not box.any():
        raise ValueError("empty mask")
    encoded = mask_to_cvat_rle(box, (0, 0, box.shape[1], box.shape[0]))
    return [*encoded[:-4], encoded[-4] + xtl, encoded[-3] + ytl, encoded[-2] + xtl, encoded[-1] + ytl]


def _scaled(points: list[float], scale: float) -> list[float]:
    return [round(float(v) / scale, 2) for v in points]


def to_cvat_shapes(
    answers: list[dict[str, Any]],
    labels: dict[str, LabelSpec],
    frame: int,
    scale: float = 1.0,
    conv_mask_to_poly: bool = False,
) -> tuple[list[dict[str, Any]], set[str]]:
    """(LabeledShapeRequest dicts, unknown label names) of one frame's answer (module docstring)."""
    if not isinstance(answers, list):
        raise ValueError(f"a detector answers a list of shapes, got {type(answers).__name__}")
    shapes, unknown = [], set()
    for answer in answers:
        if not isinstance(answer, dict) or "label" not in answer or "type" not in answer:
            raise ValueError(f"a shape needs 'label' and 'type', got {str(answer)[:200]}")
        label = labels.get(answer["label"])
        if label is None:
            unknown.add(answer["label"])
            continue
        kind = answer["type"]
        shape: dict[str, Any] = {
            "type": kind,
            "frame": frame,
            "label_id": label.id,
            "source": "auto",
            "occluded": False,
            "z_order": 0,
            "group": 0,
            "attributes": _attributes(answer, label),
            "points": [],
        }
        if kind == "mask":
            if conv_mask_to_poly and answer.get("points"):
                shape["type"], shape["points"] = "polygon", _scaled(answer["points"], scale)
            else:
                shape["points"] = mask_to_rle(answer["mask"], scale)
        elif kind == "skeleton":
            elements = []
            for element in answer.get("elements") or []:
                sub = label.sublabel(str(element.get("label")))
                if sub is None or sub.id is None:
                    unknown.add(f"{answer['label']}/{element.get('label')}")
                    continue
                elements.append(
                    {
                        "type": element.get("type", "points"),
                        "frame": frame,
                        "label_id": sub.id,
                        "source": "auto",
                        "occluded": False,
                        "outside": bool(element.get("outside", False)),
                        "points": _scaled(element.get("points") or [0, 0], scale),
                        "attributes": _attributes(element, sub),
                    }
                )
            shape["elements"] = elements
        else:
            shape["points"] = _scaled(answer.get("points") or [], scale)
        shapes.append(shape)
    return shapes, unknown
