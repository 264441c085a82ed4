"""python -m pipeline.track over real pipeline.process outputs of synthetic years (single-stage, a
segmenter that answers each photo's true colonies): tables, lineages, refused pairs, report."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from chain_standins import TruthSegmenter

from quadratseg.instances import Instance
from quadratseg.synth.years import YearsConfig, paint_interior, photo_name, simulate_quadrat, true_rows
from quadratseg.track.evaluate import LinkScore, score_interval
from quadratseg.track.matching import Link

REPO = Path(__file__).resolve().parents[1]
CONFIG = YearsConfig(quadrats=3, years=2, size=320, colonies=12)


def python_m(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def surveys(tmp_path_factory):
    """Two yearly pipeline.process outputs of four quadrats: Q00 as it is, Q01 whose 2020 photo the
    segmenter finds no colony on, Q02 whose 2020 photo shows another quadrat's reef, Q03 photographed
    a quarter turn clockwise in 2020 (its warp turned with it)."""
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder

    root = tmp_path_factory.mktemp("years")
    segmenter = TruthSegmenter()
    worlds = [simulate_quadrat(CONFIG, q) for q in range(4)]
    stranger = simulate_quadrat(CONFIG, 9)
    outs = []
    for y in range(2):
        year = 2019 + y
        folder = root / f"photos{year}"
        folder.mkdir()
        for q, world in enumerate(worlds):
            shown = stranger if (q == 2 and y == 1) else world
            image = paint_interior(shown.seabed, shown.colonies[y], shown.masks[y], shown.placements[y], 0, q)
            image = image.astype(np.uint8)
            turn = 3 if (q == 3 and y == 1) else 0  # np.rot90 k=3: a quarter turn clockwise
            image = np.ascontiguousarray(np.rot90(image, turn))
            name = photo_name(year, q).replace(".jpg", ".png")
            cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            truth = [
                Instance.from_mask(c.label, 0.9, np.rot90(m, turn))
                for c, m in zip(shown.colonies[y], shown.masks[y], strict=True)
            ]
            segmenter.add(image, [] if (q == 1 and y == 1) else [t for t in truth if t is not None])
        out = root / f"out{year}"
        process_folder(folder, out, ChainModels(segment=segmenter), "test", quadrat_cm=100.0, overlays=False)
        outs.append(out)
    return root, outs, worlds


def quadrat_metrics(links: list[dict[str, str]], world, q: int) -> dict:
    """Link precision and recall of quadrat ``q``'s rows of links.csv against its true rows (the
    photos' colonies are the world's non-empty masks, in order)."""
    rows = [r for r in links if f"_Q{q:02d}." in r["source_survey"]]
    kept = [[k for k, m in enumerate(masks) if m.any()] for masks in world.masks]
    predicted = [
        Link(
            kept[0][int(r["source_id"])] if r["source_id"] else None,
            kept[1][int(r["target_id"])] if r["target_id"] else None,
            r["class"],
            r["event"],
            r["split_fuse"],
        )
        for r in rows
    ]
    labels = ([c.label for c in world.colonies[0]], [c.label for c in world.colonies[1]])
    truth = true_rows(world.masks[0], world.masks[1], labels, world.pairs[0])
    n0, n1 = len(world.colonies[0]), len(world.colonies[1])
    areas = ([0.0] * n0, [0.0] * n1)
    score = LinkScore()
    score.add(
        score_interval(predicted, truth, {i: i for i in range(n0)}, {j: j for j in range(n1)}, areas, areas)
    )
    return score.metrics()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_track_cli_follows_the_quadrats_it_can_and_names_the_refused_pairs(surveys):
    root, outs, worlds = surveys
    result = python_m("pipeline.track", str(outs[0]), str(outs[1]), "--out", str(root / "track"))
    assert result.returncode == 0, result.stderr[-3000:]
    track = root / "track"
    links = read_csv(track / "links.csv")
    assert list(links[0]) == [
        "source_survey", "source_id", "target_survey", "target_id", "class", "event", "split_fuse",
        "area_source_cm2", "area_target_cm2", "iou",
    ]  # fmt: skip
    # what a run writes is what a later run into the same folder may replace (OUTPUT_NAMES)
    from pipeline.tracking import OUTPUT_NAMES

    assert {p.name for p in track.iterdir()} <= OUTPUT_NAMES
    again = python_m("pipeline.track", str(outs[0]), str(outs[1]), "--out", str(track))
    assert again.returncode == 0, again.stderr[-3000:]
    problems = {p["quadrat"]: p["problem"] for p in read_csv(track / "problems.csv")}
    assert set(problems) == {"Q01", "Q02"}
    assert "has no colonies" in problems["Q01"]
    assert "different quadrats" in problems["Q02"]
    # Q00 and the turned Q03: the links through the photos' alignment against the true rows
    for q in (0, 3):
        metrics = quadrat_metrics(links, worlds[q], q)
        assert metrics["link_precision"] >= 0.95 and metrics["link_recall"] >= 0.95, (q, metrics)
    registrations = read_csv(track / "registrations.csv")
    q0 = next(r for r in registrations if r["quadrat"] == "Q00")
    assert q0["ok"] == "True" and float(q0["residual_px"]) < 1.0 and q0["turn_deg"] == "0"
    q3 = next(r for r in registrations if r["quadrat"] == "Q03")
    assert q3["ok"] == "True" and float(q3["residual_px"]) < 1.0 and q3["turn_deg"] == "90"
    colonies = read_csv(track / "colonies.csv")
    assert {
        "lineage",
        "parents",
        "growth_cm2_per_year",
        "partial_mortality_cm2",
        "fate",
        "main_family",
    } <= set(colonies[0])
    assert {r["quadrat"] for r in colonies} == {"Q00", "Q03"}
    demography = read_csv(track / "demography.csv")
    assert demography and all(r["site"] == "SynthReef" and r["interval"] == "2019/2020" for r in demography)
    assert any("bootstrap over 2 quadrats" in r["interval_method"] for r in demography)
    summary = json.loads((track / "summary.json").read_text())
    assert summary["refused_pairs"] == 2 and summary["quadrats"] == 2
    from quadratseg.formats.taglab import read_taglab_project

    exported = read_taglab_project(track / "taglab" / "SynthReef_Q00.json")  # TagLab's format, read back
    q00 = [r for r in links if "_Q00." in r["source_survey"]]
    assert [s.date for s in exported.surveys] == ["2019-01-01", "2020-01-01"] and len(exported.links) == len(
        q00
    )
    assert sum(len(s.regions) for s in exported.surveys) == sum(1 for r in colonies if r["quadrat"] == "Q00")
    html = (track / "report.html").read_text()
    assert "img/pair_0_0.jpg" in html and "size_frequency" in html and "fate_flows" in html


@pytest.mark.slow
def test_same_date_is_refused_by_name_and_nothing_left_stops_with_the_reason(surveys, tmp_path):
    _, outs, _ = surveys
    metadata = tmp_path / "meta.csv"
    metadata.write_text(
        "photo,site,year,quadrat\n"
        + "".join(f"{photo_name(y, 0).replace('.jpg', '.png')},SynthReef,2019,Q00\n" for y in (2019, 2020))
        + "".join(f"{photo_name(y, 3).replace('.jpg', '.png')},SynthReef,2020,Q03\n" for y in (2019, 2020)),
        encoding="utf-8",
    )
    from pipeline.tracking import track_process_outputs
    from quadratseg.errors import QuadratsegError

    # Q00's and Q03's photos each given one year, Q01 without colonies, Q02 another reef: nothing left
    with pytest.raises(QuadratsegError, match=r"no quadrat has two surveys .* have the same date 2019"):
        track_process_outputs(outs, tmp_path / "t", metadata=metadata)


def test_track_cli_help_and_bad_arguments():
    result = python_m("pipeline.track", "--help")
    assert result.returncode == 0 and "--matcher" in result.stdout + result.stderr
    result = python_m("pipeline.track", "--out", "x")
    assert result.returncode == 2 and "give two or more pipeline.process output folders" in result.stderr
    result = python_m("pipeline.track", "a", "b", "--out", "x", "--matcher", "nearest")
    assert result.returncode == 2 and "not a matcher" in result.stderr


class FamilySegmenter:
    """A colony model of the extended level (Banggai's 10 classes, every one also a genus name):
    each colony of the photo as one Merulinidae."""

    def __init__(self, masks: dict[str, list[np.ndarray]]):
        from quadratseg.taxonomy import load_taxonomy

        self.masks = masks
        self.names = dict(enumerate(load_taxonomy().classes("extended")))

    def predict(self, image: np.ndarray) -> list[Instance]:
        found = (
            Instance.from_mask("Merulinidae", 0.9, m) for m in self.masks[hashlib.sha256(image).hexdigest()]
        )
        return [f for f in found if f is not None]


def test_colonies_of_an_extended_model_are_not_reported_as_genera(tmp_path):
    """The process records say their labels' level; tracking took the finest level that held the
    labels, so an extended model's Merulinidae (the family) became the genus Merulinidae in
    colonies.csv. Surveys of two levels cannot be compared and stop with the reason."""
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder
    from pipeline.tracking import track_process_outputs

    world = simulate_quadrat(CONFIG, 0)
    masks, outs = {}, []
    for y, level in enumerate(["extended", "extended", ""]):
        year = 2019 + min(y, 1)
        folder = tmp_path / f"photos{y}"
        folder.mkdir()
        image = paint_interior(
            world.seabed, world.colonies[min(y, 1)], world.masks[min(y, 1)], world.placements[min(y, 1)], 0, 0
        )
        image = np.ascontiguousarray(image.astype(np.uint8))
        cv2.imwrite(
            str(folder / photo_name(year, 0).replace(".jpg", ".png")), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        )
        masks[hashlib.sha256(image).hexdigest()] = [m for m in world.masks[min(y, 1)] if m.any()]
        out = tmp_path / f"out{y}"
        models = ChainModels(segment=FamilySegmenter(masks), level=level)
        process_folder(folder, out, models, "test", quadrat_cm=100.0, overlays=False)
        outs.append(out)
    track_process_outputs(outs[:2], tmp_path / "track", report=False)
    colonies = read_csv(tmp_path / "track" / "colonies.csv")
    assert colonies and {(c["finegrained"], c["extended"]) for c in colonies} == {("", "Merulinidae")}
    with pytest.raises(Exception, match="different taxonomy levels"):
        track_process_outputs([outs[0], outs[2]], tmp_path / "mixed", report=False)


@pytest.mark.parametrize("quadrat_cm", ["0", "-100", "nan"])
def test_a_quadrat_width_that_is_no_length_stops_before_anything_is_read_or_written(
    surveys, tmp_path, quadrat_cm
):
    """0 would give pixel counts labelled cm^2, a negative width wrote half the outputs then failed:
    refused up front with one line, the CLI's exit code 2, no output folder."""
    _, outs, _ = surveys
    out = tmp_path / "t"
    result = python_m(
        "pipeline.track", str(outs[0]), str(outs[1]), "--out", str(out), f"--quadrat-cm={quadrat_cm}"
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "--quadrat-cm" in errors[0] and "Traceback" not in result.stderr, (
        result.stderr
    )
    assert not out.exists()


def test_outputs_appear_as_a_set_or_not_at_all(surveys, tmp_path, monkeypatch):
    """A failure after the tables (here the report) leaves no half-written output folder, and a
    previous run's outputs as they were."""
    import pipeline.track_report
    from pipeline.tracking import track_process_outputs

    _, outs, _ = surveys
    out = tmp_path / "t"
    track_process_outputs(outs[:2], out, report=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("the report failed")

    monkeypatch.setattr(pipeline.track_report, "write_track_report", broken)
    for folder in (out, tmp_path / "fresh"):
        with pytest.raises(RuntimeError, match="the report failed"):
            track_process_outputs(outs[:2], folder, matcher="taglab")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not (tmp_path / "fresh").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_survey_folders_named_like_years_are_folders(surveys, tmp_path):
    """``python -m pipeline.track 2019 2020 --out t``: the command line's 2019 is a folder, not an int."""
    _, outs, _ = surveys
    for year, out in zip(("2019", "2020"), outs, strict=True):
        (tmp_path / year).symlink_to(out, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.track", "2019", "2020", "--out", "t", "--no-report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    links = read_csv(tmp_path / "t" / "links.csv")
    assert links and {r["source_survey"].split("/")[0] for r in links} == {"2019"}


def test_an_output_folder_holding_other_files_is_refused_untouched(tmp_path):
    """The outputs replace --out as a whole: a folder holding anything but an earlier run's outputs
    (here a survey's notes) is refused before anything is read, and left as it was."""
    from pipeline.tracking import track_process_outputs
    from quadratseg.errors import QuadratsegError

    out = tmp_path / "work"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(QuadratsegError, match=r"holds other files \(notes.txt\)"):
        track_process_outputs([tmp_path / "a", tmp_path / "b"], out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


TAGLAB_THRESHOLD = 1.05  # Correspondences.threshold in TagLab's source/Correspondences.py


def taglab_reloaded_rows(project: dict) -> list[tuple[list, str, float, float]]:
    """Each correspondence row of a TagLab project file with the action and areas TagLab puts in
    its place when it opens the file (Correspondences.fillTable -> checkTable -> updateAreas):
    rows whose two regions are both missing are dropped; Area1/Area2 become each region's stored
    ``area`` x ``map_px_to_mm_factor``^2 / 100 (cm^2, 0 for a missing side); a grow, shrink or same
    row gets grow when Area2 > Area1 x 1.05, shrink when Area2 < Area1 / 1.05, else same."""
    images = {image["id"]: image for image in project["images"]}
    reloaded = []
    for table in project["correspondences"].values():
        source, target = images[table["source"]], images[table["target"]]
        for row in table["correspondences"]:
            assert len(row) == 8, row  # Genet, Blob1, Blob2, Area1, Area2, Class, Action, Split\Fuse
            blobs = []
            for image, blob in ((source, int(row[1])), (target, int(row[2]))):
                found = [r for r in image["annotations"]["regions"] if int(r["id"]) == blob]
                assert len(found) <= 1, (image["id"], blob)
                factor = float(image["map_px_to_mm_factor"])
                blobs.append(found[0]["area"] * factor * factor / 100.0 if found else None)
            if blobs == [None, None]:
                continue  # checkTable drops it
            area1, area2 = (a or 0.0 for a in blobs)
            action = row[6]
            if action in ("grow", "shrink", "same"):
                if area2 > area1 * TAGLAB_THRESHOLD:
                    action = "grow"
                elif area2 < area1 / TAGLAB_THRESHOLD:
                    action = "shrink"
                else:
                    action = "same"
            reloaded.append((row, action, area1, area2))
    return reloaded


def test_a_taglab_export_opens_in_taglab_with_the_events_and_areas_we_wrote(surveys, tmp_path):
    """The oracle is TagLab's own loader: opening our export, TagLab recomputes every link's areas
    from the regions and every grow / shrink / same from those areas; a project whose colonies have
    several parts (a partial mortality splits a colony's living tissue) must keep our events."""
    from pipeline.tracking import track_process_outputs

    _, outs, _ = surveys
    track_process_outputs(outs, tmp_path / "track", report=False)
    links = read_csv(tmp_path / "track" / "links.csv")
    checked = 0
    for path in sorted((tmp_path / "track" / "taglab").glob("*.json")):
        project = json.loads(path.read_text(encoding="utf-8"))
        rows = taglab_reloaded_rows(project)
        assert len(rows) == sum(
            1 for r in links if r["source_survey"] in {i["id"] for i in project["images"]}
        ), path.name
        for row, action, area1, area2 in rows:
            assert row[6] == action, (path.name, row, action)
            assert row[3] == pytest.approx(area1, abs=1e-3) and row[4] == pytest.approx(area2, abs=1e-3), row
            checked += 1
    assert checked > 10


def test_a_colony_in_several_parts_reaches_taglab_whole(tmp_path):
    """A colony whose living tissue a partial mortality cut in two is one colony with two parts
    (two outer rings in its instances file): the tracked areas keep both, and so do the TagLab
    regions, which have one outline each; the coral area of each survey is the true one, in
    colonies.csv and in TagLab, and TagLab's reloaded events are ours."""
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder
    from pipeline.tracking import track_process_outputs

    world = simulate_quadrat(CONFIG, 0)
    segmenter = TruthSegmenter()
    outs, true_cm2 = [], []
    for y in range(2):
        folder = tmp_path / f"photos{2019 + y}"
        folder.mkdir()
        image = paint_interior(world.seabed, world.colonies[y], world.masks[y], world.placements[y], 0, 0)
        image = image.astype(np.uint8)
        name = photo_name(2019 + y, 0).replace(".jpg", ".png")
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        masks = [m.copy() for m in world.masks[y]]
        if y == 1:  # the largest colony's tissue cut by a dead band 6 px wide through its middle
            big = max(range(len(masks)), key=lambda k: int(masks[k].sum()))
            xs = np.nonzero(masks[big].any(axis=0))[0]
            middle = (xs.min() + xs.max()) // 2
            masks[big][:, middle - 3 : middle + 3] = False
        instances = [
            Instance.from_mask(c.label, 0.9, m) for c, m in zip(world.colonies[y], masks, strict=True)
        ]
        assert y == 0 or len(instances[big].polygons) >= 2
        segmenter.add(image, [i for i in instances if i is not None])
        true_cm2.append(sum(int(m.sum()) for m in masks) * (100.0 / CONFIG.size) ** 2)
        outs.append(tmp_path / f"out{2019 + y}")
        process_folder(
            folder, outs[-1], ChainModels(segment=segmenter), "t", quadrat_cm=100.0, overlays=False
        )
    track_process_outputs(outs, tmp_path / "track", report=False)
    colonies = read_csv(tmp_path / "track" / "colonies.csv")
    (path,) = (tmp_path / "track" / "taglab").glob("*.json")
    project = json.loads(path.read_text(encoding="utf-8"))
    for image, truth in zip(project["images"], true_cm2, strict=True):
        factor = float(image["map_px_to_mm_factor"])
        taglab_cm2 = sum(r["area"] for r in image["annotations"]["regions"]) * factor * factor / 100.0
        ours = sum(float(c["area_cm2"]) for c in colonies if c["survey"] == image["id"])
        assert ours == pytest.approx(truth, rel=0.01), image["id"]
        assert taglab_cm2 == pytest.approx(truth, rel=0.03), image["id"]
    for row, action, _, _ in taglab_reloaded_rows(project):
        assert row[6] == action, row


@pytest.mark.parametrize(
    ("first", "second", "years"),
    [
        (("20190315", "2019-03-15"), ("20200920", "2020-09-20"), 1.52),
        (("20190315", "2019-03-15"), ("20191001", "2019-10-01"), 0.55),
    ],
)
def test_growth_per_year_counts_the_days_between_surveys_named_with_their_dates(
    tmp_path, first, second, years
):
    """CRIOBE names carry the survey day (``SITE###DEPTH###YYYYMMDD_..._N``): surveys of 2019-03-15
    and 2020-09-20 are 1.52 years apart, and growth and radial extension are per year of that. Before,
    the date was the year alone and every rate was 52 % too high. Two surveys within one year (before
    and after a bleaching) are followed too (before: the same date, refused). The demography's interval
    is the ISO 8601 interval of the two dates."""
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder
    from pipeline.tracking import track_process_outputs
    from quadratseg.track.survey import date_to_year

    world = simulate_quadrat(CONFIG, 0)
    segmenter = TruthSegmenter()
    outs = []
    for y, day in enumerate((first[0], second[0])):
        folder = tmp_path / f"photos{y}"
        folder.mkdir()
        image = paint_interior(world.seabed, world.colonies[y], world.masks[y], world.placements[y], 0, 0)
        image = image.astype(np.uint8)
        cv2.imwrite(
            str(folder / f"MOO_T1###10m###{day}_UTP_QUADRAT_1.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        )
        segmenter.add(
            image,
            [
                Instance.from_mask(c.label, 0.9, m)
                for c, m in zip(world.colonies[y], world.masks[y], strict=True)
            ],
        )
        outs.append(tmp_path / f"out{y}")
        process_folder(
            folder, outs[-1], ChainModels(segment=segmenter), "t", quadrat_cm=100.0, overlays=False
        )
    track_process_outputs(outs, tmp_path / "track", report=False)
    colonies = read_csv(tmp_path / "track" / "colonies.csv")
    assert {r["date"] for r in colonies} == {first[1], second[1]}
    assert date_to_year(second[1]) - date_to_year(first[1]) == pytest.approx(years, abs=0.01)
    years = date_to_year(second[1]) - date_to_year(first[1])
    lineage = {}
    for row in colonies:
        lineage.setdefault(row["lineage"], {})[row["date"]] = row
    checked = 0
    for rows in lineage.values():
        later = rows.get(second[1])
        if later and later["growth_cm2_per_year"] and first[1] in rows:
            change = float(later["area_cm2"]) - float(rows[first[1]]["area_cm2"])
            assert float(later["growth_cm2_per_year"]) == pytest.approx(change / years, abs=0.02), later
            checked += 1
    assert checked >= 3
    demography = read_csv(tmp_path / "track" / "demography.csv")
    assert demography and {r["interval"] for r in demography} == {f"{first[1]}/{second[1]}"}
