"""The real-data recipe configs of DINOv2_mmseg build and do what their comments say (MMSeg/mmengine
build the model and the optimizer from them, as training does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quadratseg.errors import QuadratsegError

CONFIGS = Path(__file__).resolve().parents[1] / "DINOv2_mmseg" / "configs"


VIT_B_CONFIGS = (
    "dinov2_vitb14_segformer_coral.py",
    "dinov2_vitb14_segformer_coral_family.py",
    "dinov2_vitb14_segformer_coral_genus_from_family.py",
    "dinov2_vitb14_segformer_coral_slide1920.py",
    "dinov2_vitb14_segformer_coral_multilevel.py",
)
TINY_CONFIG = "dinov2_tiny_segformer_cpu.py"


def tiny_sized(name: str):
    """A bundled config with its recipe as written, on the tiny DINOv2-shaped ViT (48-dim, 4 blocks) so
    it builds in a second on CPU (only sizes change: arch, channels, the head's norm)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(CONFIGS / name))
    cfg.model.backbone.arch = "tiny"
    cfg.model.backbone.out_indices = (0, 1, 2, 3)
    if cfg.model.get("neck"):
        cfg.model.neck.in_channels = [48] * 4
        cfg.model.neck.out_channels = 48
    cfg.model.decode_head.in_channels = [48] * 4
    cfg.model.decode_head.channels = 32
    cfg.model.decode_head.norm_cfg = {"type": "GN", "num_groups": 4, "requires_grad": True}
    cfg.model.data_preprocessor.size = (112, 112)
    return cfg


def build_model_and_optimizer(cfg):
    """The model and mmengine's optimizer wrapper, built from ``cfg`` as the Runner builds them."""
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import DINOv2_mmseg.plugins  # noqa: F401  registers the backbone

    register_all_modules()
    model = MODELS.build(cfg.model)
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


@pytest.fixture
def finetune_cfg():
    return tiny_sized("dinov2_vitb14_segformer_coral_multilevel.py")


@pytest.mark.parametrize("name", VIT_B_CONFIGS)
def test_every_vit_b_config_fine_tunes_the_backbone_slower_and_spares_norms_and_embeddings(name):
    """The configs a researcher starts from (base, family, genus, 1920 px, multi-level neck) all use the
    fine-tuning recipe: backbone lr x 0.1, no decay on position embeddings, tokens and LayerNorms."""
    cfg = tiny_sized(name)
    model, wrapper = build_model_and_optimizer(cfg)
    assert cfg.model.backbone.freeze_vit is False
    base_lr, base_wd = 1e-4, 0.05
    defaults = wrapper.optimizer.defaults
    assert (defaults["lr"], defaults["weight_decay"]) == (base_lr, base_wd)
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    checked = {"backbone_norm": 0, "embedding": 0, "backbone_weight": 0, "head": 0}
    for param_name, param in model.named_parameters():
        group = groups[id(param)]
        if param_name.startswith("backbone."):
            assert group["lr"] == pytest.approx(0.1 * base_lr), param_name
            no_decay = any(k in param_name for k in (".norm", "pos_embed", "cls_token", "reg_token"))
            assert group["weight_decay"] == (0.0 if no_decay else pytest.approx(base_wd)), param_name
            kind = (
                "embedding"
                if "pos_embed" in param_name or "token" in param_name
                else "backbone_norm"
                if no_decay
                else "backbone_weight"
            )
            checked[kind] += 1
        else:
            assert group["lr"] == pytest.approx(base_lr), param_name
            checked["head"] += 1
    # 4 blocks x 2 LayerNorms x (weight, bias) + the final norm; pos_embed + cls_token
    assert checked["backbone_norm"] == 4 * 2 * 2 + 2 and checked["embedding"] == 2, checked
    assert checked["backbone_weight"] > 0 and checked["head"] > 0, checked


def _one_training_step(model, wrapper, size: int = 112, classes: int = 8) -> None:
    """One optimizer step of ``model`` on a random image and label map (the Runner's train_step)."""
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    torch.manual_seed(0)
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.randint(0, classes, (1, size, size)))
    sample.set_metainfo({"img_shape": (size, size), "pad_shape": (size, size), "ori_shape": (size, size)})
    data = {"inputs": [torch.randint(0, 256, (3, size, size), dtype=torch.uint8)], "data_samples": [sample]}
    model.train()
    model.train_step(data, wrapper)


def test_frozen_config_trains_the_head_only_and_keeps_the_vit_unchanged():
    """The frozen-backbone baseline: no ViT parameter requires grad, one real training step leaves every
    ViT tensor as it was and changes the head; upstream's schedule (AdamW lr 1e-3, wd 0.01)."""
    import torch

    cfg = tiny_sized("dinov2_vitb14_segformer_coral_frozen.py")
    model, wrapper = build_model_and_optimizer(cfg)
    assert cfg.model.backbone.freeze_vit is True
    assert (wrapper.optimizer.defaults["lr"], wrapper.optimizer.defaults["weight_decay"]) == (1e-3, 0.01)
    backbone = dict(model.backbone.named_parameters())
    assert len(backbone) > 0 and not any(p.requires_grad for p in backbone.values())
    head = dict(model.decode_head.named_parameters())
    assert all(p.requires_grad for p in head.values())
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _one_training_step(model, wrapper)
    assert not model.backbone.vit.training  # a frozen ViT stays in eval mode (no stochastic depth)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    vit_changed = [k for k in changed if k.startswith("backbone.")]
    head_changed = [k for k in changed if k.startswith("decode_head.")]
    assert vit_changed == []
    assert "decode_head.conv_seg.weight" in head_changed


def test_tiny_cpu_config_trains_from_scratch_with_one_plain_recipe():
    """The tiny arch has no pretrained weights: every parameter at the same lr 0.002 and weight decay 0.01
    (the fine-tuning multipliers of the ViT-B family are not inherited)."""
    cfg = tiny_sized(TINY_CONFIG)
    model, wrapper = build_model_and_optimizer(cfg)
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g["params"]}
    settings = {(groups[id(p)]["lr"], groups[id(p)]["weight_decay"]) for p in model.parameters()}
    assert settings == {(0.002, 0.01)}
    assert cfg.model.get("neck") is None


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


# --- pretrained by default: the backbone weights decision (a table of cases) -------------------


def _weights_case(tmp_path, case):
    from DINOv2_mmseg.train import choose_backbone_weights

    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    (models / "dinov2_vitb14_pretrain.pth").write_bytes(b"x")
    backbone = {"type": "DINOv2", "arch": "vit_b", **case.get("backbone", {})}
    return choose_backbone_weights(
        backbone,
        case.get("from_scratch", False),
        tmp_path / case.get("models", "models"),
        case.get("dinov2_checkpoint"),
        case.get("load_from"),
        case.get("resume_from"),
    )


@pytest.mark.parametrize(
    ("case", "path", "source"),
    [
        ({}, "models/dinov2_vitb14_pretrain.pth", "QUADRATSEG_MODELS_DIR"),
        ({"dinov2_checkpoint": "env.pth"}, "env.pth", "DINOV2_CHECKPOINT"),
        ({"backbone": {"checkpoint": "cfg.pth"}, "dinov2_checkpoint": "env.pth"}, "cfg.pth", "config"),
        ({"from_scratch": True, "dinov2_checkpoint": "env.pth"}, None, "from_scratch"),
        ({"backbone": {"arch": "tiny"}, "from_scratch": True}, None, "from_scratch"),
        ({"load_from": "family.pth", "models": "empty"}, "family.pth", "load_from"),
        ({"resume_from": "epoch_3.pth", "from_scratch": True}, "epoch_3.pth", "resume"),
        ({"backbone": {"type": "ResNetV1c"}, "from_scratch": True}, None, "not DINOv2"),
    ],
)
def test_backbone_starts_pretrained_unless_from_scratch_is_asked(tmp_path, case, path, source):
    weights = _weights_case(tmp_path, case)
    expected = None if path is None else str(tmp_path / path) if path.startswith("models/") else path
    assert (weights.path, weights.source) == (expected, source)
    assert weights.from_scratch == (source == "from_scratch")


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ({"models": "empty"}, "MissingWeightsError", "dinov2_vitb14_pretrain.pth from the DINOv2 repository"),
        (
            {"backbone": {"arch": "tiny"}},
            "MissingWeightsError",
            "'tiny' has no official pretrained weights; pass",
        ),
        ({"backbone": {"registers": 4}}, "MissingWeightsError", "_reg4_pretrain.pth, or pass --from-scratch"),
        (
            {"backbone": {"checkpoint": "c.pth"}, "from_scratch": True},
            "QuadratsegError",
            "contradicts model.backbone",
        ),
        (
            {"load_from": "family.pth", "from_scratch": True},
            "QuadratsegError",
            "contradicts load_from=family.pth",
        ),
    ],
)
def test_missing_or_contradictory_backbone_weights_are_clear_errors(tmp_path, case, error, message):
    from quadratseg.errors import QuadratsegError
    from quadratseg.weights import MissingWeightsError

    with pytest.raises(QuadratsegError) as info:
        _weights_case(tmp_path, case)
    assert isinstance(info.value, MissingWeightsError) == (error == "MissingWeightsError")
    assert message in str(info.value)
    if error == "MissingWeightsError":
        assert "--from-scratch" in str(info.value)


# --- TensorBoard / MLflow, launcher: what the config becomes -----------------------------------


def test_vis_backends_tensorboard_by_default_off_by_flag_mlflow_needs_its_package(monkeypatch):
    import importlib.util

    from mmengine.config import Config

    from DINOv2_mmseg.runner import set_vis_backends
    from quadratseg.errors import QuadratsegError

    cfg = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral.py"))
    assert [b["type"] for b in cfg.visualizer.vis_backends] == ["LocalVisBackend", "TensorboardVisBackend"]
    assert set_vis_backends(cfg) == ["LocalVisBackend", "TensorboardVisBackend"]
    assert set_vis_backends(cfg, tensorboard=False) == ["LocalVisBackend"]
    assert cfg.vis_backends == cfg.visualizer.vis_backends  # the saved config says the same
    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(QuadratsegError, match="pip install mlflow"):
            set_vis_backends(cfg, mlflow_uri="file:///tmp/mlruns")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "mlflow" else real_find_spec(name, *a),
    )
    assert set_vis_backends(cfg, mlflow_uri="http://127.0.0.1:5000")[-1] == "MLflowVisBackend"
    mlflow = cfg.visualizer.vis_backends[-1]
    assert mlflow["tracking_uri"] == "http://127.0.0.1:5000"
    assert mlflow["exp_name"] == "dinov2_vitb14_segformer_coral"


def test_launcher_sets_gloo_on_cpu_nccl_on_gpu_and_refuses_unknown_names():
    from mmengine.config import Config

    from DINOv2_mmseg.runner import set_launcher
    from quadratseg.errors import QuadratsegError

    cfg = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral.py"))
    set_launcher(cfg, "slurm", cuda=True)
    assert cfg.launcher == "slurm" and cfg.env_cfg.dist_cfg.backend == "nccl"
    assert cfg.get("model_wrapper_cfg") is None  # mmengine's DDP on the rank's GPU
    set_launcher(cfg, "none", cuda=False)
    assert cfg.launcher == "none"
    with pytest.raises(QuadratsegError, match="needs GPUs; on CPU use torchrun"):
        set_launcher(cfg, "mpi", cuda=False)
    with pytest.raises(QuadratsegError, match="choose one of none, pytorch, slurm, mpi"):
        set_launcher(cfg, "torchrun", cuda=True)


# --- hierarchical configs, test-time configs --------------------------------------------------


def test_hierarchical_configs_follow_the_taxonomy_and_chain_by_work_dir():
    from mmengine.config import Config

    from DINOv2_mmseg.prepare_data import class_table

    family = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral_family.py"))
    genus = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral_genus_from_family.py"))
    for cfg, level in ((family, "main_family"), (genus, "finegrained")):
        classes = class_table(level)[0]
        assert cfg.model.decode_head.num_classes == len(classes)
        for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
            assert list(cfg[loader].dataset.metainfo.classes) == classes
    assert (family.model.decode_head.num_classes, genus.model.decode_head.num_classes) == (8, 17)
    assert family.load_from is None
    # stage 2 starts from stage 1's default work dir (train resolves a work dir to its best checkpoint)
    assert Path(genus.load_from) == Path("work_dirs") / "dinov2_vitb14_segformer_coral_family"


def test_tta_refuses_scales_that_miss_the_test_scale():
    from mmengine.config import Config

    from DINOv2_mmseg.testloop import use_tta

    for name in ("dinov2_vitb14_segformer_coral.py", "dinov2_vitb14_segformer_coral_slide1920.py"):
        cfg = Config.fromfile(str(CONFIGS / name))
        use_tta(cfg)  # every bundled config's TTA holds its own test scale
        assert cfg.model.type == "SegTTAModel"
    slide = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral_slide1920.py"))
    base = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral.py"))
    slide.tta_pipeline = base.tta_pipeline  # 777-1295 px around a 1920 px test: silently downscaled
    with pytest.raises(QuadratsegError, match="tta_pipeline resizes to"):
        use_tta(slide)


def test_tta_pipeline_and_full_resolution_slide_config_for_1920_px_quadrats():
    from mmengine.config import Config

    base = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral.py"))
    transforms = base.tta_pipeline[1].transforms
    assert [t["scale"] for t in transforms[0]] == [(777, 777), (1036, 1036), (1295, 1295)]
    assert [t["prob"] for t in transforms[1]] == [0.0, 1.0]  # each scale as is and flipped
    assert base.tta_model.type == "SegTTAModel"
    slide = Config.fromfile(str(CONFIGS / "dinov2_vitb14_segformer_coral_slide1920.py"))
    assert slide.test_dataloader.dataset.pipeline[1].scale == (1920, 1920)
    assert slide.val_dataloader.dataset.pipeline[1].scale == (1036, 1036)  # validation stays cheap
    tta = slide.tta_pipeline[1].transforms[0]
    assert [t["scale"] for t in tta] == [(1440, 1440), (1920, 1920), (2400, 2400)]  # around 1920, not 1036
    test_cfg = slide.model.test_cfg
    assert test_cfg.mode == "slide" and test_cfg.crop_size == (518, 518)
    # MMSeg's slide_inference grid: windows per side, the last one reaching the border
    crop, stride = test_cfg.crop_size[0], test_cfg.stride[0]
    windows = max(1920 - crop + stride - 1, 0) // stride + 1
    assert windows == 5 and (windows - 1) * stride + crop >= 1920 and crop - stride >= crop // 4
