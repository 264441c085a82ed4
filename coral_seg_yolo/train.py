"""CLI: train YOLO11-seg on a prepared coral dataset.

python -m coral_seg_yolo.train --data outputs/coralseg/data.yaml --epochs 5 --imgsz 640
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quadratseg.yolo_train import run_training

CONFIG = Path(__file__).parent / "configs" / "coralseg.yaml"


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
    return json.dumps(result, indent=2, default=str)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="coral_seg_yolo.train")
