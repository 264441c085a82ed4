"""Pull from and push to a CVAT-compatible server with the real cvat-sdk client."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_engineering.create_fiftyone_dataset import run_pull
from data_engineering.push import push_samples
from quadratseg.cvat_client import (
    CvatConnectionError,
    connect,
    create_task_with_annotations,
    project_from_server,
)
from quadratseg.cvat_tasks import project_from_xml_export
from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_labels import labels_to_raw_config
from quadratseg.formats.cvat_xml import Shape

pytestmark = pytest.mark.shared_data


def seed_project_from_export(server, export_dir, statuses=None):
    """Create the export's project on the server, with tasks (images + shapes) set through the SDK."""
    project = project_from_xml_export(export_dir)
    server.state.add_project(project.name, labels_to_raw_config(project.labels))
    return project


def upload(settings, project, task_status):
    with connect(settings) as client:
        ids = {}
        for task in project.tasks:
            images = [(f.name, f.load_bytes()) for f in task.frames]
            shapes = [f.shapes for f in task.frames]
            ids[task.id] = create_task_with_annotations(
                client, project.name, task.name, task.subset, images, shapes, settings
            )
    return ids


def test_pull_from_server_filters_status_and_subset(cvat_server, cvat_settings, synthetic_set, dataset_name):
    project = seed_project_from_export(cvat_server, synthetic_set / "cvat_exports" / "segmentation")
    ids = upload(cvat_settings, project, "completed")
    train_id = next(ids[t.id] for t in project.tasks if t.subset == "train")
    val_id = next(ids[t.id] for t in project.tasks if t.subset == "val")
    for tid in ids.values():
        cvat_server.state.tasks[tid].record["status"] = "completed"
    cvat_server.state.tasks[val_id].record["status"] = "annotation"  # still being annotated
    summary = run_pull(project.name, "cvat", dataset_name=dataset_name, settings=cvat_settings)
    assert summary["tasks_filtered"] == {str(val_id): "status 'annotation' (only completed)"}
    assert train_id in summary["tasks_pulled"]
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    expected = sum(len(t.frames) for t in project.tasks if t.subset != "val")
    assert ds.count() == expected and set(ds.distinct("cvat_subset")) == {"train", "test"}
    # the pulled polygons are the uploaded ones
    source = {f.name: f for t in project.tasks for f in t.frames}
    for sample in ds:
        frame = source[sample.cvat_image_name]
        w, h = sample.metadata.width, sample.metadata.height
        assert [p.label for p in sample.gt_polylines.polylines] == [s.label for s in frame.shapes]
        for poly, shape in zip(sample.gt_polylines.polylines, frame.shapes, strict=True):
            assert np.allclose(np.array(poly.points[0]) * [w, h], shape.points, atol=0.01)
    # nothing changed on the server: nothing is pulled again; an edit re-pulls that task only
    assert (
        run_pull(project.name, "cvat", dataset_name=dataset_name, settings=cvat_settings)["tasks_pulled"]
        == []
    )
    cvat_server.state.touch(cvat_server.state.tasks[train_id])
    assert run_pull(project.name, "cvat", dataset_name=dataset_name, settings=cvat_settings)[
        "tasks_pulled"
    ] == [train_id]
    assert fo.load_dataset(dataset_name).count() == expected


def test_a_frame_deleted_in_cvat_is_not_pulled(cvat_server, cvat_settings, synthetic_set, dataset_name):
    """An annotator deletes a blurred photo from a task (CVAT keeps it in the task's data, listed in
    ``deleted_frames``): the pull leaves it out, as CVAT's own export does."""
    import fiftyone as fo

    project = seed_project_from_export(cvat_server, synthetic_set / "cvat_exports" / "segmentation")
    ids = upload(cvat_settings, project, "completed")
    task = next(t for t in project.tasks if len(t.frames) > 1)
    tid = ids[task.id]
    for number in ids.values():
        cvat_server.state.tasks[number].record["status"] = "completed"
    with connect(cvat_settings) as client:  # CVAT's own call: PATCH /api/tasks/{id}/data/meta
        client.api_client.tasks_api.partial_update_data_meta(
            tid, patched_data_meta_write_request={"deleted_frames": [0]}
        )
    summary = run_pull(project.name, "cvat", dataset_name=dataset_name, settings=cvat_settings)
    assert tid in summary["tasks_pulled"]
    names = set(fo.load_dataset(dataset_name).distinct("cvat_image_name"))
    assert task.frames[0].name not in names and task.frames[1].name in names


def test_skeleton_project_through_the_server(cvat_server, cvat_settings, synthetic_set, dataset_name):
    project = seed_project_from_export(cvat_server, synthetic_set / "cvat_exports" / "grid")
    ids = upload(cvat_settings, project, "completed")
    for tid in ids.values():
        cvat_server.state.tasks[tid].record["status"] = "completed"
    run_pull(project.name, "cvat", dataset_name=dataset_name, settings=cvat_settings)
    import fiftyone as fo

    sample = fo.load_dataset(dataset_name).first()
    frame = next(f for t in project.tasks for f in t.frames if f.name == sample.cvat_image_name)
    (kp,) = sample.gt_grid.keypoints
    expected = np.array([e.points[0] for e in frame.shapes[0].elements])
    assert np.allclose(
        np.array(kp.points) * [sample.metadata.width, sample.metadata.height], expected, atol=0.01
    )


def test_push_dataset_back_as_polygons_masks_and_skeletons(
    cvat_server, cvat_settings, synthetic_set, dataset_name
):
    import fiftyone as fo

    from quadratseg.labelsets import coral_labels, corner_labels

    run_pull(
        "synth",
        "xml",
        str(synthetic_set / "cvat_exports" / "segmentation"),
        dataset_name=dataset_name,
        settings=cvat_settings,
    )
    cvat_server.state.add_project("review", labels_to_raw_config(coral_labels()))
    view = fo.load_dataset(dataset_name).match_tags("val")
    (task_id,) = push_samples(view, "review", "gt_polylines", "polygons", "val", "review_val", cvat_settings)
    task = cvat_server.state.tasks[task_id]
    assert task.record["subset"] == "val" and len(task.frames) == view.count()
    n_polys = sum(len(s.gt_polylines.polylines) for s in view)
    assert len(task.shapes) == n_polys and all(s["type"] == "polygon" for s in task.shapes)
    confidences = {a["value"] for s in task.shapes for a in s["attributes"]}
    assert confidences == {"100"}  # integer strings, as CVAT's number attribute requires
    (mask_task,) = push_samples(view, "review", "gt_polylines", "masks", "val", "review_masks", cvat_settings)
    assert all(s["type"] == "mask" for s in cvat_server.state.tasks[mask_task].shapes)
    with pytest.raises(QuadratsegError, match="not in CVAT project"):
        cvat_server.state.add_project("corners_only", labels_to_raw_config(corner_labels()))
        push_samples(view, "corners_only", "gt_polylines", "polygons", "val", "x", cvat_settings)


def test_wrong_credentials_timeouts_and_retries(cvat_server, cvat_settings):
    bad = cvat_settings.replace(cvat_password="wrong")
    with pytest.raises(QuadratsegError, match="refused the credentials"), connect(bad):
        pass
    no_credentials = cvat_settings.replace(cvat_username="", cvat_password="")
    with pytest.raises(QuadratsegError, match="no CVAT credentials"), connect(no_credentials):
        pass
    cvat_server.fail_next.append(("GET", r"/api/projects$", 503))
    # the 503 is retried, then the real answer comes
    with connect(cvat_settings) as client, pytest.raises(QuadratsegError, match="no project named 'nope'"):
        project_from_server(client, "nope", cvat_settings)
    assert cvat_server.requests_seen.count(("GET", "/api/projects")) == 2
    cvat_server.delay_s = 1.5  # longer than CVAT_TIMEOUT_S
    with (
        pytest.raises(CvatConnectionError, match=r"after 2 attempts.*CVAT_TIMEOUT_S"),
        connect(cvat_settings.replace(cvat_timeout_s=0.5)),
    ):
        pass
    cvat_server.delay_s = 0.0


def test_token_login_and_corrupt_upload(cvat_server, cvat_settings):
    from quadratseg.labelsets import coral_labels

    cvat_server.state.add_project("p", labels_to_raw_config(coral_labels()))
    token = cvat_settings.replace(cvat_username="", cvat_password="", cvat_access_token="test-token")
    image = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with connect(token) as client:
        tid = create_task_with_annotations(
            client,
            "p",
            "t",
            "train",
            [("a.png", image)],
            [[Shape("polygon", "Porites", points=np.array([[1, 1], [6, 1], [6, 6]]))]],
            token,
        )
        assert cvat_server.state.tasks[tid].shapes[0]["points"] == [1, 1, 6, 1, 6, 6]
        with pytest.raises(QuadratsegError, match="same file name"):
            create_task_with_annotations(
                client, "p", "t2", "train", [("a.png", image), ("a.png", image)], [[], []], token
            )


def test_the_schema_checker_catches_bad_shapes(cvat_server):
    checker = cvat_server.checker
    assert checker.check_response("GET", "/api/server/about", 200, {"name": "x"})  # required keys missing
    assert checker.check_response("GET", "/api/tasks/1", 200, {"jobs": {}, "labels": {}, "id": "one"})
    assert not checker.check_response(
        "GET",
        "/api/server/about",
        200,
        {"name": "n", "description": "", "version": "2.80.0", "logo_url": "", "subtitle": ""},
    )
    with pytest.raises(KeyError):
        checker.operation("GET", "/api/not-an-endpoint")
