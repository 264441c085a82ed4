"""CLI: train YOLO11-pose for ``gridcorners`` or ``gridpose``.

python -m grid_pose_detection.train gridpose --data outputs/pose/gridpose/data.yaml --epochs 5 --imgsz 320

After training, the model's card (``model_card.json``) and template (``kp_template.npy``) are written
beside the weights, with the box threshold chosen on the val split where the data allow
(:mod:`grid_pose_detection.card`); every consumer of the weights reads them.
"""

from __future__ import annotations

import json
from typing import Any

from grid_pose_detection.card import write_pose_card
from grid_pose_detection.tasks import get_task
from quadratseg.yolo_train import run_training


def train(
    task: str,
    data: str,
    project: str | None = None,
    name: str | None = None,
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
    args: dict[str, Any] | None = None,
    template: str | None = None,
    choose_thresholds: bool = True,
) -> str:
    """Train a pose model from the task's experiment YAML; the flags override it.

    Args:
        task: gridcorners or gridpose.
        data: data.yaml written by grid_pose_detection.prepare_data.
        project: folder of the runs (default: QUADRATSEG_OUTPUTS_DIR/runs/pose).
        name: run name (default: the task).
        config: experiment YAML (default: grid_pose_detection/configs/<task>.yaml).
        resume: continue the run's last.pt.
        model: architecture YAML (yolo11s-pose.yaml) or a local .pt to start from (a relative path
            missing here is looked up in QUADRATSEG_MODELS_DIR).
        epochs: training epochs.
        imgsz: training image size.
        batch: batch size.
        workers: data-loading workers.
        patience: early-stopping patience in epochs.
        device: cpu, a GPU (0) or several (0,1: ultralytics' own DDP); default QUADRATSEG_DEVICE.
        from_scratch: start an architecture YAML from random weights. Without it the YAML starts from
            its COCO weights in QUADRATSEG_MODELS_DIR (yolo11{n,s,m,l,x}-pose.pt; listed by
            python -m quadratseg.list_weights) and a missing file is an error.
        tensorboard: log the curves for TensorBoard in the run folder (--notensorboard turns it off;
            open with tensorboard --logdir RUN_FOLDER).
        mlflow: MLflow tracking URI to log to as well (needs the optional mlflow package).
        args: any other ultralytics train arguments, e.g. --args '{"lr0": 0.01, "mosaic": 0}'.
        template: keypoint template .npy (make_template) copied beside the weights for every
            consumer (default: the task's built-in template).
        choose_thresholds: choose the recommended box threshold on the val split (written to the
            card with how it was chosen); --nochoose_thresholds skips it.

    Returns:
        JSON with the weights paths, the resolved configuration and the model card.
    """
    from quadratseg.cli import current_settings, output_path, weights_path

    settings = current_settings()
    spec = get_task(task)
    overrides = {
        "model": weights_path(model, settings),
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "workers": workers,
        "patience": patience,
    }
    result = run_training(
        config or spec.config,
        data,
        output_path(project, "runs/pose", settings),
        name or spec.name,
        resume,
        overrides,
        args,
        settings,
        from_scratch=from_scratch,
        tensorboard=tensorboard,
        mlflow=mlflow,
        device=device,
    )
    result["card"] = write_pose_card(
        result["best"], spec.name, data, template, choose_thresholds, imgsz=result["config"].get("imgsz")
    )
    return json.dumps(result, indent=2, default=str)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="grid_pose_detection.train")
