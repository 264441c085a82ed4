"""CLI: corners or grid keypoints for a folder of images, in template order.

    python -m grid_pose_detection.predict gridcorners best.pt IMAGES_DIR OUT_DIR [--warp-size 1920]

Thresholds, template and warp size left out come from the model's card (``model_card.json`` beside
the weights, written by ``grid_pose_detection.train``), else the defaults (box ``conf`` 0.25,
``kpt_conf`` 0.5, the task's ``max_cost``, 1920 px warps); see
:func:`grid_pose_detection.predictor.pose_settings`.

Each image has a key, its path relative to IMAGES_DIR with the suffix kept (``site/a.jpg``).
Writes ``keypoints_coco.json`` (COCO keypoints, file_name = key, ``v = 0`` for missing points),
``labels/<key>.txt`` (YOLO pose), ``overlays/<key>.jpg``, ``report.json`` (per image: points found,
missing, extra detections, why no warp, ``no_frame``: why four corners are no quadrat, which then
go to neither the labels nor the COCO file; or the error), ``failures.csv`` and, for corners,
``warped/<key>`` images with ``homographies.json`` (key -> image-to-warped matrix, so points can be
mapped back with its inverse). OUT_DIR appears only when complete. Images are read upright (EXIF
orientation applied); an image that fails is recorded, the others go on, and the CLI exits 3
(see :mod:`quadratseg.batch`).
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from grid_pose_detection.predictor import PosePredictor
from grid_pose_detection.tasks import get_task
from quadratseg.atomic import atomic_output_dir
from quadratseg.batch import BatchItem, batch_items, run_batch
from quadratseg.formats.keypoints_io import coco_keypoints_document, yolo_pose_line
from quadratseg.images import output_name, read_image_rgb
from quadratseg.keypoints import grid_neighbour_pairs, load_template
from quadratseg.visualize import draw_keypoints
from quadratseg.warp import warped_size


def predict(
    task: str,
    weights: str,
    images: str,
    out_dir: str,
    template: str | None = None,
    conf: float | None = None,
    kpt_conf: float | None = None,
    max_cost: float | None = None,
    imgsz: int | None = None,
    warp_size: int | None = None,
    aspect: float = 1.0,
    overwrite: bool = False,
    refine: bool = True,
    allow_warp_size_mismatch: bool = False,
) -> str:
    """Predict ordered keypoints (and warped quadrats for corners) for every image of a folder.

    Args:
        task: gridcorners or gridpose.
        weights: trained model (.pt or .onnx).
        images: an image or a folder of images (sub-folders too).
        out_dir: output folder (created when complete).
        template: keypoint template .npy (default: the card's, else the task's built-in one).
        conf: detection (box) confidence threshold (default: the card's, else 0.25).
        kpt_conf: keypoint confidence threshold; points below it count as not detected (default:
            the card's, else 0.5).
        max_cost: matching threshold in units of the photo's longer side (default: the card's,
            else 0.3 corners / 0.12 grid).
        imgsz: inference size (default: the training size).
        warp_size: width of the warped quadrat images (corners; default: the card's
            ``warp_size``, else 1920). One that disagrees with the card is refused.
        aspect: the quadrat's width / height (1: square; 2: a 1 x 0.5 m quadrat); the warped
            height is ``warp_size / aspect``.
        overwrite: replace out_dir if it exists.
        refine: move the points to the image evidence (frame corners, string crossings).
        allow_warp_size_mismatch: accept a --warp-size other than the card's.

    Returns:
        JSON summary: images done, failed, complete matches, warped images.

    Raises:
        BatchFailedError: some images failed (listed in failures.csv; the CLI exits 3).
    """
    from quadratseg.cli import device, weights_path

    weights = weights_path(weights)
    spec = get_task(task)
    items = batch_items(images)
    tmpl = load_template(template, spec.n_points) if template else None
    predictor = PosePredictor(
        weights,
        spec,
        tmpl,
        conf,
        kpt_conf,
        imgsz,
        device=device(),
        warp_size=None if warp_size is None else warped_size(warp_size, aspect),
        refine=refine,
        max_cost=max_cost,
        aspect=aspect,
        allow_warp_size_mismatch=allow_warp_size_mismatch,
    )
    names = [str(i + 1) for i in range(spec.n_points)]
    edges = (
        [(0, 1), (1, 2), (2, 3), (3, 0)] if spec.n_points == 4 else [tuple(p) for p in grid_neighbour_pairs()]
    )
    coco_items, report, homographies = [], [], {}

    def one(item: BatchItem) -> None:
        rgb = read_image_rgb(item.path)
        (pred,) = predictor.predict([rgb])
        entry = {
            "image": item.key,
            "found": int(pred.visible.sum()),
            "missing": (np.flatnonzero(~pred.visible) + 1).tolist(),
            "extra_detections": pred.match.n_extra,
            "raw_detections": pred.n_raw,
        }
        if pred.refined is not None:
            entry["refined"] = int(pred.refined.sum())
            entry["not_refined"] = (np.flatnonzero(pred.visible & ~pred.refined) + 1).tolist()
            entry["filled"] = (np.flatnonzero(pred.filled) + 1).tolist()
        if pred.no_grid:
            entry["no_grid"] = pred.no_grid
        if pred.no_frame:  # refused corners are delivered nowhere (labels, annotations)
            entry["no_frame"] = pred.no_frame
        delivered = pred.delivered_xy
        writes = []
        if np.isfinite(delivered).all(axis=1).any():
            writes.append(("labels", ".txt", yolo_pose_line(delivered, pred.frame_size) + "\n"))
        radius = max(3, rgb.shape[1] // 300)
        overlay = draw_keypoints(
            rgb, pred.keypoints_xy, (255, 60, 60), radius, edges, numbered=spec.n_points == 4
        )
        writes.append(("overlays", ".jpg", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)))
        if spec.name == "gridcorners":
            warped = predictor.warp(rgb, pred)
            if warped is None:
                entry["warp"] = pred.warp_error or "no corners"
            else:
                writes.append(("warped", "", cv2.cvtColor(warped, cv2.COLOR_RGB2BGR)))
                entry["warp"] = "ok"
        for sub, ext, content in writes:
            target = tmp / sub / output_name(item.key, ext)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            elif not cv2.imwrite(str(target), content):
                raise OSError(f"cannot write {target}")
        if entry.get("warp") == "ok":
            homographies[item.key] = pred.homography.tolist()
        coco_items.append((item.key, pred.frame_size, delivered))
        report.append(entry)

    with atomic_output_dir(out_dir, overwrite) as tmp:
        for sub in ("labels", "overlays") + (("warped",) if spec.name == "gridcorners" else ()):
            (tmp / sub).mkdir()
        batch = run_batch(items, one, "detecting keypoints")
        batch.write(tmp)
        report.extend({"image": key, "error": reason} for key, _path, reason in batch.failures)
        doc = coco_keypoints_document(coco_items, spec.label, names)
        (tmp / "keypoints_coco.json").write_text(json.dumps(doc), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        if spec.name == "gridcorners":
            (tmp / "homographies.json").write_text(json.dumps(homographies), encoding="utf-8")
    complete = sum(1 for r in report if r.get("found") == spec.n_points and not r.get("no_frame"))
    summary = json.dumps(
        {
            "images": batch.done,
            "failed": len(batch.failures),
            "complete": complete,
            "warped": len(homographies),
            "out_dir": out_dir,
        }
    )
    batch.raise_if_failed(out_dir, summary)
    return summary


if __name__ == "__main__":
    from quadratseg.cli import run

    run(predict, name="grid_pose_detection.predict")
