"""python -m pipeline.track --taglab: TagLab projects in (read by quadratseg.formats.taglab, TagLab's
own format), links with TagLab's region ids and the project with our correspondences out; TagLab's
sample project (../shared/data/taglab) as a plot surveyed twice."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.formats.taglab import (
    PIXEL_CENTRE_OFFSET,
    TaglabProject,
    TaglabRegion,
    TaglabSurvey,
    read_taglab_project,
    write_taglab_project,
)
from quadratseg.instances import Instance
from quadratseg.synth.years import YearsConfig, simulate_quadrat, true_rows
from quadratseg.track.evaluate import LinkScore, score_interval
from quadratseg.track.matching import Link

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "taglab" / "small_annotated_area_project.json"


def python_m(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def region(region_id: int, mask: np.ndarray, label: str, shift=(0.0, 0.0)) -> TaglabRegion:
    part = Instance.from_mask(label, 1.0, mask).polygons[0]
    return TaglabRegion(
        region_id,
        label,
        part.exterior - PIXEL_CENTRE_OFFSET + shift,
        [h - PIXEL_CENTRE_OFFSET + shift for h in part.holes],
    )


def synthetic_project(shift=(0.0, 0.0)) -> tuple[TaglabProject, list[Link], list[list[int]]]:
    """Two surveys of a simulated plot as a TagLab project (region ids 100 + index), the second one's
    regions moved by ``shift`` px; the true rows with colony indices."""
    config = YearsConfig(years=2, size=384, colonies=14, max_shift=0.0, max_turn_deg=0.0)
    world = simulate_quadrat(config, 3)
    surveys, ids = [], []
    for y in range(2):
        kept = [k for k, m in enumerate(world.masks[y]) if m.any()]
        regions = [
            region(100 + k, world.masks[y][k], world.colonies[y][k].label, shift if y else (0.0, 0.0))
            for k in kept
        ]
        ids.append(kept)
        surveys.append(TaglabSurvey(f"plot_{2019 + y}", f"{2019 + y}-06-01", 384, 384, 2.0, regions))
    labels = sorted({c.label for cs in world.colonies for c in cs})
    project = TaglabProject(surveys, dict.fromkeys(labels, (200, 100, 50)))
    labels_by_year = ([c.label for c in world.colonies[0]], [c.label for c in world.colonies[1]])
    truth = true_rows(world.masks[0], world.masks[1], labels_by_year, world.pairs[0])
    return project, truth, ids


def score(links: list[dict[str, str]], truth: list[Link], ids: list[list[int]]) -> dict:
    predicted = [
        Link(
            ids[0].index(int(r["source_id"]) - 100) if r["source_id"] else None,
            ids[1].index(int(r["target_id"]) - 100) if r["target_id"] else None,
            r["class"],
            r["event"],
            r["split_fuse"],
        )
        for r in links
    ]
    total = LinkScore()
    n = (len(ids[0]), len(ids[1]))
    areas = ([0.0] * n[0], [0.0] * n[1])
    total.add(
        score_interval(
            predicted, truth, {i: i for i in range(n[0])}, {j: j for j in range(n[1])}, areas, areas
        )
    )
    return total.metrics()


@pytest.mark.slow
def test_taglab_project_links_keep_region_ids_and_come_back_as_correspondences(tmp_path):
    project, truth, ids = synthetic_project()
    write_taglab_project(project, tmp_path / "plot.json")
    result = python_m(
        "pipeline.track", "--taglab", str(tmp_path / "plot.json"), "--out", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    links = read_csv(tmp_path / "out" / "links.csv")
    metrics = score(links, truth, ids)
    assert metrics["link_precision"] >= 0.95 and metrics["link_recall"] >= 0.95, metrics
    assert all(r["source_survey"] == "plot_2019" and r["target_survey"] == "plot_2020" for r in links)
    back = read_taglab_project(tmp_path / "out" / "taglab_project.json")  # TagLab's format, read back
    pairs = {(k.source_id, k.target_id, k.event, k.split_fuse) for k in back.links}
    expected = {
        (int(r["source_id"]) if r["source_id"] else None, int(r["target_id"]) if r["target_id"] else None,
         r["event"], r["split_fuse"])
        for r in links
    }  # fmt: skip
    assert pairs == expected and len(back.surveys) == 2


def test_shifted_maps_lose_links_unless_aligned_from_outlines(tmp_path):
    project, truth, ids = synthetic_project(shift=(9.0, -7.0))
    write_taglab_project(project, tmp_path / "plot.json")
    from pipeline.tracking import track_taglab_project

    as_given = track_taglab_project(tmp_path / "plot.json", tmp_path / "given", report=False)
    aligned = track_taglab_project(
        tmp_path / "plot.json", tmp_path / "aligned", align_outlines=True, report=False
    )
    given = score(read_csv(tmp_path / "given" / "links.csv"), truth, ids)
    fixed = score(read_csv(tmp_path / "aligned" / "links.csv"), truth, ids)
    assert fixed["link_recall"] >= 0.95 and fixed["link_precision"] >= 0.95, fixed
    assert given["link_recall"] < fixed["link_recall"] or given["link_precision"] < fixed["link_precision"]
    assert aligned["registration_residual_px"] < 2.0 and as_given["registration_residual_px"] == 0.0


@pytest.mark.skipif(
    not SAMPLE.is_file(), reason="TagLab's sample project is in ../shared/data/taglab (absent)"
)
@pytest.mark.slow
def test_taglab_sample_plot_surveyed_twice(tmp_path):
    """TagLab's own sample (one survey, 308 regions): alone it is refused; surveyed again a year later
    with one colony gone and one shrunk to a part of itself, every other region stays the same."""
    sample = read_taglab_project(SAMPLE)
    python = python_m("pipeline.track", "--taglab", str(SAMPLE), "--out", str(tmp_path / "alone"))
    assert python.returncode == 2 and "has 1 survey(s)" in python.stderr
    first = sample.surveys[0]
    gone, shrunk = first.regions[0].id, first.regions[1]
    centre = shrunk.contour_xy.mean(axis=0)
    smaller = replace(shrunk, contour_xy=centre + 0.7 * (shrunk.contour_xy - centre), inner_contours_xy=[])
    later = replace(
        first,
        name="VOS_2014",
        date="2014-01-01",
        regions=[smaller if r.id == shrunk.id else r for r in first.regions if r.id != gone],
    )
    write_taglab_project(replace(sample, surveys=[first, later]), tmp_path / "two.json")
    two, out = str(tmp_path / "two.json"), str(tmp_path / "out")
    result = python_m("pipeline.track", "--taglab", two, "--out", out, "--matcher", "taglab")
    assert result.returncode == 0, result.stderr[-3000:]
    links = read_csv(tmp_path / "out" / "links.csv")
    events = {(r["source_id"], r["target_id"]): r["event"] for r in links}
    assert events[(str(gone), "")] == "dead"
    assert events[(str(shrunk.id), str(shrunk.id))] == "shrink"
    same = [r for r in links if r["source_id"] == r["target_id"] and r["source_id"] != str(shrunk.id)]
    assert len(same) == len(first.regions) - 2 and all(r["event"] == "same" for r in same)
    assert all(float(r["iou"]) == 1.0 for r in same)
    colonies = read_csv(tmp_path / "out" / "colonies.csv")
    assert {r["class"] for r in links} <= set(sample.classes) and colonies[0]["finegrained"] == ""


def rectangles(*boxes: tuple[int, int, int, int], size: int = 100) -> np.ndarray:
    """A bool (size, size) mask of the boxes (y0, y1, x0, x1)."""
    mask = np.zeros((size, size), bool)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize("matcher", ["graph", "taglab"])
def test_lineage_ids_stay_unique_when_two_fusions_take_pieces_of_one_colony(tmp_path, matcher):
    """A large colony A between two small ones B1 and B2 breaks in three: its top strip fuses with
    B1, its bottom strip with B2, its middle stays alone. Each fusion's largest source is A; the two
    must not share A's lineage id: every colony of a survey has its own, which names its ancestry."""
    from pipeline.tracking import track_taglab_project

    a = rectangles((20, 60, 20, 60))
    b1, b2 = rectangles((20, 30, 10, 20)), rectangles((50, 60, 60, 70))
    x = rectangles((20, 30, 10, 20), (20, 30, 20, 50))  # B1 + 300 px of A's top strip
    y = rectangles((50, 60, 60, 70), (50, 60, 30, 60))  # B2 + 300 px of A's bottom strip
    z = rectangles((30, 50, 20, 60))  # the rest of A's middle
    surveys = [
        TaglabSurvey(name, date, 100, 100, 2.0, [region(k + 1, m, "Porites") for k, m in enumerate(masks)])
        for name, date, masks in (("y2019", "2019-06-01", [a, b1, b2]), ("y2020", "2020-06-01", [x, y, z]))
    ]
    write_taglab_project(TaglabProject(surveys, {"Porites": (0, 162, 232)}), tmp_path / "plot.json")
    track_taglab_project(tmp_path / "plot.json", tmp_path / "out", matcher, report=False)
    colonies = read_csv(tmp_path / "out" / "colonies.csv")
    later = {r["colony_id"]: r for r in colonies if r["survey"] == "y2020"}
    first = {r["colony_id"]: r["lineage"] for r in colonies if r["survey"] == "y2019"}
    assert len({r["lineage"] for r in later.values()}) == 3, later
    lineage_a = first["1"]
    for piece in later.values():  # every piece of A says so in its id, as split pieces do
        assert piece["lineage"].startswith(f"{lineage_a}."), piece
    assert later["1"]["parents"] == ";".join(sorted([lineage_a, first["2"]]))
    assert later["2"]["parents"] == ";".join(sorted([lineage_a, first["3"]]))


@pytest.mark.parametrize("matcher", ["graph", "taglab"])
def test_regions_of_class_empty_are_not_followed(tmp_path, matcher):
    """TagLab's own correspondences skip class Empty (unclassified regions): no link, no death, no
    recruit, no colony row and no demography row for them; the other regions' rows are those of the
    project without them."""
    from pipeline.tracking import track_taglab_project

    project, _, _ = synthetic_project()
    (tmp_path / "plain").mkdir()  # the plot is named after the file: plot.json both times
    write_taglab_project(project, tmp_path / "plain" / "plot.json")
    track_taglab_project(tmp_path / "plain" / "plot.json", tmp_path / "plain" / "out", matcher, report=False)
    blank = np.zeros((384, 384), bool)
    early, late, both = blank.copy(), blank.copy(), blank.copy()
    early[2:8, 2:8] = True  # only in 2019: would be dead
    late[376:382, 376:382] = True  # only in 2020: would be a recruit
    both[2:8, 376:382] = True  # in both: would be a link
    project.surveys[0].regions += [region(900, early, "Empty"), region(902, both, "Empty")]
    project.surveys[1].regions += [region(901, late, "Empty"), region(902, both, "Empty")]
    write_taglab_project(project, tmp_path / "plot.json")
    track_taglab_project(tmp_path / "plot.json", tmp_path / "out", matcher, report=False)
    links = read_csv(tmp_path / "out" / "links.csv")
    assert not [
        r for r in links if r["class"] == "Empty" or {r["source_id"], r["target_id"]} & {"900", "901", "902"}
    ]
    colonies = read_csv(tmp_path / "out" / "colonies.csv")
    assert "Empty" not in {r["label"] for r in colonies}
    demography = read_csv(tmp_path / "out" / "demography.csv")
    assert "Empty" not in {r["genus"] for r in demography}
    for name, rows in (("links.csv", links), ("colonies.csv", colonies), ("demography.csv", demography)):
        assert rows == read_csv(tmp_path / "plain" / "out" / name), name


@pytest.mark.skipif(
    not SAMPLE.is_file(), reason="TagLab's sample project is in ../shared/data/taglab (absent)"
)
@pytest.mark.slow
def test_taglab_export_is_the_input_project_with_only_its_correspondences_changed(tmp_path):
    """With --taglab the project written back is the one read, with our correspondences: its
    dictionary, image names and grid, metadata, georeference, region instance names, data and
    points all stay as TagLab wrote them."""
    import copy
    import json

    from pipeline.tracking import track_taglab_project

    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    data["metadata"] = {"Site": "VOS", "Observer": "someone"}
    first = data["images"][0]
    first["metadata"] = {"Depth": "5 m"}
    first["georef_filename"] = "VOS_georef.tif"
    first["annotations"]["regions"][3]["instance name"] = "big plate"
    first["annotations"]["regions"][3]["data"] = {"Growth form": "plate"}
    first["annotations"]["points"] = [
        {"X": 10.0, "Y": 20.0, "Class": "Empty", "Id": 0, "Note": "", "Data": {}}
    ]
    later = copy.deepcopy(first)
    later["id"] = later["name"] = "VOS_2014"
    later["acquisition_date"] = "2014-01-01"
    gone = later["annotations"]["regions"].pop(0)["id"]
    data["images"].append(later)
    (tmp_path / "two.json").write_text(json.dumps(data), encoding="utf-8")
    track_taglab_project(tmp_path / "two.json", tmp_path / "out", "taglab", report=False)
    written = json.loads((tmp_path / "out" / "taglab_project.json").read_text(encoding="utf-8"))
    correspondences = written.pop("correspondences")
    data.pop("correspondences")
    assert written == data
    (table,) = correspondences.values()
    assert (table["source"], table["target"]) == ("VOS", "VOS_2014")
    rows = {(row[1], row[2]): row[6] for row in table["correspondences"]}
    assert rows[(gone, -1)] == "dead" and len(rows) == len(first["annotations"]["regions"])
    back = read_taglab_project(tmp_path / "out" / "taglab_project.json")  # TagLab's format, read back
    assert len(back.links) == len(rows)


def test_maps_of_another_pixel_size_are_not_taken_as_co_registered(tmp_path):
    """The second survey's map at 4 mm/px against the first's 2 mm/px, the same pixels: taken as
    co-registered, every link was `same` in links.csv while colonies.csv gave each colony a growth of
    three times its area a year and the TagLab export marked every row `grow`. Refused with the reason
    (like maps of another size), and nothing is written."""
    from pipeline.tracking import track_taglab_project

    project, _truth, _ids = synthetic_project()
    later = replace(project.surveys[1], px_to_mm=4.0)
    write_taglab_project(replace(project, surveys=[project.surveys[0], later]), tmp_path / "plot.json")
    with pytest.raises(QuadratsegError, match=r"2 mm/px.*4 mm/px.*differ in pixel size"):
        track_taglab_project(tmp_path / "plot.json", tmp_path / "given", report=False)
    assert not (tmp_path / "given").exists()
