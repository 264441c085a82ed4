"""CLI: the frame (corner) model of a programme without corner annotations, in one command.

    python -m grid_pose_detection.frame_model OUT [--images 120] [--size 512] [--seed 0] [--epochs 30]

1. renders ``--images`` photo-quadrats of the varied synthetic world (:mod:`quadratseg.synth`,
   ``--world varied``) into ``OUT/synth`` (60 / 20 / 20 % train / val / test);
2. writes their corners in the ultralytics pose layout (one object per corner, the ``points`` layout of
   :mod:`grid_pose_detection.prepare_data`) into ``OUT/layout``, straight from the generator's truth;
3. trains YOLO11n-pose from scratch with ``configs/gridcorners_varied.yaml`` (the flags override it) into
   ``OUT/runs/gridcorners``, whose ``best.pt`` gets its model card (box threshold chosen on the val
   split) and the command, seed and generator version that made it;
4. measures it on real photos with hand corners (:mod:`grid_pose_detection.evaluate_real`; default the
   shared data's ``real_quadrats/coralscop``, never trained on) and writes ``OUT/report.json``.

The real photos are only measured, never used for training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from grid_pose_detection.prepare_data import data_yaml, point_lines
from grid_pose_detection.tasks import get_task
from quadratseg.atomic import atomic_output_dir, atomic_write_json
from quadratseg.errors import QuadratsegError

CONFIG = Path(__file__).parent / "configs" / "gridcorners_varied.yaml"
SPLITS = ("train", "val", "test")
# The frame model the project ships (5.6 MB): made by this command on the varied world alone (the
# command, seed and generator version are in its model card's ``made_by``), never trained on a real
# photo. A programme without corner annotations starts from it (docs/training.md), and so does the
# demo's corner model in the varied world.
SHIPPED_WEIGHTS = Path(__file__).parent / "shipped" / "gridcorners_varied" / "best.pt"


def shipped_frame_model(weights: str | Path | None = None) -> Path:
    """The shipped frame model's weights file (default :data:`SHIPPED_WEIGHTS`), checked against the
    sha256 its model card records.

    A checkout without the file, a Git LFS pointer in its place or a truncated copy is refused with
    the way to make the model again (the card's command, then its ``best.pt`` and ``model_card.json``
    copied into the shipped folder: a model made again is another file, which its own card hashes),
    never loaded as something else.
    """
    from quadratseg.weights import shipped_weights

    return shipped_weights(
        SHIPPED_WEIGHTS if weights is None else weights,
        "the shipped frame model",
        "python -m grid_pose_detection.frame_model OUT",
        "runs/gridcorners/weights/best.pt",
    )


def corner_layout(synth_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """The ultralytics pose layout (one object per corner) of a generated set's raw photos.

    Corners are the generator's truth (TL, TR, BR, BL in the displayed orientation); a photo stored with
    an EXIF turn is written upright; a corner outside the photo (a frame partly out of the shot) is
    written with visibility 0; a photo with no frame (truth ``frame`` "none") gets an empty label file
    (an ultralytics background image).

    Returns:
        ``{"images": {split: n}, "data_yaml": path}``.
    """
    from quadratseg.images import exif_orientation, read_image_rgb, write_upright
    from quadratseg.synth.dataset import export_image_path, load_truth

    task = get_task("gridcorners")
    synth_dir = Path(synth_dir)
    counts = dict.fromkeys(SPLITS, 0)
    with atomic_output_dir(out_dir, overwrite) as tmp:
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
        for t in load_truth(synth_dir):
            if t["subset"] not in SPLITS:
                raise QuadratsegError(
                    f"{synth_dir}: {t['name']} is in subset {t['subset']!r}, not one of {SPLITS}"
                )
            source = export_image_path(synth_dir / "cvat_exports" / "corners", t["subset"], t["name"])
            target = tmp / "images" / t["subset"] / t["name"]
            if exif_orientation(source) == 1:
                target.symlink_to(source.resolve())
            else:
                write_upright(source, target)
            corners = np.asarray(t["corners_raw_xy"], dtype=np.float64)
            height, width = read_image_rgb(source).shape[:2]  # the displayed photo (EXIF turn applied)
            inside = (corners >= 0).all(axis=1) & (corners[:, 0] <= width) & (corners[:, 1] <= height)
            lines = (
                []  # a photo with no frame (no_frame_share): a background image, nothing to find
                if t.get("frame") == "none"
                else point_lines(task, corners, inside, (width, height), "points")
            )
            (tmp / "labels" / t["subset"] / f"{Path(t['name']).stem}.txt").write_text(
                "".join(f"{line}\n" for line in lines), encoding="utf-8"
            )
            counts[t["subset"]] += 1
        empty = [s for s, n in counts.items() if n == 0]
        if empty:
            raise QuadratsegError(
                f"{synth_dir}: no photo in the {', '.join(empty)} split; render more --images"
            )
        (tmp / "data.yaml").write_text(
            yaml.safe_dump(data_yaml(task, Path(out_dir), "points"), sort_keys=False), encoding="utf-8"
        )
    return {"images": counts, "data_yaml": str(Path(out_dir) / "data.yaml")}


def frame_model(
    out: str,
    images: int = 120,
    size: int = 512,
    seed: int = 0,
    epochs: int | None = None,
    imgsz: int | None = None,
    photos: str | None = None,
    workers: int = 0,
    overwrite: bool = False,
) -> str:
    """Render the varied world, train the frame model on it and measure it on real photos.

    Args:
        out: folder for the synthetic set, the layout, the run and report.json.
        images: synthetic photos to render (60 / 20 / 20 % train / val / test).
        size: their width in px (height 3/4 of it).
        seed: seed of the synthetic set and of the training.
        epochs: training epochs (default: the config's).
        imgsz: training and inference size (default: the config's).
        photos: real photos with corners.json to measure on (default: the shared data's
            real_quadrats/coralscop); measuring is skipped with a note when there are none.
        workers: rendering processes (0: one per CPU core).
        overwrite: replace the synthetic set and layout of an earlier run in ``out``.

    Returns:
        JSON: the weights, how long each step took, the synthetic test split's and the real photos' figures.
    """
    from grid_pose_detection.card import write_pose_card
    from grid_pose_detection.evaluate_real import default_photos_folder, real_frames
    from grid_pose_detection.predictor import PosePredictor
    from quadratseg.cli import current_settings, device
    from quadratseg.synth.dataset import SynthConfig, generate_dataset
    from quadratseg.weights import cli_command, stamp_made_by
    from quadratseg.yolo_train import run_training

    settings = current_settings()
    root = Path(out)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    config = SynthConfig(images=images, seed=seed, size=size, world="varied")
    synth_dir = generate_dataset(root / "synth", config, overwrite=overwrite, workers=workers)
    seconds["render"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    layout = corner_layout(synth_dir, root / "layout", overwrite=overwrite)
    overrides = {"epochs": epochs, "imgsz": imgsz, "seed": seed}
    result = run_training(
        CONFIG,
        layout["data_yaml"],
        root / "runs",
        "gridcorners",
        overrides=overrides,
        settings=settings,
        from_scratch=True,
        tensorboard=False,
        device=device(settings=settings),
    )
    seconds["train"] = round(time.perf_counter() - start, 1)
    trained_imgsz = int(result["config"].get("imgsz"))
    write_pose_card(result["best"], "gridcorners", layout["data_yaml"], None, True, imgsz=trained_imgsz)
    flags = {"images": images, "size": size, "seed": seed, "epochs": epochs, "imgsz": imgsz}
    card = stamp_made_by(
        result["best"],
        cli_command("python -m grid_pose_detection.frame_model OUT", flags),
        seed,
        synth_dir,
        CONFIG.name,
    )  # the sha256 shipped_frame_model checks
    predictor = PosePredictor(result["best"], get_task("gridcorners"), device=device(settings=settings))
    report: dict[str, Any] = {"weights": str(result["best"]), "seconds": seconds, "card": card}
    report["synthetic_test"] = synthetic_test_figures(predictor, synth_dir)
    folder = Path(photos) if photos else default_photos_folder(settings)
    if (folder / "corners.json").is_file():
        report["real_frames"] = real_frames(predictor, result["best"], folder)
    else:
        report["real_frames"] = None
        report["note"] = f"no real photos measured: {folder / 'corners.json'} does not exist"
    atomic_write_json(root / "report.json", report)
    return json.dumps(report, indent=2, default=str)


def synthetic_test_figures(predictor: Any, synth_dir: str | Path) -> dict[str, Any]:
    """Frames found and mean corner error (px) of ``predictor`` on the generated set's test photos."""
    from quadratseg.images import read_image_rgb
    from quadratseg.synth.dataset import export_image_path, load_truth

    errors, found, photos = [], 0, 0
    for t in load_truth(synth_dir):
        if t["subset"] != "test":
            continue
        photos += 1
        image = read_image_rgb(
            export_image_path(Path(synth_dir) / "cvat_exports" / "corners", "test", t["name"])
        )
        (prediction,) = predictor.predict([image])
        if prediction.homography is None:
            continue
        found += 1
        errors.append(
            float(np.linalg.norm(prediction.keypoints_xy - np.asarray(t["corners_raw_xy"]), axis=1).mean())
        )
    return {
        "photos": photos,
        "found": found,
        "mean_px_error": round(float(np.mean(errors)), 2) if errors else None,
        "within_5px": int(sum(e <= 5 for e in errors)),
    }


if __name__ == "__main__":
    from quadratseg.cli import run

    run(frame_model, name="grid_pose_detection.frame_model")
