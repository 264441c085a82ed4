"""DINOv2_mmseg training for real runs, on the tiny arch and the synthetic set: TensorBoard events read
back with tensorboard's own reader, the hierarchical family -> genus start, test-time augmentation and
sliding windows scored by MMSeg's IoUMetric, and torchrun with the pytorch launcher (gloo, loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from DINOv2_mmseg.prepare_data import write_mmseg_layout

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "DINOv2_mmseg" / "configs" / "dinov2_tiny_segformer_cpu.py"
ONE_EPOCH = {
    "train_cfg.max_epochs": 1,
    "train_cfg.val_interval": 1,
    "default_hooks.checkpoint.interval": 1,
    "default_hooks.logger.interval": 1,
    "param_scheduler": [],
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def layouts(coral_dataset, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mmseg_levels")
    for level in ("main_family", "finegrained"):
        write_mmseg_layout(coral_dataset, root / level, level=level)
    return {"family": root / "main_family", "genus": root / "finegrained"}


@pytest.fixture(scope="module")
def family_run(layouts, tmp_path_factory) -> dict:
    """Stage 1: the tiny config on the main families for one epoch, through the train CLI function."""
    from DINOv2_mmseg.train import train

    work = tmp_path_factory.mktemp("family")
    return json.loads(
        train(str(TINY), str(work), str(layouts["family"]), cfg_options=ONE_EPOCH, seed=0, from_scratch=True)
    )


def events_files(work_dir: str | Path) -> list[Path]:
    return sorted(Path(work_dir).rglob("events.out.tfevents.*"))


def test_training_writes_tensorboard_events_with_the_loss(family_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert family_run["from_scratch"] is True and family_run["backbone_weights"] is None
    assert family_run["backbone_weights_source"] == "from_scratch"
    files = events_files(family_run["work_dir"])
    assert len(files) == 1 and files[0].parent.name == "vis_data"
    events = EventAccumulator(str(files[0].parent))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "loss" in tags and "mIoU" in tags, tags
    losses = [e.value for e in events.Scalars("loss")]
    assert losses and all(v > 0 for v in losses)


def test_genus_stage_starts_from_the_family_backbone_with_a_fresh_head(family_run, layouts, tmp_path, capsys):
    """Stage 2 (17 classes) with load_from = stage 1's work dir, trained at lr 0 so the saved weights
    are the ones it started from; also --no-tensorboard: no events file."""
    import torch

    from DINOv2_mmseg.prepare_data import class_table
    from DINOv2_mmseg.train import train

    classes = class_table("finegrained")[0]
    options = {
        **ONE_EPOCH,
        "load_from": family_run["work_dir"],  # a work dir: its best checkpoint
        "classes": classes,
        "model.decode_head.num_classes": len(classes),
        "optim_wrapper.optimizer.lr": 0.0,
        **{f"{split}_dataloader.dataset.metainfo.classes": classes for split in ("train", "val", "test")},
    }
    result = json.loads(
        train(
            str(TINY), str(tmp_path / "genus"), str(layouts["genus"]), cfg_options=options, tensorboard=False
        )
    )
    assert result["backbone_weights_source"] == "load_from" and result["from_scratch"] is False
    assert result["backbone_weights"] == family_run["best_checkpoint"]
    assert events_files(result["work_dir"]) == []  # --no-tensorboard

    def state(path):
        return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]

    family, genus = state(family_run["best_checkpoint"]), state(tmp_path / "genus" / "epoch_1.pth")
    backbone = [k for k in family if k.startswith("backbone.")]
    assert len(backbone) > 20
    for key in backbone:
        assert torch.equal(family[key], genus[key]), key
    fused = "decode_head.fusion_conv.conv.weight"  # same shape in both stages: carried over
    assert torch.equal(family[fused], genus[fused])
    # the classifier changed size (8 -> 17): skipped by mmengine's loader, still as initialised
    assert (
        family["decode_head.conv_seg.weight"].shape[0] == 8
        and genus["decode_head.conv_seg.weight"].shape[0] == 17
    )
    assert (
        torch.count_nonzero(genus["decode_head.conv_seg.bias"]) == 0
    )  # BaseDecodeHead: normal(0.01), bias 0
    assert 0.005 < float(genus["decode_head.conv_seg.weight"].std()) < 0.02
    assert torch.count_nonzero(family["decode_head.conv_seg.bias"]) > 0  # stage 1 trained its own
    printed = capsys.readouterr().out  # mmengine's load_state_dict prints what it skipped
    assert "size mismatch for decode_head.conv_seg.weight" in printed


def test_tta_and_full_resolution_sliding_windows_give_iou_metrics(family_run, tmp_path):
    from DINOv2_mmseg.runner import load_config
    from DINOv2_mmseg.testloop import run_test

    config, checkpoint = family_run["config"], family_run["best_checkpoint"]
    single = run_test(load_config(config), checkpoint, tmp_path / "single")
    tta = run_test(load_config(config), checkpoint, tmp_path / "tta", tta=True)
    # the slide variant at full resolution (as dinov2_vitb14_segformer_coral_slide1920.py for 1920 px):
    # the 256 px images kept at 256 px, 112 px windows every 72 px
    full = {"test_dataloader.dataset.pipeline.1.scale": (256, 256), "model.test_cfg.stride": (72, 72)}
    slide = run_test(load_config(config, full), checkpoint, tmp_path / "slide")
    for metrics in (single, tta, slide):
        assert {"aAcc", "mIoU", "mAcc"} <= set(metrics) and 0 <= metrics["mIoU"] <= 100
    assert events_files(tmp_path) == []  # testing writes local logs only
    tta_log = "".join(p.read_text() for p in (tmp_path / "tta").rglob("*.log"))
    assert "SegTTAModel" in tta_log and "TestTimeAug" in tta_log


def test_torchrun_with_the_pytorch_launcher_trains_on_cpu_with_gloo(layouts, tmp_path):
    from loopback.harness import free_port

    port = free_port()
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "GLOO_SOCKET_IFNAME": "lo",
        "QUADRATSEG_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=1",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "DINOv2_mmseg.train",
        str(TINY),
        "--data-root",
        str(layouts["family"]),
        "--work-dir",
        str(tmp_path / "work"),
        "--launcher",
        "pytorch",
        "--from-scratch",
        "--no-tensorboard",
        "--cfg-options",
        json.dumps({**ONE_EPOCH, "train_cfg.val_interval": 2}),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "work" / "epoch_1.pth").is_file(), f"{seconds:.0f} s"
    logs = "".join(p.read_text() for p in (tmp_path / "work").rglob("*.log"))
    assert "Distributed launcher: pytorch" in logs and "'backend': 'gloo'" in logs
    assert "MMDistributedDataParallel" in logs


def test_the_pytorch_launcher_outside_torchrun_says_how_to_start_it(monkeypatch):
    from DINOv2_mmseg.train import train
    from quadratseg.errors import QuadratsegError

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        QuadratsegError, match=r"runs under torchrun, which sets RANK.*torchrun --nproc_per_node"
    ):
        train("dinov2_tiny_segformer_cpu.py", launcher="pytorch", from_scratch=True)


def test_training_writes_the_layouts_taxonomy_level_beside_the_checkpoints(tiny_mmseg_model):
    """MMSeg training wrote no model card, so the cover of an extended-level MMSeg model (class names
    that are also genus names) was taken at the finest level that holds them, as genera. The card
    beside the checkpoints now carries the layout's level, which pipeline.process and
    DINOv2_mmseg.predict read."""
    from quadratseg.model_card import read_model_card

    _config, checkpoint, data_root = tiny_mmseg_model
    card = read_model_card(checkpoint)
    layout = json.loads((data_root / "dataset.json").read_text())
    assert card["task"] == "mmseg" and card["level"] == layout["level"] == "main_family"
    assert card["classes"] == layout["classes"]
