"""CLI: coral instances for a folder of images -> COCO-style JSON and overlay images.

python -m coral_seg_yolo.predict best.pt IMAGES_DIR OUT_DIR [--method overlapping --tile 640]

Windows default to the side of the images the model was trained on (its model card), and a
``--tile``/``--imgsz`` pair that feeds the model at another scale is refused.

Images are read upright (EXIF orientation applied); see :mod:`quadratseg.batch` for the
batch policy (failures.csv, exit code 3, outputs keyed by relative path).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import cv2

from coral_seg_yolo.predictor import SegPredictor
from quadratseg.atomic import atomic_output_dir
from quadratseg.batch import BatchItem, batch_items, run_batch
from quadratseg.errors import QuadratsegError
from quadratseg.images import output_name, read_image_rgb
from quadratseg.instances import CocoInstances
from quadratseg.model_card import read_model_card
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_polygons

logger = logging.getLogger(__name__)


FALLBACK_TILE = 640  # windows of a model without a model card (ultralytics' usual training size)


def window_size(
    card: dict[str, Any], tile: int | None, imgsz: int, allow_scale_mismatch: bool = False
) -> int:
    """The side in px of the prediction windows: ``tile``, else the side of the images the model
    was trained on (its card's ``tile``, else its ``warp_size``), else :data:`FALLBACK_TILE`.

    A window of ``tile`` px is fed to the network at ``imgsz`` px, a scale of ``imgsz / tile``; the
    model learned at ``card["imgsz"]`` over its training side. Windows at another scale (by more
    than 10 %) would show colonies larger or smaller than the model saw.

    Raises:
        QuadratsegError: the two scales differ and ``allow_scale_mismatch`` is False.

    Examples:
        >>> window_size({"imgsz": 1920, "warp_size": 1920, "tile": 0}, None, 1920)
        1920
        >>> window_size({"imgsz": 640, "warp_size": 1920, "tile": 640}, None, 640)
        640
    """
    trained_side = int(card.get("tile") or 0) or int(card.get("warp_size") or 0)
    if tile is None:
        if not trained_side:
            logger.warning("the model has no model card: windows of %d px", FALLBACK_TILE)
        return trained_side or FALLBACK_TILE
    if trained_side and card.get("imgsz") and not allow_scale_mismatch:
        scale, trained = imgsz / tile, int(card["imgsz"]) / trained_side
        if abs(scale / trained - 1) > 0.1:
            raise QuadratsegError(
                f"--tile {tile} at --imgsz {imgsz} feeds the model at a scale of {scale:.3g}, but it "
                f"was trained at {trained:.3g} ({trained_side} px images at imgsz {card['imgsz']}): "
                f"leave --tile out (windows of {trained_side} px), pass --imgsz "
                f"{round(tile * trained)}, or --allow-scale-mismatch"
            )
    return int(tile)


def predict(
    weights: str,
    images: str,
    out_dir: str,
    method: str = "direct",
    tile: int | None = None,
    overlap: float = 0.2,
    conf: float | None = None,
    imgsz: int | None = None,
    allow_scale_mismatch: bool = False,
    overwrite: bool = False,
) -> str:
    """Segment coral colonies in every image of a folder.

    Args:
        weights: trained model (.pt, or .onnx exported from one).
        images: an image or a folder of images (sub-folders too).
        out_dir: output folder (predictions_coco.json with file_name = the image's path relative to
            IMAGES, overlays/<relative path>.jpg, failures.csv), created when complete.
        method: direct, tiling or overlapping (sliding windows with merging across borders).
        tile: window size in px for tiling/overlapping (default: the side of the images the model
            was trained on, from its model card, so windows are fed at the training scale).
        overlap: overlap between windows (overlapping).
        conf: colony confidence threshold (default: the model card's, measured on the val split
            when the model was trained; 0.25 for a model whose card has none).
        imgsz: inference size (default: the training size).
        allow_scale_mismatch: accept a --tile and --imgsz that feed the model at another scale than
            its training one.
        overwrite: replace out_dir if it exists.

    Returns:
        JSON summary (images done, failed, instances, and the threshold used and where it came from).

    Raises:
        BatchFailedError: some images could not be read or segmented (recorded in failures.csv;
            the others are written; the CLI exits 3).
    """
    items = batch_items(images)
    from quadratseg.cli import device, weights_path

    weights = weights_path(weights)
    predictor = SegPredictor(weights, imgsz, conf, device=device())
    if method != "direct":
        tile = window_size(read_model_card(weights), tile, predictor.imgsz, allow_scale_mismatch)
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
            "tile": tile,
            "imgsz": predictor.imgsz,
            "conf": predictor.conf,
            "conf_source": predictor.conf_source,  # given, model card or default
            "out_dir": out_dir,
        }
    )
    report.raise_if_failed(out_dir, summary)
    return summary


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="coral_seg_yolo.predict")
