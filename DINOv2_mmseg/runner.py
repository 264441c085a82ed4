"""mmengine Runner set-up shared by ``train`` and ``test``: config loading, overrides, checks.

The checks run before any training starts, so a wrong config fails in a second with a clear
reason instead of after the first epoch: dataset root and splits present, the config's classes
equal to the data's ``classes.txt``, ``num_classes`` equal to their count, mask values inside
the class range, and (a warning) images smaller than the training crop, which are padded with
the ignore index 255.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def set_by_type(steps: list[Any], values: dict[str, dict[str, Any]]) -> int:
    """Update each step (a dict with ``type``) of an mmengine list with ``values[type]``; return how many.

    Examples:
        >>> steps = [{"type": "LoadImageFromFile"}, {"type": "Resize", "scale": (1, 1)}]
        >>> set_by_type(steps, {"Resize": {"scale": (384, 384)}}), steps[1]["scale"]
        (1, (384, 384))
    """
    changed = 0
    for step in steps:
        if step.get("type") in values:
            step.update(values[step["type"]])
            changed += 1
    return changed


def name_run(cfg: Any) -> str:
    """Give ``cfg`` an ``experiment_name`` of its own (its config file's stem and a random suffix,
    unless it has one) and return it.

    mmengine names a run's logger ``<config stem>_<timestamp to the second>`` and reuses a logger of
    that name: two runs started in one process within the same second (a test without and with
    test-time augmentation) wrote the second's log into the first's file and left its own empty.

    >>> from mmengine.config import Config
    >>> first, second = name_run(Config({})), name_run(Config({}))
    >>> first.startswith("run_") and first != second
    True
    """
    import uuid

    if not cfg.get("experiment_name"):
        stem = Path(cfg.filename).stem if cfg.filename else "run"
        cfg.experiment_name = f"{stem}_{uuid.uuid4().hex[:8]}"
    return cfg.experiment_name


def parse_cfg_options(cfg_options: Any) -> dict[str, Any]:
    """``--cfg-options`` as a dict: a dict (fire parses JSON), a JSON string, or ``key=value`` items."""
    if cfg_options is None or cfg_options == {}:
        return {}
    if isinstance(cfg_options, dict):
        return cfg_options
    if isinstance(cfg_options, str):
        try:
            parsed = json.loads(cfg_options)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
        cfg_options = [cfg_options]
    out: dict[str, Any] = {}
    for item in cfg_options:
        if "=" not in str(item):
            raise QuadratsegError(f"--cfg-options item {item!r} is not key=value (or give a JSON object)")
        key, value = str(item).split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_config(config: str | Path, cfg_options: Any = None, data_root: str | None = None) -> Any:
    """Read an mmengine config file, apply ``--cfg-options`` and point every split at ``data_root``."""
    from mmengine.config import Config

    from DINOv2_mmseg.compat import import_mmseg

    import_mmseg()
    path = Path(config)
    if not path.is_file():
        bundled = CONFIG_DIR / path.name
        if bundled.is_file():
            path = bundled
        else:
            known = sorted(p.name for p in CONFIG_DIR.glob("*.py"))
            raise QuadratsegError(f"config {config} does not exist; bundled configs: {', '.join(known)}")
    cfg = Config.fromfile(str(path))
    options = parse_cfg_options(cfg_options)
    if options:
        cfg.merge_from_dict(options)
    if data_root:
        cfg.data_root = str(data_root)
        for loader in LOADERS:
            if cfg.get(loader):
                cfg[loader].dataset.data_root = str(data_root)
    return cfg


def _num_classes(cfg: Any) -> int | None:
    head = cfg.model.get("decode_head")
    if isinstance(head, list | tuple):
        head = head[-1]
    return None if head is None else int(head.num_classes)


def check_config(cfg: Any, loaders: tuple[str, ...] = LOADERS) -> dict[str, Any]:
    """Check the config against its data before the Runner starts; return what was checked."""
    from DINOv2_mmseg.plugins.dataset import check_config_classes, read_class_files

    num_classes = _num_classes(cfg)
    report: dict[str, Any] = {}
    crop = cfg.get("crop_size")
    for loader in loaders:
        if not cfg.get(loader):
            continue
        ds = cfg[loader].dataset
        root = Path(ds.data_root)
        classes, _ = read_class_files(root)
        check_config_classes(ds.get("metainfo", {}).get("classes"), classes, f"{loader} ({root})")
        if num_classes is not None and num_classes != len(classes):
            raise QuadratsegError(
                f"decode_head.num_classes is {num_classes} but {root}/classes.txt lists {len(classes)} "
                f"classes (background included); set num_classes={len(classes)} in the config"
            )
        labels_dir = root / ds.data_prefix.seg_map_path
        images_dir = root / ds.data_prefix.img_path
        if not images_dir.is_dir():
            raise QuadratsegError(f"{loader}: {images_dir} does not exist; prepare the data first")
        masks = sorted(labels_dir.glob("*.png"))
        if not masks:
            raise QuadratsegError(f"{loader}: no label masks in {labels_dir}")
        small = 0
        for mask_path in masks:
            mask = _read_mask(mask_path)
            top = int(mask[mask != 255].max(initial=0))
            if top >= len(classes):
                raise QuadratsegError(
                    f"{mask_path} holds class index {top}, but {root}/classes.txt has only {len(classes)} "
                    "classes; re-run prepare_data"
                )
            if crop and (mask.shape[0] < crop[0] or mask.shape[1] < crop[1]):
                small += 1
        if small and loader == "train_dataloader":
            logger.warning(
                "%d of %d training images are smaller than the crop %s; they are padded (label 255, ignored)",
                small,
                len(masks),
                tuple(crop),
            )
        report[loader] = {"data_root": str(root), "images": len(masks), "smaller_than_crop": small}
    return report


def _read_mask(path: Path) -> np.ndarray:
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        raise QuadratsegError(f"{path} is not a single-channel label mask")
    return mask


def set_threads(num_threads: int) -> None:
    """Use ``num_threads`` CPU threads in torch (0: every core)."""
    import os

    import torch

    torch.set_num_threads(num_threads or os.cpu_count() or 1)


TENSORBOARD = "TensorboardVisBackend"
MLFLOW = "MLflowVisBackend"
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")


def set_vis_backends(cfg: Any, tensorboard: bool = True, mlflow_uri: str | None = None) -> list[str]:
    """Keep or drop the config's TensorBoard writer and add an MLflow one; return the backends' types.

    ``LocalVisBackend`` (scalars.json in the run's ``vis_data``) always stays. TensorBoard writes
    ``events.out.tfevents.*`` there (read with ``tensorboard --logdir WORK_DIR``); MLflow logs to
    ``mlflow_uri`` (a tracking server URL or a local ``file:`` / folder path).

    Raises:
        QuadratsegError: TensorBoard or MLflow asked for but its package is not installed.
    """
    from quadratseg.tracking import require_trackers

    require_trackers(tensorboard, mlflow_uri)
    backends = [dict(b) for b in cfg.visualizer.get("vis_backends", []) if b.get("type") != MLFLOW]
    if not tensorboard:
        backends = [b for b in backends if b.get("type") != TENSORBOARD]
    elif not any(b.get("type") == TENSORBOARD for b in backends):
        backends.append({"type": TENSORBOARD})
    if mlflow_uri:
        name = Path(cfg.filename).stem if cfg.filename else "DINOv2_mmseg"
        backends.append({"type": MLFLOW, "tracking_uri": str(mlflow_uri), "exp_name": name})
    cfg.visualizer.vis_backends = backends
    cfg.vis_backends = backends  # the resolved config saved in the work dir says the same
    return [b["type"] for b in backends]


def set_launcher(cfg: Any, launcher: str, cuda: bool) -> None:
    """Distributed set-up as MMSeg's ``tools/train.py``: ``cfg.launcher`` (mmengine's Runner starts the
    process group from the launcher's environment), NCCL between GPUs, gloo on CPU.

    On CPU two things mmengine assumes a GPU for are done here: the process group (mmengine's
    ``init_dist`` calls ``torch.cuda.set_device``) is started with gloo from torchrun's environment
    (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``), and DDP gets no ``device_ids``.
    """
    if launcher not in LAUNCHERS:
        raise QuadratsegError(f"--launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    cfg.launcher = launcher
    if launcher == "none":
        return
    if not cuda:
        if launcher != "pytorch":
            raise QuadratsegError(
                f"--launcher {launcher} needs GPUs; on CPU use torchrun with --launcher pytorch"
            )
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo", init_method="env://")
    cfg.env_cfg.setdefault("dist_cfg", {})
    cfg.env_cfg.dist_cfg.backend = "nccl" if cuda else "gloo"
    if not cuda and cfg.get("model_wrapper_cfg") is None:
        cfg.model_wrapper_cfg = {
            "type": "MMDistributedDataParallel",
            "device_ids": None,
            "broadcast_buffers": False,
            "find_unused_parameters": bool(cfg.get("find_unused_parameters", False)),
        }
