"""CLI: remove the grid from images, with keypoints from FiftyOne, COCO keypoints JSON or YOLO pose txt.

    python -m grid_inpainting.remove_grid OUT_DIR --dataset synth_grid [--new-dataset synth_clean]
    python -m grid_inpainting.remove_grid OUT_DIR --images DIR --coco keypoints.json
    python -m grid_inpainting.remove_grid OUT_DIR --images DIR --yolo LABELS_DIR

Writes the clean images (same names; with --images, the same relative paths: sub-folders are
searched) and ``grid_removal.json`` (per image: backend, line width, mask share) into OUT_DIR,
which appears only when complete. Images are read upright (EXIF orientation applied). An image
that fails is listed in ``failures.csv``, the others go on, and the CLI exits 3 (see
:mod:`quadratseg.batch`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from grid_inpainting.inpaint import remove_grid, select_backend
from grid_inpainting.items import GridItem, items_from_coco, items_from_dataset, items_from_yolo
from quadratseg.atomic import atomic_output_dir
from quadratseg.batch import BatchItem, BatchReport, run_batch
from quadratseg.errors import QuadratsegError
from quadratseg.formats.keypoints_io import read_yolo_pose
from quadratseg.images import read_image_rgb
from quadratseg.keypoints import N_GRID
from quadratseg.settings import Settings

logger = logging.getLogger(__name__)


def clean_images(
    items: list[GridItem],
    out_dir: Path,
    backend: Any,
    line_width: float | None = None,
    dilation: int = 0,
    estimate_width: bool = False,
    overwrite: bool = False,
) -> tuple[list[dict[str, Any]], BatchReport]:
    """Remove the grid from every item; write the clean images, ``grid_removal.json``, ``failures.csv``.

    An item that fails (unreadable image, bad labels) is recorded and the others go on
    (:mod:`quadratseg.batch`); the caller decides what failures mean.
    """
    out_dir = Path(out_dir)
    if not items:
        raise QuadratsegError("no image to clean")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise QuadratsegError("two input images have the same file name; clean them into separate folders")
    records = []

    def one(batch_item: BatchItem) -> None:
        item = by_key[batch_item.key]
        image = read_image_rgb(item.path)
        keypoints = item.keypoints
        if item.label_file is not None:
            keypoints = read_yolo_pose(item.label_file, (image.shape[1], image.shape[0]), N_GRID)
        start = time.perf_counter()
        (result,) = remove_grid(
            [image], [keypoints], backend, line_width, dilation, estimate_width=estimate_width
        )
        target = tmp / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if target.suffix.lower() in (".jpg", ".jpeg") else []
        if not cv2.imwrite(str(target), cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"could not write {target}")
        records.append(
            {
                "image": item.name,
                "source": str(item.path),
                "source_sample_id": item.source_id,
                "backend": result.backend,
                "line_width": round(result.line_width, 2),
                "mask_share": round(float(result.mask.mean()), 4),
                "seconds": round(time.perf_counter() - start, 3),
                "missing_keypoints": int((~np.isfinite(keypoints).all(axis=1)).sum()),
            }
        )

    by_key = {item.name: item for item in items}
    with atomic_output_dir(out_dir, overwrite) as tmp:
        report = run_batch([BatchItem(item.path, item.name) for item in items], one, "removing grids")
        report.write(tmp)
        (tmp / "grid_removal.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    return records, report


def dataset_of_clean_images(source: str, new_name: str, out_dir: Path, records: list[dict[str, Any]]) -> str:
    """A new FiftyOne dataset of the clean images, keeping each sample's fields and a link back."""
    import fiftyone as fo

    src = fo.load_dataset(source)
    if fo.dataset_exists(new_name):
        raise QuadratsegError(f"dataset {new_name!r} exists already; choose another --new-dataset name")
    samples = []
    for record in records:
        original = src[record["source_sample_id"]]
        sample = fo.Sample(filepath=str((out_dir / record["image"]).resolve()))
        for key in original.field_names:
            if key not in ("id", "filepath", "metadata", "created_at", "last_modified_at"):
                sample[key] = original[key]
        sample["source_sample_id"] = record["source_sample_id"]
        sample["source_dataset"] = source
        sample["inpaint_backend"] = record["backend"]
        sample["grid_line_width"] = record["line_width"]
        samples.append(sample)
    ds = fo.Dataset(new_name, persistent=True)
    ds.add_samples(samples, progress=False)
    if src.skeletons:  # the copied keypoint fields keep their skeletons (the App draws the grid)
        ds.skeletons = dict(src.skeletons)
    return new_name


def run_remove_grid(
    out_dir: str,
    dataset: str | None = None,
    field: str = "gt_grid",
    images: str | None = None,
    coco: str | None = None,
    yolo: str | None = None,
    backend: str = "auto",
    lama_model: str | None = None,
    line_width: float | None = None,
    dilation: int = 0,
    estimate_width: bool = False,
    new_dataset: str | None = None,
    overwrite: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Library entry of the CLI; returns a summary (``settings``: the CLI's, else the defaults)."""
    settings = settings if settings is not None else Settings()
    sources = [bool(dataset), bool(images and coco), bool(images and yolo)]
    if sum(sources) != 1:
        raise QuadratsegError(
            "give exactly one input: --dataset NAME, --images DIR --coco FILE, or --images DIR --yolo DIR"
        )
    if dataset:
        items = list(items_from_dataset(dataset, field))
    elif coco:
        items = list(items_from_coco(Path(images), Path(coco)))
    else:
        items = list(items_from_yolo(Path(images), Path(yolo)))
    chosen = select_backend(backend, settings, lama_model)
    records, report = clean_images(
        items, Path(out_dir), chosen, line_width, dilation, estimate_width, overwrite
    )
    summary = {
        "images": len(records),
        "failed": len(report.failures),
        "backend": chosen.name,
        "out_dir": str(out_dir),
        "seconds_per_image": round(float(np.mean([r["seconds"] for r in records])), 3) if records else None,
    }
    if new_dataset:
        if not dataset:
            raise QuadratsegError("--new-dataset needs --dataset (the samples to copy fields from)")
        summary["new_dataset"] = dataset_of_clean_images(dataset, new_dataset, Path(out_dir), records)
    logger.info("cleaned %d images with %s into %s", len(records), chosen.name, out_dir)
    report.raise_if_failed(out_dir, json.dumps(summary, indent=2))
    return summary


def main(
    out_dir: str,
    dataset: str | None = None,
    field: str = "gt_grid",
    images: str | None = None,
    coco: str | None = None,
    yolo: str | None = None,
    backend: str = "auto",
    lama_model: str | None = None,
    line_width: float | None = None,
    dilation: int = 0,
    estimate_width: bool = False,
    new_dataset: str | None = None,
    overwrite: bool = False,
) -> str:
    """Remove the 9 x 13 grid from images using their 117 grid keypoints.

    Args:
        out_dir: folder for the clean images and grid_removal.json (created when complete).
        dataset: FiftyOne dataset whose samples have grid keypoints (see --field).
        field: keypoint field of --dataset (default gt_grid).
        images: folder of images (with --coco or --yolo).
        coco: COCO keypoints JSON with 117 points per image (missing points with v=0).
        yolo: folder of YOLO pose txt files named after the images.
        backend: auto (LaMa if LAMA_MODEL is set, else OpenCV only if allowed), lama, opencv-telea, opencv-ns.
        lama_model: LaMa TorchScript file (overrides LAMA_MODEL).
        line_width: mask stroke width in px (default: 0.9 % of the image side).
        dilation: extra dilation of the mask in px.
        estimate_width: measure the string width on each image instead of the default.
        new_dataset: also create this FiftyOne dataset of the clean images (with --dataset).
        overwrite: replace out_dir if it exists.

    Returns:
        A JSON summary.
    """
    from quadratseg.cli import current_settings, weights_path

    settings = current_settings()
    return json.dumps(
        run_remove_grid(
            out_dir,
            dataset,
            field,
            images,
            coco,
            yolo,
            backend,
            weights_path(lama_model, settings),
            line_width,
            dilation,
            estimate_width,
            new_dataset,
            overwrite,
            settings,
        ),
        indent=2,
    )


if __name__ == "__main__":
    from quadratseg.cli import run

    run(main, name="grid_inpainting.remove_grid")
