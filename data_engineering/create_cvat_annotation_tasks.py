"""CLI: create CVAT annotation tasks from a FiftyOne dataset (or a tagged part of it).

    python -m data_engineering.create_cvat_annotation_tasks DATASET PROJECT --label-field predictions \\
        --kind polygons --subset train --task-name batch_01 [--tags val,test]
"""

from __future__ import annotations

import json


def create_cvat_annotation_tasks(
    dataset: str,
    project: str,
    label_field: str = "gt_polylines",
    kind: str = "polygons",
    subset: str = "train",
    task_name: str | None = None,
    tags: str | None = None,
    images_per_task: int = 100,
) -> str:
    """Create CVAT tasks in PROJECT from the images of DATASET and one of its label fields.

    Args:
        dataset: FiftyOne dataset name.
        project: CVAT project name (its labels must include the field's labels).
        label_field: the field to send: Polylines (polygons, masks) or Keypoints (skeletons).
        kind: polygons, masks or skeletons.
        subset: CVAT subset of the new tasks (train, val, test).
        task_name: name of the first task (default: DATASET_LABEL_FIELD); later ones get _2, _3...
        tags: comma-separated sample tags to send (default: every sample).
        images_per_task: images per CVAT task.

    Returns:
        JSON with the created task ids.
    """
    from quadratseg.cli import as_name, as_names, current_settings
    from quadratseg.fiftyone_io import load_dataset

    settings = current_settings()
    dataset, project, task_name = as_name(dataset), as_name(project), as_name(task_name)
    view = load_dataset(dataset)
    if as_names(tags):
        view = view.match_tags(as_names(tags))
    from data_engineering.push import push_samples

    task_ids = push_samples(
        view,
        project,
        label_field,
        kind,
        subset,
        task_name or f"{dataset}_{label_field}",
        settings,
        images_per_task,
    )
    return json.dumps({"project": project, "task_ids": task_ids})


if __name__ == "__main__":
    from quadratseg.cli import run

    run(create_cvat_annotation_tasks, name="data_engineering.create_cvat_annotation_tasks")
