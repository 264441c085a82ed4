"""The semantic model a programme starts from (DINOv2_mmseg.seg_model): the varied world's true class
maps in the MMSeg layout, read back by MMSeg's own dataset and loader; the demo's fine-tune from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from DINOv2_mmseg.prepare_data import ClassMapImage, write_class_maps
from DINOv2_mmseg.seg_model import truth_class_map_images
from quadratseg.errors import QuadratsegError

LEVEL = "main_family"


@pytest.fixture(scope="module")
def varied_set(tmp_path_factory):
    from quadratseg.synth import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("varied_mmseg") / "set"
    return generate_dataset(out, SynthConfig(images=5, seed=5, size=256, world="varied"), workers=1)


def mmseg_label_maps(data_root, split):
    """{image stem: class map (H, W)} of a layout split as MMSeg's registered dataset and its
    LoadAnnotations transform read it."""
    from pathlib import Path

    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import DINOv2_mmseg.plugins  # noqa: F401  (registers CoralSegDataset)

    init_default_scope("mmseg")
    dataset = DATASETS.build(
        {
            "type": "CoralSegDataset",
            "data_root": str(data_root),
            "data_prefix": {"img_path": f"{split}/data", "seg_map_path": f"{split}/labels"},
            "pipeline": [{"type": "LoadAnnotations", "reduce_zero_label": False}],
        }
    )
    return {
        Path(item["seg_map_path"]).stem: item["gt_seg_map"]
        for item in (dataset[i] for i in range(len(dataset)))
    }, dataset.metainfo["classes"]


def test_the_true_class_maps_are_read_back_by_mmseg_as_the_generator_painted_them(varied_set, tmp_path):
    """Each photo's class map, as MMSeg's dataset loads it, covers the share of the quadrat the generator
    rendered as coral (its own ``cover``, counted on the painted pixels; holes left open), and the pixels
    well inside each visible part of a colony hold its family's index."""
    import cv2

    from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
    from quadratseg.synth.dataset import coral_rings, load_truth
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    layout = write_class_maps(truth_class_map_images(varied_set, LEVEL), tmp_path / "layout", LEVEL)
    truths = load_truth(varied_set)
    assert sum(layout["images"].values()) == len(truths)
    checked = parts = 0
    for split in ("train", "val", "test"):
        if not layout["images"][split]:
            continue
        maps, classes = mmseg_label_maps(tmp_path / "layout", split)
        assert list(classes) == ["background", *taxonomy.classes(LEVEL)]
        for t in (t for t in truths if t["subset"] == split):
            gt = maps[t["name"].rsplit(".", 1)[0]]
            w, h = t["warped_size"]
            assert gt.shape == (h, w)
            # the painted cover and the map's agree to a few hundredths of a point; a map whose holes
            # were filled in is off by up to a point
            assert abs(100 * float((gt > 0).mean()) - 100 * t["cover"]) <= 0.2, t["name"]
            for coral in t["corals"]:
                rings = coral_rings(coral)
                own = polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], (w, h)).astype(np.uint8)
                deep = cv2.erode(own, np.ones((5, 5), np.uint8)) > 0
                if deep.any():
                    parts += 1
                    family = classes.index(taxonomy.map_label(coral["label"], LEVEL))
                    assert (gt[deep] == family).mean() > 0.99, (t["name"], coral["label"])
            checked += 1
    assert checked == len(truths) and parts >= len(truths)


def test_a_label_that_is_not_a_class_of_the_level_stops_and_writes_nothing(varied_set, tmp_path):
    """A record whose family the level does not know: refused with the file and the classes, and no
    half-written layout left behind."""
    records = list(truth_class_map_images(varied_set, LEVEL))
    _, rings = records[1].colonies[0]
    records[1] = ClassMapImage(
        records[1].split, records[1].filepath, records[1].stem, records[1].size_wh, [("Corallidae", rings)]
    )
    with pytest.raises(QuadratsegError, match=r"'Corallidae' is not a main_family class"):
        write_class_maps(iter(records), tmp_path / "layout", LEVEL)
    assert not (tmp_path / "layout").exists()


def test_a_training_of_no_epoch_stops_before_anything_is_rendered(tmp_path):
    from DINOv2_mmseg.seg_model import seg_model

    with pytest.raises(QuadratsegError, match="--epochs must be at least 1"):
        seg_model(str(tmp_path / "out"), images=4, size=128, epochs=0)
    assert not (tmp_path / "out").exists()


def _shipped_copy(tmp_path, **card_changes):
    """A copy of the shipped model and its card in ``tmp_path``, the card changed as given."""
    import shutil

    from DINOv2_mmseg.seg_model import SHIPPED_WEIGHTS
    from quadratseg.model_card import model_card_path, read_model_card, write_model_card

    folder = tmp_path / "shipped"
    folder.mkdir()
    weights = folder / SHIPPED_WEIGHTS.name
    shutil.copyfile(SHIPPED_WEIGHTS, weights)
    shutil.copyfile(model_card_path(SHIPPED_WEIGHTS), model_card_path(weights))
    if card_changes:
        write_model_card(weights, {**read_model_card(weights), **card_changes})
    return weights


def test_the_shipped_model_is_the_demos_start_in_the_varied_world_only():
    """The shipped file passes its sha256 check and its card names the demo's level, classes, config and
    crop; the simple world trains from scratch."""
    from DINOv2_mmseg.demo import demo_training
    from DINOv2_mmseg.seg_model import SHIPPED_WEIGHTS

    training = demo_training("varied")
    assert training["load_from"] == str(SHIPPED_WEIGHTS) and training["epochs"] >= 1
    card = training["card"]
    assert card["made_by"]["command"].startswith("python -m DINOv2_mmseg.seg_model OUT")
    assert card["made_by"]["world"] == "varied" and card["measured"]["split"] == "test"
    assert "load_from" not in demo_training("simple")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"classes": ["background", "Acroporidae"]}, "classes"),
        ({"crop_size": [112, 112]}, "crop_size"),
        ({"level": "extended"}, "level"),
        ({"config": "dinov2_vitb14_segformer_coral_family.py"}, "config"),
    ],
)
def test_a_start_model_of_other_classes_or_crop_is_refused(tmp_path, monkeypatch, change, named):
    """mmengine's load_from keeps the tensors whose shapes fit and leaves the rest random with a warning
    only: a start of other classes or sizes is refused by its card before any training."""
    import DINOv2_mmseg.seg_model as seg_model_module
    from DINOv2_mmseg.demo import demo_training

    weights = _shipped_copy(tmp_path, **change)  # the file itself intact: only the card disagrees
    monkeypatch.setattr(seg_model_module, "SHIPPED_WEIGHTS", weights)
    with pytest.raises(QuadratsegError, match=rf"not a start for this demo.*'{named}'"):
        demo_training("varied")


def test_a_missing_or_altered_shipped_model_is_refused_with_the_command_that_remakes_it(
    tmp_path, monkeypatch
):
    import DINOv2_mmseg.seg_model as seg_model_module
    from DINOv2_mmseg.demo import demo_training
    from quadratseg.weights import MissingWeightsError, WeightsChecksumError

    weights = _shipped_copy(tmp_path)
    monkeypatch.setattr(seg_model_module, "SHIPPED_WEIGHTS", tmp_path / "gone" / "model.pth")
    with pytest.raises(MissingWeightsError, match=r"is missing.*python -m DINOv2_mmseg.seg_model OUT"):
        demo_training("varied")
    with weights.open("r+b") as f:
        f.truncate(1000)
    monkeypatch.setattr(seg_model_module, "SHIPPED_WEIGHTS", weights)
    with pytest.raises(WeightsChecksumError, match="a Git LFS pointer or a truncated copy"):
        demo_training("varied")


@pytest.mark.slow
def test_the_command_makes_a_start_that_a_fine_tune_really_starts_from(tmp_path):
    """The one command, tiny: renders, writes the layout, trains, scores the test split, and leaves a
    plain checkpoint whose card records what made it and the sha256 the shipped check accepts. A
    training that loads it (the demo's ``load_from``) at learning rate 0 ends with exactly its
    parameters (BatchNorm's running statistics still move): the start is really loaded; the same
    training without it does not."""
    import torch

    from DINOv2_mmseg.predictor import read_segmentor_checkpoint
    from DINOv2_mmseg.seg_model import CONFIG, cpu_config, seg_model, shipped_mmseg_model
    from DINOv2_mmseg.train import run_training
    from quadratseg.model_card import read_model_card

    report = json.loads(seg_model(str(tmp_path / "out"), images=12, size=256, seed=3, epochs=2, holdout=0.2))
    weights = report["weights"]
    card = read_model_card(weights)
    assert card["made_by"]["command"] == (
        "python -m DINOv2_mmseg.seg_model OUT --images 12 --size 256 --seed 3 --epochs 2 --holdout 0.2"
    )
    assert card["level"] == LEVEL and card["classes"][0] == "background" and card["crop_size"] == [192, 192]
    assert str(shipped_mmseg_model(weights)) == weights and 0 <= card["measured"]["miou"] <= 100
    assert report["test"]["images"] == card["measured"]["images"] >= 1

    start = read_segmentor_checkpoint(weights)["state_dict"]
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    parameters = [k for k in start if not k.endswith(buffers)]
    assert len(parameters) > 20
    for loaded in (True, False):
        cfg = cpu_config(CONFIG, tmp_path / "out" / "layout", 1)
        cfg.optim_wrapper.optimizer.lr = 0.0
        if loaded:
            cfg.load_from = weights
        work = tmp_path / f"fine_{loaded}"
        run = run_training(cfg, work, seed=0, device="cpu", from_scratch=not loaded)
        assert run["backbone_weights_source"] == ("load_from" if loaded else "from_scratch")
        after = read_segmentor_checkpoint(work / "epoch_1.pth")["state_dict"]
        assert set(start) == set(after)
        same = [torch.equal(start[k].float(), after[k].float()) for k in parameters]
        assert all(same) if loaded else not any(same[:5])


@pytest.mark.slow
def test_the_shipped_model_still_segments_a_world_it_never_saw(tmp_path):
    """The shipped model on photos of a seed it was not trained on: at least half the mIoU its card
    states on its own test photos (a model broken by a library change, or a generator that drifted away
    from what it learned, falls far below)."""
    from DINOv2_mmseg.evaluate import evaluate_segmenter, split_pairs
    from DINOv2_mmseg.predictor import SemanticSegmenter
    from DINOv2_mmseg.seg_model import CONFIG, cpu_config, shipped_mmseg_model
    from quadratseg.model_card import read_model_card
    from quadratseg.synth import SynthConfig, generate_dataset

    weights = shipped_mmseg_model()
    stated = read_model_card(weights)["measured"]["miou"]
    synth = generate_dataset(
        tmp_path / "synth", SynthConfig(images=30, seed=1234, size=768, world="varied", holdout_share=0.3)
    )
    write_class_maps(truth_class_map_images(synth, LEVEL), tmp_path / "layout", LEVEL)
    segmenter = SemanticSegmenter(cpu_config(CONFIG, tmp_path / "layout", 1), weights, device="cpu")
    metrics = evaluate_segmenter(segmenter, split_pairs(tmp_path / "layout", "test"))
    assert metrics["mIoU"] >= 0.5 * stated, (metrics["mIoU"], stated)
