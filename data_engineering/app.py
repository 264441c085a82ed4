"""CLI: open the FiftyOne App on a dataset, and say what the modules wrote into it.

    python -m data_engineering.app DATASET [--port 5151] [--address 0.0.0.0] [--remote] [--wait 3]

Before the App opens, the log lists the dataset's label fields by kind (:func:`describe_dataset`):
ground truth (the pull's ``gt_*`` fields), predictions (every other label field, such as
``yolo_predictions`` from ``coral_seg_yolo.evaluate``), the evaluations
(``dataset.list_evaluations()``: type, prediction and ground-truth fields, and the fields each
wrote) and the declared keypoint skeletons. The launch itself is :func:`launch_app`, one call to
``fiftyone.launch_app`` and the wait for the App to close.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from quadratseg.fiftyone_io import load_dataset

logger = logging.getLogger(__name__)

GROUND_TRUTH_PREFIX = "gt_"  # the pull's label fields: gt_polylines[_<level>], gt_corners, gt_grid, ...


def describe_dataset(dataset: Any) -> dict[str, Any]:
    """What a dataset holds for the App: label fields by kind, evaluations, keypoint skeletons.

    Returns ``{"dataset", "samples", "ground_truth": [field], "predictions": [field], "evaluations":
    {key: {"type", "method", "pred_field", "gt_field", "fields"}}, "skeletons": {field: points}}``.
    A label field an evaluation wrote (none do today: they annotate labels) is not a prediction.
    """
    import fiftyone as fo

    schema = dataset.get_field_schema()
    label_fields = sorted(
        name
        for name, field in schema.items()
        if isinstance(field, fo.EmbeddedDocumentField) and issubclass(field.document_type, fo.Label)
    )
    evaluations: dict[str, Any] = {}
    for key in dataset.list_evaluations():
        config = dataset.get_evaluation_info(key).config
        evaluations[key] = {
            "type": getattr(config, "type", None),
            "method": getattr(config, "method", None),
            "pred_field": getattr(config, "pred_field", None),
            "gt_field": getattr(config, "gt_field", None),
            "fields": sorted(name for name in schema if name == key or name.startswith(f"{key}_")),
        }
    written = {name for e in evaluations.values() for name in e["fields"]}
    return {
        "dataset": dataset.name,
        "samples": dataset.count(),
        "ground_truth": [f for f in label_fields if f.startswith(GROUND_TRUTH_PREFIX)],
        "predictions": [
            f for f in label_fields if not f.startswith(GROUND_TRUTH_PREFIX) and f not in written
        ],
        "evaluations": evaluations,
        "skeletons": {name: len(s.labels or []) for name, s in sorted(dataset.skeletons.items())},
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The log lines of :func:`describe_dataset`'s summary."""
    evaluations = [
        f"{key} ({e['type']}, {e['method']}: {e['pred_field']} vs {e['gt_field']}; "
        f"fields {', '.join(e['fields']) or 'none'})"
        for key, e in summary["evaluations"].items()
    ]
    skeletons = [f"{name} ({n} points)" for name, n in summary["skeletons"].items()]
    return [
        f"dataset {summary['dataset']!r}: {summary['samples']} samples",
        f"ground truth: {', '.join(summary['ground_truth']) or 'none'}",
        f"predictions: {', '.join(summary['predictions']) or 'none'}",
        f"evaluations: {'; '.join(evaluations) or 'none'}",
        f"keypoint skeletons: {', '.join(skeletons) or 'none'}",
    ]


def launch_app(
    dataset: Any,
    port: int | None = None,
    address: str | None = None,
    remote: bool = False,
    wait: float | None = 3,
) -> Any:
    """Serve the FiftyOne App on ``dataset`` and, unless ``wait`` is None, block until it is closed.

    ``wait`` is FiftyOne's: the seconds to wait for a new App connection after the last one closed;
    negative waits until interrupted. ``remote`` serves without opening a browser here (connect to
    ``address:port``, e.g. through an ssh tunnel). Returns the FiftyOne session.
    """
    import fiftyone as fo

    session = fo.launch_app(dataset, port=port, address=address, remote=remote)
    logger.info("the FiftyOne App serves %r at %s", dataset.name, session.url)
    if wait is not None:
        session.wait(wait)
    return session


def app(
    dataset: str,
    port: int | None = None,
    address: str | None = None,
    remote: bool = False,
    wait: float = 3,
) -> str:
    """Open the FiftyOne App on DATASET; the log names its ground-truth, prediction and evaluation
    fields and its keypoint skeletons first.

    Ground truth is what the pull wrote (gt_polylines and its taxonomy levels, gt_corners,
    gt_grid); predictions are the other label fields (yolo_predictions from
    coral_seg_yolo.evaluate, ...); evaluations are FiftyOne's (eval_yolo, ...), with the fields
    they wrote (eval_yolo_tp, ...).

    Args:
        dataset: FiftyOne dataset name (python -m data_engineering.create_fiftyone_dataset makes one).
        port: port to serve the App on (default: FiftyOne's, 5151).
        address: address to serve the App on (default: FiftyOne's, localhost; 0.0.0.0 for every interface).
        remote: serve without opening a browser on this machine (connect from another one).
        wait: seconds to wait for a new App connection after the last one closed; negative: until Ctrl-C.

    Returns:
        JSON with the dataset's fields by kind, evaluations and skeletons.
    """
    from quadratseg.cli import as_name

    loaded = load_dataset(as_name(dataset))
    summary = describe_dataset(loaded)
    for line in summary_lines(summary):
        logger.info("%s", line)
    launch_app(loaded, port=port, address=address, remote=remote, wait=wait)
    return json.dumps(summary)


if __name__ == "__main__":
    from quadratseg.cli import run

    run(app, name="data_engineering.app")
