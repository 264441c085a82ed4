"""Coral instances from a YOLO-seg model: the function the CLI, the evaluation and the Nuclio handler share.

Methods for large images:
- ``direct``: the whole image at ``imgsz``;
- ``tiling``: non-overlapping tiles of ``tile`` px, predictions shifted back;
- ``overlapping``: tiles with ``overlap``; instances cut by tile borders are merged: same-class
  instances whose masks overlap (IoU > ``merge_iou``) or touch across a border become one
  (mask union, highest score).

Polygons come from ultralytics' ``masks.xy`` (traced on the low-resolution masks and scaled
to the image), so no full-resolution mask is built unless a CVAT ``mask`` answer needs it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.geometry import polygon_to_mask
from quadratseg.instances import Instance

METHODS = ("direct", "tiling", "overlapping")


def _tiles(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    from coral_seg_yolo.prepare_data import tile_origins

    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in tile_origins(height, tile, overlap)
        for x in tile_origins(width, tile, overlap)
    ]


def merge_instances(
    instances: list[Instance], frame_size: tuple[int, int], merge_iou: float = 0.3
) -> list[Instance]:
    """Merge same-class instances that overlap (IoU > merge_iou) or touch; the highest score wins."""
    if len(instances) < 2:
        return instances
    order = sorted(instances, key=lambda i: -i.score)
    kernel = np.ones((3, 3), np.uint8)
    kept: list[tuple[Instance, np.ndarray]] = []
    for inst in order:
        mask = polygon_to_mask(inst.polygon_xy, frame_size)
        if not mask.any():
            continue
        grown = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
        for k, (other, other_mask) in enumerate(kept):
            if other.label != inst.label:
                continue
            inter = (mask & other_mask).sum()
            iou = inter / max((mask | other_mask).sum(), 1)
            if iou > merge_iou or (grown & other_mask).sum() > 0.5 * min(mask.sum(), other_mask.sum()) ** 0.5:
                union = mask | other_mask
                contours, _ = cv2.findContours(
                    union.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                )
                largest = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float64) + 0.5
                kept[k] = (Instance(other.label, other.score, largest), union)
                break
        else:
            kept.append((inst, mask))
    return [inst for inst, _ in kept]


class SegPredictor:
    """A trained YOLO-seg model (.pt or .onnx) with its class names."""

    def __init__(
        self, weights: str | Path, imgsz: int | None = None, conf: float = 0.25, device: str = "auto"
    ):
        from quadratseg.yolo_train import build_model

        self.model = build_model(weights)
        self.names = {int(k): v for k, v in (self.model.names or {}).items()}
        if not self.names:
            raise QuadratsegError(
                f"{weights} carries no class names; export it from a trained YOLO-seg model"
            )
        overrides = getattr(self.model, "overrides", {}) or {}
        self.imgsz = imgsz or int(overrides.get("imgsz", 640) or 640)
        self.conf = conf
        self.device = None if device == "auto" else device

    def _predict_arrays(self, images_bgr: list[np.ndarray], conf: float) -> list[list[Instance]]:
        results = self.model.predict(
            images_bgr, imgsz=self.imgsz, conf=conf, device=self.device, verbose=False
        )
        out = []
        for result in results:
            instances = []
            if result.masks is not None and result.boxes is not None:
                for ring, cls, score in zip(
                    result.masks.xy, result.boxes.cls.tolist(), result.boxes.conf.tolist(), strict=True
                ):
                    if len(ring) >= 3:
                        instances.append(
                            Instance(self.names[int(cls)], float(score), np.asarray(ring, dtype=np.float64))
                        )
            out.append(instances)
        return out

    def predict(
        self,
        image_rgb: np.ndarray,
        method: str = "direct",
        tile: int = 640,
        overlap: float = 0.2,
        conf: float | None = None,
        merge_iou: float = 0.3,
    ) -> list[Instance]:
        """Instances of one uint8 RGB image (H, W, 3), coordinates in the image frame."""
        if method not in METHODS:
            raise QuadratsegError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        conf = self.conf if conf is None else conf
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])
        h, w = bgr.shape[:2]
        if method == "direct":
            return self._predict_arrays([bgr], conf)[0]
        boxes = _tiles(w, h, tile, 0.0 if method == "tiling" else overlap)
        crops = [bgr[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
        instances = []
        for (x0, y0, _, _), found in zip(boxes, self._predict_arrays(crops, conf), strict=True):
            offset = np.array([x0, y0], dtype=np.float64)
            instances.extend(Instance(i.label, i.score, i.polygon_xy + offset) for i in found)
        return merge_instances(instances, (w, h), merge_iou)
