"""CLI: FiftyOne coral polygons -> MMSeg semantic layout, at any taxonomy level.

    python -m DINOv2_mmseg.prepare_data DATASET OUT_DIR [--level finegrained] [--overwrite]

Writes ``train|val|test/data/<stem><ext>`` (the image files as they are), ``train|val|test/labels/<stem>.png``
(single-channel uint8 class-index masks), ``classes.txt`` (line k = class k; 0 is ``background``),
``palette.txt`` (``r g b`` per class, the taxonomy's colours) and ``dataset.json`` (level, counts,
pixels per class). Splits come from the sample tags. The registered ``CoralSegDataset`` reads it.

Overlaps: where polygons overlap, the pixel takes the class of the polygon listed last (CVAT's
drawing order: later shapes lie on top), the same rule as percent cover (``quadratseg.cover``).
A polyline with several rings is filled with the even-odd rule, so inner rings are holes.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import POLYLINES_FIELD, level_field
from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
from quadratseg.images import image_size, write_upright
from quadratseg.taxonomy import load_taxonomy
from quadratseg.visualize import hex_to_rgb
from quadratseg.yolo_layout import SPLITS, check_split_counts, layout_stem, sample_split

logger = logging.getLogger(__name__)

BACKGROUND = "background"


def class_table(level: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Classes (``background`` first, then the taxonomy's classes at ``level``) and their RGB colours."""
    taxonomy = load_taxonomy()
    names = taxonomy.classes(level)  # an unknown level: a clear error, with the closest level
    return [BACKGROUND, *names], [(0, 0, 0), *(hex_to_rgb(taxonomy.color(n)) for n in names)]


def class_index_mask(
    labelled_rings: list[tuple[int, list[np.ndarray]]], frame_size: tuple[int, int]
) -> np.ndarray:
    """Paint (class index, rings px) in order into a uint8 mask (H, W); later polygons win overlaps.

    Example:
        >>> sq = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
        >>> int(class_index_mask([(1, [sq]), (2, [sq + 2])], (6, 6))[3, 3])
        2
    """
    width, height = frame_size
    mask = np.zeros((height, width), dtype=np.uint8)
    for class_id, rings in labelled_rings:
        rings = [r for r in rings if len(r) >= 3]
        if rings:
            mask[polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], frame_size)] = class_id
    return mask


@dataclass
class ClassMapImage:
    """One photo of an MMSeg layout: its split, file, layout stem, upright size (width, height px) and
    colonies as (label, rings px of the upright image: outline, then holes), in drawing order (a later
    colony lies on top)."""

    split: str
    filepath: str
    stem: str
    size_wh: tuple[int, int]
    colonies: list[tuple[str, list[np.ndarray]]]


def fiftyone_class_map_images(samples: Any, field: str) -> Iterator[ClassMapImage]:
    """The :class:`ClassMapImage` of each FiftyOne sample in a train/val/test split (polylines of
    ``field``, normalized points scaled to the upright image read from its file's header)."""
    for sample in samples:
        split = sample_split(sample)
        if split is None:
            continue
        w, h = image_size(sample.filepath)  # upright (EXIF orientation applied)
        colonies = [
            (poly.label, [np.asarray(r, dtype=np.float64) * [w, h] for r in poly.points])
            for poly in (sample[field].polylines if sample[field] is not None else [])
        ]
        yield ClassMapImage(split, sample.filepath, layout_stem(sample), (w, h), colonies)


def write_class_maps(
    images: Iterable[ClassMapImage], out_dir: Path, level: str = "finegrained", overwrite: bool = False
) -> dict[str, Any]:
    """Write the MMSeg layout (see the module docstring) of ``images`` at ``level`` of the taxonomy.

    Raises:
        QuadratsegError: a colony's label is not a class of ``level`` (nothing is written), a split is
            empty, or the images have several formats.
    """
    classes, palette = class_table(level)
    index = {name: i for i, name in enumerate(classes)}
    pixels: Counter = Counter()
    suffixes: set[str] = set()
    with atomic_output_dir(out_dir, overwrite) as tmp:
        counts = dict.fromkeys(SPLITS, 0)
        for split in SPLITS:
            (tmp / split / "data").mkdir(parents=True)
            (tmp / split / "labels").mkdir(parents=True)
        for image in images:
            rings = []
            for label, colony_rings in image.colonies:
                if label not in index or label == BACKGROUND:
                    raise QuadratsegError(
                        f"{image.filepath}: label {label!r} is not a {level} class {classes[1:]}"
                    )
                rings.append((index[label], colony_rings))
            mask = class_index_mask(rings, image.size_wh)
            pixels.update({classes[k]: int(v) for k, v in enumerate(np.bincount(mask.ravel())) if v})
            suffix = Path(image.filepath).suffix.lower().replace(".jpeg", ".jpg")
            suffixes.add(suffix)
            split = image.split
            write_upright(image.filepath, tmp / split / "data" / f"{image.stem}{suffix}")  # no EXIF turn left
            if not cv2.imwrite(str(tmp / split / "labels" / f"{image.stem}.png"), mask):
                raise QuadratsegError(f"cannot write {tmp / split / 'labels' / image.stem}.png")
            counts[split] += 1
        check_split_counts(counts, "semantic segmentation")
        if len(suffixes) > 1:
            raise QuadratsegError(
                f"the images have several formats {sorted(suffixes)}; MMSeg reads one suffix per dataset: "
                "convert them to one format first"
            )
        (tmp / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
        (tmp / "palette.txt").write_text("\n".join(f"{r} {g} {b}" for r, g, b in palette) + "\n", "utf-8")
        summary = {
            "level": level,
            "classes": classes,
            "img_suffix": suffixes.pop() if suffixes else ".jpg",
            "images": counts,
            "pixels": {name: pixels.get(name, 0) for name in classes},
            "overlap_rule": "the polygon listed last wins (CVAT drawing order)",
        }
        (tmp / "dataset.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return {**summary, "data_root": str(out_dir)}


def write_mmseg_layout(
    samples: Any, out_dir: Path, level: str = "finegrained", overwrite: bool = False
) -> dict[str, Any]:
    """Write the MMSeg layout of FiftyOne ``samples`` (field ``gt_polylines`` or its ``level`` copy)."""
    class_table(level)  # an unknown level before the schema
    field = POLYLINES_FIELD if level == "finegrained" else level_field(level)
    if field not in samples.get_field_schema():
        raise QuadratsegError(f"the dataset has no field {field!r}; pull it with data_engineering first")
    return write_class_maps(fiftyone_class_map_images(samples, field), out_dir, level, overwrite)


def prepare_data(
    dataset: str, out_dir: str | None = None, level: str = "finegrained", overwrite: bool = False
) -> str:
    """Export a FiftyOne dataset's coral polygons to the MMSeg layout with class-index masks.

    Args:
        dataset: FiftyOne dataset pulled by data_engineering (gt_polylines and its level fields).
        out_dir: output folder, created when complete (nothing is left behind on error; default:
            QUADRATSEG_DATA_DIR/mmseg/DATASET).
        level: taxonomy level of the classes: finegrained, extended, main_family or agnostic.
        overwrite: replace out_dir if it exists.

    Returns:
        JSON with images per split, the classes and the pixels per class.
    """
    from quadratseg.cli import data_path
    from quadratseg.fiftyone_io import load_dataset

    samples = load_dataset(dataset)
    out = data_path(out_dir, Path("mmseg") / dataset)
    summary = write_mmseg_layout(samples, out, level, overwrite)
    return json.dumps(summary, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(prepare_data, name="DINOv2_mmseg.prepare_data")
