"""Small model files built from the libraries' own classes, for tests that need weights to load."""

from __future__ import annotations

from pathlib import Path


def tiny_sam_file(path: Path, extra_head: bool = True) -> Path:
    """A small SAM built from segment_anything's classes (64 px tokens grid), saved like a CoralSCoP file."""
    import torch

    from DINOv2_mmseg.refine import build_sam_model

    torch.manual_seed(0)
    sam = build_sam_model(
        {"embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": [1], "img_size": 256}
    )
    state = sam.state_dict()
    if extra_head:  # CoralSCoP's coral/non-coral head: keys vanilla SAM does not have
        state["mask_decoder.cate_head.weight"] = torch.zeros(2, 256)
    torch.save(state, path)
    return path


def train_family_seg_model(
    samples, root: Path, epochs: int, imgsz: int, **train_args
) -> tuple[Path, Path, dict]:
    """A YOLO11n-seg trained from scratch on ``samples`` at the main-family level: (weights,
    data.yaml, the training summary).

    ``train_args`` go to ``coral_seg_yolo.train`` (``args`` for ultralytics' own options).
    """
    import json

    from coral_seg_yolo.prepare_data import write_seg_layout
    from coral_seg_yolo.train import train

    write_seg_layout(samples, root / "seg", level="main_family")
    options = {"batch": 2, "workers": 0, "args": {"plots": False}, **train_args}
    result = json.loads(
        train(
            str(root / "seg" / "data.yaml"), project=str(root / "runs"), epochs=epochs, imgsz=imgsz, **options
        )
    )
    weights = Path(result["last"]) if result.get("last") else Path(result["best"])
    return weights, root / "seg" / "data.yaml", result
