"""coral_seg_yolo: YOLO-seg layout (whole images and tiles) and training mechanics."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from coral_seg_yolo.prepare_data import clip_polygon_to_box, tile_origins, write_seg_layout
from data_engineering.create_fiftyone_dataset import run_pull
from quadratseg.errors import QuadratsegError
from quadratseg.geometry import polygon_area
from quadratseg.settings import Settings
from quadratseg.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def coral_dataset(synthetic_set, tmp_path_factory):
    import fiftyone as fo

    name = f"seg-{uuid.uuid4().hex[:6]}"
    run_pull(
        name,
        "xml",
        str(synthetic_set / "cvat_exports" / "segmentation"),
        dataset_name=name,
        settings=Settings(media_dir=tmp_path_factory.mktemp("media")),
    )
    yield fo.load_dataset(name)
    fo.delete_dataset(name)


def read_labels(root: Path) -> list[list[float]]:
    return [
        list(map(float, line.split()))
        for f in sorted(root.rglob("labels/*/*.txt"))
        for line in f.read_text().splitlines()
    ]


def test_whole_image_layout_matches_the_polygons(coral_dataset, tmp_path):
    summary = write_seg_layout(coral_dataset, tmp_path / "seg")
    data = yaml.safe_load((tmp_path / "seg" / "data.yaml").read_text())
    assert Path(data["path"]).is_absolute() and list(data["names"].values()) == load_taxonomy().classes()
    assert sum(summary["images"].values()) == coral_dataset.count()
    lines = read_labels(tmp_path / "seg")
    assert len(lines) == coral_dataset.count("gt_polylines.polylines")
    assert all(
        len(line) % 2 == 1 and len(line) >= 7 and min(line[1:]) >= 0 and max(line[1:]) <= 1 for line in lines
    )
    assert sum(summary["instances"].values()) == len(lines)


def test_coarser_level_uses_its_classes(coral_dataset, tmp_path):
    summary = write_seg_layout(coral_dataset, tmp_path / "fam", level="main_family")
    names = yaml.safe_load((tmp_path / "fam" / "data.yaml").read_text())["names"]
    assert list(names.values()) == load_taxonomy().classes("main_family")
    assert set(summary["instances"]) <= set(load_taxonomy().classes("main_family"))
    assert {int(line[0]) for line in read_labels(tmp_path / "fam")} <= set(range(7))


def test_tiles_cover_the_image_and_preserve_polygon_area(coral_dataset, tmp_path):
    assert tile_origins(256, 128, 0.25) == [0, 96, 128]
    assert tile_origins(100, 128, 0.2) == [0]
    ring = np.array([[50.0, 50.0], [150.0, 50.0], [150.0, 150.0], [50.0, 150.0]])
    parts = clip_polygon_to_box(ring, (0, 0, 100, 100), 1.0)
    assert len(parts) == 1 and polygon_area(parts[0]) == pytest.approx(2500)
    assert clip_polygon_to_box(ring, (200, 200, 300, 300), 1.0) == []
    summary = write_seg_layout(coral_dataset, tmp_path / "tiles", tile=128, overlap=0.25, min_area=4)
    images = sorted((tmp_path / "tiles" / "images").rglob("*.jpg"))
    assert (
        len(images) == sum(summary["images"].values()) == coral_dataset.count() * 9
    )  # 3 x 3 tiles of 256 px
    import cv2

    assert {cv2.imread(str(p)).shape[:2] for p in images} == {(128, 128)}
    # tiles overlap, so clipped instances outnumber the polygons
    assert sum(summary["instances"].values()) > coral_dataset.count("gt_polylines.polylines")


def test_bad_requests(coral_dataset, tmp_path):
    with pytest.raises(QuadratsegError, match="unknown taxonomy level"):
        write_seg_layout(coral_dataset, tmp_path / "x", level="species")
    with pytest.raises(QuadratsegError, match="overlap"):
        write_seg_layout(coral_dataset, tmp_path / "y", tile=64, overlap=0.95)
    write_seg_layout(coral_dataset, tmp_path / "z")
    with pytest.raises(QuadratsegError, match="already exists"):
        write_seg_layout(coral_dataset, tmp_path / "z")


def test_one_epoch_of_training_from_the_layout(coral_dataset, tmp_path):
    import json

    from coral_seg_yolo.train import train

    write_seg_layout(coral_dataset, tmp_path / "seg", level="main_family")
    result = json.loads(
        train(
            str(tmp_path / "seg" / "data.yaml"),
            project=str(tmp_path / "runs"),
            epochs=1,
            imgsz=64,
            batch=2,
            workers=0,
            args={"plots": False},
        )
    )
    assert Path(result["best"]).is_file() and result["config"]["model"] == "yolo11n-seg.yaml"
    assert (Path(result["run_dir"]) / "quadratseg_config.json").is_file()
