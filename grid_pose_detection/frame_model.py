"""CLI: the frame (corner) model, or the grid model, of a programme without annotations, in one command.

    python -m grid_pose_detection.frame_model OUT [--images 120] [--size 512] [--seed 0] [--epochs 30]
        [--start EARLIER/runs/gridcorners/weights/best.pt]
    python -m grid_pose_detection.frame_model OUT --task gridpose --images 800 --size 768 \
        --epochs 60 --imgsz 256

(the second: the shipped grid model's command; every flag has one default for both tasks.)

1. renders ``--images`` photo-quadrats of the varied synthetic world (:mod:`quadratseg.synth`,
   ``--world varied``) into ``OUT/synth`` (60 / 20 / 20 % train / val / test);
2. writes their keypoints in the ultralytics pose layout (one object per keypoint, the ``points``
   layout of :mod:`grid_pose_detection.prepare_data`) into ``OUT/layout``, straight from the
   generator's truth (:func:`truth_layout`): the 4 corners on the raw photos (``gridcorners``), or the
   117 grid intersections on the warped quadrats (``gridpose``; a quadrat without a grid is a
   background image, where the model must find nothing);
3. trains YOLO11n-pose from scratch with ``configs/<task>_varied.yaml`` (the flags override it) into
   ``OUT/runs/<task>``, whose ``best.pt`` gets its model card (box threshold chosen on the val split;
   for the grid, the template fitted on the training quadrats' true grids) and the command, seed and
   generator version that made it;
4. measures it on the synthetic test split and, for the corners, on real photos with hand corners
   (:mod:`grid_pose_detection.evaluate_real`; default the shared data's ``real_quadrats/coralscop``,
   never trained on), and writes ``OUT/report.json``.

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
# The grid model the project ships, made by this command with ``--task gridpose`` on the varied world
# alone; the varied demo's grid model starts from it (grid_pose_detection.demo).
SHIPPED_GRID_WEIGHTS = Path(__file__).parent / "shipped" / "gridpose_varied" / "best.pt"
TASKS = ("gridcorners", "gridpose")
CONFIGS = {"gridcorners": CONFIG, "gridpose": Path(__file__).parent / "configs" / "gridpose_varied.yaml"}
EXPORTS = {"gridcorners": "corners", "gridpose": "grid"}  # the generator's export each task reads


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


def shipped_grid_model(weights: str | Path | None = None) -> Path:
    """The shipped grid model's weights file (default :data:`SHIPPED_GRID_WEIGHTS`), checked as
    :func:`shipped_frame_model` checks the frame model's."""
    from quadratseg.weights import shipped_weights

    return shipped_weights(
        SHIPPED_GRID_WEIGHTS if weights is None else weights,
        "the shipped grid model",
        "python -m grid_pose_detection.frame_model OUT --task gridpose",
        "runs/gridpose/weights/best.pt",
    )


def check_task(task: str) -> str:
    """``task`` when this command trains it, else a clear error."""
    if task not in TASKS:
        raise QuadratsegError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def truth_points(truth: dict[str, Any], task: str) -> np.ndarray | None:
    """A generated photo's true keypoints of ``task``: its 4 corners (TL, TR, BR, BL) in the raw
    photo, or its 117 grid intersections in the warped quadrat; None when it has none (no frame, or
    a frame without a grid)."""
    from quadratseg.synth.dataset import truth_grid

    if check_task(task) == "gridpose":
        return truth_grid(truth, "warped")
    return None if truth.get("frame") == "none" else np.asarray(truth["corners_raw_xy"], dtype=np.float64)


def truth_layout(
    synth_dir: str | Path,
    out_dir: str | Path,
    task_name: str = "gridcorners",
    overwrite: bool = False,
    layout: str = "points",
    backgrounds: bool = True,
) -> dict[str, Any]:
    """The ultralytics pose layout of a generated set: its raw photos and their corners
    (``gridcorners``), or its warped quadrats and their grid intersections (``gridpose``).

    Keypoints are the generator's truth (:func:`truth_points`; corners TL, TR, BR, BL in the displayed
    orientation), one object per keypoint (``layout`` "points") or one holding them all ("instance");
    a photo stored with an EXIF turn is written upright; a keypoint outside the photo (a frame partly
    out of the shot) is written with visibility 0; a photo with none (no frame, or no grid) gets an
    empty label file (an ultralytics background image), or is left out without ``backgrounds``.

    Returns:
        ``{"images": {split: n}, "data_yaml": path}``.
    """
    from quadratseg.images import exif_orientation, read_image_rgb, write_upright
    from quadratseg.keypoints import inside_image
    from quadratseg.synth.dataset import export_image_path, load_truth

    task = get_task(check_task(task_name))
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
            points = truth_points(t, task.name)
            if points is None and not backgrounds:
                continue
            source = export_image_path(
                synth_dir / "cvat_exports" / EXPORTS[task.name], t["subset"], t["name"]
            )
            target = tmp / "images" / t["subset"] / t["name"]
            if exif_orientation(source) == 1:
                target.symlink_to(source.resolve())
            else:
                write_upright(source, target)
            height, width = read_image_rgb(source).shape[:2]  # the displayed photo (EXIF turn applied)
            if points is None:  # no frame, or no grid: a background image, nothing to find
                lines = []
            else:
                lines = point_lines(
                    task, points, inside_image(points, (width, height)), (width, height), layout
                )
            (tmp / "labels" / t["subset"] / f"{Path(t['name']).stem}.txt").write_text(
                "".join(f"{line}\n" for line in lines), encoding="utf-8"
            )
            counts[t["subset"]] += 1
        empty = [s for s, n in counts.items() if n == 0]
        if empty:
            which = "no photo" if backgrounds else f"no photo with {task.name} points"
            raise QuadratsegError(
                f"{synth_dir}: {which} in the {', '.join(empty)} split; render more --images"
            )
        (tmp / "data.yaml").write_text(
            yaml.safe_dump(data_yaml(task, Path(out_dir), layout), sort_keys=False), encoding="utf-8"
        )
    return {"images": counts, "data_yaml": str(Path(out_dir) / "data.yaml")}


def truth_grid_template(synth_dir: str | Path, subset: str = "train", min_samples: int = 3) -> np.ndarray:
    """The grid template (117, 2), in normalized quadrat coordinates, fitted on the true grids of the
    generated set's ``subset`` warped quadrats (as ``make_template`` fits it on annotations).

    Raises:
        QuadratsegError: fewer than ``min_samples`` quadrats of ``subset`` hold a grid.
    """
    from quadratseg.keypoints import fit_template
    from quadratseg.synth.dataset import load_truth

    stack = [
        points / np.asarray(t["warped_size"], dtype=np.float64)
        for t in load_truth(synth_dir)
        if t["subset"] == subset and (points := truth_points(t, "gridpose")) is not None
    ]
    if len(stack) < min_samples:
        raise QuadratsegError(
            f"{synth_dir}: {len(stack)} {subset} quadrats hold a grid, fewer than {min_samples}; "
            "render more --images"
        )
    template, _ = fit_template(np.stack(stack), min_samples)
    return template


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
    task: str = "gridcorners",
    start: str | None = None,
) -> str:
    """Render the varied world, train the frame (or grid) model on it and measure it.

    Args:
        out: folder for the synthetic set, the layout, the run and report.json.
        images: synthetic photos to render (60 / 20 / 20 % train / val / test).
        size: their width in px (height 3/4 of it; the warped quadrats are this wide).
        seed: seed of the synthetic set and of the training.
        epochs: training epochs (default: the config's).
        imgsz: training and inference size (default: the config's).
        photos: real photos with corners.json to measure the frame model on (default: the shared
            data's real_quadrats/coralscop); measuring is skipped with a note when there are none.
        workers: rendering processes (0: one per CPU core).
        overwrite: replace the synthetic set and layout of an earlier run in ``out``.
        task: gridcorners (the frame's 4 corners on the raw photos) or gridpose (the 117 grid
            intersections on the warped quadrats; no real photo is measured).
        start: a model of the same task this command made before (its card beside it) to go on
            training from, on this run's photos, instead of from scratch: the card records it (its
            sha256, what made it and what it scored) under ``made_by.start``.

    Returns:
        JSON: the weights, how long each step took, the synthetic test split's and (corners) the real
        photos' figures.
    """
    from grid_pose_detection.card import write_pose_card
    from grid_pose_detection.evaluate_real import default_photos_folder, real_frames
    from grid_pose_detection.predictor import PosePredictor
    from quadratseg.cli import current_settings, device
    from quadratseg.keypoints import save_template
    from quadratseg.model_card import write_model_card
    from quadratseg.synth.dataset import SynthConfig, generate_dataset
    from quadratseg.weights import cli_command, file_sha256, stamp_made_by
    from quadratseg.yolo_train import run_training

    check_task(task)
    start_card = frame_start_card(start, task) if start is not None else None
    settings = current_settings()
    root = Path(out)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    config = SynthConfig(images=images, seed=seed, size=size, world="varied")
    synth_dir = generate_dataset(root / "synth", config, overwrite=overwrite, workers=workers)
    seconds["render"] = round(time.perf_counter() - clock, 1)
    # before training: a set too small to fit the grid template stops here
    template = truth_grid_template(synth_dir) if task == "gridpose" else None
    clock = time.perf_counter()
    layout = truth_layout(synth_dir, root / "layout", task, overwrite=overwrite)
    overrides = {"epochs": epochs, "imgsz": imgsz, "seed": seed}
    if start is not None:
        overrides["model"] = str(start)
    result = run_training(
        CONFIGS[task],
        layout["data_yaml"],
        root / "runs",
        task,
        overrides=overrides,
        settings=settings,
        from_scratch=start is None,
        tensorboard=False,
        device=device(settings=settings),
    )
    seconds["train"] = round(time.perf_counter() - clock, 1)
    trained_imgsz = int(result["config"].get("imgsz"))
    template_path = None
    if template is not None:
        template_path = str(save_template(template, root / "layout" / "kp_template.npy"))
    written = write_pose_card(
        result["best"], task, layout["data_yaml"], template_path, True, imgsz=trained_imgsz
    )
    template_file = Path(result["best"]).parent / written["template"]  # checked with the weights when shipped
    write_model_card(result["best"], {"companion_sha256": {template_file.name: file_sha256(template_file)}})
    flags = {"images": images, "size": size, "seed": seed, "epochs": epochs, "imgsz": imgsz}
    if task != "gridcorners":
        flags["task"] = task
    flags["start"] = start
    card = stamp_made_by(
        result["best"],
        cli_command("python -m grid_pose_detection.frame_model OUT", flags),
        seed,
        synth_dir,
        CONFIGS[task].name,
    )  # the sha256 shipped_frame_model / shipped_grid_model check
    if start_card is not None:
        card["made_by"]["start"] = start_card
        write_model_card(result["best"], card)
    predictor = PosePredictor(result["best"], get_task(task), device=device(settings=settings))
    report: dict[str, Any] = {"weights": str(result["best"]), "task": task, "seconds": seconds, "card": card}
    if task == "gridpose":
        report["synthetic_test"] = keypoint_test_figures(predictor, synth_dir, task)
        atomic_write_json(root / "report.json", report)
        return json.dumps(report, indent=2, default=str)
    report["synthetic_test"] = synthetic_test_figures(predictor, synth_dir)
    folder = Path(photos) if photos else default_photos_folder(settings)
    if (folder / "corners.json").is_file():
        report["real_frames"] = real_frames(predictor, result["best"], folder)
    else:
        report["real_frames"] = None
        report["note"] = f"no real photos measured: {folder / 'corners.json'} does not exist"
    atomic_write_json(root / "report.json", report)
    return json.dumps(report, indent=2, default=str)


def frame_start_card(start: str | Path, task_name: str) -> dict[str, Any]:
    """What a run that goes on from ``start`` records of it (:func:`quadratseg.weights.start_model_card`),
    once its card says it is a model of the task (ultralytics would load a corner model as a grid
    model, or the reverse, keeping the body and training a new head without a word).

    Raises:
        QuadratsegError: ``start`` is not a file, has no card, its card describes another file, or it
            is a model of another task.
    """
    from quadratseg.weights import start_model_card

    recorded, card = start_model_card(start)
    if card.get("task") != task_name:
        raise QuadratsegError(
            f"--start {start} is a {card.get('task') or 'card-less task'} model, not a {task_name} "
            f"model: start the {task_name} model from one this command made with --task {task_name}"
        )
    return recorded


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


def keypoint_test_figures(
    predictor: Any, synth_dir: str | Path, task_name: str = "gridpose", refine: bool | None = None
) -> dict[str, Any]:
    """A pose model's figures on the generated set's test photos against the generator's truth (the
    measures of :mod:`grid_pose_detection.evaluate`). On the photos with the task's points: the share
    whose every point inside the photo is found in its own slot (``matching``), the points within 1 %
    of the side (``pck_1pct``), the mean error of those found (px) and the share found (of the points
    inside the photos); on those without (no frame, no grid): how many it found nothing on, or said
    "no grid" of.

    Args:
        refine: the sub-pixel refinement (None: the predictor's setting).
    """
    from grid_pose_detection.evaluate import pck, slot_assignment
    from quadratseg.images import read_image_rgb
    from quadratseg.keypoints import inside_image, quadrat_side_px
    from quadratseg.synth.dataset import export_image_path, load_truth

    task = get_task(check_task(task_name))
    with_points = matched = without = said_none = pck_hits = pck_total = shown = 0
    errors: list[float] = []
    for t in load_truth(synth_dir):
        if t["subset"] != "test":
            continue
        folder = Path(synth_dir) / "cvat_exports" / EXPORTS[task.name]
        image = read_image_rgb(export_image_path(folder, "test", t["name"]))
        (prediction,) = predictor.predict([image], refine=refine)
        truth = truth_points(t, task.name)
        if truth is None:
            without += 1
            said_none += int(bool(prediction.no_grid) or not prediction.visible.any())
            continue
        with_points += 1
        # a corner outside the photo: not visible, as truth_layout writes it
        visible = inside_image(truth, (image.shape[1], image.shape[0]))
        found, right = slot_assignment(prediction.keypoints_xy, truth, visible)
        matched += int(right.sum() == visible.sum())
        shown += int(visible.sum())
        side = quadrat_side_px(truth, visible, task.template())
        if side is not None:
            hits, total = pck(prediction.keypoints_xy, truth, visible, side)
            pck_hits, pck_total = pck_hits + hits, pck_total + total
        errors.extend(np.linalg.norm(prediction.keypoints_xy - truth, axis=1)[found].tolist())
    return {
        "with_points": with_points,
        "matching": round(matched / with_points, 4) if with_points else None,
        "pck_1pct": round(pck_hits / pck_total, 4) if pck_total else None,
        "mean_px_error": round(float(np.mean(errors)), 3) if errors else None,
        "found_share": round(len(errors) / shown, 4) if shown else None,
        "without_points": without,
        "nothing_found_on": said_none,
    }


if __name__ == "__main__":
    from quadratseg.cli import run

    run(frame_model, name="grid_pose_detection.frame_model")
