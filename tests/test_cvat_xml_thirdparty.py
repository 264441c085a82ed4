"""Conformance on real third-party "CVAT for images 1.1" XML (../shared/data, read in place).

Every shape of these files is imported, repaired, or dropped with a grouped warning; no file
ends in a traceback. Counts are checked against the XML itself, read here with ElementTree.

- ``cvat_xml_thirdparty/annotations_7cdbad16_masks.xml``: 273 ``<mask>`` shapes on 5 images of
  7360 x 4912, job-level ``<meta><job>``, an image name with spaces and ``&``; no images.
- ``cvat_xml_thirdparty/annotations_b0ac2298_polygon_and_empty.xml``: one polygon, four images
  without shapes; no images.
- ``datumaro/cvat_dataset/for_images/train.xml`` (with its two images): boxes, polylines,
  points, skeletons and shapes with an empty label; ``for_video/annotations.xml`` is refused.

The third-party XML comes without its images: the tests that pull it write black placeholder
JPEGs of the declared width x height beside a copy of the XML in ``tmp_path``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_engineering.create_fiftyone_dataset import run_pull
from quadratseg.cvat_tasks import project_from_xml_export
from quadratseg.errors import CvatFormatError, QuadratsegError, UnknownLabelError
from quadratseg.fiftyone_io import ConversionLog, shapes_to_polylines
from quadratseg.formats.cvat_xml import read_cvat_xml
from quadratseg.geometry import PolygonWithHoles, cvat_rle_to_mask, polygons_to_mask
from quadratseg.settings import Settings

pytestmark = pytest.mark.shared_data

REPO = Path(__file__).resolve().parents[1]
MASKS_XML = ("cvat_xml_thirdparty", "annotations_7cdbad16_masks.xml")
POLYGON_XML = ("cvat_xml_thirdparty", "annotations_b0ac2298_polygon_and_empty.xml")
DATUMARO_IMAGES_XML = ("datumaro", "cvat_dataset", "for_images", "train.xml")
DATUMARO_VIDEO_XML = ("datumaro", "cvat_dataset", "for_video", "annotations.xml")
SHAPE_TAGS = ("box", "polygon", "polyline", "points", "mask", "skeleton")
WARNING_LINE = re.compile(r"^(?P<kind>.+?): (?P<n>\d+) \(e\.g\. ")


def xml_images(path: Path) -> list[tuple[str, int, int, list[ET.Element]]]:
    """(name, width, height, top-level shape elements) of every <image>, read independently of the reader."""
    root = ET.parse(path).getroot()
    return [
        (im.get("name"), int(im.get("width")), int(im.get("height")), [c for c in im if c.tag in SHAPE_TAGS])
        for im in root.iter("image")
    ]


def export_with_placeholders(xml_path: Path, folder: Path) -> Path:
    """A copy of the XML as ``folder/annotations.xml`` with black JPEGs of each declared size in images/."""
    (folder / "images").mkdir(parents=True)
    shutil.copyfile(xml_path, folder / "annotations.xml")
    encoded: dict[tuple[int, int], bytes] = {}
    for name, width, height, _ in xml_images(xml_path):
        if (width, height) not in encoded:
            ok, buf = cv2.imencode(".jpg", np.zeros((height, width), np.uint8))
            assert ok
            encoded[width, height] = buf.tobytes()
        (folder / "images" / name).write_bytes(encoded[width, height])
    return folder


def taxonomy_of(xml_path: Path, target: Path) -> Path:
    """A taxonomy CSV whose finegrained labels are the labels of the XML (they are not coral genera)."""
    names = [lab.name for lab in read_cvat_xml(xml_path).labels]
    rows = ["finegrained,extended,main_family,agnostic"] + [f"{n},{n},{n},coral" for n in names]
    target.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return target


def warning_counts(warnings: list[str]) -> Counter:
    """Grouped warning lines ``kind: n (e.g. ...)`` -> Counter {kind: n}; each kind appears once."""
    counts: Counter = Counter()
    for line in warnings:
        match = WARNING_LINE.match(line)
        if match:
            assert match["kind"] not in counts, f"warning {match['kind']!r} is not grouped"
            counts[match["kind"]] = int(match["n"])
    return counts


def box_mask(rle: list[int]) -> np.ndarray:
    """The mask inside its box, bool (height, width), with the run the encoder left out restored."""
    *runs, x1, y1, x2, y2 = rle
    width, height = x2 - x1 + 1, y2 - y1 + 1
    return cvat_rle_to_mask([*runs, width * height - sum(runs), 0, 0, width - 1, height - 1], (width, height))


def shape_outcomes(shapes, frame_size, where):
    """Convert each shape alone: [(shape, rings, log)], so every shape's fate is known."""
    outcomes = []
    for shape in shapes:
        log = ConversionLog()
        rings = shapes_to_polylines([shape], frame_size, where, log)
        outcomes.append((shape, rings, log))
    return outcomes


def test_masks_file_reads_with_job_meta_and_every_mask(shared_data):
    path = shared_data.joinpath(*MASKS_XML)
    doc = read_cvat_xml(path)
    raw = xml_images(path)
    raw_labels = json.loads((path.parent / "CVAT_class_constructor.json").read_text(encoding="utf-8"))
    assert [lab.name for lab in doc.labels] == [lab["name"] for lab in raw_labels]
    assert {lab.type for lab in doc.labels} == {"any"}
    # job-level meta: the job stands for the task (CVAT writes no task id or name in a job export)
    (task,) = doc.tasks
    assert (task.id, task.name, task.subset, task.size) == (353334, "job_353334", "Train", 5)
    assert [(i.name, i.width, i.height) for i in doc.images] == [r[:3] for r in raw]
    assert any(" & " in i.name for i in doc.images)  # '&amp;' unescaped
    n_masks = sum(len(r[3]) for r in raw)
    assert n_masks == 273 and all(e.tag == "mask" for r in raw for e in r[3])
    masks = [s for i in doc.images for s in i.shapes]
    assert len(masks) == n_masks and all(s.type == "mask" for s in masks)
    for shape, elem in zip(masks, [e for r in raw for e in r[3]], strict=True):
        left, top, width, height = (int(elem.get(k)) for k in ("left", "top", "width", "height"))
        assert shape.rle[-4:] == [left, top, left + width - 1, top + height - 1]
        # the exporter never wrote the last run: every mask's runs stop short of its box
        assert 0 < width * height - sum(shape.rle[:-4]) <= max(width, height)
    project = project_from_xml_export(path)
    assert [(t.id, t.subset, len(t.frames)) for t in project.tasks] == [(353334, "train", 5)]


def test_every_mask_is_imported_repaired_or_dropped_with_a_reason(shared_data):
    path = shared_data.joinpath(*MASKS_XML)
    doc = read_cvat_xml(path)
    imported = dropped = parts = 0
    for image in doc.images:
        frame_size = (image.width, image.height)
        outcomes = shape_outcomes(image.shapes, frame_size, image.name)
        for shape, rings, log in outcomes:
            if rings:
                imported += 1
                parts += len(rings[0][1])
                # one colony per mask; its rings (parts and holes, even-odd) cover the mask's pixels
                assert len(rings) == 1
                ((_, colony, _),) = rings
                *_, x1, y1, x2, y2 = shape.rle
                mask = box_mask(shape.rle)
                local = [r - [x1, y1] for r in colony]
                drawn = polygons_to_mask([PolygonWithHoles(local[0], local[1:])], (x2 - x1 + 1, y2 - y1 + 1))
                assert (mask & drawn).sum() >= 0.97 * mask.sum(), f"{image.name}: a mask lost pixels"
                assert (drawn & ~mask).sum() <= 0.2 * mask.sum() + 50, f"{image.name}: a mask grew"
            else:
                dropped += 1
                assert any("dropped" in kind for kind in log.counts), f"{image.name}: a mask vanished"
        # all masks of the image at once (rings of different lengths: the vectorized check)
        log = ConversionLog()
        together = shapes_to_polylines(image.shapes, frame_size, image.name, log)
        assert len(together) == sum(len(r) for _, r, _ in outcomes)
        assert [lab for lab, _, _ in together] == [s.label for s, r, _ in outcomes for _ in r]
    # what this file holds: every mask imported as one polygon, after restoring its last run
    assert (imported, dropped, parts) == (273, 0, 273)


def test_masks_file_without_images_says_the_media_is_missing(shared_data, tmp_path, dataset_name):
    import fiftyone as fo

    path = shared_data.joinpath(*MASKS_XML)
    with pytest.raises(QuadratsegError, match=r"no image .* could be read.*missing") as info:
        run_pull(
            dataset_name,
            "xml",
            str(path),
            taxonomy=str(taxonomy_of(path, tmp_path / "taxonomy.csv")),
            settings=Settings(media_dir=tmp_path / "media"),
        )
    assert "00_20230116_MIS1_RC_Aspat_T04_08.jpg" in str(info.value)
    assert not fo.dataset_exists(dataset_name) and not fo.dataset_exists(dataset_name + ".pulling")


def test_masks_file_labels_outside_the_taxonomy_stop_the_pull(shared_data, tmp_path, dataset_name):
    path = shared_data.joinpath(*MASKS_XML)
    with pytest.raises(UnknownLabelError, match="recruit_live_white"):
        run_pull(dataset_name, "xml", str(path), settings=Settings(media_dir=tmp_path / "media"))


def test_masks_file_pulls_every_shape(shared_data, tmp_path, dataset_name):
    import fiftyone as fo

    path = shared_data.joinpath(*MASKS_XML)
    export = export_with_placeholders(path, tmp_path / "export")
    summary = run_pull(
        dataset_name,
        "xml",
        str(export),
        taxonomy=str(taxonomy_of(path, tmp_path / "taxonomy.csv")),
        settings=Settings(media_dir=tmp_path / "media"),
    )
    raw = {name: shapes for name, _, _, shapes in xml_images(path)}
    xml_labels = Counter(e.get("label") for shapes in raw.values() for e in shapes)
    assert summary["images"] == 5 and not summary["images_skipped"]
    assert summary["samples_per_split"] == {"train": 5}
    # every mask is one polygon of its label (none has several parts, none is dropped)
    assert summary["shapes_per_label"] == dict(sorted(xml_labels.items()))
    assert sum(summary["shapes_per_label"].values()) == 273
    counts = warning_counts(summary["warnings"])
    assert counts == {"masks repaired (runs short of the box: the missing last run restored)": 273}
    ds = fo.load_dataset(dataset_name)
    assert sorted(ds.values("cvat_image_name")) == sorted(raw)
    amp = ds.match({"cvat_image_name": {"$regex": " & "}}).first()
    assert Path(amp.filepath).is_file() and Path(amp.filepath).name == amp.cvat_image_name
    for sample in ds:
        polys = sample.gt_polylines.polylines
        assert [p.label for p in polys] == [e.get("label") for e in raw[sample.cvat_image_name]]
        for poly in polys:
            pts = np.asarray(poly.points[0])
            assert poly.closed and poly.filled and len(pts) >= 3
            assert (pts >= 0).all() and (pts <= 1).all()


def test_polygon_file_with_empty_images(shared_data, tmp_path, dataset_name):
    import fiftyone as fo

    path = shared_data.joinpath(*POLYGON_XML)
    raw = xml_images(path)
    assert [len(r[3]) for r in raw] == [1, 0, 0, 0, 0]
    export = export_with_placeholders(path, tmp_path / "export")
    summary = run_pull(
        dataset_name,
        "xml",
        str(export),
        taxonomy=str(taxonomy_of(path, tmp_path / "taxonomy.csv")),
        settings=Settings(media_dir=tmp_path / "media"),
    )
    assert summary["images"] == 5 and summary["shapes_per_label"] == {"recruit_live_white": 1}
    ds = fo.load_dataset(dataset_name)
    by_name = {s.cvat_image_name: s for s in ds}
    name, width, height, (polygon,) = raw[0]
    (poly,) = by_name[name].gt_polylines.polylines
    xml_points = [[float(v) for v in p.split(",")] for p in polygon.get("points").split(";")]
    assert np.allclose(np.asarray(poly.points[0]) * [width, height], xml_points, atol=1e-6)
    for other, *_ in raw[1:]:
        assert by_name[other].gt_polylines.polylines == []


def test_datumaro_for_images_every_shape_is_accounted(shared_data, tmp_path, dataset_name):
    import fiftyone as fo

    path = shared_data.joinpath(*DATUMARO_IMAGES_XML)
    raw = xml_images(path)
    n_shapes = sum(len(r[3]) for r in raw)
    assert n_shapes == 6
    # the task has no subset: pull every subset
    summary = run_pull(
        dataset_name, "xml", str(path), allowed_subsets=(), settings=Settings(media_dir=tmp_path / "media")
    )
    assert summary["images"] == 2 and not summary["images_skipped"]
    counts = warning_counts(summary["warnings"])
    assert counts["shapes dropped (no label)"] == 2  # a polyline and a polygon with label=""
    assert counts["box shapes ignored (not coral polygons)"] == 1
    assert counts["points shapes ignored (not coral polygons)"] == 1
    ds = fo.load_dataset(dataset_name)
    skeletons = {s.cvat_image_name: s.gt_skeleton.keypoints for s in ds}
    # points marked outside are FiftyOne's missing points (NaN)
    assert [[math.isnan(x) for x, _ in kp.points] for kp in skeletons["img0.jpg"]] == [
        [True, False, False, False]
    ]
    assert [[math.isnan(x) for x, _ in kp.points] for kp in skeletons["img1.jpg"]] == [
        [False, False, True, False]
    ]
    imported = sum(len(k) for k in skeletons.values()) + sum(len(s.gt_polylines.polylines) for s in ds)
    not_imported = counts["shapes dropped (no label)"] + sum(n for k, n in counts.items() if "ignored" in k)
    assert imported + not_imported == n_shapes


def test_datumaro_for_video_is_refused_cleanly(shared_data, tmp_path, dataset_name):
    path = shared_data.joinpath(*DATUMARO_VIDEO_XML)
    with pytest.raises(CvatFormatError, match=r"'CVAT for video' export.*'CVAT for images 1\.1'"):
        run_pull(dataset_name, "xml", str(path), settings=Settings(media_dir=tmp_path / "media"))
    env = {**os.environ, "QUADRATSEG_MEDIA_DIR": str(tmp_path / "media")}
    cli = [sys.executable, "-m", "data_engineering.create_fiftyone_dataset", "video", "--source", "xml"]
    run = subprocess.run(
        [*cli, "--path", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "CVAT for video" in run.stderr and "Traceback" not in run.stderr
