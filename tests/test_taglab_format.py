"""TagLab's project format (quadratseg.formats.taglab) against TagLab's own sample project and label map.

The oracle is TagLab's data: its sample project (../shared/data/taglab, CC BY-NC-SA, read in place,
never copied) and the RGB label map TagLab rendered from the same regions; the keys and types the
writer must produce are those TagLab's loader reads (source/Project.py, Image.py, Blob.py,
Correspondences.py) and those the sample holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.formats.taglab import (
    PROJECT_KEYS,
    REGION_KEYS,
    TaglabLink,
    TaglabProject,
    TaglabRegion,
    TaglabSurvey,
    decode_contour,
    encode_contour,
    read_taglab_project,
    taglab_project_dict,
    write_taglab_project,
)

TAGLAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "taglab"
SAMPLE = TAGLAB / "small_annotated_area_project.json"
LABEL_MAP = TAGLAB / "VOS_label.png"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(), reason="TagLab's sample project is not in ../shared/data"
)


@pytest.fixture(scope="module")
def sample() -> TaglabProject:
    return read_taglab_project(SAMPLE)


@pytest.fixture(scope="module")
def sample_json() -> dict:
    return json.loads(SAMPLE.read_text())


def square(x0: float, y0: float, side: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], dtype=float)


def two_years() -> TaglabProject:
    """Two surveys of one plot: colony 1 grows, 2 splits into 20 and 21, 3 dies, 30 is born."""
    y1 = TaglabSurvey(
        "2019",
        "2019-05-01",
        400,
        300,
        0.5,
        [
            TaglabRegion(1, "Pocillopora", square(10, 10, 40), [square(20, 20, 10)], note="hole"),
            TaglabRegion(2, "Porite_massive", square(100, 100, 60)),
            TaglabRegion(3, "Pocillopora", square(300, 200, 20)),
        ],
        "plot/2019.png",
    )
    y2 = TaglabSurvey(
        "2020",
        "2020-05-03",
        400,
        300,
        0.5,
        [
            TaglabRegion(1, "Pocillopora", square(8, 8, 50)),
            TaglabRegion(20, "Porite_massive", square(100, 100, 25)),
            TaglabRegion(21, "Porite_massive", square(130, 130, 25)),
            TaglabRegion(30, "Pocillopora", square(250, 30, 15)),
        ],
        None,
    )
    links = [
        TaglabLink("2019", 1, "2020", 1, "grow", "none"),
        TaglabLink("2019", 2, "2020", 20, "shrink", "split"),
        TaglabLink("2019", 2, "2020", 21, "shrink", "split"),
        TaglabLink("2019", 3, "2020", None, "dead", "none"),
        TaglabLink("2019", -1, "2020", 30, "born", "none"),
    ]
    return TaglabProject([y1, y2], {"Pocillopora": (240, 110, 170), "Porite_massive": (109, 207, 246)}, links)


def test_contour_codec_is_taglabs():
    # Blob.toPoints: points x10 as integers, differences from the previous point (the first from 0, 0)
    assert encode_contour(np.array([[8.0, 114.4], [7.0, 114.4], [6.5, 114.0]])) == "80 1144 -10 0 -5 -4"
    assert decode_contour("80 1144 -10 0 -5 -4").tolist() == [[8.0, 114.4], [7.0, 114.4], [6.5, 114.0]]
    assert decode_contour([[1, 2], [3, 4], [5, 6]]).tolist() == [[1, 2], [3, 4], [5, 6]]  # older files
    with pytest.raises(QuadratsegError, match="not a TagLab contour"):
        decode_contour("80 1144 -10")


@needs_sample
def test_reads_taglabs_sample_project(sample):
    assert [s.name for s in sample.surveys] == ["VOS"]
    survey = sample.surveys[0]
    assert (survey.width, survey.height, survey.px_to_mm, survey.date) == (3175, 3176, 0.94, "2013-01-01")
    assert survey.image_path == "sampleProjects/data/VOS_RGB.png"
    assert len(survey.regions) == 308
    assert sum(1 for r in survey.regions if r.inner_contours_xy) == 52
    assert {r.class_name for r in survey.regions} == {
        "Montipora_plate/flabellata",
        "Pocillopora",
        "Porite_massive",
        "Montipora_crust/patula",
    }
    assert sample.classes["Pocillopora"] == (240, 110, 170)
    assert len(sample.classes) == 71 and sample.links == []
    first = survey.regions[0]
    assert first.contour_xy.shape[1] == 2 and first.contour_xy[0].tolist() == [8.0, 114.4]


@needs_sample
def test_regions_draw_taglabs_own_label_map(sample):
    """TagLab rendered VOS_label.png from these regions: our masks (TagLab's getMask) agree with it."""
    import cv2

    label_map = cv2.imread(str(LABEL_MAP), cv2.IMREAD_COLOR)[:, :, ::-1]
    survey = sample.surveys[0]
    assert label_map.shape[:2] == (survey.height, survey.width)
    for name in {r.class_name for r in survey.regions}:
        ours = np.zeros((survey.height, survey.width), bool)
        for region in (r for r in survey.regions if r.class_name == name):
            mask, (left, top) = region.mask()
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + mask.shape[0], survey.height), min(left + mask.shape[1], survey.width)
            ours[y0:y1, x0:x1] |= mask[y0 - top : y1 - top, x0 - left : x1 - left].astype(bool)
        theirs = (label_map == np.array(sample.classes[name])).all(axis=-1)
        assert (ours & theirs).sum() / (ours | theirs).sum() > 0.999, name


@needs_sample
def test_round_trip_through_the_sample_keeps_everything(sample, sample_json, tmp_path):
    out = tmp_path / "copy.json"
    write_taglab_project(sample, out)
    assert read_taglab_project(out) == sample
    written = json.loads(out.read_text())
    # every stored contour is written byte for byte as TagLab wrote it; its box and size as TagLab's
    theirs = sample_json["images"][0]["annotations"]["regions"]
    ours = written["images"][0]["annotations"]["regions"]
    assert [r["contour"] for r in ours] == [r["contour"] for r in theirs]
    assert [r["inner contours"] for r in ours] == [r["inner contours"] for r in theirs]
    assert sum(a["bbox"] == b["bbox"] for a, b in zip(ours, theirs, strict=True)) >= 307
    assert sum(a["area"] == b["area"] for a, b in zip(ours, theirs, strict=True)) >= 280  # same pixel count
    areas = np.array([[a["area"], b["area"]] for a, b in zip(ours, theirs, strict=True)])
    assert (np.abs(areas[:, 0] - areas[:, 1]) / areas[:, 1]).max() < 0.05  # the rest within 5 %


@needs_sample
def test_written_file_has_what_taglabs_loader_reads(sample, sample_json, tmp_path):
    out = tmp_path / "copy.json"
    write_taglab_project(sample, out)
    written = json.loads(out.read_text())
    # Project(**data): every key one of its arguments, the same set TagLab itself saved
    assert set(written) <= set(PROJECT_KEYS)
    assert set(written) == set(sample_json)
    image, their_image = written["images"][0], sample_json["images"][0]
    assert set(their_image) - set(image) == {"grid"}  # the grid of sampling cells is TagLab's own
    assert isinstance(image["map_px_to_mm_factor"], str)  # Project.py: "pixel size MUST BE a string"
    assert image["channels"] == their_image["channels"]
    region, their_region = image["annotations"]["regions"][0], their_image["annotations"]["regions"][0]
    assert set(REGION_KEYS) <= set(region) and set(region) == set(their_region)
    for key in region:
        assert type(region[key]) is type(their_region[key]), key
    label = written["labels"]["Pocillopora"]
    assert set(label) == set(sample_json["labels"]["Pocillopora"]) and label["fill"] == [240, 110, 170]


def test_links_written_as_taglabs_correspondences(tmp_path):
    project = two_years()
    out = tmp_path / "plot.json"
    write_taglab_project(project, out)
    back = read_taglab_project(out)
    expected = list(project.links)
    expected[4] = TaglabLink("2019", None, "2020", 30, "born", "none")  # TagLab's -1 reads as None
    assert back.links == expected
    assert back.surveys == project.surveys
    table = json.loads(out.read_text())["correspondences"]["2019-2020"]
    assert (table["source"], table["target"]) == ("2019", "2020")
    rows = table["correspondences"]
    assert all(len(row) == 8 for row in rows)  # Genet, Blob1, Blob2, Area1, Area2, Class, Action, Split\Fuse
    grow = rows[0]
    # Correspondences.area_in_sq_cm: px^2 * (mm/px)^2 / 100; TagLab's mask of a 40 px square holds 41 x 41
    # pixel centres, less the hole's interior
    assert grow[:3] == [-1, 1, 1] and grow[5:] == ["Pocillopora", "grow", "none"]
    assert grow[3] == pytest.approx(project.surveys[0].regions[0].area_px * 0.25 / 100)
    assert rows[3][:3] == [-1, 3, -1] and rows[3][4] == 0.0 and rows[4][:3] == [-1, -1, 30]


def test_missing_key_is_named(sample_json, tmp_path):
    broken = json.loads(json.dumps(sample_json))
    del broken["images"][0]["annotations"]["regions"][5]["inner contours"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(
        QuadratsegError, match=r"region 5 \(id 5\): the region lacks 'inner contours', which TagLab's loader"
    ):
        read_taglab_project(path)
    del broken["images"][0]["map_px_to_mm_factor"]
    path.write_text(json.dumps(broken))
    with pytest.raises(QuadratsegError, match="lacks 'map_px_to_mm_factor'"):
        read_taglab_project(path)


@needs_sample
def test_region_class_absent_from_labels_is_refused(sample_json, tmp_path):
    broken = json.loads(json.dumps(sample_json))
    broken["images"][0]["annotations"]["regions"][7]["class name"] = "Pocilopora"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(QuadratsegError, match=r"region 7: class 'Pocilopora' is not among .*'Pocillopora'"):
        read_taglab_project(path)


def test_writer_refuses_bad_projects_and_leaves_no_file(tmp_path):
    out = tmp_path / "plot.json"
    project = two_years()
    project.surveys[1].regions[0].class_name = "Acropora"
    with pytest.raises(QuadratsegError, match="class 'Acropora' is not among"):
        write_taglab_project(project, out)
    project = two_years()
    project.links.append(TaglabLink("2019", 99, "2020", 1, "same", "none"))
    with pytest.raises(QuadratsegError, match="no region with id 99"):
        write_taglab_project(project, out)
    project = two_years()
    project.links[0].event = "grew"
    with pytest.raises(QuadratsegError, match="event 'grew'"):
        write_taglab_project(project, out)
    project = two_years()
    project.surveys[0].date = "2019"
    with pytest.raises(QuadratsegError, match="not YYYY-MM-DD"):
        write_taglab_project(project, out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_surveys_come_in_date_order_and_scale_is_required(tmp_path):
    data = taglab_project_dict(two_years())
    data["images"].reverse()
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    assert [s.name for s in read_taglab_project(path).surveys] == ["2019", "2020"]
    data["images"][0]["map_px_to_mm_factor"] = ""
    path.write_text(json.dumps(data))
    with pytest.raises(QuadratsegError, match="map_px_to_mm_factor '' is not a positive number"):
        read_taglab_project(path)
