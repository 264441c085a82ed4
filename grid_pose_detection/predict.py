"""CLI: corners or grid keypoints for a folder of images, in template order.

    python -m grid_pose_detection.predict gridcorners best.pt IMAGES_DIR OUT_DIR [--warp-size 1024]

Writes ``keypoints_coco.json`` (COCO keypoints, ``v = 0`` for missing points), ``labels/<stem>.txt``
(YOLO pose), ``overlays/``, ``report.json`` (per image: points found, missing, extra detections,
why no warp) and, for corners, ``warped/`` images with ``homographies.json`` (image -> warped,
so points can be mapped back with its inverse). OUT_DIR appears only when complete.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from grid_pose_detection.predictor import PosePredictor
from grid_pose_detection.tasks import get_task
from quadratseg.atomic import atomic_output_dir
from quadratseg.formats.keypoints_io import coco_keypoints_document, yolo_pose_line
from quadratseg.instances import list_images
from quadratseg.keypoints import grid_neighbour_pairs, load_template
from quadratseg.visualize import draw_keypoints


def predict(
    task: str,
    weights: str,
    images: str,
    out_dir: str,
    template: str | None = None,
    conf: float = 0.25,
    kpt_conf: float = 0.5,
    imgsz: int | None = None,
    warp_size: int = 1024,
    overwrite: bool = False,
) -> str:
    """Predict ordered keypoints (and warped quadrats for corners) for every image of a folder.

    Args:
        task: gridcorners or gridpose.
        weights: trained model (.pt or .onnx).
        images: folder of images.
        out_dir: output folder (created when complete).
        template: keypoint template .npy (default: the task's built-in template).
        conf: detection confidence threshold.
        kpt_conf: keypoint confidence threshold; points below it count as not detected.
        imgsz: inference size (default: the training size).
        warp_size: side of the warped quadrat images (corners).
        overwrite: replace out_dir if it exists.

    Returns:
        JSON summary: images, complete matches, warped images.
    """
    spec = get_task(task)
    paths = list_images(images)
    tmpl = load_template(template, spec.n_points) if template else None
    predictor = PosePredictor(weights, spec, tmpl, conf, kpt_conf, imgsz, warp_size=(warp_size, warp_size))
    names = [str(i + 1) for i in range(spec.n_points)]
    edges = (
        [(0, 1), (1, 2), (2, 3), (3, 0)] if spec.n_points == 4 else [tuple(p) for p in grid_neighbour_pairs()]
    )
    coco_items, report, homographies = [], [], {}
    with atomic_output_dir(out_dir, overwrite) as tmp:
        for sub in ("labels", "overlays") + (("warped",) if spec.name == "gridcorners" else ()):
            (tmp / sub).mkdir()
        for path in paths:
            image = cv2.imread(str(path))
            if image is None:
                report.append({"image": path.name, "error": "unreadable image"})
                continue
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            (pred,) = predictor.predict([rgb])
            coco_items.append((path.name, pred.frame_size, pred.keypoints_xy))
            if pred.visible.any():
                (tmp / "labels" / f"{path.stem}.txt").write_text(
                    yolo_pose_line(pred.keypoints_xy, pred.frame_size) + "\n"
                )
            radius = max(3, rgb.shape[1] // 300)
            overlay = draw_keypoints(
                rgb, pred.keypoints_xy, (255, 60, 60), radius, edges, numbered=spec.n_points == 4
            )
            cv2.imwrite(str(tmp / "overlays" / f"{path.stem}.jpg"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            entry = {
                "image": path.name,
                "found": int(pred.visible.sum()),
                "missing": (np.flatnonzero(~pred.visible) + 1).tolist(),
                "extra_detections": pred.match.n_extra,
                "raw_detections": pred.n_raw,
            }
            if spec.name == "gridcorners":
                warped = predictor.warp(rgb, pred)
                if warped is None:
                    entry["warp"] = pred.warp_error or "no corners"
                else:
                    cv2.imwrite(str(tmp / "warped" / path.name), cv2.cvtColor(warped, cv2.COLOR_RGB2BGR))
                    homographies[path.name] = pred.homography.tolist()
                    entry["warp"] = "ok"
            report.append(entry)
        doc = coco_keypoints_document(coco_items, spec.label, names)
        (tmp / "keypoints_coco.json").write_text(json.dumps(doc), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        if spec.name == "gridcorners":
            (tmp / "homographies.json").write_text(json.dumps(homographies), encoding="utf-8")
    complete = sum(1 for r in report if r.get("found") == spec.n_points)
    return json.dumps(
        {"images": len(paths), "complete": complete, "warped": len(homographies), "out_dir": out_dir}
    )


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="grid_pose_detection.predict")
