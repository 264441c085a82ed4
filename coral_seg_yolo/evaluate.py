"""CLI: mask/box mAP, precision, recall, F1 per class, confusion matrix, PR curves; FiftyOne evaluation.

    python -m coral_seg_yolo.evaluate best.pt --data OUT/data.yaml [--split test] [--dataset DS
        --pred-field yolo_predictions [--overwrite]]

The mAP figures are ultralytics' own validator's on the prepared split (so they agree with it
by construction); its confusion matrix and PR curves are saved as images. With ``--dataset``, the
predictions are also written into the FiftyOne samples of that split (field ``--pred-field``; an
existing field is replaced only with ``--overwrite``) and scored with FiftyOne's COCO-style
evaluation (``eval_key``), to browse errors in the App.

The truth is taken at the model's taxonomy level: the level whose class list equals the model's
class names (prepare_data writes every class of its level into data.yaml, so a trained model
carries them; this works for any .pt or .onnx model, with nothing recorded beside it).
``--level`` names it explicitly. A model whose classes match no level is refused. Predictions
are made at ``--conf`` 0.001 (as ultralytics' validator): mAP integrates the whole
precision-recall curve, which a 0.25 threshold would cut short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from coral_seg_yolo.predictor import SegPredictor, card_windows
from quadratseg.errors import QuadratsegError
from quadratseg.fiftyone_io import POLYLINES_FIELD, level_field
from quadratseg.images import read_image_rgb
from quadratseg.taxonomy import LEVELS, Taxonomy, load_taxonomy

EVAL_CONF = 0.001  # ultralytics' validator's threshold: mAP needs the low-confidence tail


def ultralytics_validation(
    weights: str, data: str, split: str, imgsz: int | None, out_dir: Path, device: str = "auto"
) -> dict[str, Any]:
    """Run ultralytics' validator (on ``device``, ``auto``: its own choice); metrics per class and
    the paths of its plots."""
    from quadratseg.yolo_train import run_validator

    folder = {"project": str(out_dir.resolve()), "name": f"val_{split}", "exist_ok": True}
    model, metrics = run_validator(weights, data, split, imgsz, device, plots=True, **folder)
    seg, box = metrics.seg, metrics.box
    f1 = 2 * seg.mp * seg.mr / (seg.mp + seg.mr) if (seg.mp + seg.mr) > 0 else 0.0
    names = model.names
    per_class = {
        names[int(c)]: {
            "mask_map50": round(float(seg.ap50[i]), 4),
            "mask_map50_95": round(float(seg.ap[i]), 4),
            "box_map50": round(float(box.ap50[i]), 4),
        }
        for i, c in enumerate(seg.ap_class_index)
    }
    plots = sorted(str(p) for p in Path(metrics.save_dir).glob("*.png"))
    return {
        "mask_map50": round(float(seg.map50), 4),
        "mask_map50_95": round(float(seg.map), 4),
        "box_map50": round(float(box.map50), 4),
        "box_map50_95": round(float(box.map), 4),
        "precision": round(float(seg.mp), 4),
        "recall": round(float(seg.mr), 4),
        "f1": round(float(f1), 4),
        "per_class": per_class,
        "plots": plots,
    }


def split_label_cache(data_yaml: str | Path, split: str) -> Path | None:
    """The label cache ultralytics keeps for ``split`` of a YOLO layout (beside the labels of the
    split's first image, as it finds them), None when the split is not one folder of images."""
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset, img2label_paths

    folder = check_det_dataset(str(data_yaml), autodownload=False).get(split)
    if not isinstance(folder, str) or not Path(folder).is_dir():
        return None
    images = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix[1:].lower() in IMG_FORMATS)
    return Path(img2label_paths(images[:1])[0]).parent.with_suffix(".cache") if images else None


@contextmanager
def label_cache_kept(data_yaml: str | Path, split: str) -> Iterator[None]:
    """Leave the label cache of ``split`` (:func:`split_label_cache`) as it was: a validation with
    other scan settings (``single_cls``) rewrites it, and the next ordinary one would rewrite it back
    (one that did not exist is removed again)."""
    import shutil
    import tempfile

    cache = split_label_cache(data_yaml, split)
    if cache is None:
        yield
        return
    with tempfile.TemporaryDirectory() as keep:
        kept = Path(keep) / cache.name
        existed = cache.is_file()
        if existed:
            shutil.copy2(cache, kept)
        try:
            yield
        finally:
            if existed:
                shutil.copy2(kept, cache)
            else:
                cache.unlink(missing_ok=True)


def colony_threshold(
    weights: str, data: str, split: str, imgsz: int | None, out_dir: Path, device: str = "auto"
) -> dict[str, Any]:
    """The colony confidence threshold to recommend for a model: where ultralytics' validator, run on
    ``split`` with every genus as one class (``single_cls``: a colony outlined right under a wrong
    genus still counts as found), finds the mask F1 highest (its own operating point: the smoothed
    F1-confidence curve's maximum, where it reports precision and recall).

    Colonies, not genus calls, are what tracking links and what the cover's units are; a model
    that has learnt outlines before genera (the demo's, fine-tuned for minutes) finds many
    more of them below ultralytics' default 0.25.

    Returns:
        ``conf`` (0..1), and at it the class-agnostic mask ``precision``, ``recall`` and
        ``f1``; ``mask_map50`` (class-agnostic), ``split``. ``conf`` is None (and ``f1`` 0) when no
        colony of the split is outlined right at any confidence: there is no threshold to recommend.
    """
    from ultralytics.utils.metrics import smooth

    from quadratseg.yolo_train import run_validator

    folder = {"project": str(out_dir.resolve()), "name": f"threshold_{split}", "exist_ok": True}
    with label_cache_kept(data, split):
        _, metrics = run_validator(weights, data, split, imgsz, device, single_cls=True, **folder)
    seg = metrics.seg
    if not len(seg.f1_curve):
        raise QuadratsegError(f"no colony in the {split} split of {data}: no threshold can be chosen")
    f1 = smooth(seg.f1_curve.mean(0), 0.1)
    best = int(f1.argmax())
    if f1[best] <= 0:  # no colony outlined right at any confidence: no operating point to recommend
        return {"conf": None, "f1": 0.0, "mask_map50": round(float(seg.map50), 4), "split": split}
    return {
        # the validator saw nothing below its own threshold: no lower one is recommended
        "conf": max(round(float(seg.px[best]), 3), EVAL_CONF),
        "precision": round(float(seg.p_curve.mean(0)[best]), 4),
        "recall": round(float(seg.r_curve.mean(0)[best]), 4),
        "f1": round(float(seg.f1_curve.mean(0)[best]), 4),
        "mask_map50": round(float(seg.map50), 4),
        "split": split,
    }


def model_level(names: list[str] | dict[int, str], taxonomy: Taxonomy | None = None) -> str:
    """The taxonomy level whose class list is the model's class names (the finest when several are).

    Raises:
        QuadratsegError: the names are no level's classes (a model trained on another label set).
    """
    taxonomy = taxonomy or load_taxonomy()
    classes = sorted(set(names.values() if isinstance(names, dict) else names))
    for level in LEVELS:
        if classes == taxonomy.classes(level):
            return level
    partial = [level for level in LEVELS if set(classes) <= set(taxonomy.classes(level))]
    hint = (
        f"; they are a subset of the {partial[0]} classes, pass --level {partial[0]} to score at that level"
        if partial
        else ""
    )
    raise QuadratsegError(
        f"the model's classes {classes} match no taxonomy level of {taxonomy.source} "
        f"({', '.join(LEVELS)}){hint}"
    )


def truth_field(samples: Any, level: str) -> str:
    """The FiftyOne field holding the polygons at ``level`` (``gt_polylines`` or its level copy)."""
    schema = samples.get_field_schema()
    if level_field(level) in schema:
        return level_field(level)
    if POLYLINES_FIELD in schema:
        labels = set(samples.distinct(f"{POLYLINES_FIELD}.polylines.label"))
        if labels <= set(load_taxonomy().classes(level)):
            return POLYLINES_FIELD
    raise QuadratsegError(
        f"the dataset has no polygons at the {level} level (no field {level_field(level)!r}); "
        "pull it with data_engineering, which writes every coarser level"
    )


def check_output_field(
    samples: Any, pred_field: str, eval_key: str, gt_field: str, overwrite: bool = False
) -> None:
    """Refuse an empty split, a ground-truth field as output, or taking an existing field or
    evaluation without ``overwrite``."""
    if samples.count() == 0:
        raise QuadratsegError("no samples to evaluate: the dataset has none tagged with the split")
    dataset = samples._dataset
    if pred_field in (POLYLINES_FIELD, gt_field) or pred_field.startswith(f"{POLYLINES_FIELD}_"):
        raise QuadratsegError(f"--pred-field {pred_field!r} is a ground-truth field; name another")
    taken = [
        what
        for what, present in (
            (f"field {pred_field!r}", pred_field in dataset.get_field_schema()),
            (f"evaluation {eval_key!r}", eval_key in dataset.list_evaluations()),
        )
        if present
    ]
    if taken and not overwrite:
        raise QuadratsegError(
            f"the dataset already has the {' and the '.join(taken)}; pass --overwrite to replace "
            "them or name others (--pred-field, --eval-key)"
        )


def fiftyone_evaluation(
    predictor: SegPredictor,
    samples: Any,
    eval_key: str = "eval_yolo",
    pred_field: str = "yolo_predictions",
    gt_field: str = POLYLINES_FIELD,
    conf: float = EVAL_CONF,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write predictions (Polylines, from ``conf`` up) into ``pred_field`` and score them against
    ``gt_field`` with FiftyOne's COCO-style evaluation.

    An existing ``pred_field`` (or evaluation ``eval_key``) is replaced only with ``overwrite``.
    """
    import fiftyone as fo

    check_output_field(samples, pred_field, eval_key, gt_field, overwrite)
    dataset = samples._dataset
    if eval_key in dataset.list_evaluations():
        dataset.delete_evaluation(eval_key)
    if pred_field in dataset.get_field_schema():  # with overwrite: the field is replaced, whatever it held
        dataset.delete_sample_field(pred_field)
    for sample in samples:
        image = read_image_rgb(sample.filepath)
        h, w = image.shape[:2]
        polylines = [
            fo.Polyline(
                label=i.label,
                points=[[tuple(p) for p in (ring / [w, h]).tolist()] for ring in i.outline_rings()],
                closed=True,
                filled=True,
                confidence=i.score,
            )
            for i in predictor.predict(image, conf=conf)
        ]
        sample[pred_field] = fo.Polylines(polylines=polylines)
        sample.save()
    result = samples.evaluate_detections(pred_field, gt_field=gt_field, eval_key=eval_key, compute_mAP=True)
    return {
        "fiftyone_map": round(float(result.mAP()), 4),
        "eval_key": eval_key,
        "pred_field": pred_field,
        "gt_field": gt_field,
        "conf": conf,
        "samples": samples.count(),
        "predictions": samples.count(f"{pred_field}.polylines"),
    }


def evaluate(
    weights: str,
    data: str,
    split: str = "val",
    dataset: str | None = None,
    imgsz: int | None = None,
    out_dir: str | None = None,
    level: str | None = None,
    pred_field: str = "yolo_predictions",
    eval_key: str = "eval_yolo",
    conf: float = EVAL_CONF,
    overwrite: bool = False,
) -> str:
    """Evaluate a YOLO-seg model on a prepared split (and optionally inside a FiftyOne dataset).

    Args:
        weights: trained model.
        data: data.yaml written by coral_seg_yolo.prepare_data.
        split: val or test.
        dataset: FiftyOne dataset whose samples tagged --split receive the predictions.
        imgsz: inference size (default: the training size).
        out_dir: where the plots and evaluation.json go (default: QUADRATSEG_OUTPUTS_DIR/coralseg_eval).
        level: taxonomy level of the model's classes (default: inferred from its class names).
        pred_field: FiftyOne field that receives the predictions (with --dataset).
        eval_key: FiftyOne evaluation key (with --dataset).
        conf: lowest confidence of the predictions scored with --dataset.
        overwrite: replace an existing --pred-field (on every sample) / --eval-key.

    Returns:
        The metrics as JSON.
    """
    from quadratseg.cli import device, output_path, weights_path

    weights = weights_path(weights)  # names and lists arrive as typed: quadratseg.cli.run keeps text
    out = output_path(out_dir, "coralseg_eval")
    out.mkdir(parents=True, exist_ok=True)
    if dataset:  # every refusal before the (long) validation
        from quadratseg.fiftyone_io import load_dataset

        source = load_dataset(dataset)  # before the model: a wrong name fails at once
        predictor = SegPredictor(weights, imgsz, device=device(), **card_windows(weights))  # whole quadrats
        if level is None:
            level = model_level(predictor.names)
        else:
            load_taxonomy().check_labels(predictor.names.values(), level)
        samples = source.match_tags(split)
        gt_field = truth_field(samples, level)
        check_output_field(samples, pred_field, eval_key, gt_field, overwrite)
    result = ultralytics_validation(weights, data, split, imgsz, out, device())
    if dataset:
        result["level"] = level
        result.update(
            fiftyone_evaluation(predictor, samples, eval_key, pred_field, gt_field, conf, overwrite)
        )
    (out / "evaluation.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(evaluate, name="coral_seg_yolo.evaluate")
