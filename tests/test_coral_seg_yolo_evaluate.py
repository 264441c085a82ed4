"""coral_seg_yolo.evaluate with --dataset: the model's taxonomy level, low-confidence predictions,
and the prediction field the user names."""

from __future__ import annotations

import json

import pytest

from quadratseg.errors import QuadratsegError
from quadratseg.taxonomy import LEVELS, load_taxonomy

IMGSZ = 256  # the synthetic images' size
# FiftyOne's polygon evaluation of hundreds of low-confidence colonies per image takes minutes on 2
# cores; the tests about levels and fields score the confident ones (the default is tested on its own)
FAST_CONF = 0.1


@pytest.fixture(scope="module")
def family_model(coral_dataset, tmp_path_factory):
    """A YOLO11n-seg fitted to the 4 train images at the main-family level (scored on them: a
    model that learnt them must score well there)."""
    from tiny_models import train_family_seg_model

    weights, data, _ = train_family_seg_model(
        coral_dataset,
        tmp_path_factory.mktemp("seg_eval"),
        epochs=120,  # about 70 s on 2 CPU cores: mask mAP@0.5 0.86 on these images
        imgsz=IMGSZ,
        patience=0,
        args={
            "plots": False,
            "optimizer": "SGD",
            "lr0": 0.01,
            "nbs": 2,  # the optimizer steps every batch
            "mosaic": 0.0,
            "seed": 0,
            "val": False,
        },
    )
    return weights, data


@pytest.fixture
def clone(coral_dataset, dataset_name):
    """A copy of the pulled dataset the test may write into."""
    return coral_dataset.clone(dataset_name)


def test_model_level_comes_from_its_class_names():
    from coral_seg_yolo.evaluate import model_level

    taxonomy = load_taxonomy()
    for level in LEVELS:
        names = dict(enumerate(taxonomy.classes(level)))
        assert model_level(names) == level
    with pytest.raises(QuadratsegError, match="match no taxonomy level"):
        model_level({0: "Acropora", 1: "seagrass"})
    with pytest.raises(QuadratsegError, match="--level main_family"):
        model_level(taxonomy.classes("main_family")[:3])


def test_the_cards_colony_threshold_is_ultralytics_own_operating_point(family_model, tmp_path):
    """The threshold a trained model's card recommends is where ultralytics' validator, with every
    genus as one class, reports its precision and recall (its smoothed F1 maximum) on the val split:
    the card's precision and recall are the validator's own there."""
    from coral_seg_yolo.predictor import SegPredictor
    from quadratseg.model_card import read_model_card
    from quadratseg.yolo_train import build_model

    weights, data = family_model
    card = read_model_card(weights)
    measured = card["conf_measured"]
    theirs = build_model(weights).val(
        data=str(data),
        split="val",
        imgsz=IMGSZ,
        single_cls=True,
        plots=False,
        verbose=False,
        project=str(tmp_path / "v"),
        name="v",
    )
    assert theirs.seg.mp > 0 and theirs.seg.mr > 0, "a model that outlines no colony tests nothing here"
    assert (measured["precision"], measured["recall"]) == (
        round(float(theirs.seg.mp), 4),
        round(float(theirs.seg.mr), 4),
    )
    assert measured["mask_map50"] == round(float(theirs.seg.map50), 4)
    assert 0 < card["conf"] == measured["conf"] < 1
    assert SegPredictor(weights, IMGSZ).conf == card["conf"]


def test_a_family_model_is_scored_against_the_family_truth(family_model, clone, tmp_path):
    from coral_seg_yolo.evaluate import evaluate

    weights, data = family_model
    result = json.loads(
        evaluate(
            str(weights),
            str(data),
            split="train",
            dataset=clone.name,
            imgsz=IMGSZ,
            out_dir=str(tmp_path / "e"),
            conf=FAST_CONF,
        )
    )
    # scored against the genera (the old behaviour), family labels never match: mAP 0
    assert result["fiftyone_map"] > 0.2, result
    assert result["level"] == "main_family" and result["gt_field"] == "gt_polylines_main_family"
    assert result["samples"] == len(clone.match_tags("train")) == 4


def test_predictions_are_scored_from_low_confidence(family_model, clone, tmp_path):
    import cv2

    from coral_seg_yolo.evaluate import EVAL_CONF, evaluate
    from coral_seg_yolo.predictor import SegPredictor

    weights, data = family_model
    result = json.loads(
        evaluate(
            str(weights),
            str(data),
            split="val",
            dataset=clone.name,
            imgsz=IMGSZ,
            out_dir=str(tmp_path / "e"),
            pred_field="scored",
        )
    )
    assert EVAL_CONF <= 0.001
    predictor = SegPredictor(weights, IMGSZ)
    low = high = 0
    for sample in clone.match_tags("val"):
        image = cv2.cvtColor(cv2.imread(sample.filepath), cv2.COLOR_BGR2RGB)
        low += len(predictor.predict(image, conf=EVAL_CONF))
        high += len(predictor.predict(image, conf=0.25))
        assert min(p.confidence for p in sample["scored"].polylines) < 0.25
    assert result["predictions"] == clone.count("scored.polylines") == low > high


def test_the_prediction_field_is_the_users_and_is_not_overwritten(family_model, clone, tmp_path):
    import fiftyone as fo

    from coral_seg_yolo.evaluate import evaluate

    weights, data = family_model
    mine = clone.match_tags("val").first()
    mine["predictions"] = fo.Classification(label="my own")
    mine.save()
    evaluate(
        str(weights),
        str(data),
        split="val",
        dataset=clone.name,
        imgsz=IMGSZ,
        out_dir=str(tmp_path / "a"),
        conf=FAST_CONF,
    )
    assert clone[mine.id]["predictions"].label == "my own"  # the default field is not `predictions`

    with pytest.raises(QuadratsegError, match="already has the field 'predictions'"):
        evaluate(
            str(weights),
            str(data),
            split="val",
            dataset=clone.name,
            imgsz=IMGSZ,
            out_dir=str(tmp_path / "b"),
            pred_field="predictions",
            eval_key="other",
        )
    assert clone[mine.id]["predictions"].label == "my own"
    with pytest.raises(QuadratsegError, match="ground-truth field"):
        evaluate(
            str(weights),
            str(data),
            "train",
            clone.name,
            IMGSZ,
            str(tmp_path / "c"),
            pred_field="gt_polylines",
        )
    result = json.loads(
        evaluate(
            str(weights),
            str(data),
            split="val",
            dataset=clone.name,
            imgsz=IMGSZ,
            out_dir=str(tmp_path / "d"),
            pred_field="predictions",
            eval_key="other",
            overwrite=True,
            conf=FAST_CONF,
        )
    )
    assert result["pred_field"] == "predictions" and isinstance(clone[mine.id]["predictions"], fo.Polylines)
    assert set(clone.list_evaluations()) == {"eval_yolo", "other"}


def test_a_model_of_another_label_set_is_refused(family_model, clone, tmp_path):
    from coral_seg_yolo.evaluate import evaluate

    weights, data = family_model
    with pytest.raises(QuadratsegError, match="not in the 'finegrained' taxonomy level"):
        evaluate(
            str(weights),
            str(data),
            split="val",
            dataset=clone.name,
            imgsz=IMGSZ,
            out_dir=str(tmp_path / "e"),
            level="finegrained",
        )
