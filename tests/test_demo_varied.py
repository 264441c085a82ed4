"""The demo in the varied world (issue #23): photos whose frame has no grid, colonies with holes,
sagging strings, and every stage on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.demo import STRAIGHT_SAG_PX, run_demo
from quadratseg.cover import percent_cover
from quadratseg.keypoints import grid_template_xy
from quadratseg.settings import Settings
from quadratseg.synth.dataset import SynthConfig, generate_dataset, load_truth


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Ten varied-world photos at 256 px (seed 0: frames with and without a grid, colonies with holes)."""
    root = tmp_path_factory.mktemp("varied") / "synthetic"
    return generate_dataset(root, SynthConfig(images=10, seed=0, size=256, world="varied"))


def _sag_px(truth):
    size = np.asarray(truth["warped_size"], float)
    return float(np.abs(np.asarray(truth["grid_warped_xy"]) - grid_template_xy() * size).max())


def test_core_stage_in_the_varied_world_checks_the_photos_with_a_grid_and_counts_holes(tmp_path):
    summary = run_demo(
        Settings(),
        tmp_path / "d",
        images=10,
        size=256,
        seed=0,
        world="varied",
        stages=["pipeline.demo:core_stage"],
    )
    truths = load_truth(tmp_path / "d" / "synthetic")
    assert summary["demo"]["world"] == "varied" and summary["demo"]["images"] == 10
    assert {t.get("world") for t in truths} == {"varied"}  # the set really is the varied world
    core = summary["quadratseg"]
    gridless = [t for t in truths if t["grid_raw_xy"] is None]
    assert 0 < len(gridless) < len(truths)  # the set holds both kinds
    assert core["world"] == "varied" and core["photos_without_grid"] == len(gridless)
    # the warp puts the true (sagging) crossings on their true warped places
    assert core["warp_lattice_max_error_px"] < 0.01 and core["warp_grid_truth_max_error_px"] < 0.01
    # strings measured only on the photos whose strings are straight; the sag is stated
    straight = [t for t in truths if t["grid_raw_xy"] is not None and _sag_px(t) <= STRAIGHT_SAG_PX]
    assert core["warp_string_photos"] == len(straight)
    assert core["grid_sag_max_px"] == pytest.approx(
        max(_sag_px(t) for t in truths if t["grid_raw_xy"] is not None), abs=1e-3
    )
    if straight:
        assert core["warp_string_mean_offset_px"] < 0.35 and core["warp_string_max_offset_px"] < 1.0
    else:
        assert core["warp_string_mean_offset_px"] is None
    assert core["template_matching_selfcheck_rate"] == 1.0
    # cover from the colonies' rings (holes are dead patches): the generator's own visible coral share
    mean_true = 100 * np.mean([t["cover"] for t in truths])
    assert sum(core["mean_cover_percent"]["finegrained"].values()) == pytest.approx(mean_true, abs=0.05)
    # the outer outlines alone count the holes as coral: the check above tells the two apart
    outer = np.mean(
        [
            sum(
                percent_cover(
                    [(c["label"], np.asarray(c["polygon_xy"])) for c in t["corals"]], tuple(t["warped_size"])
                ).values()
            )
            for t in truths
        ]
    )
    assert outer > mean_true + 0.1


def test_an_empty_grid_in_the_truth_counts_as_a_frame_without_a_grid(varied, tmp_path):
    """A truth written by another tool may give a frame without a grid as [] instead of null."""
    import shutil

    from pipeline.demo import DemoContext, core_stage
    from quadratseg.report import Report

    copy = tmp_path / "synthetic"
    shutil.copytree(varied, copy)
    document = json.loads((copy / "truth.json").read_text())
    with_grid = [t for t in document["images"] if t["grid_raw_xy"] is not None]
    without = sum(t["grid_raw_xy"] is None for t in document["images"])
    with_grid[0]["grid_raw_xy"] = with_grid[0]["grid_warped_xy"] = []
    (copy / "truth.json").write_text(json.dumps(document))
    ctx = DemoContext(tmp_path, copy, Settings(), Report(tmp_path), world="varied")
    metrics = core_stage(ctx)
    assert metrics["photos_without_grid"] == without + 1
    assert metrics["warp_grid_truth_max_error_px"] < 0.01


def test_grid_removal_evaluation_skips_the_photos_without_a_grid_and_says_how_many(varied, tmp_path):
    from grid_inpainting.evaluate import evaluate, load_pairs

    truths = load_truth(varied)
    gridless = sum(t["grid_warped_xy"] is None for t in truths)
    pairs = load_pairs(varied)
    assert len(pairs) == len(truths) - gridless and all(p[3].shape == (117, 2) for p in pairs)
    result = json.loads(evaluate(str(varied), backends="opencv-telea", out_dir=str(tmp_path / "eval")))
    assert result["images"] == len(truths) - gridless and result["images_without_grid"] == gridless
    scores = result["opencv-telea"]
    assert scores["psnr_masked"] > scores["psnr_masked_input"]  # the strings were removed
    on_disk = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert on_disk == result


@pytest.mark.slow
def test_every_stage_runs_in_the_varied_world(tmp_path):
    """The demo's stages (the bridge's is run by tests/test_demo.py) on 12 varied photos, one-epoch models:
    seed 0 puts a gridded photo stored turned (EXIF 3) and a photo without a grid (EXIF 8) in the test
    split."""
    from pipeline.demo import STAGES

    stages = [s for s in STAGES if not s.startswith("loopback.")]
    summary = run_demo(
        Settings(),
        tmp_path / "d",
        images=12,
        size=320,
        seed=0,
        world="varied",
        stages=stages,
        training_scale=0.01,
    )
    truths = load_truth(tmp_path / "d" / "synthetic")
    test = [t for t in truths if t["subset"] == "test"]
    test_grid = [t for t in test if t["grid_raw_xy"] is not None]
    assert len(test) == 2 and len(test_grid) == 1  # the split this seed gives
    assert summary["quadratseg"]["photos_without_grid"] == sum(t["grid_raw_xy"] is None for t in truths)
    data = summary["data_engineering"]
    assert data["images"] == 12 and data["backup_matches_export"] is True
    pose = summary["grid_pose_detection"]
    assert pose["gridcorners"]["images"] == 2 and pose["gridpose"]["images"] == 1  # scored where a grid is
    assert pose["gridless_test_photos"]["images"] == 1
    inpaint = summary["grid_inpainting"]
    # the photo without a grid is left out and counted, the gridded one scored or skipped with its reason
    assert inpaint["images_without_grid_truth"]["images"] == 1
    assert inpaint["images"] + len(inpaint["images_without_grid"]) == 1
    seg, mmseg = summary["coral_seg_yolo"], summary["DINOv2_mmseg"]
    assert seg["images"] == 2 and seg["instances"] > 0 and mmseg["images"] == 2
    # the model learnt from its train and val photos with a grid as the chain's grid removal leaves them
    with_grid = [t for t in truths if t["subset"] in ("train", "val") and t["grid_warped_xy"] is not None]
    assert seg["trained_on_grid_removed"] == mmseg["trained_on_grid_removed"] == len(with_grid) > 0
    chain = summary["process"]
    assert chain["photos"] == 2 and chain["failed"] == 0
    track = summary["track"]
    assert track["world"] == "varied" and "link_precision" in track
    assert set(summary["demo"]["stage_seconds"]) >= {"quadratseg", "process", "track"}
