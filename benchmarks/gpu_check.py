"""Every CUDA path of the project once, timed, in one command: the check to run when a GPU is lent.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check.json [--device cuda:0] [--tiny]
        [--steps yolo_seg_train,seg_predict] [--budget-s 460] [--dinov2-config CONFIG]

Steps, in order (each in its own process, under its own time guard, so that one slow or crashing
path neither eats the budget nor stops the others):

- ``prepare``: synthetic quadrats (``quadratseg.synth``) at the check's size, the shared input;
- ``yolo_seg_train``: ``coral_seg_yolo.train`` from its experiment YAML (yolo11n-seg.yaml, random
  init, no download) for one epoch of a few batches at 1920 px with AMP;
- ``pose_predict``: a YOLO11-pose grid model (random init, the ``points`` layout) through
  ``grid_pose_detection.predictor.PosePredictor`` on a 1920 px quadrat;
- ``seg_predict``: the trained YOLO-seg model through ``coral_seg_yolo.predictor.SegPredictor`` at 1920;
- ``dinov2_train_amp``: ``DINOv2_mmseg.train`` with the project's ViT-B/14 + SegFormer config
  (``dinov2_vitb14_segformer_coral.py``, crop 518, random init) for a few iterations with ``--amp``;
- ``sam_refine``: ``DINOv2_mmseg.sam_refine.refine_instances`` with a SAM ViT-B built by
  ``sam_model_registry["vit_b"]`` (random init, no checkpoint) on a 1920 px quadrat;
- ``lama_batch``: ``grid_inpainting.inpaint.remove_grid`` with the LaMa backend on a batch of 1920 px
  quadrats: ``LAMA_MODEL`` when set, else a TorchScript network with big-lama.pt's signature (said so
  in the step's notes: the cost is then not LaMa's);
- ``chain_local``: ``pipeline.process`` (local engine) on a few quadrats (single-stage: grid model,
  LaMa backend, YOLO-seg);
- ``chain_ray``: the same through ``pipeline.process --engine ray`` with GPUs per actor
  (``--ray-gpus-per-model 0.25``: the actor's models share one GPU; 0 on CPU), or skipped with
  the reason when this checkout's ``pipeline.process`` has no ``engine`` option.

The JSON is written atomically after every step, and at the end also when steps fail or time out
or the check is stopped by Ctrl-C or SIGTERM (``complete`` says whether every step got its turn).
Per step: its ``status`` (``ok``, ``skipped``, ``failed``, ``timeout``, ``interrupted``) with the
reason, seconds, images (or photos) per second, peak GPU memory (``torch.cuda.max_memory_allocated``,
reset per step) and of the whole GPU (``peak_device_memory_mib``: every process on it, the Ray
actors too, sampled through NVML), the device and notes. At the top: the device name, the
versions, a ``skipped`` list with the reason per path, and ``projection``: the photos per GPU-day
from the chain's per-photo cost (random models find no grid, so the stages the chain skipped, such
as grid removal, are added from their own steps; the basis is written beside the figure).

Without CUDA the steps are skipped with that reason, unless ``--tiny``: every path then runs on CPU
at tiny shapes (256 px, the tiny DINOv2 config, a tiny SAM) and each step says it ran on CPU. The
test suite runs ``--tiny`` on CPU (tests/test_gpu_check.py), so the check cannot rot before a GPU comes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the project's packages when run as a script from anywhere
    sys.path.insert(0, str(ROOT))

STEPS = (
    "prepare",
    "yolo_seg_train",
    "pose_predict",
    "seg_predict",
    "dinov2_train_amp",
    "sam_refine",
    "lama_batch",
    "chain_local",
    "chain_ray",
)
# each step's own time guard, seconds; the whole run also stops starting steps at --budget-s
GUARD_S = {
    "prepare": 40,
    "yolo_seg_train": 110,
    "pose_predict": 40,
    "seg_predict": 40,
    "dinov2_train_amp": 90,
    "sam_refine": 50,
    "lama_batch": 40,
    "chain_local": 60,
    "chain_ray": 100,
}
TOTAL_BUDGET_S = 460  # under 8 minutes with the interpreter's own start
DAY_S = 86400
VERSIONED = (
    "torch",
    "torchvision",
    "ultralytics",
    "mmengine",
    "mmsegmentation",
    "mmcv-lite",
    "segment-anything",
    "simple-lama-inpainting",
    "ray",
    "numpy",
    "opencv-python",
)


class SkippedPathError(Exception):
    """A path that cannot run here; its message is the reason recorded in the JSON."""


def check_shapes(tiny: bool) -> dict[str, Any]:
    """The sizes of every step: the real ones (1920 px quadrats, crop 518, SAM ViT-B) or tiny CPU ones.

    Examples:
        >>> check_shapes(True)["image_px"], check_shapes(False)["image_px"]
        (256, 1920)
    """
    if tiny:
        return {
            "image_px": 256,
            "images": 4,
            "train_imgsz": 128,
            "train_batch": 2,
            "predict_imgsz": 256,
            "dinov2_config": "dinov2_tiny_segformer_cpu.py",
            "dinov2_iters": 2,
            "dinov2_batch": 2,
            "sam": "tiny",
            "lama_batch": 2,
            "chain_photos": 2,
        }
    return {
        "image_px": 1920,
        "images": 8,
        "train_imgsz": 1920,
        "train_batch": 4,
        "predict_imgsz": 1920,
        "dinov2_config": "dinov2_vitb14_segformer_coral.py",
        "dinov2_iters": 6,
        "dinov2_batch": 4,
        "sam": "vit_b",
        "lama_batch": 4,
        "chain_photos": 4,
    }


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries the check exercises (None: not installed), and Python's."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


# --- inputs shared by the steps (all under the work folder) -------------------------------------------


def quadrat_images(work: Path) -> list[Path]:
    """The warped, grid-free synthetic quadrats of the ``prepare`` step (JPEG files, sorted)."""
    folder = work / "synth" / "cvat_exports" / "segmentation" / "images"
    images = sorted(folder.rglob("*.jpg"))
    if not images:
        raise RuntimeError(f"no prepared quadrats in {folder}: the prepare step did not run or failed")
    return images


def truth_by_name(work: Path) -> dict[str, dict[str, Any]]:
    """The synthetic truth of every prepared quadrat, by file stem."""
    from quadratseg.synth import load_truth

    return {Path(t["name"]).stem: t for t in load_truth(work / "synth")}


def warped_rings(truth: dict[str, Any], size_wh: tuple[int, int]) -> list[tuple[str, list[Any]]]:
    """(genus label, [polygon (N, 2) px]) of a quadrat's colonies in an image of ``size_wh`` (W, H)."""
    import numpy as np

    scale = np.array(size_wh, float) / np.array(truth["warped_size"], float)
    return [(c["label"], [np.asarray(c["polygon_xy"], float) * scale]) for c in truth["corals"]]


def write_yolo_seg_layout(work: Path, out: Path) -> Path:
    """A YOLO-seg layout (images/{train,val}, labels/{train,val}, data.yaml) of the prepared quadrats,
    every genus its own class; the same images serve both splits (the check times, it does not score)."""
    import cv2
    import yaml

    from coral_seg_yolo.prepare_data import yolo_seg_line
    from quadratseg.taxonomy import load_taxonomy

    names = load_taxonomy().classes("finegrained")
    index = {name: i for i, name in enumerate(names)}
    truths = truth_by_name(work)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for image_path in quadrat_images(work):
            image = cv2.imread(str(image_path))
            h, w = image.shape[:2]
            lines = [
                yolo_seg_line(index[label], rings[0], (w, h))
                for label, rings in warped_rings(truths[image_path.stem], (w, h))
                if label in index
            ]
            (out / "images" / split / image_path.name).write_bytes(image_path.read_bytes())
            (out / "labels" / split / f"{image_path.stem}.txt").write_text("\n".join(lines) + "\n")
    data = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(names)),
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out / "data.yaml"


def write_mmseg_layout(work: Path, out: Path, classes: list[str]) -> Path:
    """The MMSeg layout of ``DINOv2_mmseg.prepare_data`` ({train,val,test}/{data,labels}, classes.txt)
    of the prepared quadrats, labelled with ``classes`` (background first; genera mapped to the
    taxonomy level those classes belong to)."""
    import cv2

    from DINOv2_mmseg.prepare_data import class_index_mask, class_table
    from quadratseg.taxonomy import LEVELS, load_taxonomy

    taxonomy = load_taxonomy()
    level = next((lv for lv in LEVELS if set(classes[1:]) <= set(taxonomy.classes(lv))), None)
    if level is None:
        raise ValueError(f"the config's classes {classes} are not one taxonomy level (background first)")
    truths = truth_by_name(work)
    for split in ("train", "val", "test"):
        (out / split / "data").mkdir(parents=True, exist_ok=True)
        (out / split / "labels").mkdir(parents=True, exist_ok=True)
        for image_path in quadrat_images(work):
            image = cv2.imread(str(image_path))
            size = (image.shape[1], image.shape[0])
            rings = warped_rings(truths[image_path.stem], size)
            labels = taxonomy.map_labels([label for label, _ in rings], level)
            labelled = [(classes.index(lab), r) for lab, (_, r) in zip(labels, rings, strict=True)]
            (out / split / "data" / image_path.name).write_bytes(image_path.read_bytes())
            cv2.imwrite(
                str(out / split / "labels" / f"{image_path.stem}.png"), class_index_mask(labelled, size)
            )
    (out / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    names, colours = class_table(level)
    palette = [colours[names.index(name)] if name in names else (0, 0, 0) for name in classes]
    (out / "palette.txt").write_text("\n".join(f"{r} {g} {b}" for r, g, b in palette) + "\n", "utf-8")
    return out


def random_yolo_weights(work: Path, task: str, names: list[str], kpt_shape: tuple[int, int] = (1, 3)) -> Path:
    """A YOLO11n model of ``task`` (``pose`` or ``segment``) with random weights and the class
    ``names``, saved as a local .pt (built from ultralytics' own YAML, nothing downloaded); pose in
    the ``points`` layout (one keypoint per object) by default."""
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    suffix = {"pose": "pose", "segment": "seg"}[task]
    path = work / "models" / f"random-{suffix}-{len(names)}-{kpt_shape[0]}.pt"
    if path.is_file():
        return path
    spec = yaml_model_load(f"yolo11n-{suffix}.yaml")
    spec["nc"] = len(names)
    if task == "pose":
        spec["kpt_shape"] = list(kpt_shape)
    arch = work / "models" / f"yolo11n-{suffix}.yaml"  # the name keeps the scale: n
    arch.parent.mkdir(parents=True, exist_ok=True)
    arch.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "yaml_file"}), encoding="utf-8")
    model = YOLO(str(arch))
    model.model.names = dict(enumerate(names))
    model.save(str(path))
    return path


def grid_model(work: Path) -> Path:
    """A random-init grid model (YOLO11n-pose, one point per object, the grid task's label)."""
    from grid_pose_detection.tasks import get_task

    return random_yolo_weights(work, "pose", [get_task("gridpose").label])


def tiny_lama_network(path: Path) -> Path:
    """A TorchScript network with big-lama.pt's signature (image [B,3,H,W] 0-1, mask [B,1,H,W] 0/1 ->
    [B,3,H,W]): a few convolutions at full resolution, so the batch moves and computes like a real
    call; its cost is not LaMa's (LaMa's FFC network is far heavier)."""
    import torch

    class LamaSignature(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(4, 32, 5, padding=2),
                torch.nn.ReLU(),
                torch.nn.Conv2d(32, 32, 5, padding=4, dilation=2),
                torch.nn.ReLU(),
                torch.nn.Conv2d(32, 3, 3, padding=1),
            )

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.to(image.dtype)
            fill = torch.sigmoid(self.body(torch.cat([image * (1 - m), m], dim=1)))
            return image * (1 - m) + fill * m

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(LamaSignature()).save(str(path))
    return path


def lama_model(work: Path, notes: list[str]) -> Path:
    """LAMA_MODEL when it names a file, else the stand-in network (said in ``notes``)."""
    given = os.environ.get("LAMA_MODEL")
    if given and Path(given).is_file():
        notes.append(f"LaMa weights from LAMA_MODEL={given}")
        return Path(given)
    notes.append(
        "no LAMA_MODEL: a TorchScript network with big-lama.pt's signature stands in "
        "(the batch's shapes and transfers are LaMa's, its compute is not)"
    )
    path = work / "models" / "lama-signature.pt"
    return path if path.is_file() else tiny_lama_network(path)


def rgb_quadrat(path: Path) -> Any:
    """A prepared quadrat as a uint8 RGB array (H, W, 3)."""
    from quadratseg.images import read_image_rgb

    return read_image_rgb(path)


# --- the steps: each returns its measurements; the runner adds seconds, device and peak memory ------


class StepContext:
    """What a step gets: the work folder, its shapes, the torch device and what it records."""

    def __init__(self, work: Path, device: str, tiny: bool, dinov2_config: str | None):
        self.work, self.device, self.tiny = work, device, tiny
        self.shapes = check_shapes(tiny)
        self.dinov2_config = dinov2_config or self.shapes["dinov2_config"]
        self.notes: list[str] = []

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def sync(self) -> None:
        """Wait for the GPU's queued work, so that a wall time covers it."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def step_prepare(ctx: StepContext) -> dict[str, Any]:
    from quadratseg.synth import SynthConfig, generate_dataset

    shapes = ctx.shapes
    out = ctx.work / "synth"
    generate_dataset(
        out, SynthConfig(images=shapes["images"], seed=0, size=shapes["image_px"]), overwrite=True
    )
    return {"images": shapes["images"], "image_px": shapes["image_px"]}


@contextlib.contextmanager
def downloads_refused_at_once(notes: list[str]) -> Iterator[None]:
    """HTTP(S) requests to other hosts go to a closed local port while the block runs, so that a
    library's download attempt fails at once instead of waiting on a network that drops packets
    (ultralytics' AMP check asks for yolo26n.pt on a GPU: offline, it keeps AMP on, as documented)."""
    names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy")
    saved = {name: os.environ.get(name) for name in names}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    os.environ.update(dict.fromkeys(names[:4], closed))
    os.environ.update(dict.fromkeys(names[4:], "127.0.0.1,localhost,::1"))
    notes.append("downloads refused at once during training (ultralytics' AMP check finds no yolo26n.pt)")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def step_yolo_seg_train(ctx: StepContext) -> dict[str, Any]:
    from coral_seg_yolo.train import train

    shapes = ctx.shapes
    data = write_yolo_seg_layout(ctx.work, ctx.work / "yolo_seg")
    images = len(quadrat_images(ctx.work))
    amp = ctx.cuda
    if not amp:
        ctx.notes.append("AMP needs CUDA: trained in fp32 on CPU")
    start = time.perf_counter()
    with downloads_refused_at_once(ctx.notes if amp else []):  # the AMP check runs on CUDA only
        result = json.loads(
            train(
                str(data),
                project=str(ctx.work / "runs"),
                name="coralseg",
                epochs=1,
                imgsz=shapes["train_imgsz"],
                batch=shapes["train_batch"],
                workers=0 if ctx.tiny else 4,
                device=ctx.device.replace("cuda:", "") if ctx.cuda else "cpu",
                from_scratch=True,
                tensorboard=False,
                args={
                    "amp": amp,
                    "val": False,
                    "plots": False,
                    "nbs": shapes["train_batch"],
                    "exist_ok": True,
                },
            )
        )
    seconds = time.perf_counter() - start
    weights = result.get("last") or result["best"]
    (ctx.work / "models").mkdir(parents=True, exist_ok=True)
    (ctx.work / "models" / "trained-seg.txt").write_text(str(weights))
    return {
        "imgsz": shapes["train_imgsz"],
        "batch": shapes["train_batch"],
        "optimizer_steps": -(-images // shapes["train_batch"]),
        "amp": amp,
        "images_per_s": round(images / seconds, 3),
        "weights": str(weights),
        "note": "one epoch including the trainer's set-up; images_per_s is a lower bound",
    }


def seg_weights(ctx: StepContext) -> Path:
    """The model yolo_seg_train made, else a random YOLO11n-seg (said in the notes)."""
    record = ctx.work / "models" / "trained-seg.txt"
    if record.is_file() and Path(record.read_text().strip()).is_file():
        return Path(record.read_text().strip())
    ctx.notes.append("no model from yolo_seg_train: a random-init YOLO11n-seg (the 16 genera) instead")
    from quadratseg.taxonomy import load_taxonomy

    return random_yolo_weights(ctx.work, "segment", load_taxonomy().classes("finegrained"))


def timed_per_image(
    ctx: StepContext, call: Callable[[Any], object], images: list[Any], warmup: int = 1
) -> float:
    """Median seconds of ``call(image)`` over ``images`` after ``warmup`` untimed calls (GPU synced)."""
    import statistics

    for image in images[:warmup]:
        call(image)
    ctx.sync()
    times = []
    for image in images:
        start = time.perf_counter()
        call(image)
        ctx.sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_pose_predict(ctx: StepContext) -> dict[str, Any]:
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task

    imgsz = ctx.shapes["predict_imgsz"]
    predictor = PosePredictor(
        grid_model(ctx.work),
        get_task("gridpose"),
        imgsz=imgsz,
        device=ctx.device,
    )
    images = [rgb_quadrat(p) for p in quadrat_images(ctx.work)[:3]]
    per_image = timed_per_image(ctx, lambda image: predictor.predict([image]), images)
    ctx.notes.append("random-init grid model: it finds no grid, so refinement and matching do little")
    return {"imgsz": imgsz, "seconds_per_image": round(per_image, 4), "images_per_s": round(1 / per_image, 3)}


def step_seg_predict(ctx: StepContext) -> dict[str, Any]:
    from coral_seg_yolo.predictor import SegPredictor

    imgsz = ctx.shapes["predict_imgsz"]
    predictor = SegPredictor(seg_weights(ctx), imgsz=imgsz, device=ctx.device)  # its card's threshold
    images = [rgb_quadrat(p) for p in quadrat_images(ctx.work)[:3]]
    found = []
    per_image = timed_per_image(ctx, lambda image: found.append(len(predictor.predict(image))), images)
    return {
        "imgsz": imgsz,
        "seconds_per_image": round(per_image, 4),
        "images_per_s": round(1 / per_image, 3),
        "instances_last_image": found[-1],
    }


def step_dinov2_train_amp(ctx: StepContext) -> dict[str, Any]:
    from DINOv2_mmseg.runner import load_config
    from DINOv2_mmseg.train import train

    shapes = ctx.shapes
    config = ctx.dinov2_config
    classes = list(load_config(config).classes)
    data_root = write_mmseg_layout(ctx.work, ctx.work / "mmseg", classes)
    images = len(quadrat_images(ctx.work))
    batch = min(shapes["dinov2_batch"], images)
    iters_per_epoch = images // batch
    epochs = max(1, -(-shapes["dinov2_iters"] // iters_per_epoch))
    if not ctx.cuda:
        ctx.notes.append("--amp needs CUDA: trained in fp32 on CPU")
    if config != check_shapes(False)["dinov2_config"]:
        ctx.notes.append(f"{config} instead of the ViT-B/14 config")
    options = {
        "train_cfg.max_epochs": epochs,
        "train_cfg.val_interval": epochs + 1,  # no validation: the check times training
        "train_dataloader.batch_size": batch,
        "train_dataloader.num_workers": 0 if ctx.tiny else 4,
        "train_dataloader.persistent_workers": False,
        "default_hooks.checkpoint.interval": epochs + 1,
        "default_hooks.checkpoint.save_last": False,
        "default_hooks.logger.interval": 1,
    }
    start = time.perf_counter()
    result = json.loads(
        train(
            config,
            work_dir=str(ctx.work / "work_dirs" / "dinov2"),
            data_root=str(data_root),
            amp=ctx.cuda,
            cfg_options=options,
            seed=0,
            from_scratch=True,
            tensorboard=False,
        )
    )
    ctx.sync()
    seconds = time.perf_counter() - start
    iters = result["epochs"] * iters_per_epoch
    cfg = load_config(config, options)
    return {
        "config": config,
        "crop": list(cfg.crop_size),
        "amp": ctx.cuda,
        "iterations": iters,
        "batch": batch,
        "images_per_s": round(iters * batch / seconds, 3),
        "note": "including the Runner's set-up; images_per_s is a lower bound",
    }


def step_sam_refine(ctx: StepContext) -> dict[str, Any]:
    import numpy as np
    from segment_anything import SamPredictor, sam_model_registry

    from DINOv2_mmseg.prepare_data import class_index_mask, class_table
    from DINOv2_mmseg.sam_refine import RefineConfig, build_sam_model, refine_instances, semantic_seeds
    from quadratseg.taxonomy import load_taxonomy

    if ctx.shapes["sam"] == "vit_b":
        sam = sam_model_registry["vit_b"](checkpoint=None)
    else:
        ctx.notes.append("--tiny: a SAM of 64-dim, 2 blocks instead of ViT-B")
        sam = build_sam_model(
            {"embed_dim": 64, "depth": 2, "num_heads": 2, "global_attn_indexes": [1], "img_size": 256}
        )
    sam = sam.to(ctx.device).eval()
    predictor = SamPredictor(sam)
    names, _ = class_table("main_family")
    truths = truth_by_name(ctx.work)
    refine = RefineConfig()
    inputs = []
    for path in quadrat_images(ctx.work)[:2]:
        rgb = rgb_quadrat(path)
        size = (rgb.shape[1], rgb.shape[0])
        rings = warped_rings(truths[path.stem], size)
        families = load_taxonomy().map_labels([label for label, _ in rings], "main_family")
        index = class_index_mask(
            [(names.index(f), r) for f, (_, r) in zip(families, rings, strict=True)], size
        )
        probs = np.full((len(names), *index.shape), 0.02, np.float32)
        np.put_along_axis(probs, index[None].astype(np.int64), 0.9, axis=0)
        inputs.append((rgb, probs))
    seeds = [len(semantic_seeds(p, refine.min_threshold, refine.min_area)) for _, p in inputs]
    per_image = timed_per_image(
        ctx, lambda item: refine_instances(item[0], item[1], names, predictor, refine), inputs
    )
    ctx.notes.append("random-init SAM: the prompts and masks run as for real weights, the masks mean nothing")
    return {
        "sam": ctx.shapes["sam"],
        "image_px": ctx.shapes["image_px"],
        "seeds_per_image": seeds,
        "seconds_per_image": round(per_image, 4),
        "images_per_s": round(1 / per_image, 3),
    }


def step_lama_batch(ctx: StepContext) -> dict[str, Any]:
    import numpy as np

    from grid_inpainting.inpaint import LamaBackend, remove_grid

    batch = ctx.shapes["lama_batch"]
    backend = LamaBackend(lama_model(ctx.work, ctx.notes), device=ctx.device, batch_size=batch)
    truths = truth_by_name(ctx.work)
    paths = (quadrat_images(ctx.work) * batch)[:batch]
    images = [rgb_quadrat(p) for p in paths]
    grids = []
    for path, image in zip(paths, images, strict=True):
        truth = truths[path.stem]
        scale = np.array([image.shape[1], image.shape[0]], float) / np.array(truth["warped_size"], float)
        grids.append(np.asarray(truth["grid_warped_xy"], float) * scale)
    remove_grid(images, grids, backend)  # warm-up
    ctx.sync()
    start = time.perf_counter()
    remove_grid(images, grids, backend)
    ctx.sync()
    seconds = time.perf_counter() - start
    return {
        "batch": batch,
        "image_px": ctx.shapes["image_px"],
        "seconds_per_batch": round(seconds, 4),
        "seconds_per_image": round(seconds / batch, 4),
        "images_per_s": round(batch / seconds, 3),
    }


def chain_inputs(ctx: StepContext, engine: str) -> tuple[Path, dict[str, Any]]:
    """A folder of ``chain_photos`` quadrats and the options of ``pipeline.process`` for them."""
    import shutil

    photos = ctx.work / f"chain_photos_{engine}"
    for folder in (photos, *(ctx.work / f"{kind}_{engine}" for kind in ("chain_one", "out_one", "out"))):
        shutil.rmtree(folder, ignore_errors=True)  # a rerun in the same --work would resume, not measure
    photos.mkdir(parents=True)
    for path in (quadrat_images(ctx.work) * ctx.shapes["chain_photos"])[: ctx.shapes["chain_photos"]]:
        target = photos / path.name
        if target.exists():
            target = photos / f"{path.stem}_{len(list(photos.iterdir()))}.jpg"
        target.write_bytes(path.read_bytes())
    os.environ["LAMA_MODEL"] = str(lama_model(ctx.work, ctx.notes))
    options = {
        "yolo": str(seg_weights(ctx)),
        "grid": str(grid_model(ctx.work)),
        "inpaint": "lama",
        "warp_size": ctx.shapes["image_px"],
        "allow_warp_size_mismatch": True,
        "yolo_imgsz": ctx.shapes["predict_imgsz"],
        "grid_imgsz": ctx.shapes["predict_imgsz"],
        "allow_scale_mismatch": True,
        "overlays": False,
    }
    ctx.notes.append(
        "single-stage photos (warped quadrats); the random grid model finds no grid, so removal is "
        "skipped in the chain (its cost comes from lama_batch in the projection)"
    )
    return photos, options


def run_process(ctx: StepContext, label: str, **engine_options: Any) -> dict[str, Any]:
    """``pipeline.process`` on one photo (models loaded, warm) then on all: the seconds of each."""
    from pipeline.process import process

    photos, options = chain_inputs(ctx, label)
    first = ctx.work / f"chain_one_{label}"
    first.mkdir(exist_ok=True)
    one = sorted(photos.iterdir())[0]
    (first / one.name).write_bytes(one.read_bytes())
    start = time.perf_counter()
    json.loads(process(str(first), str(ctx.work / f"out_one_{label}"), **options, **engine_options))
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    summary = json.loads(process(str(photos), str(ctx.work / f"out_{label}"), **options, **engine_options))
    all_s = time.perf_counter() - start
    n = ctx.shapes["chain_photos"]
    if n > 1 and all_s > one_s:
        marginal, basis = (
            (all_s - one_s) / (n - 1),
            "(all photos - one photo) / (photos - 1): loading cancels",
        )
    else:  # too few photos, or the second run loaded faster than the first: loading stays in
        marginal, basis = all_s / n, "all photos / photos, model loading included (an upper bound)"
    return {
        "photos": n,
        "processed": summary.get("processed"),
        "failed": summary.get("failed"),
        "seconds_one_photo_with_load": round(one_s, 3),
        "seconds_all_photos_with_load": round(all_s, 3),
        "seconds_per_photo": round(marginal, 4),
        "photos_per_s": round(1 / marginal, 3),
        "per_photo_basis": basis,
    }


def step_chain_local(ctx: StepContext) -> dict[str, Any]:
    return run_process(ctx, "local")


def step_chain_ray(ctx: StepContext) -> dict[str, Any]:
    import inspect

    from pipeline.process import process

    params = inspect.signature(process).parameters
    if "engine" not in params:
        raise SkippedPathError(
            "pipeline.process has no --engine option in this checkout (the Ray engine has not landed): "
            "the chain through Ray was not run"
        )
    if importlib.util.find_spec("ray") is None:
        raise SkippedPathError("ray is not installed (the optional ray[data] extra)")
    options: dict[str, Any] = {"engine": "ray"}
    if "ray_gpus_per_model" in params:  # each model's pool of one actor asks a quarter: all share the GPU
        options["ray_gpus_per_model"] = 0.25 if ctx.cuda else 0.0
    elif "num_gpus" in params:
        options["num_gpus"] = 1 if ctx.cuda else 0
    elif ctx.cuda:
        ctx.notes.append("pipeline.process has no GPU option for Ray: the engine's own GPU share per actor")
    ctx.notes.append(
        "peak_gpu_memory_mib is this process's (the driver's models); the Ray actors' memory is in "
        "peak_device_memory_mib (the whole GPU)"
    )
    import ray

    # one Ray instance for both runs (pipeline.process joins the one this process started)
    ray.init(
        address="local",  # a Ray of this run's own, never a cluster another run recorded in /tmp/ray
        num_cpus=2 if ctx.tiny else None,  # pools of one actor on a few CPUs: the tests' advice
        num_gpus=1 if ctx.cuda else 0,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        return {**run_process(ctx, "ray", **options), "ray_options": options}
    finally:
        ray.shutdown()


STEP_FUNCS: dict[str, Callable[[StepContext], dict[str, Any]]] = {
    "prepare": step_prepare,
    "yolo_seg_train": step_yolo_seg_train,
    "pose_predict": step_pose_predict,
    "seg_predict": step_seg_predict,
    "dinov2_train_amp": step_dinov2_train_amp,
    "sam_refine": step_sam_refine,
    "lama_batch": step_lama_batch,
    "chain_local": step_chain_local,
    "chain_ray": step_chain_ray,
}
CPU_STEPS = {"prepare"}  # runs without CUDA whatever the mode


# --- one step, in its own process ---------------------------------------------------------------------


class DeviceMemorySampler:
    """Peak memory in use on the whole GPU (every process on it: Ray actors too, the CUDA context
    included), read through NVML (``torch.cuda.device_memory_used``) every ``period_s`` seconds in a
    thread. ``device`` None (CPU): nothing is sampled and ``peak_mib`` stays None."""

    def __init__(self, device: str | None, period_s: float = 0.2):
        import threading

        self.device, self.period_s = device, period_s
        self.peak_mib: float | None = None
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> None:
        import torch

        used = torch.cuda.device_memory_used(self.device) / 2**20
        self.peak_mib = round(max(self.peak_mib or 0.0, used), 1)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self._read()
            except Exception:  # the figure is optional: the first read said why it is missing
                return

    def __enter__(self) -> DeviceMemorySampler:
        if self.device is not None:
            try:
                self._read()
                self._thread.start()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.device is not None and not self.error:
            try:
                self._read()
            except Exception as error:
                self.error = f"{type(error).__name__}: {error}"


def resolve_device(requested: str, tiny: bool) -> tuple[str | None, str]:
    """(torch device to use or None to skip, why): the requested CUDA device, else CPU with --tiny."""
    import torch

    if requested == "cpu":
        return (
            ("cpu", "--device cpu: ran on CPU at tiny shapes")
            if tiny
            else (None, "--device cpu runs only with --tiny")
        )
    if torch.cuda.is_available():
        return requested, "cuda"
    if tiny:
        return "cpu", "no CUDA device visible: ran on CPU at tiny shapes (--tiny)"
    return None, "no CUDA device visible: pass --tiny to run this path on CPU at tiny shapes"


def device_facts(device: str) -> dict[str, Any]:
    """The device's name and CUDA/cuDNN versions (CPU: the processor and torch's threads)."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        return {
            "name": torch.cuda.get_device_name(device),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return {"name": cpu_name(), "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count()}


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_step(name: str, work: Path, requested: str, tiny: bool, dinov2_config: str | None) -> dict[str, Any]:
    """Run one step here and return its record (never raises: a failure is recorded)."""
    import resource

    record: dict[str, Any] = {"step": name}
    try:
        if name in CPU_STEPS:
            device, why = "cpu", "runs on CPU"
        else:
            device, why = resolve_device(requested, tiny)
        if device is None:
            raise SkippedPathError(why)
        import torch

        os.environ["QUADRATSEG_DEVICE"] = device  # the project's commands (process, train) use it too
        ctx = StepContext(work, device, tiny, dinov2_config)
        record["device"] = device
        record["device_facts"] = device_facts(device)
        if device == "cpu" and name not in CPU_STEPS:
            record["cpu"] = True
            ctx.notes.append(why)
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with DeviceMemorySampler(device if ctx.cuda else None) as sampler:
            measured = STEP_FUNCS[name](ctx)
            ctx.sync()
        record.update(status="ok", seconds=round(time.perf_counter() - start, 3), **measured)
        record["peak_gpu_memory_mib"] = (
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if ctx.cuda else None
        )
        record["peak_device_memory_mib"] = sampler.peak_mib
        if sampler.error:
            ctx.notes.append(f"no whole-GPU memory figure: {sampler.error}")
        record["notes"] = ctx.notes
    except SkippedPathError as exc:
        record.update(status="skipped", reason=str(exc))
    except Exception as exc:  # one path's failure is recorded, the others still run
        record.update(
            status="failed",
            reason=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            traceback_tail=traceback.format_exc().splitlines()[-12:],
        )
    usage = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    record["peak_rss_mib"] = round(usage / 1024, 1)
    return record


# --- the driver: every step in a child process with its guard, one JSON at the end ------------------


def step_command(name: str, work: Path, args: argparse.Namespace) -> list[str]:
    """The command line that runs one step in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--work", str(work)]
    command += ["--device", args.device]
    if args.tiny:
        command.append("--tiny")
    if args.dinov2_config:
        command += ["--dinov2-config", args.dinov2_config]
    return command


def log_tail(log: Path, lines: int = 12) -> list[str]:
    """The last ``lines`` lines of a step's log (the JSON keeps them: the work folder may be gone)."""
    return log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


def run_guarded(name: str, work: Path, args: argparse.Namespace, limit_s: float) -> dict[str, Any]:
    """Run a step in its own process group, killed at ``limit_s``; its record, or why there is none."""
    result_file = work / "steps" / f"{name}.json"
    result_file.unlink(missing_ok=True)
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            step_command(name, work, args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            return {
                "step": name,
                "status": "timeout",
                "reason": f"stopped by its time guard after {limit_s:.0f} s",
                "seconds": round(time.perf_counter() - start, 3),
                "log": str(log),
                "log_tail": log_tail(log),
            }
        finally:  # a guard, an interrupt or a signal: the step and whatever it started go
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if result_file.is_file():
        record = json.loads(result_file.read_text(encoding="utf-8"))
    else:
        tail = log_tail(log)
        record = {
            "step": name,
            "status": "failed",
            "reason": f"the step's process ended with code {process.returncode} and no record",
            "traceback_tail": tail,
        }
    record["wall_s"] = round(time.perf_counter() - start, 3)
    record["log"] = str(log)
    return record


def projection(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Photos per GPU-day from the chain's per-photo cost, with the stages it skipped added.

    The chain runs the corner model only on raw photos (these are warped quadrats) and removes the
    grid only where the random grid model finds one (never): those two stages come from
    ``pose_predict`` (the same network shape at the same size) and ``lama_batch``.

    Examples:
        >>> p = projection({"chain_local": {"status": "ok", "seconds_per_photo": 1.0},
        ...                 "pose_predict": {"status": "ok", "seconds_per_image": 0.5},
        ...                 "lama_batch": {"status": "ok", "seconds_per_image": 0.5}})
        >>> p["seconds_per_photo"], p["photos_per_gpu_day"]
        (2.0, 43200)
    """

    def ok(name: str) -> dict[str, Any] | None:
        record = steps.get(name) or {}
        return record if record.get("status") == "ok" else None

    parts: dict[str, float] = {}
    chain = ok("chain_local")
    if chain:
        parts["chain_local (grid model, segmentation, cover, writing)"] = chain["seconds_per_photo"]
        if ok("pose_predict"):
            parts["corner model (pose_predict)"] = ok("pose_predict")["seconds_per_image"]
        if ok("lama_batch"):
            parts["grid removal (lama_batch)"] = ok("lama_batch")["seconds_per_image"]
        basis = "chain"
    else:
        for name, label in (("pose_predict", "corner model"), ("pose_predict", "grid model")):
            if ok(name):
                parts[f"{label} ({name})"] = ok(name)["seconds_per_image"]
        for name in ("lama_batch", "seg_predict"):
            if ok(name):
                parts[name] = ok(name)["seconds_per_image"]
        basis = "sum of the stage steps (chain_local did not run)"
    if not parts:
        return {"photos_per_gpu_day": None, "reason": "no chain or stage step ran"}
    per_photo = sum(parts.values())
    devices = {steps[n].get("device") for n in steps if steps[n].get("status") == "ok" and n != "prepare"}
    return {
        "seconds_per_photo": round(per_photo, 4),
        "photos_per_gpu_day": int(DAY_S / per_photo),
        "basis": basis,
        "parts_s": {k: round(v, 4) for k, v in parts.items()},
        "measured_on": sorted(d for d in devices if d),
    }


def skipped_list(steps: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """Every path that did not run as asked, with its reason: skipped, failed or timed out steps, and
    the stand-ins and CPU runs the steps' notes report."""
    out = []
    for name, record in steps.items():
        if record.get("status") != "ok":
            out.append(
                {"step": name, "status": record.get("status", "?"), "reason": record.get("reason", "")}
            )
        elif record.get("cpu"):
            out.append({"step": name, "status": "cpu", "reason": "ran on CPU at tiny shapes, not on a GPU"})
    return out


def write_report(out: Path, report: dict[str, Any]) -> None:
    from quadratseg.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(report, indent=2, default=str) + "\n")


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected steps under their guards and the total budget; write and return the report."""
    import tempfile

    selected = [s.strip() for s in args.steps.split(",")] if args.steps else list(STEPS)
    unknown = [s for s in selected if s not in STEPS]
    if unknown:
        raise SystemExit(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if "prepare" not in selected:
        selected.insert(0, "prepare")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tiny": bool(args.tiny),
        "requested_device": args.device,
        "budget_s": args.budget_s,
        "shapes": check_shapes(args.tiny),
        "versions": versions(),
        "work": str(work),
        "steps": {},
    }
    steps: dict[str, dict[str, Any]] = report["steps"]
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `timeout` and schedulers send it
    name, finished = "", False
    try:
        for name in STEPS:
            if name not in selected:
                continue
            left = args.budget_s - (time.perf_counter() - start)
            if left < 5:
                steps[name] = {"step": name, "status": "skipped", "reason": "the total budget ran out"}
                continue
            print(f"[gpu_check] {name} (guard {min(GUARD_S[name], left):.0f} s)", flush=True)
            steps[name] = run_guarded(name, work, args, min(GUARD_S[name], left))
            print(f"[gpu_check] {name}: {steps[name]['status']} {steps[name].get('reason', '')}", flush=True)
            write_report(Path(args.out), summarise(report, start, complete=False))  # kept if killed later
        finished = True
    except (KeyboardInterrupt, CheckInterruptedError) as exc:
        if name and name not in steps:
            steps[name] = {"step": name, "status": "interrupted", "reason": str(exc) or "interrupted"}
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        write_report(Path(args.out), summarise(report, start, complete=finished))
    return report


class CheckInterruptedError(Exception):
    """SIGTERM arrived: the running step is stopped and the report of what ran is written."""


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise CheckInterruptedError(f"stopped by signal {signal.Signals(signum).name} during the step")


def summarise(report: dict[str, Any], start: float, complete: bool) -> dict[str, Any]:
    """The report with its summary fields (device, skipped, projection, total_s) from its steps."""
    steps = report["steps"]
    first = next((r for r in steps.values() if r.get("status") == "ok" and r.get("device") != "cpu"), None)
    first = first or next((r for r in steps.values() if r.get("device_facts")), {})
    report["device"] = first.get("device_facts")
    report["skipped"] = skipped_list(steps)
    report["projection"] = projection(steps)
    report["total_s"] = round(time.perf_counter() - start, 3)
    report["complete"] = complete
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="gpu_check.json", help="the JSON report (written atomically)")
    parser.add_argument("--device", default="cuda:0", help="cuda:N, or cpu with --tiny")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny shapes; without CUDA every path runs on CPU"
    )
    parser.add_argument("--steps", default="", help=f"comma-separated subset of {', '.join(STEPS)}")
    parser.add_argument("--budget-s", type=float, default=TOTAL_BUDGET_S, help="no step starts after this")
    parser.add_argument("--dinov2-config", default=None, help="MMSeg config of dinov2_train_amp")
    parser.add_argument("--work", default=None, help="work folder (default: a new temporary one)")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)  # one step, in a child process
    args = parser.parse_args(argv)
    if args.step:
        if args.tiny:
            os.environ.setdefault("QUADRATSEG_NUM_THREADS", "1")
        if args.device.startswith("cuda:") and args.device[5:].isdigit():  # that GPU alone, as cuda:0
            os.environ["CUDA_VISIBLE_DEVICES"] = args.device[5:]
            args.device = "cuda:0"
        from _common import isolated_workdir

        isolated_workdir("gpu-check-step-")  # offline switches and caches of our own
        record = run_step(args.step, Path(args.work), args.device, args.tiny, args.dinov2_config)
        write_report(Path(args.work) / "steps" / f"{args.step}.json", record)
        return
    report = check(args)
    print(json.dumps({k: report[k] for k in ("device", "skipped", "projection", "total_s")}, indent=2))


if __name__ == "__main__":
    main()
