"""CLI: train a segmentor from an MMSeg config over mmengine's Runner, like MMSeg's ``tools/train.py``.

    python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral.py \
        --data-root data/mmseg_finegrained --work-dir work_dirs/segformer [--resume] [--amp]

The resolved config is saved in the work dir (``<config name>.py``) beside the checkpoints
(``best_mIoU_epoch_N.pth``, ``epoch_N.pth``) and the logs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)


def best_checkpoint(work_dir: str | Path) -> Path | None:
    """The best checkpoint of a work dir (highest epoch among ``best_*.pth``), else the last one."""
    work = Path(work_dir)
    best = sorted(work.glob("best_*.pth"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    last = work / "last_checkpoint"
    if last.is_file():
        path = Path(last.read_text().strip())
        return path if path.is_file() else None
    return None


def run_training(
    cfg: Any,
    work_dir: str | Path,
    resume: bool | str = False,
    amp: bool = False,
    seed: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train ``cfg`` (an mmengine Config) in ``work_dir``; return paths and the last validation metrics."""
    import torch
    from mmengine.runner import Runner

    from DINOv2_mmseg.runner import check_config

    checked = check_config(cfg)
    cfg.work_dir = str(work_dir)
    if amp:
        if not torch.cuda.is_available():
            raise QuadratsegError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); none is visible")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if device == "cpu" or not torch.cuda.is_available():
        cfg.env_cfg.cudnn_benchmark = False
    if resume:
        cfg.resume = True
        if isinstance(resume, str):
            if not Path(resume).is_file():
                raise QuadratsegError(f"--resume {resume}: no such checkpoint")
            cfg.load_from = resume
    if seed is not None:
        cfg.randomness = {"seed": int(seed), "deterministic": False}
    runner = Runner.from_cfg(cfg)
    runner.train()
    timing = ("val/time", "val/data_time")
    metrics = {
        k: v for k, v in runner.message_hub.log_scalars.items() if k.startswith("val/") and k not in timing
    }
    return {
        "work_dir": str(work_dir),
        "best_checkpoint": str(best_checkpoint(work_dir) or ""),
        "config": str(Path(work_dir) / Path(cfg.filename).name),
        "epochs": runner.epoch,
        "val": {k[4:]: float(v.current()) for k, v in metrics.items()},
        "checked": checked,
    }


def train(
    config: str,
    work_dir: str | None = None,
    data_root: str | None = None,
    resume: bool | str = False,
    amp: bool = False,
    cfg_options: Any = None,
    seed: int | None = None,
) -> str:
    """Train a DINOv2 + SegFormer segmentor (or any MMSeg config) with mmengine's Runner.

    Args:
        config: MMSeg config file (bundled names such as dinov2_tiny_segformer_cpu.py also work).
        work_dir: where checkpoints, logs and the resolved config go
            (default: QUADRATSEG_OUTPUTS_DIR/work_dirs/<config name>).
        data_root: prepared dataset (DINOv2_mmseg.prepare_data) for every split, overriding the config.
        resume: continue from the work dir's last checkpoint, or from the checkpoint path given.
        amp: mixed precision (CUDA only).
        cfg_options: config overrides, a JSON object such as '{"train_cfg.max_epochs": 50}'
            or key=value items.
        seed: random seed.

    The DINOv2 backbone loads ``model.backbone.checkpoint``, else ``DINOV2_CHECKPOINT`` from the
    environment/.env, else starts from random weights (said in the log).

    Returns:
        JSON with the work dir, the best checkpoint and the last validation metrics.
    """
    from quadratseg.cli import current_settings, output_path, pin_device

    settings = current_settings()
    device = pin_device(settings.device)  # before torch starts CUDA: mmengine uses the visible GPU

    from DINOv2_mmseg.runner import load_config, set_threads

    set_threads(settings.num_threads)
    cfg = load_config(config, cfg_options, data_root)
    backbone = cfg.model.get("backbone") or {}
    if backbone.get("type") == "DINOv2" and not backbone.get("checkpoint") and settings.dinov2_checkpoint:
        logger.info("backbone weights from DINOV2_CHECKPOINT=%s", settings.dinov2_checkpoint)
        backbone["checkpoint"] = str(settings.dinov2_checkpoint)
    elif backbone.get("type") == "DINOv2" and not backbone.get("checkpoint"):
        logger.warning(
            "DINOv2 backbone from random weights (no checkpoint in the config, no DINOV2_CHECKPOINT)"
        )
    work = output_path(work_dir, Path("work_dirs") / Path(config).stem, settings)
    result = run_training(cfg, work, resume, amp, seed, device)
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="DINOv2_mmseg.train")
