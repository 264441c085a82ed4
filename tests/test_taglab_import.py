"""Import of a TagLab project into FiftyOne and CVAT (data_engineering.taglab_import).

The oracle is TagLab's own label map of its sample project (VOS_label.png, rendered by TagLab from
the same regions): the imported colonies, drawn by the core's rasterizer and, after the push, by
CVAT's own decoders (cvat-sdk's ``decode_mask``, PIL for polygons: tests/cvat_oracle.py), must cover
the same pixels class by class. The sample's RGB map is not distributed: the label map, of the same
size, stands in for it as the survey's picture (a copy under tmp_path, never in the repository).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_engineering.taglab_import import import_taglab_project, taglab_import
from quadratseg.errors import QuadratsegError
from quadratseg.formats.taglab import TaglabProject, TaglabRegion, TaglabSurvey, write_taglab_project
from quadratseg.taxonomy import load_taxonomy

TAGLAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "taglab"
SAMPLE = TAGLAB / "small_annotated_area_project.json"
LABEL_MAP = TAGLAB / "VOS_label.png"
MAPPING = {
    "Montipora_plate/flabellata": "Montipora",
    "Montipora_crust/patula": "Montipora",
    "Pocillopora": "Pocillopora",
    "Porite_massive": "Porites",
}
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(), reason="TagLab's sample project is not in ../shared/data"
)


def write_mapping(path: Path, mapping: dict[str, str]) -> Path:
    path.write_text("taglab,label\n" + "".join(f"{k},{v}\n" for k, v in mapping.items()))
    return path


@pytest.fixture
def sample_maps(tmp_path) -> Path:
    """The folder of the sample's maps: the label map under the RGB map's name."""
    folder = tmp_path / "maps"
    folder.mkdir()
    shutil.copyfile(LABEL_MAP, folder / "VOS_RGB.png")
    return folder


def class_masks(label_map_path: Path) -> dict[str, np.ndarray]:
    """TagLab's pixels of each TagLab class in its label map, bool (H, W)."""
    import cv2

    label_map = cv2.imread(str(label_map_path), cv2.IMREAD_COLOR)[:, :, ::-1]
    colours = {
        name: label["fill"]
        for name, label in json.loads(SAMPLE.read_text())["labels"].items()
        if name in MAPPING
    }
    return {name: (label_map == np.array(rgb)).all(axis=-1) for name, rgb in colours.items()}


def truth_per_label(label_map_path: Path) -> dict[str, np.ndarray]:
    """TagLab's pixels per label of ours (the mapping merges both Montipora classes)."""
    out: dict[str, np.ndarray] = {}
    for name, mask in class_masks(label_map_path).items():
        label = MAPPING[name]
        out[label] = out[label] | mask if label in out else mask
    return out


@needs_sample
@pytest.mark.slow
def test_sample_project_imports_as_taglab_drew_it(tmp_path, sample_maps, dataset_name):
    import fiftyone as fo

    from quadratseg.geometry import PolygonWithHoles, polygons_to_mask

    summary = json.loads(
        taglab_import(
            str(SAMPLE), str(write_mapping(tmp_path / "map.csv", MAPPING)), dataset_name, str(sample_maps)
        )
    )
    assert summary["surveys_imported"] == ["VOS"] and summary["surveys_skipped"] == {}
    assert summary["regions_per_label"] == {"Montipora": 196, "Pocillopora": 60, "Porites": 52}
    dataset = fo.load_dataset(dataset_name)
    assert not fo.dataset_exists(dataset_name + ".importing")
    # read through aggregations: a whole map of colonies is slow to build as Python documents
    assert dataset.values("taglab_survey") == ["VOS"] and dataset.values("year") == [2013]
    assert dataset.values("acquisition_date") == ["2013-01-01"] and dataset.values("px_to_mm") == [0.94]
    (size,) = zip(dataset.values("metadata.width"), dataset.values("metadata.height"), strict=True)
    (labels,) = dataset.values("gt_polylines.polylines.label")
    (rings_all,) = dataset.values("gt_polylines.polylines.points")
    (ids,) = dataset.values("gt_polylines.polylines.taglab_id")
    (areas,) = dataset.values("gt_polylines.polylines.area_cm2")
    assert len(labels) == 308 and sum(len(r) > 1 for r in rings_all) == 52  # holes kept as rings
    assert set(dataset.distinct("gt_polylines.polylines.taglab_class")) == set(MAPPING)
    assert dataset.distinct("gt_polylines_main_family.polylines.label") == [
        "Acroporidae",
        "Pocilloporidae",
        "Poritidae",
    ]
    assert ids[0] == 0 and areas[0] == pytest.approx(14496 * 0.94**2 / 100, rel=1e-3)
    # the colonies cover TagLab's own pixels, label by label, as the core rasterizes them
    for label, truth in truth_per_label(LABEL_MAP).items():
        rings = [
            [np.asarray(r) * size for r in p]
            for p, lab in zip(rings_all, labels, strict=True)
            if lab == label
        ]
        ours = polygons_to_mask([PolygonWithHoles(r[0], r[1:]) for r in rings], size)
        assert (ours & truth).sum() / (ours | truth).sum() > 0.995, label


@needs_sample
def test_unmapped_class_stops_the_import_naming_close_matches(tmp_path, sample_maps, dataset_name):
    import fiftyone as fo

    partial = {k: v for k, v in MAPPING.items() if k != "Porite_massive"}
    partial["Porite_masive"] = "Porites"  # a typo in the mapping file
    with pytest.raises(
        QuadratsegError,
        match=r"'Porite_massive' has no mapping \(close rows: 'Porite_masive'; "
        r"close finegrained labels: 'Porites'.*Add a row",
    ):
        import_taglab_project(
            SAMPLE,
            write_mapping(tmp_path / "m.csv", partial),
            dataset_name,
            load_taxonomy(),
            images_dir=sample_maps,
        )
    wrong = {**MAPPING, "Pocillopora": "Pocilopora"}
    with pytest.raises(
        QuadratsegError,
        match=r"maps to 'Pocilopora', which is not a finegrained label \(did you mean 'Pocillopora'",
    ):
        import_taglab_project(
            SAMPLE,
            write_mapping(tmp_path / "m.csv", wrong),
            dataset_name,
            load_taxonomy(),
            images_dir=sample_maps,
        )
    assert not fo.dataset_exists(dataset_name) and not fo.dataset_exists(dataset_name + ".importing")


def square(x0: float, y0: float, side: float) -> np.ndarray:
    return np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], dtype=float)


def test_a_survey_without_its_map_is_skipped_with_the_reason(tmp_path, dataset_name):
    import cv2
    import fiftyone as fo

    surveys = [
        TaglabSurvey(
            year,
            f"{year}-06-01",
            120,
            90,
            2.0,
            [
                TaglabRegion(1, "Porites lobata", square(10, 10, 30), [square(20, 20, 5)]),
                TaglabRegion(2, "Sand", square(60, 50, 20)),
            ],
            f"maps/{year}.png",
        )
        for year in ("2019", "2020", "2021")
    ]
    project = TaglabProject(surveys, {"Porites lobata": (1, 2, 3), "Sand": (4, 5, 6)})
    path = tmp_path / "plot.json"
    write_taglab_project(project, path)
    (tmp_path / "maps").mkdir()
    cv2.imwrite(str(tmp_path / "maps" / "2019.png"), np.zeros((90, 120, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "maps" / "2021.png"), np.zeros((100, 120, 3), np.uint8))  # another size
    mapping = write_mapping(tmp_path / "m.csv", {"Porites lobata": "Porites", "Sand": "ignore"})
    summary = import_taglab_project(path, mapping, dataset_name, load_taxonomy())
    assert summary["surveys_imported"] == ["2019"]
    assert (
        "is not at" in summary["surveys_skipped"]["2020"]
        and "--images-dir" in summary["surveys_skipped"]["2020"]
    )
    assert "is 120x100 px but the project says 120x90" in summary["surveys_skipped"]["2021"]
    assert summary["regions_ignored"] == 1
    (poly,) = fo.load_dataset(dataset_name).first().gt_polylines.polylines
    # TagLab's pixel centres (integers) -> the core's (half pixels), normalized
    assert np.allclose(np.asarray(poly.points[0]) * [120, 90], square(10, 10, 30) + 0.5)
    assert poly.area_cm2 == pytest.approx((31 * 31 - 6 * 6) * 4 / 100)  # TagLab's pixel count, 2 mm px
    with pytest.raises(QuadratsegError, match="exists; pass --overwrite"):
        import_taglab_project(path, mapping, dataset_name, load_taxonomy())
    shutil.rmtree(tmp_path / "maps")
    with pytest.raises(QuadratsegError, match=r"no survey of .* could be imported: 2019: "):
        import_taglab_project(path, mapping, dataset_name, load_taxonomy(), overwrite=True)
    assert fo.load_dataset(dataset_name).count() == 1  # the dataset is left as it was


@needs_sample
@pytest.mark.slow
@pytest.mark.shared_data
def test_imported_colonies_reach_cvat_as_taglab_drew_them(
    tmp_path, sample_maps, dataset_name, cvat_server, cvat_settings
):
    import fiftyone as fo
    from cvat_oracle import polygon_raster
    from cvat_sdk.masks import decode_mask

    from data_engineering.push import push_samples
    from quadratseg.formats.cvat_labels import labels_to_raw_config
    from quadratseg.labelsets import coral_labels

    import_taglab_project(
        SAMPLE,
        write_mapping(tmp_path / "m.csv", MAPPING),
        dataset_name,
        load_taxonomy(),
        images_dir=sample_maps,
    )
    cvat_server.state.add_project("plot", labels_to_raw_config(coral_labels()))
    settings = cvat_settings.replace(cvat_timeout_s=120.0)  # one request carries 308 shapes of a 10 Mpx map
    (task_id,) = push_samples(
        fo.load_dataset(dataset_name), "plot", "gt_polylines", "polygons", "train", "vos", settings
    )
    task = cvat_server.state.tasks[task_id]
    names = {lab["id"]: lab["name"] for lab in cvat_server.state.labels.values()}
    assert len(task.shapes) == 308
    assert sum(s["type"] == "mask" for s in task.shapes) == 52  # the colonies with holes
    size = (3175, 3176)
    drawn: dict[str, np.ndarray] = {}
    for shape in task.shapes:
        if shape["type"] == "mask":
            mask = decode_mask(shape["points"], image_width=size[0], image_height=size[1])
        else:
            mask = polygon_raster(shape["points"], size)
        label = names[shape["label_id"]]
        drawn[label] = drawn[label] | mask if label in drawn else mask
    # PIL draws a polygon's outline pixels too (half a pixel more all round): small colonies lose
    # a little IoU to that, none of TagLab's pixels is missed
    for label, truth in truth_per_label(LABEL_MAP).items():
        both = (drawn[label] & truth).sum()
        covered, iou = both / truth.sum(), both / (drawn[label] | truth).sum()
        assert covered > 0.995 and iou > 0.96, (label, covered, iou)


def test_command_line_names_the_bad_input(tmp_path):
    """``python -m data_engineering.taglab_import``: --help, and a clear one-line error (exit 2)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]

    def run(*args):
        env = {**os.environ, "PAGER": "cat"}
        command = [sys.executable, "-m", "data_engineering.taglab_import", *args]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, timeout=300)

    shown = run("--help")
    assert shown.returncode == 0 and "MAPPING" in shown.stderr and "--images_dir" in shown.stderr
    project = tmp_path / "plot.json"
    project.write_text(json.dumps({"labels": {}, "images": [{"id": "2019", "width": 10}]}))
    failed = run(str(project), "--mapping", str(tmp_path / "m.csv"))
    assert failed.returncode == 2
    assert "image 0 ('2019'): the image lacks 'height', 'map_px_to_mm_factor', 'annotations'" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_taglab_correspondences_give_every_colony_its_lineage(tmp_path, dataset_name):
    """A plot surveyed three times with TagLab's correspondences: colony 1 grows, colony 2 splits in two
    (3 and 4 in 2020), colony 5 dies, 6 is born in 2020; in 2021 the two pieces fuse again. Every
    imported colony carries the lineage the links give (as pipeline.track names them), the pieces of a
    split a suffix, a fusion its parents; before, the correspondences were read and dropped and no
    colony had a lineage to push to CVAT."""
    import cv2
    import fiftyone as fo

    from quadratseg.formats.taglab import TaglabLink

    def survey(year, regions):
        return TaglabSurvey(year, f"{year}-06-01", 200, 100, 2.0, regions, f"maps/{year}.png")

    surveys = [
        survey("2019", [TaglabRegion(1, "P", square(10, 10, 20)), TaglabRegion(2, "P", square(60, 10, 40)),
                        TaglabRegion(5, "P", square(150, 60, 10))]),
        survey("2020", [TaglabRegion(1, "P", square(10, 10, 24)), TaglabRegion(3, "P", square(60, 10, 18)),
                        TaglabRegion(4, "P", square(82, 10, 16)), TaglabRegion(6, "P", square(150, 10, 8))]),
        survey("2021", [TaglabRegion(1, "P", square(10, 10, 26)), TaglabRegion(7, "P", square(60, 10, 40)),
                        TaglabRegion(6, "P", square(150, 10, 9))]),
    ]  # fmt: skip
    links = [
        TaglabLink("2019", 1, "2020", 1, "grow"),
        TaglabLink("2019", 2, "2020", 3, "shrink", "split"),
        TaglabLink("2019", 2, "2020", 4, "shrink", "split"),
        TaglabLink("2019", 5, "2020", None, "dead"),
        TaglabLink("2019", None, "2020", 6, "born"),
        TaglabLink("2020", 1, "2021", 1, "grow"),
        TaglabLink("2020", 3, "2021", 7, "grow", "fuse"),
        TaglabLink("2020", 4, "2021", 7, "grow", "fuse"),
        TaglabLink("2020", 6, "2021", 6, "grow"),
    ]
    path = tmp_path / "plot.json"
    write_taglab_project(TaglabProject(surveys, {"P": (1, 2, 3)}, links), path)
    (tmp_path / "maps").mkdir()
    for year in ("2019", "2020", "2021"):
        cv2.imwrite(str(tmp_path / "maps" / f"{year}.png"), np.zeros((100, 200, 3), np.uint8))
    summary = import_taglab_project(
        path, write_mapping(tmp_path / "m.csv", {"P": "Porites"}), dataset_name, load_taxonomy()
    )
    assert summary["surveys_imported"] == ["2019", "2020", "2021"]
    lineage = {}
    for sample in fo.load_dataset(dataset_name).sort_by("acquisition_date"):
        for poly in sample.gt_polylines.polylines:
            lineage[(sample.taglab_survey, poly.taglab_id)] = (poly.lineage, poly.parents)
    assert lineage == {
        ("2019", 1): ("L1", ""),
        ("2019", 2): ("L2", ""),
        ("2019", 5): ("L3", ""),
        ("2020", 1): ("L1", ""),
        ("2020", 3): ("L2.1", ""),
        ("2020", 4): ("L2.2", ""),
        ("2020", 6): ("L4", ""),
        ("2021", 1): ("L1", ""),
        ("2021", 7): ("L2.1", "L2.1;L2.2"),
        ("2021", 6): ("L4", ""),
    }


def test_a_taglab_class_with_spaces_or_another_unicode_form_finds_its_mapping_row(tmp_path):
    """TagLab keeps a class name as typed ("Porites " with a trailing space; "Porités" composed), the
    mapping CSV as the user's editor wrote it (the row stripped; "Porités" decomposed): the same names.
    Before, the import stopped with "'Porites ' has no mapping (close rows: 'Porites')", naming the very
    row the user wrote, which nothing in the CSV could change."""
    import unicodedata

    from data_engineering.taglab_import import check_class_mapping, read_class_mapping

    composed = unicodedata.normalize("NFC", "Porités")
    survey = TaglabSurvey(
        "2019",
        "2019-06-01",
        100,
        100,
        2.0,
        [TaglabRegion(1, "Porites ", square(10, 10, 20)), TaglabRegion(2, composed, square(50, 50, 20))],
    )
    project = TaglabProject([survey], {"Porites ": (1, 2, 3), composed: (4, 5, 6)})
    path = tmp_path / "m.csv"
    path.write_text(f'taglab,label\n"Porites ",Porites\n{unicodedata.normalize("NFD", "Porités")},Porites\n')
    mapping = check_class_mapping(project, read_class_mapping(path), load_taxonomy(), "finegrained", "plot")
    assert mapping == {"Porites ": "Porites", composed: "Porites"}


def _png_header(width: int, height: int) -> bytes:
    """A PNG file's signature, IHDR and IEND only: a reader learns the size from it without pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_an_orthomosaic_larger_than_pil_opens_by_default_is_imported(tmp_path, dataset_name):
    """A 15000 x 15000 px map (225 Mpx, above PIL's 179 Mpx guard against decompression bombs) is a
    plot's ordinary orthomosaic: its size is read from its header, never its pixels. Before, PIL's
    DecompressionBombError escaped the import and stopped every survey of the project."""
    survey = TaglabSurvey(
        "2019", "2019-06-01", 15000, 15000, 1.0, [TaglabRegion(1, "P", square(10, 10, 20))], "big.png"
    )
    path = tmp_path / "plot.json"
    write_taglab_project(TaglabProject([survey], {"P": (1, 2, 3)}), path)
    (tmp_path / "big.png").write_bytes(_png_header(15000, 15000))
    summary = import_taglab_project(
        path, write_mapping(tmp_path / "m.csv", {"P": "Porites"}), dataset_name, load_taxonomy()
    )
    assert summary["surveys_imported"] == ["2019"], summary


def test_maps_of_one_file_name_in_survey_folders_are_told_apart(tmp_path, dataset_name):
    """TagLab saved each survey's map as ortho.png in a folder of its year. With --images-dir holding
    the year folders, each survey takes its own map; with --images-dir at one year's folder, the other
    survey is skipped with the reason rather than put on the same picture (before: both surveys took
    maps/2019/ortho.png without a word)."""
    import cv2

    regions = [TaglabRegion(1, "P", square(5, 5, 10))]
    surveys = [
        TaglabSurvey(year, f"{year}-06-01", 40, 30, 2.0, regions, f"D:\\reef\\{year}\\ortho.png")
        for year in ("2019", "2020")
    ]
    path = tmp_path / "plot.json"
    write_taglab_project(TaglabProject(surveys, {"P": (1, 2, 3)}), path)
    for year, grey in (("2019", 40), ("2020", 200)):
        (tmp_path / "maps" / year).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "maps" / year / "ortho.png"), np.full((30, 40, 3), grey, np.uint8))
    mapping = write_mapping(tmp_path / "m.csv", {"P": "Porites"})
    summary = import_taglab_project(
        path, mapping, dataset_name, load_taxonomy(), images_dir=tmp_path / "maps"
    )
    assert summary["surveys_imported"] == ["2019", "2020"], summary
    import fiftyone as fo

    files = dict(zip(*fo.load_dataset(dataset_name).values(["taglab_survey", "filepath"]), strict=True))
    assert files == {y: str((tmp_path / "maps" / y / "ortho.png").resolve()) for y in ("2019", "2020")}
    summary = import_taglab_project(
        path, mapping, dataset_name, load_taxonomy(), images_dir=tmp_path / "maps" / "2019", overwrite=True
    )
    assert summary["surveys_imported"] == ["2019"]
    assert "the map of survey '2019'" in summary["surveys_skipped"]["2020"]
