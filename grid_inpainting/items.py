"""The images a grid removal cleans, with their grid keypoints (117, 2) px in template order, from
a FiftyOne dataset, a COCO keypoints JSON or YOLO pose labels.

Examples:
    >>> from grid_inpainting.items import GridItem
    >>> import numpy as np
    >>> GridItem(Path("q/a.jpg"), np.zeros((117, 2)), key="q/a.jpg").name
    'q/a.jpg'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.formats.keypoints_io import read_coco_keypoints
from quadratseg.images import image_key, list_images, output_name
from quadratseg.keypoints import N_GRID

logger = logging.getLogger(__name__)


@dataclass
class GridItem:
    """One image to clean: its path, its keypoints (117, 2) px, and where it came from."""

    path: Path
    keypoints: np.ndarray
    source_id: str = ""
    key: str = ""  # output name (relative path, suffix kept); default: the file name
    label_file: Path | None = None  # YOLO pose labels, read with the image (keypoints then unused)

    @property
    def name(self) -> str:
        return self.key or self.path.name


def items_from_dataset(dataset: str, field: str = "gt_grid") -> Iterator[GridItem]:
    """Images and grid keypoints of a FiftyOne dataset (keypoints in template order, NaN if missing)."""
    from quadratseg.fiftyone_io import keypoints_to_pixels, load_dataset

    ds = load_dataset(dataset)
    if field not in ds.get_field_schema():
        raise QuadratsegError(f"dataset {dataset!r} has no keypoint field {field!r}")
    ds.compute_metadata()
    for sample in ds:
        if sample[field] is None or not sample[field].keypoints:
            logger.warning("%s has no %s keypoints: skipped", sample.filepath, field)
            continue
        # crossings marked outside (hidden by a coral) keep the place the annotator gave them
        kp, _visible = keypoints_to_pixels(
            sample[field].keypoints[0], (sample.metadata.width, sample.metadata.height), with_outside=True
        )
        yield GridItem(Path(sample.filepath), kp, sample.id)


def items_from_coco(images_dir: Path, coco_json: Path) -> Iterator[GridItem]:
    """Images of a folder with keypoints from a COCO keypoints JSON (upstream's interface)."""
    for name, (_size, kp) in read_coco_keypoints(coco_json, N_GRID).items():
        yield GridItem(images_dir / name, kp, key=name)


def items_from_yolo(images_dir: Path, labels_dir: Path) -> Iterator[GridItem]:
    """Images of a folder (sub-folders too) with YOLO pose labels ``<labels_dir>/<key>.txt``.

    The key is the image's path relative to ``images_dir`` with its suffix (what
    ``grid_pose_detection.predict`` writes); ``<relative stem>.txt`` (ultralytics' naming) is used
    when there is no such file.
    """
    for path in list_images(images_dir):
        key = image_key(path, images_dir)
        label = labels_dir / output_name(key, ".txt")
        if not label.is_file():
            label = labels_dir / f"{key[: -len(path.suffix)]}.txt"
        yield GridItem(path, np.empty((0, 2)), key=key, label_file=label)
