"""grid_inpainting.train: a self-supervised LaMa fine-tune, with a tiny TorchScript stand-in on CPU."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_models import tiny_lama_file, tiny_trainable_lama_file

from grid_inpainting.train import random_string_mask, train
from quadratseg.errors import QuadratsegError


@pytest.fixture(scope="module")
def grid_free_images(synthetic_set, tmp_path_factory):
    """The synthetic set's grid-free quadrats as a flat folder (what a fine-tune may also read)."""
    folder = tmp_path_factory.mktemp("grid_free")
    for path in sorted((synthetic_set / "cvat_exports" / "segmentation").rglob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder


def val_losses(out: Path) -> list[float]:
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    return [float(r["val_masked_l1"]) for r in rows if r["val_masked_l1"]]


def test_string_masks_vary_like_real_grids():
    rng = np.random.default_rng(0)
    masks = [random_string_mask(128, 128, rng) for _ in range(20)]
    shares = [m.mean() for m in masks]
    assert all(0.02 < s < 0.5 for s in shares) and np.std(shares) > 0.01  # widths and spacings vary
    assert len({m.tobytes() for m in masks}) == 20


@pytest.mark.slow  # fine-tunes a small network
def test_fine_tune_lowers_the_masked_l1_and_saves_a_lama_file(grid_free_images, synthetic_set, tmp_path):
    start = tiny_trainable_lama_file(tmp_path / "start.pt")
    out = tmp_path / "run"
    summary = json.loads(
        train(str(grid_free_images), str(out), str(start), steps=40, batch=4, crop=64, lr=3e-3, val_every=10)
    )
    assert summary["val_masked_l1_after"] < 0.8 * summary["val_masked_l1_before"], summary
    assert summary["perceptual"].startswith("off")
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 40 and config["perceptual"].startswith("off")
    losses = val_losses(out)
    assert len(losses) == 5 and losses[-1] < losses[0]
    # the saved file is a LaMa file for every consumer: the backend, remove_grid and the zip's handler
    from nuclio_driver import call_handler

    from grid_inpainting.deploy_as_zip import deploy_as_zip
    from grid_inpainting.inpaint import LamaBackend, remove_grid
    from quadratseg.nuclio import encode_image_b64
    from quadratseg.synth import load_truth
    from quadratseg.synth.dataset import export_image_path

    truth = load_truth(synthetic_set)[0]
    gridded_path = export_image_path(synthetic_set / "cvat_exports" / "grid", truth["subset"], truth["name"])
    from quadratseg.images import read_image_rgb

    gridded = read_image_rgb(gridded_path)
    (removal,) = remove_grid(
        [gridded], [np.asarray(truth["grid_warped_xy"])], LamaBackend(out / "big-lama.pt")
    )
    assert removal.image.shape == gridded.shape and removal.backend == "lama"
    zip_path = deploy_as_zip("pth-lama", str(out / "big-lama.pt"), str(tmp_path / "zip"))
    import zipfile

    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "unzipped")
    body = json.dumps({"image": encode_image_b64(gridded), "keypoints": truth["grid_warped_xy"]})
    (answer,) = call_handler(tmp_path / "unzipped" / "nuclio", [body], "grid_inpainting")
    assert answer["status"] == 200 and answer["body"]["backend"] == "lama"
    # resume: up to step 50 from where it stopped, the metrics appended
    more = json.loads(
        train(
            str(grid_free_images),
            str(out),
            str(start),
            steps=50,
            batch=4,
            crop=64,
            lr=3e-3,
            val_every=10,
            resume=True,
        )
    )
    assert more["resumed_from"] == 40
    steps = [int(r["step"]) for r in csv.DictReader((out / "metrics.csv").open())]
    assert steps[-1] == 50 and steps.count(41) == 1


@pytest.mark.slow  # builds a ResNet-18 and fine-tunes with it
def test_the_perceptual_term_uses_local_weights_only(grid_free_images, tmp_path):
    import torch
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    start = tiny_trainable_lama_file(tmp_path / "start.pt")
    summary = json.loads(
        train(
            str(grid_free_images),
            str(tmp_path / "run"),
            str(start),
            steps=4,
            crop=64,
            val_every=2,
            perceptual_weights=str(weights),
            perceptual_arch="resnet18",
        )
    )
    assert summary["perceptual"].startswith("on (resnet18")
    with pytest.raises(QuadratsegError, match="not a torchvision vgg16 state dict"):
        train(
            str(grid_free_images),
            str(tmp_path / "r2"),
            str(start),
            steps=1,
            crop=64,
            perceptual_weights=str(weights),
        )


def test_bad_inputs_are_clear_errors(grid_free_images, tmp_path):
    frozen = tiny_lama_file(tmp_path / "frozen.pt")  # no parameters at all
    with pytest.raises(QuadratsegError, match="no trainable parameters"):
        train(str(grid_free_images), str(tmp_path / "a"), str(frozen), steps=1, crop=64)
    with pytest.raises(QuadratsegError, match="does not exist"):
        train(str(grid_free_images), str(tmp_path / "b"), str(tmp_path / "missing.pt"), steps=1, crop=64)
    with pytest.raises(QuadratsegError, match="multiple of 8"):
        train(str(grid_free_images), str(tmp_path / "c"), str(frozen), crop=60)
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuadratsegError, match="holds no image"):
        train(str(tmp_path / "empty"), str(tmp_path / "d"), str(frozen), steps=1, crop=64)
    with pytest.raises(QuadratsegError, match="nothing to resume"):
        train(str(grid_free_images), str(tmp_path / "e"), str(frozen), steps=1, crop=64, resume=True)
