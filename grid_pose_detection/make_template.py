"""CLI: fit the keypoint template from the annotated quadrats of a FiftyOne dataset.

    python -m grid_pose_detection.make_template DATASET OUT.npy [--task gridpose] [--split train]

Every annotated grid is brought into normalized quadrat coordinates (0..1 from the quadrat's
top-left to its bottom-right inner corner): through the homography of its own annotated corners
when the sample has 4 of them (grids annotated on raw photos), else by the image size (grids
annotated on warped photos, the CVAT grid project). The template is the robust mean of those
positions per point (:func:`quadratseg.keypoints.fit_template`); ``deploy_as_zip`` and
``predict`` take the ``.npy`` it writes. The corners' template is the unit square by definition
(the corners define the normalized frame): ``--task gridcorners`` writes it as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import keypoints_to_pixels
from quadratseg.keypoints import fit_template, save_template
from quadratseg.warp import quadrat_homography, transform_points


def normalized_keypoints(sample: Any, field: str, corners_field: str = "gt_corners") -> np.ndarray | None:
    """A sample's annotated keypoints (K, 2) in normalized quadrat coordinates (NaN: not visible)."""
    value = sample[field] if field in sample.field_names else None
    if value is None or not value.keypoints:
        return None
    size = (sample.metadata.width, sample.metadata.height)
    points, _visible = keypoints_to_pixels(value.keypoints[0], size)  # NaN where not visible
    corners = sample[corners_field] if corners_field in sample.field_names else None
    if corners is not None and corners.keypoints:
        corner_xy, corner_visible = keypoints_to_pixels(corners.keypoints[0], size)
        if corner_visible.all():
            return transform_points(points, quadrat_homography(corner_xy, (1, 1)))
    return points / np.array(size, dtype=np.float64)


def template_from_samples(
    samples: Any, field: str, min_samples: int = 3
) -> tuple[np.ndarray, dict[str, Any]]:
    """The fitted template (K, 2) of ``samples`` and a summary (samples used, spread, deviation)."""
    stacks = [p for p in (normalized_keypoints(s, field) for s in samples) if p is not None]
    if not stacks:
        raise QuadratsegError(f"no sample holds annotated {field}; nothing to fit a template on")
    sizes = {len(p) for p in stacks}
    if len(sizes) > 1:
        raise QuadratsegError(f"samples hold different numbers of {field} points: {sorted(sizes)}")
    stack = np.stack(stacks)
    template, counts = fit_template(stack, min_samples)
    spread = np.nanstd(stack - template, axis=0)
    return template, {
        "samples": len(stacks),
        "points": len(template),
        "min_samples_per_point": int(counts.min()),
        "mean_spread": round(float(np.nanmean(spread)), 5),
    }


def make_template(
    dataset: str, out: str, task: str = "gridpose", split: str | None = None, min_samples: int = 3
) -> str:
    """Fit the keypoint template from annotated quadrats and save it as ``.npy``.

    Args:
        dataset: FiftyOne dataset holding the task's keypoints (gt_grid or gt_corners).
        out: the template file to write (.npy, (K, 2) normalized quadrat coordinates).
        task: gridpose (fitted) or gridcorners (the unit square by definition).
        split: only the samples with this tag (e.g. train); default: all.
        min_samples: every point must be annotated on at least this many samples.

    Returns:
        JSON: the file, samples used, spread of the annotations around the template and its
        largest deviation from the evenly spaced built-in template (normalized units).
    """
    from quadratseg.fiftyone_io import load_dataset

    spec = get_task(task)
    if not str(out).endswith(".npy"):
        raise QuadratsegError(f"the template file must end in .npy, got {out}")
    if spec.name == "gridcorners":
        path = save_template(spec.template(), out)
        return json.dumps({"template": str(path), "note": "the corners' template is the unit square"})
    samples = load_dataset(dataset)
    if split:
        samples = samples.match_tags(split)
    samples.compute_metadata()
    template, summary = template_from_samples(samples, spec.field, min_samples)
    deviation = float(np.abs(template - spec.template()).max())
    path = save_template(template, Path(out))
    return json.dumps({"template": str(path), **summary, "max_deviation_from_even": round(deviation, 5)})


if __name__ == "__main__":
    from quadratseg.cli import run

    run(make_template, name="grid_pose_detection.make_template")
