import numpy as np
import pytest

from quadratseg.errors import CvatFormatError
from quadratseg.formats.cvat_xml import (
    CvatDocument,
    ImageAnnotations,
    Shape,
    TaskInfo,
    read_cvat_xml,
    write_cvat_xml,
)
from quadratseg.geometry import cvat_rle_to_mask, mask_to_cvat_rle
from quadratseg.labelsets import coral_labels, grid_labels


@pytest.mark.shared_data
def test_reads_datumaro_cvat_for_images(shared_data):
    doc = read_cvat_xml(shared_data / "datumaro" / "cvat_dataset" / "for_images" / "train.xml")
    assert [lab.name for lab in doc.labels] == ["label1", "label2", "skeleton"]
    label1 = doc.label("label1")
    assert [a.name for a in label1.attributes] == ["a1", "a2", "a3", "a4"]
    assert label1.attribute("a2").values == ["v1", "v2", "v3"]
    assert [s.name for s in doc.label("skeleton").sublabels] == ["1", "2", "3", "4"]
    img0, img1 = doc.images
    assert (img0.name, img0.width, img0.height) == ("img0.jpg", 8, 8)
    box, polyline, skeleton = img0.shapes
    assert box.type == "box" and box.occluded and box.z_order == 1
    assert box.points.tolist() == [[0, 2], [4, 4]] and box.attributes["a2"] == "v3"
    assert polyline.type == "polyline" and polyline.points.shape == (4, 2)
    assert [e.outside for e in skeleton.elements] == [True, False, False, False]
    assert skeleton.elements[1].points.tolist() == [[2, 2]]
    polygon, points, skeleton1 = img1.shapes
    assert polygon.type == "polygon" and len(polygon.points) == 3
    assert points.type == "points" and points.points.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert [e.outside for e in skeleton1.elements] == [False, False, True, False]


@pytest.mark.shared_data
def test_round_trip_of_the_datumaro_file(shared_data, tmp_path):
    doc = read_cvat_xml(shared_data / "datumaro" / "cvat_dataset" / "for_images" / "train.xml")
    again = read_cvat_xml(write_cvat_xml(doc, tmp_path / "a.xml"))
    assert [lab.name for lab in again.labels] == [lab.name for lab in doc.labels]
    assert again.label("label1").attribute("a4").values == ["2.4", "1", "-5.6"]
    for a, b in zip(doc.images, again.images, strict=True):
        assert [(s.type, s.label, s.occluded, s.attributes) for s in a.shapes] == [
            (s.type, s.label, s.occluded, s.attributes) for s in b.shapes
        ]
        for sa, sb in zip(a.shapes, b.shapes, strict=True):
            assert np.allclose(sa.points, sb.points)
            assert [e.outside for e in sa.elements] == [e.outside for e in sb.elements]


@pytest.mark.shared_data
def test_video_export_is_refused_with_advice(shared_data):
    with pytest.raises(CvatFormatError, match=r"CVAT for images 1\.1"):
        read_cvat_xml(shared_data / "datumaro" / "cvat_dataset" / "for_video" / "annotations.xml")


def test_project_export_round_trip_with_tasks_masks_and_skeletons(tmp_path):
    mask = np.zeros((20, 30), bool)
    mask[3:9, 4:15] = True
    grid_points = [
        Shape("points", str(i + 1), points=np.array([[i, i / 2]]), outside=i % 7 == 0) for i in range(117)
    ]
    doc = CvatDocument(
        labels=coral_labels() + grid_labels(),
        project_name="proj",
        project_id=5,
        tasks=[TaskInfo(11, "t_train", "train", 1), TaskInfo(12, "t_val", "val", 1)],
        images=[
            ImageAnnotations(
                0,
                "a.jpg",
                30,
                20,
                subset="train",
                task_id=11,
                shapes=[
                    Shape(
                        "polygon",
                        "Acropora",
                        points=np.array([[1, 1], [5.5, 1], [5, 4.25]]),
                        attributes={"confidence": "87"},
                    ),
                    Shape("mask", "Porites", rle=mask_to_cvat_rle(mask)),
                    Shape("skeleton", "grid", elements=grid_points),
                ],
            ),
            ImageAnnotations(1, "b.jpg", 30, 20, subset="val", task_id=12),
        ],
    )
    again = read_cvat_xml(write_cvat_xml(doc, tmp_path / "p.xml"))
    assert again.project_name == "proj" and again.project_id == 5
    assert [(t.id, t.name, t.subset) for t in again.tasks] == [(11, "t_train", "train"), (12, "t_val", "val")]
    assert [(i.subset, i.task_id) for i in again.images] == [("train", 11), ("val", 12)]
    polygon, mask_shape, skeleton = again.images[0].shapes
    assert polygon.attributes == {"confidence": "87"} and np.allclose(
        polygon.points, [[1, 1], [5.5, 1], [5, 4.25]]
    )
    assert np.array_equal(cvat_rle_to_mask(mask_shape.rle, (30, 20)), mask)
    assert len(skeleton.elements) == 117 and skeleton.elements[7].outside and not skeleton.elements[8].outside
    assert [s.name for s in again.label("grid").sublabels][-1] == "117"


@pytest.mark.parametrize(
    "content, message",
    [
        ("<annotations><image id='0' name='a' width='x' height='2'/></annotations>", "integer id"),
        (
            "<annotations><image id='0' name='a' width='2' height='2'>"
            "<polygon label='c' points='1,2;x'/></image></annotations>",
            "cannot read points",
        ),
        ("<annotations", "not valid XML"),
        ("<root/>", "expected <annotations>"),
        ("<annotations><version>2.0</version></annotations>", "version"),
        (
            "<annotations><meta><task><labels><label><name>1</name><parent>s</parent></label></labels></task></meta></annotations>",
            "parent",
        ),
    ],
)
def test_malformed_files_say_what_and_where(tmp_path, content, message):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(CvatFormatError, match=message):
        read_cvat_xml(path)


def test_missing_file(tmp_path):
    with pytest.raises(CvatFormatError, match="does not exist"):
        read_cvat_xml(tmp_path / "none.xml")


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.xml"
    target.write_text("previous")
    bad = CvatDocument(images=[ImageAnnotations(0, "a", 1, 1, shapes=[Shape("cuboid", "x")])])
    with pytest.raises(CvatFormatError):
        write_cvat_xml(bad, target)
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.xml"]
