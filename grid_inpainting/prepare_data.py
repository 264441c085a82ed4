"""CLI: LaMa data from a FiftyOne dataset with grid keypoints.

    python -m grid_inpainting.prepare_data DATASET OUT_DIR [--layout train|predict] [--field gt_grid]

- ``--layout train`` (default): what ``grid_inpainting.train`` reads, ``images/<stem>.png`` and
  ``unknown/<stem>.png`` (255 under the real strings, the grid mask drawn twice as wide: pixels
  the fine-tune never takes as a target, since nobody knows what they hide).
- ``--layout predict``: ``<stem>.png`` and ``<stem>_mask001.png`` (255 where the grid is), the
  layout LaMa's own prediction script reads, to remove grids with upstream's tools.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from grid_inpainting.items import items_from_dataset
from grid_inpainting.masks import grid_mask
from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.images import read_image_rgb

LAYOUTS = ("train", "predict")


def prepare_data(
    dataset: str,
    out_dir: str | None = None,
    field: str = "gt_grid",
    line_width: float | None = None,
    dilation: int = 0,
    overwrite: bool = False,
    layout: str = "train",
) -> str:
    """Write LaMa fine-tuning data (--layout train) or image/mask pairs for prediction (--layout predict).

    Args:
        dataset: FiftyOne dataset with grid keypoints.
        out_dir: output folder, created when complete (default: QUADRATSEG_DATA_DIR/lama/DATASET).
        field: keypoint field (default gt_grid).
        line_width: mask width in px (default: 0.9 % of the image side).
        dilation: extra dilation in px.
        overwrite: replace out_dir if it exists.
        layout: train (images/ and unknown/ for grid_inpainting.train) or predict (LaMa's pairs).

    Returns:
        JSON with the number of images written.
    """
    from grid_inpainting.masks import default_line_width
    from quadratseg.cli import data_path

    if layout not in LAYOUTS:
        raise QuadratsegError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out = data_path(out_dir, Path("lama") / dataset)
    count = 0
    with atomic_output_dir(out, overwrite) as tmp:
        if layout == "train":
            (tmp / "images").mkdir()
            (tmp / "unknown").mkdir()
        for item in items_from_dataset(dataset, field):
            image = read_image_rgb(item.path)
            size = (image.shape[1], image.shape[0])
            stem = f"{item.path.stem}_{item.source_id[-6:]}" if item.source_id else item.path.stem
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            if layout == "train":
                width = 2 * (line_width if line_width is not None else default_line_width(size))
                unknown = grid_mask(item.keypoints, size, width, dilation)
                cv2.imwrite(str(tmp / "images" / f"{stem}.png"), bgr)
                cv2.imwrite(str(tmp / "unknown" / f"{stem}.png"), unknown.astype(np.uint8) * 255)
            else:
                mask = grid_mask(item.keypoints, size, line_width, dilation)
                cv2.imwrite(str(tmp / f"{stem}.png"), bgr)
                cv2.imwrite(str(tmp / f"{stem}_mask001.png"), mask.astype(np.uint8) * 255)
            count += 1
        if count == 0:
            raise QuadratsegError(f"dataset {dataset!r} has no sample with {field} keypoints")
    return json.dumps({"layout": layout, "images": count, "pairs": count, "out_dir": str(out)})


if __name__ == "__main__":
    from quadratseg.cli import run

    run(prepare_data, name="grid_inpainting.prepare_data")
