"""CLI: the frame model of a new programme fine-tuned on a few of its annotated photos (a few-shot curve).

    python -m grid_pose_detection.few_shot BASE.pt OUT [--photos DIR] [--ks 0,1,3,5] [--epochs 20]

``BASE.pt``: a corner model trained on synthetic photos (``grid_pose_detection.frame_model``). ``DIR``:
the programme's photos with their hand corners in ``corners.json`` (the layout of
:mod:`grid_pose_detection.evaluate_real`; default the shared data's ``real_quadrats/coralscop``).

Leave-one-out: each photo in turn is held out; for each K, K of the other photos (drawn with ``--seed``)
fine-tune ``BASE.pt`` for ``--epochs`` (K = 0: the base model as it is), and the held-out photo is
predicted with refinement and the frame check on. The held-out photo is never trained on, nor used to
pick a checkpoint (the K photos are also the val split: the last epoch's weights are used). Per K the
answer gives the photos whose frame was found, those within 1.5 % of the side and the mean corner error
(share of the side) over the frames found, and writes ``OUT/few_shot.json`` after each K (``complete``
says whether every K is in). The photos are read upright and their hand corners turned with them
(:func:`~grid_pose_detection.evaluate_real.load_hand_corners`); a missing photo or an impossible K
stops the command before any work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from grid_pose_detection.evaluate_real import load_hand_corners, photo_row, summarize
from grid_pose_detection.prepare_data import data_yaml, point_lines
from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError

FINE_TUNE = {
    "optimizer": "SGD",
    "lr0": 0.002,  # a fifth of the synthetic recipe's: adapt, do not forget
    "warmup_epochs": 0,
    "mosaic": 0.0,
    "patience": 0,
    "batch": 4,
    "nbs": 4,
    "workers": 0,
    "plots": False,
    "degrees": 10.0,
    "hsv_h": 0.03,
    "hsv_s": 0.6,
    "hsv_v": 0.4,
    "scale": 0.2,
    "fliplr": 0.5,
}


def write_photo_layout(folder: Path, names: list[str], hand: dict[str, np.ndarray], out: Path) -> Path:
    """A pose layout (one object per corner) of ``names`` from ``folder``, every photo in train and val
    (the few photos are all there is to fit and to check the fit), written upright with ``hand``, their
    corners in the upright photos (:func:`~grid_pose_detection.evaluate_real.load_hand_corners`); returns
    its data.yaml."""
    from quadratseg.images import read_image_rgb, write_upright
    from quadratseg.keypoints import inside_image

    task = get_task("gridcorners")
    for split in ("train", "val", "test"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        image = read_image_rgb(folder / name)
        height, width = image.shape[:2]
        corners = hand[name]
        inside = inside_image(corners, (width, height))
        lines = "\n".join(point_lines(task, corners, inside, (width, height), "points")) + "\n"
        stem = f"photo_{i:02d}"  # the names may hold characters ultralytics' paths do not like (###)
        for split in ("train", "val"):
            write_upright(folder / name, out / "images" / split / f"{stem}{Path(name).suffix}")
            (out / "labels" / split / f"{stem}.txt").write_text(lines, encoding="utf-8")
    path = out / "data.yaml"
    path.write_text(yaml.safe_dump(data_yaml(task, out, "points"), sort_keys=False), encoding="utf-8")
    return path


def training_photos(names: list[str], held_out: str, k: int, seed: int) -> list[str]:
    """K photos other than ``held_out``, drawn with ``seed`` (the same draw for every K: nested sets).

    Examples:
        >>> names = ["a", "b", "c", "d"]
        >>> training_photos(names, "b", 2, 0) == training_photos(names, "b", 3, 0)[:2]
        True
    """
    others = [n for n in names if n != held_out]
    if k > len(others):
        raise QuadratsegError(
            f"K = {k} needs {k} photos besides the held-out one; the folder has {len(others)}"
        )
    order = np.random.default_rng([seed, names.index(held_out)]).permutation(len(others))
    return [others[i] for i in order[:k]]


def few_shot(
    base: str,
    out: str,
    photos: str | None = None,
    ks: Any = (0, 1, 3, 5),
    epochs: int = 20,
    imgsz: int | None = None,
    seed: int = 0,
    held_out: str | None = None,
) -> str:
    """Leave-one-out few-shot curve of a synthetic frame model on annotated photos (see the module docstring).

    Args:
        base: corner model to start from (its card's thresholds and training size are used).
        out: folder for the fine-tuning runs and few_shot.json.
        photos: folder with the photos and corners.json (default: the shared data's
            real_quadrats/coralscop).
        ks: numbers of annotated photos to fine-tune on (0: the base model).
        epochs: fine-tuning epochs.
        imgsz: training and inference size (default: the base model card's).
        seed: which K photos are drawn, and the training seed.
        held_out: photo names to hold out in turn, comma-separated (or a list from Python; default:
            every photo). Taken as typed: real names hold ``#`` (``AUSTRALES_AUS_RAI1###20M###...``).

    Returns:
        JSON: per K the summary over the held-out photos and their rows.
    """
    from grid_pose_detection.evaluate_real import default_photos_folder
    from grid_pose_detection.predictor import PosePredictor
    from quadratseg.atomic import atomic_write_json
    from quadratseg.cli import as_names, current_settings, device, weights_path
    from quadratseg.images import read_image_rgb
    from quadratseg.model_card import read_model_card, write_model_card
    from quadratseg.yolo_train import load_experiment, train_yolo

    settings = current_settings()
    base = weights_path(base, settings)
    folder = Path(photos) if photos else default_photos_folder(settings)
    hand = load_hand_corners(folder)  # every photo's header read once, before any work: a missing one stops
    names = sorted(hand)
    ks = [int(k) for k in (ks if isinstance(ks, list | tuple) else str(ks).split(","))]
    if not ks:
        raise QuadratsegError("--ks names no number of annotated photos; give e.g. --ks 0,1,3,5")
    if min(ks) < 0 or max(ks) > len(names) - 1:  # before any work is done
        k = max(ks) if min(ks) >= 0 else min(ks)
        raise QuadratsegError(
            f"K = {k} needs {k} photos besides the held-out one; the folder has {len(names) - 1} "
            f"({folder / 'corners.json'}): give --ks from 0 to {len(names) - 1}"
        )
    held = names if held_out is None else as_names(held_out)
    unknown = sorted(set(held) - set(names))
    if unknown or not held:
        raise QuadratsegError(
            f"--held-out names photos not in {folder / 'corners.json'}: "
            f"{', '.join(unknown) or '(none given)'}; its photos are {', '.join(names)}"
        )
    card = read_model_card(base)
    size = int(imgsz or card.get("imgsz") or 640)
    task = get_task("gridcorners")
    root = Path(out)
    curve: dict[str, Any] = {}
    for k in ks:
        rows = []
        for name in held:
            weights = base
            if k > 0:
                chosen = training_photos(names, name, k, seed)
                run_dir = root / f"k{k}" / f"held_{names.index(name):02d}"
                data = write_photo_layout(folder, chosen, hand, run_dir / "layout")
                experiment = load_experiment(
                    task.config, {**FINE_TUNE, "epochs": epochs, "imgsz": size, "seed": seed}
                )
                experiment["model"] = str(base)
                run = train_yolo(
                    experiment,
                    data,
                    run_dir / "runs",
                    "gridcorners",
                    settings.num_threads,
                    device=device(settings=settings),
                    models_dir=settings.models_dir,
                    tensorboard=False,
                )
                weights = run["last"]  # the held-out photo picks no checkpoint
                if card.get("template"):  # the card names the base model's template: it goes along
                    shutil.copyfile(
                        Path(base).parent / card["template"], Path(weights).parent / card["template"]
                    )
                write_model_card(weights, {**card, "fine_tuned_on": chosen, "imgsz": size})
            predictor = PosePredictor(weights, task, imgsz=size, device=device(settings=settings))
            (prediction,) = predictor.predict([read_image_rgb(folder / name)])
            rows.append(photo_row(name, prediction, hand[name]))
        curve[str(k)] = {**summarize(rows, None), "rows": rows}
        result = {
            "base": str(base),
            "photos_folder": str(folder),
            "epochs": epochs,
            "imgsz": size,
            "seed": seed,
            "ks": ks,
            "complete": len(curve) == len(ks),  # written after each K: a stopped run keeps those done
            "curve": curve,
        }
        atomic_write_json(root / "few_shot.json", result)
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(few_shot, name="grid_pose_detection.few_shot")
