"""How a YOLO training starts and what it records: pretrained weights from QUADRATSEG_MODELS_DIR by
default, random initialisation only with --from-scratch, TensorBoard curves (read back with
TensorBoard's own reader), MLflow and device lists passed to ultralytics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.weights import MissingWeightsError

REPO = Path(__file__).resolve().parents[1]


def _first_conv(model) -> np.ndarray:
    return next(model.model.parameters()).detach().cpu().numpy().copy()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A models folder holding a stand-in ``yolo11n-seg.pt`` whose first convolution is marked."""
    import torch
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("models")
    model = YOLO("yolo11n-seg.yaml")
    with torch.no_grad():
        first = next(model.model.parameters())
        first.copy_(torch.linspace(-1, 1, first.numel()).reshape(first.shape))
    model.save(str(root / "yolo11n-seg.pt"))
    return root, _first_conv(model)


def test_an_architecture_starts_from_its_coco_weights_in_the_models_folder(models_dir):
    from quadratseg.yolo_train import starting_model

    root, marked = models_dir
    model, record = starting_model("yolo11n-seg.yaml", False, root)
    assert record == {"pretrained": str(root / "yolo11n-seg.pt"), "from_scratch": False}
    np.testing.assert_allclose(_first_conv(model), marked, atol=1e-3)  # transferred (saved in fp16)
    scratch, record = starting_model("yolo11n-seg.yaml", True, root)
    assert record == {"pretrained": None, "from_scratch": True}
    assert not np.allclose(_first_conv(scratch), marked)


def test_the_weights_listing_says_what_is_present(models_dir, tmp_path):
    from quadratseg.list_weights import list_weights

    root, _ = models_dir
    lines = list_weights(str(root)).splitlines()
    assert lines[1].split()[:2] == ["present", "yolo11n-seg.pt"]  # present files first
    assert sum(line.strip().startswith("missing") for line in lines) == len(lines) - 2
    with pytest.raises(QuadratsegError, match="is not a folder"):
        list_weights(str(tmp_path / "nowhere"))


def test_missing_or_contradictory_weights_are_clear_errors(models_dir, tmp_path):
    from quadratseg.yolo_train import starting_model

    root, _ = models_dir
    with pytest.raises(MissingWeightsError) as missing:
        starting_model("yolo11s-pose.yaml", False, tmp_path)
    text = str(missing.value)
    assert str(tmp_path / "yolo11s-pose.pt") in text and "--from-scratch" in text
    assert "ultralytics assets" in text and "Nothing is downloaded" in text
    with pytest.raises(QuadratsegError, match="--from-scratch with the checkpoint"):
        starting_model(str(root / "yolo11n-seg.pt"), True, root)
    custom = tmp_path / "custom-seg.yaml"
    custom.write_text("nc: 1\n")
    with pytest.raises(QuadratsegError, match="no pretrained weights are known"):
        starting_model(custom, False, root)


def test_the_train_cli_refuses_to_start_without_weights_and_names_the_folder(tmp_path):
    env = {**os.environ, "QUADRATSEG_MODELS_DIR": str(tmp_path / "empty-models")}
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: {0: coral}\n")
    result = subprocess.run(
        [sys.executable, "-m", "coral_seg_yolo.train", "--data", str(data), "--project", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert str(tmp_path / "empty-models" / "yolo11n-seg.pt") in result.stderr
    assert "--from-scratch" in result.stderr


def _square_seg_dataset(root: Path, images: int = 4, size: int = 64) -> Path:
    """A hand-made YOLO-seg dataset: one coloured square per image, its outline as the polygon."""
    import cv2

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(images):
            image = np.full((size, size, 3), 40, np.uint8)
            x0, y0 = rng.integers(4, size // 2, 2)
            side = int(rng.integers(12, size // 2))
            image[y0 : y0 + side, x0 : x0 + side] = (30, 200, 240)
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), image)
            corners = np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]]) / size
            line = "0 " + " ".join(f"{v:.4f}" for v in corners.ravel())
            (root / "labels" / split / f"{i}.txt").write_text(line + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {{0: coral}}\n")
    return data


@pytest.mark.slow
def test_a_training_logs_its_curves_for_tensorboard(tmp_path):
    """ultralytics switches its TensorBoard callback off under pytest, so the CLI runs as a user runs it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = _square_seg_dataset(tmp_path / "squares")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    command = [
        sys.executable,
        "-m",
        "coral_seg_yolo.train",
        "--data",
        str(data),
        "--project",
        str(tmp_path / "runs"),
        "--from-scratch",
        "--epochs",
        "1",
        "--imgsz",
        "64",
        "--batch",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--args",
        '{"plots": false, "mosaic": 0}',
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TRAINING FROM RANDOM INITIALISATION" in result.stderr
    lines = result.stdout.splitlines()  # ultralytics prints its progress on stdout before the summary
    summary = json.loads("\n".join(lines[max(i for i, line in enumerate(lines) if line == "{") :]))
    assert summary["config"]["from_scratch"] is True and summary["config"]["tensorboard"] is True
    events = list((tmp_path / "runs" / "coralseg").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file in the run folder"
    reader = EventAccumulator(str(events[0].parent))
    reader.Reload()
    tags = set(reader.Tags()["scalars"])
    assert {"train/seg_loss", "train/box_loss"} <= tags, tags
    assert np.isfinite(reader.Scalars("train/seg_loss")[0].value)
    # the same run with --no-tensorboard, in a fresh folder: no event file, and the record says so
    quiet = [*command, "--no-tensorboard", "--name", "quiet"]
    result = subprocess.run(quiet, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((tmp_path / "runs" / "quiet").glob("events.out.tfevents.*"))
    record = json.loads((tmp_path / "runs" / "quiet" / "quadratseg_config.json").read_text())
    assert record["tensorboard"] is False and (tmp_path / "runs" / "quiet" / "weights" / "last.pt").is_file()


def test_tracking_switches_reach_ultralytics_settings():
    from ultralytics.utils import SETTINGS

    from quadratseg.yolo_train import set_tracking

    assert set_tracking(False) == {"tensorboard": False, "mlflow": None}
    assert SETTINGS["tensorboard"] is False and SETTINGS["mlflow"] is False
    assert set_tracking(True)["tensorboard"] is True and SETTINGS["tensorboard"] is True
    try:
        import mlflow  # noqa: F401
    except ImportError:
        with pytest.raises(QuadratsegError, match="pip install mlflow"):
            set_tracking(True, "file:///tmp/mlruns")


def test_the_cli_takes_no_flags_and_device_lists():
    from coral_seg_yolo.train import train
    from quadratseg.cli import negated_flags
    from quadratseg.yolo_train import yolo_device

    assert negated_flags(train, ["--data", "d.yaml", "--no-tensorboard"]) == [
        "--data",
        "d.yaml",
        "--tensorboard=False",
    ]
    assert yolo_device((0, 1)) == "0,1" and yolo_device("cuda:0,1") == "0,1" and yolo_device("cpu") == "cpu"
    with pytest.raises(QuadratsegError, match="GPU index"):
        yolo_device("gpu0")


def test_a_device_list_reaches_ultralytics_ddp_selection(tmp_path, models_dir):
    """Two GPUs asked on a machine without them: ultralytics' own device check answers, clearly."""
    import torch

    from quadratseg.yolo_train import train_yolo

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs: the list would start a real DDP run")
    data = _square_seg_dataset(tmp_path / "squares", images=2)
    root, _ = models_dir
    config = {"model": "yolo11n-seg.yaml", "epochs": 1, "imgsz": 64, "batch": 2, "workers": 0}
    with pytest.raises(QuadratsegError, match=r"device '0,1' is not available"):
        train_yolo(config, data, tmp_path / "runs", "ddp", device=(0, 1), models_dir=root)


def test_a_local_checkpoint_is_fine_tuned_without_a_models_folder(tmp_path, models_dir):
    """A training that starts from a local .pt (a shipped or one's own model) needs no models folder,
    which only holds the COCO weights an architecture YAML starts from; a YAML still needs one."""
    from quadratseg.yolo_train import train_yolo

    data = _square_seg_dataset(tmp_path / "squares", images=2)
    root, _ = models_dir
    checkpoint = root / "yolo11n-seg.pt"
    config = {"model": str(checkpoint), "epochs": 1, "imgsz": 64, "batch": 2, "workers": 0, "plots": False}
    run = train_yolo(config, data, tmp_path / "runs", "tuned", tensorboard=False)
    assert run["config"]["pretrained"] == str(checkpoint) and run["config"]["from_scratch"] is False
    assert Path(run["best"]).is_file()
    config["model"] = "yolo11n-seg.yaml"
    with pytest.raises(QuadratsegError, match="needs models_dir"):
        train_yolo(config, data, tmp_path / "runs", "yaml", tensorboard=False)
