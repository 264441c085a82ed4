"""CLI: train a segmentor from an MMSeg config over mmengine's Runner, like MMSeg's ``tools/train.py``.

    python -m DINOv2_mmseg.train DINOv2_mmseg/configs/dinov2_vitb14_segformer_coral.py \
        --data-root data/mmseg_finegrained --work-dir work_dirs/segformer [--resume] [--amp] \
        [--from-scratch] [--no-tensorboard] [--mlflow URI] [--launcher pytorch]

The resolved config is saved in the work dir (``<config name>.py``) beside the checkpoints
(``best_mIoU_epoch_N.pth``, ``epoch_N.pth``), the logs and the TensorBoard events
(``<timestamp>/vis_data/events.out.tfevents.*``). The DINOv2 backbone starts from the official
weights of its arch unless ``--from-scratch`` is given (:func:`choose_backbone_weights`).
Several GPUs: ``torchrun --nproc_per_node=N -m DINOv2_mmseg.train CONFIG --launcher pytorch``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)


def checkpoint_step(path: str | Path) -> int:
    """The epoch or iteration N of mmengine's ``..._epoch_N.pth`` / ``..._iter_N.pth`` names, else -1.

    Examples:
        >>> checkpoint_step("best_mIoU_epoch_12.pth"), checkpoint_step("best_mIoU_iter_300.pth")
        (12, 300)
    """
    match = re.search(r"_(?:epoch|iter)_(\d+)\.pth$", Path(path).name)
    return int(match.group(1)) if match else -1


def best_checkpoint(work_dir: str | Path) -> Path | None:
    """The best checkpoint of a work dir: the highest epoch (or iteration) among mmengine's
    ``best_<metric>_epoch_<N>.pth``, whatever the files' times; else the last checkpoint; else None."""
    work = Path(work_dir)
    best = sorted(work.glob("best_*.pth"), key=lambda p: (checkpoint_step(p), p.name))
    if best:
        return best[-1]
    last = work / "last_checkpoint"
    if last.is_file():
        path = Path(last.read_text().strip())
        return path if path.is_file() else None
    return None


@dataclass(frozen=True)
class BackboneWeights:
    """Where a run's DINOv2 backbone starts from: ``path`` (None: random weights) and its ``source``.

    Sources: ``config`` (model.backbone.checkpoint), ``DINOV2_CHECKPOINT``, ``QUADRATSEG_MODELS_DIR``
    (the official file of the arch), ``load_from`` / ``resume`` (a checkpoint of the whole model
    overwrites the backbone), ``from_scratch`` (random, asked for), ``not DINOv2`` (another backbone).
    """

    path: str | None
    source: str

    @property
    def from_scratch(self) -> bool:
        return self.source == "from_scratch"


def choose_backbone_weights(
    backbone: Mapping[str, Any],
    from_scratch: bool,
    models_dir: str | Path | None,
    dinov2_checkpoint: str | Path | None = None,
    load_from: str | None = None,
    resume_from: str | None = None,
) -> BackboneWeights:
    """Decide the DINOv2 backbone's starting weights; pretrained unless ``from_scratch`` is asked for.

    In order: a checkpoint of the whole model the run resumes or starts from (``resume_from``,
    ``load_from``); the config's ``checkpoint``; ``dinov2_checkpoint`` (DINOV2_CHECKPOINT); the official
    file of the arch in ``models_dir`` (``dinov2_vitb14_pretrain.pth`` for ``vit_b``). ``from_scratch``
    skips the last two (random weights); with a checkpoint in the config or ``load_from`` it is an error.

    Raises:
        MissingWeightsError: no weights found and ``from_scratch`` not given (also for archs without
            official weights, such as ``tiny``).
        QuadratsegError: ``from_scratch`` contradicts a checkpoint the config names.

    Example:
        >>> choose_backbone_weights({"type": "DINOv2", "arch": "tiny"}, True, "models")
        BackboneWeights(path=None, source='from_scratch')
    """
    from quadratseg.weights import MissingWeightsError, dinov2_key, locate

    if backbone.get("type") != "DINOv2":
        return BackboneWeights(backbone.get("checkpoint"), "not DINOv2")
    if resume_from:
        return BackboneWeights(str(resume_from), "resume")
    explicit = backbone.get("checkpoint") or load_from
    if explicit and from_scratch:
        which = "model.backbone.checkpoint" if backbone.get("checkpoint") else "load_from"
        raise QuadratsegError(
            f"--from-scratch contradicts {which}={explicit}: leave out --from-scratch to start from that "
            f"file, or set {which}=None to train from random weights"
        )
    if load_from:
        return BackboneWeights(str(load_from), "load_from")
    if backbone.get("checkpoint"):
        return BackboneWeights(str(backbone["checkpoint"]), "config")
    if from_scratch:
        return BackboneWeights(None, "from_scratch")
    if dinov2_checkpoint:
        return BackboneWeights(str(dinov2_checkpoint), "DINOV2_CHECKPOINT")
    arch = str(backbone.get("arch", "vit_b"))
    key = dinov2_key(arch)
    if key is None:
        raise MissingWeightsError(
            f"the DINOv2 arch {arch!r} has no official pretrained weights; pass --from-scratch to train it "
            "from random initialisation (or set model.backbone.checkpoint to a file of that size)"
        )
    if backbone.get("registers"):
        raise MissingWeightsError(
            f"the {arch!r} backbone has register tokens: set model.backbone.checkpoint (or "
            "DINOV2_CHECKPOINT) to the official dinov2_vit*14_reg4_pretrain.pth, or pass --from-scratch"
        )
    if models_dir is None:
        raise MissingWeightsError(f"no models folder to look for {arch!r} weights in; pass --from-scratch")
    return BackboneWeights(str(locate(key, models_dir)), "QUADRATSEG_MODELS_DIR")


def resolve_load_from(load_from: str | Path) -> str:
    """``load_from`` as a checkpoint file: a work dir stands for its best checkpoint (else its last one).

    Raises:
        QuadratsegError: nothing to load there.
    """
    path = Path(load_from)
    if path.is_dir():
        found = best_checkpoint(path)
        if found is None:
            raise QuadratsegError(f"load_from={path} is a folder without checkpoints; train that stage first")
        return str(found)
    if not path.is_file():
        raise QuadratsegError(
            f"load_from={path} does not exist; train the stage it comes from first (the genus config starts "
            "from the main-family run's work dir) or give --cfg-options load_from=FILE"
        )
    return str(path)


def run_training(
    cfg: Any,
    work_dir: str | Path,
    resume: bool | str = False,
    amp: bool = False,
    seed: int | None = None,
    device: str = "auto",
    *,
    from_scratch: bool = False,
    models_dir: str | Path | None = None,
    dinov2_checkpoint: str | Path | None = None,
    launcher: str = "none",
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` (an mmengine Config) in ``work_dir``; return paths and the last validation metrics.

    Args:
        cfg: the config (``load_config``); its ``load_from`` may be a work dir (its best checkpoint).
        work_dir: checkpoints, logs, the resolved config, TensorBoard events.
        resume: continue from the work dir's last checkpoint, or from the checkpoint path given.
        amp: mixed precision (CUDA only).
        seed: random seed.
        device: ``cpu`` keeps cuDNN settings off.
        from_scratch: the DINOv2 backbone's weights as :func:`choose_backbone_weights` decides
            (False: pretrained, an error when no file is found; True: random weights).
        models_dir: QUADRATSEG_MODELS_DIR, where the official DINOv2 files are looked up.
        dinov2_checkpoint: DINOV2_CHECKPOINT (used when the config names no checkpoint).
        launcher: none, pytorch (torchrun), slurm or mpi; see :func:`DINOv2_mmseg.runner.set_launcher`.
        trust_checkpoint: unpickle a resumed or ``load_from`` checkpoint fully even when it holds more
            than tensors and mmengine's own types (:func:`DINOv2_mmseg.compat.load_checkpoint_file`).
    """
    import torch
    from mmengine.runner import Runner, find_latest_checkpoint

    from DINOv2_mmseg.compat import project_checkpoint_loader
    from DINOv2_mmseg.runner import check_config, name_run, set_launcher

    checked = check_config(cfg)
    cfg.work_dir = str(work_dir)
    if amp:
        if not torch.cuda.is_available():
            raise QuadratsegError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); none is visible")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    cuda = device != "cpu" and torch.cuda.is_available()
    if not cuda:
        cfg.env_cfg.cudnn_benchmark = False
    set_launcher(cfg, launcher, cuda)
    resume_from = None
    if resume:
        cfg.resume = True
        if isinstance(resume, str):
            if not Path(resume).is_file():
                raise QuadratsegError(f"--resume {resume}: no such checkpoint")
            cfg.load_from = resume_from = resume
        elif (latest := find_latest_checkpoint(str(work_dir))) is not None:
            cfg.load_from = None  # mmengine resumes from load_from when set: the work dir's last one here
            resume_from = latest
        else:
            logger.info("--resume: no checkpoint in %s yet, starting", work_dir)
            cfg.resume = False
    if cfg.get("load_from") and resume_from is None:
        cfg.load_from = resolve_load_from(cfg.load_from)
    backbone = cfg.model.get("backbone") or {}
    weights = choose_backbone_weights(
        backbone, from_scratch, models_dir, dinov2_checkpoint, cfg.get("load_from"), resume_from
    )
    if weights.source in ("DINOV2_CHECKPOINT", "QUADRATSEG_MODELS_DIR"):
        backbone["checkpoint"] = weights.path
    random_backbone = weights.from_scratch
    if random_backbone:
        from quadratseg.weights import FROM_SCRATCH_WARNING

        logger.warning(FROM_SCRATCH_WARNING, "the DINOv2 backbone")
    elif weights.path:
        logger.info("backbone weights: %s (%s)", weights.path, weights.source)
    if seed is not None:
        cfg.randomness = {"seed": int(seed), "deterministic": False}
    name_run(cfg)  # a logger of its own, whatever ran in this process the same second
    runner = Runner.from_cfg(cfg)
    with project_checkpoint_loader(trust_checkpoint):
        runner.train()
    write_layout_card(cfg, work_dir)
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
        "from_scratch": random_backbone,
        "backbone_weights": weights.path,
        "backbone_weights_source": weights.source,
        "launcher": launcher,
    }


def write_layout_card(cfg: Any, work_dir: str | Path) -> Path | None:
    """Write the work dir's model card (``model_card.json`` beside its checkpoints) with the taxonomy
    ``level`` and ``classes`` of the layout the config trained on (its ``dataset.json``, written by
    :mod:`DINOv2_mmseg.prepare_data`): ``pipeline.process`` and ``DINOv2_mmseg.predict`` report the
    cover at that level (an extended model's class names are also genus names). None when the layout
    has no ``dataset.json`` (a layout made by hand)."""
    from quadratseg.model_card import write_model_card

    root = cfg.get("train_dataloader", {}).get("dataset", {}).get("data_root") or cfg.get("data_root")
    layout = Path(str(root)) / "dataset.json" if root else None
    if layout is None or not layout.is_file():
        return None
    summary = json.loads(layout.read_text(encoding="utf-8"))
    card = {"task": "mmseg", "level": summary.get("level", ""), "classes": summary.get("classes", [])}
    # a card is its folder's (model_card_path): every checkpoint of the work dir shares this one
    return write_model_card(Path(work_dir) / "any_checkpoint.pth", card)


def train(
    config: str,
    work_dir: str | None = None,
    data_root: str | None = None,
    resume: bool | str = False,
    amp: bool = False,
    cfg_options: Any = None,
    seed: int | None = None,
    from_scratch: bool = False,
    tensorboard: bool = True,
    mlflow: str | None = None,
    launcher: str = "none",
    trust_checkpoint: bool = False,
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
        from_scratch: start the DINOv2 backbone from random weights (needed for the tiny CPU arch).
        tensorboard: write TensorBoard events in the work dir (--no-tensorboard: off).
        mlflow: also log to this MLflow tracking URI (needs `pip install mlflow`).
        launcher: none, pytorch (under torchrun), slurm or mpi: mmengine's distributed set-up.
        trust_checkpoint: load a --resume or load_from checkpoint that holds Python objects beyond
            tensors and mmengine's own types with full unpickling (it can run code: trusted files only).

    The DINOv2 backbone loads ``model.backbone.checkpoint``, else ``DINOV2_CHECKPOINT`` from the
    environment/.env, else the official file of its arch in QUADRATSEG_MODELS_DIR
    (``dinov2_vitb14_pretrain.pth`` for vit_b); without one, training stops unless --from-scratch.
    A config's ``load_from`` (the genus stage) may name a work dir, relative to the current folder or
    to QUADRATSEG_OUTPUTS_DIR: its best checkpoint is loaded.

    Returns:
        JSON with the work dir, the best checkpoint, the last validation metrics and the weights used.
    """
    from quadratseg.cli import current_settings, output_path, pin_device

    settings = current_settings()
    if launcher == "pytorch":
        import os

        missing = [v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR") if v not in os.environ]
        if missing:
            raise QuadratsegError(
                f"--launcher pytorch runs under torchrun, which sets {', '.join(missing)}: "
                f"torchrun --nproc_per_node=N -m DINOv2_mmseg.train {config} --launcher pytorch ..."
            )
    # before torch starts CUDA: mmengine uses the visible GPU; under a launcher each rank takes its own
    device = pin_device(settings.device) if launcher == "none" or settings.device == "cpu" else "auto"

    from DINOv2_mmseg.runner import load_config, set_threads, set_vis_backends

    set_threads(settings.num_threads)
    cfg = load_config(config, cfg_options, data_root)
    set_vis_backends(cfg, tensorboard, mlflow)
    load_from = cfg.get("load_from")
    if load_from and not Path(load_from).is_absolute() and not Path(load_from).exists():
        in_outputs = Path(settings.outputs_dir) / load_from
        if in_outputs.exists():
            cfg.load_from = str(in_outputs)
    work = output_path(work_dir, Path("work_dirs") / Path(config).stem, settings)
    result = run_training(
        cfg,
        work,
        resume,
        amp,
        seed,
        device,
        from_scratch=bool(from_scratch),
        models_dir=settings.models_dir,
        dinov2_checkpoint=settings.dinov2_checkpoint,
        launcher=launcher,
        trust_checkpoint=bool(trust_checkpoint),
    )
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(train, name="DINOv2_mmseg.train")
