"""The real-data recipe configs of DINOv2_mmseg build and do what their comments say (MMSeg/mmengine
build the model and the optimizer from them, as training does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quadratseg.errors import QuadratsegError

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

    from DINOv2_mmseg.test import use_tta

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
