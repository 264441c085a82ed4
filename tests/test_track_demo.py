"""The demo's tracking stage (pipeline.track_demo): its scoring against the true lineages of
synthetic years, on pipeline.process outputs whose colonies are the truth or miss some."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from quadratseg.instances import Instance
from quadratseg.synth.appearance import GENUS_LOOKS
from quadratseg.synth.years import YearsConfig, generate_years


class TruthSegmenter:
    """A colony model answering each photo's true colonies (by the photo's pixels), the ``drop``
    first ones left out."""

    def __init__(self, drop: int = 0):
        self.answers: dict[str, list[Instance]] = {}
        self.names = dict(enumerate(sorted(GENUS_LOOKS)))
        self.drop = drop

    def add(self, image: np.ndarray, truth: dict) -> None:
        from quadratseg.geometry import PolygonWithHoles

        size = tuple(truth["warped_size"])
        colonies = [
            Instance.from_polygons(
                c["label"],
                0.9,
                [PolygonWithHoles(np.asarray(c["polygon_xy"]), [np.asarray(h) for h in c["holes_xy"]])],
                size,
            )
            for c in truth["corals"]
        ]
        self.answers[hashlib.sha256(image.tobytes()).hexdigest()] = [c for c in colonies if c is not None]

    def predict(self, image: np.ndarray) -> list[Instance]:
        return self.answers[hashlib.sha256(image.tobytes()).hexdigest()][self.drop :]


def process_years(years: Path, root: Path, segmenter: TruthSegmenter) -> list[Path]:
    """Each year's warped grid-free photos through pipeline.process (single-stage)."""
    from pipeline.chain import ChainModels
    from pipeline.run import process_folder
    from quadratseg.images import read_image_rgb

    outs = []
    for year in ("2019", "2020"):
        photos = years / year / "cvat_exports" / "segmentation" / "images" / "test"
        for truth in json.loads((years / year / "truth.json").read_text())["images"]:
            segmenter.add(read_image_rgb(photos / truth["name"]), truth)
        out = root / year
        process_folder(photos, out, ChainModels(segment=segmenter), "t", quadrat_cm=100.0, overlays=False)
        outs.append(out)
    return outs


@pytest.fixture(scope="module")
def years(tmp_path_factory):
    root = tmp_path_factory.mktemp("track_demo")
    return generate_years(root / "years", YearsConfig(quadrats=2, years=2, size=256, colonies=10))


@pytest.mark.slow
def test_scores_true_colonies_through_the_photos_alignment_and_a_segmenter_that_misses_some(years, tmp_path):
    from pipeline.track import track_process_outputs
    from pipeline.track_demo import score_tracking, true_mask_outputs

    outs = process_years(years, tmp_path / "truth", TruthSegmenter())
    summary = track_process_outputs(outs, tmp_path / "track", quadrat_cm=100.0, report=False)
    figures = score_tracking(years, outs, tmp_path / "track")
    assert figures["true_links"] > 8 and summary["refused_pairs"] == 0
    assert figures["link_precision"] >= 0.95 and figures["link_recall"] >= 0.95, figures
    assert figures["event_accuracy"] >= 0.9 and figures["growth_mae_cm2"] < 5.0, figures
    # the outputs rewritten with the truth give the same colonies
    copies = true_mask_outputs(years, outs, tmp_path / "copies")
    track_process_outputs(copies, tmp_path / "track_copies", quadrat_cm=100.0, report=False)
    assert score_tracking(years, copies, tmp_path / "track_copies")["link_recall"] == figures["link_recall"]
    # a segmenter that misses two colonies a photo: the links of those colonies are missed
    missing = process_years(years, tmp_path / "missing", TruthSegmenter(drop=2))
    track_process_outputs(missing, tmp_path / "track_missing", quadrat_cm=100.0, report=False)
    worse = score_tracking(years, missing, tmp_path / "track_missing")
    assert worse["link_recall"] < figures["link_recall"] and worse["link_precision"] >= 0.95, worse


def test_stage_without_the_trained_models_says_why(tmp_path):
    from types import SimpleNamespace

    from pipeline.track_demo import stage

    ctx = SimpleNamespace(shared={}, out_dir=tmp_path, synthetic_dir=tmp_path, seed=0)
    assert stage(ctx) == {"skipped": "the pose and segmentation stages did not run"}
