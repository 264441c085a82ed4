"""The segmentation model a programme starts from (coral_seg_yolo.seg_model): the varied world's true
colonies in the YOLO-seg layout, read back by ultralytics' own label checker and rasterizer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from coral_seg_yolo.prepare_data import SegImage, write_seg_images
from coral_seg_yolo.seg_model import truth_seg_images
from quadratseg.errors import QuadratsegError


@pytest.fixture(scope="module")
def varied_set(tmp_path_factory):
    from quadratseg.synth import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("varied_seg") / "set"
    return generate_dataset(out, SynthConfig(images=5, seed=5, size=256, world="varied"), workers=1)


def test_the_true_colonies_are_read_back_by_ultralytics_with_their_holes(varied_set, tmp_path):
    """Each visible part of a colony is one instance of its genus's class; ultralytics' checker reads
    every label file, and the masks its rasterizer fills from the joined outlines cover the true colonies'
    pixels (holes left open), not their outlines' interiors."""
    from ultralytics.data.utils import polygon2mask, verify_image_label

    from quadratseg.geometry import PolygonWithHoles, polygons_to_mask
    from quadratseg.synth.dataset import coral_rings, load_truth
    from quadratseg.taxonomy import load_taxonomy

    layout = write_seg_images(truth_seg_images(varied_set), tmp_path / "layout")
    data = yaml.safe_load((tmp_path / "layout" / "data.yaml").read_text())
    names = load_taxonomy().classes("finegrained")
    assert list(data["names"].values()) == names and data["quadratseg"]["level"] == "finegrained"
    truths = load_truth(varied_set)
    assert sum(layout["images"].values()) == len(truths)
    holes_seen = holes_open = 0
    for t in truths:
        stem = t["name"].rsplit(".", 1)[0]
        image = next((tmp_path / "layout" / "images" / t["subset"]).glob(f"{stem}.*"))
        label = tmp_path / "layout" / "labels" / t["subset"] / f"{stem}.txt"
        checked = verify_image_label((str(image), str(label), "", False, len(names), 0, 0, False))
        labels, segments, message = checked[1], checked[3], checked[-1]
        assert message == "" and len(labels) == len(t["corals"]) == len(segments)
        assert labels[:, 0].astype(int).tolist() == [names.index(c["label"]) for c in t["corals"]]
        w, h = t["warped_size"]
        for coral, segment in zip(t["corals"], segments, strict=True):
            rings = coral_rings(coral)
            holes_seen += len(rings) - 1
            truth_mask = polygons_to_mask([PolygonWithHoles(rings[0], rings[1:])], (w, h))
            filled = polygon2mask((h, w), [segment * [w, h]]).astype(bool)
            # two rasterizers differ by up to a pixel along each ring, never by a hole filled in
            perimeter = sum(
                float(np.linalg.norm(np.diff(r, axis=0, append=r[:1]), axis=1).sum()) for r in rings
            )
            assert (truth_mask ^ filled).sum() <= 1.5 * perimeter + 4, (t["name"], coral["label"])
            for hole in rings[1:]:
                inner = cv2.erode(
                    polygons_to_mask([hole], (w, h)).astype(np.uint8), np.ones((3, 3), np.uint8)
                )
                if inner.sum() >= 4:
                    holes_open += 1
                    assert filled[inner > 0].mean() < 0.1, (t["name"], coral["label"], "a hole filled in")
    assert holes_seen > 0 and holes_open > 0  # the varied world's dead patches, seen and kept open


def test_a_coarser_level_writes_each_genus_under_its_family_index(varied_set, tmp_path):
    """At ``main_family`` every instance's class index in the label files is its family's place among
    the level's classes (data.yaml's names), read back by ultralytics' checker."""
    from ultralytics.data.utils import verify_image_label

    from quadratseg.synth.dataset import load_truth
    from quadratseg.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    write_seg_images(truth_seg_images(varied_set, "main_family"), tmp_path / "layout", "main_family")
    data = yaml.safe_load((tmp_path / "layout" / "data.yaml").read_text())
    names = list(data["names"].values())
    assert names == taxonomy.classes("main_family") and len(names) < len(taxonomy.classes("finegrained"))
    for t in load_truth(varied_set):
        stem = t["name"].rsplit(".", 1)[0]
        image = next((tmp_path / "layout" / "images" / t["subset"]).glob(f"{stem}.*"))
        label = tmp_path / "layout" / "labels" / t["subset"] / f"{stem}.txt"
        labels = verify_image_label((str(image), str(label), "", False, len(names), 0, 0, False))[1]
        assert labels[:, 0].astype(int).tolist() == [
            names.index(taxonomy.map_label(c["label"], "main_family")) for c in t["corals"]
        ]


def test_a_label_that_is_not_a_class_of_the_level_stops_and_writes_nothing(varied_set, tmp_path):
    """A stand-in record whose genus the taxonomy does not know: refused with the file and the classes,
    and no half-written layout left behind."""
    records = list(truth_seg_images(varied_set))
    _, rings = records[1].colonies[0]
    records[1] = SegImage(
        records[1].split, records[1].filepath, records[1].stem, records[1].size_wh, [("Corallus", rings)]
    )
    with pytest.raises(QuadratsegError, match=r"'Corallus' is not a finegrained class"):
        write_seg_images(iter(records), tmp_path / "layout")
    assert not (tmp_path / "layout").exists()


@pytest.mark.slow
def test_the_command_makes_a_model_whose_card_the_shipped_check_accepts(tmp_path):
    """The one command, tiny: renders, writes the layout, trains, scores the test split with ultralytics'
    validator and leaves a model card that records what made it and the sha256 the shipped check needs;
    the weights altered afterwards are refused. A second run goes on from the first (``--start``) on
    photos of another seed, and its card records that start's sha256 and what made it."""
    import torch

    from coral_seg_yolo.seg_model import seg_model, shipped_seg_model
    from quadratseg.model_card import read_model_card
    from quadratseg.weights import WeightsChecksumError, file_sha256

    report = json.loads(seg_model(str(tmp_path / "out"), images=12, size=256, seed=3, epochs=1, imgsz=128))
    weights = report["weights"]
    card = read_model_card(weights)
    on = json.loads(
        seg_model(str(tmp_path / "on"), images=12, size=256, seed=4, epochs=1, imgsz=128, start=weights)
    )
    on_card = read_model_card(on["weights"])
    assert on_card["made_by"]["command"].endswith(f"--start {weights}")
    assert on_card["made_by"]["start"]["sha256"] == file_sha256(weights)
    assert on_card["made_by"]["start"]["made_by"] == card["made_by"]
    # the run was given the start as its model (ultralytics' own record of its arguments)
    assert torch.load(on["weights"], weights_only=False)["train_args"]["model"] == weights
    assert card["task"] == "coralseg" and card["imgsz"] == 128 and card["warp_size"] == 256
    assert card["made_by"]["command"].startswith("python -m coral_seg_yolo.seg_model OUT --images 12")
    assert (
        card["measured"]["split"] == "test"
        and card["measured"]["images"] == report["layout"]["images"]["test"]
    )
    assert card["measured"]["mask_map50"] == report["test"]["mask_map50"]
    assert str(shipped_seg_model(weights)) == weights
    with open(weights, "ab") as f:
        f.write(b"\0")
    with pytest.raises(WeightsChecksumError, match="not the shipped segmentation model"):
        shipped_seg_model(weights)


def test_shipped_weights_without_their_card_are_refused_with_the_way_to_remake_them(tmp_path):
    from coral_seg_yolo.seg_model import shipped_seg_model
    from quadratseg.weights import MissingWeightsError

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights without a card")
    with pytest.raises(
        MissingWeightsError, match=r"no model card.*is missing.*python -m coral_seg_yolo.seg_model OUT"
    ):
        shipped_seg_model(weights)


def test_the_demo_refuses_a_shipped_start_of_other_classes(tmp_path, monkeypatch):
    """ultralytics would keep only the layers whose shapes match the data's 16 genera: a shipped model of
    the families would be fine-tuned from a random head; the demo says so instead."""
    import hashlib

    import coral_seg_yolo.seg_model as seg_model
    from coral_seg_yolo.demo import IMGSZ, demo_training
    from quadratseg.model_card import write_model_card
    from quadratseg.taxonomy import load_taxonomy

    weights = tmp_path / "best.pt"
    weights.write_bytes(b"a families model")
    card = {
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "level": "main_family",
        "classes": load_taxonomy().classes("main_family"),
        "imgsz": IMGSZ,
    }
    write_model_card(weights, card)
    monkeypatch.setattr(seg_model, "SHIPPED_WEIGHTS", weights)
    with pytest.raises(QuadratsegError, match=r"not a start for this demo.*'level': 'main_family'"):
        demo_training("varied")
    write_model_card(
        weights, {**card, "level": "finegrained", "classes": load_taxonomy().classes("finegrained")}
    )
    assert demo_training("varied")["model"] == str(weights)
    assert "model" not in demo_training("simple")


def test_the_shipped_seg_model_is_the_file_its_card_describes():
    """The shipped segmentation model states what made it (the varied world alone, its command, seed and
    generator version), the classes and size the demo fine-tunes at, and what it scored."""
    from coral_seg_yolo.demo import IMGSZ, LEVEL
    from coral_seg_yolo.seg_model import SHIPPED_WEIGHTS, shipped_seg_model
    from quadratseg.model_card import read_model_card
    from quadratseg.taxonomy import load_taxonomy

    assert shipped_seg_model() == SHIPPED_WEIGHTS
    card = read_model_card(SHIPPED_WEIGHTS)
    made = card["made_by"]
    assert made["world"] == "varied" and made["generator"]["version"] and isinstance(made["seed"], int)
    assert made["command"].startswith("python -m coral_seg_yolo.seg_model OUT")
    assert card["task"] == "coralseg" and card["level"] == LEVEL and card["imgsz"] == IMGSZ
    assert card["classes"] == load_taxonomy().classes(LEVEL)
    assert card["measured"]["split"] == "test" and 0 < card["measured"]["mask_map50"] <= 1


@pytest.mark.slow
def test_the_shipped_seg_model_still_segments_a_world_it_never_saw(tmp_path):
    """The shipped model scored by ultralytics' validator on varied-world photos of a seed it was not
    trained on: at least half the mask mAP@0.5 its card states (a model that learnt nothing scores ~0)."""
    from coral_seg_yolo.evaluate import ultralytics_validation
    from coral_seg_yolo.seg_model import SHIPPED_WEIGHTS
    from quadratseg.model_card import read_model_card
    from quadratseg.synth import SynthConfig, generate_dataset

    card = read_model_card(SHIPPED_WEIGHTS)
    synth = generate_dataset(
        tmp_path / "set", SynthConfig(images=30, seed=23, size=768, world="varied", holdout_share=0.34)
    )
    layout = write_seg_images(truth_seg_images(synth), tmp_path / "layout")
    metrics = ultralytics_validation(
        str(SHIPPED_WEIGHTS), layout["data_yaml"], "test", card["imgsz"], tmp_path / "eval", device="cpu"
    )
    assert layout["images"]["test"] >= 8
    assert metrics["mask_map50"] >= 0.5 * card["measured"]["mask_map50"], metrics["mask_map50"]


def test_an_unknown_level_stops_the_command_before_anything_is_rendered(tmp_path):
    from coral_seg_yolo.seg_model import seg_model

    with pytest.raises(QuadratsegError, match=r"unknown taxonomy level 'genus'.*main_family"):
        seg_model(str(tmp_path / "out"), images=500, level="genus")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p / "none.pt", "is not a file"),
        (lambda p: p.joinpath("card-less.pt").write_bytes(b"w") and p / "card-less.pt", "has no model card"),
    ],
)
def test_a_start_that_is_not_a_model_of_this_command_stops_before_anything_is_rendered(tmp_path, make, says):
    from coral_seg_yolo.seg_model import seg_model

    with pytest.raises(QuadratsegError, match=f"--start .*{says}"):
        seg_model(str(tmp_path / "out"), images=4, size=128, start=str(make(tmp_path)))
    assert not (tmp_path / "out").exists()


def test_a_start_of_other_classes_stops_before_anything_is_rendered(tmp_path):
    """ultralytics would keep a families model's body and train a random head for the 16 genera without
    a word; the command refuses it, naming both class lists, and renders nothing."""
    import shutil

    from coral_seg_yolo.seg_model import SHIPPED_WEIGHTS, seg_model
    from quadratseg.model_card import model_card_path, read_model_card, write_model_card
    from quadratseg.taxonomy import load_taxonomy

    start = tmp_path / "start" / "best.pt"
    start.parent.mkdir()
    shutil.copyfile(SHIPPED_WEIGHTS, start)
    shutil.copyfile(model_card_path(SHIPPED_WEIGHTS), model_card_path(start))
    seg_model_args = {"images": 4, "size": 128, "start": str(start)}
    with pytest.raises(QuadratsegError, match="not the 7 classes of main_family"):
        seg_model(str(tmp_path / "out"), level="main_family", **seg_model_args)
    assert not (tmp_path / "out").exists()
    card = read_model_card(start)
    write_model_card(start, {**card, "classes": load_taxonomy().classes("finegrained")[:3]})
    with pytest.raises(QuadratsegError, match="not the 16 classes of finegrained"):
        seg_model(str(tmp_path / "out"), **seg_model_args)
    assert not (tmp_path / "out").exists()
    write_model_card(start, card)
    with start.open("ab") as f:  # the file changed beside its card
        f.write(b"\0")
    with pytest.raises(QuadratsegError, match="its card describes another file"):
        seg_model(str(tmp_path / "out"), **seg_model_args)
    assert not (tmp_path / "out").exists()


def test_a_shipped_model_made_in_two_runs_is_remade_with_both_commands(tmp_path):
    """The shipped model went on from an earlier one (``--start``): the way to make it again names the
    first run's command, then the second's started from the first's weights."""
    import shutil

    from coral_seg_yolo.seg_model import SHIPPED_WEIGHTS, shipped_seg_model
    from quadratseg.model_card import model_card_path, read_model_card
    from quadratseg.weights import MissingWeightsError

    made = read_model_card(SHIPPED_WEIGHTS)["made_by"]
    first = made["start"]["made_by"]["command"]
    shutil.copyfile(model_card_path(SHIPPED_WEIGHTS), tmp_path / "model_card.json")
    with pytest.raises(MissingWeightsError) as error:
        shipped_seg_model(tmp_path / "best.pt")
    assert f"{first}, then {made['command']} with --start OUT/runs/coralseg/weights/best.pt" in str(
        error.value
    )
