"""ultralytics training and loading shared by the YOLO modules (pose and segmentation).

- Models are built from a YAML (``yolo11n-pose.yaml``) or loaded from a local ``.pt``; a bare
  ``.pt`` name that does not exist locally is refused (ultralytics would download it).
- An experiment YAML holds the model and any ultralytics train argument; the command line
  overrides it; the resolved configuration is saved next to the weights.
- ``resume=True`` continues the run's ``last.pt``.
- An architecture YAML starts from the matching COCO weights in ``QUADRATSEG_MODELS_DIR``
  (``yolo11n-seg.yaml`` -> ``yolo11n-seg.pt``, transferred with ultralytics' ``YOLO(yaml).load(pt)``);
  random initialisation is an explicit ``from_scratch=True``, logged as a warning and recorded.
- Training curves go to TensorBoard (ultralytics' own callback, event files in the run folder) unless
  ``tensorboard=False``; ``mlflow=URI`` turns on ultralytics' MLflow callback (needs ``mlflow``).
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


def is_architecture(model: str | Path) -> bool:
    """Whether ``model`` names an architecture YAML (built, or started from COCO weights) rather than
    a checkpoint."""
    return str(model).endswith((".yaml", ".yml"))


def build_model(model: str | Path) -> Any:
    """A YOLO model from a YAML architecture or a local checkpoint; never a download."""
    from ultralytics import YOLO

    text = str(model)
    if is_architecture(text):
        return YOLO(text)
    path = Path(text)
    if not path.is_file():
        raise QuadratsegError(
            f"weights {path} do not exist locally (nothing is downloaded); pass a local .pt file, or an "
            "architecture such as yolo11n-pose.yaml (COCO weights from QUADRATSEG_MODELS_DIR, "
            "or --from-scratch)"
        )
    return YOLO(str(path))


def run_validator(
    weights: str | Path,
    data: str | Path,
    split: str,
    imgsz: int | None = None,
    device: str = "auto",
    **options: Any,
) -> tuple[Any, Any]:
    """(model, metrics) of ultralytics' own validator on a prepared layout's ``split``: at the
    model's trained size unless ``imgsz``, on its own choice of device unless ``device``, quietly and
    without plots unless ``options`` (any other validator argument: ``plots``, ``project``,
    ``single_cls``, ...) say otherwise."""
    model = build_model(weights)
    args: dict[str, Any] = {"data": str(data), "split": split, "plots": False, "verbose": False, **options}
    if imgsz:
        args["imgsz"] = imgsz
    if device != "auto":
        args["device"] = device
    return model, model.val(**args)


def starting_model(
    model_ref: str | Path, from_scratch: bool, models_dir: str | Path
) -> tuple[Any, dict[str, Any]]:
    """The YOLO model a training starts from, and what it was started from (for the run's record).

    - a local ``.pt``: that checkpoint (fine-tuning one's own or any local model);
    - an architecture YAML: the COCO weights of that architecture from ``models_dir``
      (:func:`quadratseg.weights.locate`: a clear error when absent), transferred layer by layer;
    - an architecture YAML and ``from_scratch``: random initialisation, said loudly.
    """
    from quadratseg.weights import FROM_SCRATCH_WARNING, locate, yolo_key

    text = str(model_ref)
    if not is_architecture(text):
        if from_scratch:
            raise QuadratsegError(
                f"--from-scratch with the checkpoint {text}: give an architecture YAML "
                "(e.g. yolo11n-seg.yaml) to start from random weights, or drop --from-scratch"
            )
        return build_model(text), {"pretrained": text, "from_scratch": False}
    if from_scratch:
        logger.warning(FROM_SCRATCH_WARNING, text)
        return build_model(text), {"pretrained": None, "from_scratch": True}
    key = yolo_key(text)
    if key is None:
        raise QuadratsegError(
            f"no pretrained weights are known for the architecture {text}: pass a local .pt with --model, "
            "or --from-scratch to start from random weights"
        )
    weights = locate(key, models_dir)
    model = build_model(text)
    model.load(str(weights))
    logger.info("pretrained weights: %s (transferred onto %s)", weights, text)
    return model, {"pretrained": str(weights), "from_scratch": False}


def started_from(run_dir: str | Path) -> dict[str, Any]:
    """What a run was started from, as its ``quadratseg_config.json`` recorded (``pretrained``,
    ``from_scratch``); unknown (None) for runs recorded before these fields existed."""
    path = Path(run_dir) / "quadratseg_config.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        record = {}
    return {"pretrained": record.get("pretrained"), "from_scratch": record.get("from_scratch")}


def set_tracking(tensorboard: bool = True, mlflow: str | None = None) -> dict[str, Any]:
    """Switch ultralytics' TensorBoard and MLflow callbacks for the next trainer (its SETTINGS are read
    per trainer); returns what was switched on, for the run's record.

    Raises:
        QuadratsegError: a tracker asked for without its package (quadratseg.tracking).
    """
    from ultralytics.utils import SETTINGS

    from quadratseg.tracking import require_trackers

    require_trackers(tensorboard, mlflow)
    if mlflow:
        os.environ["MLFLOW_TRACKING_URI"] = str(mlflow)
    SETTINGS.update({"tensorboard": bool(tensorboard), "mlflow": bool(mlflow)})
    return {"tensorboard": bool(tensorboard), "mlflow": str(mlflow) if mlflow else None}


def yolo_device(value: Any) -> str:
    """A device for ultralytics: ``cpu``, ``auto``, one GPU (``0``, ``cuda:0``) or several (``0,1``, which
    ultralytics trains with its own DDP); fire's tuple of ``--device 0,1`` and ``cuda:0,1`` included.

    Examples:
        >>> yolo_device((0, 1)), yolo_device("cuda:0,1"), yolo_device("cuda"), yolo_device(None)
        ('0,1', '0,1', '0', 'auto')
        >>> yolo_device(-1)  # ultralytics picks the idle GPUs
        '-1'
    """
    if value is None or str(value) in ("", "auto"):
        return "auto"
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    parts = []
    for item in items:
        text = str(item).strip().lower()
        if text.startswith("cuda"):
            text = text[4:].lstrip(":") or "0"
        if text:
            parts.append(text)
    if parts in (["cpu"], ["mps"]):
        return parts[0]
    bad = [part for part in parts if not part.isdigit() and part != "-1"]  # -1: ultralytics picks idle GPUs
    if bad:
        raise QuadratsegError(
            f"device {value!r}: use cpu, auto, a GPU index (0), a list of them (0,1) or -1 (idle GPUs)"
        )
    return ",".join(parts)


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
    *,
    from_scratch: bool = False,
    models_dir: str | Path | None = None,
    tensorboard: bool = True,
    mlflow: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) a YOLO model; returns paths of the weights and the resolved configuration.

    ``callbacks`` maps ultralytics events (``on_fit_epoch_end``...) to extra functions of the trainer.
    The model starts as :func:`starting_model` says (pretrained from ``models_dir``, default
    ``QUADRATSEG_MODELS_DIR``, unless ``from_scratch``); curves go where :func:`set_tracking` says.
    """
    config = dict(config)
    model_ref = config.pop("model", None)
    run_dir = Path(project) / name
    last = run_dir / "weights" / "last.pt"
    tracking = set_tracking(tensorboard, mlflow)
    if resume:
        if not last.is_file():
            raise QuadratsegError(f"nothing to resume: {last} does not exist (train once without --resume)")
        if from_scratch:
            raise QuadratsegError("--resume continues a run from its last.pt: drop --from-scratch")
        model, start = build_model(last), {**started_from(run_dir), "resumed_from": str(last)}
    else:
        if model_ref is None:
            raise QuadratsegError("the experiment sets no model (e.g. model: yolo11n-pose.yaml)")
        if models_dir is None and not from_scratch and is_architecture(model_ref):
            raise QuadratsegError(
                "train_yolo needs models_dir (QUADRATSEG_MODELS_DIR) to find pretrained weights"
            )
        model, start = starting_model(model_ref, from_scratch, models_dir or ".")
        for old in run_dir.glob("events.out.tfevents.*"):  # a new run in the same folder: new curves only
            logger.info("removing %s (TensorBoard events of an earlier run in %s)", old.name, run_dir)
            old.unlink()
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
    device = yolo_device(device)
    if device != "auto":
        args["device"] = device
    resolved = {"model": str(model_ref or last), **args, "resume": resume, **start, **tracking}
    run_dir.mkdir(
        parents=True, exist_ok=True
    )  # the record first: a run killed mid-way still says how it began
    (run_dir / "quadratseg_config.json").write_text(
        json.dumps(resolved, indent=2, default=str), encoding="utf-8"
    )
    try:
        if resume:
            model.train(resume=True)
        else:
            model.train(**args)
    except ValueError as exc:  # ultralytics' select_device: a GPU that is not there
        if "device=" not in str(exc):
            raise
        raise QuadratsegError(
            f"device {args.get('device')!r} is not available here ({str(exc).splitlines()[0]}); "
            "use --device cpu, or the indices of visible GPUs (nvidia-smi)"
        ) from None
    best = run_dir / "weights" / "best.pt"
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
    *,
    from_scratch: bool = False,
    tensorboard: bool = True,
    mlflow: str | None = None,
    device: Any = None,
) -> dict[str, Any]:
    """What every ``train`` CLI does: experiment + overrides + ``--args``, training with the
    settings' threads, models folder and device (``device`` wins when given; the CLI passes its
    settings; without them, the defaults)."""
    settings = settings if settings is not None else Settings()
    experiment = load_experiment(config, {**(overrides or {}), **parse_train_args(args)})
    return train_yolo(
        experiment,
        data,
        project,
        name,
        settings.num_threads,
        resume,
        settings.device if device in (None, "", "auto") else device,
        from_scratch=from_scratch,
        models_dir=settings.models_dir,
        tensorboard=tensorboard,
        mlflow=mlflow,
    )
