"""Semantic class probabilities from a trained MMSeg segmentor: the call the CLIs, the evaluation,
the refinement and the Nuclio handler share.

Checkpoints: a deployed file (``best_segformer.pth``: a plain ``{"state_dict", "meta"}``
written by :func:`export_plain_checkpoint`) and a training checkpoint from a work dir (mmengine
pickles its message hub into it) are both read without running code
(:func:`DINOv2_mmseg.compat.load_checkpoint_file`); a file that needs more is refused unless
``trust_checkpoint`` (``--trust-checkpoint``). Either must fit the config's model exactly: a
checkpoint of another architecture or class count is refused with the names that differ.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)


def read_segmentor_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """``{"state_dict", "meta"}`` of a deployed or training checkpoint (see the module docstring);
    ``trust``: unpickle a file that needs more than tensors and mmengine's types (``--trust-checkpoint``)."""
    from DINOv2_mmseg.compat import load_checkpoint_file

    ckpt = load_checkpoint_file(path, "segmentor checkpoint", trust=trust)
    if not isinstance(ckpt, dict):
        raise QuadratsegError(f"{path} is not a segmentor checkpoint")
    state = ckpt.get("state_dict", ckpt)
    meta = ckpt.get("meta", {}) if "state_dict" in ckpt else {}
    return {"state_dict": state, "meta": meta or {}}


def check_state_dict_fits(model: Any, state: dict[str, Any], source: str) -> None:
    """Raise unless ``state`` has exactly the model's parameter names and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        raise QuadratsegError(
            f"{source} does not fit the config's model: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(wrong)} of another shape "
            f"(e.g. {wrong[:2]}); use the config the checkpoint was trained with"
        )


def export_plain_checkpoint(checkpoint: str | Path, out_path: str | Path, trust: bool = False) -> Path:
    """Write a training checkpoint as ``{"state_dict", "meta": {"dataset_meta"}}`` (loads weights_only)."""
    import torch

    ckpt = read_segmentor_checkpoint(checkpoint, trust)
    meta = ckpt["meta"].get("dataset_meta") or {}
    plain_meta = {
        "dataset_meta": {
            "classes": [str(c) for c in meta.get("classes", [])],
            "palette": [[int(v) for v in c] for c in (meta.get("palette") or [])],
        }
    }
    out = Path(out_path)
    torch.save({"state_dict": dict(ckpt["state_dict"]), "meta": plain_meta}, out)
    return out


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> cuda:0 when a GPU is visible, else cpu."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    return device


class SemanticSegmenter:
    """A config + checkpoint, ready to give class probabilities for uint8 RGB images
    (``trust_checkpoint``: see :func:`read_segmentor_checkpoint`)."""

    def __init__(
        self, config: Any, checkpoint: str | Path, device: str = "auto", trust_checkpoint: bool = False
    ):
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmseg.registry import MODELS

        from DINOv2_mmseg.runner import load_config

        cfg = config if isinstance(config, Config) else load_config(config)
        cfg.model.pretrained = None
        cfg.model.train_cfg = None
        if cfg.model.get("backbone"):
            cfg.model.backbone.checkpoint = None  # the segmentor checkpoint holds the backbone too
        init_default_scope(cfg.get("default_scope", "mmseg"))
        model = MODELS.build(cfg.model)
        ckpt = read_segmentor_checkpoint(checkpoint, trust_checkpoint)
        check_state_dict_fits(model, ckpt["state_dict"], str(checkpoint))
        model.load_state_dict(ckpt["state_dict"], strict=True)
        meta = ckpt["meta"].get("dataset_meta") or {}
        classes = list(meta.get("classes") or cfg.get("classes") or [])
        num_classes = int(model.decode_head.num_classes)
        if len(classes) != num_classes:
            raise QuadratsegError(
                f"{checkpoint} names {len(classes)} classes for a head of {num_classes}; "
                "train with a config whose classes match the data"
            )
        model.dataset_meta = {"classes": classes, "palette": meta.get("palette")}
        if cfg.get("test_dataloader"):
            # mmseg's inference_model reads cfg.test_pipeline: make it the test loader's pipeline, so
            # inference sees images as the test/val loops do (the variable goes stale after overrides)
            cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
        model.cfg = cfg
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes: list[str] = classes
        self.palette: list[list[int]] = [list(c) for c in (meta.get("palette") or [])]
        self.cfg = cfg

    def predict_probs(self, image_rgb: np.ndarray) -> np.ndarray:
        """Softmax class probabilities (C, H, W) float32 of one uint8 RGB image (H, W, 3)."""
        import torch
        from mmseg.apis import inference_model

        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise QuadratsegError(
                f"expected a uint8 RGB image (H, W, 3), got {image_rgb.dtype} {image_rgb.shape}"
            )
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])  # mmseg's pipeline reads BGR, like cv2
        result = inference_model(self.model, bgr)
        logits = result.seg_logits.data
        return torch.softmax(logits.float(), dim=0).cpu().numpy()

    def predict_classes(self, image_rgb: np.ndarray) -> np.ndarray:
        """Class index map (H, W) uint8 of one uint8 RGB image."""
        from DINOv2_mmseg.sam_refine import top_class

        return top_class(self.predict_probs(image_rgb))[0]
