"""coral_seg_yolo: YOLO-seg layout (whole images and tiles) and training mechanics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from coral_seg_yolo.prepare_data import clip_colony_to_box, colony_segment, write_seg_layout
from coral_seg_yolo.tiles import tile_origins
from quadratseg.errors import QuadratsegError
from quadratseg.geometry import polygon_area
from quadratseg.taxonomy import load_taxonomy
from quadratseg.yolo_layout import layout_stem


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
    parts = clip_colony_to_box([ring], (0, 0, 100, 100), 1.0)
    assert len(parts) == 1 and polygon_area(parts[0]) == pytest.approx(2500)
    assert clip_colony_to_box([ring], (200, 200, 300, 300), 1.0) == []
    hole = np.array([[80.0, 80.0], [120.0, 80.0], [120.0, 120.0], [80.0, 120.0]])
    rings = clip_colony_to_box([ring, hole], (0, 0, 100, 100), 1.0)
    assert len(rings) == 1 and polygon_area(rings[0]) == pytest.approx(2500 - 400)  # the hole cuts the corner
    summary = write_seg_layout(coral_dataset, tmp_path / "tiles", tile=128, overlap=0.25, min_area=4)
    images = sorted((tmp_path / "tiles" / "images").rglob("*.jpg"))
    assert (
        len(images) == sum(summary["images"].values()) == coral_dataset.count() * 9
    )  # 3 x 3 tiles of 256 px
    import cv2

    assert {cv2.imread(str(p)).shape[:2] for p in images} == {(128, 128)}
    # tiles overlap, so clipped instances outnumber the polygons
    assert sum(summary["instances"].values()) > coral_dataset.count("gt_polylines.polylines")


def test_a_colony_with_a_hole_and_two_parts_is_one_label_line_ultralytics_fills_right():
    """One colony = one line; ultralytics' own label rasterizer gives back the hole and both parts."""
    from ultralytics.data.utils import polygon2mask

    from quadratseg.geometry import PolygonWithHoles, polygons_to_mask

    outer = np.array([[10.0, 10.0], [70.0, 10.0], [70.0, 70.0], [10.0, 70.0]])
    hole = np.array([[30.0, 30.0], [50.0, 30.0], [50.0, 50.0], [30.0, 50.0]])
    islet = np.array([[80.0, 20.0], [95.0, 20.0], [95.0, 40.0], [80.0, 40.0]])
    segment = colony_segment([outer, hole, islet])
    theirs = polygon2mask((100, 100), [segment.ravel()], color=1, downsample_ratio=1).astype(bool)
    truth = polygons_to_mask([PolygonWithHoles(outer, [hole]), islet], (100, 100))
    assert not theirs[40, 40] and theirs[20, 20] and theirs[30, 88]
    # the bridges and edges drawn by ultralytics add a few pixels; nothing of the colony is lost
    assert np.count_nonzero(theirs & truth) == np.count_nonzero(truth)
    assert np.count_nonzero(theirs & truth) / np.count_nonzero(theirs | truth) > 0.9


def test_bad_requests(coral_dataset, tmp_path):
    with pytest.raises(QuadratsegError, match="unknown taxonomy level"):
        write_seg_layout(coral_dataset, tmp_path / "x", level="species")
    with pytest.raises(QuadratsegError, match="overlap"):
        write_seg_layout(coral_dataset, tmp_path / "y", tile=64, overlap=0.95)
    write_seg_layout(coral_dataset, tmp_path / "z")
    with pytest.raises(QuadratsegError, match="already exists"):
        write_seg_layout(coral_dataset, tmp_path / "z")


def test_one_epoch_of_training_from_the_layout(tiny_seg_model):
    from quadratseg.model_card import read_model_card

    weights, _, result = tiny_seg_model
    assert weights.is_file() and result["config"]["model"] == "yolo11n-seg.yaml"
    assert (Path(result["run_dir"]) / "quadratseg_config.json").is_file()
    # the card: trained at 64 px on the synthetic set's 256 px warped quadrats (whole, not tiled),
    # with the colony threshold measured on the val split (None when one epoch outlines no colony)
    card = read_model_card(weights)
    measured = card.pop("conf_measured")
    assert card == {
        "task": "coralseg",
        "imgsz": 64,
        "warp_size": 256,
        "tile": 0,
        "classes": load_taxonomy().classes("main_family"),
        "level": "main_family",
        "conf": measured["conf"],  # None: predictors keep colonies above 0.25
    }
    assert measured["split"] == "val"


def rect(label: str, score: float, x0: int, y0: int, x1: int, y1: int):
    from quadratseg.instances import Instance

    return Instance.from_mask(label, score, np.ones((y1 - y0, x1 - x0), bool), (x0, y0))


def test_merging_joins_only_pieces_cut_by_a_window_border():
    from coral_seg_yolo.predictor import merge_across_windows

    left_window, right_window = (0, 0, 50, 100), (50, 0, 100, 100)
    left = rect("Porites", 0.9, 10, 10, 50, 40)  # cut by the seam at x = 50
    right = rect("Porites", 0.6, 50, 10, 80, 40)
    other = rect("Acropora", 0.8, 50, 12, 70, 30)  # another genus across the seam
    # two abutting Porites colonies inside one window stay two colonies
    abut_a, abut_b = rect("Porites", 0.7, 5, 60, 20, 90), rect("Porites", 0.7, 20, 60, 35, 90)
    merged = merge_across_windows([(left_window, [left, abut_a, abut_b]), (right_window, [right, other])])
    porites = sorted((i for i in merged if i.label == "Porites"), key=lambda i: -i.area)
    assert len(merged) == 4 and len(porites) == 3
    assert porites[0].area == 70 * 30 and porites[0].xyxy == (10, 10, 80, 40) and porites[0].score == 0.9
    assert porites[0].extra["pieces"] == 2 and {p.area for p in porites[1:]} == {15 * 30}


def test_merging_overlapping_windows_keeps_the_whole_union_exactly():
    """A 4000 px colony seen in pieces by four overlapping windows comes back whole (no lost row/column)."""
    from coral_seg_yolo.predictor import merge_across_windows
    from quadratseg.instances import Instance

    size, tile, step = 4000, 2400, 1600
    colony = np.zeros((size, size), bool)
    colony[100:3900, 100:3900] = True
    colony[1900:2100, 1900:2100] = False  # a hole stays a hole
    found = []
    for y in (0, step):
        for x in (0, step):
            window = (x, y, x + tile, y + tile)
            piece = Instance.from_mask("Porites", 0.5 + x / 1e5, colony[y : y + tile, x : x + tile], (x, y))
            found.append((window, [piece]))
    (whole,) = merge_across_windows(found)
    assert whole.xyxy == (100, 100, 3900, 3900) and whole.area == int(colony.sum())
    assert np.array_equal(whole.full_mask((size, size)), colony)


def test_box_masks_follow_ultralytics_own_full_frame_masks(tiny_seg_model):
    """Each instance's box mask agrees with ultralytics' own mask scaled to the image (ops.scale_masks)."""
    from cvat_oracle import iou
    from ultralytics.utils import ops

    from coral_seg_yolo.predictor import SegPredictor

    weights, _, _ = tiny_seg_model
    predictor = SegPredictor(weights, imgsz=64)
    image = (np.random.default_rng(0).random((90, 150, 3)) * 255).astype(np.uint8)
    (result,) = predictor.model.predict(image[..., ::-1].copy(), imgsz=64, conf=0.001, verbose=False)
    ours = predictor._instances(result)
    assert len(ours) == len(result.boxes) > 0
    theirs = (ops.scale_masks(result.masks.data[None].float(), (90, 150))[0] > 0.5).numpy()
    compared = 0
    for inst, mask, box in zip(ours, theirs, result.boxes.xyxy.round().int().tolist(), strict=True):
        x0, y0, x1, y1 = box
        clipped = np.zeros_like(mask)
        clipped[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
        if clipped.sum() >= 50:
            compared += 1
            assert iou(inst.full_mask((150, 90)), clipped) > 0.85
    assert compared > 0


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
            predict(str(weights), str(images), str(out), method=method, tile=128, conf=0.001, imgsz=32)
        )
        doc = json.loads((out / "predictions_coco.json").read_text())
        assert summary["images"] == len(doc["images"]) == len(list((out / "overlays").iterdir()))
        assert {c["name"] for c in doc["categories"]} == set(load_taxonomy().classes("main_family"))
        assert (summary["conf"], summary["conf_source"]) == (0.001, "given")
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
    from quadratseg.model_card import read_model_card

    # the model travels with its card (the handler reads its tile and the pipeline its sizes)
    assert json.loads((nuclio_dir / "model_card.json").read_text()) == read_model_card(weights)
    assert read_model_card(weights)["task"] == "coralseg"
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
    strict = json.dumps({"image": base64.b64encode(image.read_bytes()).decode(), "threshold": 0.99})
    ok, bad, high, again = call_handler(nuclio_dir, [request, "not json", strict, request], "coral_seg_yolo")
    assert ok["status"] == 200 and bad["status"] == 400 and high["status"] == 200
    assert again["body"] == ok["body"], "a request's threshold changed the next request's answer"
    from cvat_oracle import cvat_mask

    from coral_seg_yolo.predictor import SegPredictor
    from quadratseg.images import read_image_rgb

    rgb = read_image_rgb(image)
    frame = (rgb.shape[1], rgb.shape[0])
    expected = SegPredictor(weights).predict(rgb, conf=0.0)
    assert len(ok["body"]) == len(expected) > 0 and len(high["body"]) < len(ok["body"])
    for shape, inst in zip(ok["body"], expected, strict=True):
        assert shape["type"] == "mask" and shape["confidence"].isnumeric() and shape["label"] == inst.label
        assert np.array_equal(cvat_mask(shape, frame), inst.full_mask(frame))
        assert len(shape["points"]) >= 6


def test_the_predictor_keeps_the_colonies_above_its_cards_threshold(tiny_seg_model, tmp_path):
    """A predictor built without a threshold keeps the colonies above the one its model's card
    recommends: a card at 1.0 keeps nothing of a model whose every box is sure, a card at 0.5 keeps
    what 0.5 given keeps, and a threshold given wins over the card."""
    from tiny_models import confident_copy

    from coral_seg_yolo.predictor import SegPredictor
    from quadratseg.model_card import read_model_card, write_model_card

    weights, _, _ = tiny_seg_model
    sure = confident_copy(weights, tmp_path / "best.pt")
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    write_model_card(sure, {**read_model_card(weights), "conf": 1.0})
    strict = SegPredictor(sure, imgsz=64)
    assert (strict.conf, strict.conf_source) == (1.0, "model card")
    assert strict.predict(image) == []
    given = SegPredictor(sure, imgsz=64, conf=0.5).predict(image)
    assert len(given) > 0
    write_model_card(sure, {"conf": 0.5})
    assert [i.score for i in SegPredictor(sure, imgsz=64).predict(image)] == [i.score for i in given]


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


def test_tiled_prediction_takes_its_windows_from_the_model_card(tiny_seg_model, synthetic_set, tmp_path):
    """The model saw 256 px quadrats at 64 px: windows default to 256 px (the same scale), and a
    window fed at another scale than the training one is refused with both scales named."""
    import json

    from coral_seg_yolo.predict import predict

    weights, _, _ = tiny_seg_model
    images = next((synthetic_set / "cvat_exports" / "segmentation" / "images").iterdir())
    summary = json.loads(predict(str(weights), str(images), str(tmp_path / "card"), method="tiling"))
    assert (summary["tile"], summary["imgsz"]) == (256, 64)
    refused = r"--tile 128 at --imgsz 64 .*scale of 0\.5, .*trained at 0\.25 \(256 px"
    with pytest.raises(QuadratsegError, match=refused):
        predict(str(weights), str(images), str(tmp_path / "x"), method="tiling", tile=128)
    summary = json.loads(
        predict(str(weights), str(images), str(tmp_path / "half"), method="overlapping", tile=128, imgsz=32)
    )
    assert (summary["tile"], summary["imgsz"]) == (128, 32)
    summary = json.loads(
        predict(
            str(weights),
            str(images),
            str(tmp_path / "forced"),
            method="tiling",
            tile=128,
            allow_scale_mismatch=True,
        )
    )
    assert (summary["tile"], summary["imgsz"]) == (128, 64)


def test_the_demos_model_learns_from_photos_as_the_grid_removal_stage_leaves_them(
    synthetic_set, coral_dataset, tmp_path
):
    """The demo's train and val photos with a grid are replaced by the chain's grid removal of them
    (from their grid annotations): ultralytics' own dataset then reads those pixels, with the labels
    the layout wrote; test photos stay as exported."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    from coral_seg_yolo.demo import as_the_chain_sees_them
    from grid_inpainting.demo import cleaned_for_training
    from grid_inpainting.evaluate import load_pairs
    from grid_inpainting.inpaint import DEMO_CHAIN_BACKEND, select_backend
    from quadratseg.settings import Settings
    from quadratseg.synth.dataset import load_truth

    truths = load_truth(synthetic_set)
    pairs = load_pairs(synthetic_set)
    cleaned = cleaned_for_training(pairs, truths, select_backend(DEMO_CHAIN_BACKEND, Settings()))
    assert set(cleaned) == {t["name"] for t in truths if t["subset"] in ("train", "val")} != set()
    gridded = {name: image for name, image, _, _ in pairs}
    root = tmp_path / "seg"
    write_seg_layout(coral_dataset, root)
    labels_before = {p.name: p.read_text() for p in root.rglob("labels/*/*.txt")}
    test_images = {p.name: p.read_bytes() for p in (root / "images" / "test").iterdir()}
    assert test_images
    assert as_the_chain_sees_them(coral_dataset, root, cleaned) == len(cleaned)
    assert {p.name: p.read_text() for p in root.rglob("labels/*/*.txt")} == labels_before
    assert {p.name: p.read_bytes() for p in (root / "images" / "test").iterdir()} == test_images
    data = check_det_dataset(str(root / "data.yaml"))
    names = {layout_stem(s): s.cvat_image_name for s in coral_dataset}
    for split in ("train", "val"):
        dataset = YOLODataset(img_path=data[split], data=data, task="segment", imgsz=256, augment=False)
        for k, path in enumerate(dataset.im_files):
            name = names[Path(path).stem]
            image, _, _ = dataset.load_image(k)  # BGR, as ultralytics reads the file
            seen = image[..., ::-1].astype(float)
            assert np.abs(seen - cleaned[name]).mean() < 3  # the cleaned photo (JPEG-stored)
            assert np.abs(seen - gridded[name]).mean() > 3 * np.abs(seen - cleaned[name]).mean()
            assert len(dataset.labels[k]["segments"]) > 0
    wrong = {next(iter(cleaned)): np.zeros((8, 8, 3), np.uint8)}
    with pytest.raises(QuadratsegError, match="to replace"):
        as_the_chain_sees_them(coral_dataset, root, wrong)

    # the MMSeg layout alike, read by MMSeg's registered dataset and its LoadImageFromFile
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import DINOv2_mmseg.plugins  # noqa: F401  (registers CoralSegDataset)
    from DINOv2_mmseg.demo import as_the_chain_sees_them as mmseg_as_the_chain_sees_them
    from DINOv2_mmseg.prepare_data import write_mmseg_layout

    mm_root = tmp_path / "mmseg"
    write_mmseg_layout(coral_dataset, mm_root)
    maps_before = {p.name: p.read_bytes() for p in mm_root.rglob("labels/*.png")}
    assert mmseg_as_the_chain_sees_them(coral_dataset, mm_root, cleaned) == len(cleaned)
    assert {p.name: p.read_bytes() for p in mm_root.rglob("labels/*.png")} == maps_before
    init_default_scope("mmseg")
    for split in ("train", "val"):
        dataset = DATASETS.build(
            {
                "type": "CoralSegDataset",
                "data_root": str(mm_root),
                "data_prefix": {"img_path": f"{split}/data", "seg_map_path": f"{split}/labels"},
                "pipeline": [{"type": "LoadImageFromFile"}],
            }
        )
        assert len(dataset) > 0
        for item in (dataset[i] for i in range(len(dataset))):
            name = names[Path(item["img_path"]).stem]
            seen = item["img"][..., ::-1].astype(float)  # BGR, as MMSeg reads the file
            assert np.abs(seen - cleaned[name]).mean() < 3
            assert np.abs(seen - gridded[name]).mean() > 3 * np.abs(seen - cleaned[name]).mean()
