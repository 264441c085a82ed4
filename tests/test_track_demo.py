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
    first ones left out; with ``duplicates``, each colony also a second time with another genus at a
    lower score (as a class-aware YOLO answers a colony whose genus it hesitates on)."""

    def __init__(self, drop: int = 0, duplicates: bool = False):
        self.answers: dict[str, list[Instance]] = {}
        self.names = dict(enumerate(sorted(GENUS_LOOKS)))
        self.drop, self.duplicates = drop, duplicates

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
        colonies = [c for c in colonies if c is not None]
        if self.duplicates:
            genera = sorted(GENUS_LOOKS)
            colonies += [
                Instance(genera[(genera.index(c.label) + 1) % len(genera)], 0.4, c.box_mask, c.origin_xy)
                for c in colonies
            ]
        self.answers[hashlib.sha256(image.tobytes()).hexdigest()] = colonies

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
    from pipeline.track_demo import score_tracking, true_mask_outputs
    from pipeline.tracking import track_process_outputs

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


@pytest.mark.slow
def test_a_colony_answered_twice_with_two_genera_is_followed_once(years, tmp_path):
    """Two overlapping answers on one colony are one colony on the reef: the tracks follow the surer
    one, with the links, events and growth of the truth, and count no extra colony."""
    from pipeline.track_demo import score_tracking
    from pipeline.tracking import track_process_outputs

    outs = process_years(years, tmp_path / "twice", TruthSegmenter(duplicates=True))
    track_process_outputs(outs, tmp_path / "track", quadrat_cm=100.0, report=False)
    figures = score_tracking(years, outs, tmp_path / "track")
    assert figures["link_precision"] >= 0.95 and figures["link_recall"] >= 0.95, figures
    assert figures["event_accuracy"] >= 0.9, figures


def test_stage_without_the_trained_models_says_why(tmp_path):
    from types import SimpleNamespace

    from pipeline.track_demo import stage

    ctx = SimpleNamespace(shared={}, out_dir=tmp_path, synthetic_dir=tmp_path, seed=0)
    assert stage(ctx) == {"skipped": "the pose and segmentation stages did not run"}


class ChainStandIns:
    """The demo's trained models stood in for by the truth of the stage's own synthetic years: corners
    the true ones moved by ``offset_px`` (the warp then differs from the truth's as a model's would),
    the true grid mapped into that warp, colonies the truth mapped into it with outlines 1 px off and
    one genus call in ten changed. One photo at a time, in the chain's order (corners first)."""

    def __init__(self, years_dir: Path, offset_px: float = 1.5, seed: int = 0):
        self.years_dir, self.offset, self.rng = years_dir, offset_px, np.random.default_rng(seed)
        self.by_hash: dict[str, dict] = {}
        self.current: tuple[dict, np.ndarray] | None = None
        self.names = dict(enumerate(sorted(GENUS_LOOKS)))
        self.corners, self.grid, self.segment = self._Corners(self), self._Grid(self), self._Segment(self)

    def truth_of(self, image: np.ndarray) -> dict:
        from quadratseg.images import read_image_rgb

        if not self.by_hash:
            for truth_file in sorted(self.years_dir.glob("*/truth.json")):
                photos = truth_file.parent / "cvat_exports" / "corners" / "images" / "test"
                for truth in json.loads(truth_file.read_text())["images"]:
                    raw = read_image_rgb(photos / truth["name"])
                    self.by_hash[hashlib.sha256(raw.tobytes()).hexdigest()] = truth
        return self.by_hash[hashlib.sha256(image.tobytes()).hexdigest()]

    class _Corners:
        def __init__(self, outer):
            self.outer = outer

        def predict(self, images):
            from types import SimpleNamespace

            from quadratseg.warp import quadrat_homography

            truth = self.outer.truth_of(images[0])
            corners = (
                np.asarray(truth["corners_raw_xy"])
                + self.outer.rng.uniform(-1, 1, (4, 2)) * self.outer.offset
            )
            homography = quadrat_homography(corners, tuple(truth["warped_size"]))
            self.outer.current = (truth, homography)
            return [SimpleNamespace(keypoints_xy=corners, homography=homography, warp_error="")]

        def warp(self, image, corners):
            from quadratseg.warp import warp_image

            return warp_image(image, corners.homography, tuple(self.outer.current[0]["warped_size"]))

    class _Grid:
        def __init__(self, outer):
            self.outer = outer

        def predict(self, images):
            from types import SimpleNamespace

            from quadratseg.warp import transform_points

            truth, homography = self.outer.current
            if truth["grid_raw_xy"] is None:  # a varied-world frame without the 9 x 13 grid
                return [SimpleNamespace(no_grid="no grid on this frame", keypoints_xy=None)]
            points = transform_points(np.asarray(truth["grid_raw_xy"]), homography)
            return [SimpleNamespace(no_grid="", keypoints_xy=points)]

    class _Segment:
        def __init__(self, outer):
            self.outer = outer
            self.names = outer.names

        def predict(self, image):
            import cv2

            from pipeline.track_demo import truth_in_chain_frame

            truth, homography = self.outer.current
            record = {"warped_size": truth["warped_size"], "homography_raw_to_warped": homography.tolist()}
            out = []
            for inst in truth_in_chain_frame(truth, record):
                if inst is None:
                    continue
                mask = inst.full_mask(tuple(truth["warped_size"])).astype(np.uint8)
                step = int(self.outer.rng.integers(-1, 2))
                kernel = np.ones((3, 3), np.uint8)
                mask = cv2.dilate(mask, kernel) if step > 0 else cv2.erode(mask, kernel) if step < 0 else mask
                label = (
                    inst.label
                    if self.outer.rng.random() > 0.1
                    else str(self.outer.rng.choice(sorted(GENUS_LOOKS)))
                )
                colony = Instance.from_mask(label, 0.9, mask.astype(bool))
                if colony is not None:
                    out.append(colony)
            return out


def stage_context(tmp_path, segment):
    """The demo context the tracking stage reads: a simple-world manifest, the chain's stand-ins
    (``segment(models)`` gives its segmenter), settings, a report."""
    from types import SimpleNamespace

    from quadratseg.cli import current_settings
    from quadratseg.images import read_image_rgb
    from quadratseg.report import Report

    synthetic = tmp_path / "synthetic"
    synthetic.mkdir(exist_ok=True)
    (synthetic / "manifest.json").write_text(json.dumps({"config": {"world": "simple", "warped_size": 256}}))
    models = ChainStandIns(tmp_path / "track" / "years")
    return SimpleNamespace(
        shared={
            "pose_predictors": {"gridcorners": models.corners, "gridpose": models.grid},
            "seg_predictor": segment(models),
        },
        out_dir=tmp_path,
        synthetic_dir=synthetic,
        seed=0,
        settings=current_settings(),
        report=Report(tmp_path),
        read_rgb=read_image_rgb,
    )


@pytest.mark.slow
def test_stage_runs_the_chain_on_two_years_and_reports_the_track_object(tmp_path):
    """The stage through the real chain (warp, grid removal with OpenCV, pipeline.track) with
    stand-ins for the trained models: the summary's track object and the report's section."""
    from pipeline.track_demo import stage

    ctx = stage_context(tmp_path, lambda models: models.segment)
    metrics = stage(ctx)
    print("stand-in chain", json.dumps(metrics))
    for key in (
        "link_precision",
        "link_recall",
        "event_accuracy",
        "growth_mae_cm2",
        "registration_residual_px",
    ):
        assert metrics[key] is not None, key
    assert metrics["true_links"] > 10 and metrics["refused_pairs"] == 0
    assert metrics["link_precision"] >= 0.9 and metrics["link_recall"] >= 0.85, metrics
    assert metrics["true_masks"]["link_recall"] >= 0.95 and metrics["registration_residual_px"] < 10.0
    assert ctx.report.sections[0].title.startswith("Colonies across years")


@pytest.mark.slow
def test_a_second_demo_run_tracks_the_colonies_of_its_own_models(tmp_path):
    """The stage run again over the same output folder (as ``make demo`` does) with other models
    scores those models: never the colonies an earlier run's models left in the folder."""
    from pipeline.track_demo import stage

    def run(segment):
        return stage(stage_context(tmp_path, segment))

    class FindsNothing:
        def __init__(self, models):
            self.names = models.names

        def predict(self, image):
            return []

    first = run(lambda models: models.segment)
    assert first["reachable_links"] > 10, first
    second = run(FindsNothing)
    assert second["reachable_links"] == 0 and second["link_recall"] == 0.0, second
