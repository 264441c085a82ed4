"""Batch predict policy: a bad image is recorded and the others go on (exit 3), outputs keyed by relative
path (a.jpg and a.png apart), sub-folders searched, outputs readable by others, images read upright."""

from __future__ import annotations

import csv
import json
import os
import stat
from types import SimpleNamespace

import numpy as np
import pytest
from exif_photos import HEIGHT, WIDTH, close_to_upright, jpeg_bytes

from quadratseg.atomic import atomic_output_dir
from quadratseg.batch import FAILED_EXIT_CODE, BatchFailedError, BatchItem, batch_items, run_batch

KEYS = ["a.jpg", "a.png", "bad.jpg", "deep/x/o8.jpg", "site/o6.jpg"]


@pytest.fixture
def images(tmp_path):
    import cv2

    root = tmp_path / "images"
    (root / "site").mkdir(parents=True)
    (root / "deep" / "x").mkdir(parents=True)
    (root / "site" / "o6.jpg").write_bytes(jpeg_bytes(6))
    (root / "deep" / "x" / "o8.jpg").write_bytes(jpeg_bytes(8))
    (root / "a.jpg").write_bytes(jpeg_bytes(1))
    cv2.imwrite(str(root / "a.png"), np.zeros((20, 30, 3), np.uint8))
    (root / "bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    return root


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _readable_by_others(root):
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IROTH, (path, oct(mode))
        if path.is_dir():
            assert mode & stat.S_IXOTH, (path, oct(mode))


def _failures(out):
    with (out / "failures.csv").open() as f:
        return list(csv.DictReader(f))


def test_batch_items_and_run_batch_record_failures(images):
    items = batch_items(images)
    assert [i.key for i in items] == KEYS
    seen = []

    def fn(item: BatchItem) -> None:
        from quadratseg.images import read_image_rgb

        seen.append((item.key, read_image_rgb(item.path).shape))

    report = run_batch(items, fn)
    assert report.total == 5 and report.done == 4
    ((key, path, reason),) = report.failures
    assert key == "bad.jpg" and path.endswith("bad.jpg") and "bad.jpg" in reason
    assert dict(seen)["site/o6.jpg"] == (HEIGHT, WIDTH, 3)
    with pytest.raises(BatchFailedError, match="1 of 5 images failed") as err:
        report.raise_if_failed("out", "{}")
    assert err.value.exit_code == FAILED_EXIT_CODE == 3 and err.value.summary == "{}"


def test_atomic_output_dir_honours_the_umask(tmp_path, umask_022):
    with atomic_output_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.txt").write_text("x")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    _readable_by_others(tmp_path / "out")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_cli_exits_3_after_writing_when_some_images_failed(capsys):
    from quadratseg.cli import run

    def batch() -> str:
        raise BatchFailedError([("bad.jpg", "/x/bad.jpg", "cannot read image")], 4, "out", '{"failed": 1}')

    with pytest.raises(SystemExit) as exit_info:
        run(batch, name="batch", command=[])
    assert exit_info.value.code == 3
    assert '"failed": 1' in capsys.readouterr().out


def test_yolo_predict_policy(images, tmp_path, monkeypatch, umask_022):
    import coral_seg_yolo.predict as module

    shapes = {}

    class FakeSegPredictor:
        def __init__(self, *args, **kwargs):
            self.names, self.imgsz = {0: "Acropora"}, 640
            self.conf, self.conf_source = 0.25, "default"

        def predict(self, rgb, *args, **kwargs):
            shapes[rgb.shape] = close_to_upright(rgb) if rgb.shape == (HEIGHT, WIDTH, 3) else None
            return []

    monkeypatch.setattr(module, "SegPredictor", FakeSegPredictor)
    out = tmp_path / "yolo_out"
    with pytest.raises(BatchFailedError) as err:
        module.predict("w.pt", str(images), str(out))
    summary = json.loads(err.value.summary)
    assert summary["images"] == 4 and summary["failed"] == 1
    assert [r["key"] for r in _failures(out)] == ["bad.jpg"]
    assert "bad.jpg" in _failures(out)[0]["reason"]
    coco = json.loads((out / "predictions_coco.json").read_text())
    by_name = {im["file_name"]: im for im in coco["images"]}
    assert sorted(by_name) == ["a.jpg", "a.png", "deep/x/o8.jpg", "site/o6.jpg"]
    assert (by_name["site/o6.jpg"]["width"], by_name["site/o6.jpg"]["height"]) == (WIDTH, HEIGHT)
    assert shapes[(HEIGHT, WIDTH, 3)] is True  # the model saw the upright picture
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.jpg"))
    assert overlays == ["a.jpg.jpg", "a.png.jpg", "deep/x/o8.jpg.jpg", "site/o6.jpg.jpg"]
    _readable_by_others(out)


def test_pose_predict_policy(images, tmp_path, monkeypatch):
    import grid_pose_detection.predict as module

    class FakePosePredictor:
        def __init__(self, *args, **kwargs):
            pass

        def predict(self, batch):
            (rgb,) = batch
            h, w = rgb.shape[:2]
            kp = np.array([[1, 1], [w - 2, 1], [w - 2, h - 2], [1, h - 2]], float)
            return [
                SimpleNamespace(
                    frame_size=(w, h),
                    keypoints_xy=kp,
                    delivered_xy=kp,
                    no_frame="",
                    visible=np.ones(4, bool),
                    match=SimpleNamespace(n_extra=0),
                    n_raw=1,
                    warp_error=None,
                    homography=np.eye(3),
                    refined=np.ones(4, bool),
                    filled=np.zeros(4, bool),
                    no_grid="",
                )
            ]

        def warp(self, rgb, pred):
            return rgb

    monkeypatch.setattr(module, "PosePredictor", FakePosePredictor)
    out = tmp_path / "pose_out"
    with pytest.raises(BatchFailedError):
        module.predict("gridcorners", "w.pt", str(images), str(out))
    assert [r["key"] for r in _failures(out)] == ["bad.jpg"]
    labels = sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.txt"))
    assert labels == ["a.jpg.txt", "a.png.txt", "deep/x/o8.jpg.txt", "site/o6.jpg.txt"]
    warped = sorted(p.relative_to(out / "warped").as_posix() for p in (out / "warped").rglob("*.*"))
    assert warped == ["a.jpg", "a.png", "deep/x/o8.jpg", "site/o6.jpg"]
    assert sorted(json.loads((out / "homographies.json").read_text())) == warped
    report = {r["image"]: r for r in json.loads((out / "report.json").read_text())}
    assert "error" in report["bad.jpg"] and report["site/o6.jpg"]["found"] == 4
    doc = json.loads((out / "keypoints_coco.json").read_text())
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in doc["images"]}
    assert sizes["site/o6.jpg"] == sizes["deep/x/o8.jpg"] == (WIDTH, HEIGHT)


def test_mmseg_predict_policy(images, tmp_path, monkeypatch):
    """DINOv2's predict writes the chain's cover.csv (quadratseg.cover_table: long format, the block
    interval from the class probabilities, the whole frame observed) and colonies.csv; before: a wide
    table of the class-map shares under an ``image`` column."""
    import DINOv2_mmseg.predict as module
    from DINOv2_mmseg.sam_refine import RefineConfig
    from quadratseg.cover_table import COLONY_COLUMNS, COVER_COLUMNS

    seen = []

    def probs_of(rgb):  # Acropora (0.9) on the left quarter of the image
        seen.append(rgb.shape)
        h, w = rgb.shape[:2]
        probs = np.zeros((2, h, w), np.float32)
        probs[0], probs[1] = 0.9, 0.1
        probs[0, :, : w // 4], probs[1, :, : w // 4] = 0.1, 0.9
        return probs

    class FakePipeline:
        def __init__(self, *args, **kwargs):
            self.classes = ["background", "Acropora"]
            self.segmenter = SimpleNamespace(palette=[[0, 0, 0], [255, 0, 0]], predict_probs=probs_of)
            self.sam_predictor, self.refine = None, RefineConfig()
            self.refinement = "none"
            self.sam_report = None

    monkeypatch.setattr(module, "CoralPipeline", FakePipeline)
    out = tmp_path / "mmseg_out"
    with pytest.raises(BatchFailedError) as err:
        module.predict("c.py", "c.pth", str(images), str(out), sam_weights="none")
    assert json.loads(err.value.summary)["failed"] == 1
    assert [r["key"] for r in _failures(out)] == ["bad.jpg"]
    semantic = sorted(p.relative_to(out / "semantic").as_posix() for p in (out / "semantic").rglob("*.png"))
    assert semantic == ["a.jpg.png", "a.png.png", "deep/x/o8.jpg.png", "site/o6.jpg.png"]
    with (out / "cover.csv").open() as f:
        assert next(csv.reader(f)) == COVER_COLUMNS
    with (out / "cover.csv").open() as f:
        rows = list(csv.DictReader(f))
    finest = [r for r in rows if r["level"] == "finegrained"]
    assert [r["photo"] for r in finest] == ["a.jpg", "a.png", "deep/x/o8.jpg", "site/o6.jpg"]
    assert {r["level"] for r in rows} == {"finegrained", "extended", "main_family", "agnostic"}
    small = next(r for r in finest if r["photo"] == "a.png")  # 30 x 20: 7 columns of 30
    assert (float(small["percent"]), float(small["observed_share"])) == (round(100 * 7 / 30, 4), 1.0)
    assert small["pixels"] == str(7 * 20) and small["observed_pixels"] == str(30 * 20)
    assert small["method"] == "class-probability-blocks"
    assert float(small["low"]) < float(small["percent"]) < float(small["high"])
    with (out / "colonies.csv").open() as f:
        assert next(csv.reader(f)) == COLONY_COLUMNS
    with (out / "colonies.csv").open() as f:
        colonies = list(csv.DictReader(f))
    assert [(c["photo"], c["label"], c["area_px"]) for c in colonies if c["photo"] == "a.png"] == [
        ("a.png", "Acropora", str(7 * 20))
    ]
    assert seen.count((HEIGHT, WIDTH, 3)) == 3
    assert json.loads((out / "summary.json").read_text())["failed"] == 1


def test_mmseg_predict_leaves_no_table_row_of_a_photo_that_failed(images, tmp_path, monkeypatch):
    """A photo that fails after its cover was measured (here its overlay) has no row in cover.csv or
    colonies.csv (before: its rows were kept beside its failures.csv line)."""
    import DINOv2_mmseg.predict as module
    from DINOv2_mmseg.sam_refine import RefineConfig

    def probs_of(rgb):
        h, w = rgb.shape[:2]
        probs = np.zeros((2, h, w), np.float32)
        probs[0], probs[1] = 0.1, 0.9
        return probs

    class FakePipeline:
        def __init__(self, *args, **kwargs):
            self.classes = ["background", "Acropora"]
            self.segmenter = SimpleNamespace(palette=[[0, 0, 0], [255, 0, 0]], predict_probs=probs_of)
            self.sam_predictor, self.refine = None, RefineConfig()
            self.refinement = "none"
            self.sam_report = None

    overlay = module.semantic_overlay

    def failing_overlay(rgb, classes_map, palette):
        if rgb.shape[:2] == (20, 30):  # a.png
            raise OSError("disk full")
        return overlay(rgb, classes_map, palette)

    monkeypatch.setattr(module, "CoralPipeline", FakePipeline)
    monkeypatch.setattr(module, "semantic_overlay", failing_overlay)
    out = tmp_path / "out"
    with pytest.raises(BatchFailedError):
        module.predict("c.py", "c.pth", str(images), str(out), sam_weights="none")
    assert sorted(r["key"] for r in _failures(out)) == ["a.png", "bad.jpg"]
    for table in ("cover.csv", "colonies.csv"):
        with (out / table).open() as f:
            photos = sorted({r["photo"] for r in csv.DictReader(f)})
        assert photos == ["a.jpg", "deep/x/o8.jpg", "site/o6.jpg"], table


def test_all_good_images_return_normally(images, tmp_path, monkeypatch):
    import coral_seg_yolo.predict as module

    (images / "bad.jpg").unlink()
    monkeypatch.setattr(
        module,
        "SegPredictor",
        type(
            "P",
            (),
            {
                "names": {0: "Acropora"},
                "imgsz": 640,
                "conf": 0.25,
                "conf_source": "default",
                "__init__": lambda *a, **k: None,
                "predict": lambda *a: [],
            },
        ),
    )
    summary = json.loads(module.predict("w.pt", str(images), str(tmp_path / "ok")))
    assert summary["images"] == 4 and summary["failed"] == 0
    assert _failures(tmp_path / "ok") == []
