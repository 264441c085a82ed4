"""CLI: train YOLO11-seg on a prepared coral dataset.

python -m coral_seg_yolo.train --data outputs/coralseg/data.yaml --epochs 5 --imgsz 640

Beside the weights it writes the model card (``model_card.json``, :mod:`quadratseg.model_card`):
imgsz, the warp size of the training quadrats, tile, classes and level, which pipeline.process
and coral_seg_yolo.predict read to feed the model quadrats at the scale it learned, and the colony
threshold (``conf``) measured on the val split, which they use when none is given.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from coral_seg_yolo.predictor import DEFAULT_CONF
from coral_seg_yolo.prepare_data import QUADRATSEG_KEY
from quadratseg.errors import QuadratsegError
from quadratseg.model_card import model_card_path, read_model_card, write_model_card
from quadratseg.taxonomy import LEVELS, load_taxonomy
from quadratseg.yolo_train import run_training

CONFIG = Path(__file__).parent / "configs" / "coralseg.yaml"
logger = logging.getLogger(__name__)


def train(
    data: str,
    project: str | None = None,
    name: str = "coralseg",
    config: str | None = None,
    resume: bool = False,
    model: str | None = None,
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    workers: int | None = None,
    patience: int | None = None,
    device: Any = None,
    from_scratch: bool = False,
    tensorboard: bool = True,
    mlflow: str | None = None,
    args: dict[str, Any] | str | None = None,
) -> str:
    """Train YOLO11-seg from the experiment YAML; the flags override it.

    Args:
        data: data.yaml written by coral_seg_yolo.prepare_data.
        project: folder of the runs (default: QUADRATSEG_OUTPUTS_DIR/runs/seg).
        name: run name.
        config: experiment YAML (default: coral_seg_yolo/configs/coralseg.yaml).
        resume: continue the run's last.pt.
        model: architecture YAML (yolo11{n,s,m,l,x}-seg.yaml) or a local .pt to start from (a relative
            path missing here is looked up in QUADRATSEG_MODELS_DIR).
        epochs: training epochs.
        imgsz: training image size.
        batch: batch size.
        workers: data-loading workers.
        patience: early-stopping patience in epochs.
        device: cpu, a GPU (0) or several (0,1: ultralytics' own DDP); default QUADRATSEG_DEVICE.
        from_scratch: start an architecture YAML from random weights. Without it the YAML starts from
            its COCO weights in QUADRATSEG_MODELS_DIR (yolo11{n,s,m,l,x}-seg.pt; listed by
            python -m quadratseg.list_weights) and a missing file is an error.
        tensorboard: log the curves for TensorBoard in the run folder (--notensorboard turns it off;
            open with tensorboard --logdir RUN_FOLDER).
        mlflow: MLflow tracking URI to log to as well (needs the optional mlflow package).
        args: any other ultralytics train arguments as JSON, e.g. --args '{"lr0": 0.01}'.

    Returns:
        JSON with the weights paths and the resolved configuration.
    """
    from quadratseg.cli import current_settings, output_path, weights_path

    settings = current_settings()
    overrides = {
        "model": weights_path(model, settings),
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "workers": workers,
        "patience": patience,
    }
    project_dir = output_path(project, "runs/seg", settings)
    result = run_training(
        config or CONFIG,
        data,
        project_dir,
        name,
        resume,
        overrides,
        args,
        settings,
        from_scratch=from_scratch,
        tensorboard=tensorboard,
        mlflow=mlflow,
        device=device,
    )
    run_dir = Path(result["best"]).parent.parent
    write_trained_card(data, result["best"], int(result["config"]["imgsz"]), run_dir, device)
    result["model_card"] = str(model_card_path(result["best"]))
    if result.get("last") and Path(result["last"]).parent != Path(result["best"]).parent:
        write_model_card(result["last"], read_model_card(result["best"]))
    return json.dumps(result, indent=2, default=str)


def write_trained_card(
    data_yaml: str | Path, weights: str | Path, imgsz: int, out_dir: str | Path, device: Any = None
) -> dict[str, Any]:
    """Write and return the model card of a YOLO-seg model just trained at ``imgsz`` on a prepared
    layout: :func:`layout_card` first (kept if what follows fails), then ``conf``, the colony
    threshold measured on the layout's ``val`` split (:func:`coral_seg_yolo.evaluate.colony_threshold`,
    its figures in ``conf_measured``), which :class:`coral_seg_yolo.predictor.SegPredictor` uses when
    no threshold is given. ``conf`` is None (a warning says so) when the model outlines no colony of
    the split at any confidence: predictors then use :data:`coral_seg_yolo.predictor.DEFAULT_CONF`.
    The card is the folder's (``model_card.json``): it describes ``best.pt``, which it was measured on.
    """
    from coral_seg_yolo.evaluate import colony_threshold

    # no threshold of an earlier run in this folder survives a measurement that fails
    write_model_card(weights, {**layout_card(data_yaml, imgsz), "conf": None, "conf_measured": None})
    on = "auto" if device is None else str(device)
    threshold = colony_threshold(str(weights), str(data_yaml), "val", imgsz, Path(out_dir), on)
    if threshold["conf"] is None:
        logger.warning(
            "%s outlines no colony of the val split at any confidence: its card recommends no threshold "
            "(predictors use %s)",
            weights,
            DEFAULT_CONF,
        )
    write_model_card(weights, {"conf": threshold["conf"], "conf_measured": threshold})
    return read_model_card(weights)


def median_image_width(folder: str | Path) -> int | None:
    """The median width in px of the images of a folder (headers only), None when it has none."""
    from PIL import Image

    from quadratseg.images import list_images

    widths = []
    for path in list_images(folder):
        with Image.open(path) as image:
            widths.append(image.width)
    return int(np.median(widths)) if widths else None


def layout_card(data_yaml: str | Path, imgsz: int) -> dict[str, Any]:
    """The model card of a YOLO-seg model trained at ``imgsz`` on a prepared layout: task, imgsz,
    warp_size (the side of the training quadrats: the training images' median width, or, for a
    tiled layout, the quadrats' width recorded by prepare_data), tile (0: whole quadrats), classes
    and level.

    Raises:
        QuadratsegError: the data.yaml cannot be read.
    """
    path = Path(data_yaml)
    if not path.is_file():
        raise QuadratsegError(f"{path} does not exist; write it with coral_seg_yolo.prepare_data")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    names = data.get("names") or {}
    classes = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    layout = data.get(QUADRATSEG_KEY) or {}
    tile = int(layout.get("tile") or 0)
    train_dir = Path(data.get("path") or path.parent) / str(data.get("train", "images/train"))
    measured = median_image_width(train_dir) if train_dir.is_dir() else None
    level = layout.get("level") or next(
        (lv for lv in LEVELS if set(classes) <= set(load_taxonomy().classes(lv))), ""
    )
    return {
        "task": "coralseg",
        "imgsz": int(imgsz),
        "warp_size": layout.get("warp_size") if tile else measured,
        "tile": tile,
        "classes": classes,
        "level": level,
    }


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="coral_seg_yolo.train")
