"""Demo stage: train the tiny DINOv2 + SegFormer config on the synthetic clean images for a few CPU
minutes (from scratch in the simple world; in the varied world, fine-tuned from the shipped start
model that :mod:`DINOv2_mmseg.seg_model` made on the varied world alone), score it on the test split
(mIoU, IoU per class; the last epoch's checkpoint: val is read only at the end, and picks nothing),
and show semantic and colony overlays.

Uses the ``demo_segmentation`` FiftyOne dataset built by the data_engineering stage. No SAM or
CoralSCoP weights exist offline, so the colonies shown are the semantic seeds (refinement
"none"); with ``SAM_CHECKPOINT`` set, the same stage refines them with SAM.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from DINOv2_mmseg.seg_model import CONFIG, CPU_OPTIONS, cpu_config

DATASET = "demo_segmentation"
LEVEL = "main_family"  # as the YOLO stage: 7 families + background train in minutes; 16 genera do not
EPOCHS = 300  # about 70 s on 2 CPU cores
# In the varied world (36 training photos) the stage fine-tunes the shipped semantic model
# (DINOv2_mmseg.seg_model, made on the varied world alone) at a lower learning rate; from scratch, 200
# epochs (1,800 iterations of 4 photos) gave mIoU 15.9-17.1 % on its 12 test photos over seeds 0-2.
VARIED_TRAINING = {"epochs": 100, "lr": 0.001}
EVAL_SPLIT = "test"  # the last epoch's checkpoint (val only at the end): the figures come from test


def cover_abs_errors(predicted: dict[str, float], true: dict[str, float]) -> dict[str, float]:
    """|predicted - true| percent cover of each class present in the truth or the prediction (a class
    absent from both is no evidence of accuracy and would pull the mean error towards 0).

    Examples:
        >>> cover_abs_errors({"A": 30.0, "B": 0.0}, {"A": 40.0, "B": 0.0})
        {'A': 10.0}
    """
    return {
        name: round(abs(predicted.get(name, 0.0) - cover), 3)
        for name, cover in true.items()
        if cover > 0 or predicted.get(name, 0.0) > 0
    } | {name: round(value, 3) for name, value in predicted.items() if name not in true and value > 0}


def demo_training(world: str) -> dict[str, Any]:
    """The demo's training in ``world``: ``epochs``, and in the varied world ``load_from`` (the shipped
    model, checked against its card's sha256) and ``lr``.

    Raises:
        MissingWeightsError: the shipped model is missing or not the file its card hashes.
        QuadratsegError: its card names other classes, another config or crop size than the demo trains
            (mmengine would load the shapes that fit and leave the rest random, with a warning only).
    """
    if world != "varied":
        return {"epochs": EPOCHS}
    from DINOv2_mmseg.seg_model import shipped_mmseg_model, start_fields
    from quadratseg.model_card import require_card_fields

    shipped = shipped_mmseg_model()
    card = require_card_fields(
        shipped, start_fields(CPU_OPTIONS["crop_size"], LEVEL), "a start for this demo", "the demo trains"
    )
    return {**VARIED_TRAINING, "load_from": str(shipped), "card": card}


def as_the_chain_sees_them(samples: Any, data_root: Path, cleaned: dict[str, np.ndarray]) -> int:
    """Replace the MMSeg layout's train and val photos that ``cleaned`` holds (photo name -> the
    warped photo with its grid removed by the grid-removal stage) by those images, class maps
    unchanged (:func:`quadratseg.yolo_layout.replace_layout_photos`; coral_seg_yolo.demo does the
    same for YOLO). Returns how many were replaced."""
    from quadratseg.yolo_layout import replace_layout_photos

    return replace_layout_photos(samples, cleaned, lambda split: data_root / split / "data")


def stage(ctx: Any) -> dict[str, Any]:
    """Prepare, train, evaluate on the test split and illustrate the DINOv2 + SegFormer model."""
    import fiftyone as fo

    from DINOv2_mmseg.coral_pipeline import CoralPipeline
    from DINOv2_mmseg.evaluate import evaluate_segmenter, split_pairs
    from DINOv2_mmseg.predict import semantic_overlay
    from DINOv2_mmseg.prepare_data import write_mmseg_layout
    from DINOv2_mmseg.runner import set_threads
    from DINOv2_mmseg.train import run_training
    from quadratseg.cover import cover_from_class_map
    from quadratseg.images import read_image_rgb
    from quadratseg.visualize import draw_polygons

    start = time.perf_counter()
    set_threads(ctx.settings.num_threads)
    root = ctx.out_dir / "mmseg"
    data_root = root / "data"
    samples = fo.load_dataset(DATASET)
    write_mmseg_layout(samples, data_root, level=LEVEL, overwrite=True)
    chain_cleaned = as_the_chain_sees_them(samples, data_root, ctx.shared.get("grid_removed_training", {}))
    training = demo_training(getattr(ctx, "world", "simple"))
    epochs = max(1, round(training["epochs"] * ctx.training_scale))
    cfg = cpu_config(CONFIG, data_root, epochs)
    start_model = training.get("load_from")
    if start_model:
        cfg.load_from = start_model
        cfg.optim_wrapper.optimizer.lr = training["lr"]
    train_start = time.perf_counter()
    # the tiny arch has no pretrained DINOv2 weights: from the shipped start or from scratch, said
    # explicitly (and logged as such)
    run = run_training(
        cfg,
        root / "work",
        seed=ctx.seed,
        from_scratch=not start_model,
        models_dir=ctx.settings.models_dir,
    )
    train_seconds = time.perf_counter() - train_start
    if start_model:
        measured = training["card"].get("measured", {})
        began = (
            f"fine-tuned from the shipped start model ({Path(start_model).name}, made by "
            f"`{training['card'].get('made_by', {}).get('command')}` on the varied world alone; mIoU "
            f"{measured.get('miou')} % on its own {measured.get('images')} test photos) at learning rate "
            f"{training['lr']}"
        )
    else:
        began = "trained from scratch"
    pipeline = CoralPipeline(cfg, run["best_checkpoint"], ctx.settings.sam_checkpoint, device="cpu")
    eval_pairs = split_pairs(data_root, EVAL_SPLIT)
    metrics = evaluate_segmenter(pipeline.segmenter, eval_pairs, root / "eval")
    ctx.shared["semantic_segmenter"] = pipeline.segmenter  # for the chain's ensemble (pipeline.demo_process)
    coral = [
        m["IoU"] for name, m in metrics["per_class"].items() if name != "background" and m["IoU"] is not None
    ]
    mean_coral = round(float(np.mean(coral)), 2) if coral else None
    # percent cover per class: predicted semantic map vs the annotated masks, on the test images, over the
    # classes present in either
    cover_errors = []
    for image_path, mask_path in eval_pairs:
        rgb = read_image_rgb(str(image_path))
        predicted = cover_from_class_map(pipeline.segmenter.predict_classes(rgb), pipeline.classes)
        true = cover_from_class_map(cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED), pipeline.classes)
        cover_errors.extend(cover_abs_errors(predicted, true).values())
    cover_mae = round(float(np.mean(cover_errors)), 3)

    section = ctx.report.section("Coral segmentation (DINOv2_mmseg)")
    section.paragraphs.append(
        f"A tiny DINOv2-shaped ViT/14 (48-dim, 4 blocks) with a SegFormer head, {began} on CPU "
        f"for {epochs} epochs ({train_seconds:.0f} s) on the synthetic train and val photos"
        + (
            f" ({chain_cleaned} of them, those with a grid, as the grid-removal stage leaves them)"
            if chain_cleaned
            else ", grid-free"
        )
        + f", {LEVEL} level, "
        f"with the same code and registry entries as the ViT-B/14 config. On the {len(eval_pairs)} "
        f"images of the {EVAL_SPLIT} split: mIoU "
        f"{metrics['mIoU']} % over the classes present (background included; MMSeg's IoUMetric), "
        f"mean coral IoU {mean_coral} %, pixel accuracy {metrics['aAcc']} %; percent cover per class "
        f"within {cover_mae} percentage points of the annotated cover on average (over the classes "
        f"present in the truth or the prediction). "
        f"Colonies: refinement {pipeline.refinement}"
        + (
            " (no SAM/CoralSCoP weights offline: the colonies are the semantic seeds)."
            if pipeline.refinement == "none"
            else " with SAM."
        )
    )
    section.tables.append(
        (
            f"Per class ({EVAL_SPLIT})",
            ["class", "IoU %", "Acc %", "pixels"],
            [[name, m["IoU"], m["Acc"], m["pixels"]] for name, m in metrics["per_class"].items()],
        )
    )
    palette = pipeline.segmenter.palette
    colors = {n: "#{:02x}{:02x}{:02x}".format(*palette[k]) for k, n in enumerate(pipeline.classes)}
    colonies = 0
    for i, (image_path, _) in enumerate(split_pairs(data_root, "test")[:2]):
        rgb = read_image_rgb(str(image_path))
        classes_map, instances = pipeline(rgb)
        colonies += len(instances)
        ctx.report.add_image(
            section, f"mmseg_semantic_{i}", semantic_overlay(rgb, classes_map, palette), "semantic classes"
        )
        overlay = draw_polygons(rgb, [(inst.label, inst.rings) for inst in instances], colors)
        ctx.report.add_image(section, f"mmseg_instances_{i}", overlay, f"colonies ({pipeline.refinement})")
    matrix = cv2.cvtColor(cv2.imread(metrics["confusion_matrix_png"]), cv2.COLOR_BGR2RGB)
    ctx.report.add_image(section, "mmseg_confusion", matrix, f"confusion matrix ({EVAL_SPLIT})")
    return {
        "miou": metrics["mIoU"],
        "mean_coral_iou": mean_coral,
        "cover_mean_abs_error_pp": cover_mae,
        "aacc": metrics["aAcc"],
        "macc": metrics["mAcc"],
        "per_class_iou": {name: m["IoU"] for name, m in metrics["per_class"].items()},
        "level": LEVEL,
        "split": EVAL_SPLIT,
        "images": len(eval_pairs),
        "cover_comparisons": len(cover_errors),
        "epochs": epochs,
        "start_model": start_model,
        "train_seconds": round(train_seconds, 1),
        "trained_on_grid_removed": chain_cleaned,
        "refinement": pipeline.refinement,
        "test_colonies": colonies,
        "seconds": round(time.perf_counter() - start, 2),
    }
