"""CLI: coral instances for a folder of images -> COCO-style JSON and overlay images.

python -m coral_seg_yolo.predict best.pt IMAGES_DIR OUT_DIR [--method overlapping --tile 640]

Images are read upright (EXIF orientation applied); see :mod:`quadratseg.batch` for the
batch policy (failures.csv, exit code 3, outputs keyed by relative path).
"""

from __future__ import annotations

import json

import cv2

from coral_seg_yolo.predictor import SegPredictor
from quadratseg.atomic import atomic_output_dir
from quadratseg.batch import BatchItem, batch_items, run_batch
from quadratseg.images import output_name, read_image_rgb
from quadratseg.instances import CocoInstances
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_polygons


def predict(
    weights: str,
    images: str,
    out_dir: str,
    method: str = "direct",
    tile: int = 640,
    overlap: float = 0.2,
    conf: float = 0.25,
    imgsz: int | None = None,
    overwrite: bool = False,
) -> str:
    """Segment coral colonies in every image of a folder.

    Args:
        weights: trained model (.pt, or .onnx exported from one).
        images: an image or a folder of images (sub-folders too).
        out_dir: output folder (predictions_coco.json with file_name = the image's path relative to
            IMAGES, overlays/<relative path>.jpg, failures.csv), created when complete.
        method: direct, tiling or overlapping (sliding windows with merging across borders).
        tile: tile size in px for tiling/overlapping.
        overlap: overlap between windows (overlapping).
        conf: confidence threshold.
        imgsz: inference size (default: the training size).
        overwrite: replace out_dir if it exists.

    Returns:
        JSON summary (images done, failed, instances).

    Raises:
        BatchFailedError: some images could not be read or segmented (recorded in failures.csv;
            the others are written; the CLI exits 3).
    """
    items = batch_items(images)
    from quadratseg.cli import device, weights_path

    predictor = SegPredictor(weights_path(weights), imgsz, conf, device=device())
    coco = CocoInstances([n for _, n in sorted(predictor.names.items())])
    taxonomy = load_taxonomy()
    colors = {n: taxonomy.color(n) for n in predictor.names.values()}

    def one(item: BatchItem) -> None:
        rgb = read_image_rgb(item.path)
        instances = predictor.predict(rgb, method, tile, overlap)
        overlay = draw_polygons(rgb, [(i.label, i.rings) for i in instances], colors)
        target = tmp / "overlays" / output_name(item.key, ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {target}")
        coco.add_image(item.key, (rgb.shape[1], rgb.shape[0]), instances)

    with atomic_output_dir(out_dir, overwrite) as tmp:
        (tmp / "overlays").mkdir()
        report = run_batch(items, one, "segmenting")
        report.write(tmp)
        (tmp / "predictions_coco.json").write_text(json.dumps(coco.to_dict()), encoding="utf-8")
    summary = json.dumps(
        {
            "images": report.done,
            "failed": len(report.failures),
            "instances": len(coco.annotations),
            "method": method,
            "out_dir": out_dir,
        }
    )
    report.raise_if_failed(out_dir, summary)
    return summary


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="coral_seg_yolo.predict")
