"""Demo stage: the FiftyOne datasets of the three CVAT projects, from exports and from a backup.

Runs inside ``python -m pipeline.demo``; uses FiftyOne's bundled database in a folder of
the demo's own (``outputs/demo/fiftyone_db``) unless the settings name another.
"""

from __future__ import annotations

import time
from typing import Any

from data_engineering.create_fiftyone_dataset import run_pull
from quadratseg.cvat_tasks import project_from_xml_export, write_project_backup

PROJECTS = {"corners": "demo_corners", "grid": "demo_grid", "segmentation": "demo_segmentation"}


def stage(ctx: Any) -> dict[str, Any]:
    """Pull the synthetic corner, grid and segmentation exports, and a backup of the segmentation project."""
    start = time.perf_counter()
    settings = ctx.settings.replace(media_dir=ctx.out_dir / "media")
    exports = ctx.synthetic_dir / "cvat_exports"
    results: dict[str, Any] = {}
    for folder, dataset in PROJECTS.items():
        summary = run_pull(
            dataset,
            "xml",
            str(exports / folder),
            dataset_name=dataset,
            mode="force_refresh",
            settings=settings,
        )
        results[folder] = summary
    backup = write_project_backup(
        project_from_xml_export(exports / "segmentation"), ctx.out_dir / "segmentation_backup.zip"
    )
    from_backup = run_pull(
        "demo_segmentation_backup",
        "backup",
        str(backup),
        dataset_name="demo_segmentation_backup",
        mode="force_refresh",
        settings=settings,
    )
    seg = results["segmentation"]
    same = seg["shapes_per_split_label"] == from_backup["shapes_per_split_label"]

    section = ctx.report.section("CVAT projects to FiftyOne (data_engineering)")
    section.paragraphs.append(
        "The three synthetic CVAT project exports became the FiftyOne datasets "
        f"{', '.join(PROJECTS.values())} "
        f"({seg['images']} images each); a project backup zip of the segmentation project pulled into "
        f"demo_segmentation_backup gives {'the same' if same else 'DIFFERENT'} polygons per split and genus."
    )
    splits = sorted(seg["shapes_per_split_label"])
    genera = sorted({g for counts in seg["shapes_per_split_label"].values() for g in counts})
    rows = [[g, *[seg["shapes_per_split_label"][s].get(g, 0) for s in splits]] for g in genera]
    rows.append(["images", *[seg["samples_per_split"].get(s, 0) for s in splits]])
    section.tables.append(
        ("Coral polygons per split and genus (demo_segmentation)", ["genus", *splits], rows)
    )
    return {
        "datasets": {folder: PROJECTS[folder] for folder in PROJECTS}
        | {"backup": "demo_segmentation_backup"},
        "images": seg["images"],
        "samples_per_split": seg["samples_per_split"],
        "polygons_per_label": seg["shapes_per_label"],
        "backup_matches_export": same,
        "warnings": sum(len(r["warnings"]) for r in results.values()),
        "pull_seconds": {folder: r["seconds"] for folder, r in results.items()}
        | {"backup": from_backup["seconds"]},
        "seconds": round(time.perf_counter() - start, 2),
    }
