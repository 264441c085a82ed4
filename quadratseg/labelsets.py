"""The label sets of the three CVAT projects, built from the core templates and taxonomy.

These equal CRIOBE's raw label configurations (corner skeleton ``quadrat_corner`` with points
"1".."4", grid skeleton ``grid`` with points "1".."117", 16 genus polygons with a
``confidence`` number attribute); a conformance test compares them with the real files.

Colony labels can also carry the ``lineage`` text attribute (:func:`lineage_attribute`): the id
of the colony's lineage across surveys, which annotators read and correct in CVAT and which a
pull brings back into FiftyOne (the polyline attribute of the same name).
"""

from __future__ import annotations

from quadratseg.formats.cvat_labels import (
    AttributeSpec,
    LabelSpec,
    confidence_attribute,
    skeleton_label,
    skeleton_svg,
)
from quadratseg.keypoints import (
    GRID_COLS,
    GRID_ROWS,
    N_CORNERS,
    N_GRID,
    corner_template_xy,
    grid_neighbour_pairs,
    grid_template_xy,
)
from quadratseg.taxonomy import Taxonomy, load_taxonomy

CORNER_LABEL = "quadrat_corner"
GRID_LABEL = "grid"
LINEAGE_ATTRIBUTE = "lineage"


def lineage_attribute() -> AttributeSpec:
    """The ``lineage`` text attribute of a colony label: the colony's lineage id across surveys.

    A text attribute as CVAT stores one (``values`` holds the default, here empty), so an
    annotator can type a corrected id; per shape, not per track frame (``mutable`` false).
    """
    return AttributeSpec(LINEAGE_ATTRIBUTE, "text", False, [""], "")


def corner_labels() -> list[LabelSpec]:
    """The corner project's labels: one 4-point skeleton, points TL, TR, BR, BL named "1".."4"."""
    names = [str(i + 1) for i in range(N_CORNERS)]
    edges = [(0, 1), (1, 2), (2, 3), (3, 0)]
    svg = skeleton_svg(corner_template_xy().tolist(), names, edges)
    return [skeleton_label(CORNER_LABEL, names, color="#19fdf3", svg=svg)]


def grid_labels() -> list[LabelSpec]:
    """The grid project's labels: one 117-point skeleton, row-major points "1".."117"."""
    names = [str(i + 1) for i in range(N_GRID)]
    edges = [tuple(map(int, p)) for p in grid_neighbour_pairs(GRID_ROWS, GRID_COLS)]
    svg = skeleton_svg(grid_template_xy().tolist(), names, edges)
    return [skeleton_label(GRID_LABEL, names, color="#7571e6", svg=svg)]


def coral_labels(
    taxonomy: Taxonomy | None = None, level: str = "finegrained", lineage: bool = False
) -> list[LabelSpec]:
    """Polygon labels of a taxonomy level, each with the ``confidence`` attribute, and with
    ``lineage`` (:func:`lineage_attribute`) for projects of colonies tracked across surveys."""
    taxonomy = taxonomy or load_taxonomy()
    extra = [lineage_attribute()] if lineage else []
    return [
        LabelSpec(
            name=name,
            type="polygon",
            color=taxonomy.color(name) if level == "finegrained" else "",
            attributes=[confidence_attribute(), *extra],
        )
        for name in taxonomy.classes(level)
    ]
