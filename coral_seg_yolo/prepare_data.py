"""CLI: FiftyOne coral polygons -> ultralytics YOLO-seg layout, at any taxonomy level, optionally tiled.

    python -m coral_seg_yolo.prepare_data DATASET OUT_DIR [--level main_family] [--tile 640 --overlap 0.2]

Writes ``images/<split>/``, ``labels/<split>/<stem>.txt`` (one line per colony: class index, then
x y pairs normalized to the image) and ``data.yaml`` (absolute ``path``, ``names``, and a
``quadratseg`` block with the level, the tile size and the median width of the training quadrats,
which ``coral_seg_yolo.train`` copies into the model card). Splits come
from the sample tags. A colony is one FiftyOne polyline whose rings (parts and holes, even-odd)
become one line, joined the way ultralytics' COCO converter joins segments. With ``--tile``, each
image is cut into tiles of that size with the given overlap (quadrats are 1920 px and more), and
every colony is clipped to each tile it touches; parts and holes smaller than ``--min-area`` px^2
are dropped.
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
import yaml

from coral_seg_yolo.tiles import tile_origins
from quadratseg.atomic import atomic_output_dir
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import POLYLINES_FIELD, level_field
from quadratseg.images import read_image_rgb, write_upright
from quadratseg.taxonomy import load_taxonomy
from quadratseg.yolo_layout import check_split_counts, layout_stem, make_split_dirs, sample_split

logger = logging.getLogger(__name__)


QUADRATSEG_KEY = "quadratseg"  # data.yaml block: level, tile and warp size of the layout


def colony_geometry(rings_xy: list[np.ndarray]) -> Any:
    """A colony's rings (each (N, 2) px) as one shapely geometry under the even-odd rule
    (holes and parts alike: the symmetric difference of the rings), the model every stage uses."""
    from shapely.geometry import Polygon
    from shapely.validation import make_valid

    geometry = None
    for ring in rings_xy:
        part = Polygon(ring)
        part = part if part.is_valid else make_valid(part)
        geometry = part if geometry is None else geometry.symmetric_difference(part)
    return geometry


def clip_colony_to_box(
    rings_xy: list[np.ndarray], box_xyxy: tuple[float, float, float, float], min_area: float
) -> list[np.ndarray]:
    """The rings (each (N, 2) px: exteriors and holes) of a colony's part inside a box; parts and
    holes under ``min_area`` px^2 are dropped. Empty when nothing of the colony is in the box."""
    from shapely.geometry import Polygon, box

    stack, out = [colony_geometry(rings_xy).intersection(box(*box_xyxy))], []
    while stack:  # an intersection can be a Polygon, MultiPolygon or GeometryCollection
        geom = stack.pop()
        if isinstance(geom, Polygon):
            if geom.area >= min_area:
                out.append(np.asarray(geom.exterior.coords, dtype=np.float64)[:-1])
                out.extend(
                    np.asarray(hole.coords, dtype=np.float64)[:-1]
                    for hole in geom.interiors
                    if Polygon(hole).area >= min_area
                )
        else:
            stack.extend(getattr(geom, "geoms", []))
    return out


def colony_segment(rings_xy: list[np.ndarray]) -> np.ndarray:
    """One YOLO-seg outline (N, 2) for a colony of several rings: ultralytics cannot hold holes or
    parts, so the rings are joined by thin bridges exactly as ultralytics' own COCO converter joins
    an annotation's segments (``merge_multi_segment``); filled, the bridges vanish and holes stay."""
    if len(rings_xy) == 1:
        return rings_xy[0]
    from ultralytics.data.converter import merge_multi_segment

    return np.concatenate(merge_multi_segment([r.ravel().tolist() for r in rings_xy]), axis=0)


def yolo_seg_line(class_id: int, ring_xy: np.ndarray, frame_size: tuple[int, int]) -> str:
    """``class x1 y1 x2 y2 ...`` with coordinates normalized to ``frame_size=(w, h)``, clipped to 0..1."""
    w, h = frame_size
    pts = np.clip(ring_xy / [w, h], 0.0, 1.0)
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in pts.ravel())


@dataclass
class SegImage:
    """One photo of a YOLO-seg layout: its split, file, layout stem, size (w, h px of the upright
    image; None: decoded from the file) and colonies as (label, rings normalized to the image, x / w and
    y / h: outline, parts and holes under the even-odd rule; a colony without a ring of 3 points is
    still checked for its label, and writes nothing)."""

    split: str
    filepath: str
    stem: str
    size_wh: tuple[int, int] | None
    colonies: list[tuple[str, list[np.ndarray]]]


def fiftyone_seg_images(samples: Any, field: str) -> Iterator[SegImage]:
    """The :class:`SegImage` of each FiftyOne sample in a train/val/test split (polylines of ``field``;
    the size from the sample's metadata, None without it)."""
    for sample in samples:
        split = sample_split(sample)
        if split is None:
            continue
        size = None
        if sample.metadata is not None and sample.metadata.width:
            size = (int(sample.metadata.width), int(sample.metadata.height))
        colonies = [
            (poly.label, [np.asarray(r, dtype=np.float64) for r in poly.points if len(r) >= 3])
            for poly in (sample[field].polylines if sample[field] is not None else [])
        ]
        yield SegImage(split, sample.filepath, layout_stem(sample), size, colonies)


def write_seg_layout(
    samples: Any,
    out_dir: Path,
    level: str = "finegrained",
    tile: int = 0,
    overlap: float = 0.2,
    min_area: float = 16.0,
    overwrite: bool = False,
    image_format: str = ".jpg",
) -> dict[str, Any]:
    """Write the YOLO-seg layout of FiftyOne ``samples`` (field ``gt_polylines`` or its ``level`` copy)."""
    load_taxonomy().classes(level)  # an unknown level before the schema
    field = POLYLINES_FIELD if level == "finegrained" else level_field(level)
    if field not in samples.get_field_schema():
        raise QuadratsegError(f"the dataset has no field {field!r}; pull it with data_engineering first")
    return write_seg_images(
        fiftyone_seg_images(samples, field), out_dir, level, tile, overlap, min_area, overwrite, image_format
    )


def write_seg_images(
    images: Iterable[SegImage],
    out_dir: Path,
    level: str = "finegrained",
    tile: int = 0,
    overlap: float = 0.2,
    min_area: float = 16.0,
    overwrite: bool = False,
    image_format: str = ".jpg",
) -> dict[str, Any]:
    """Write the YOLO-seg layout (``images/``, ``labels/``, ``data.yaml``) of :class:`SegImage` records.

    A colony's label must be a class of ``level``; with ``tile``, each image is cut into tiles and each
    colony clipped to the tiles it touches. Written whole or not at all (a temporary folder renamed).
    """
    names = load_taxonomy().classes(level)  # an unknown level: a clear error, with the closest level
    if tile and not 0 <= overlap < 0.9:
        raise QuadratsegError(f"--overlap must be in [0, 0.9), got {overlap}")
    index = {name: i for i, name in enumerate(names)}
    instances: Counter = Counter()
    widths: list[int] = []  # of the training quadrats (before tiling): the warp size the model learns
    with atomic_output_dir(out_dir, overwrite) as tmp:
        counts = make_split_dirs(tmp)
        for record in images:
            for label, _ in record.colonies:
                if label not in index:
                    raise QuadratsegError(
                        f"{record.filepath}: label {label!r} is not a {level} class {names}"
                    )
            image = None
            if tile or record.size_wh is None:
                image = cv2.cvtColor(read_image_rgb(record.filepath), cv2.COLOR_RGB2BGR)  # upright
                h, w = image.shape[:2]
            else:
                w, h = record.size_wh
            colonies = [(label, [r * [w, h] for r in rings]) for label, rings in record.colonies if rings]
            split, stem = record.split, record.stem
            if split == "train":
                widths.append(w)
            boxes = (
                [
                    (x, y, min(x + tile, w), min(y + tile, h))
                    for y in tile_origins(h, tile, overlap)
                    for x in tile_origins(w, tile, overlap)
                ]
                if tile
                else [(0, 0, w, h)]
            )
            for k, (x0, y0, x1, y1) in enumerate(boxes):
                lines = []
                for label, rings in colonies:
                    inside = clip_colony_to_box(rings, (x0, y0, x1, y1), min_area) if tile else rings
                    if inside:
                        segment = colony_segment([r - [x0, y0] for r in inside])
                        lines.append(yolo_seg_line(index[label], segment, (x1 - x0, y1 - y0)))
                        instances[label] += 1
                name = f"{stem}_t{k:03d}" if tile else stem
                if image is None:  # whole image: the file as it is (upright pixels if it has an EXIF turn)
                    write_upright(
                        record.filepath, tmp / "images" / split / f"{name}{Path(record.filepath).suffix}"
                    )
                else:
                    cv2.imwrite(str(tmp / "images" / split / f"{name}{image_format}"), image[y0:y1, x0:x1])
                (tmp / "labels" / split / f"{name}.txt").write_text(
                    "\n".join(lines) + ("\n" if lines else "")
                )
                counts[split] += 1
        check_split_counts(counts, "coral segmentation")
        data = {
            "path": str(Path(out_dir).resolve()),
            "train": "images/train",
            "val": "images/val",
            "test": "images/test",
            "names": dict(enumerate(names)),
            # what a model trained on this layout must be fed (its model card takes them over)
            QUADRATSEG_KEY: {
                "level": level,
                "tile": tile,
                "warp_size": int(np.median(widths)) if widths else None,
            },
        }
        (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return {
        "images": counts,
        "instances": dict(sorted(instances.items())),
        "level": level,
        "tile": tile,
        "data_yaml": str(Path(out_dir) / "data.yaml"),
    }


def prepare_data(
    dataset: str,
    out_dir: str | None = None,
    level: str = "finegrained",
    tile: int = 0,
    overlap: float = 0.2,
    min_area: float = 16.0,
    overwrite: bool = False,
) -> str:
    """Export a FiftyOne dataset's coral polygons to an ultralytics YOLO-seg dataset.

    Args:
        dataset: FiftyOne dataset pulled by data_engineering (gt_polylines and its level fields).
        out_dir: output folder (images/, labels/, data.yaml), created when complete (default:
            QUADRATSEG_DATA_DIR/coralseg/DATASET).
        level: taxonomy level of the classes: finegrained, extended, main_family or agnostic.
        tile: tile size in px (0: whole images).
        overlap: overlap between neighbouring tiles (share of the tile).
        min_area: smallest polygon part kept after clipping to a tile, px^2.
        overwrite: replace out_dir if it exists.

    Returns:
        JSON with images per split, instances per class and the data.yaml path.
    """
    from quadratseg.cli import data_path
    from quadratseg.fiftyone_io import load_dataset

    samples = load_dataset(dataset)
    out = data_path(out_dir, Path("coralseg") / dataset)
    summary = write_seg_layout(samples, out, level, tile, overlap, min_area, overwrite)
    return json.dumps(summary, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(prepare_data, name="coral_seg_yolo.prepare_data")
