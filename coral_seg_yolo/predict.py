"""CLI: coral instances for a folder of images -> COCO-style JSON and overlay images.

python -m coral_seg_yolo.predict best.pt IMAGES_DIR OUT_DIR [--method overlapping --tile 640]
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from coral_seg_yolo.predictor import SegPredictor
from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.geometry import polygon_area, polygon_to_xyxy
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_polygons

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


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
    folder = Path(images)
    paths = (
        sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    )
    if not paths:
        raise QuadratsegError(f"no image in {folder}")
    predictor = SegPredictor(weights, imgsz, conf)
    categories = [{"id": i + 1, "name": n} for i, n in sorted(predictor.names.items())]
    category_id = {c["name"]: c["id"] for c in categories}
    taxonomy = load_taxonomy()
    colors = {n: taxonomy.color(n) for n in predictor.names.values()}
    images_json, annotations = [], []
    with atomic_output_dir(out_dir, overwrite) as tmp:
        (tmp / "overlays").mkdir()
        for image_id, path in enumerate(paths, start=1):
            bgr = cv2.imread(str(path))
            if bgr is None:
                raise QuadratsegError(f"cannot read image {path}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            instances = predictor.predict(rgb, method, tile, overlap)
            images_json.append(
                {"id": image_id, "file_name": path.name, "width": rgb.shape[1], "height": rgb.shape[0]}
            )
            for inst in instances:
                x0, y0, x1, y1 = polygon_to_xyxy(inst.polygon_xy)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": category_id[inst.label],
                        "segmentation": [np.round(inst.polygon_xy.ravel(), 2).tolist()],
                        "area": polygon_area(inst.polygon_xy),
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": round(inst.score, 4),
                        "iscrowd": 0,
                    }
                )
            overlay = draw_polygons(rgb, [(i.label, i.polygon_xy) for i in instances], colors)
            cv2.imwrite(str(tmp / "overlays" / f"{path.stem}.jpg"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        doc = {"images": images_json, "annotations": annotations, "categories": categories}
        (tmp / "predictions_coco.json").write_text(json.dumps(doc), encoding="utf-8")
    return json.dumps(
        {"images": len(paths), "instances": len(annotations), "method": method, "out_dir": out_dir}
    )


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="coral_seg_yolo.predict")
