"""CLI: pull a CVAT project into a FiftyOne dataset.

python -m data_engineering.create_fiftyone_dataset PROJECT_NAME --source xml --path export.zip
python -m data_engineering.create_fiftyone_dataset PROJECT_NAME --source backup --path backup.zip
python -m data_engineering.create_fiftyone_dataset PROJECT_NAME --source cvat   # CVAT_HOST, credentials
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError
from quadratseg.settings import Settings

logger = logging.getLogger(__name__)
SOURCES = ("cvat", "xml", "backup")


def parse_label_map(label_map: str | dict | None) -> dict[str, str]:
    """``"Pavona=Pavona/Leptoseris,Acro=Acropora"``, a JSON file path, or a dict -> dict."""
    if not label_map:
        return {}
    if isinstance(label_map, dict):
        return {str(k): str(v) for k, v in label_map.items()}
    text = str(label_map)
    if text.endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise QuadratsegError(f"label map file {path} does not exist")
        return {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    bad = [item for item in pairs if len(item) != 2]
    if bad:
        raise QuadratsegError(f"--label-map takes 'old=new,old2=new2' or a .json file; cannot read {text!r}")
    return {k.strip(): v.strip() for k, v in pairs}


def load_project(source: str, path: str | None, project_name: str, settings: Settings):
    """The project from the chosen source (see :mod:`quadratseg.cvat_tasks`)."""
    from quadratseg.cvat_tasks import project_from_backup, project_from_xml_export

    if source not in SOURCES:
        raise QuadratsegError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source in ("xml", "backup") and not path:
        raise QuadratsegError(f"--source {source} needs --path (the export zip, folder or backup zip)")
    if source == "xml":
        return project_from_xml_export(path, project_name)
    if source == "backup":
        return project_from_backup(path)
    from quadratseg.cvat_client import connect, project_from_server

    with connect(settings) as client:
        return project_from_server(client, project_name, settings)


def run_pull(
    project_name: str,
    source: str = "cvat",
    path: str | None = None,
    dataset_name: str | None = None,
    mode: str = "task_tracking",
    allowed_subsets: tuple[str, ...] = ("train", "val", "test"),
    label_level: str = "finegrained",
    label_map: str | dict | None = None,
    taxonomy: str | None = None,
    media_dir: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Library entry of the CLI: returns the pull summary as a dict (``settings``: the CLI's, else
    the defaults; CVAT_HOST and credentials come from them)."""
    from data_engineering.pull import pull_project
    from quadratseg.taxonomy import load_taxonomy

    settings = settings if settings is not None else Settings()
    if isinstance(allowed_subsets, str):
        allowed_subsets = tuple(s.strip() for s in allowed_subsets.split(",") if s.strip())
    project = load_project(source, path, project_name, settings)
    if source == "backup" and project_name and project.name != project_name:
        logger.info(
            "the backup holds project %r; naming the dataset %r", project.name, dataset_name or project_name
        )
    statuses = ("completed",) if source in ("cvat", "backup") else ()
    summary = pull_project(
        project,
        dataset_name or project_name or project.name,
        Path(media_dir) if media_dir else settings.media_dir,
        load_taxonomy(taxonomy),
        mode=mode,
        allowed_subsets=tuple(allowed_subsets),
        statuses=statuses,
        source_level=label_level,
        aliases=parse_label_map(label_map),
    )
    return summary.as_dict()


def create_fiftyone_dataset(
    project_name: str,
    source: str = "cvat",
    path: str | None = None,
    dataset_name: str | None = None,
    mode: str = "task_tracking",
    allowed_subsets: str = "train,val,test",
    label_level: str = "finegrained",
    label_map: str | None = None,
    taxonomy: str | None = None,
    media_dir: str | None = None,
) -> str:
    """Pull a CVAT project into a FiftyOne dataset named after it.

    Args:
        project_name: CVAT project name (the dataset's name unless --dataset-name is given).
        source: cvat (live server: CVAT_HOST and credentials from .env), xml (a "CVAT for images
            1.1" export: zip, folder or annotations.xml) or backup (a project backup zip).
        path: the export or backup for --source xml/backup.
        dataset_name: FiftyOne dataset name (default: the project name).
        mode: task_tracking (pull new or changed tasks), skip_existing (only new tasks) or
            force_refresh (rebuild the dataset).
        allowed_subsets: comma-separated task subsets to pull.
        label_level: taxonomy level of the project's polygon labels (finegrained, extended, ...).
        label_map: rename labels before the taxonomy check: 'old=new,old2=new2' or a .json file.
        taxonomy: a taxonomy CSV replacing the built-in table.
        media_dir: where images are stored (default: QUADRATSEG_MEDIA_DIR).

    Returns:
        The pull summary as JSON (tasks, images, shapes per label and split).
    """
    from quadratseg.cli import as_name, as_names, current_settings

    summary = run_pull(
        as_name(project_name),
        source,
        path,
        as_name(dataset_name),
        mode,
        tuple(as_names(allowed_subsets)),
        label_level,
        label_map,
        taxonomy,
        media_dir,
        current_settings(),
    )
    return json.dumps(summary, indent=2)


def main() -> None:
    """Console entry ``quadratseg-pull``."""
    from quadratseg.cli import run

    run(create_fiftyone_dataset, name="quadratseg-pull")


if __name__ == "__main__":
    main()
