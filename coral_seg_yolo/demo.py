"""Demo stage: train YOLO11n-seg on the synthetic clean images for a few CPU minutes, evaluate, show overlays.

Uses the ``demo_segmentation`` FiftyOne dataset built by the data_engineering stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from coral_seg_yolo.evaluate import ultralytics_validation
from coral_seg_yolo.predictor import DEFAULT_CONF, SegPredictor
from coral_seg_yolo.prepare_data import write_seg_layout
from coral_seg_yolo.train import write_trained_card
from quadratseg.images import read_image_rgb
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import draw_polygons
from quadratseg.yolo_layout import layout_stem, replace_layout_photos
from quadratseg.yolo_train import load_experiment, train_yolo

DATASET = "demo_segmentation"
# The 16 genera, as upstream. With nbs = batch the optimizer steps every batch (ultralytics would
# otherwise accumulate to a nominal batch of 64: one step every 4 epochs on 12 images); that took
# mask mAP@0.5 on val from 0.41 to 0.99 at the main-family level and to 0.94 for the 16 genera.
LEVEL = "finegrained"
EPOCHS = 150
IMGSZ = 320
# The varied world's demo set has 36 training photos (12 in the simple one, 5 optimizer steps an epoch
# instead of 2). From scratch, 50 epochs (250 steps, about 3 CPU minutes on 2 cores) reached mask
# mAP@0.5 0.045-0.059 on its 12 test photos over seeds 0-2 (0.074 after 70): nothing like a working
# model. So the varied world's model is the path the project gives a programme: the shipped
# segmentation model (coral_seg_yolo.seg_model, other varied-world photos) fine-tuned on the demo's
# training photos at a fifth of the learning rate.
VARIED_TRAINING = {"epochs": 30, "lr0": 0.002}
EVAL_SPLIT = "test"  # the figures come from the test split
# Short CPU training (from scratch in the simple world): SGD at lr 0.01 (0.002 to fine-tune), no early
# stopping, no plots during training, no checkpoint picked on val (best.pt is the last epoch's): the
# chain fits its cover intervals on the val photos, which must be held out from every choice
# (pipeline.demo_process).
SHORT_RUN = {
    "optimizer": "SGD",
    "lr0": 0.01,
    "patience": 0,
    "batch": 8,
    "nbs": 8,
    "workers": 0,
    "plots": False,
    "val": False,
    "imgsz": IMGSZ,
}


def demo_training(world: str) -> dict[str, Any]:
    """The demo's training overrides in ``world`` (epochs, ...; ``model``: the checkpoint it starts
    from, absent when it trains from scratch)."""
    if world != "varied":
        return {"epochs": EPOCHS}
    from coral_seg_yolo.seg_model import shipped_seg_model
    from quadratseg.model_card import require_card_fields

    shipped = shipped_seg_model()
    wanted = {"level": LEVEL, "classes": load_taxonomy().classes(LEVEL), "imgsz": IMGSZ}
    # ultralytics keeps only the layers whose shapes match the data's classes: a model of other
    # classes would be fine-tuned from a random head without a word
    require_card_fields(shipped, wanted, "a start for this demo", "the demo trains")
    return {**VARIED_TRAINING, "model": str(shipped)}


def _chain_split(samples: Any, data_dir: Path, removed: dict[str, np.ndarray]) -> int:
    """Add the split ``chain`` to the layout: the test photos as the grid-removal stage cleaned
    them from predicted keypoints, with the test labels; returns how many photos it holds."""
    import shutil

    import yaml

    count = 0
    for sample in samples.match_tags(EVAL_SPLIT):
        image = removed.get(sample.cvat_image_name)
        if image is None:
            continue
        stem = layout_stem(sample)
        for sub in ("images", "labels"):
            (data_dir / sub / "chain").mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(data_dir / "images" / "chain" / f"{stem}.png"), image[..., ::-1]):
            raise OSError(f"cannot write {data_dir / 'images' / 'chain' / stem}.png")
        shutil.copyfile(
            data_dir / "labels" / EVAL_SPLIT / f"{stem}.txt", data_dir / "labels" / "chain" / f"{stem}.txt"
        )
        count += 1
    if count:
        description = yaml.safe_load((data_dir / "data.yaml").read_text(encoding="utf-8"))
        # ultralytics resolves only train/val/test/minival against "path": an absolute path
        description["chain"] = str((data_dir / "images" / "chain").resolve())
        (data_dir / "data.yaml").write_text(yaml.safe_dump(description, sort_keys=False), encoding="utf-8")
    return count


def as_the_chain_sees_them(samples: Any, data_dir: Path, cleaned: dict[str, np.ndarray]) -> int:
    """Replace the layout's train and val photos that ``cleaned`` holds (photo name -> (H, W, 3)
    uint8 RGB, the warped photo with its grid removed by the grid-removal stage) by those images,
    labels unchanged (:func:`quadratseg.yolo_layout.replace_layout_photos`): the model then learns
    and picks its colony threshold on photos as the chain gives them to it. Returns how many were
    replaced."""
    return replace_layout_photos(samples, cleaned, lambda split: data_dir / "images" / split)


def stage(ctx: Any) -> dict[str, Any]:
    """Train, evaluate on the test split, and illustrate the coral segmentation model."""
    import fiftyone as fo

    from coral_seg_yolo.train import CONFIG

    start = time.perf_counter()
    samples = fo.load_dataset(DATASET)
    root = ctx.out_dir / "coralseg"
    write_seg_layout(samples, root / "data", level=LEVEL, overwrite=True)
    chain_cleaned = as_the_chain_sees_them(
        samples, root / "data", ctx.shared.get("grid_removed_training", {})
    )
    training = demo_training(getattr(ctx, "world", "simple"))
    start_from = training.get("model")
    epochs = max(1, round(training["epochs"] * ctx.training_scale))
    config = load_experiment(CONFIG, {**SHORT_RUN, **training, "epochs": epochs, "seed": ctx.seed})
    train_start = time.perf_counter()
    run = train_yolo(
        config,
        root / "data" / "data.yaml",
        ctx.out_dir / "runs",
        "coralseg",
        ctx.settings.num_threads,
        from_scratch=start_from is None,
    )
    train_seconds = time.perf_counter() - train_start
    # the colony threshold measured on the val split travels in the model's card, so the chain below
    # (and its interval terms, fitted on the val photos) uses the one the predictor will use on test
    card = write_trained_card(
        root / "data" / "data.yaml", run["best"], IMGSZ, root / "eval", ctx.settings.device
    )
    threshold = card["conf_measured"]
    metrics = ultralytics_validation(
        run["best"], str(root / "data" / "data.yaml"), EVAL_SPLIT, IMGSZ, root / "eval"
    )
    chain = _chain_split(samples, root / "data", ctx.shared.get("grid_removed", {}))
    chain_metrics = (
        ultralytics_validation(run["best"], str(root / "data" / "data.yaml"), "chain", IMGSZ, root / "eval")
        if chain
        else None
    )
    eval_images = sum(1 for p in (root / "data" / "images" / EVAL_SPLIT).iterdir() if p.is_file())
    eval_instances = sum(
        len(f.read_text().splitlines()) for f in (root / "data" / "labels" / EVAL_SPLIT).glob("*.txt")
    )
    section = ctx.report.section("Coral segmentation (coral_seg_yolo)")
    how = "fine-tuned from the shipped segmentation model" if start_from else "trained from scratch"
    section.paragraphs.append(
        f"YOLO11n-seg {how}"
        f" on CPU for {epochs} epochs at {IMGSZ} px ({train_seconds:.0f} s) "
        + (
            f"on the synthetic train and val photos, {chain_cleaned} of them (those with a grid) as the "
            "grid-removal stage leaves them (the strings inpainted from the grid annotations, as a "
            "programme's segmentation project holds them), the others without strings, "
            if chain_cleaned
            else "on the grid-free synthetic images, "
        )
        + f"{LEVEL} classes. On the {eval_images} images of the "
        f"{EVAL_SPLIT} split: mask mAP@0.5 {metrics['mask_map50']}, "
        f"mAP@0.5:0.95 {metrics['mask_map50_95']}, box mAP@0.5 {metrics['box_map50']}, precision "
        f"{metrics['precision']}, recall {metrics['recall']} (ultralytics' validator)."
        + (
            f" On the same {chain} photos with the grid removed by the grid-removal stage from the grid "
            f"model's predicted keypoints (the chain): mask mAP@0.5 {chain_metrics['mask_map50']}, "
            f"mAP@0.5:0.95 {chain_metrics['mask_map50_95']}."
            if chain_metrics
            else ""
        )
    )
    section.paragraphs.append(
        "Colonies whatever their genus (every genus as one class, ultralytics' validator) on the val split: "
        + (
            f"mask F1 is highest at confidence {threshold['conf']} (precision {threshold['precision']}, "
            f"recall {threshold['recall']}, mask mAP@0.5 {threshold['mask_map50']}); the model card records "
            "it and the chain below keeps the colonies above it."
            if threshold["conf"] is not None
            else f"none outlined right at any confidence; the chain keeps those above {DEFAULT_CONF}."
        )
    )
    section.tables.append(
        (
            f"Per class ({EVAL_SPLIT})",
            ["class", "mask mAP@0.5", "mask mAP@0.5:0.95", "box mAP@0.5"],
            [
                [name, m["mask_map50"], m["mask_map50_95"], m["box_map50"]]
                for name, m in metrics["per_class"].items()
            ],
        )
    )
    predictor = SegPredictor(run["best"], imgsz=IMGSZ)
    ctx.shared["seg_predictor"] = predictor  # for the chain on raw photos (pipeline.demo_process)
    taxonomy = load_taxonomy()
    colors = {name: taxonomy.color(name) for name in predictor.names.values()}
    for i, sample in enumerate(samples.match_tags("test").limit(2)):
        image = read_image_rgb(sample.filepath)
        instances = predictor.predict(image)
        overlay = draw_polygons(image, [(inst.label, inst.rings) for inst in instances], colors)
        ctx.report.add_image(
            section, f"coralseg_{i}", overlay, f"predicted colonies on {sample.cvat_image_name}"
        )
    for plot in metrics["plots"]:
        if plot.endswith(("confusion_matrix_normalized.png", "MaskPR_curve.png")):
            image = cv2.cvtColor(cv2.imread(plot), cv2.COLOR_BGR2RGB)
            ctx.report.add_image(
                section, f"coralseg_{plot.rsplit('/', 1)[-1][:-4]}", image, plot.rsplit("/", 1)[-1]
            )
    return {
        "mask_map50": metrics["mask_map50"],
        "mask_map50_95": metrics["mask_map50_95"],
        "box_map50": metrics["box_map50"],
        "box_map50_95": metrics["box_map50_95"],
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "per_class_mask_map50": {name: m["mask_map50"] for name, m in metrics["per_class"].items()},
        "chain_images": chain,
        "chain_mask_map50": chain_metrics["mask_map50"] if chain_metrics else None,
        "chain_mask_map50_95": chain_metrics["mask_map50_95"] if chain_metrics else None,
        "level": LEVEL,
        "split": EVAL_SPLIT,
        "images": eval_images,
        "instances": eval_instances,
        "epochs": epochs,
        "started_from": start_from,
        "imgsz": IMGSZ,
        "train_seconds": round(train_seconds, 1),
        # train and val photos the model learnt from as the grid-removal stage cleaned them
        "trained_on_grid_removed": chain_cleaned,
        "colony_threshold": threshold,
        "seconds": round(time.perf_counter() - start, 2),
    }
