"""DINOv2_mmseg: MMSeg layout, the registered DINOv2 backbone, training mechanics, metrics, refinement."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_engineering.create_fiftyone_dataset import run_pull
from DINOv2_mmseg.compat import import_mmseg
from DINOv2_mmseg.prepare_data import class_index_mask, class_table, write_mmseg_layout
from quadratseg.errors import QuadratsegError
from quadratseg.settings import Settings
from quadratseg.taxonomy import load_taxonomy

TINY = Path(__file__).resolve().parents[1] / "DINOv2_mmseg" / "configs" / "dinov2_tiny_segformer_cpu.py"


@pytest.fixture(scope="module")
def coral_dataset(synthetic_set, tmp_path_factory):
    import fiftyone as fo

    name = f"mmseg-{uuid.uuid4().hex[:6]}"
    run_pull(
        name,
        "xml",
        str(synthetic_set / "cvat_exports" / "segmentation"),
        dataset_name=name,
        settings=Settings(media_dir=tmp_path_factory.mktemp("media")),
    )
    yield fo.load_dataset(name)
    fo.delete_dataset(name)


@pytest.fixture(scope="module")
def family_root(coral_dataset, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mmseg") / "main_family"
    write_mmseg_layout(coral_dataset, root, level="main_family")
    return root


def tiny_cfg(data_root: Path, epochs: int = 1, **options):
    from DINOv2_mmseg.runner import load_config

    base = {
        "train_cfg.max_epochs": epochs,
        "train_cfg.val_interval": epochs,
        "default_hooks.checkpoint.interval": 1,
        "default_hooks.logger.interval": 1,
        "param_scheduler": [],
        **options,
    }
    return load_config(TINY, base, str(data_root))


# --- prepare_data -----------------------------------------------------------------------------


def test_overlaps_go_to_the_polygon_listed_last_and_rings_make_holes():
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[3, 3], [7, 3], [7, 7], [3, 7]], float)
    mask = class_index_mask([(1, [outer, hole]), (2, [outer + 6])], (16, 16))
    assert mask[1, 1] == 1 and mask[5, 5] == 0  # inside the hole: background
    assert mask[8, 8] == 2 and mask[14, 14] == 2  # the later polygon lies on top
    assert mask.dtype == np.uint8 and mask.shape == (16, 16)


def test_layout_masks_match_the_polygons(coral_dataset, family_root):
    classes = (family_root / "classes.txt").read_text().split("\n")[:-1]
    assert classes == ["background", *load_taxonomy().classes("main_family")]
    palette = [
        tuple(map(int, line.split())) for line in (family_root / "palette.txt").read_text().splitlines()
    ]
    assert len(palette) == len(classes) and palette[0] == (0, 0, 0)
    info = json.loads((family_root / "dataset.json").read_text())
    assert sum(info["images"].values()) == coral_dataset.count()
    for split in ("train", "val", "test"):
        images = sorted((family_root / split / "data").iterdir())
        labels = sorted((family_root / split / "labels").iterdir())
        assert [p.stem for p in images] == [p.stem for p in labels] and len(images) == info["images"][split]
    # every sample's mask: values in range, each class present where one of its polygons is drawn last
    from quadratseg.fiftyone_io import level_field

    field = level_field("main_family")
    for sample in coral_dataset:
        split = next(t for t in ("train", "val", "test") if t in sample.tags)
        stem = f"{Path(sample.filepath).stem}_{sample.id[-6:]}"
        mask = cv2.imread(str(family_root / split / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.max() < len(classes)
        h, w = mask.shape
        last = sample[field].polylines[-1]
        ring = (np.asarray(last.points[0]) * [w, h]).astype(np.int32)
        cx, cy = ring.mean(axis=0).astype(int)
        if cv2.pointPolygonTest(ring.reshape(-1, 1, 2), (int(cx), int(cy)), True) > 2:
            assert classes[mask[cy, cx]] == last.label
        present = {classes[v] for v in np.unique(mask) if v}
        assert present <= {p.label for p in sample[field].polylines}
    assert info["pixels"]["background"] > 0


def test_prepare_refuses_unknown_level_and_keeps_existing_output(coral_dataset, tmp_path):
    with pytest.raises(QuadratsegError, match="unknown taxonomy level"):
        class_table("genus")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(QuadratsegError, match="already exists"):
        write_mmseg_layout(coral_dataset, out)
    assert (out / "keep.txt").read_text() == "x"


# --- the DINOv2 backbone ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "dim", "millions"),
    [("vit_s", 384, 22), ("vit_b", 768, 86), ("vit_l", 1024, 304), ("vit_g", 1536, 1136)],
)
def test_backbone_sizes_give_four_maps_at_stride_14(arch, dim, millions):
    import torch

    import_mmseg()
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS

    with torch.device("meta"):  # shapes without allocating a billion parameters
        backbone = MODELS.build(ConfigDict(type="DINOv2", arch=arch))
        maps = backbone(torch.empty(2, 3, 518, 392))
    assert [tuple(m.shape) for m in maps] == [(2, dim, 37, 28)] * 4
    params = sum(p.numel() for p in backbone.vit.parameters()) / 1e6
    assert abs(params - millions) / millions < 0.03  # the official DINOv2 sizes


def test_backbone_runs_at_any_size_and_freezes():
    import torch

    import_mmseg()
    from DINOv2_mmseg.plugins.backbone import DINOv2

    backbone = DINOv2(arch="tiny", freeze_vit=True, img_size=112)
    maps = backbone(torch.randn(1, 3, 100, 150))  # not multiples of 14: padded
    assert [tuple(m.shape) for m in maps] == [(1, 48, 8, 11)] * 4
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.vit.training


def _official_style_checkpoint(path: Path, embed_dim: int = 48, depth: int = 4):
    """A file shaped like dinov2_vit*14_pretrain.pth: timm names plus DINOv2's mask_token."""
    import timm
    import torch

    vit = timm.create_model(
        "vit_small_patch14_dinov2",
        pretrained=False,
        img_size=112,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=2,
    )
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    state["mask_token"] = torch.zeros(1, embed_dim)
    torch.save(state, path)
    return state


def test_backbone_loads_an_official_style_checkpoint_and_refuses_another_size(tmp_path):
    import torch

    import_mmseg()
    from DINOv2_mmseg.plugins.backbone import DINOv2

    state = _official_style_checkpoint(tmp_path / "dinov2_tiny.pth")
    backbone = DINOv2(arch="tiny", checkpoint=str(tmp_path / "dinov2_tiny.pth"), img_size=112)
    backbone.init_weights()
    assert torch.equal(backbone.vit.blocks[2].mlp.fc1.weight, state["blocks.2.mlp.fc1.weight"])
    _official_style_checkpoint(tmp_path / "vits.pth", embed_dim=384, depth=1)
    with pytest.raises(QuadratsegError, match=r"embedding size 384.*looks like arch=.vit_s."):
        DINOv2(arch="vit_b", checkpoint=str(tmp_path / "vits.pth")).init_weights()
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(QuadratsegError, match="not a DINOv2 ViT checkpoint"):
        DINOv2(arch="tiny", checkpoint=str(tmp_path / "other.pth")).init_weights()
    with pytest.raises(QuadratsegError, match="do not exist"):
        DINOv2(arch="tiny", checkpoint=str(tmp_path / "missing.pth")).init_weights()


# --- training, checkpoints, testing -----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(family_root, tmp_path_factory):
    """One CPU epoch of the tiny config; then resumed for a second epoch."""
    from DINOv2_mmseg.train import run_training

    work = tmp_path_factory.mktemp("work")
    first = run_training(tiny_cfg(family_root, 1), work, seed=0)
    resumed = run_training(tiny_cfg(family_root, 2), work, resume=True, seed=0)
    return work, first, resumed


@pytest.mark.slow
def test_training_saves_checkpoints_config_and_resumes(trained):
    import torch

    work, first, resumed = trained
    assert first["epochs"] == 1 and resumed["epochs"] == 2
    assert (work / "epoch_1.pth").is_file() and (work / "epoch_2.pth").is_file()
    assert (work / "dinov2_tiny_segformer_cpu.py").is_file()  # the resolved config
    assert "mIoU" in resumed["val"] and 0 <= resumed["val"]["mIoU"] <= 100
    ckpt1 = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)
    ckpt2 = torch.load(work / "epoch_2.pth", map_location="cpu", weights_only=False)
    assert ckpt2["meta"]["iter"] == 2 * ckpt1["meta"]["iter"]  # the second run continued, not restarted
    assert ckpt2["meta"]["dataset_meta"]["classes"][0] == "background"
    logs = "".join(p.read_text() for p in work.rglob("*.log"))
    assert "resumed epoch: 1" in logs


@pytest.mark.slow
def test_evaluate_equals_the_runner_metric_and_test_cli_draws(trained, family_root, tmp_path):
    from DINOv2_mmseg.evaluate import evaluate_segmenter, split_pairs
    from DINOv2_mmseg.predictor import SemanticSegmenter
    from DINOv2_mmseg.test import run_test

    work, _, resumed = trained
    segmenter = SemanticSegmenter(tiny_cfg(family_root, 2), work / "epoch_2.pth", "cpu")
    ours = evaluate_segmenter(segmenter, split_pairs(family_root, "val"), tmp_path / "eval")
    assert ours["mIoU"] == pytest.approx(resumed["val"]["mIoU"], abs=0.01)
    assert ours["aAcc"] == pytest.approx(resumed["val"]["aAcc"], abs=0.01)
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 0
    tested = run_test(
        tiny_cfg(family_root, 2), str(work / "epoch_2.pth"), tmp_path / "t", str(tmp_path / "show")
    )
    test_ours = evaluate_segmenter(segmenter, split_pairs(family_root, "test"))
    assert tested["mIoU"] == pytest.approx(test_ours["mIoU"], abs=0.01)
    assert len(list((tmp_path / "show").rglob("*.png"))) == len(split_pairs(family_root, "test"))


def test_metrics_equal_mmseg_iou_metric_on_its_pseudo_dataset(shared_data):
    import torch

    import_mmseg()
    from mmengine.structures import PixelData
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample

    from DINOv2_mmseg.metrics import confusion_matrix, metrics_from_confusion

    gts = [
        cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        for p in sorted((shared_data / "mmseg_pseudo_dataset" / "gts").glob("*.png"))
    ]
    values = np.unique(np.concatenate([g.ravel() for g in gts]))
    lut = np.full(256, 255, np.uint8)
    lut[values] = np.arange(len(values))
    n = len(values)
    names = [f"c{v}" for v in values]
    rng = np.random.default_rng(0)
    metric = IoUMetric(iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": names}
    cm = np.zeros((n, n), np.int64)
    samples = []
    for k, raw in enumerate(gts):
        gt = lut[raw]
        if k == 1:
            gt[:10] = 255  # ignored rows
        pred = np.roll(gt, 7, axis=1).copy()
        flip = rng.random(gt.shape) < 0.1
        pred[flip] = rng.integers(0, n, flip.sum())
        pred[pred == 255] = 0
        cm += confusion_matrix(pred, gt, n)
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred[None].astype(np.int64)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt[None].astype(np.int64)))
        samples.append(sample.to_dict())
    metric.process([{}], samples)
    theirs = metric.compute_metrics(metric.results)
    ours = metrics_from_confusion(cm, names)
    assert n > 4 and ours["mIoU"] == pytest.approx(theirs["mIoU"], abs=0.01)
    assert ours["aAcc"] == pytest.approx(theirs["aAcc"], abs=0.01)
    assert ours["mAcc"] == pytest.approx(theirs["mAcc"], abs=0.01)


# --- bad input ----------------------------------------------------------------------------------


def test_config_checks_name_the_problem(family_root, tmp_path):
    import shutil

    from DINOv2_mmseg.runner import check_config, load_config

    with pytest.raises(QuadratsegError, match=r"dataset root .* does not exist"):
        check_config(load_config(TINY, data_root=str(tmp_path / "nowhere")))
    with pytest.raises(QuadratsegError, match="in the data but not in the config"):
        check_config(
            tiny_cfg(family_root, **{"train_dataloader.dataset.metainfo.classes": ["background", "coral"]})
        )
    with pytest.raises(QuadratsegError, match="num_classes is 5"):
        check_config(tiny_cfg(family_root, **{"model.decode_head.num_classes": 5}))
    with pytest.raises(QuadratsegError, match=r"config .* does not exist; bundled configs"):
        load_config(tmp_path / "nope.py")
    broken = tmp_path / "broken"
    shutil.copytree(family_root, broken)
    mask_path = next((broken / "val" / "labels").glob("*.png"))
    cv2.imwrite(str(mask_path), np.full((8, 8), 20, np.uint8))
    with pytest.raises(QuadratsegError, match="class index 20"):
        check_config(tiny_cfg(broken))
    small = check_config(tiny_cfg(family_root, crop_size=(512, 512)))
    assert small["train_dataloader"]["smaller_than_crop"] == small["train_dataloader"]["images"]


@pytest.mark.slow
def test_images_smaller_than_the_crop_train_padded(family_root, tmp_path):
    from DINOv2_mmseg.train import run_training

    crop = (300, 300)  # the synthetic images are 256 px
    cfg = tiny_cfg(family_root, 1, crop_size=crop, **{"model.data_preprocessor.size": crop})
    cfg.train_dataloader.dataset.pipeline[3].crop_size = crop
    result = run_training(cfg, tmp_path / "w")
    assert (
        result["checked"]["train_dataloader"]["smaller_than_crop"] > 0
        and (tmp_path / "w" / "epoch_1.pth").is_file()
    )


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused(trained, family_root):
    from DINOv2_mmseg.predictor import SemanticSegmenter

    work, _, _ = trained
    other = tiny_cfg(
        family_root, 1, **{"model.decode_head.num_classes": 17, "model.decode_head.channels": 32}
    )
    with pytest.raises(QuadratsegError, match="does not fit the config's model"):
        SemanticSegmenter(other, work / "epoch_2.pth", "cpu")
