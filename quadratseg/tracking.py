"""Experiment trackers the training commands write to: TensorBoard (on by default) and MLflow (optional).

ultralytics and mmengine bring their own writers; this module only checks, before a run starts, that
the package a chosen tracker needs is installed, with the same message for every command.
"""

from __future__ import annotations

import importlib.util

from quadratseg.errors import QuadratsegError


def require_trackers(tensorboard: bool, mlflow_uri: str | None) -> None:
    """Refuse a run whose tracker cannot write: ``tensorboard`` or ``mlflow`` not installed.

    Raises:
        QuadratsegError: naming the package to install, or the flag that leaves the tracker out.
    """
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise QuadratsegError(
            "TensorBoard logging needs the tensorboard package (in every training extra: "
            "pip install -e '.[yolo]' or '.[mmseg]'), or pass --no-tensorboard"
        )
    if mlflow_uri and importlib.util.find_spec("mlflow") is None:
        raise QuadratsegError(
            f"--mlflow {mlflow_uri}: the optional mlflow package is not installed; pip install mlflow "
            "(or leave --mlflow out: TensorBoard still records the run)"
        )
