"""Push FiftyOne samples back to CVAT as new annotation tasks (predictions, re-mapped taxonomies).

A label field becomes polygons (``Polylines`` as ``polygon`` shapes), masks (``Polylines``
rasterized into CVAT ``mask`` shapes) or skeletons (``Keypoints``, elements in the order of the
project's skeleton). Everything is converted and checked against the project's labels
before the first task is created. A polyline's ``lineage`` (a colony's lineage id across
surveys) goes out as the label's ``lineage`` text attribute; a project whose labels lack it is
refused (CVAT would drop the values), naming the labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import keypoints_to_shapes, polylines_to_shapes
from quadratseg.formats.cvat_labels import label_from_raw
from quadratseg.formats.cvat_xml import Shape
from quadratseg.geometry import mask_to_cvat_rle, polygon_to_mask
from quadratseg.labelsets import LINEAGE_ATTRIBUTE
from quadratseg.settings import Settings

logger = logging.getLogger(__name__)
KINDS = ("polygons", "masks", "skeletons")


def sample_shapes(sample: Any, label_field: str, kind: str, skeleton_specs: dict[str, Any]) -> list[Shape]:
    """CVAT shapes (pixels) of one sample's label field."""
    width, height = sample.metadata.width, sample.metadata.height
    value = sample[label_field]
    if value is None:
        return []
    if kind == "skeletons":
        shapes = []
        for kp in value.keypoints:
            spec = skeleton_specs.get(kp.label)
            if spec is None:
                raise QuadratsegError(
                    f"{sample.filepath}: keypoint label {kp.label!r} is not a skeleton of the CVAT project "
                    f"(skeletons: {sorted(skeleton_specs)})"
                )
            shapes.extend(keypoints_to_shapes(type(value)(keypoints=[kp]), (width, height), spec))
        return shapes
    shapes = polylines_to_shapes(value, (width, height))  # polygons; several-ring colonies as masks
    if kind == "polygons":
        return shapes
    masks = []
    for shape in shapes:
        if shape.type == "mask":
            masks.append(shape)
            continue
        mask = polygon_to_mask(shape.points, (width, height))
        if mask.any():
            masks.append(
                Shape(
                    "mask",
                    shape.label,
                    rle=mask_to_cvat_rle(mask),
                    attributes=shape.attributes,
                    source=shape.source,
                )
            )
    return masks


def check_lineage_defined(shapes_per_image: list[list[Shape]], specs: list[Any], project_name: str) -> None:
    """Refuse shapes whose ``lineage`` attribute the project's label does not define.

    CVAT keeps only the attributes a label declares, so the lineage ids would be lost in silence.

    Raises:
        QuadratsegError: naming the labels without the attribute and how to add it.
    """
    by_name = {spec.name: spec for spec in specs}
    lacking = sorted(
        {
            shape.label
            for shapes in shapes_per_image
            for shape in shapes
            if LINEAGE_ATTRIBUTE in shape.attributes
            and shape.label in by_name
            and by_name[shape.label].attribute(LINEAGE_ATTRIBUTE) is None
        }
    )
    if lacking:
        raise QuadratsegError(
            f"the colonies carry lineage ids but the labels {', '.join(map(repr, lacking))} of CVAT project "
            f"{project_name!r} have no {LINEAGE_ATTRIBUTE!r} attribute, so CVAT would drop them: push to a "
            "project made from `python -m data_engineering.label_config segmentation --lineage`, or add a "
            f"text attribute {LINEAGE_ATTRIBUTE!r} to those labels in CVAT"
        )


def push_samples(
    samples: Any,
    project_name: str,
    label_field: str,
    kind: str,
    subset: str,
    task_name: str,
    settings: Settings,
    images_per_task: int = 100,
) -> list[int]:
    """Create CVAT tasks (``task_name``, ``task_name_2``, ...) holding the samples and their shapes."""
    from quadratseg.cvat_client import connect, create_task_with_annotations, find_project, with_retries

    if kind not in KINDS:
        raise QuadratsegError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if label_field not in samples.get_field_schema():
        raise QuadratsegError(
            f"the dataset has no field {label_field!r}; fields: {sorted(samples.get_field_schema())}"
        )
    samples.compute_metadata()
    items = list(samples)
    if not items:
        raise QuadratsegError("no samples to push (is the view empty?)")
    with connect(settings) as client:
        project = find_project(client, project_name, settings.cvat_retries)
        raw_labels = with_retries(
            lambda: project.get_labels(), "reading project labels", settings.cvat_retries
        )
        specs = [label_from_raw(r.to_dict(), "CVAT project labels") for r in raw_labels]
        skeleton_specs = {s.name: s for s in specs if s.type == "skeleton"}
        converted = [sample_shapes(s, label_field, kind, skeleton_specs) for s in items]
        check_lineage_defined(converted, specs, project_name)
        task_ids = []
        for start in range(0, len(items), images_per_task):
            chunk = items[start : start + images_per_task]
            name = task_name if start == 0 else f"{task_name}_{start // images_per_task + 1}"
            images = []
            for sample in chunk:
                path = Path(sample.filepath)
                if not path.is_file():
                    raise QuadratsegError(f"image {path} of the dataset is missing on disk")
                images.append((path.name, path.read_bytes()))
            task_id = create_task_with_annotations(
                client, project_name, name, subset, images, converted[start : start + len(chunk)], settings
            )
            logger.info("created CVAT task %s (id %d) with %d images", name, task_id, len(chunk))
            task_ids.append(task_id)
    return task_ids


def count_shapes(shapes_per_image: list[list[Shape]]) -> dict[str, int]:
    """Shapes per label (for logs)."""
    labels = [s.label for shapes in shapes_per_image for s in shapes]
    values, counts = np.unique(labels, return_counts=True) if labels else ([], [])
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}
