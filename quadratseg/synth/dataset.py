"""Write a synthetic set: what CVAT would export for the three projects, plus the full truth.

Layout of ``OUT_DIR``::

    OUT_DIR/
    ├── cvat_exports/
    │   ├── corners/        annotations.xml + images/<subset>/  raw photos, corner skeletons
    │   ├── grid/           annotations.xml + images/<subset>/  warped photos, grid skeletons
    │   └── segmentation/   annotations.xml + images/<subset>/  warped photos without grid, polygons
    ├── masks/              varied world only: strings/<subset>/<stem>.png (warped frame, 255 on the
    │                       strings) and occluders/<subset>/<stem>.png (raw frame, occluder codes)
    ├── truth.json          every coordinate of every stage, per image (see :func:`image_truth`)
    └── manifest.json       generator parameters (the world among them), seed, counts

Each export is a "CVAT for images 1.1" *project* export whose tasks are the subsets
train/val/test; as in CVAT's project exports, images sit in ``images/<subset>/``.
The folder appears only when complete: it is written to a temporary
sibling and renamed at the end.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_xml import CvatDocument, ImageAnnotations, Shape, TaskInfo, write_cvat_xml
from quadratseg.geometry import PolygonWithHoles, mask_to_cvat_rle, polygons_to_mask
from quadratseg.labelsets import CORNER_LABEL, GRID_LABEL, coral_labels, corner_labels, grid_labels
from quadratseg.synth.appearance import GENUS_LOOKS
from quadratseg.synth.scene import WORLDS, SyntheticQuadrat, render_quadrat

logger = logging.getLogger(__name__)

# 2: the varied world (the simple world renders as in 1); 3: its tube frame and square shots; 4: the
# reef beyond the frame goes on like the reef inside (its genera, sizes and cover); 5: the tube frame's
# graduated strip as dark as the reef inside it and its sleeves a dull silver (the real rig's look);
# 6: the tube frame's legs plugged into the corner joints, over the bars (as on the real rig)
GENERATOR_VERSION = "6"
SITES = ("SynthNorth", "SynthLagoon", "SynthSouth")
SUBSETS = ("train", "val", "test")
PROJECTS = {
    "corners": ("synth_corner_annotation", 1),
    "grid": ("synth_grid_annotation", 2),
    "segmentation": ("synth_finegrained_annotated", 3),
}


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic set (saved in manifest.json)."""

    images: int = 20
    seed: int = 0
    size: int = 1024  # raw photo width; height is 3/4 of it
    warped_size: int = 0  # 0: same as size
    min_colonies: int = 7
    max_colonies: int = 12
    jpeg_quality: int = 95
    aspect: float = 1.0  # quadrat width / height (1: square)
    world: str = "simple"  # "simple" (fast unit tests) or "varied" (see quadratseg.synth.varied)
    holdout_share: float = 0.2  # share of the photos in val, and again in test (the rest train)

    @property
    def raw_size(self) -> tuple[int, int]:
        """(width, height) of the raw photos."""
        return self.size, round(self.size * 0.75)

    @property
    def warped_side(self) -> int:
        """Width of the warped images (their height is this / ``aspect``)."""
        return self.warped_size or self.size

    def validate(self) -> None:
        """Raise a clear error for unusable parameters."""
        if self.images < 1:
            raise QuadratsegError(f"--images must be at least 1, got {self.images}")
        if self.size < 128:
            raise QuadratsegError(f"--size must be at least 128 px, got {self.size}")
        if self.warped_size and self.warped_size < 128:
            raise QuadratsegError(f"--warped-size must be at least 128 px, got {self.warped_size}")
        if not 0.25 <= self.aspect <= 4:
            raise QuadratsegError(
                f"--aspect (quadrat width / height) must be within 0.25..4, got {self.aspect}"
            )
        if self.world not in WORLDS:
            raise QuadratsegError(f"--world must be one of {', '.join(WORLDS)}, got {self.world!r}")
        if not 0 < self.holdout_share < 0.5:
            raise QuadratsegError(
                f"--holdout-share (of val, and again of test) must be within 0..0.5, got {self.holdout_share}"
            )
        if not 1 <= self.min_colonies <= self.max_colonies:
            raise QuadratsegError("need 1 <= min_colonies <= max_colonies")


def export_image_path(export_dir: Path, subset: str, name: str) -> Path:
    """Where a project export keeps an image: ``<export>/images/<subset>/<name>``."""
    return Path(export_dir) / "images" / subset / name


def image_name(index: int) -> str:
    """``{site}_{year}_{quadrat}.jpg``, the naming scheme of CRIOBE photos."""
    return f"{SITES[index % len(SITES)]}_{2019 + (index // len(SITES)) % 6}_{index:03d}.jpg"


def assign_subsets(n_images: int, seed: int, holdout_share: float = 0.2) -> list[str]:
    """Subset of each image: ``holdout_share`` of them in val, as many in test, the rest in train
    (60 / 20 / 20 % by default; each subset non-empty when n >= 3).

    Example:
        >>> from collections import Counter
        >>> Counter(assign_subsets(36, seed=0, holdout_share=1 / 3))
        Counter({'train': 12, 'val': 12, 'test': 12})
    """
    order = np.random.default_rng([seed, 7]).permutation(n_images)
    n_val = max(1, round(holdout_share * n_images)) if n_images >= 3 else 0
    n_test = max(1, round(holdout_share * n_images)) if n_images >= 3 else 0
    subsets = ["train"] * n_images
    for rank, idx in enumerate(order):
        if rank < n_val:
            subsets[idx] = "val"
        elif rank < n_val + n_test:
            subsets[idx] = "test"
    return subsets


def genera_for_image(index: int, seed: int, count: int) -> list[str]:
    """Genera of one image: a window over a seeded order of the 16 genera, so all appear often."""
    names = sorted(GENUS_LOOKS)
    order = np.random.default_rng([seed, 11]).permutation(len(names))
    start = (index * 5) % len(names)
    return [names[order[(start + j) % len(names)]] for j in range(count)]


def image_truth(q: SyntheticQuadrat, name: str, subset: str) -> dict[str, Any]:
    """Ground truth of one image, JSON-ready; coordinates in pixels of the named frame.

    Simple world: as generator version 1. Varied world, in addition: ``world``; ``frame`` and
    ``strings`` (``grid``, ``diagonals`` or ``none``); ``grid_raw_xy`` and ``grid_warped_xy`` are
    null when the frame has no grid; ``exif_orientation`` of the stored raw file (coordinates are
    in the displayed orientation); ``jpeg_quality``, ``depth_m``, ``cover`` (visible coral share
    of the interior); ``string_mask`` and ``occluder_mask`` (paths under the set); each coral has
    ``holes_xy`` (rings) and ``colony`` (the index of the colony it is a visible part of).
    """
    truth: dict[str, Any] = {
        "name": name,
        "subset": subset,
        "raw_size": list(q.raw_size),
        "warped_size": list(q.warped_size),
        "corners_raw_xy": q.corners_raw_xy.round(3).tolist(),
        "grid_raw_xy": None if q.grid_raw_xy is None else q.grid_raw_xy.round(3).tolist(),
        "grid_warped_xy": None if q.grid_warped_xy is None else q.grid_warped_xy.round(3).tolist(),
        "homography_warped_to_raw": q.homography_warped_to_raw.tolist(),
        "grid_line_width_px": round(q.grid_line_width_px, 3),
        "corals": [{"label": c.label, "polygon_xy": c.polygon_xy.round(2).tolist()} for c in q.colonies],
    }
    if q.world != "simple":
        info = dict(q.shot_info)
        colony_of_part = info.pop("colony_of_part", [None] * len(q.colonies))
        for coral, c, k in zip(truth["corals"], q.colonies, colony_of_part, strict=True):
            coral["holes_xy"] = [np.asarray(h).round(2).tolist() for h in c.holes_xy]
            coral["colony"] = k
        stem = Path(name).stem
        truth.update(
            world=q.world,
            exif_orientation=q.exif_orientation,
            string_mask=f"masks/strings/{subset}/{stem}.png",
            occluder_mask=f"masks/occluders/{subset}/{stem}.png",
            **info,
        )
    return truth


def truth_grid(truth: dict[str, Any], frame: str = "warped") -> np.ndarray | None:
    """A photo's true grid points (117, 2) in the ``raw`` or ``warped`` frame, or None when its frame
    has no grid (the varied world's diagonal strings or none: the truth's grid is null or empty).

    Examples:
        >>> truth_grid({"grid_warped_xy": None}) is None, truth_grid({"grid_raw_xy": []}, "raw") is None
        (True, True)
    """
    points = truth.get(f"grid_{frame}_xy")
    return None if points is None or len(points) == 0 else np.asarray(points, dtype=np.float64)


def coral_rings(coral: dict[str, Any]) -> list[np.ndarray]:
    """A truth coral's rings: its outline, then its holes (the form ``quadratseg.cover.label_map`` takes)."""
    return [
        np.asarray(coral["polygon_xy"], float),
        *(np.asarray(h, float) for h in coral.get("holes_xy", [])),
    ]


def write_raw_photo(path: Path, image: np.ndarray, quality: int, orientation: int = 1) -> None:
    """Write the raw photo (uint8 RGB, displayed orientation) as JPEG; an ``orientation`` other than
    1 stores the pixels turned and tags the file with it, so an EXIF-aware reader shows ``image``."""
    if orientation == 1:
        if not cv2.imwrite(
            str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        ):
            raise OSError(f"could not write {path}")
        return
    from PIL import Image

    from quadratseg.synth.varied import to_stored

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(to_stored(image, orientation)).save(path, "JPEG", quality=quality, exif=exif.tobytes())


def _render_one(args: tuple[SynthConfig, int, str, Path]) -> dict[str, Any]:
    config, index, subset, root = args
    rng = np.random.default_rng([config.seed, index])
    n = int(rng.integers(config.min_colonies, config.max_colonies + 1))
    q = render_quadrat(
        rng,
        config.raw_size,
        config.warped_side,
        genera_for_image(index, config.seed, n),
        aspect=config.aspect,
        world=config.world,
    )
    name = image_name(index)
    if config.world == "simple":
        params = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
        for folder, image in (("corners", q.raw), ("grid", q.warped), ("segmentation", q.warped_clean)):
            path = export_image_path(root / "cvat_exports" / folder, subset, name)
            if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
                raise OSError(f"could not write {path}")
        return image_truth(q, name, subset)
    truth = image_truth(q, name, subset)
    quality = int(truth["jpeg_quality"])
    write_raw_photo(
        export_image_path(root / "cvat_exports" / "corners", subset, name), q.raw, quality, q.exif_orientation
    )
    for folder, image in (("grid", q.warped), ("segmentation", q.warped_clean)):
        write_raw_photo(export_image_path(root / "cvat_exports" / folder, subset, name), image, quality)
    for key, mask in (
        ("string_mask", q.string_mask_warped.astype(np.uint8) * 255),
        ("occluder_mask", q.occluder_codes_raw),
    ):
        path = root / truth[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), mask):
            raise OSError(f"could not write {path}")
    return truth


def _skeleton(label: str, points_xy: list[list[float]]) -> Shape:
    elements = [Shape("points", str(i + 1), points=np.asarray([p])) for i, p in enumerate(points_xy)]
    return Shape("skeleton", label, elements=elements, attributes={"confidence": "100"})


def _coral_shape(coral: dict[str, Any], size_wh: tuple[int, int]) -> Shape:
    """A truth coral as CVAT has it: a polygon, or a mask (CVAT's RLE) when it has holes (CVAT
    polygons have none)."""
    if not coral.get("holes_xy"):
        return Shape(
            "polygon",
            coral["label"],
            points=np.asarray(coral["polygon_xy"]),
            attributes={"confidence": "100"},
        )
    rings = coral_rings(coral)
    mask = polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], size_wh)
    return Shape("mask", coral["label"], rle=mask_to_cvat_rle(mask), attributes={"confidence": "100"})


def build_cvat_documents(truths: list[dict[str, Any]]) -> dict[str, CvatDocument]:
    """The three project exports (corners, grid, segmentation) for the given image truths.

    A frame without a grid has no grid skeleton; a coral with holes is a CVAT mask.
    """
    docs: dict[str, CvatDocument] = {}
    for folder, (project_name, project_id) in PROJECTS.items():
        labels = {"corners": corner_labels, "grid": grid_labels, "segmentation": coral_labels}[folder]()
        tasks = {
            subset: TaskInfo(id=project_id * 10 + k, name=f"{project_name}_{subset}", subset=subset)
            for k, subset in enumerate(SUBSETS)
        }
        doc = CvatDocument(labels=labels, project_name=project_name, project_id=project_id)
        for image_id, truth in enumerate(truths):
            task = tasks[truth["subset"]]
            task.size += 1
            size = truth["raw_size"] if folder == "corners" else truth["warped_size"]
            image = ImageAnnotations(
                image_id, truth["name"], size[0], size[1], subset=task.subset, task_id=task.id
            )
            if folder == "corners":
                image.shapes.append(_skeleton(CORNER_LABEL, truth["corners_raw_xy"]))
            elif folder == "grid":
                if truth_grid(truth) is not None:  # a frame without a grid: no skeleton
                    image.shapes.append(_skeleton(GRID_LABEL, truth["grid_warped_xy"]))
            else:
                image.shapes.extend(_coral_shape(c, (size[0], size[1])) for c in truth["corals"])
            doc.images.append(image)
        doc.tasks = [t for t in tasks.values() if t.size]
        docs[folder] = doc
    return docs


def generate_dataset(
    out_dir: str | Path, config: SynthConfig, overwrite: bool = False, workers: int = 0
) -> Path:
    """Render ``config.images`` quadrats and write the exports and truth under ``out_dir``.

    Args:
        out_dir: target folder; must not exist unless ``overwrite`` (replaced only on success).
        config: generator parameters.
        overwrite: replace an existing ``out_dir`` once the new set is complete.
        workers: processes to render with (0: one per CPU core, capped at the image count).

    Returns:
        ``out_dir`` as a Path.
    """
    config.validate()
    out = Path(out_dir)
    start = time.perf_counter()
    with atomic_output_dir(out, overwrite) as tmp:
        for folder in PROJECTS:
            for subset in SUBSETS:
                (tmp / "cvat_exports" / folder / "images" / subset).mkdir(parents=True)
        subsets = assign_subsets(config.images, config.seed, config.holdout_share)
        jobs = [(config, i, subsets[i], tmp) for i in range(config.images)]
        n_workers = min(workers or os.cpu_count() or 1, config.images)
        if n_workers > 1:
            with ProcessPoolExecutor(n_workers) as pool:
                truths = list(pool.map(_render_one, jobs))
        else:
            truths = [_render_one(job) for job in jobs]
        for folder, doc in build_cvat_documents(truths).items():
            write_cvat_xml(doc, tmp / "cvat_exports" / folder / "annotations.xml")
        counts = Counter(c["label"] for t in truths for c in t["corals"])
        manifest = {
            "generator": "quadratseg.synth",
            "version": GENERATOR_VERSION,
            "config": {
                **config.__dict__,
                "raw_size": list(config.raw_size),
                "warped_size": config.warped_side,
            },
            "subsets": dict(Counter(subsets)),
            "colonies_per_label": dict(sorted(counts.items())),
            "seconds": round(time.perf_counter() - start, 2),
        }
        (tmp / "truth.json").write_text(json.dumps({"images": truths}), encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    logger.info(
        "wrote %d synthetic quadrats (%s) with %d colonies to %s in %.1f s",
        config.images,
        ", ".join(f"{k}: {v}" for k, v in manifest["subsets"].items()),
        sum(counts.values()),
        out,
        time.perf_counter() - start,
    )
    return out


def segmentation_truth(
    out_dir: str | Path, level: str = "finegrained"
) -> Iterator[tuple[str, Path, tuple[int, int], list[tuple[str, list[np.ndarray]]]]]:
    """Per photo of a generated set: (subset, its warped grid-free quadrat in the segmentation export,
    that image's size (width, height) px, its true corals as (genus mapped to ``level`` of the
    taxonomy, rings in px of that image: the outline, then the holes), in painting order: a later coral
    lies on top).

    Raises (when iterated):
        QuadratsegError: ``level`` is not a taxonomy level (the taxonomy's own check), or the set has
            no truth.json.
    """
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    root = Path(out_dir)
    for t in load_truth(root):
        path = export_image_path(root / "cvat_exports" / "segmentation", t["subset"], t["name"])
        corals = [(taxonomy.map_label(c["label"], level), coral_rings(c)) for c in t["corals"]]
        yield t["subset"], path, (int(t["warped_size"][0]), int(t["warped_size"][1])), corals


def load_truth(out_dir: str | Path) -> list[dict[str, Any]]:
    """The per-image truth of a generated set (see :func:`image_truth`)."""
    path = Path(out_dir) / "truth.json"
    if not path.is_file():
        raise QuadratsegError(f"{path} does not exist; generate the set with `python -m quadratseg.synth`")
    return json.loads(path.read_text(encoding="utf-8"))["images"]
