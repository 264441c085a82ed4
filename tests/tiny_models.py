"""Small model files built from the libraries' own classes, for tests that need weights to load."""

from __future__ import annotations

from pathlib import Path


def tiny_sam_file(path: Path, extra_head: bool = True) -> Path:
    """A small SAM built from segment_anything's classes (64 px tokens grid), saved like a CoralSCoP file."""
    import torch

    from DINOv2_mmseg.sam_refine import build_sam_model

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
    options = {"batch": 2, "workers": 0, "from_scratch": True, "args": {"plots": False}, **train_args}
    result = json.loads(
        train(
            str(root / "seg" / "data.yaml"), project=str(root / "runs"), epochs=epochs, imgsz=imgsz, **options
        )
    )
    weights = Path(result["last"]) if result.get("last") else Path(result["best"])
    return weights, root / "seg" / "data.yaml", result


def confident_copy(weights: Path, out: Path) -> Path:
    """The model with its box-score biases raised so every box clears the handler's 0.25 box threshold:
    a 1-epoch model finds no quadrat, and an answer that may be empty tests nothing."""
    import torch

    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        if ckpt.get(key) is not None:
            for branch in ckpt[key].model[-1].cv3:
                branch[-1].bias.data.fill_(10.0)
    torch.save(ckpt, out)
    return out


def tiny_lama_file(path: Path) -> Path:
    """A TorchScript file with big-lama.pt's signature, (image [B,3,H,W] 0-1, mask [B,1,H,W] 0/1) ->
    [B,3,H,W], that fills the mask with the mean of its surroundings: the loaders, the zip and the
    callers are exercised without LaMa's weights."""
    import torch

    class TinyLama(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.to(image.dtype)
            fill = torch.nn.functional.avg_pool2d(image * (1 - m), 9, stride=1, padding=4)
            weight = torch.nn.functional.avg_pool2d(1 - m, 9, stride=1, padding=4).clamp(min=1e-3)
            return image * (1 - m) + (fill / weight) * m

    torch.jit.script(TinyLama()).save(str(path))
    return path


def tiny_trainable_lama_file(path: Path, seed: int = 0) -> Path:
    """A small TorchScript network with big-lama.pt's signature and trainable weights (a few convolutions
    that fill the mask from its surroundings), for fine-tuning tests on CPU."""
    import torch

    class TinyTrainableLama(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(4, 16, 5, padding=2),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 16, 5, padding=4, dilation=2),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 3, 3, padding=1),
            )

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.to(image.dtype)
            fill = torch.sigmoid(self.body(torch.cat([image * (1 - m), m], dim=1)))
            return image * (1 - m) + fill * m

    torch.manual_seed(seed)
    torch.jit.script(TinyTrainableLama()).save(str(path))
    return path
