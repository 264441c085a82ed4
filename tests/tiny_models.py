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
