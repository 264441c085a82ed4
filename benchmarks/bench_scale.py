"""Photos per minute of pipeline.process: the local engine, the photos one after the other, Ray with
1 and 2 workers, against the sum of the bare model calls; a per-stage table and the projected
photos per GPU-day.

    .venv/bin/python benchmarks/bench_scale.py [--photos 12] [--size 1920] [--imgsz 640]
        [--yolo W --corners W --grid W] [--workers 1 2] [--no-ray]

Without ``--yolo`` it takes the demo's coral model (``outputs/demo/runs/coralseg/weights/best.pt``,
made by ``make demo``; it finds about 5 colonies a photo), else an untrained YOLO11n-seg of the main
families (the demo's architecture, random weights; at 640 px it finds no colony, so the colonies'
work is missing from its figures: ``colonies_per_photo`` says so). It runs the single-stage chain on
``--photos`` synthetic quadrats of ``--size`` px (the photos are already warped; the chain resizes,
segments, computes the cover, writes the warped image, instances, overlay and record). With
``--corners`` and ``--grid`` (the demo's models,
``outputs/demo/runs/*/weights/best.pt``) it runs the three-stage chain with OpenCV inpainting.

Figures:

- ``bare``: the model calls alone (``model.predict`` of each model on the arrays the chain gives
  it), summed over the photos: the floor the chain approaches.
- ``sequential``: read, chain and write of each photo one after the other (the engine before the
  overlap), through :func:`pipeline.run.process_photo`.
- ``local``: ``pipeline.process``'s local engine (reader and writer threads), its tables and report
  included; ``local_photos_over_bare`` is its photos' pass alone (the run's ``seconds.photos``), the
  figure that matters for a survey of thousands of photos.
- ``steady_photos_per_min``: each engine once running, from its first photo record's write time to
  its last one's (Ray's start, which loads the models in the actors, and the tables left out);
  ``ray1_over_local_steady`` compares the two engines there.
- ``ray-N``: ``--engine ray`` with N actors in each model's pool on a Ray of ``--ray-cpus`` CPUs
  started here (default: this machine's, as the local engine's threads have them; the actors'
  start, which loads the models, included).

Per-stage seconds per photo come from the local run's records (``read``, ``chain``, ``write``);
the projected photos per GPU-day is 86400 s over the slowest stage of one overlapped worker
(the chain on the accelerator, reading and writing on threads), measured on this machine's device
(CPU unless CUDA is there).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _common import isolated_workdir

REPO = Path(__file__).resolve().parents[1]


def make_photos(folder: Path, count: int, size: int) -> Path:
    """``count`` synthetic warped quadrats of ``size`` px as site/year/Qn.jpg."""
    import cv2

    from quadratseg.synth import SynthConfig, generate_dataset

    synth = generate_dataset(folder.parent / "synth", SynthConfig(images=min(count, 6), seed=0, size=size))
    images = sorted((synth / "cvat_exports" / "segmentation" / "images").rglob("*.jpg"))
    for index in range(count):
        image = cv2.imread(str(images[index % len(images)]))
        image = cv2.flip(image, index // len(images) % 3 - 1) if index >= len(images) else image
        target = folder / ("Tiahura" if index % 2 else "Haapiti") / "2020" / f"Q{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), image)
    return folder


def steady_photos_per_min(out: Path) -> float | None:
    """Photos per minute of a run once it runs: (records - 1) over the span of the photo records'
    write times (a photo's record is written last); None under 3 records."""
    times = sorted(path.stat().st_mtime for path in (out / "photos").rglob("*.json"))
    if len(times) < 3 or times[-1] <= times[0]:
        return None
    return round(60 * (len(times) - 1) / (times[-1] - times[0]), 1)


def bare_seconds(models, items, warp_size) -> float:
    """The model calls alone over ``items``, on the arrays the chain gives each model."""
    import numpy as np

    from pipeline.run import chain_photo, read_photo

    total = 0.0
    for item in items:
        image, _, _ = read_photo(item)
        result = chain_photo(image, models, warp_size)  # the arrays each model sees
        calls = []
        if models.corners is not None:
            calls.append((models.corners, image))
        if models.grid is not None and result.warped is not None:
            calls.append((models.grid, result.warped))
        if models.segment is not None and result.clean is not None:
            calls.append((models.segment, result.clean))
        for predictor, array in calls:
            bgr = np.ascontiguousarray(array[..., ::-1])
            start = time.perf_counter()
            predictor.model.predict(bgr, imgsz=predictor.imgsz, conf=predictor.conf, verbose=False)
            total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--size", type=int, default=1920)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--yolo")
    parser.add_argument("--corners")
    parser.add_argument("--grid")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count(), help="CPUs of the Ray started here")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    work = isolated_workdir("bench-scale-")
    sys.path.insert(0, str(REPO / "tests"))

    from pipeline.process import build_models, check_options, resolve_warp_size
    from pipeline.run import (
        EngineOptions,
        RunConfig,
        photo_job,
        process_folder,
        process_photo,
        run_fingerprint,
    )
    from quadratseg.batch import batch_items
    from quadratseg.cli import current_settings
    from quadratseg.warp import warped_size

    yolo = args.yolo
    demo_model = REPO / "outputs" / "demo" / "runs" / "coralseg" / "weights" / "best.pt"
    if not yolo and demo_model.is_file():
        yolo = str(demo_model)
    if not yolo:
        from engine_models import untrained_seg_weights

        from quadratseg.taxonomy import load_taxonomy

        yolo = str(untrained_seg_weights(work / "seg.pt", load_taxonomy().classes("main_family")))
    photos = make_photos(work / "photos", args.photos, args.size)
    config = RunConfig(
        yolo=yolo,
        corners=args.corners,
        grid=args.grid,
        inpaint="opencv-telea",
        yolo_imgsz=args.imgsz,
        warp_size=None if args.corners else args.size,
        allow_warp_size_mismatch=True,
    )
    check_options(config)
    from dataclasses import replace

    config = replace(config, warp_size=resolve_warp_size(config))
    settings = current_settings()
    models = build_models(config, settings)
    fingerprint = run_fingerprint(config)
    size = warped_size(config.warp_size, config.aspect)
    items = batch_items(photos)
    n = len(items)
    figures: dict[str, object] = {
        "photos": n,
        "size": args.size,
        "imgsz": args.imgsz,
        "variant": models.variant,
    }

    bare_seconds(models, items[:1], size)  # warm-up
    bare = bare_seconds(models, items, size)
    job = photo_job(work / "sequential", models, fingerprint, True, size)
    start = time.perf_counter()
    for item in items:
        process_photo(job, item, models)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    local_summary = process_folder(photos, work / "local", models, fingerprint, warp_size=size)
    local = time.perf_counter() - start
    stages: dict[str, float] = {}
    colonies = 0
    for record_file in (work / "local" / "photos").rglob("*.json"):
        record = json.loads(record_file.read_text())
        colonies += record.get("colonies") or 0
        for stage, seconds in record["seconds"].items():
            stages[stage] = stages.get(stage, 0.0) + seconds / n
    figures["colonies_per_photo"] = round(colonies / n, 1)  # the chain's work beyond the model grows with it
    runs = {"bare": bare, "sequential": sequential, "local": local}
    if not args.no_ray:
        from functools import partial

        import ray

        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        for workers in args.workers:
            ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
            options = EngineOptions(
                engine="ray", ray_workers=workers, models_factory=partial(build_models, config, settings)
            )
            start = time.perf_counter()
            process_folder(
                photos, work / f"ray-{workers}", models, fingerprint, warp_size=size, engine=options
            )
            runs[f"ray-{workers}"] = time.perf_counter() - start
            ray.shutdown()
    figures["photos_per_min"] = {name: round(60 * n / seconds, 1) for name, seconds in runs.items()}
    # once running: from the first photo's record to the last one's (each written last for its photo),
    # without the start (Ray's actors loading the models) and the tables; for a survey's thousands
    figures["steady_photos_per_min"] = {
        name: steady_photos_per_min(work / name) for name in runs if name not in ("bare", "sequential")
    }
    figures["seconds"] = {name: round(seconds, 2) for name, seconds in runs.items()}
    figures["local_over_bare"] = round(local / bare, 2)
    # the photos' pass alone: the run's tables and report (about a second, whatever the photos) left out
    figures["local_photos_over_bare"] = round(local_summary["seconds"]["photos"] / bare, 2)
    figures["local_tables_s"] = local_summary["seconds"]["tables"]
    figures["sequential_over_bare"] = round(sequential / bare, 2)
    if "ray-1" in runs:
        figures["ray1_over_local"] = round(runs["ray-1"] / local, 2)
        steady = figures["steady_photos_per_min"]
        if steady.get("ray-1") and steady.get("local"):
            figures["ray1_over_local_steady"] = round(steady["local"] / steady["ray-1"], 2)
    figures["seconds_per_photo_by_stage"] = {k: round(v, 3) for k, v in stages.items()}
    figures["bare_model_seconds_per_photo"] = round(bare / n, 3)
    slowest = max(stages.get("chain", 0.0), stages.get("read", 0.0), stages.get("write", 0.0))
    figures["projected_photos_per_device_day"] = round(86400 / slowest) if slowest else None
    import torch

    figures["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{n} photos of {args.size} px ({models.variant}, YOLO at {args.imgsz} px, {figures['device']})")
    print(f"{'run':<12}{'seconds':>10}{'photos/min':>12}")
    for name, seconds in runs.items():
        print(f"{name:<12}{seconds:>10.2f}{60 * n / seconds:>12.1f}")
    print("seconds per photo by stage (local engine):")
    for stage, seconds in stages.items():
        print(f"  {stage:<8}{seconds:>8.3f}")
    print(f"  bare model calls {bare / n:.3f}")
    print(json.dumps(figures, indent=1))
    if args.json:
        from quadratseg.atomic import atomic_write_json

        atomic_write_json(args.json, figures)


if __name__ == "__main__":
    main()
