"""The two tasks of the module: ``gridcorners`` (4 quadrat corners) and ``gridpose`` (117 intersections).

Everything that differs between them is here: FiftyOne field, template, flip index, matching
threshold, CVAT label, default experiment file, and how the model sees the points.

Layouts (how keypoints become YOLO-pose objects):

- ``points`` (default): every keypoint is an object of its own, a small box centred on it with one
  keypoint; the model is a detector of "a corner" or "an intersection", translation-invariant,
  and the template matching puts its detections in order. Measured on the demo's synthetic test
  split (2 CPU cores, 60 epochs from scratch): grid 2.1 px mean error with all 117 points found,
  corners 2.6 px, where one object holding all 117 (or 4) points stayed tens of pixels off (see the
  module README).
- ``instance``: one object per quadrat holding all K keypoints in template order (upstream's
  layout), kept to compare and to use existing models.

``oks_sigma`` is written as ``kpt_oks_sigmas`` in data.yaml: ultralytics' keypoint loss is
``1 - exp(-d^2 / (8 sigma^2 area))`` with ``area`` the object's box area, and without it a
non-COCO shape gets ``sigma = 1 / K``. For a ``points`` box of side ``L`` the loss reaches 63 %
at ``d = 2.8 sigma L``: sigma 0.3 puts that at 0.85 L, so a point anywhere in its box still gets a
gradient while one a few pixels off is still pulled in (0.3 beat 1.0, the default for K = 1,
2.1 px against 2.8 px on the grid). For the ``instance`` layout (the box is the quadrat) sigma
0.05 puts it at 14 % of the quadrat, about two grid spacings; 1 / 117 = 0.0085 saturated the loss
beyond a few pixels, which is why that model found the box but never moved its points.
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
    box_margin: float  # instance layout: box = points' extent grown by this share of its size
    point_box_share: float  # points layout: box side as a share of the quadrat side
    refine_radius_share: float  # sub-pixel search radius as a share of the point spacing

    LAYOUTS = ("points", "instance")

    def oks_sigma(self, layout: str) -> float:
        """``kpt_oks_sigmas`` value of every keypoint for a layout (see the module docstring)."""
        return 0.3 if check_layout(layout) == "points" else 0.05

    def keypoints_per_object(self, layout: str) -> int:
        """Keypoints of one YOLO object: 1 in the ``points`` layout, all of them in ``instance``."""
        return 1 if check_layout(layout) == "points" else self.n_points

    def object_flip_index(self, layout: str) -> list[int]:
        """ultralytics ``flip_idx`` of one object."""
        return [0] if check_layout(layout) == "points" else list(self.flip_index)

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
        0.12,  # about 3 frame-bar widths: the corner and the bar's turn around it
        0.025,
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
        0.06,  # most of the crossing, less than a grid spacing (1/14 of the side)
        0.25,  # a quarter spacing: the neighbouring strings stay out of the window
    ),
}


def check_layout(layout: str) -> str:
    """``layout`` if it is ``points`` or ``instance``, else a clear error."""
    if layout not in PoseTask.LAYOUTS:
        raise QuadratsegError(
            f"unknown layout {layout!r}; choose points (one object per keypoint, the default) or "
            "instance (one object holding all keypoints)"
        )
    return layout


def get_task(name: str) -> PoseTask:
    """The task called ``name`` (gridcorners or gridpose)."""
    if name not in TASKS:
        raise QuadratsegError(
            f"unknown task {name!r}; choose gridcorners (4 corners) or gridpose (117 points)"
        )
    return TASKS[name]
