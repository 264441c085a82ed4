"""Semantic segmentation metrics from a confusion matrix, defined as MMSeg's ``IoUMetric`` does.

Per class: IoU = intersection / union, Acc = intersection / ground-truth area; a class with no
union (absent from both) has IoU NaN and is left out of the mean (``nanmean``), as in MMSeg.
Pixels labelled ``ignore_index`` (255: padding, unlabelled) are not counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """Counts (num_classes, num_classes) int64: rows = ground truth, columns = prediction."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    keep = gt != ignore_index
    g = gt[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if g.size and (g.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"class index outside 0..{num_classes - 1}")
    return np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """aAcc, mIoU, mAcc (percent, like MMSeg) and per-class IoU/Acc from a confusion matrix."""
    cm = cm.astype(np.float64)
    inter = np.diag(cm)
    gt_area = cm.sum(axis=1)
    pred_area = cm.sum(axis=0)
    union = gt_area + pred_area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
        acc = inter / gt_area
    total = cm.sum()

    def pct(v: float) -> float | None:
        return None if np.isnan(v) else round(100.0 * float(v), 2)

    return {
        "aAcc": pct(inter.sum() / total) if total else None,
        "mIoU": pct(np.nanmean(iou)) if np.isfinite(iou).any() else None,
        "mAcc": pct(np.nanmean(acc)) if np.isfinite(acc).any() else None,
        "per_class": {
            name: {"IoU": pct(iou[k]), "Acc": pct(acc[k]), "pixels": int(gt_area[k])}
            for k, name in enumerate(class_names)
        },
    }


def format_table(metrics: dict[str, Any]) -> str:
    """The per-class IoU/Acc table as text (like MMSeg's log)."""
    rows = [("Class", "IoU", "Acc")]
    rows += [
        (
            name,
            "nan" if m["IoU"] is None else f"{m['IoU']:.2f}",
            "nan" if m["Acc"] is None else f"{m['Acc']:.2f}",
        )
        for name, m in metrics["per_class"].items()
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>7}  {c:>7}" for a, b, c in rows]
    lines.append(
        f"{'mean':<{width}}  {metrics['mIoU']!s:>7}  {metrics['mAcc']!s:>7}   aAcc {metrics['aAcc']}"
    )
    return "\n".join(lines)


def save_confusion_png(cm: np.ndarray, class_names: list[str], path: str) -> str:
    """Row-normalized confusion matrix as an image (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    for i in range(n):
        for j in range(n):
            if norm[i, j] >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_title("confusion matrix (rows: ground truth, normalized)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
