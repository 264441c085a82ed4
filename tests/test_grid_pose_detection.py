"""grid_pose_detection: pose layout, ordering by template matching, training, evaluation, Nuclio handler."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from nuclio_driver import call_handler

from data_engineering.create_fiftyone_dataset import run_pull
from grid_pose_detection.deploy_as_zip import cvat_spec, deploy_as_zip
from grid_pose_detection.evaluate import evaluate_samples, warp_error
from grid_pose_detection.predictor import PosePrediction, PosePredictor, order_keypoints, skeleton_shape
from grid_pose_detection.prepare_data import write_pose_layout
from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError, TemplateError
from quadratseg.keypoints import grid_template_xy, save_template
from quadratseg.settings import Settings
from quadratseg.yolo_train import build_model, load_experiment, train_yolo


@pytest.fixture(scope="module")
def pose_datasets(synthetic_set, tmp_path_factory):
    """FiftyOne datasets of the synthetic corner and grid exports (deleted afterwards)."""
    import uuid

    import fiftyone as fo

    media = tmp_path_factory.mktemp("media")
    names = {}
    for task, folder in (("gridcorners", "corners"), ("gridpose", "grid")):
        name = f"pose-{folder}-{uuid.uuid4().hex[:6]}"
        run_pull(
            name,
            "xml",
            str(synthetic_set / "cvat_exports" / folder),
            dataset_name=name,
            settings=Settings(media_dir=media),
        )
        names[task] = name
    yield names
    for name in names.values():
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


@pytest.fixture(scope="module")
def tiny_grid_model(pose_datasets, tmp_path_factory):
    """A gridpose model trained for one epoch at 64 px (mechanics, not accuracy)."""
    import fiftyone as fo

    root = tmp_path_factory.mktemp("pose")
    task = get_task("gridpose")
    write_pose_layout(task, fo.load_dataset(pose_datasets["gridpose"]), root / "layout")
    config = load_experiment(
        task.config, {"epochs": 1, "imgsz": 64, "batch": 2, "workers": 0, "plots": False}
    )
    run = train_yolo(config, root / "layout" / "data.yaml", root / "runs", "gridpose")
    return Path(run["best"]), root


def test_pose_layout_keeps_invisible_points_and_writes_flip_idx(pose_datasets, tmp_path):
    import fiftyone as fo

    ds = fo.load_dataset(pose_datasets["gridcorners"])
    sample = ds.first()
    kp = sample.gt_corners.keypoints[0]
    kp.visible = [True, False, True, True]  # TR marked outside in CVAT
    sample.save()
    result = write_pose_layout(get_task("gridcorners"), ds, tmp_path / "layout")
    data = yaml.safe_load((tmp_path / "layout" / "data.yaml").read_text())
    assert (
        data["kpt_shape"] == [4, 3] and data["flip_idx"] == [1, 0, 3, 2] and Path(data["path"]).is_absolute()
    )
    assert sum(result["images"].values()) == ds.count()
    label = (
        next((tmp_path / "layout" / "labels").rglob(f"{Path(sample.filepath).stem}_*.txt"))
        .read_text()
        .split()
    )
    values = np.array(label[5:], dtype=float).reshape(4, 3)
    assert values[:, 2].tolist() == [2, 0, 2, 2]
    assert values[1, 0] > 0  # the invisible corner keeps its coordinates
    w, h = sample.metadata.width, sample.metadata.height
    assert np.allclose(values[:, :2] * [w, h], np.array(kp.points) * [w, h], atol=0.01)
    grid = write_pose_layout(get_task("gridpose"), fo.load_dataset(pose_datasets["gridpose"]), tmp_path / "g")
    assert yaml.safe_load((tmp_path / "g" / "data.yaml").read_text())["kpt_shape"] == [117, 3]
    assert grid["images"]["train"] > 0


def test_order_keypoints_puts_shuffled_detections_in_template_order():
    template = grid_template_xy()
    true = template * [800, 800]
    rng = np.random.default_rng(0)
    order = rng.permutation(117)[:110]  # 7 points not detected
    det = np.vstack([true[order] + rng.normal(0, 1.5, (110, 2)), [[400.0, 5.0]]])  # plus one false point
    scores = np.linspace(0.5, 1, len(det))
    ordered, ordered_scores, match = order_keypoints(det, scores, template, 0.12, (800, 800))
    found = np.isfinite(ordered).all(axis=1)
    assert found.sum() == 110 and match.n_extra == 1
    assert np.abs(ordered[found] - true[found]).max() < 6
    assert (ordered_scores[~found] == 0).all()


def test_skeleton_answer_follows_cvat_contract():
    task = get_task("gridcorners")
    kp = np.array([[10.0, 10.0], [90.0, 12.0], [np.nan, np.nan], [8.0, 88.0]])
    from quadratseg.keypoints import TemplateMatch

    pred = PosePrediction(
        kp,
        np.array([0.9, 0.8, 0.0, 0.7]),
        TemplateMatch(kp, np.array([0, 1, -1, 2]), np.zeros(4), 0),
        3,
        (100, 100),
    )
    shape = skeleton_shape(pred, task)
    assert shape["type"] == "skeleton" and shape["label"] == "quadrat_corner"
    assert [e["label"] for e in shape["elements"]] == ["1", "2", "3", "4"]
    assert [e["outside"] for e in shape["elements"]] == [0, 0, 1, 0]
    assert all(e["confidence"].isnumeric() for e in shape["elements"]) and shape["confidence"] == "80"
    spec = cvat_spec("gridpose")[0]
    assert spec["type"] == "skeleton" and len(spec["sublabels"]) == 117 and "data-node-id" in spec["svg"]


def test_warp_error_is_zero_for_the_true_corners_and_grows_with_a_shift():
    corners = np.array([[100.0, 80.0], [500.0, 90.0], [520.0, 470.0], [90.0, 460.0]])
    assert warp_error(corners, corners, 512) < 1e-6
    shifted = corners + np.array([4.0, 0.0])
    assert 3 < warp_error(corners, shifted, 512) < 8


def test_training_prediction_and_evaluation_mechanics(tiny_grid_model, pose_datasets):
    import fiftyone as fo

    weights, _ = tiny_grid_model
    assert weights.is_file() and (weights.parent.parent / "quadratseg_config.json").is_file()
    config = json.loads((weights.parent.parent / "quadratseg_config.json").read_text())
    assert config["model"] == "yolo11n-pose.yaml" and config["imgsz"] == 64
    predictor = PosePredictor(weights, get_task("gridpose"), kpt_conf=0.0, imgsz=64)
    result = evaluate_samples(predictor, fo.load_dataset(pose_datasets["gridpose"]).limit(2))
    assert result["images"] == 2 and 0 <= result["matching_success_rate"] <= 1
    assert len(result["per_point_mean_px_error"]) == 117


def test_resume_and_bad_model_references(tiny_grid_model, tmp_path):
    _, root = tiny_grid_model
    with pytest.raises(QuadratsegError, match="nothing to resume"):
        train_yolo(
            {"model": "yolo11n-pose.yaml"}, root / "layout" / "data.yaml", tmp_path, "none", resume=True
        )
    with pytest.raises(QuadratsegError, match="do not exist locally"):
        build_model("yolo11n-pose.pt")  # a hub name: refused, never downloaded
    with pytest.raises(QuadratsegError, match="unknown ultralytics argument"):
        load_experiment(get_task("gridpose").config, {"epoch": 3})


@pytest.mark.slow
def test_an_interrupted_training_resumes_where_it_stopped(pose_datasets, tmp_path):
    import csv

    import fiftyone as fo

    class KilledError(Exception):
        pass

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise KilledError  # after last.pt of epoch 1 was saved, as a killed job would

    task = get_task("gridcorners")
    write_pose_layout(task, fo.load_dataset(pose_datasets["gridcorners"]), tmp_path / "layout")
    config = load_experiment(
        task.config, {"epochs": 2, "imgsz": 64, "batch": 2, "workers": 0, "plots": False}
    )
    data = tmp_path / "layout" / "data.yaml"
    with pytest.raises(KilledError):
        train_yolo(
            config, data, tmp_path / "runs", "corners", callbacks={"on_fit_epoch_end": stop_after_first_epoch}
        )
    rows = list(csv.DictReader((tmp_path / "runs" / "corners" / "results.csv").open()))
    assert len(rows) == 1
    run = train_yolo(config, data, tmp_path / "runs", "corners", resume=True)
    rows_after = list(csv.DictReader((tmp_path / "runs" / "corners" / "results.csv").open()))
    assert [int(float(r["epoch"])) for r in rows_after] == [1, 2]  # continued at epoch 2, not restarted
    assert rows_after[0] == rows[0] and Path(run["best"]).is_file()


def test_nuclio_zip_and_handler(tiny_grid_model, tmp_path, synthetic_set, shared_data):
    weights, _ = tiny_grid_model
    template = save_template(grid_template_xy(), tmp_path / "kp_template_grid.npy")
    bad = save_template(grid_template_xy()[:4], tmp_path / "bad.npy")
    with pytest.raises(TemplateError, match="expected 117"):
        deploy_as_zip("pth-yolo-gridpose", str(weights), str(bad), output=str(tmp_path / "bad"))
    zip_path = Path(
        deploy_as_zip("pth-yolo-gridpose", str(weights), str(template), output=str(tmp_path / "out"))
    )
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "unzipped")
        names = set(archive.namelist())
    assert {"nuclio/best.pt", "nuclio/kp_template.npy", "nuclio/main.py", "nuclio/function.yaml"} <= names
    ours = yaml.safe_load((tmp_path / "unzipped" / "nuclio" / "function.yaml").read_text())
    real = yaml.safe_load(
        (shared_data / "cvat/serverless/pytorch/mmpose/hrnet32/nuclio/function.yaml").read_text()
    )
    spec, real_spec = (
        json.loads(ours["metadata"]["annotations"]["spec"]),
        json.loads(real["metadata"]["annotations"]["spec"]),
    )
    assert set(spec[0]) >= set(real_spec[0]) and set(spec[0]["sublabels"][0]) >= set(
        real_spec[0]["sublabels"][0]
    )
    assert ours["metadata"]["annotations"]["type"] == real["metadata"]["annotations"]["type"] == "detector"
    from quadratseg.synth import load_truth
    from quadratseg.synth.dataset import export_image_path

    truth = load_truth(synthetic_set)[0]
    image_path = export_image_path(synthetic_set / "cvat_exports" / "grid", truth["subset"], truth["name"])
    request = json.dumps({"image": base64.b64encode(image_path.read_bytes()).decode(), "threshold": 0.0})
    nuclio_dir = tmp_path / "unzipped" / "nuclio"
    ok, bad = call_handler(
        nuclio_dir, [request, "{}"], "grid_pose_detection", {"QUADRATSEG_POSE_TASK": "gridpose"}
    )
    assert ok["status"] == 200 and bad["status"] == 400
    for shape in ok["body"]:  # an untrained model may find nothing: then the answer is []
        assert shape["type"] == "skeleton" and len(shape["elements"]) == 117
        assert all(e["outside"] in (0, 1) and len(e["points"]) == 2 for e in shape["elements"])


def test_train_args_accept_json_and_fire_dicts():
    from quadratseg.yolo_train import parse_train_args

    assert parse_train_args('{"lr0": 0.01, "plots": false}') == {"lr0": 0.01, "plots": False}
    assert parse_train_args({"optimizer": "SGD", "plots": "false", "cache": "null"}) == {
        "optimizer": "SGD",
        "plots": False,
        "cache": None,
    }
    with pytest.raises(QuadratsegError, match="JSON object"):
        parse_train_args("[1, 2]")
