"""The ultralytics dataset layout shared by the YOLO modules: ``images/<split>/``, ``labels/<split>/``.

Splits come from FiftyOne sample tags (the CVAT task subsets).
"""

from __future__ import annotations

import glob
from collections.abc import Callable
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


def layout_stem(sample: Any) -> str:
    """File stem of a FiftyOne sample's image and label in a training layout (YOLO or MMSeg): its
    file's stem and the end of its id (names repeat across CVAT tasks)."""
    return f"{Path(sample.filepath).stem}_{sample.id[-6:]}"


def layout_photo(folder: Path, stem: str) -> Path:
    """The photo of ``stem`` in a layout's image ``folder`` (the layouts keep each photo's own
    suffix), or ``folder/stem`` when there is none."""
    from quadratseg.images import IMAGE_SUFFIXES

    found = sorted(
        p for p in Path(folder).glob(f"{glob.escape(stem)}.*") if p.suffix.lower() in IMAGE_SUFFIXES
    )
    return found[0] if found else Path(folder) / stem


def replace_layout_photos(
    samples: Any,
    images: dict[str, Any],
    folder_of: Callable[[str], Path],
    splits: tuple[str, ...] = ("train", "val"),
) -> int:
    """Replace the layout's photos of FiftyOne ``samples`` in ``splits`` that ``images`` holds (CVAT
    image name -> (H, W, 3) uint8 RGB) by those images (:func:`quadratseg.images.replace_images`);
    ``folder_of(split)`` is the layout's image folder of a split, where a sample's photo is its
    :func:`layout_stem` with the suffix the layout gave it. Labels are left as they are. Returns
    how many were replaced.

    Raises:
        QuadratsegError: two samples to replace share a name, or an image does not fit its file
            (:func:`quadratseg.images.replace_images`); nothing is replaced then.
    """
    from quadratseg.images import replace_images

    targets: dict[str, Path] = {}
    for sample in samples:
        split = sample_split(sample)  # the split the layout put it in (its first train/val/test tag)
        if split not in splits or sample.cvat_image_name not in images:
            continue
        if sample.cvat_image_name in targets:
            raise QuadratsegError(
                f"two samples are named {sample.cvat_image_name!r}: the images to replace are keyed by "
                "name, so say which one by renaming the other"
            )
        targets[sample.cvat_image_name] = layout_photo(folder_of(split), layout_stem(sample))
    return replace_images(targets, images)


def check_split_counts(counts: dict[str, int], what: str) -> None:
    """Refuse a layout without train or val images (ultralytics needs both)."""
    if counts["train"] == 0 or counts["val"] == 0:
        raise QuadratsegError(
            f"{what}: {counts['train']} train and {counts['val']} val images; tag the samples train/val "
            "(the CVAT task subsets) before preparing"
        )
