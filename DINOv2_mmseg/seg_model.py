"""CLI: the semantic segmentation model a programme starts from, made on the varied world in one command.

    python -m DINOv2_mmseg.seg_model OUT [--images 500] [--size 768] [--seed 0] [--epochs 40]

1. renders ``--images`` photo-quadrats of the varied synthetic world (:mod:`quadratseg.synth`,
   ``--world varied``) into ``OUT/synth`` (``--holdout`` of them for val and as many for test);
2. writes their warped grid-free quadrats and true class maps at the config's taxonomy level
   (:data:`LEVEL`, the demo's: 7 main families and background) in the MMSeg layout into ``OUT/layout``
   (:func:`DINOv2_mmseg.prepare_data.write_class_maps`), straight from the generator's truth;
3. trains the tiny DINOv2 + SegFormer config at the demo's sizes (:func:`cpu_config`)
   from scratch into ``OUT/work``, and writes its last checkpoint as a plain one (weights and classes
   only) to ``OUT/model/model.pth`` with its model card: level, classes, config and crop size, the
   command, seed and generator version that made it, and the sha256 :func:`shipped_mmseg_model` checks;
4. scores it on the test split (mIoU, IoU per class; :func:`DINOv2_mmseg.evaluate.evaluate_segmenter`)
   and writes ``OUT/report.json``.

No real photo is used. The model it makes is a start that a programme fine-tunes on its own
annotations (``load_from``), as the demo does in the varied world.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from DINOv2_mmseg.prepare_data import ClassMapImage, class_table, write_class_maps
from quadratseg.atomic import atomic_write_json

CONFIG = Path(__file__).parent / "configs" / "dinov2_tiny_segformer_cpu.py"
# The semantic model the project ships (the tiny config, 7 main families + background): made by this
# command on the varied world alone (the command, seed and generator version are in its model card's
# ``made_by``). The demo's DINOv2_mmseg stage starts from it in the varied world (DINOv2_mmseg.demo).
SHIPPED_WEIGHTS = Path(__file__).parent / "shipped" / "mmseg_varied" / "model.pth"
MODEL_PATH = Path("model") / "model.pth"  # under OUT
LEVEL = "main_family"  # the classes of CONFIG's head (its _base_ family config)
# The sizes the start model and the demo train at, on 768 px quadrats: half size with 192 px crops.
# Pipeline steps and schedulers are set by their type (runner.set_by_type), wherever they sit in the
# config's lists.
CPU_OPTIONS = {
    "model.data_preprocessor.size": (192, 192),
    "model.test_cfg.crop_size": (192, 192),
    "model.test_cfg.stride": (128, 128),
    "crop_size": (192, 192),
    "default_hooks.logger.interval": 20,
}
CPU_STEPS = {
    "RandomResize": {"scale": (384, 384)},
    "RandomCrop": {"crop_size": (192, 192)},
    "Resize": {"scale": (384, 384)},
}


def cpu_config(config: str | Path, data_root: str | Path, epochs: int) -> Any:
    """``config`` (the tiny one) at the CPU sizes (:data:`CPU_OPTIONS`, :data:`CPU_STEPS`) for
    ``epochs`` (validation and a checkpoint at the end), on ``data_root``."""
    from DINOv2_mmseg.runner import load_config, set_by_type

    options = {
        **CPU_OPTIONS,
        "train_cfg.max_epochs": epochs,
        "train_cfg.val_interval": epochs,
        "default_hooks.checkpoint.interval": epochs,
    }
    cfg = load_config(config, options, str(data_root))
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        set_by_type(cfg[loader].dataset.pipeline, CPU_STEPS)
    set_by_type(cfg.param_scheduler, {"PolyLR": {"end": epochs}})
    return cfg


def shipped_mmseg_model(weights: str | Path | None = None) -> Path:
    """The shipped semantic model's weights (default :data:`SHIPPED_WEIGHTS`), checked against the
    sha256 its model card records (:func:`quadratseg.weights.shipped_weights`: a missing file, a Git LFS
    pointer or a truncated copy is refused with the command that makes it again)."""
    from quadratseg.weights import shipped_weights

    return shipped_weights(
        SHIPPED_WEIGHTS if weights is None else weights,
        "the shipped semantic segmentation model",
        "python -m DINOv2_mmseg.seg_model OUT",
        str(MODEL_PATH),
    )


def truth_class_map_images(synth_dir: str | Path, level: str) -> Iterator[ClassMapImage]:
    """The :class:`ClassMapImage` of every photo of a generated set: its warped grid-free quadrat (the
    segmentation export) and its true corals at ``level`` of the taxonomy, in painting order
    (:func:`quadratseg.synth.dataset.segmentation_truth`)."""
    from quadratseg.synth.dataset import segmentation_truth

    for subset, path, size_wh, corals in segmentation_truth(synth_dir, level):
        yield ClassMapImage(subset, str(path), path.stem, size_wh, corals)


def start_fields(crop_size: tuple[int, int] | list[int], level: str = LEVEL) -> dict[str, Any]:
    """What a start model's card states and a training that fine-tunes it must share: the taxonomy
    level and classes (background first), the config's file name and the crop size."""
    return {
        "level": level,
        "classes": class_table(level)[0],
        "config": CONFIG.name,
        "crop_size": [int(v) for v in crop_size],
    }


def seg_model(
    out: str,
    images: int = 500,
    size: int = 768,
    seed: int = 0,
    epochs: int = 40,
    holdout: float = 0.1,
    workers: int = 0,
    overwrite: bool = False,
) -> str:
    """Render the varied world, train the semantic model on it and score it on its test split.

    Args:
        out: folder for the synthetic set, the layout, the run, the model and report.json.
        images: synthetic photos to render.
        size: their warped quadrats' width in px (the demo's: 768).
        seed: seed of the synthetic set and of the training.
        epochs: training epochs (validation and a checkpoint every tenth of them).
        holdout: share of the photos held out for val, and again for test.
        workers: rendering processes (0: one per CPU core).
        overwrite: replace the synthetic set and layout of an earlier run in ``out``.

    Returns:
        JSON: the model, how long each step took, and the test split's figures.
    """
    from DINOv2_mmseg.evaluate import evaluate_segmenter, split_pairs
    from DINOv2_mmseg.predictor import SemanticSegmenter, export_plain_checkpoint
    from DINOv2_mmseg.runner import set_threads
    from DINOv2_mmseg.train import run_training
    from quadratseg.cli import current_settings, device
    from quadratseg.errors import QuadratsegError
    from quadratseg.model_card import model_card_path, write_model_card
    from quadratseg.synth.dataset import SynthConfig, generate_dataset
    from quadratseg.weights import cli_command, stamp_made_by

    if epochs < 1:  # before minutes of rendering
        raise QuadratsegError(f"--epochs must be at least 1, got {epochs}")
    settings = current_settings()
    set_threads(settings.num_threads)
    root = Path(out)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    config = SynthConfig(images=images, seed=seed, size=size, world="varied", holdout_share=holdout)
    synth_dir = generate_dataset(root / "synth", config, overwrite=overwrite, workers=workers)
    seconds["render"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    layout = write_class_maps(
        truth_class_map_images(synth_dir, LEVEL), root / "layout", LEVEL, overwrite=overwrite
    )
    seconds["layout"] = round(time.perf_counter() - start, 1)
    cfg = cpu_config(CONFIG, root / "layout", epochs)
    every = max(1, epochs // 10)
    cfg.train_cfg.val_interval = every
    cfg.default_hooks.checkpoint.interval = every
    start = time.perf_counter()
    on = device(settings=settings)
    run = run_training(
        cfg, root / "work", seed=seed, device=on, from_scratch=True, models_dir=settings.models_dir
    )
    seconds["train"] = round(time.perf_counter() - start, 1)
    last = root / "work" / f"epoch_{epochs}.pth"
    (root / MODEL_PATH).parent.mkdir(parents=True, exist_ok=True)
    model = export_plain_checkpoint(last, root / MODEL_PATH)
    model_card_path(model).unlink(missing_ok=True)  # an earlier run's figures never stay beside it
    write_model_card(model, {"task": "mmseg", **start_fields(cfg.crop_size)})
    flags = {
        "images": images,
        "size": size,
        "seed": seed,
        "epochs": epochs,
        "holdout": holdout if holdout != 0.1 else None,
    }
    card = stamp_made_by(
        model, cli_command("python -m DINOv2_mmseg.seg_model OUT", flags), seed, synth_dir, CONFIG.name
    )
    start = time.perf_counter()
    segmenter = SemanticSegmenter(cfg, model, device=on)
    pairs = split_pairs(root / "layout", "test")
    metrics = evaluate_segmenter(segmenter, pairs, root / "eval")
    seconds["test"] = round(time.perf_counter() - start, 1)
    card["measured"] = {
        "split": "test",
        "images": len(pairs),
        "miou": metrics["mIoU"],
        "aacc": metrics["aAcc"],
        "per_class_iou": {name: m["IoU"] for name, m in metrics["per_class"].items()},
        "val_during_training": run["val"],
    }
    write_model_card(model, card)
    report: dict[str, Any] = {
        "weights": str(model),
        "seconds": seconds,
        "layout": layout,
        "test": {k: metrics[k] for k in ("mIoU", "aAcc", "mAcc", "per_class", "images")},
        "card": card,
    }
    atomic_write_json(root / "report.json", report)
    return json.dumps(report, indent=2, default=str)


if __name__ == "__main__":
    from quadratseg.cli import run as run_cli

    run_cli(seg_model, name="DINOv2_mmseg.seg_model")
