"""coral_seg_yolo: YOLO-seg layout (whole images and tiles) and training mechanics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from coral_seg_yolo.prepare_data import clip_polygon_to_box, tile_origins, write_seg_layout
from quadratseg.errors import QuadratsegError
from quadratseg.geometry import polygon_area
from quadratseg.taxonomy import load_taxonomy


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


@pytest.fixture(scope="module")
def tiny_seg_model(coral_dataset, tmp_path_factory):
    """A YOLO11n-seg trained for one epoch at 64 px (mechanics, not accuracy), and its layout."""
    import json

    from coral_seg_yolo.train import train

    root = tmp_path_factory.mktemp("seg")
    write_seg_layout(coral_dataset, root / "seg", level="main_family")
    result = json.loads(
        train(
            str(root / "seg" / "data.yaml"),
            project=str(root / "runs"),
            epochs=1,
            imgsz=64,
            batch=2,
            workers=0,
            args={"plots": False},
        )
    )
    return Path(result["best"]), root / "seg" / "data.yaml", result


def test_one_epoch_of_training_from_the_layout(tiny_seg_model):
    weights, _, result = tiny_seg_model
    assert weights.is_file() and result["config"]["model"] == "yolo11n-seg.yaml"
    assert (Path(result["run_dir"]) / "quadratseg_config.json").is_file()


def test_merging_joins_instances_cut_by_a_tile_border():
    from coral_seg_yolo.predictor import merge_instances
    from quadratseg.instances import Instance

    left = Instance("Porites", 0.9, np.array([[10.0, 10.0], [50.0, 10.0], [50.0, 40.0], [10.0, 40.0]]))
    right = Instance("Porites", 0.6, np.array([[50.0, 10.0], [80.0, 10.0], [80.0, 40.0], [50.0, 40.0]]))
    other = Instance("Acropora", 0.8, np.array([[50.0, 12.0], [70.0, 12.0], [70.0, 30.0], [50.0, 30.0]]))
    far = Instance("Porites", 0.7, np.array([[10.0, 80.0], [20.0, 80.0], [20.0, 95.0], [10.0, 95.0]]))
    merged = merge_instances([right, left, other, far], (100, 100))
    porites = sorted((i for i in merged if i.label == "Porites"), key=lambda i: -polygon_area(i.polygon_xy))
    assert len(merged) == 3 and len(porites) == 2
    assert polygon_area(porites[0].polygon_xy) == pytest.approx(70 * 30, rel=0.08) and porites[0].score == 0.9


def test_cvat_answer_masks_decode_to_the_polygons():
    from quadratseg.geometry import cvat_rle_to_mask, polygon_to_mask
    from quadratseg.instances import Instance, cvat_shapes

    ring = np.array([[5.0, 5.0], [40.0, 8.0], [30.0, 30.0]])
    shapes = cvat_shapes(
        [Instance("Porites", 0.873, ring), Instance("Acropora", 0.2, ring)], (50, 40), threshold=0.5
    )
    assert len(shapes) == 1
    (shape,) = shapes
    assert shape["type"] == "mask" and shape["confidence"] == "87" and shape["confidence"].isnumeric()
    assert np.array_equal(cvat_rle_to_mask(shape["mask"], (50, 40)), polygon_to_mask(ring, (50, 40)))
    assert np.allclose(np.array(shape["points"]).reshape(-1, 2), ring)


def test_evaluate_reports_ultralytics_validator_numbers(tiny_seg_model, tmp_path):
    import json

    from coral_seg_yolo.evaluate import evaluate
    from quadratseg.yolo_train import build_model

    weights, data, _ = tiny_seg_model
    ours = json.loads(
        evaluate(str(weights), str(data), split="val", imgsz=64, out_dir=str(tmp_path / "eval"))
    )
    theirs = build_model(weights).val(
        data=str(data),
        split="val",
        imgsz=64,
        plots=False,
        verbose=False,
        project=str(tmp_path / "v"),
        name="v",
    )
    assert ours["mask_map50"] == round(float(theirs.seg.map50), 4)
    assert ours["box_map50_95"] == round(float(theirs.box.map), 4)
    assert any(p.endswith("confusion_matrix.png") for p in ours["plots"])
    assert (tmp_path / "eval" / "evaluation.json").is_file()


def test_predict_methods_and_outputs(tiny_seg_model, synthetic_set, tmp_path):
    import json

    from coral_seg_yolo.predict import predict
    from coral_seg_yolo.predictor import SegPredictor

    weights, _, _ = tiny_seg_model
    images = next((synthetic_set / "cvat_exports" / "segmentation" / "images").iterdir())
    for method in ("direct", "tiling", "overlapping"):
        out = tmp_path / method
        summary = json.loads(
            predict(str(weights), str(images), str(out), method=method, tile=128, conf=0.001, imgsz=64)
        )
        doc = json.loads((out / "predictions_coco.json").read_text())
        assert summary["images"] == len(doc["images"]) == len(list((out / "overlays").iterdir()))
        assert {c["name"] for c in doc["categories"]} == set(load_taxonomy().classes("main_family"))
    with pytest.raises(QuadratsegError, match="--method"):
        SegPredictor(weights).predict(np.zeros((64, 64, 3), np.uint8), method="magic")


def test_nuclio_zip_and_handler(tiny_seg_model, synthetic_set, tmp_path, shared_data):
    import base64
    import json
    import zipfile

    from nuclio_driver import call_handler

    from coral_seg_yolo.deploy_as_zip import deploy_as_zip
    from quadratseg.synth import load_truth
    from quadratseg.synth.dataset import export_image_path

    weights, _, _ = tiny_seg_model
    zip_path = Path(deploy_as_zip("pth-yolo-coralsegv4", str(weights), output=str(tmp_path / "out")))
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "unzipped")
    nuclio_dir = tmp_path / "unzipped" / "nuclio"
    ours = yaml.safe_load((nuclio_dir / "function.yaml").read_text())
    real = yaml.safe_load(
        (shared_data / "cvat/serverless/onnx/WongKinYiu/yolov7/nuclio/function.yaml").read_text()
    )
    assert (
        set(ours) == set(real)
        and ours["metadata"]["annotations"]["type"] == real["metadata"]["annotations"]["type"]
    )
    spec = json.loads(ours["metadata"]["annotations"]["spec"])
    assert [s["name"] for s in spec] == load_taxonomy().classes("main_family")
    assert set(spec[0]) >= set(json.loads(real["metadata"]["annotations"]["spec"])[0])
    truth = load_truth(synthetic_set)[0]
    image = export_image_path(synthetic_set / "cvat_exports" / "segmentation", truth["subset"], truth["name"])
    request = json.dumps({"image": base64.b64encode(image.read_bytes()).decode(), "threshold": 0.0})
    ok, bad = call_handler(nuclio_dir, [request, "not json"], "coral_seg_yolo")
    assert ok["status"] == 200 and bad["status"] == 400
    from quadratseg.geometry import cvat_rle_to_mask

    for shape in ok["body"]:
        assert shape["type"] == "mask" and shape["confidence"].isnumeric()
        assert cvat_rle_to_mask(shape["mask"], (truth["warped_size"][0], truth["warped_size"][1])).any()


def test_onnx_export_predicts_like_the_pytorch_model(tiny_seg_model, tmp_path):
    import shutil

    from coral_seg_yolo.export import export
    from coral_seg_yolo.predictor import SegPredictor

    weights, _, _ = tiny_seg_model
    local = tmp_path / "best.pt"
    shutil.copyfile(weights, local)
    onnx_path = Path(export(str(local), imgsz=64))
    assert onnx_path.suffix == ".onnx" and onnx_path.is_file()
    pt_model, onnx_model = SegPredictor(local, imgsz=64), SegPredictor(onnx_path, imgsz=64)
    assert onnx_model.names == pt_model.names
    image = (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)
    a = pt_model.predict(image, conf=0.001)
    b = onnx_model.predict(image, conf=0.001)
    assert abs(len(a) - len(b)) <= max(2, len(a) // 10)
    with pytest.raises(QuadratsegError, match=r"\.pt model"):
        export(str(onnx_path))
