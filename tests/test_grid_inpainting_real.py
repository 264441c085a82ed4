"""Grid removal on real photos: decoy masks beside the strings, scored against the real pixels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from grid_inpainting.inpaint import OpenCVBackend
from grid_inpainting.masks import grid_mask
from grid_inpainting.real_eval import (
    decoy_keypoints,
    decoy_mask,
    load_real_photos,
    score_real_photos,
    scored_pixels,
)
from quadratseg.errors import QuadratsegError
from quadratseg.synth import load_truth
from quadratseg.synth.dataset import export_image_path


def test_the_decoy_runs_between_the_strings_of_a_quadrat(synthetic_set):
    """On a synthetic warped quadrat, where the strings are known (gridded minus grid-free photo):
    the real grid mask covers them, the decoy lattice misses them and stays inside the frame."""
    t = load_truth(synthetic_set)[0]
    gridded = cv2.imread(
        str(export_image_path(synthetic_set / "cvat_exports" / "grid", t["subset"], t["name"]))
    )
    clean = cv2.imread(
        str(export_image_path(synthetic_set / "cvat_exports" / "segmentation", t["subset"], t["name"]))
    )
    strings = np.abs(gridded.astype(int) - clean).max(axis=2) > 40
    size = (gridded.shape[1], gridded.shape[0])
    grid = np.asarray(t["grid_warped_xy"], dtype=np.float64)
    width = 0.012 * max(size)
    real = grid_mask(grid, size, width, to_border=False)
    decoy = decoy_mask(size, grid, width)
    assert strings.sum() > 100
    assert (real & strings).sum() / strings.sum() > 0.6
    assert (decoy & strings).sum() / strings.sum() < 0.25  # where decoy and real strings cross
    scored = scored_pixels(decoy, grid, width)
    assert (scored & strings).sum() / strings.sum() < 0.02 and scored.sum() > 0.5 * decoy.sum()
    assert 0.5 < decoy.sum() / real.sum() < 1.5  # the same kind of mask
    border = np.zeros_like(decoy)
    border[:3], border[-3:], border[:, :3], border[:, -3:] = True, True, True, True
    assert not (decoy & border).any()
    missing = grid.copy()
    missing[:110] = np.nan
    with pytest.raises(QuadratsegError, match="too few"):
        decoy_keypoints(size, missing)


def test_real_photos_score_each_backend_inside_the_decoys(shared_data):
    photos = load_real_photos(shared_data / "real_quadrats" / "coralscop", max_side=384)
    photos += load_real_photos(shared_data / "coralnet", max_side=384)
    assert len(photos) == 9 and all(max(p[1].shape[:2]) == 384 for p in photos)

    class BlackFill:
        name = "black"

        def inpaint_batch(self, images, masks):
            return [
                np.where(m[..., None], 0, img).astype(np.uint8) for img, m in zip(images, masks, strict=True)
            ]

    results, strips = score_real_photos(photos, [OpenCVBackend("telea"), OpenCVBackend("ns"), BlackFill()])
    for name in ("opencv-telea", "opencv-ns"):
        r = results[name]
        assert len(r["photos"]) == 9 and 15.0 < r["psnr_masked"] < 60.0
        assert r["psnr_masked"] > results["black"]["psnr_masked"] + 5  # a fill that ignores the reef loses
        assert all(0.01 < p["mask_share"] < 0.3 for p in r["photos"].values())
    assert strips["opencv-telea"].shape[1] == 3 * photos[0][1].shape[1]
    json.dumps(results)  # what evaluate --real writes


def test_evaluate_real_writes_the_table_and_strips(shared_data, tmp_path):
    from grid_inpainting.evaluate import evaluate

    result = json.loads(
        evaluate(
            real=str(shared_data / "coralnet"), backends="opencv-telea", out_dir=str(tmp_path), max_side=256
        )
    )
    assert set(result) == {"opencv-telea"} and len(result["opencv-telea"]["photos"]) == 2
    assert json.loads((tmp_path / "real_evaluation.json").read_text()) == result
    assert (tmp_path / "real_strip_opencv-telea.jpg").stat().st_size > 1000
    with pytest.raises(QuadratsegError, match="--real FOLDER"):
        evaluate()
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuadratsegError):
        evaluate(real=str(tmp_path / "empty"), backends="opencv-telea")
