"""The real-data recipe configs of DINOv2_mmseg build and do what their comments say (MMSeg/mmengine
build the model and the optimizer from them, as training does)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "DINOv2_mmseg" / "configs"


@pytest.fixture
def finetune_cfg():
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral_finetune.py"))
    # the same recipe on the tiny DINOv2-shaped ViT (48-dim, 4 blocks) so it builds in a second on CPU
    cfg.model.backbone.arch = "tiny"
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    cfg.model.neck.in_channels = [48] * 4
    cfg.model.neck.out_channels = 48
    cfg.model.decode_head.in_channels = [48] * 4
    cfg.model.decode_head.channels = 32
    cfg.model.decode_head.norm_cfg = {"type": "GN", "num_groups": 4, "requires_grad": True}
    cfg.model.data_preprocessor.size = (112, 112)
    return cfg


def test_finetune_recipe_slows_the_backbone_and_spares_norms_and_embeddings_from_decay(finetune_cfg):
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import DINOv2_mmseg.plugins  # noqa: F401  registers the backbone

    register_all_modules()
    model = MODELS.build(finetune_cfg.model)
    wrapper = build_optim_wrapper(model, finetune_cfg.optim_wrapper)
    base_lr, base_wd = 1e-4, 0.05
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    checked = {"backbone_norm": 0, "embedding": 0, "backbone_weight": 0, "head": 0}
    for name, param in model.named_parameters():
        group = groups[id(param)]
        if name.startswith("backbone."):
            assert group["lr"] == pytest.approx(0.1 * base_lr), name
            no_decay = ".norm" in name or "pos_embed" in name or "cls_token" in name or "reg_token" in name
            assert group["weight_decay"] == (0.0 if no_decay else pytest.approx(base_wd)), name
            kind = (
                "embedding"
                if "embed" in name or "token" in name
                else "backbone_norm"
                if no_decay
                else "backbone_weight"
            )
            checked[kind] += 1
        else:
            assert group["lr"] == pytest.approx(base_lr), name
            checked["head"] += 1
    assert checked["backbone_norm"] >= 2 * 4 * 2 and all(checked.values()), checked  # 4 blocks x 2 norms


def test_finetune_recipe_gives_the_head_four_scales(finetune_cfg):
    import torch
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import DINOv2_mmseg.plugins  # noqa: F401

    register_all_modules()
    model = MODELS.build(finetune_cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, 112, 112))
        logits = model.decode_head(feats)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]  # stride 14 maps (8 px) at x4, x2, x1, x0.5
    assert logits.shape[:2] == (1, 17)
