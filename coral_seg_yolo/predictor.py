"""Coral instances from a YOLO-seg model: the function the CLI, the evaluation and the Nuclio handler share.

Methods for large images:
- ``direct``: the whole image at ``imgsz``;
- ``tiling``: non-overlapping windows of ``tile`` px;
- ``overlapping``: windows overlapping by ``overlap``.
With windows, a colony cut by a window border is found in pieces; :func:`merge_across_windows`
joins the pieces, and only those: same-class instances from *different* windows that cover the
same pixels where the windows overlap (IoU > ``merge_iou`` there) or meet along a shared window
border. Two abutting colonies inside one window stay two colonies.

Each instance's pixels come from ultralytics' own masks (the network's mask at its input
resolution) resampled to the instance's box in the image frame (:func:`box_mask_from_input_mask`):
no polygon is traced and re-rasterized, and no full-frame mask is built per instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.errors import QuadratsegError
from quadratseg.instances import Instance

METHODS = ("direct", "tiling", "overlapping")

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in the image frame, max exclusive

# a colony's confidence threshold for a model whose card recommends none (ultralytics' own default);
# a model trained here carries its own (:func:`coral_seg_yolo.evaluate.colony_threshold`)
DEFAULT_CONF = 0.25


def prediction_windows(width: int, height: int, tile: int, overlap: float) -> list[Window]:
    """The windows (x0, y0, x1, y1) that ``tiling`` (overlap 0) and ``overlapping`` predict on."""
    from coral_seg_yolo.tiles import tile_origins

    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in tile_origins(height, tile, overlap)
        for x in tile_origins(width, tile, overlap)
    ]


def letterbox_transform(orig_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[float, float, float]:
    """(gain, pad_x, pad_y) of ultralytics' letterbox: input coordinate = gain * image coordinate + pad.

    Coordinates are continuous (pixel k spans [k, k + 1)); ``orig_hw`` and ``input_hw`` are (H, W).
    """
    gain = min(input_hw[0] / orig_hw[0], input_hw[1] / orig_hw[1])
    pad_x = (input_hw[1] - round(orig_hw[1] * gain)) / 2
    pad_y = (input_hw[0] - round(orig_hw[0] * gain)) / 2
    return gain, pad_x, pad_y


def box_mask_from_input_mask(
    input_mask: np.ndarray,
    box_xyxy: tuple[int, int, int, int],
    transform: tuple[float, float, float],
    origin_xy: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """An instance's bool mask (h, w) over its integer box in the image frame, resampled
    (bilinear, > 0.5) from the network's mask at its input resolution.

    Args:
        input_mask: float or bool (h_in, w_in) crop of the mask at input resolution whose top-left
            input pixel is ``origin_xy`` (the whole mask: (0, 0)).
        box_xyxy: (x0, y0, x1, y1) image pixels, max exclusive.
        transform: (gain, pad_x, pad_y) of :func:`letterbox_transform`.
    """
    x0, y0, x1, y1 = box_xyxy
    gain, pad_x, pad_y = transform
    # dst pixel j (image x = x0 + j, centre x0 + j + 0.5) samples input index
    # gain * (x0 + j + 0.5) + pad_x - 0.5 - origin_x.
    matrix = np.array(
        [
            [gain, 0.0, gain * (x0 + 0.5) + pad_x - 0.5 - origin_xy[0]],
            [0.0, gain, gain * (y0 + 0.5) + pad_y - 0.5 - origin_xy[1]],
        ]
    )
    src = np.ascontiguousarray(input_mask, dtype=np.float32)
    out = cv2.warpAffine(
        src,
        matrix,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return out > 0.5


def _contact(a: Instance, b: Instance, wa: Window, wb: Window, merge_iou: float) -> bool:
    """Whether two pieces found in windows ``wa`` and ``wb`` belong to one colony cut by a border."""
    ox0, oy0 = max(wa[0], wb[0]), max(wa[1], wb[1])
    ox1, oy1 = min(wa[2], wb[2]), min(wa[3], wb[3])
    if ox1 > ox0 and oy1 > oy0:  # the windows overlap: the pieces must agree there
        region = (ox0, oy0, ox1, oy1)
        ma, mb = _within(a, region), _within(b, region)
        union = np.count_nonzero(ma | mb)
        return union > 0 and np.count_nonzero(ma & mb) / union > merge_iou
    # adjacent windows: pieces must meet along the shared border for most of their border run
    if ox0 == ox1 and oy1 > oy0:  # vertical seam at x = ox0
        left, right = (a, b) if wa[2] == ox0 else (b, a)
        ra = _within(left, (ox0 - 1, oy0, ox0, oy1))[:, 0]
        rb = _within(right, (ox0, oy0, ox0 + 1, oy1))[:, 0]
    elif oy0 == oy1 and ox1 > ox0:  # horizontal seam at y = oy0
        top, bottom = (a, b) if wa[3] == oy0 else (b, a)
        ra = _within(top, (ox0, oy0 - 1, ox1, oy0))[0]
        rb = _within(bottom, (ox0, oy0, ox1, oy0 + 1))[0]
    else:
        return False
    shorter = min(np.count_nonzero(ra), np.count_nonzero(rb))
    return shorter > 0 and np.count_nonzero(ra & rb) >= 0.5 * shorter


def _within(inst: Instance, region: Window) -> np.ndarray:
    """The instance's pixels inside ``region`` (x0, y0, x1, y1), bool (y1 - y0, x1 - x0)."""
    x0, y0, x1, y1 = region
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    inst.shifted(-x0, -y0).paint(out, True)
    return out


def _boxes_near(a: Instance, b: Instance) -> bool:
    ax0, ay0, ax1, ay1 = a.xyxy
    bx0, by0, bx1, by1 = b.xyxy
    return ax0 <= bx1 and bx0 <= ax1 and ay0 <= by1 and by0 <= ay1


def merge_across_windows(
    found: list[tuple[Window, list[Instance]]], merge_iou: float = 0.3
) -> list[Instance]:
    """Join the pieces of colonies cut by window borders (see the module docstring).

    Args:
        found: per window (x0, y0, x1, y1 in the image frame), its instances in the image frame.
        merge_iou: IoU, inside the windows' overlap, above which two pieces are one colony.

    Returns:
        Instances in the image frame; a joined colony has the union of its pieces' pixels, the
        highest score and ``extra["pieces"]``.
    """
    items = [(w, inst) for w, instances in found for inst in instances]
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (wa, a) in enumerate(items):
        for j in range(i + 1, len(items)):
            wb, b = items[j]
            if wa == wb or a.label != b.label or not _boxes_near(a, b) or root(i) == root(j):
                continue
            if _contact(a, b, wa, wb, merge_iou):
                parent[root(j)] = root(i)
    groups: dict[int, list[Instance]] = {}
    for i, (_, inst) in enumerate(items):
        groups.setdefault(root(i), []).append(inst)
    merged = []
    for pieces in groups.values():
        if len(pieces) == 1:
            merged.append(pieces[0])
            continue
        boxes = np.array([p.xyxy for p in pieces])
        x0, y0 = boxes[:, :2].min(axis=0)
        x1, y1 = boxes[:, 2:].max(axis=0)
        union = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for p in pieces:
            p.shifted(-x0, -y0).paint(union, True)
        best = max(pieces, key=lambda p: p.score)
        extra = {**best.extra, "pieces": len(pieces)}
        merged.append(Instance.from_mask(best.label, best.score, union, (int(x0), int(y0)), extra))
    return merged


def card_windows(weights: str | Path) -> dict[str, Any]:
    """How to predict whole warped quadrats with a model, from its card: overlapping windows of its
    training tile when it was trained on tiles (``{"method": "overlapping", "tile": 640}``), else the
    whole image (``{"method": "direct"}``); :class:`SegPredictor` takes them as keywords."""
    from quadratseg.model_card import read_model_card

    tile = int(read_model_card(weights).get("tile") or 0)
    return {"method": "overlapping", "tile": tile} if tile else {"method": "direct"}


def colony_conf(weights: str | Path, conf: float | None = None) -> tuple[float, str]:
    """(threshold, where it came from) of a model's colonies: ``conf`` when given (``"given"``), else
    its card's ``conf`` (``"model card"``), else :data:`DEFAULT_CONF` (``"default"``).

    Raises:
        QuadratsegError: the card's ``conf`` is not a number in [0, 1].
    """
    from quadratseg.model_card import model_card_path, read_model_card

    if conf is not None:
        return float(conf), "given"
    card = read_model_card(weights).get("conf")
    if card is None:
        return DEFAULT_CONF, "default"
    if isinstance(card, bool) or not isinstance(card, int | float) or not 0.0 <= card <= 1.0:
        raise QuadratsegError(
            f"{model_card_path(weights)}: conf must be a number in [0, 1], got {card!r}; fix or remove it"
        )
    return float(card), "model card"


class SegPredictor:
    """A trained YOLO-seg model (.pt or .onnx) with its class names.

    ``conf`` left None is the colony threshold its model card recommends (``conf``: the confidence
    at which ultralytics' validator found the colonies' mask F1 highest on the validation photos,
    written when the model was trained), else :data:`DEFAULT_CONF`; ``conf_source`` says which.
    """

    def __init__(
        self,
        weights: str | Path,
        imgsz: int | None = None,
        conf: float | None = None,
        device: str = "auto",
        method: str = "direct",
        tile: int = 640,
        overlap: float = 0.2,
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
        self.conf, self.conf_source = colony_conf(weights, conf)
        self.device = None if device == "auto" else device
        if method not in METHODS:
            raise QuadratsegError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method, self.tile, self.overlap = method, tile, overlap  # predict()'s defaults

    def _predict_arrays(self, images_bgr: list[np.ndarray], conf: float) -> list[list[Instance]]:
        results = self.model.predict(
            images_bgr, imgsz=self.imgsz, conf=conf, device=self.device, verbose=False
        )
        return [self._instances(result) for result in results]

    def _instances(self, result) -> list[Instance]:
        """Instances of one ultralytics result, each mask resampled from ``result.masks.data``
        (input resolution) to its box in the image frame."""
        if result.masks is None or result.boxes is None or len(result.boxes) == 0:
            return []
        orig_h, orig_w = result.orig_shape
        data = result.masks.data  # (N, h_in, w_in) at the network's input resolution
        transform = letterbox_transform((orig_h, orig_w), tuple(data.shape[1:]))
        gain, pad_x, pad_y = transform
        instances = []
        for k, (xyxy, cls, score) in enumerate(
            zip(
                result.boxes.xyxy.tolist(), result.boxes.cls.tolist(), result.boxes.conf.tolist(), strict=True
            )
        ):
            x0, y0 = max(int(np.floor(xyxy[0])), 0), max(int(np.floor(xyxy[1])), 0)
            x1, y1 = min(int(np.ceil(xyxy[2])), orig_w), min(int(np.ceil(xyxy[3])), orig_h)
            if x1 <= x0 or y1 <= y0:
                continue
            # the input-resolution crop that covers the box, one pixel of margin for bilinear
            u0 = max(int(np.floor(gain * x0 + pad_x)) - 1, 0)
            v0 = max(int(np.floor(gain * y0 + pad_y)) - 1, 0)
            u1 = min(int(np.ceil(gain * x1 + pad_x)) + 1, data.shape[2])
            v1 = min(int(np.ceil(gain * y1 + pad_y)) + 1, data.shape[1])
            crop = data[k, v0:v1, u0:u1].float().cpu().numpy()
            box_mask = box_mask_from_input_mask(crop, (x0, y0, x1, y1), transform, (u0, v0))
            inst = Instance.from_mask(self.names[int(cls)], float(score), box_mask, (x0, y0))
            if inst is not None:
                instances.append(inst)
        return instances

    def predict(
        self,
        image_rgb: np.ndarray,
        method: str | None = None,
        tile: int | None = None,
        overlap: float | None = None,
        conf: float | None = None,
        merge_iou: float = 0.3,
    ) -> list[Instance]:
        """Instances of one uint8 RGB image (H, W, 3), coordinates in the image frame; ``method``,
        ``tile``, ``overlap`` and ``conf`` default to the predictor's."""
        method = self.method if method is None else method
        tile = self.tile if tile is None else tile
        overlap = self.overlap if overlap is None else overlap
        if method not in METHODS:
            raise QuadratsegError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        conf = self.conf if conf is None else conf
        bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)  # ultralytics takes BGR
        h, w = bgr.shape[:2]
        if method == "direct":
            return self._predict_arrays([bgr], conf)[0]
        windows = prediction_windows(w, h, tile, 0.0 if method == "tiling" else overlap)
        crops = [bgr[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
        found = [
            (window, [inst.shifted(window[0], window[1]) for inst in instances])
            for window, instances in zip(windows, self._predict_arrays(crops, conf), strict=True)
        ]
        return merge_across_windows(found, merge_iou)
