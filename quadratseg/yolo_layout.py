"""The ultralytics dataset layout shared by the YOLO modules: ``images/<split>/``, ``labels/<split>/``.

Splits come from FiftyOne sample tags (the CVAT task subsets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quadratseg.errors import QuadratsegError

SPLITS = ("train", "val", "test")


def make_split_dirs(root: Path) -> dict[str, int]:
    """Create ``images/<split>`` and ``labels/<split>`` under ``root``; return a zeroed count per split."""
    for split in SPLITS:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    return dict.fromkeys(SPLITS, 0)


def sample_split(sample: Any) -> str | None:
    """The split of a FiftyOne sample (its first train/val/test tag), or None."""
    return next((t for t in SPLITS if t in sample.tags), None)


def check_split_counts(counts: dict[str, int], what: str) -> None:
    """Refuse a layout without train or val images (ultralytics needs both)."""
    if counts["train"] == 0 or counts["val"] == 0:
        raise QuadratsegError(
            f"{what}: {counts['train']} train and {counts['val']} val images; tag the samples train/val "
            "(the CVAT task subsets) before preparing"
        )
