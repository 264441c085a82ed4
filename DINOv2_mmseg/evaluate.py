"""CLI: score a trained segmentor on a split: per-class IoU/Acc table, mIoU, confusion matrix image.

    python -m DINOv2_mmseg.evaluate CONFIG CHECKPOINT [--split val] [--data-root DIR] [--out-dir DIR]

The figures are MMSeg's ``IoUMetric`` definitions (``DINOv2_mmseg.metrics``), computed over
the split's full-resolution masks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from DINOv2_mmseg.metrics import confusion_matrix, format_table, metrics_from_confusion, save_confusion_png
from quadratseg.errors import QuadratsegError
from quadratseg.images import read_image_rgb

logger = logging.getLogger(__name__)


def split_pairs(data_root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label mask) paths of a prepared split, paired by stem."""
    root = Path(data_root) / split
    images = {p.stem: p for p in sorted((root / "data").glob("*")) if p.is_file()}
    labels = {p.stem: p for p in sorted((root / "labels").glob("*.png"))}
    if not images:
        raise QuadratsegError(f"no images in {root / 'data'}; prepare the data or choose another --split")
    unpaired = sorted(set(images) ^ set(labels))
    if unpaired:
        raise QuadratsegError(f"{root}: images and masks do not pair up, e.g. {unpaired[:3]}")
    return [(images[s], labels[s]) for s in sorted(images)]


def evaluate_segmenter(
    segmenter: Any, pairs: list[tuple[Path, Path]], out_dir: Path | None = None
) -> dict[str, Any]:
    """Confusion matrix and metrics of ``segmenter`` over (image, mask) pairs; optional outputs."""
    n = len(segmenter.classes)
    cm = np.zeros((n, n), dtype=np.int64)
    for image_path, mask_path in pairs:
        image = read_image_rgb(image_path)
        gt = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)  # a class-index PNG, not a photo
        if gt is None:
            raise QuadratsegError(f"cannot read the class map {mask_path}")
        pred = segmenter.predict_classes(image)
        cm += confusion_matrix(pred, gt, n)
    metrics = metrics_from_confusion(cm, segmenter.classes)
    metrics["images"] = len(pairs)
    metrics["confusion_matrix"] = cm.tolist()
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics["confusion_matrix_png"] = save_confusion_png(
            cm, segmenter.classes, str(out_dir / "confusion_matrix.png")
        )
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def evaluate(
    config: str,
    checkpoint: str,
    split: str = "val",
    data_root: str | None = None,
    out_dir: str | None = None,
    device: str = "auto",
    trust_checkpoint: bool = False,
) -> str:
    """Per-class IoU/Acc, mIoU, mAcc and aAcc of a checkpoint on a prepared split, and a confusion matrix.

    Args:
        config: the MMSeg config the checkpoint was trained with.
        checkpoint: best_mIoU_epoch_N.pth from train, or a deployed best_segformer.pth.
        split: train, val or test.
        data_root: prepared dataset (default: the config's data_root).
        out_dir: where metrics.json and confusion_matrix.png go (default: <checkpoint dir>/eval_<split>).
        device: cpu or cuda:N; auto: QUADRATSEG_DEVICE.
        trust_checkpoint: load a checkpoint that holds Python objects beyond tensors and mmengine's own
            types with full unpickling (it can run code: trusted files only).

    Returns:
        The per-class table followed by the metrics as JSON.
    """
    from DINOv2_mmseg.predictor import SemanticSegmenter
    from DINOv2_mmseg.runner import load_config
    from quadratseg.cli import current_settings, weights_path
    from quadratseg.cli import device as choose_device

    settings = current_settings()
    checkpoint, device = weights_path(checkpoint, settings), choose_device(device, settings)
    cfg = load_config(config, data_root=data_root)
    root = data_root or cfg.get("data_root")
    segmenter = SemanticSegmenter(cfg, checkpoint, device, bool(trust_checkpoint))
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval_{split}"
    metrics = evaluate_segmenter(segmenter, split_pairs(root, split), out)
    table = format_table(metrics)
    logger.info("%s split, %d images:\n%s", split, metrics["images"], table)
    summary = {k: v for k, v in metrics.items() if k != "confusion_matrix"}
    return table + "\n" + json.dumps(summary, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(evaluate, name="DINOv2_mmseg.evaluate")
