"""python -m pipeline.track where the two surveys' frames differ: a frame laid a few cm off (colonies
the later photo does not show, or shows in part) and the same quadrat warped at two sizes. Real
pipeline.process outputs of synthetic photos, a segmenter that answers each photo's true colonies."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from chain_standins import TruthSegmenter

from quadratseg.instances import Instance
from quadratseg.synth.appearance import seabed
from quadratseg.synth.years import (
    WorldColony,
    YearRates,
    YearsConfig,
    paint_interior,
    photo_name,
    simulate_quadrat,
    survey_masks,
)

SIDE = 320  # warped side in px; the quadrat is 100 cm wide
SHIFT = 32  # the later frame laid 10 % of the side further right


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def process_years(
    root: Path, photos: list[tuple[np.ndarray, list[np.ndarray]]], names: list[str]
) -> list[Path]:
    """One pipeline.process output per (photo, its colony masks), each in its own year's folder."""
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder

    segmenter = TruthSegmenter()
    outs = []
    for (image, masks), name in zip(photos, names, strict=True):
        folder = root / f"photos_{name[:-4]}"
        folder.mkdir()
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        truth = [Instance.from_mask("Porites", 0.9, m) for m in masks]
        segmenter.add(image, [t for t in truth if t is not None])
        out = root / f"out_{name[:-4]}"
        process_folder(folder, out, ChainModels(segment=segmenter), "test", quadrat_cm=100.0, overlays=False)
        outs.append(out)
    return outs


def disk_mask(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 < r * r


# world colonies (x, y, r) by role; the 2020 frame shows world x from SHIFT to SIDE + SHIFT
GONE_OUTSIDE = (20, 70, 14)  # a fifth of it inside the 2020 photo, absent there
KEPT_OUTSIDE = (20, 250, 14)  # a fifth of it inside the 2020 photo, unchanged
CUT = (42, 160, 16)  # two thirds inside the 2020 photo, unchanged
MIDDLE = [(120, 60, 16), (200, 110, 18), (150, 230, 16), (250, 260, 14)]  # unchanged
DIES = (270, 170, 15)  # in the middle, dead by 2020


@pytest.fixture(scope="module")
def shifted_frame(tmp_path_factory):
    """A quadrat surveyed in 2019 and 2020 with the 2020 frame laid 32 px (10 % of the side) further
    right; one colony in the middle died, every other is unchanged."""
    root = tmp_path_factory.mktemp("shifted")
    world_bed = seabed(np.random.default_rng(5), (SIDE, SIDE))
    everyone = [GONE_OUTSIDE, KEPT_OUTSIDE, CUT, *MIDDLE, DIES]
    colonies = [WorldColony(f"L{k + 1}", "Porites", disk_mask(*c)) for k, c in enumerate(everyone)]
    later = [c for c, spec in zip(colonies, everyone, strict=True) if spec not in (GONE_OUTSIDE, DIES)]
    placements = [np.eye(3), np.array([[1.0, 0, -SHIFT], [0, 1, 0], [0, 0, 1]])]  # world px -> survey px
    photos = []
    for year_colonies, placement in zip((colonies, later), placements, strict=True):
        masks = survey_masks(year_colonies, placement, SIDE)
        image = paint_interior(world_bed, year_colonies, masks, placement, 0, 0).astype(np.uint8)
        photos.append((image, masks))
    names = [photo_name(year, 0).replace(".jpg", ".png") for year in (2019, 2020)]
    return root, process_years(root, photos, names), everyone


def test_colonies_the_later_photo_does_not_show_are_neither_dead_nor_shrunk(shifted_frame, tmp_path):
    """A colony the 2020 photo shows less than half of has no fate (whether it lived cannot be
    judged), and is left out of the mortality; one cut by the 2020 photo's edge is measured on the
    part both photos show: unchanged, it is ``same``, with no partial mortality and no growth. The
    mortality rate is the one death among the colonies both photos show, as with a frame laid true."""
    from pipeline.tracking import track_process_outputs

    _, outs, everyone = shifted_frame
    track_process_outputs(outs, tmp_path / "t", report=False)
    colonies = read_csv(tmp_path / "t" / "colonies.csv")
    first = {int(r["colony_id"]): r for r in colonies if r["date"] == "2019"}
    role = {spec: k for k, spec in enumerate(everyone)}
    assert first[role[GONE_OUTSIDE]]["fate"] == "" and first[role[KEPT_OUTSIDE]]["fate"] == ""
    cut = first[role[CUT]]
    assert cut["fate"] == "same" and float(cut["partial_mortality_share"]) < 0.05, cut
    assert first[role[DIES]]["fate"] == "dead"
    later_cut = next(r for r in colonies if r["date"] == "2020" and r["lineage"] == cut["lineage"])
    assert abs(float(later_cut["growth_cm2_per_year"])) < 0.1 * float(cut["area_cm2"]), later_cut
    links = read_csv(tmp_path / "t" / "links.csv")
    assert [r["source_id"] for r in links if r["event"] == "dead"] == [str(role[DIES])]
    assert not [r for r in links if r["event"] == "born"]  # the part of a colony left outside is no recruit
    (row,) = read_csv(tmp_path / "t" / "demography.csv")
    assert (row["colonies_start"], row["deaths"], row["mortality_rate"]) == ("6", "1", "0.1667")
    # recruits are counted where both photos see the reef: 90 % of the quadrat
    assert float(row["area_m2"]) == pytest.approx(0.9, abs=0.01)


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """One quadrat warped at 320 px in 2019 and 640 px in 2020 (the same reef, the frame re-placed
    a little), its colonies unchanged."""
    root = tmp_path_factory.mktemp("sizes")
    still = YearRates(dead=0, split=0, partial=0, grow=0, shrink=0, fuse=0, recruits=0)
    world = simulate_quadrat(YearsConfig(years=2, size=SIDE, colonies=12, rates=still), 0)
    photos = []
    for y, factor in enumerate((1, 2)):
        image = paint_interior(world.seabed, world.colonies[y], world.masks[y], world.placements[y], 0, 0)
        image = cv2.resize(image.astype(np.uint8), None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        masks = [
            cv2.resize(m.astype(np.uint8), None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) > 0
            for m in world.masks[y]
            if m.any()
        ]
        photos.append((image, masks))
    names = [photo_name(year, 0).replace(".jpg", ".png") for year in (2019, 2020)]
    return process_years(root, photos, names), len(photos[0][1])


def test_the_same_quadrat_warped_at_two_sizes_is_aligned_with_scale_one(two_sizes, tmp_path):
    """Scale and centre shift are measured in quadrat units: 320 px and 640 px of the same quadrat
    are a scale of 1 and a small shift, not different quadrats paired by mistake."""
    from pipeline.tracking import track_process_outputs

    outs, count = two_sizes
    summary = track_process_outputs(outs, tmp_path / "t", report=False)
    (registration,) = read_csv(tmp_path / "t" / "registrations.csv")
    assert registration["ok"] == "True", registration["reason"]
    assert abs(float(registration["scale"]) - 1.0) < 0.02 and float(registration["shift_px"]) < 0.03 * SIDE
    assert summary["refused_pairs"] == 0
    links = read_csv(tmp_path / "t" / "links.csv")
    linked = [r for r in links if r["source_id"] and r["target_id"]]
    assert len(linked) == count and all(r["source_id"] == r["target_id"] for r in linked)
    assert all(r["event"] == "same" for r in linked), [r["event"] for r in linked]
