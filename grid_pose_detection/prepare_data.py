"""CLI: FiftyOne keypoints -> ultralytics pose layout, for ``gridcorners`` or ``gridpose``.

    python -m grid_pose_detection.prepare_data gridpose DATASET OUT_DIR

Writes ``images/<split>/``, ``labels/<split>/<stem>.txt`` and ``data.yaml`` (absolute ``path``,
``kpt_shape``, ``flip_idx``, ``kpt_oks_sigmas``, ``layout``). In the ``points`` layout (default)
every present keypoint is one object: a square box of ``point_box_share`` of the quadrat side
centred on it, then ``x y v`` (points marked outside keep their coordinates with ``v = 0``;
missing points are not written). In the ``instance`` layout one object holds all keypoints in
template order (missing points are ``0 0 0``). See :mod:`grid_pose_detection.tasks`.
Splits come from the sample tags (train / val / test). FiftyOne refuses to export keypoints
to YOLO, so the writer is ours.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from grid_pose_detection.tasks import PoseTask, check_layout, get_task
from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import keypoints_to_pixels
from quadratseg.formats.keypoints_io import yolo_pose_line
from quadratseg.images import exif_orientation, write_upright
from quadratseg.keypoints import quadrat_side_px
from quadratseg.yolo_layout import check_split_counts, layout_stem, make_split_dirs, sample_split

logger = logging.getLogger(__name__)


def object_box(
    points_xy: np.ndarray, frame_size: tuple[int, int], margin: float
) -> tuple[float, float, float, float]:
    """Box around the present points grown by ``margin`` of its size, clipped to the image (xyxy px)."""
    ok = np.isfinite(points_xy).all(axis=1)
    if not ok.any():
        raise QuadratsegError("no keypoint present: cannot place the object box")
    (x0, y0), (x1, y1) = points_xy[ok].min(axis=0), points_xy[ok].max(axis=0)
    dx, dy = (x1 - x0) * margin + 2, (y1 - y0) * margin + 2
    w, h = frame_size
    return max(x0 - dx, 0.0), max(y0 - dy, 0.0), min(x1 + dx, float(w)), min(y1 + dy, float(h))


def data_yaml(task: PoseTask, root: Path, layout: str = "points") -> dict[str, Any]:
    """The ultralytics dataset description of a pose layout (``layout`` is ours, ultralytics ignores it)."""
    k = task.keypoints_per_object(layout)
    return {
        "path": str(root.resolve()),
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "kpt_shape": [k, 3],
        "flip_idx": task.object_flip_index(layout),
        "kpt_oks_sigmas": [task.oks_sigma(layout)] * k,
        "names": {0: task.label},
        "layout": layout,
        "task": task.name,
    }


def point_lines(
    task: PoseTask,
    points_xy: np.ndarray,
    visible: np.ndarray,
    frame_size: tuple[int, int],
    layout: str,
) -> list[str]:
    """The YOLO pose label lines of one image's keypoints (K, 2) px for ``layout``."""
    if check_layout(layout) == "instance":
        box = object_box(points_xy, frame_size, task.box_margin)
        return [yolo_pose_line(points_xy, frame_size, 0, visible, box)]
    side = quadrat_side_px(points_xy, np.ones(len(points_xy), bool), task.template())
    if side is None:  # fewer than 4 points: the extent of those present
        present = points_xy[np.isfinite(points_xy).all(axis=1)]
        side = float((present.max(axis=0) - present.min(axis=0)).max()) if len(present) > 1 else 0.0
    half = task.point_box_share * side / 2
    lines = []
    for point, seen in zip(points_xy, visible, strict=True):
        if not np.isfinite(point).all():
            continue
        x, y = point
        box = (x - half, y - half, x + half, y + half)
        lines.append(yolo_pose_line(point[None], frame_size, 0, np.array([seen]), box))
    return lines


def _link_or_upright(source: str | Path, target: Path, link: bool) -> None:
    """``target``: a link to ``source``, or a copy with upright pixels when asked for a copy or when the
    photo has an EXIF turn (ultralytics then sees it upright, as the labels are)."""
    if link and exif_orientation(source) == 1:
        target.symlink_to(Path(source).resolve())
    else:
        write_upright(source, target)


def write_pose_layout(
    task: PoseTask,
    samples: Any,
    out_dir: Path,
    overwrite: bool = False,
    link: bool = True,
    layout: str = "points",
    backgrounds: bool = False,
) -> dict[str, Any]:
    """Write the layout for FiftyOne ``samples`` holding ``task.field``; returns counts per split.

    A sample of a split with no points is skipped (an image nobody annotated yet), or, with
    ``backgrounds``, written with an empty label file: an ultralytics background image, from which
    the model learns to find nothing (a frame without a grid). Use it when every image of the
    dataset is annotated, so that no points means nothing there.
    """
    check_layout(layout)
    skipped = []
    background_count = 0
    with atomic_output_dir(out_dir, overwrite) as tmp:
        counts = make_split_dirs(tmp)
        labelled = dict.fromkeys(counts, 0)
        for sample in samples:
            split = sample_split(sample)
            value = sample[task.field] if task.field in sample.field_names else None
            points, visible, size = np.zeros((0, 2)), np.zeros(0, bool), None
            if value is not None and value.keypoints:
                size = (sample.metadata.width, sample.metadata.height)
                # points CVAT marked outside keep their coordinates (written with v = 0)
                points, visible = keypoints_to_pixels(value.keypoints[0], size, with_outside=True)
            empty = not np.isfinite(points).all(axis=1).any()  # no point at all, or every one missing
            if split is None or (empty and not backgrounds):
                skipped.append(
                    f"{sample.filepath}: {'no split tag' if split is None else 'no ' + task.field}"
                )
                continue
            stem = layout_stem(sample)
            image_target = tmp / "images" / split / f"{stem}{Path(sample.filepath).suffix}"
            if empty:
                _link_or_upright(sample.filepath, image_target, link)
                (tmp / "labels" / split / f"{stem}.txt").write_text("", encoding="utf-8")
                counts[split] += 1
                background_count += 1
                continue
            if len(points) != task.n_points:
                raise QuadratsegError(
                    f"{sample.filepath}: {task.field} has {len(points)} points, "
                    f"the {task.name} task needs {task.n_points}"
                )
            _link_or_upright(sample.filepath, image_target, link)
            lines = point_lines(task, points, visible, size, layout)
            (tmp / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            counts[split] += 1
            labelled[split] += 1
        # background images alone teach nothing: ultralytics stops at the start with "No labels found"
        check_split_counts(labelled, f"{task.name} (images with points)")
        final_root = Path(out_dir)
        (tmp / "data.yaml").write_text(
            yaml.safe_dump(data_yaml(task, final_root, layout), sort_keys=False), encoding="utf-8"
        )
    for line in skipped[:10]:
        logger.warning("skipped %s", line)
    return {
        "images": counts,
        "backgrounds": background_count,
        "skipped": len(skipped),
        "layout": layout,
        "data_yaml": str(Path(out_dir) / "data.yaml"),
    }


def prepare_data(
    task: str,
    dataset: str,
    out_dir: str | None = None,
    overwrite: bool = False,
    copy_images: bool = False,
    layout: str = "points",
    backgrounds: bool = False,
) -> str:
    """Export a FiftyOne dataset's corner or grid keypoints to an ultralytics pose dataset.

    Args:
        task: gridcorners (field gt_corners, 4 points) or gridpose (field gt_grid, 117 points).
        dataset: FiftyOne dataset name.
        out_dir: output folder (images/, labels/, data.yaml), created when complete (default:
            QUADRATSEG_DATA_DIR/pose/TASK/DATASET).
        overwrite: replace out_dir if it exists.
        copy_images: copy images instead of symlinking them.
        layout: points (one object per keypoint, default) or instance (one object holding all).
        backgrounds: write the images annotated with no points (frames without a grid) as background
            images instead of skipping them: the model learns to answer "no grid" there. Only when
            every image of the dataset is annotated (no points means nothing there).

    Returns:
        JSON with the image counts per split (``backgrounds``: those written as background images)
        and the data.yaml path.
    """
    from quadratseg.cli import data_path
    from quadratseg.fiftyone_io import load_dataset

    spec = get_task(task)
    samples = load_dataset(dataset)
    samples.compute_metadata()
    return json.dumps(
        write_pose_layout(
            spec,
            samples,
            data_path(out_dir, Path("pose") / task / dataset),
            overwrite,
            link=not copy_images,
            layout=layout,
            backgrounds=backgrounds,
        ),
        indent=2,
    )


if __name__ == "__main__":
    from quadratseg.cli import run

    run(prepare_data, name="grid_pose_detection.prepare_data")
