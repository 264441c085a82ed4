"""CLI: the Raw label configuration of a CVAT project, to paste into CVAT when creating the project.

    python -m data_engineering.label_config corners > corners.json
    python -m data_engineering.label_config segmentation --level main_family
    python -m data_engineering.label_config segmentation --lineage   # colonies tracked across surveys

CVAT: Projects > + > Create a new project > Constructor > Raw, paste, Done. The label sets are the
core's (:mod:`quadratseg.labelsets`), equal to CRIOBE's own configurations.
"""

from __future__ import annotations

import json

from quadratseg.errors import QuadratsegError

PROJECTS = ("corners", "grid", "segmentation")


def label_config(project: str, level: str = "finegrained", lineage: bool = False) -> str:
    """Print the Raw label configuration (JSON) of one of the three CVAT projects.

    Args:
        project: corners (skeleton quadrat_corner, 4 points), grid (skeleton grid, 117 points) or
            segmentation (one polygon label per class, with the confidence attribute).
        level: taxonomy level of the segmentation classes (finegrained, extended, main_family, agnostic).
        lineage: give the segmentation labels the ``lineage`` text attribute (a colony's lineage id
            across surveys, which annotators can correct and the next pull brings back).

    Returns:
        The JSON list CVAT's Raw tab takes.
    """
    from quadratseg.formats.cvat_labels import labels_to_raw_config
    from quadratseg.labelsets import coral_labels, corner_labels, grid_labels

    builders = {
        "corners": corner_labels,
        "grid": grid_labels,
        "segmentation": lambda: coral_labels(level=level, lineage=lineage),
    }
    if project not in builders:
        raise QuadratsegError(f"unknown project {project!r}: choose one of {', '.join(PROJECTS)}")
    return json.dumps(labels_to_raw_config(builders[project]()), indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(label_config, name="data_engineering.label_config")
