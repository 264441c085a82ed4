"""The two tasks of the module: ``gridcorners`` (4 quadrat corners) and ``gridpose`` (117 intersections).

Everything that differs between them is here: FiftyOne field, template, flip index, matching
threshold, CVAT label, default experiment file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import (
    CORNER_FLIP_INDEX,
    CORNER_MAX_COST,
    GRID_MAX_COST,
    corner_template_xy,
    grid_flip_index,
    grid_template_xy,
)
from quadratseg.labelsets import CORNER_LABEL, GRID_LABEL, corner_labels, grid_labels

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class PoseTask:
    """A keypoint task: its data, template, matching threshold and CVAT label."""

    name: str
    field: str
    label: str
    n_points: int
    flip_index: tuple[int, ...]
    max_cost: float
    function_name: str
    box_margin: float  # box = points' extent grown by this share of its size (corners need context)

    def template(self) -> np.ndarray:
        """Normalized template (K, 2)."""
        return corner_template_xy() if self.name == "gridcorners" else grid_template_xy()

    def cvat_labels(self):
        """The CVAT skeleton label of the task."""
        return corner_labels() if self.name == "gridcorners" else grid_labels()

    @property
    def config(self) -> Path:
        """The task's experiment YAML."""
        return CONFIG_DIR / f"{self.name}.yaml"


TASKS = {
    "gridcorners": PoseTask(
        "gridcorners",
        "gt_corners",
        CORNER_LABEL,
        4,
        tuple(CORNER_FLIP_INDEX),
        CORNER_MAX_COST,
        "pth-yolo-gridcorners",
        0.08,
    ),
    "gridpose": PoseTask(
        "gridpose",
        "gt_grid",
        GRID_LABEL,
        117,
        tuple(grid_flip_index()),
        GRID_MAX_COST,
        "pth-yolo-gridpose",
        0.04,
    ),
}


def get_task(name: str) -> PoseTask:
    """The task called ``name`` (gridcorners or gridpose)."""
    if name not in TASKS:
        raise QuadratsegError(
            f"unknown task {name!r}; choose gridcorners (4 corners) or gridpose (117 points)"
        )
    return TASKS[name]
