"""CLI: coral instances for a folder of images -> COCO-style JSON and overlay images.

python -m coral_seg_yolo.predict best.pt IMAGES_DIR OUT_DIR [--method overlapping --tile 640]
"""

from __future__ import annotations

import json

import cv2

from coral_seg_yolo.predictor import SegPredictor
from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.instances import CocoInstances, list_images
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
        images: folder of images.
        out_dir: output folder (predictions_coco.json, overlays/), created when complete.
        method: direct, tiling or overlapping (sliding windows with merging across borders).
        tile: tile size in px for tiling/overlapping.
        overlap: overlap between windows (overlapping).
        conf: confidence threshold.
        imgsz: inference size (default: the training size).
        overwrite: replace out_dir if it exists.

    Returns:
        JSON summary.
    """
    paths = list_images(images)
    predictor = SegPredictor(weights, imgsz, conf)
    coco = CocoInstances([n for _, n in sorted(predictor.names.items())])
    taxonomy = load_taxonomy()
    colors = {n: taxonomy.color(n) for n in predictor.names.values()}
    with atomic_output_dir(out_dir, overwrite) as tmp:
        (tmp / "overlays").mkdir()
        for path in paths:
            bgr = cv2.imread(str(path))
            if bgr is None:
                raise QuadratsegError(f"cannot read image {path}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            instances = predictor.predict(rgb, method, tile, overlap)
            coco.add_image(path.name, (rgb.shape[1], rgb.shape[0]), instances)
            overlay = draw_polygons(rgb, [(i.label, i.polygon_xy) for i in instances], colors)
            cv2.imwrite(str(tmp / "overlays" / f"{path.stem}.jpg"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        (tmp / "predictions_coco.json").write_text(json.dumps(coco.to_dict()), encoding="utf-8")
    annotations = coco.annotations
    return json.dumps(
        {"images": len(paths), "instances": len(annotations), "method": method, "out_dir": out_dir}
    )


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="coral_seg_yolo.predict")
