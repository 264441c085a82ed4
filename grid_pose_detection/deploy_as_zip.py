"""CLI: package a pose model as ``nuclio.zip`` (``pth-yolo-gridcorners`` or ``pth-yolo-gridpose``).

python -m grid_pose_detection.deploy_as_zip pth-yolo-gridpose best.pt [kp_template_grid.npy] --task gridpose

The zip carries the model's card (``model_card.json``, see :mod:`quadratseg.model_card`) beside
``best.pt`` and the template as ``kp_template.npy``; the handler reads its thresholds and template
from them, as the CLIs do.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from grid_pose_detection.predictor import pose_settings
from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_labels import label_to_raw
from quadratseg.keypoints import load_template as load_template_file
from quadratseg.model_card import read_model_card
from quadratseg.nuclio import BASE_PIP, FunctionSpec, write_nuclio_zip

PIP = (*BASE_PIP, "ultralytics==8.4.190")


def cvat_spec(task_name: str) -> list[dict]:
    """The label spec of the function: the task's skeleton with numbered sublabels and its svg."""
    raw = label_to_raw(get_task(task_name).cvat_labels()[0])
    raw["id"] = 0
    for i, sub in enumerate(raw["sublabels"]):
        sub["id"] = i + 1
    return [raw]


def default_task(model_name: str) -> str:
    """gridcorners for a corner model (``pth-yolo-gridcorners``), else gridpose."""
    return "gridcorners" if "corner" in model_name else "gridpose"


def function_spec(
    model_name: str,
    weights: str,
    template: str | None = None,
    task: str | None = None,
    gpu: bool = False,
    box_conf: float | None = None,
) -> FunctionSpec:
    """The function spec (task from the model name unless given): the weights, the model's card and
    the template (the one given, else the card's, else the task's) as ``kp_template.npy``; a
    ``box_conf`` given is written to the zip's card.

    Raises:
        QuadratsegError, TemplateError: what :func:`grid_pose_detection.predictor.pose_settings`
            refuses (another task's card, a missing or wrong template).
    """
    task = task or default_task(model_name)
    spec_task = get_task(task)
    given = load_template_file(template, spec_task.n_points) if template else None
    settings = pose_settings(weights, spec_task, given, conf=box_conf)
    card = {**read_model_card(weights), "task": task, "template": "kp_template.npy"}
    if box_conf is not None:
        card["conf"] = box_conf
    buffer = io.BytesIO()
    np.save(buffer, settings.template_xy)
    return FunctionSpec(
        name=model_name,
        display_name="Quadrat corners (YOLO11-pose)"
        if task == "gridcorners"
        else "Quadrat grid (YOLO11-pose)",
        description=f"{spec_task.n_points} keypoints of the quadrat in template order",
        labels=cvat_spec(task),
        main_py=Path(__file__).parent / "nuclio" / "main.py",
        files={
            "best.pt": Path(weights),
            "model_card.json": json.dumps(card, indent=1).encode(),
            "kp_template.npy": buffer.getvalue(),
        },
        packages=("quadratseg", "grid_pose_detection"),
        pip=PIP,
        gpu=gpu,
        env={
            "QUADRATSEG_POSE_TASK": task,
            "YOLO_OFFLINE": "1",
            "YOLO_AUTOINSTALL": "0",
        },
    )


def deploy_as_zip(
    model_name: str,
    weights: str,
    template: str | None = None,
    task: str | None = None,
    output: str | None = None,
    gpu: bool = False,
    box_conf: float | None = None,
) -> str:
    """Write nuclio.zip for a corner or grid pose model.

    Args:
        model_name: function name: pth-yolo-gridcorners or pth-yolo-gridpose.
        weights: trained model, stored as best.pt (a relative path missing here is looked up in
            QUADRATSEG_MODELS_DIR); its card (model_card.json beside it) goes along.
        template: keypoint template .npy (4 or 117 points), stored as kp_template.npy (default: the
            card's template, else the task's built-in one).
        task: gridcorners or gridpose (default: from the model name).
        output: folder or .zip path (default: QUADRATSEG_OUTPUTS_DIR/<model_name>).
        gpu: build for an NVIDIA GPU.
        box_conf: the detections' box confidence threshold inside the function (default: the card's,
            else 0.25; the request's ``threshold`` is the keypoints'); lower it for a briefly trained
            model (the demo: 0.01).

    Returns:
        The path of the zip.
    """
    from quadratseg.cli import current_settings, output_path, weights_path

    settings = current_settings()
    weights = weights_path(weights, settings)
    task = task or default_task(model_name)
    if box_conf is not None and not 0.0 <= box_conf <= 1.0:
        raise QuadratsegError(f"--box-conf must be within 0..1, got {box_conf}")
    spec = function_spec(model_name, weights, template, task, gpu, box_conf)
    return str(write_nuclio_zip(spec, output_path(output, model_name, settings)))


if __name__ == "__main__":
    from quadratseg.cli import run

    run(deploy_as_zip, name="grid_pose_detection.deploy_as_zip")
