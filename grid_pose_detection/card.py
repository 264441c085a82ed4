"""The card of a trained pose model (:mod:`quadratseg.model_card`): what every consumer reads.

``grid_pose_detection.train`` writes, beside ``best.pt``:

- ``task``, ``imgsz`` (the training size), for the grid model ``warp_size`` (the width of the warped
  quadrats it was trained on, the median over the training images);
- ``template``: the keypoint template copied beside the weights as ``kp_template.npy`` (the one given,
  else the task's built-in one);
- ``max_cost``: the task's matching threshold;
- ``conf``: the box threshold that completes the most validation images, where the data allow.
  Each candidate of ``CONF_CANDIDATES`` predicts the val split (with refinement, the card's template,
  ``kpt_conf`` 0.5); an image succeeds when every annotated point has a prediction within
  ``SUCCESS_SHARE`` of the points' extent and no prediction is farther than that from every annotated
  point. The best success rate wins, ties going to the highest threshold (fewest false detections).
  With no val image, or no candidate completing one, no ``conf`` is written and ``thresholds.how``
  says why (consumers then use 0.25). ``thresholds`` records the split, the images and the success
  rate of each candidate.

Examples:
    >>> choose_conf({0.25: 0.9, 0.05: 1.0, 0.01: 1.0})
    0.05
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from grid_pose_detection.tasks import PoseTask, get_task
from quadratseg.atomic import atomic_write_json
from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import load_template
from quadratseg.model_card import model_card_path, read_model_card, write_model_card

CONF_CANDIDATES = (0.5, 0.25, 0.1, 0.05, 0.01, 0.001)
SUCCESS_SHARE = 0.02  # of the annotated points' extent (about the quadrat side)
TEMPLATE_NAME = "kp_template.npy"
MAX_SIZE_IMAGES = 50  # training images read for the warp size


def choose_conf(success_by_conf: dict[float, float]) -> float | None:
    """The threshold with the highest success rate (ties: the highest threshold); None when none
    succeeds on any image."""
    best = max(success_by_conf.values(), default=0.0)
    if best <= 0.0:
        return None
    return max(conf for conf, rate in success_by_conf.items() if rate == best)


def _split_images(data_yaml: Path, split: str) -> list[Path]:
    """Images of a split of an ultralytics data.yaml (a folder of images)."""
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    if not data.get(split):
        return []
    folder = Path(data.get("path") or data_yaml.parent) / str(data[split])
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes) if folder.is_dir() else []


def _label_points(image: Path, size: tuple[int, int]) -> np.ndarray:
    """Annotated points (N, 2) px of a pose label file (any layout; points with v > 0)."""
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images")
    label = Path(*parts[:index], "labels", *parts[index + 1 :]).with_suffix(".txt")
    points = []
    for line in label.read_text(encoding="utf-8").splitlines() if label.is_file() else []:
        values = np.array(line.split()[5:], dtype=np.float64).reshape(-1, 3)
        points += [(x * size[0], y * size[1]) for x, y, v in values if v > 0]
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def image_success(predicted_xy: np.ndarray, truth_xy: np.ndarray) -> bool:
    """Every annotated point (N, 2) has a prediction (K, 2, NaN = missing) within ``SUCCESS_SHARE`` of
    the annotated extent, and no prediction lies farther than that from every annotated point. An
    image with no annotated point (a background image: a frame without a grid) is completed when
    nothing is found there."""
    found = predicted_xy[np.isfinite(predicted_xy).all(axis=1)]
    if len(truth_xy) == 0:
        return len(found) == 0
    if len(found) == 0:
        return False
    tolerance = SUCCESS_SHARE * float((truth_xy.max(axis=0) - truth_xy.min(axis=0)).max())
    gaps = np.linalg.norm(found[:, None, :] - truth_xy[None, :, :], axis=2)
    return bool((gaps.min(axis=0) <= tolerance).all() and (gaps.min(axis=1) <= tolerance).all())


def recommend_conf(weights: Path, task: PoseTask, data_yaml: Path, split: str = "val") -> dict[str, Any]:
    """The ``thresholds`` record (and ``conf`` when chosen) from ``split`` of ``data_yaml``."""
    from grid_pose_detection.predictor import PosePredictor
    from quadratseg.images import read_image_rgb

    images = _split_images(data_yaml, split)
    record: dict[str, Any] = {"split": split, "images": len(images), "candidates": list(CONF_CANDIDATES)}
    if not images:
        record["how"] = f"not chosen: the {split} split of {data_yaml} has no image"
        return {"thresholds": record}
    predictor = PosePredictor(weights, task)
    photos = []
    for path in images:
        rgb = read_image_rgb(path)
        photos.append((rgb, _label_points(path, (rgb.shape[1], rgb.shape[0]))))
    success = {}
    for conf in CONF_CANDIDATES:
        predictor.conf = conf
        hits = sum(image_success(predictor.predict([rgb])[0].keypoints_xy, truth) for rgb, truth in photos)
        success[conf] = round(hits / len(photos), 4)
    record["success_by_conf"] = {str(c): r for c, r in success.items()}
    chosen = choose_conf(success)
    if chosen is None:
        record["how"] = (
            f"not chosen: no box threshold of {list(CONF_CANDIDATES)} completed any of the {len(photos)} "
            f"{split} images (every annotated point found within {SUCCESS_SHARE:.0%} of the quadrat, no "
            "stray point); consumers use 0.25"
        )
        return {"thresholds": record}
    record["how"] = (
        f"the box threshold that completed the most {split} images ({success[chosen]:.0%} of {len(photos)}: "
        f"every annotated point found within {SUCCESS_SHARE:.0%} of the quadrat, no stray point); ties go "
        "to the highest threshold"
    )
    return {"conf": chosen, "thresholds": record}


def _warp_size(data_yaml: Path) -> int | None:
    """Median width of the training images (the warped quadrats a grid model learns from)."""
    from PIL import Image

    widths = []
    for path in _split_images(data_yaml, "train")[:MAX_SIZE_IMAGES]:
        with Image.open(path) as image:
            widths.append(image.size[0])
    return int(np.median(widths)) if widths else None


def frame_check_statement() -> dict[str, Any]:
    """The thresholds by which a corners prediction is taken to show no frame (the refinement's frame
    check, :func:`grid_pose_detection.predictor.corner_warp`), as a model card states them; the
    predictor applies the card's (:func:`grid_pose_detection.predictor.pose_settings`)."""
    from grid_pose_detection.predictor import DEFAULT_FRAME_CHECK

    return {
        **DEFAULT_FRAME_CHECK.statement(),
        "calibrated_on": "bench_grid.py --frame-check (varied world) and the 7 real CoralSCOP photos",
    }


def write_pose_card(
    weights: str | Path,
    task: str,
    data_yaml: str | Path,
    template: str | None = None,
    choose_thresholds: bool = True,
    imgsz: int | None = None,
) -> dict[str, Any]:
    """Write the card (and ``kp_template.npy``) beside ``weights`` of a model trained on ``data_yaml``
    (see the module docstring); returns the card.

    Raises:
        QuadratsegError: the template is not the task's shape.
    """
    weights, data_yaml, spec = Path(weights), Path(data_yaml), get_task(task)
    source = load_template(template, spec.n_points) if template else spec.template()
    target = weights.parent / TEMPLATE_NAME
    if template and Path(template).resolve() != target.resolve():
        shutil.copyfile(template, target)
    elif not template:
        np.save(target, source)
    if imgsz is None:
        from quadratseg.yolo_train import build_model

        imgsz = int(build_model(weights).overrides.get("imgsz") or 0) or None
    card: dict[str, Any] = {
        "task": spec.name,
        "imgsz": imgsz,
        "template": TEMPLATE_NAME,
        "max_cost": spec.max_cost,
    }
    if spec.name == "gridcorners":
        card["frame_check"] = frame_check_statement()
    if spec.name == "gridpose":
        side = _warp_size(data_yaml)
        if side is None:
            raise QuadratsegError(f"{data_yaml}: no training image to take the warped quadrat size from")
        card["warp_size"] = side
    atomic_write_json(model_card_path(weights), card)  # a new card: nothing of an earlier run's stays
    if choose_thresholds:
        write_model_card(weights, recommend_conf(weights, spec, data_yaml))
    return read_model_card(weights)
