"""The FiftyOne App view of pulled datasets: declared skeletons, outside points as FiftyOne's missing
points (with CVAT's coordinates kept for the push), and ``python -m data_engineering.app``.

FiftyOne is the judge: skeletons are read back from the reloaded dataset and from the App's own
server, missing points from FiftyOne's COCO exporter (``v = 0``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from data_engineering.create_fiftyone_dataset import run_pull
from quadratseg.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATUMARO_IMAGES_XML = ("datumaro", "cvat_dataset", "for_images", "train.xml")
CRIOBE_CONFIGS = ("criobe_label_configs", "corner_annotation_example.json", "grid_annotation_example.json")


def undirected(edges) -> set[frozenset[int]]:
    return {frozenset(map(int, e)) for e in edges}


def coco_visibility(dataset, field: str, out: Path) -> dict[str, list[int]]:
    """{file name: [v, ...]} of ``field`` as FiftyOne's own COCO exporter writes it."""
    import fiftyone as fo

    dataset.export(
        export_dir=str(out), dataset_type=fo.types.COCODetectionDataset, label_field=field, export_media=False
    )
    coco = json.loads((out / "labels.json").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    return {names[a["image_id"]]: a["keypoints"][2::3] for a in coco["annotations"]}


def skeleton_elements(path: Path) -> dict[str, list[tuple[bool, tuple[float, float]]]]:
    """{image name: [(outside, (x, y)) per point in label order]} read from the XML with ElementTree."""
    out = {}
    for image in ET.parse(path).getroot().iter("image"):
        for skeleton in image.iter("skeleton"):
            points = sorted(skeleton.iter("points"), key=lambda p: p.get("label"))
            out[image.get("name")] = [
                (p.get("outside") == "1", tuple(float(v) for v in p.get("points").split(","))) for p in points
            ]
    return out


def test_real_export_outside_points_are_missing_declared_and_pushed_back(shared_data, tmp_path, dataset_name):
    """Datumaro's CVAT export: a 4-point skeleton with edges 3-2 and 1-4, one outside point per image."""
    import fiftyone as fo

    from quadratseg.cvat_tasks import project_from_xml_export
    from quadratseg.fiftyone_io import OUTSIDE_POINTS_ATTR, keypoints_to_pixels, keypoints_to_shapes

    path = shared_data.joinpath(*DATUMARO_IMAGES_XML)
    truth = skeleton_elements(path)
    assert {name: [o for o, _ in pts] for name, pts in truth.items()} == {
        "img0.jpg": [True, False, False, False],
        "img1.jpg": [False, False, True, False],
    }
    run_pull(dataset_name, "xml", str(path), allowed_subsets=(), settings=Settings(media_dir=tmp_path / "m"))
    ds = fo.load_dataset(dataset_name)
    ds.reload()
    skeleton = ds.skeletons["gt_skeleton"]
    assert skeleton.labels == ["1", "2", "3", "4"]
    assert undirected(skeleton.edges) == {frozenset({2, 1}), frozenset({0, 3})}

    assert coco_visibility(ds, "gt_skeleton", tmp_path / "coco") == {
        name: [0 if outside else 2 for outside, _ in pts] for name, pts in truth.items()
    }
    spec = next(lab for lab in project_from_xml_export(path).labels if lab.name == "skeleton")
    for sample in ds:
        (kp,) = sample.gt_skeleton.keypoints
        size = (sample.metadata.width, sample.metadata.height)
        expected = truth[sample.cvat_image_name]
        outside = np.array([o for o, _ in expected])
        xy = np.array([p for _, p in expected])
        points = np.array(kp.points, dtype=float) * size
        assert np.isnan(points[outside]).all() and np.allclose(points[~outside], xy[~outside])
        kept = np.array(kp[OUTSIDE_POINTS_ATTR], dtype=float) * size
        assert np.allclose(kept[outside], xy[outside]) and np.isnan(kept[~outside]).all()
        assert "visible" not in kp.field_names
        px, visible = keypoints_to_pixels(kp, size)
        assert visible.tolist() == (~outside).tolist() and np.isnan(px[outside]).all()
        (shape,) = keypoints_to_shapes(sample.gt_skeleton, size, spec)  # the push to CVAT
        assert [e.label for e in shape.elements] == ["1", "2", "3", "4"]
        assert [e.outside for e in shape.elements] == outside.tolist()
        assert np.allclose([e.points[0] for e in shape.elements], xy)


def test_pulled_corners_and_grid_declare_their_skeletons(synthetic_set, tmp_path, dataset_name):
    import fiftyone as fo

    from quadratseg.keypoints import grid_template_xy

    for folder, field in (("corners", "gt_corners"), ("grid", "gt_grid")):
        name = f"{dataset_name}-{folder}"
        try:
            path = synthetic_set / "cvat_exports" / folder
            run_pull(name, "xml", str(path), settings=Settings(media_dir=tmp_path / "m"))
            ds = fo.load_dataset(name)
            ds.reload()
            assert list(ds.skeletons) == [field]
            skeleton = ds.skeletons[field]
            n = len(ds.first()[field].keypoints[0].points)
            assert skeleton.labels == [str(i + 1) for i in range(n)]
        finally:
            if fo.dataset_exists(name):
                fo.delete_dataset(name)
        if field == "gt_corners":  # TL, TR, BR, BL: a closed quadrilateral
            assert undirected(skeleton.edges) == undirected([(0, 1), (1, 2), (2, 3), (3, 0)])
            continue
        # 9 x 13 crossings: an edge joins each pair one string apart along a row or a column
        xy = grid_template_xy()
        d = np.abs(xy[:, None] - xy[None])
        step_x, step_y = 1 / 14, 1 / 10
        along = (np.isclose(d[..., 0], step_x) & np.isclose(d[..., 1], 0)) | (
            np.isclose(d[..., 0], 0) & np.isclose(d[..., 1], step_y)
        )
        expected = {frozenset((int(a), int(b))) for a, b in zip(*np.nonzero(along), strict=True)}
        assert len(expected) == 9 * 12 + 8 * 13
        assert undirected(skeleton.edges) == expected


def test_criobe_label_configs_without_edges_get_the_template_edges(shared_data):
    """CRIOBE's own corner and grid labels draw no edges: the core label sets' edges are used."""
    from quadratseg.fiftyone_io import keypoint_skeleton
    from quadratseg.formats.cvat_labels import label_from_raw, skeleton_edges

    folder, *files = CRIOBE_CONFIGS
    corner, grid = (label_from_raw(json.loads((shared_data / folder / f).read_text())[0], f) for f in files)
    assert skeleton_edges(corner) == [] and skeleton_edges(grid) == []
    corners = keypoint_skeleton(corner)
    assert corners.labels == ["1", "2", "3", "4"]
    assert undirected(corners.edges) == undirected([(0, 1), (1, 2), (2, 3), (3, 0)])
    grid_skeleton = keypoint_skeleton(grid)
    assert grid_skeleton.labels == [str(i + 1) for i in range(117)] and len(grid_skeleton.edges) == 212
    degree = np.bincount(np.array(grid_skeleton.edges).ravel(), minlength=117)
    assert degree.min() == 2 and degree.max() == 4  # grid corners 2, borders 3, inside 4


def test_keypoints_pulled_with_a_visible_list_read_the_same():
    """Datasets pulled before outside points became NaN: coordinates in points, a visible list."""
    import fiftyone as fo

    from quadratseg.fiftyone_io import keypoints_to_pixels

    nan = float("nan")
    legacy = fo.Keypoint(points=[(0.1, 0.2), (0.3, 0.4), (nan, nan)], visible=[True, False, False])
    current = fo.Keypoint(
        points=[(0.1, 0.2), (nan, nan), (nan, nan)], cvat_outside_points=[(nan, nan), (0.3, 0.4), (nan, nan)]
    )
    for kp in (legacy, current):
        px, visible = keypoints_to_pixels(kp, (100, 200))
        assert visible.tolist() == [True, False, False]
        assert np.allclose(px[0], [10, 40]) and np.isnan(px[1:]).all()
        kept, _ = keypoints_to_pixels(kp, (100, 200), with_outside=True)
        assert np.allclose(kept[:2], [[10, 40], [30, 80]]) and np.isnan(kept[2]).all()


@pytest.fixture
def evaluated_dataset(dataset_name):
    """Ground truth, a prediction field and one FiftyOne detection evaluation."""
    import fiftyone as fo

    ds = fo.Dataset(dataset_name)
    box = fo.Detection(label="Acropora", bounding_box=[0.1, 0.1, 0.3, 0.3])
    ds.add_samples(
        [
            fo.Sample(
                filepath=f"/nowhere/q{i}.jpg",
                gt_boxes=fo.Detections(detections=[box.copy()]),
                yolo_predictions=fo.Detections(detections=[fo.Detection(**box.to_dict(), confidence=0.9)]),
            )
            for i in range(2)
        ]
    )
    ds.evaluate_detections("yolo_predictions", gt_field="gt_boxes", eval_key="eval_yolo")
    ds.skeletons = {"gt_corners": fo.KeypointSkeleton(labels=list("1234"), edges=[[0, 1]])}
    return ds


def test_describe_names_ground_truth_predictions_and_evaluations(evaluated_dataset):
    from data_engineering.app import describe_dataset, summary_lines

    summary = describe_dataset(evaluated_dataset)
    assert summary["samples"] == 2
    assert summary["ground_truth"] == ["gt_boxes"] and summary["predictions"] == ["yolo_predictions"]
    (key,) = summary["evaluations"]
    evaluation = summary["evaluations"][key]
    assert key == "eval_yolo" and key in evaluated_dataset.list_evaluations()
    assert (evaluation["type"], evaluation["pred_field"], evaluation["gt_field"]) == (
        "detection",
        "yolo_predictions",
        "gt_boxes",
    )
    assert set(evaluation["fields"]) == {"eval_yolo_tp", "eval_yolo_fp", "eval_yolo_fn"}
    assert set(evaluation["fields"]) <= set(evaluated_dataset.get_field_schema())
    assert summary["skeletons"] == {"gt_corners": 4}
    text = "\n".join(summary_lines(summary))
    assert "predictions: yolo_predictions" in text and "eval_yolo (detection" in text


def test_app_cli_hands_the_dataset_to_the_launch(evaluated_dataset, monkeypatch, caplog):
    """Everything up to ``fiftyone.launch_app``, which a fake replaces (no server, no browser)."""
    import logging

    import fiftyone as fo

    from data_engineering.app import app

    calls = {}

    class FakeSession:
        url = "http://127.0.0.1:5999/"

        def wait(self, wait):
            calls["wait"] = wait

    def fake_launch_app(dataset, **kwargs):
        calls["launch"] = (dataset.name, kwargs)
        return FakeSession()

    monkeypatch.setattr(fo, "launch_app", fake_launch_app)
    with caplog.at_level(logging.INFO, logger="data_engineering.app"):
        out = json.loads(app(evaluated_dataset.name, port=5999, address="127.0.0.1", remote=True, wait=-1))
    assert calls == {
        "launch": (evaluated_dataset.name, {"port": 5999, "address": "127.0.0.1", "remote": True}),
        "wait": -1,
    }
    assert out["predictions"] == ["yolo_predictions"] and list(out["evaluations"]) == ["eval_yolo"]
    assert "predictions: yolo_predictions" in caplog.text and "127.0.0.1:5999" in caplog.text


def test_app_cli_names_the_datasets_there_are(evaluated_dataset):
    result = subprocess.run(
        [sys.executable, "-m", "data_engineering.app", evaluated_dataset.name + "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"no FiftyOne dataset named '{evaluated_dataset.name}x'" in result.stderr
    assert f"did you mean '{evaluated_dataset.name}'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["coral_seg_yolo.prepare_data", "{name}", "{out}"],
        ["grid_pose_detection.prepare_data", "gridcorners", "{name}", "{out}"],
        ["DINOv2_mmseg.prepare_data", "{name}", "{out}"],
    ],
    ids=lambda c: c[0],
)
def test_every_stage_names_the_datasets_there_are(evaluated_dataset, tmp_path, command):
    """One loader for every stage that reads a dataset: a typo gets the same answer everywhere."""
    words = [w.format(name=evaluated_dataset.name + "x", out=tmp_path / "out") for w in command]
    result = subprocess.run(
        [sys.executable, "-m", *words], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"did you mean '{evaluated_dataset.name}'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_the_app_server_serves_the_declared_skeletons(evaluated_dataset):
    """A real App server on 127.0.0.1 (about 6 s to start): its GraphQL API reports the skeleton."""
    from data_engineering.app import launch_app
    from loopback.harness import free_port

    port = free_port()
    session = launch_app(evaluated_dataset, port=port, address="127.0.0.1", remote=True, wait=None)
    try:
        fields = "skeletons { name labels edges }"
        query = {"query": f'query {{ dataset(name: "{evaluated_dataset.name}") {{ {fields} }} }}'}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps(query).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    finally:
        session.close()
    assert answer["data"]["dataset"]["skeletons"] == [
        {"name": "gt_corners", "labels": ["1", "2", "3", "4"], "edges": [[0, 1]]}
    ]
