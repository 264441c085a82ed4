"""DINOv2_mmseg: MMSeg layout, the registered DINOv2 backbone, training mechanics, metrics, refinement."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import tiny_sam_file

from DINOv2_mmseg.compat import import_mmseg
from DINOv2_mmseg.prepare_data import class_index_mask, class_table, write_mmseg_layout
from quadratseg.errors import QuadratsegError
from quadratseg.taxonomy import load_taxonomy

TINY = Path(__file__).resolve().parents[1] / "DINOv2_mmseg" / "configs" / "dinov2_tiny_segformer_cpu.py"


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
    first = run_training(tiny_cfg(family_root, 1), work, seed=0, from_scratch=True)
    resumed = run_training(tiny_cfg(family_root, 2), work, resume=True, seed=0, from_scratch=True)
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
    from DINOv2_mmseg.testloop import run_test

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


def test_amp_without_a_gpu_is_refused_before_training(family_root, tmp_path):
    import torch

    from DINOv2_mmseg.train import run_training

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: AMP is allowed")
    with pytest.raises(QuadratsegError, match="--amp needs a CUDA GPU"):
        run_training(tiny_cfg(family_root, 1), tmp_path / "w", amp=True, from_scratch=True)
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_images_smaller_than_the_crop_train_padded(family_root, tmp_path):
    from DINOv2_mmseg.train import run_training

    crop = (300, 300)  # the synthetic images are 256 px
    cfg = tiny_cfg(family_root, 1, crop_size=crop, **{"model.data_preprocessor.size": crop})
    cfg.train_dataloader.dataset.pipeline[3].crop_size = crop
    result = run_training(cfg, tmp_path / "w", from_scratch=True)
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


# --- refinement with SAM, predict, Nuclio -----------------------------------------------------


def square_probs(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """An image and 3-class probabilities: a confident class-1 square, an unsure class-2 disc."""
    probs = np.zeros((3, size, size), np.float32)
    probs[0] = 1.0
    probs[:, 10:40, 10:40] = np.array([0.05, 0.9, 0.05])[:, None, None]
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 65) ** 2 + (xx - 65) ** 2 < 15**2
    probs[:, disc] = np.array([0.35, 0.0, 0.65])[:, None]
    image = np.full((size, size, 3), 80, np.uint8)
    image[probs[1] > 0.5] = (200, 120, 60)
    image[disc] = (60, 160, 200)
    return image, probs


def test_top_class_equals_numpy_argmax_and_max():
    from DINOv2_mmseg.sam_refine import top_class

    probs = np.random.default_rng(0).random((5, 40, 30)).astype(np.float32)
    probs[:, 0, 0] = 0.5  # a tie: the first class wins, as in argmax
    index, best = top_class(probs)
    assert np.array_equal(index, probs.argmax(axis=0)) and np.array_equal(best, probs.max(axis=0))


def test_seeds_become_instances_with_scores_and_unsure_flags():
    from DINOv2_mmseg.sam_refine import RefineConfig, refine_instances

    image, probs = square_probs()
    found = refine_instances(image, probs, ["background", "A", "B"], None, RefineConfig(0.5, 0.75, 16))
    assert [(i.label, round(i.score, 2), i.extra["unsure"], i.extra["source"]) for i in found] == [
        ("A", 0.9, False, "semantic"),
        ("B", 0.65, True, "semantic"),
    ]
    assert found[0].extra["area"] == 30 * 30
    x0, y0 = found[0].polygon_xy.min(axis=0)
    x1, y1 = found[0].polygon_xy.max(axis=0)
    assert np.allclose((x0, y0, x1, y1), (10, 10, 40, 40), atol=0.5)
    assert [
        i.label for i in refine_instances(image, probs, ["bg", "A", "B"], None, RefineConfig(0.7, 0.8, 16))
    ] == ["A"]
    with pytest.raises(QuadratsegError, match="thresholds must satisfy"):
        RefineConfig(0.8, 0.5)


def test_sam_refinement_uses_sams_mask_or_keeps_the_seed(tmp_path, caplog):
    import_mmseg()
    from segment_anything import SamPredictor

    from DINOv2_mmseg.sam_refine import (
        RefineConfig,
        interior_point,
        load_sam,
        refine_instances,
        sam_predictor_for,
    )

    sam, report = load_sam(tiny_sam_file(tmp_path / "vit_b_coralscop.pth"))
    assert report["extra_keys"] == ["mask_decoder.cate_head.weight"] and "left out" in caplog.text
    assert report["embed_dim"] == 32 and report["global_attn_indexes"] == [1]
    image, probs = square_probs()
    predictor = sam_predictor_for(sam)
    taken = refine_instances(
        image, probs, ["bg", "A", "B"], predictor, RefineConfig(0.0, 0.75, 1, min_agreement=0.0)
    )
    assert {i.extra["source"] for i in taken} == {"sam"} and all(
        i.extra["sam_iou"] is not None for i in taken
    )
    # the first instance (nothing claimed before it) is SAM's own answer to a seed's box + interior point
    bare = SamPredictor(sam)
    bare.set_image(image)
    areas = []
    for class_id in (1, 2):
        seed = probs.argmax(axis=0) == class_id
        ys, xs = np.nonzero(seed)
        masks, _, _ = bare.predict(
            point_coords=np.array([interior_point(seed)], np.float32),
            point_labels=np.array([1]),
            box=np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32),
            multimask_output=True,
        )
        areas += [int(m.sum()) for m in masks]
    assert taken[0].extra["area"] in areas
    kept = refine_instances(
        image, probs, ["bg", "A", "B"], predictor, RefineConfig(0.5, 0.75, 16, min_agreement=1.01)
    )
    assert [i.extra["source"] for i in kept] == ["semantic", "semantic"]


def test_sam_loading_refuses_other_files(tmp_path):
    import torch

    from DINOv2_mmseg.sam_refine import load_sam

    torch.save({"weight": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(QuadratsegError, match="not a segment-anything checkpoint"):
        load_sam(tmp_path / "x.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(QuadratsegError, match="cannot read SAM/CoralSCoP weights"):
        load_sam(tmp_path / "junk.pth")


@pytest.mark.slow
def test_predict_writes_instances_coco_and_overlays(trained, family_root, tmp_path):
    from DINOv2_mmseg.predict import predict

    work, _, _ = trained
    sam = tiny_sam_file(tmp_path / "sam.pth")
    images = family_root / "val" / "data"
    out = tmp_path / "pred"
    summary = json.loads(
        predict(
            str(TINY),
            str(work / "epoch_2.pth"),
            str(images),
            str(out),
            sam_weights=str(sam),
            min_threshold=0.0,
            min_area=4,
        )
    )
    assert summary["refinement"] == "sam" and summary["sam_extra_keys"] == 1
    coco = json.loads((out / "predictions_coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == load_taxonomy().classes("main_family")
    for image in coco["images"]:
        stem = image["file_name"]  # outputs are named after the image key (its relative path, suffix kept)
        ids = cv2.imread(str(out / "instances" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        sem = cv2.imread(str(out / "semantic" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint16 and ids.shape == sem.shape == (image["height"], image["width"])
        n = sum(1 for a in coco["annotations"] if a["image_id"] == image["id"])
        assert int(ids.max()) <= n
        assert (out / "overlays" / f"{stem}_semantic.jpg").is_file() and (
            out / "overlays" / f"{stem}_instances.jpg"
        ).is_file()
    import csv

    rows = [r for r in csv.DictReader((out / "cover.csv").open()) if r["level"] == "main_family"]
    classes = load_taxonomy().classes("main_family")  # the chain's long table (quadratseg.cover_table)
    assert len(rows) == len(coco["images"]) * len(classes) and [r["label"] for r in rows[:5]] == classes[:5]
    sem = cv2.imread(str(out / "semantic" / f"{rows[0]['photo']}.png"), cv2.IMREAD_UNCHANGED)
    assert float(rows[0]["percent"]) == pytest.approx(100 * (sem == 1).mean(), abs=0.001)
    with pytest.raises(QuadratsegError, match="already exists"):
        predict(str(TINY), str(work / "epoch_2.pth"), str(images), str(out))
    with pytest.raises(QuadratsegError, match=r"holds no image|does not exist"):
        predict(str(TINY), str(work / "epoch_2.pth"), str(tmp_path / "empty"), str(tmp_path / "p2"))


@pytest.mark.slow
def test_nuclio_zip_and_handler(trained, family_root, tmp_path, shared_data):
    import base64
    import zipfile

    import yaml
    from nuclio_driver import call_handler

    from DINOv2_mmseg.deploy_as_zip import deploy_as_zip

    work, _, _ = trained
    sam = tiny_sam_file(tmp_path / "sam.pth")
    config = work / "dinov2_tiny_segformer_cpu.py"
    with pytest.raises(QuadratsegError, match="cannot read SAM/CoralSCoP weights"):
        deploy_as_zip("pth-mmseg-coralscopsegformer", str(work / "epoch_2.pth"), str(config), str(config))
    zip_path = Path(
        deploy_as_zip(
            "pth-mmseg-coralscopsegformer",
            str(work / "epoch_2.pth"),
            str(config),
            str(sam),
            output=str(tmp_path / "out"),
            min_threshold=0.0,
            unsure_threshold=0.5,
        )
    )
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unzipped")
    assert {
        f"nuclio/{n}"
        for n in (
            "best_segformer.pth",
            "best_segformer_config.py",
            "vit_b_coralscop.pth",
            "main.py",
            "function.yaml",
        )
    } <= names
    nuclio_dir = tmp_path / "unzipped" / "nuclio"
    import torch

    torch.load(
        nuclio_dir / "best_segformer.pth", weights_only=True
    )  # the deployed file is a plain state dict
    ours = yaml.safe_load((nuclio_dir / "function.yaml").read_text())
    real = yaml.safe_load(
        (
            shared_data
            / "cvat/serverless/openvino/omz/intel/semantic-segmentation-adas-0001/nuclio/function.yaml"
        ).read_text()
    )
    assert set(ours) == set(real) and ours["metadata"]["annotations"]["type"] == "detector"
    assert ours["metadata"]["name"] == "pth-mmseg-coralscopsegformer"
    spec = json.loads(ours["metadata"]["annotations"]["spec"])
    assert [s["name"] for s in spec] == load_taxonomy().classes("main_family") and {
        s["type"] for s in spec
    } == {"mask"}
    # every label declares confidence (number) and unsure (checkbox), as cvat-sdk's own model reads them
    from cvat_sdk.api_client import models

    declared = {
        (a.name, a.input_type.value)
        for s in spec
        for a in (models.AttributeRequest(**x) for x in s["attributes"])
    }
    assert declared == {("confidence", "number"), ("unsure", "checkbox")}
    image_path = next((family_root / "val" / "data").iterdir())
    request = json.dumps({"image": base64.b64encode(image_path.read_bytes()).decode(), "threshold": 0.0})
    ok, no_image, bad = call_handler(
        nuclio_dir, [request, json.dumps({"threshold": 0.5}), "not json"], "DINOv2_mmseg"
    )
    assert ok["status"] == 200 and no_image["status"] == 400 and bad["status"] == 400
    assert "image" in no_image["body"]["error"]
    # CVAT's reading of the answer equals the colonies the same pipeline finds in process
    from cvat_oracle import cvat_mask

    from DINOv2_mmseg.coral_pipeline import CoralPipeline
    from DINOv2_mmseg.sam_refine import RefineConfig
    from quadratseg.images import read_image_rgb

    rgb = read_image_rgb(image_path)
    frame = (rgb.shape[1], rgb.shape[0])
    _, expected = CoralPipeline(
        nuclio_dir / "best_segformer_config.py",
        nuclio_dir / "best_segformer.pth",
        nuclio_dir / "vit_b_coralscop.pth",
        RefineConfig(0.0, 0.5),
    )(rgb)
    assert len(ok["body"]) == len(expected) > 0
    for shape, inst in zip(ok["body"], expected, strict=True):
        assert shape["type"] == "mask" and shape["confidence"].isnumeric() and shape["label"] == inst.label
        assert shape["label"] in load_taxonomy().classes("main_family")
        assert np.array_equal(cvat_mask(shape, frame), inst.full_mask(frame)) and len(shape["points"]) >= 6
        assert {a["name"]: a["value"] for a in shape["attributes"]} == {
            "confidence": str(round(100 * inst.score)),
            "unsure": "true" if inst.extra["unsure"] else "false",
        }
