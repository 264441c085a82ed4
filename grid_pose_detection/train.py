"""CLI: train YOLO11-pose for ``gridcorners`` or ``gridpose``.

python -m grid_pose_detection.train gridpose --data outputs/pose/gridpose/data.yaml --epochs 5 --imgsz 320
"""

from __future__ import annotations

import json
from typing import Any

from grid_pose_detection.tasks import get_task
from quadratseg.settings import load_settings
from quadratseg.yolo_train import load_experiment, train_yolo


def train(
    task: str,
    data: str,
    project: str = "outputs/runs/pose",
    name: str | None = None,
    config: str | None = None,
    resume: bool = False,
    **overrides: Any,
) -> str:
    """Train a pose model from the task's experiment YAML; any ultralytics argument may be overridden.

    Args:
        task: gridcorners or gridpose.
        data: data.yaml written by grid_pose_detection.prepare_data.
        project: folder of the runs.
        name: run name (default: the task).
        config: experiment YAML (default: grid_pose_detection/configs/<task>.yaml).
        resume: continue the run's last.pt.
        **overrides: ultralytics train arguments (--epochs, --imgsz, --batch, --model path.pt, ...).

    Returns:
        JSON with the weights paths and the resolved configuration.
    """
    spec = get_task(task)
    settings = load_settings()
    experiment = load_experiment(config or spec.config, overrides)
    result = train_yolo(
        experiment, data, project, name or spec.name, settings.num_threads, resume, settings.device
    )
    return json.dumps(result, indent=2, default=str)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="grid_pose_detection.train")
