"""ultralytics training and loading shared by the YOLO modules (pose and segmentation).

- Models are built from a YAML (``yolo11n-pose.yaml``) or loaded from a local ``.pt``; a bare
  ``.pt`` name that does not exist locally is refused (ultralytics would download it).
- An experiment YAML holds the model and any ultralytics train argument; the command line
  overrides it; the resolved configuration is saved next to the weights.
- ``resume=True`` continues the run's ``last.pt``.
- ultralytics sets ``torch.set_num_threads(cpu_count - 1)`` during device selection (one thread
  on 2 cores); a callback restores ``num_threads`` (0: every core) when training starts.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from quadratseg.errors import QuadratsegError
from quadratseg.settings import Settings

logger = logging.getLogger(__name__)


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Experiment YAML merged with ``overrides`` (which win); unknown ultralytics keys are refused."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    path = Path(path)
    if not path.is_file():
        raise QuadratsegError(f"experiment file {path} does not exist")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(k for k in config if k not in DEFAULT_CFG_DICT and k != "model")
    if unknown:
        import difflib

        hints = [
            f"{k} (did you mean {difflib.get_close_matches(k, list(DEFAULT_CFG_DICT), n=1)})" for k in unknown
        ]
        raise QuadratsegError(f"{path}: unknown ultralytics argument(s): {', '.join(hints)}")
    return config


def parse_train_args(args: dict[str, Any] | str | None) -> dict[str, Any]:
    """``--args`` as a dict or JSON text; JSON-style true/false/null given to fire become booleans/None."""
    if not args:
        return {}
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as exc:
            raise QuadratsegError(f"--args must be a JSON object, e.g. '{{\"lr0\": 0.01}}' ({exc})") from None
    if not isinstance(args, dict):
        raise QuadratsegError("--args must be a JSON object of ultralytics arguments")
    words = {"true": True, "false": False, "null": None}
    return {k: words.get(v, v) if isinstance(v, str) else v for k, v in args.items()}


def build_model(model: str | Path) -> Any:
    """A YOLO model from a YAML architecture or a local checkpoint; never a download."""
    from ultralytics import YOLO

    text = str(model)
    if text.endswith((".yaml", ".yml")):
        return YOLO(text)
    path = Path(text)
    if not path.is_file():
        raise QuadratsegError(
            f"weights {path} do not exist locally (nothing is downloaded); pass a local .pt file, or an "
            "architecture such as yolo11n-pose.yaml to train from scratch"
        )
    return YOLO(str(path))


def _thread_callback(num_threads: int):
    def restore_threads(trainer: Any) -> None:
        import torch

        torch.set_num_threads(num_threads or os.cpu_count() or 1)

    return restore_threads


def train_yolo(
    config: dict[str, Any],
    data_yaml: str | Path,
    project: str | Path,
    name: str,
    num_threads: int = 0,
    resume: bool = False,
    device: str = "auto",
    callbacks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a YOLO model; returns paths of the weights and the resolved configuration.

    ``callbacks`` maps ultralytics events (``on_fit_epoch_end``...) to extra functions of the trainer.
    """
    config = dict(config)
    model_ref = config.pop("model", None)
    run_dir = Path(project) / name
    last = run_dir / "weights" / "last.pt"
    if resume:
        if not last.is_file():
            raise QuadratsegError(f"nothing to resume: {last} does not exist (train once without --resume)")
        model = build_model(last)
    else:
        if model_ref is None:
            raise QuadratsegError("the experiment sets no model (e.g. model: yolo11n-pose.yaml)")
        model = build_model(model_ref)
    model.add_callback("on_pretrain_routine_end", _thread_callback(num_threads))
    model.add_callback("on_train_epoch_start", _thread_callback(num_threads))
    for event, func in (callbacks or {}).items():
        model.add_callback(event, func)
    args = {
        **config,
        "data": str(data_yaml),
        "project": str(Path(project).resolve()),
        "name": name,
        "exist_ok": True,
        "plots": config.get("plots", True),
        "verbose": False,
    }
    if device != "auto":
        args["device"] = device
    if resume:
        model.train(resume=True)
    else:
        model.train(**args)
    best = run_dir / "weights" / "best.pt"
    resolved = {"model": str(model_ref or last), **args, "resume": resume}
    (run_dir / "quadratseg_config.json").write_text(
        json.dumps(resolved, indent=2, default=str), encoding="utf-8"
    )
    return {"run_dir": str(run_dir), "best": str(best), "last": str(last), "config": resolved}


def run_training(
    config: str | Path,
    data: str | Path,
    project: str | Path,
    name: str,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    args: dict[str, Any] | str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """What every ``train`` CLI does: experiment + overrides + ``--args``, training with the
    settings' threads and device (the CLI passes its settings; without them, the defaults)."""
    settings = settings if settings is not None else Settings()
    experiment = load_experiment(config, {**(overrides or {}), **parse_train_args(args)})
    return train_yolo(experiment, data, project, name, settings.num_threads, resume, settings.device)
