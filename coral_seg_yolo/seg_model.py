"""CLI: the coral segmentation model a programme starts from, made on the varied world in one command.

    python -m coral_seg_yolo.seg_model OUT [--images 500] [--size 768] [--seed 0] [--epochs 90]
        [--start best.pt]

1. renders ``--images`` photo-quadrats of the varied synthetic world (:mod:`quadratseg.synth`,
   ``--world varied``) into ``OUT/synth`` (``--holdout`` of them for val and as many for test);
2. writes their warped grid-free quadrats and true colonies (each visible part of a colony one
   instance, holes joined as ultralytics joins them) in the YOLO-seg layout at the ``--level`` of the
   taxonomy into ``OUT/layout`` (:func:`coral_seg_yolo.prepare_data.write_seg_images`), straight from
   the generator's truth;
3. trains YOLO11n-seg from scratch (or on from ``--start``, a model it made before) with
   ``configs/coralseg_varied.yaml`` (the flags override it) into
   ``OUT/runs/coralseg``, whose ``best.pt`` gets its model card
   (:func:`coral_seg_yolo.train.write_trained_card`: sizes, classes, colony threshold) and the
   command, seed and generator version that made it, and the sha256 :func:`shipped_seg_model` checks;
4. scores it with ultralytics' validator on the test split and writes ``OUT/report.json``.

No real photo is used. The model it makes is a start that a programme fine-tunes on its own
annotations (``coral_seg_yolo.train --model best.pt``), as the demo does in the varied world.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from coral_seg_yolo.prepare_data import SegImage, write_seg_images
from quadratseg.atomic import atomic_write_json
from quadratseg.errors import QuadratsegError

CONFIG = Path(__file__).parent / "configs" / "coralseg_varied.yaml"
# The segmentation model the project ships (YOLO11n-seg, 16 genera): made by this command on the varied
# world alone (the command, seed and generator version are in its model card's ``made_by``). The demo's
# YOLO stage starts from it in the varied world (coral_seg_yolo.demo).
SHIPPED_WEIGHTS = Path(__file__).parent / "shipped" / "coralseg_varied" / "best.pt"
RUN_NAME = "coralseg"


def shipped_seg_model(weights: str | Path | None = None) -> Path:
    """The shipped segmentation model's weights (default :data:`SHIPPED_WEIGHTS`), checked against the
    sha256 its model card records (:func:`quadratseg.weights.shipped_weights`: a missing file, a Git LFS
    pointer or a truncated copy is refused with the command that makes it again)."""
    from quadratseg.weights import shipped_weights

    return shipped_weights(
        SHIPPED_WEIGHTS if weights is None else weights,
        "the shipped segmentation model",
        "python -m coral_seg_yolo.seg_model OUT",
        f"runs/{RUN_NAME}/weights/best.pt",
    )


def truth_seg_images(synth_dir: str | Path, level: str = "finegrained") -> Iterator[SegImage]:
    """The :class:`SegImage` of every photo of a generated set: its warped grid-free quadrat (the
    segmentation export) and its true corals (each visible part one instance: outline then holes), with
    the genus mapped to ``level`` of the taxonomy (:func:`quadratseg.synth.dataset.segmentation_truth`)."""
    from quadratseg.synth.dataset import segmentation_truth

    for subset, path, size_wh, corals in segmentation_truth(synth_dir, level):
        size = np.asarray(size_wh, dtype=np.float64)
        colonies = [(label, [ring / size for ring in rings]) for label, rings in corals]
        yield SegImage(subset, str(path), path.stem, size_wh, colonies)


def start_model_card(start: str | Path, level: str) -> dict[str, Any]:
    """What a run that goes on from ``start`` records of it (:func:`quadratseg.weights.start_model_card`),
    once the start is checked to be a segmentation model of ``level``'s classes.

    Raises:
        QuadratsegError: ``start`` is not a file, has no model card, its card records another file's
            sha256, or it names other classes (ultralytics would keep only the layers whose shapes fit
            and train a random head).
    """
    from quadratseg.taxonomy import load_taxonomy
    from quadratseg.weights import start_model_card as checked_start

    recorded, card = checked_start(start)
    classes = load_taxonomy().classes(level)
    if card.get("classes") != classes:
        raise QuadratsegError(
            f"--start {start} segments {card.get('classes')}, not the {len(classes)} classes of {level}: "
            "ultralytics would keep its body and train a random head; start from a model of this level"
        )
    return recorded


def seg_model(
    out: str,
    images: int = 500,
    size: int = 768,
    seed: int = 0,
    epochs: int | None = None,
    imgsz: int | None = None,
    holdout: float = 0.1,
    level: str = "finegrained",
    workers: int = 0,
    overwrite: bool = False,
    start: str | None = None,
) -> str:
    """Render the varied world, train the segmentation model on it and score it on its test split.

    Args:
        out: folder for the synthetic set, the layout, the run and report.json.
        images: synthetic photos to render.
        size: their warped quadrats' width in px (the demo's: 768).
        seed: seed of the synthetic set and of the training.
        epochs: training epochs (default: the config's).
        imgsz: training and validation size (default: the config's).
        holdout: share of the photos held out for val, and again for test.
        level: taxonomy level of the classes.
        workers: rendering processes (0: one per CPU core).
        overwrite: replace the synthetic set and layout of an earlier run in ``out``.
        start: a model this command made before (same level, its card beside it) to go on training
            from, on this run's photos, instead of from scratch: the card records it (its sha256 and
            what made it) under ``made_by.start``.

    Returns:
        JSON: the weights, how long each step took, and the test split's figures.
    """
    from coral_seg_yolo.evaluate import ultralytics_validation
    from coral_seg_yolo.train import write_trained_card
    from quadratseg.cli import current_settings, device
    from quadratseg.model_card import write_model_card
    from quadratseg.synth.dataset import SynthConfig, generate_dataset
    from quadratseg.taxonomy import load_taxonomy
    from quadratseg.weights import cli_command, stamp_made_by
    from quadratseg.yolo_train import run_training

    load_taxonomy().classes(level)  # an unknown level stops here, before minutes of rendering
    start_card = start_model_card(start, level) if start is not None else None
    settings = current_settings()
    root = Path(out)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    config = SynthConfig(images=images, seed=seed, size=size, world="varied", holdout_share=holdout)
    synth_dir = generate_dataset(root / "synth", config, overwrite=overwrite, workers=workers)
    seconds["render"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    layout = write_seg_images(truth_seg_images(synth_dir, level), root / "layout", level, overwrite=overwrite)
    seconds["layout"] = round(time.perf_counter() - clock, 1)
    clock = time.perf_counter()
    overrides = {"epochs": epochs, "imgsz": imgsz, "seed": seed}
    if start is not None:
        overrides["model"] = str(start)
    result = run_training(
        CONFIG,
        layout["data_yaml"],
        root / "runs",
        RUN_NAME,
        overrides=overrides,
        settings=settings,
        from_scratch=start is None,
        tensorboard=False,
        device=device(settings=settings),
    )
    seconds["train"] = round(time.perf_counter() - clock, 1)
    trained_imgsz = int(result["config"].get("imgsz"))
    on = device(settings=settings)
    write_trained_card(layout["data_yaml"], result["best"], trained_imgsz, root / "eval", on)
    flags = {
        "images": images,
        "size": size,
        "seed": seed,
        "epochs": epochs,
        "imgsz": imgsz,
        "holdout": holdout if holdout != 0.1 else None,
        "level": level if level != "finegrained" else None,
        "start": start,
    }
    card = stamp_made_by(
        result["best"],
        cli_command("python -m coral_seg_yolo.seg_model OUT", flags),
        seed,
        synth_dir,
        CONFIG.name,
    )  # the sha256 shipped_seg_model checks
    if start_card is not None:
        card["made_by"]["start"] = start_card
        write_model_card(result["best"], card)
    clock = time.perf_counter()
    metrics = ultralytics_validation(
        str(result["best"]),
        layout["data_yaml"],
        "test",
        trained_imgsz,
        root / "eval",
        device=device(settings=settings),
    )
    seconds["test"] = round(time.perf_counter() - clock, 1)
    card["measured"] = {
        "split": "test",
        "images": layout["images"]["test"],
        "mask_map50": metrics["mask_map50"],
        "mask_map50_95": metrics["mask_map50_95"],
        "box_map50": metrics["box_map50"],
    }
    write_model_card(result["best"], card)
    report: dict[str, Any] = {
        "weights": str(result["best"]),
        "seconds": seconds,
        "layout": layout,
        "test": metrics,
        "card": card,
    }
    atomic_write_json(root / "report.json", report)
    return json.dumps(report, indent=2, default=str)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(seg_model, name="coral_seg_yolo.seg_model")
