"""data_engineering: CVAT exports, backups and a live (test) server -> FiftyOne, and back."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

from data_engineering import pull as pull_module
from data_engineering.create_fiftyone_dataset import parse_label_map, run_pull
from quadratseg.cvat_tasks import project_from_backup, project_from_xml_export, write_project_backup
from quadratseg.errors import QuadratsegError, UnknownLabelError
from quadratseg.fiftyone_io import keypoints_to_shapes
from quadratseg.formats.cvat_xml import read_cvat_xml, write_cvat_xml
from quadratseg.settings import Settings
from quadratseg.synth import load_truth
from quadratseg.synth.dataset import export_image_path


def settings_for(tmp_path):
    return Settings(media_dir=tmp_path / "media")


def pull_xml(synthetic_set, folder, name, tmp_path, **kwargs):
    path = synthetic_set / "cvat_exports" / folder
    return run_pull(name, "xml", str(path), settings=settings_for(tmp_path), **kwargs)


def load(name):
    import fiftyone as fo

    return fo.load_dataset(name)


def test_segmentation_export_to_fiftyone(synthetic_set, tmp_path, dataset_name):
    summary = pull_xml(synthetic_set, "segmentation", dataset_name, tmp_path)
    truths = {t["name"]: t for t in load_truth(synthetic_set)}
    ds = load(dataset_name)
    assert ds.count() == len(truths) == summary["images"]
    assert sum(summary["samples_per_split"].values()) == len(truths)
    for sample in ds:
        truth = truths[sample.cvat_image_name]
        size = np.array(truth["warped_size"], float)
        assert sample.tags == [truth["subset"]] and sample.cvat_subset == truth["subset"]
        assert sample.cvat_project_name == "synth_finegrained_annotated"
        assert sample.area == truth["name"].split("_")[0] and sample.year == int(truth["name"].split("_")[1])
        assert sample.filepath.endswith(f"task_{sample.cvat_task_id}/{truth['name']}")
        polys = sample.gt_polylines.polylines
        assert [p.label for p in polys] == [c["label"] for c in truth["corals"]]
        for poly, coral in zip(polys, truth["corals"], strict=True):
            assert poly.closed and poly.filled and poly.confidence == 1.0
            assert np.allclose(np.array(poly.points[0]) * size, coral["polygon_xy"], atol=0.01)
        families = [p.label for p in sample.gt_polylines_main_family.polylines]
        assert len(families) == len(polys) and "coral" not in families
        assert {p.label for p in sample.gt_polylines_agnostic.polylines} <= {"coral"}
    assert summary["shapes_per_label"] == dict(
        sorted(
            __import__("collections")
            .Counter(c["label"] for t in truths.values() for c in t["corals"])
            .items()
        )
    )


@pytest.mark.parametrize(
    "folder, field, key, n",
    [("corners", "gt_corners", "corners_raw_xy", 4), ("grid", "gt_grid", "grid_warped_xy", 117)],
)
def test_skeletons_to_keypoints_in_template_order(
    synthetic_set, tmp_path, dataset_name, folder, field, key, n
):
    pull_xml(synthetic_set, folder, dataset_name, tmp_path)
    truths = {t["name"]: t for t in load_truth(synthetic_set)}
    assert load(dataset_name).count() == len(truths) == 6
    for sample in load(dataset_name):
        truth = truths[sample.cvat_image_name]
        (kp,) = sample[field].keypoints
        w, h = sample.metadata.width, sample.metadata.height
        assert len(kp.points) == n and np.isfinite(np.array(kp.points, dtype=float)).all()
        assert np.allclose(np.array(kp.points) * [w, h], truth[key], atol=0.01)


def test_task_tracking_skip_existing_force_refresh(synthetic_set, tmp_path, dataset_name):
    export = tmp_path / "export"
    import shutil

    shutil.copytree(synthetic_set / "cvat_exports" / "segmentation", export)
    first = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    n = load(dataset_name).count()
    again = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert again["tasks_pulled"] == [] and sorted(again["tasks_kept"]) == sorted(first["tasks_pulled"])
    # change one shape in the val task: only that task is pulled again, without duplicates
    doc = read_cvat_xml(export / "annotations.xml")
    val_image = next(i for i in doc.images if i.subset == "val")
    val_image.shapes[0].label = "Porites" if val_image.shapes[0].label != "Porites" else "Acropora"
    write_cvat_xml(doc, export / "annotations.xml")
    changed = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert changed["tasks_pulled"] == [val_image.task_id]
    ds = load(dataset_name)
    assert ds.count() == n and len(set(ds.values("filepath"))) == n
    sample = ds.match({"cvat_image_name": val_image.name}).first()
    assert sample.gt_polylines.polylines[0].label == val_image.shapes[0].label
    assert (
        run_pull(dataset_name, "xml", str(export), mode="skip_existing", settings=settings_for(tmp_path))[
            "tasks_pulled"
        ]
        == []
    )
    refreshed = run_pull(
        dataset_name, "xml", str(export), mode="force_refresh", settings=settings_for(tmp_path)
    )
    assert len(refreshed["tasks_pulled"]) == len(first["tasks_pulled"]) and load(dataset_name).count() == n


def test_interrupted_pull_keeps_the_dataset_and_the_next_run_completes(
    synthetic_set, tmp_path, dataset_name, monkeypatch
):
    import fiftyone as fo

    pull_xml(synthetic_set, "segmentation", dataset_name, tmp_path, allowed_subsets=("train",))
    before = sorted(load(dataset_name).values("filepath"))
    original = pull_module._task_samples
    calls = {"n": 0}

    def dies_on_second_task(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(pull_module, "_task_samples", dies_on_second_task)
    with pytest.raises(KeyboardInterrupt):
        pull_xml(synthetic_set, "segmentation", dataset_name, tmp_path)
    assert sorted(load(dataset_name).values("filepath")) == before  # untouched
    assert fo.dataset_exists(dataset_name + ".pulling")
    monkeypatch.setattr(pull_module, "_task_samples", original)
    resumed = pull_xml(synthetic_set, "segmentation", dataset_name, tmp_path)
    assert len(resumed["tasks_pulled"]) == 1  # the task finished before the kill is kept
    ds = load(dataset_name)
    assert ds.count() == len(load_truth(synthetic_set)) == len(set(ds.values("filepath")))
    assert not fo.dataset_exists(dataset_name + ".pulling")


def test_unknown_labels_stop_the_pull_before_writing(synthetic_set, tmp_path, dataset_name):
    import fiftyone as fo

    export = tmp_path / "export"
    import shutil

    shutil.copytree(synthetic_set / "cvat_exports" / "segmentation", export)
    doc = read_cvat_xml(export / "annotations.xml")
    for image in doc.images:  # a project whose label is misspelt
        for shape in image.shapes:
            shape.label = "Acropra" if shape.label == "Acropora" else shape.label
    next(lab for lab in doc.labels if lab.name == "Acropora").name = "Acropra"
    write_cvat_xml(doc, export / "annotations.xml")
    with pytest.raises(UnknownLabelError, match="did you mean 'Acropora'"):
        run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert not fo.dataset_exists(dataset_name) and not (tmp_path / "media").exists()
    summary = run_pull(
        dataset_name, "xml", str(export), label_map="Acropra=Acropora", settings=settings_for(tmp_path)
    )
    assert summary["shapes_per_label"]["Acropora"] >= 1


def test_label_map_parsing(tmp_path):
    assert parse_label_map("a=b, c = d") == {"a": "b", "c": "d"}
    (tmp_path / "m.json").write_text(json.dumps({"x": "y"}))
    assert parse_label_map(str(tmp_path / "m.json")) == {"x": "y"}
    with pytest.raises(QuadratsegError, match="old=new"):
        parse_label_map("nonsense")


def test_backup_round_trip_equals_the_xml_pull(synthetic_set, tmp_path, dataset_name):
    project = project_from_xml_export(synthetic_set / "cvat_exports" / "segmentation")
    backup = write_project_backup(project, tmp_path / "project_backup.zip")
    again = project_from_backup(backup)
    assert again.name == project.name and [t.subset for t in again.tasks] == [t.subset for t in project.tasks]
    for a, b in zip(project.tasks, again.tasks, strict=True):
        assert [f.name for f in a.frames] == [f.name for f in b.frames]
        for fa, fb in zip(a.frames, b.frames, strict=True):
            assert [(s.label, s.attributes) for s in fa.shapes] == [
                (s.label, s.attributes) for s in fb.shapes
            ]
            assert all(np.allclose(sa.points, sb.points) for sa, sb in zip(fa.shapes, fb.shapes, strict=True))
            assert fa.load_bytes() == fb.load_bytes()
    summary = run_pull(dataset_name, "backup", str(backup), settings=settings_for(tmp_path))
    assert summary["images"] == len(load_truth(synthetic_set))


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "task_1/../../evil.txt", "C:/evil.txt"])
def test_backups_with_unsafe_paths_are_refused(tmp_path, member):
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("project.json", json.dumps({"name": "p", "labels": []}))
        z.writestr(member, "x")
    with pytest.raises(QuadratsegError, match="unsafe path"):
        project_from_backup(zpath)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_bad_images_and_shapes_are_reported_not_fatal(synthetic_set, tmp_path, dataset_name):
    import shutil

    export = tmp_path / "export"
    shutil.copytree(synthetic_set / "cvat_exports" / "segmentation", export)
    doc = read_cvat_xml(export / "annotations.xml")
    corrupt, missing, bad_shapes = doc.images[0], doc.images[1], doc.images[2]
    export_image_path(export, corrupt.subset, corrupt.name).write_bytes(b"not an image")
    export_image_path(export, missing.subset, missing.name).unlink()
    bad_shapes.shapes[0].points = bad_shapes.shapes[0].points[:2]  # 2 points
    bad_shapes.shapes[1].points = np.array([[5.0, 5.0], [6.0, 6.0], [7.0, 7.0]])  # zero area
    write_cvat_xml(doc, export / "annotations.xml")
    summary = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    skipped = "\n".join(summary["images_skipped"])
    assert corrupt.name in skipped and "not a readable image" in skipped
    assert missing.name in skipped and "missing" in skipped
    assert summary["images"] == len(doc.images) - 2
    warnings = "\n".join(summary["warnings"])
    assert "fewer than 3 distinct points" in warnings and "zero area" in warnings
    sample = load(dataset_name).match({"cvat_image_name": bad_shapes.name}).first()
    assert len(sample.gt_polylines.polylines) == len(bad_shapes.shapes) - 2


def test_skeleton_with_missing_and_outside_points(synthetic_set, tmp_path, dataset_name):
    import shutil

    export = tmp_path / "export"
    shutil.copytree(synthetic_set / "cvat_exports" / "corners", export)
    doc = read_cvat_xml(export / "annotations.xml")
    skeleton = doc.images[0].shapes[0]
    skeleton.elements[1].outside = True
    del skeleton.elements[2]  # BR missing
    write_cvat_xml(doc, export / "annotations.xml")
    summary = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert any("skeleton points missing" in w for w in summary["warnings"])
    sample = load(dataset_name).match({"cvat_image_name": doc.images[0].name}).first()
    (kp,) = sample.gt_corners.keypoints
    # outside and missing points are both FiftyOne's missing point (NaN); CVAT's coordinates of the
    # outside point are kept beside them, and go back to CVAT with the point still outside
    assert [math.isnan(x) for x, _ in kp.points] == [False, True, True, False]
    size = (sample.metadata.width, sample.metadata.height)
    kept = np.array(kp.cvat_outside_points, dtype=float) * size
    assert np.allclose(kept[1], skeleton.elements[1].points[0]) and np.isnan(kept[[0, 2, 3]]).all()
    spec = next(lab for lab in doc.labels if lab.name == skeleton.label)
    (pushed,) = keypoints_to_shapes(sample.gt_corners, size, spec)
    assert [e.outside for e in pushed.elements] == [False, True, True, False]
    assert np.allclose(pushed.elements[1].points, skeleton.elements[1].points)


def test_empty_and_filtered_projects_say_why(synthetic_set, tmp_path, dataset_name):
    with pytest.raises(QuadratsegError, match=r"nothing to pull.*subset"):
        pull_xml(synthetic_set, "segmentation", dataset_name, tmp_path, allowed_subsets=("holdout",))
    with pytest.raises(QuadratsegError, match="--path"):
        run_pull(dataset_name, "xml", None, settings=settings_for(tmp_path))
    with pytest.raises(QuadratsegError, match="--source"):
        run_pull(dataset_name, "ftp", "x", settings=settings_for(tmp_path))


def test_same_file_name_in_two_tasks_does_not_collide(synthetic_set, tmp_path, dataset_name):
    import shutil

    export = tmp_path / "export"
    shutil.copytree(synthetic_set / "cvat_exports" / "segmentation", export)
    doc = read_cvat_xml(export / "annotations.xml")
    a = next(i for i in doc.images if i.subset == "train")
    b = next(i for i in doc.images if i.subset == "val")
    # b takes a's file name (each lives in its own images/<subset>/ folder)
    export_image_path(export, b.subset, b.name).rename(export_image_path(export, b.subset, a.name))
    b.name = a.name
    write_cvat_xml(doc, export / "annotations.xml")
    run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    paths = load(dataset_name).match({"cvat_image_name": a.name}).values("filepath")
    assert len(paths) == 2 and len(set(paths)) == 2
    contents = {Path(p).read_bytes() for p in paths}
    assert len(contents) == 2  # each sample kept its own image


def test_polygons_with_different_vertex_counts_in_one_image():
    from quadratseg.fiftyone_io import ConversionLog, shapes_to_polylines
    from quadratseg.formats.cvat_xml import Shape
    from quadratseg.geometry import mask_to_cvat_rle

    square = np.array([[2, 2], [12, 2], [12, 12], [2, 12]], float)
    pentagon = np.array([[20, 2], [30, 2], [34, 8], [25, 14], [18, 8]], float)
    bowtie = np.array([[40, 2], [50, 12], [50, 2], [40, 12]], float)  # self-crossing: two triangles
    mask = np.zeros((64, 64), bool)
    mask[30:40, 5:15] = mask[30:40, 30:45] = True  # two parts
    mask[33:36, 35:38] = False  # a hole in the second part
    shapes = [
        Shape("polygon", "Acropora", points=square),
        Shape("polygon", "Porites", points=pentagon),
        Shape("polygon", "Pocillopora", points=bowtie),
        Shape("mask", "Montipora", rle=mask_to_cvat_rle(mask)),
        Shape("mask", "Montipora", rle=[64 * 64 + 1, 0, 0, 63, 63]),  # runs do not fill the box
        Shape("mask", "Montipora", rle=[0, 4, 70, 0, 71, 1]),  # box outside the 64 x 64 image
        Shape("polygon", "Porites", points=np.array([[1, 1], [np.nan, 2], [3, 5]])),
    ]
    log = ConversionLog()
    out = shapes_to_polylines(shapes, (64, 64), "img.jpg", log)
    # one entry per colony: the bow-tie is one colony of two parts, the mask one of two parts and a hole
    assert [label for label, _, _ in out] == ["Acropora", "Porites", "Pocillopora", "Montipora"]
    assert np.array_equal(out[0][1][0], square) and np.array_equal(out[1][1][0], pentagon)
    assert len(out[2][1]) == 2 and len(out[3][1]) == 3
    assert all(len(ring) >= 3 for _, rings, _ in out for ring in rings)
    assert log.counts["polygons repaired (self-crossing)"] == 1
    # the colony's rings, read even-odd, give back the mask exactly
    from quadratseg.geometry import PolygonWithHoles, polygons_to_mask

    rings = out[3][1]
    assert np.array_equal(polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], (64, 64)), mask)
    assert log.counts["masks dropped (malformed run-length encoding)"] == 1
    assert log.counts["masks dropped (outside the image)"] == 1
    assert log.counts["polygons dropped (non-finite coordinates)"] == 1


def test_synthetic_polygons_have_different_vertex_counts(synthetic_set):
    doc = read_cvat_xml(synthetic_set / "cvat_exports" / "segmentation" / "annotations.xml")
    counts = [{len(s.points) for s in image.shapes} for image in doc.images]
    assert all(len(c) > 1 for c in counts if c)  # real exports mix vertex counts in one image


def test_a_colony_cvat_draws_on_top_owns_its_pixels_whatever_its_place_in_the_file(tmp_path):
    """CVAT stacks shapes by z_order: an annotator who sends a whole-frame colony to the back
    (z_order 0) and keeps a small one in front (z_order 1) sees the small one; listed first in the
    export, it must still own its pixels in the colonies and the true cover."""
    from quadratseg.cover import label_map
    from quadratseg.fiftyone_io import ConversionLog, shapes_to_polylines

    xml = tmp_path / "annotations.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?><annotations><version>1.1</version>'
        '<image id="0" name="q.jpg" width="100" height="100">'
        '<polygon label="Acropora" source="manual" occluded="0" z_order="1" '
        'points="10.00,10.00;30.00,10.00;30.00,30.00;10.00,30.00"></polygon>'
        '<polygon label="Porites" source="manual" occluded="0" z_order="0" '
        'points="0.00,0.00;100.00,0.00;100.00,100.00;0.00,100.00"></polygon>'
        "</image></annotations>"
    )
    (image,) = read_cvat_xml(xml).images
    colonies = shapes_to_polylines(image.shapes, (100, 100), image.name, ConversionLog())
    assert [label for label, _, _ in colonies] == ["Porites", "Acropora"]  # drawn bottom to top
    index, names = label_map([(label, rings[0]) for label, rings, _ in colonies], (100, 100))
    share = {name: float((index == k).mean()) for k, name in enumerate(names, start=1)}
    assert share == {"Porites": 0.96, "Acropora": 0.04}


def test_a_task_whose_shapes_changed_only_their_stacking_is_pulled_again():
    """Sending a colony to the back in CVAT changes who owns the overlap: the task's content
    fingerprint (tasks without an update time) changes, so an incremental pull takes it again."""
    from quadratseg.cvat_tasks import FrameData, TaskData
    from quadratseg.formats.cvat_xml import Shape

    def task(z_order):
        square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
        shapes = [Shape("polygon", "Acropora", points=square, z_order=z_order)]
        return TaskData(1, "t", frames=[FrameData(0, "q.jpg", 10, 10, shapes, lambda: b"")])

    assert task(0).fingerprint() != task(1).fingerprint()
    assert task(1).fingerprint() == task(1).fingerprint()


def test_a_task_with_an_image_that_failed_is_pulled_again_once_the_image_is_back(
    synthetic_set, tmp_path, dataset_name
):
    """An image that could not be read (missing, corrupt, a download that failed) leaves its task
    unfinished: the next incremental pull takes the task again, so the image and its colonies come
    back without a full refresh."""
    import shutil

    export = tmp_path / "export"
    shutil.copytree(synthetic_set / "cvat_exports" / "segmentation", export)
    doc = read_cvat_xml(export / "annotations.xml")
    missing = doc.images[1]
    image = export_image_path(export, missing.subset, missing.name)
    kept = tmp_path / "kept.jpg"
    shutil.move(image, kept)
    first = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert first["images"] == len(doc.images) - 1
    shutil.move(kept, image)  # the image is back (a download that failed once, a file restored)
    second = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert second["tasks_pulled"], second
    assert load(dataset_name).count() == len(doc.images)
    assert load(dataset_name).match({"cvat_image_name": missing.name}).count() == 1


def test_a_changed_label_map_relabels_the_tasks_already_pulled(synthetic_set, tmp_path, dataset_name):
    """A label map given by mistake and then corrected: the next incremental pull converts the tasks
    again with the corrected map (their CVAT content did not change, their colonies' names did)."""
    export = synthetic_set / "cvat_exports" / "segmentation"
    doc = read_cvat_xml(export / "annotations.xml")
    labels = sorted({s.label for image in doc.images for s in image.shapes if s.type == "polygon"})
    wrong, other = labels[0], labels[1]

    def names():
        return set(load(dataset_name).distinct("gt_polylines.polylines.label"))

    run_pull(dataset_name, "xml", str(export), label_map={wrong: other}, settings=settings_for(tmp_path))
    assert wrong not in names()
    again = run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))
    assert again["tasks_pulled"] and wrong in names(), again
    assert run_pull(dataset_name, "xml", str(export), settings=settings_for(tmp_path))["tasks_pulled"] == []


def test_a_backups_deleted_frames_are_left_out(synthetic_set, tmp_path):
    """CVAT's task backup keeps a deleted frame's image and lists it in task.json's
    ``data.deleted_frames``: reading the backup leaves it out, as CVAT's export does."""
    project = project_from_xml_export(synthetic_set / "cvat_exports" / "segmentation")
    backup = write_project_backup(project, tmp_path / "project_backup.zip")
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(backup) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("task.json"):
                manifest = json.loads(data)
                manifest["data"]["deleted_frames"] = [0]
                data = json.dumps(manifest).encode()
            target.writestr(item, data)
    full, pruned = project_from_backup(backup), project_from_backup(edited)
    for a, b in zip(full.tasks, pruned.tasks, strict=True):
        assert [f.name for f in b.frames] == [f.name for f in a.frames[1:]]
        assert [len(f.shapes) for f in b.frames] == [len(f.shapes) for f in a.frames[1:]]
