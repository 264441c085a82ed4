"""grid_pose_detection: pose layout, ordering by template matching, training, evaluation, Nuclio handler."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from nuclio_driver import call_handler
from tiny_models import confident_copy

from grid_pose_detection.deploy_as_zip import cvat_spec, deploy_as_zip
from grid_pose_detection.evaluate import evaluate_samples, warp_error
from grid_pose_detection.predictor import PosePrediction, PosePredictor, order_keypoints, skeleton_shape
from grid_pose_detection.prepare_data import write_pose_layout
from grid_pose_detection.tasks import get_task
from quadratseg.errors import QuadratsegError, TemplateError
from quadratseg.keypoints import grid_template_xy, save_template
from quadratseg.yolo_train import build_model, load_experiment, train_yolo


def test_instance_layout_keeps_invisible_points_and_writes_flip_idx(pose_datasets, tmp_path):
    import fiftyone as fo

    ds = fo.load_dataset(pose_datasets["gridcorners"]).clone()  # the session's dataset stays as it is
    sample = ds.first()
    kp = sample.gt_corners.keypoints[0]
    annotated = [tuple(p) for p in kp.points]
    nan = (float("nan"), float("nan"))
    kp.points = [annotated[0], nan, *annotated[2:]]  # TR marked outside in CVAT, as the pull stores it
    kp.cvat_outside_points = [nan, annotated[1], nan, nan]
    sample.save()
    result = write_pose_layout(get_task("gridcorners"), ds, tmp_path / "layout", layout="instance")
    data = yaml.safe_load((tmp_path / "layout" / "data.yaml").read_text())
    assert (
        data["kpt_shape"] == [4, 3] and data["flip_idx"] == [1, 0, 3, 2] and Path(data["path"]).is_absolute()
    )
    assert data["kpt_oks_sigmas"] == [0.05] * 4
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
    assert np.allclose(values[:, :2] * [w, h], np.array(annotated) * [w, h], atol=0.01)
    grid = write_pose_layout(
        get_task("gridpose"), fo.load_dataset(pose_datasets["gridpose"]), tmp_path / "g", layout="instance"
    )
    assert yaml.safe_load((tmp_path / "g" / "data.yaml").read_text())["kpt_shape"] == [117, 3]
    assert grid["images"]["train"] > 0
    with pytest.raises(QuadratsegError, match="unknown layout"):
        write_pose_layout(get_task("gridpose"), ds, tmp_path / "x", layout="one")


def test_photos_annotated_with_no_grid_become_background_images_when_asked(pose_datasets, tmp_path):
    """A frame without a grid (diagonal strings, none) is annotated with no points. Skipped, the grid
    model never sees one and finds a grid on every such photo (the varied demo's grid model: none of
    8 gridless test photos answered no grid); with ``backgrounds`` it is an empty label file, which
    ultralytics' own label checker reads as a background image, counted apart."""
    import fiftyone as fo
    from ultralytics.data.utils import verify_image_label

    task = get_task("gridpose")
    ds = fo.load_dataset(pose_datasets["gridpose"]).clone()
    sample = ds.match_tags("train").first()
    sample[task.field] = None  # annotated, nothing there
    sample.save()
    plain = write_pose_layout(task, ds, tmp_path / "plain")
    assert plain["skipped"] == 1 and plain["backgrounds"] == 0
    sample.metadata = None  # never measured: an image with no points needs no size to be skipped
    sample.save()
    assert write_pose_layout(task, ds, tmp_path / "unmeasured")["skipped"] == 1
    with_backgrounds = write_pose_layout(task, ds, tmp_path / "bg", backgrounds=True)
    assert with_backgrounds["skipped"] == 0 and with_backgrounds["backgrounds"] == 1
    assert sum(with_backgrounds["images"].values()) == sum(plain["images"].values()) + 1
    image = next((tmp_path / "bg" / "images" / "train").glob(f"{Path(sample.filepath).stem}_*"))
    label = tmp_path / "bg" / "labels" / "train" / f"{image.stem}.txt"
    checked = verify_image_label((str(image), str(label), "", True, 1, 1, 3, False))
    labels, empty, message = checked[1], checked[7], checked[-1]
    assert message == "" and labels.shape == (0, 5) and empty == 1


def test_the_prepare_data_cli_writes_background_images_with_its_flag(pose_datasets, tmp_path):
    """``python -m grid_pose_detection.prepare_data gridpose DATASET OUT --backgrounds`` (the CLI's
    function): the photo annotated with no grid is in the layout and counted; without the flag, not."""
    import json
    import uuid

    import fiftyone as fo

    from grid_pose_detection.prepare_data import prepare_data

    task = get_task("gridpose")
    ds = fo.load_dataset(pose_datasets["gridpose"]).clone(f"bg-cli-{uuid.uuid4().hex[:6]}")
    try:
        sample = ds.match_tags("train").first()
        sample[task.field] = None
        sample.save()
        marked = json.loads(prepare_data("gridpose", ds.name, str(tmp_path / "bg"), backgrounds=True))
        plain = json.loads(prepare_data("gridpose", ds.name, str(tmp_path / "plain")))
        assert (marked["backgrounds"], plain["backgrounds"], plain["skipped"]) == (1, 0, 1)
        assert marked["images"]["train"] == plain["images"]["train"] + 1
    finally:
        ds.delete()


@pytest.mark.parametrize("layout", ["points", "instance"])
def test_keypoints_all_missing_are_no_points_and_a_split_of_backgrounds_only_is_refused(
    pose_datasets, tmp_path, layout
):
    """A keypoint whose points are all missing is an image with no points (skipped, or a background
    image when asked), in both layouts (before: a label file of one blank line in ``points``, a crash
    of the whole layout in ``instance``). A train split holding background images alone would stop
    ultralytics at its start ("No labels found"): it is refused before anything is written."""
    import fiftyone as fo

    task = get_task("gridcorners")
    ds = fo.load_dataset(pose_datasets["gridcorners"]).clone()
    sample = ds.match_tags("train").first()
    sample[task.field].keypoints[0].points = [(float("nan"), float("nan"))] * 4
    sample.save()
    plain = write_pose_layout(task, ds, tmp_path / "plain", layout=layout)
    assert plain["skipped"] == 1 and plain["backgrounds"] == 0
    marked = write_pose_layout(task, ds, tmp_path / "bg", layout=layout, backgrounds=True)
    assert marked["skipped"] == 0 and marked["backgrounds"] == 1
    for other in ds.match_tags("train"):
        other[task.field] = None
        other.save()
    with pytest.raises(QuadratsegError, match="train"):
        write_pose_layout(task, ds, tmp_path / "none", layout=layout, backgrounds=True)
    assert not (tmp_path / "none").exists()


def test_a_background_image_counts_as_completed_when_nothing_is_found():
    """Choosing a model's box threshold on val: an image with no points (a frame without a grid) is
    completed when the model finds nothing there, and failed by any point it finds."""
    from grid_pose_detection.card import image_success

    none = np.zeros((0, 2))
    assert image_success(np.full((4, 2), np.nan), none)
    assert not image_success(np.array([[10.0, 10.0]]), none)
    truth = np.array([[0.0, 0.0], [100.0, 0.0]])
    assert image_success(truth.copy(), truth) and not image_success(np.full((2, 2), np.nan), truth)


def test_points_layout_is_one_object_per_keypoint_read_back_by_ultralytics(pose_datasets, tmp_path):
    """Each keypoint is one object: a box centred on it; ultralytics' own loader reads them back."""
    import fiftyone as fo
    from ultralytics.data.utils import verify_image_label

    task = get_task("gridpose")
    ds = fo.load_dataset(pose_datasets["gridpose"])
    write_pose_layout(task, ds, tmp_path / "layout")
    data = yaml.safe_load((tmp_path / "layout" / "data.yaml").read_text())
    assert data["kpt_shape"] == [1, 3] and data["flip_idx"] == [0] and data["layout"] == "points"
    assert data["kpt_oks_sigmas"] == [0.3]
    sample = ds.match_tags("train").first()
    label = next((tmp_path / "layout" / "labels").rglob(f"{Path(sample.filepath).stem}_*.txt"))
    image = next((tmp_path / "layout" / "images").rglob(f"{label.stem}.*"))
    # ultralytics' label checker: (im_file, lb, shape, segments, keypoint, nm, nf, ne, nc, msg)
    checked = verify_image_label((str(image), str(label), "", True, 1, 1, 3, False))
    labels, keypoints, message = checked[1], checked[4], checked[-1]
    assert message == "" and labels.shape == (117, 5) and keypoints.shape == (117, 1, 3)
    w, h = sample.metadata.width, sample.metadata.height
    truth = np.array(sample.gt_grid.keypoints[0].points) * [w, h]
    assert np.allclose(keypoints[:, 0, :2] * [w, h], truth, atol=0.01)
    assert np.allclose(labels[:, 1:3] * [w, h], truth, atol=0.01)  # boxes centred on the points
    assert np.allclose(labels[:, 3] * w, task.point_box_share * w, rtol=0.05)  # warped image = quadrat


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


class HandMadePredictor:
    """Returns, for each image of the samples, its true keypoints transformed by ``change``."""

    def __init__(self, task, samples, change):
        import cv2

        from quadratseg.fiftyone_io import keypoints_to_pixels

        self.task, self.answers, self.warp_size = task, {}, (1920, 1920)
        for sample in samples:
            image = cv2.cvtColor(cv2.imread(sample.filepath), cv2.COLOR_BGR2RGB)
            # every annotated point, hidden ones included (a model that also found the hidden corner)
            size = (image.shape[1], image.shape[0])
            truth, _ = keypoints_to_pixels(sample[task.field].keypoints[0], size, with_outside=True)
            self.answers[image.tobytes()] = change(truth)

    def predict(self, images, refine=None):
        from quadratseg.keypoints import TemplateMatch

        out = []
        for image in images:
            kp = self.answers[image.tobytes()]
            n = len(kp)
            match = TemplateMatch(kp, np.arange(n), np.zeros(n), 0)
            out.append(PosePrediction(kp, np.ones(n), match, n, (image.shape[1], image.shape[0])))
        return out


def test_quadrat_side_slot_assignment_and_pck_on_analytic_points():
    from grid_pose_detection.evaluate import pck, quadrat_side_px, slot_assignment

    template = grid_template_xy()
    truth = template * 300 + [50.0, 20.0]  # a 300 px quadrat
    visible = np.ones(117, bool)
    assert quadrat_side_px(truth, visible, template) == pytest.approx(300)
    corners = np.array([[10.0, 10.0], [410.0, 10.0], [410.0, 310.0], [10.0, 310.0]])
    assert quadrat_side_px(corners, np.ones(4, bool), get_task("gridcorners").template()) == pytest.approx(
        350
    )
    assert quadrat_side_px(corners, np.array([1, 1, 1, 0], bool), get_task("gridcorners").template()) is None
    # within 1 % of 300 px is 3 px: points moved 2.9 px pass, 3.1 px fail, missing ones fail
    moved = truth + np.where(np.arange(117)[:, None] % 2 == 0, [2.9, 0.0], [0.0, 3.1])
    moved[:10] = np.nan  # 5 even and 5 odd points missing
    assert pck(moved, truth, visible, 300) == (59 - 5, 117)
    assert pck(moved, truth, visible & (np.arange(117) >= 10), 300) == (
        54,
        107,
    )  # invisible truth: not counted
    found, right = slot_assignment(moved, truth, visible)
    assert found.sum() == right.sum() == 107
    swapped = truth.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # right positions, wrong slots
    found, right = slot_assignment(swapped, truth, visible)
    assert found.all() and right.sum() == 115 and not right[0] and not right[1]
    shifted = truth + template[1] * 300 - template[0] * 300  # the whole grid one column over
    assert slot_assignment(shifted, truth, visible)[1].sum() == 0


@pytest.mark.parametrize("task_name", ["gridcorners", "gridpose"])
def test_a_permuted_prediction_is_a_failure_and_pck_counts_points(pose_datasets, task_name):
    import fiftyone as fo

    from grid_pose_detection.evaluate import quadrat_side_px

    task = get_task(task_name)
    samples = fo.load_dataset(pose_datasets[task_name])
    flip = np.array(task.flip_index)  # the left-right mirror of the template order
    perfect = evaluate_samples(HandMadePredictor(task, samples, lambda t: t), samples)
    assert perfect["images"] == samples.count() == 6
    assert perfect["matching_success_rate"] == perfect["complete_rate"] == perfect["pck_1pct"] == 1.0
    mirrored = evaluate_samples(HandMadePredictor(task, samples, lambda t: t[flip]), samples)
    assert mirrored["complete_rate"] == 1.0  # every point found, at a true point's place ...
    assert mirrored["matching_success_rate"] == 0.0  # ... but in the mirror slot: a failure
    fixed = int((flip == np.arange(task.n_points)).sum())  # the grid's middle column mirrors onto itself
    assert fixed == (9 if task_name == "gridpose" else 0)
    assert mirrored["pck_1pct"] == pytest.approx(fixed / task.n_points, abs=1e-4)

    def half_far(truth):  # every other point 0.2 % of the quadrat side off, the others 2 %
        side = quadrat_side_px(truth, np.ones(len(truth), bool), task.template())
        step = np.where(np.arange(len(truth))[:, None] % 2 == 0, 0.002, 0.02) * side
        return truth + step * [1.0, 0.0]

    if task_name == "gridpose":
        shaken = evaluate_samples(HandMadePredictor(task, samples, half_far), samples)
        assert shaken["matching_success_rate"] == 1.0
        assert shaken["pck_1pct"] == pytest.approx(59 / 117, abs=1e-4)


def test_training_prediction_and_evaluation_mechanics(tiny_grid_model, pose_datasets, tmp_path):
    import fiftyone as fo

    weights, _ = tiny_grid_model
    assert weights.is_file() and (weights.parent.parent / "quadratseg_config.json").is_file()
    config = json.loads((weights.parent.parent / "quadratseg_config.json").read_text())
    assert config["model"] == "yolo11n-pose.yaml" and config["imgsz"] == 64
    # boxes made confident (tests/tiny_models.py): a 1-epoch model finds nothing, and an evaluation of
    # nothing tests nothing
    predictor = PosePredictor(
        confident_copy(weights, tmp_path / "best.pt"), get_task("gridpose"), kpt_conf=0.0
    )
    samples = fo.load_dataset(pose_datasets["gridpose"]).limit(2)
    result = evaluate_samples(predictor, samples)
    assert result["images"] == 2
    # the figures are those of the predictions themselves: the same two photos predicted here
    from quadratseg.fiftyone_io import keypoints_to_pixels
    from quadratseg.images import read_image_rgb

    found, errors = 0, []
    for sample in samples:
        image = read_image_rgb(sample.filepath)
        (pred,) = predictor.predict([image])
        truth, _ = keypoints_to_pixels(sample.gt_grid.keypoints[0], (image.shape[1], image.shape[0]))
        found += int(pred.visible.sum())
        errors += np.linalg.norm(pred.keypoints_xy - truth, axis=1)[pred.visible].tolist()
    assert found > 0 and result["found_share"] == round(found / 234, 4)
    assert result["mean_px_error"] == (round(float(np.mean(errors)), 3) if errors else None)
    per_point = result["per_point_mean_px_error"]
    assert len(per_point) == 117 and sum(v is not None for v in per_point) <= found


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
            config,
            data,
            tmp_path / "runs",
            "corners",
            callbacks={"on_fit_epoch_end": stop_after_first_epoch},
            from_scratch=True,
        )
    rows = list(csv.DictReader((tmp_path / "runs" / "corners" / "results.csv").open()))
    assert len(rows) == 1
    run = train_yolo(config, data, tmp_path / "runs", "corners", resume=True)
    rows_after = list(csv.DictReader((tmp_path / "runs" / "corners" / "results.csv").open()))
    assert [int(float(r["epoch"])) for r in rows_after] == [1, 2]  # continued at epoch 2, not restarted
    # the record still says how the run began, and that it was resumed
    assert run["config"]["from_scratch"] is True and run["config"]["pretrained"] is None
    assert run["config"]["resumed_from"] == str(tmp_path / "runs" / "corners" / "weights" / "last.pt")
    with pytest.raises(QuadratsegError, match="drop --from-scratch"):
        train_yolo(config, data, tmp_path / "runs", "corners", resume=True, from_scratch=True)
    assert rows_after[0] == rows[0] and Path(run["best"]).is_file()


def test_nuclio_zip_and_handler(tiny_grid_model, tmp_path, synthetic_set, shared_data):
    weights, _ = tiny_grid_model
    weights = confident_copy(weights, tmp_path / "best.pt")
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
    assert len(ok["body"]) == 1  # one skeleton per image
    (shape,) = ok["body"]
    assert shape["type"] == "skeleton" and len(shape["elements"]) == 117
    assert all(e["outside"] in (0, 1) and len(e["points"]) == 2 for e in shape["elements"])
    inside = [e for e in shape["elements"] if e["outside"] == 0]
    assert inside and all(0 <= e["points"][0] <= truth["warped_size"][0] for e in inside)
    # the same model as the handler, in this process: the same points in the same slots
    (expected,) = PosePredictor(weights, get_task("gridpose"), kpt_conf=0.0).predict(
        [cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)]
    )
    assert [e["outside"] == 0 for e in shape["elements"]] == expected.visible.tolist()
    assert np.allclose([e["points"] for e in inside], expected.keypoints_xy[expected.visible], atol=0.5)
    # the card and its template travel in the zip and the handler reads them: the confident copy's boxes
    # score 0.99995, so a card asking for 1.0 finds nothing, and --box-conf given overrides the card
    from quadratseg.model_card import write_model_card

    (tmp_path / "carded").mkdir()
    carded = confident_copy(tiny_grid_model[0], tmp_path / "carded" / "best.pt")
    fitted = grid_template_xy() * 0.98 + 0.01
    save_template(fitted, tmp_path / "carded" / "fitted.npy")
    write_model_card(carded, {"task": "gridpose", "conf": 1.0, "template": "fitted.npy", "warp_size": 256})
    bodies = {}
    for name, box_conf in (("strict", None), ("given", 0.25)):
        zipped = deploy_as_zip(
            "pth-yolo-gridpose", str(carded), output=str(tmp_path / name), box_conf=box_conf
        )
        with zipfile.ZipFile(zipped) as archive:
            archive.extractall(tmp_path / f"{name}-unzipped")
        folder = tmp_path / f"{name}-unzipped" / "nuclio"
        card = json.loads((folder / "model_card.json").read_text())
        assert card["conf"] == (1.0 if box_conf is None else 0.25) and card["template"] == "kp_template.npy"
        assert card["warp_size"] == 256 and np.allclose(np.load(folder / "kp_template.npy"), fitted)
        (answer,) = call_handler(
            folder, [request], "grid_pose_detection", {"QUADRATSEG_POSE_TASK": "gridpose"}
        )
        bodies[name] = answer["body"]
    assert bodies["strict"] == [] and len(bodies["given"]) == 1


def test_the_corner_function_answers_no_frame_where_the_predictor_refused_one(tiny_corner_model, tmp_path):
    """On a photo with no frame (noise) the confident model puts four corners somewhere and the
    frame check refuses them (``warp_error``); the CVAT function still answered them as a skeleton,
    handing annotators, and the bridge's warp after them, a confident quadrat that is none. It now
    answers no shape, as for a photo where no point was found."""
    weights = confident_copy(tiny_corner_model[0], tmp_path / "best.pt")
    zip_path = deploy_as_zip("pth-yolo-gridcorners", str(weights), output=str(tmp_path / "out"))
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "unzipped")
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    noise = cv2.GaussianBlur(noise, (0, 0), 3)
    _, data = cv2.imencode(".jpg", noise)
    request = json.dumps({"image": base64.b64encode(data.tobytes()).decode(), "threshold": 0.0})
    (expected,) = PosePredictor(weights, get_task("gridcorners"), kpt_conf=0.0).predict([noise[..., ::-1]])
    assert expected.visible.sum() == 4 and expected.warp_error  # four corners, refused by the frame check
    (answer,) = call_handler(
        tmp_path / "unzipped" / "nuclio",
        [request],
        "grid_pose_detection",
        {"QUADRATSEG_POSE_TASK": "gridcorners"},
    )
    assert answer["status"] == 200 and answer["body"] == []


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


def test_make_template_fits_the_annotated_grids(pose_datasets, tmp_path):
    import fiftyone as fo

    from grid_pose_detection.make_template import make_template, normalized_keypoints
    from quadratseg.keypoints import load_template

    out = tmp_path / "kp_template_grid.npy"
    result = json.loads(make_template(pose_datasets["gridpose"], str(out)))
    template = load_template(out, 117)
    assert result["samples"] == 6 and result["points"] == 117
    # the generator strings the grid evenly: the fitted template is the built-in one
    assert np.abs(template - grid_template_xy()).max() < 0.002
    assert result["max_deviation_from_even"] < 0.002
    corners = json.loads(
        make_template(pose_datasets["gridpose"], str(tmp_path / "c.npy"), task="gridcorners")
    )
    assert "unit square" in corners["note"]
    with pytest.raises(QuadratsegError, match="fewer than 7"):
        make_template(pose_datasets["gridpose"], str(tmp_path / "x.npy"), min_samples=7)
    with pytest.raises(QuadratsegError, match=r"must end in \.npy"):
        make_template(pose_datasets["gridpose"], str(tmp_path / "x.txt"))
    # a grid annotated on the raw photo is brought into the quadrat through its own corners
    w, h = 800, 600
    corners_xy = np.array([[100.0, 80.0], [650.0, 100.0], [700.0, 560.0], [90.0, 520.0]])
    from quadratseg.warp import quadrat_homography, transform_points

    grid_raw = transform_points(grid_template_xy(), np.linalg.inv(quadrat_homography(corners_xy, (1, 1))))
    sample = fo.Sample(filepath=str(tmp_path / "raw.jpg"))
    sample.metadata = fo.ImageMetadata(width=w, height=h)
    sample["gt_grid"] = fo.Keypoints(keypoints=[fo.Keypoint(points=(grid_raw / [w, h]).tolist())])
    sample["gt_corners"] = fo.Keypoints(keypoints=[fo.Keypoint(points=(corners_xy / [w, h]).tolist())])
    assert np.allclose(normalized_keypoints(sample, "gt_grid"), grid_template_xy(), atol=1e-6)


def test_training_writes_the_model_card_and_the_template_beside_the_weights(tiny_grid_model, tmp_path):
    """The card of a trained grid model: task, sizes, template copied beside the weights, thresholds
    chosen on the val split where the data allow (a 1-epoch model completes no val grid: not chosen,
    said why), read back by the predictor."""
    import shutil

    from grid_pose_detection.card import write_pose_card
    from quadratseg.keypoints import load_template
    from quadratseg.model_card import read_model_card

    weights, root = tiny_grid_model
    copy = tmp_path / "weights" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(weights, copy)  # the session's model stays as it is
    template = save_template(grid_template_xy() * 0.99 + 0.005, tmp_path / "fitted.npy")
    card = write_pose_card(copy, "gridpose", root / "layout" / "data.yaml", template=str(template))
    assert read_model_card(copy) == card
    assert card["task"] == "gridpose" and card["imgsz"] == 64 and card["warp_size"] == 256
    assert card["template"] == "kp_template.npy" and card["max_cost"] == get_task("gridpose").max_cost
    assert np.allclose(load_template(copy.parent / "kp_template.npy", 117), grid_template_xy() * 0.99 + 0.005)
    chosen = card["thresholds"]
    assert chosen["split"] == "val" and chosen["images"] == 1 and "conf" not in card
    assert chosen["success_by_conf"] == {
        "0.5": 0.0,
        "0.25": 0.0,
        "0.1": 0.0,
        "0.05": 0.0,
        "0.01": 0.0,
        "0.001": 0.0,
    }
    assert chosen["how"].startswith("not chosen: no box threshold")
    predictor = PosePredictor(copy, get_task("gridpose"))
    assert predictor.warp_size == (256, 256) and np.allclose(
        predictor.template, grid_template_xy() * 0.99 + 0.005
    )


def test_the_conf_chosen_is_the_one_that_succeeds_most_on_val():
    from grid_pose_detection.card import choose_conf

    assert choose_conf({0.5: 0.2, 0.25: 0.8, 0.1: 0.8, 0.01: 0.6}) == 0.25  # ties: the highest
    assert choose_conf({0.5: 0.0, 0.1: 0.0}) is None


def test_the_predict_cli_reads_the_card_of_a_trained_model(tiny_corner_model, synthetic_set, tmp_path):
    """A real (1-epoch) corner model through the CLI with its defaults: the card's thresholds decide
    what is found, an absurd card threshold finds nothing."""
    import shutil

    from grid_pose_detection.predict import predict
    from quadratseg.model_card import write_model_card

    copy = tmp_path / "w" / "best.pt"
    copy.parent.mkdir()
    shutil.copy(tiny_corner_model[0], copy)
    photos = tmp_path / "photos"
    photos.mkdir()
    raw = sorted((synthetic_set / "cvat_exports" / "corners" / "images").rglob("*.jpg"))[:2]
    for path in raw:
        shutil.copy(path, photos / path.name)
    write_model_card(copy, {"task": "gridcorners", "conf": 0.0001, "kpt_conf": 0.0, "warp_size": 128})
    json.loads(predict("gridcorners", str(copy), str(photos), str(tmp_path / "low")))
    low = json.loads((tmp_path / "low" / "report.json").read_text())
    assert [r["found"] for r in low] == [4, 4]
    write_model_card(copy, {"conf": 0.9999})
    json.loads(predict("gridcorners", str(copy), str(photos), str(tmp_path / "high")))
    high = json.loads((tmp_path / "high" / "report.json").read_text())
    assert [r["found"] for r in high] == [0, 0]
    assert [r["warp"] for r in high] == ["corner(s) TL, TR, BR, BL are missing; cannot warp"] * 2


def test_the_train_cli_leaves_the_card_beside_the_weights(pose_datasets, tmp_path):
    """``python -m grid_pose_detection.train`` (one epoch at 64 px): the card and the template are
    beside best.pt, and the answer carries the card."""
    import fiftyone as fo

    from grid_pose_detection.train import train
    from quadratseg.keypoints import corner_template_xy, load_template
    from quadratseg.model_card import read_model_card

    write_pose_layout(
        get_task("gridcorners"), fo.load_dataset(pose_datasets["gridcorners"]), tmp_path / "layout"
    )
    answer = json.loads(
        train(
            "gridcorners",
            str(tmp_path / "layout" / "data.yaml"),
            project=str(tmp_path / "runs"),
            epochs=1,
            imgsz=64,
            batch=2,
            workers=0,
            from_scratch=True,
            tensorboard=False,
            args={"plots": False},
        )
    )
    best = Path(answer["best"])
    card = read_model_card(best)
    assert answer["card"] == card and card["task"] == "gridcorners" and card["imgsz"] == 64
    assert "warp_size" not in card  # a corner model is not trained on warped quadrats
    assert card["max_cost"] == get_task("gridcorners").max_cost and card["thresholds"]["images"] == 1
    assert np.array_equal(load_template(best.parent / card["template"], 4), corner_template_xy())
