"""CLI: mask/box mAP, precision, recall, F1 per class, confusion matrix, PR curves; FiftyOne evaluation.

    python -m coral_seg_yolo.evaluate best.pt --data OUT/data.yaml [--split test] [--dataset DS]

The mAP figures are ultralytics' own validator's on the prepared split (so they agree with it
by construction); its confusion matrix and PR curves are saved as images. With ``--dataset``, the
predictions are also written into the FiftyOne samples of that split (field ``predictions``)
and scored with FiftyOne's COCO-style evaluation (``eval_key``), to browse errors in the App.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2

from coral_seg_yolo.predictor import SegPredictor
from quadratseg.errors import QuadratsegError


def ultralytics_validation(
    weights: str, data: str, split: str, imgsz: int | None, out_dir: Path
) -> dict[str, Any]:
    """Run ultralytics' validator; metrics per class and the paths of its plots."""
    from quadratseg.yolo_train import build_model

    model = build_model(weights)
    args = {
        "data": data,
        "split": split,
        "plots": True,
        "verbose": False,
        "project": str(out_dir.resolve()),
        "name": f"val_{split}",
        "exist_ok": True,
    }
    if imgsz:
        args["imgsz"] = imgsz
    metrics = model.val(**args)
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


def fiftyone_evaluation(predictor: SegPredictor, samples: Any, eval_key: str = "eval_yolo") -> dict[str, Any]:
    """Write predictions (Polylines) into the samples and score them with FiftyOne's COCO-style evaluation."""
    import fiftyone as fo

    for sample in samples:
        image = cv2.cvtColor(cv2.imread(sample.filepath), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        polylines = [
            fo.Polyline(
                label=i.label,
                points=[[tuple(p) for p in (i.polygon_xy / [w, h]).tolist()]],
                closed=True,
                filled=True,
                confidence=i.score,
            )
            for i in predictor.predict(image)
        ]
        sample["predictions"] = fo.Polylines(polylines=polylines)
        sample.save()
    result = samples.evaluate_detections(
        "predictions", gt_field="gt_polylines", eval_key=eval_key, compute_mAP=True
    )
    return {"fiftyone_map": round(float(result.mAP()), 4), "eval_key": eval_key, "samples": samples.count()}


def evaluate(
    weights: str,
    data: str,
    split: str = "val",
    dataset: str | None = None,
    imgsz: int | None = None,
    out_dir: str = "outputs/coralseg_eval",
) -> str:
    """Evaluate a YOLO-seg model on a prepared split (and optionally inside a FiftyOne dataset).

    Args:
        weights: trained model.
        data: data.yaml written by coral_seg_yolo.prepare_data.
        split: val or test.
        dataset: FiftyOne dataset whose samples tagged --split receive the predictions.
        imgsz: inference size (default: the training size).
        out_dir: where the plots and evaluation.json go.

    Returns:
        The metrics as JSON.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ultralytics_validation(weights, data, split, imgsz, out)
    if dataset:
        import fiftyone as fo

        if not fo.dataset_exists(dataset):
            raise QuadratsegError(f"no FiftyOne dataset named {dataset!r}")
        result.update(
            fiftyone_evaluation(SegPredictor(weights, imgsz), fo.load_dataset(dataset).match_tags(split))
        )
    (out / "evaluation.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(evaluate, name="coral_seg_yolo.evaluate")
