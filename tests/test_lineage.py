"""The ``lineage`` attribute of colonies: FiftyOne polyline attribute <-> CVAT text attribute.

Through the CVAT stand-in (loopback) driven by the real cvat-sdk client, whose requests and
answers are checked against CVAT's own OpenAPI schema (the ``cvat_server`` fixture fails a test on
any violation); the label configuration is compared with a text attribute as CVAT itself stores one
(../shared/data/cvat/rest_dumps/labels.json).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_engineering.create_fiftyone_dataset import run_pull
from data_engineering.label_config import label_config
from data_engineering.push import push_samples
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import ConversionLog, frame_labels, polylines_to_shapes
from quadratseg.formats.cvat_labels import LabelSpec, labels_from_raw_config, labels_to_raw_config
from quadratseg.formats.cvat_xml import Shape
from quadratseg.labelsets import LINEAGE_ATTRIBUTE, coral_labels

TRIANGLE = np.array([[10.0, 10.0], [60.0, 10.0], [30.0, 50.0]])


def lineage_spec_ids(server) -> set[int]:
    return {
        a["id"]
        for lab in server.state.labels.values()
        for a in lab["attributes"]
        if a["name"] == LINEAGE_ATTRIBUTE
    }


def test_label_config_has_a_text_attribute_as_cvat_stores_one(shared_data):
    raw = json.loads(label_config("segmentation", lineage=True))
    (attribute,) = [a for a in raw[0]["attributes"] if a["name"] == LINEAGE_ATTRIBUTE]
    # CVAT's own text attributes (REST dump of a real server): values hold the default
    dump = json.loads((shared_data / "cvat" / "rest_dumps" / "labels.json").read_text())
    labels = dump["results"] if isinstance(dump, dict) else dump
    theirs = next(
        a for lab in labels for a in lab["attributes"] if a["input_type"] == "text" and not a["default_value"]
    )
    assert {k: attribute[k] for k in ("input_type", "mutable", "values", "default_value")} == {
        k: theirs[k] for k in ("input_type", "mutable", "values", "default_value")
    }
    assert labels_from_raw_config(raw)[0].attribute(LINEAGE_ATTRIBUTE) is not None
    # the default configuration stays CRIOBE's (no lineage)
    assert all(
        a["name"] != LINEAGE_ATTRIBUTE
        for lab in json.loads(label_config("segmentation"))
        for a in lab["attributes"]
    )


def test_cvat_lineage_becomes_a_polyline_attribute_and_goes_back():
    labels = {"Porites": LabelSpec("Porites", "polygon")}
    shapes = [
        Shape("polygon", "Porites", points=TRIANGLE, attributes={"lineage": "L12", "confidence": "90"}),
        Shape("polygon", "Porites", points=TRIANGLE + 5, attributes={"lineage": ""}),  # CVAT's empty default
    ]
    fields = frame_labels(shapes, (100, 80), labels, log=ConversionLog())
    first, second = fields["gt_polylines"].polylines
    assert first["lineage"] == "L12" and not second.has_field("lineage")
    back = polylines_to_shapes(fields["gt_polylines"], (100, 80))
    assert back[0].attributes == {"confidence": "90", "lineage": "L12"}
    assert back[1].attributes == {}


@pytest.mark.slow
@pytest.mark.shared_data
def test_lineage_reaches_cvat_and_a_correction_comes_back_on_the_next_pull(
    cvat_server, cvat_settings, synthetic_set, dataset_name
):
    import fiftyone as fo

    source = dataset_name + "-src"
    try:
        run_pull(
            "synth",
            "xml",
            str(synthetic_set / "cvat_exports" / "segmentation"),
            dataset_name=source,
            settings=cvat_settings,
        )
        view = fo.load_dataset(source).match_tags("val")
        given = []
        for sample in view:
            for k, poly in enumerate(sample.gt_polylines.polylines):
                poly["lineage"] = f"{sample.quadrat_id or sample.cvat_frame}-{k}"
                given.append(poly["lineage"])
            sample.save()
        cvat_server.state.add_project("tracked", labels_to_raw_config(coral_labels(lineage=True)))
        (task_id,) = push_samples(
            view, "tracked", "gt_polylines", "polygons", "val", "tracked_val", cvat_settings
        )
    finally:
        if fo.dataset_exists(source):
            fo.delete_dataset(source)
    task = cvat_server.state.tasks[task_id]
    spec_ids = lineage_spec_ids(cvat_server)
    in_cvat = [a["value"] for s in task.shapes for a in s["attributes"] if a["spec_id"] in spec_ids]
    assert sorted(in_cvat) == sorted(given) and len(given) > 3

    task.record["status"] = "completed"
    run_pull("tracked", "cvat", dataset_name=dataset_name, settings=cvat_settings)
    pulled = [p["lineage"] for s in fo.load_dataset(dataset_name) for p in s.gt_polylines.polylines]
    assert sorted(pulled) == sorted(given)
    # lineage ids follow the polygons into the coarser taxonomy fields
    ds = fo.load_dataset(dataset_name)
    assert sorted(ds.distinct("gt_polylines_main_family.polylines.lineage")) == sorted(set(given))

    # an annotator corrects one colony's lineage in CVAT (an attribute edit, saved from the UI)
    shape = task.shapes[0]
    (old,) = [a["value"] for a in shape["attributes"] if a["spec_id"] in spec_ids]
    attributes = [dict(a, value="fused-7") if a["spec_id"] in spec_ids else a for a in shape["attributes"]]
    cvat_server.state.edit_shape(shape["id"], attributes=attributes)
    summary = run_pull("tracked", "cvat", dataset_name=dataset_name, settings=cvat_settings)
    assert summary["tasks_pulled"] == [task_id]
    again = [p["lineage"] for s in fo.load_dataset(dataset_name) for p in s.gt_polylines.polylines]
    expected = list(given)
    expected.remove(old)
    assert sorted(again) == sorted([*expected, "fused-7"])


@pytest.mark.shared_data
def test_push_to_a_project_without_the_attribute_is_refused(
    cvat_server, cvat_settings, tmp_path, dataset_name
):
    """Without the check, CVAT keeps only declared attributes and the lineage ids vanish in silence."""
    import cv2
    import fiftyone as fo

    image = tmp_path / "MooreaE2B_2020_05.png"
    cv2.imwrite(str(image), np.zeros((80, 100, 3), np.uint8))
    dataset = fo.Dataset(dataset_name)
    poly = fo.Polyline(
        label="Porites",
        points=[[tuple(p) for p in (TRIANGLE / [100, 80]).tolist()]],
        closed=True,
        filled=True,
    )
    poly["lineage"] = "L1"
    dataset.add_sample(fo.Sample(filepath=str(image), gt_polylines=fo.Polylines(polylines=[poly])))
    cvat_server.state.add_project("plain", labels_to_raw_config(coral_labels()))
    with pytest.raises(QuadratsegError, match=r"labels 'Porites' of CVAT project 'plain' have no 'lineage'"):
        push_samples(dataset, "plain", "gt_polylines", "polygons", "val", "t", cvat_settings)
    assert not cvat_server.state.tasks  # nothing created
    cvat_server.state.add_project("tracked", labels_to_raw_config(coral_labels(lineage=True)))
    (task_id,) = push_samples(dataset, "tracked", "gt_polylines", "masks", "val", "t", cvat_settings)
    (shape,) = cvat_server.state.tasks[task_id].shapes
    assert shape["type"] == "mask"
    assert [a["value"] for a in shape["attributes"] if a["spec_id"] in lineage_spec_ids(cvat_server)] == [
        "L1"
    ]
