"""CLI: image/mask pairs for fine-tuning LaMa, from a FiftyOne dataset with grid keypoints.

    python -m grid_inpainting.prepare_data DATASET OUT_DIR [--field gt_grid]

Writes ``<stem>.png`` and ``<stem>_mask001.png`` (255 where the grid is), the layout LaMa's
training and prediction scripts read. Fine-tuning LaMa itself is not part of this project
(upstream used the public big-lama weights); these pairs are what a fine-tune would need.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from grid_inpainting.masks import grid_mask
from grid_inpainting.remove_grid import items_from_dataset
from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.images import read_image_rgb


def prepare_data(
    dataset: str,
    out_dir: str | None = None,
    field: str = "gt_grid",
    line_width: float | None = None,
    dilation: int = 0,
    overwrite: bool = False,
) -> str:
    """Write image/mask pairs for a LaMa fine-tune.

    Args:
        dataset: FiftyOne dataset with grid keypoints.
        out_dir: output folder, created when complete (default: QUADRATSEG_DATA_DIR/lama/DATASET).
        field: keypoint field (default gt_grid).
        line_width: mask width in px (default: 0.9 % of the image side).
        dilation: extra dilation in px.
        overwrite: replace out_dir if it exists.

    Returns:
        JSON with the number of pairs written.
    """
    from quadratseg.cli import data_path

    out = data_path(out_dir, Path("lama") / dataset)
    count = 0
    with atomic_output_dir(out, overwrite) as tmp:
        for item in items_from_dataset(dataset, field):
            image = read_image_rgb(item.path)
            mask = grid_mask(item.keypoints, (image.shape[1], image.shape[0]), line_width, dilation)
            stem = f"{item.path.stem}_{item.source_id[-6:]}" if item.source_id else item.path.stem
            cv2.imwrite(str(tmp / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(tmp / f"{stem}_mask001.png"), mask.astype(np.uint8) * 255)
            count += 1
        if count == 0:
            raise QuadratsegError(f"dataset {dataset!r} has no sample with {field} keypoints")
    return json.dumps({"pairs": count, "out_dir": str(out)})


if __name__ == "__main__":
    from quadratseg.cli import run

    run(prepare_data, name="grid_inpainting.prepare_data")
