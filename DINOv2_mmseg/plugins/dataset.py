"""The coral dataset in MMSeg's registry, reading the layout ``DINOv2_mmseg.prepare_data`` writes::

    data_root/
    ├── classes.txt          one class name per line; line k is class index k (0: background)
    ├── palette.txt          one "r g b" per line, same order
    ├── train/
    │   ├── data/<stem>.jpg  images
    │   └── labels/<stem>.png  single-channel class-index masks (uint8)
    ├── val/ ...
    └── test/ ...

Configs name it ``type="CoralSegDataset"`` with ``data_prefix=dict(img_path="train/data",
seg_map_path="train/labels")``. Classes come from ``classes.txt``; a config that also lists
``metainfo=dict(classes=...)`` must list the same ones, in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from quadratseg.errors import QuadratsegError


def read_class_files(data_root: str | Path) -> tuple[list[str], list[list[int]]]:
    """Classes and palette (RGB) of a prepared dataset; clear errors when they are absent or disagree."""
    root = Path(data_root)
    if not root.is_dir():
        raise QuadratsegError(
            f"dataset root {root} does not exist; run `python -m DINOv2_mmseg.prepare_data` first or set "
            "data_root in the config (train: --data-root)"
        )
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise QuadratsegError(
            f"{classes_file} is missing; {root} was not written by DINOv2_mmseg.prepare_data"
        )
    classes = [line.strip() for line in classes_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    palette: list[list[int]] = []
    palette_file = root / "palette.txt"
    if palette_file.is_file():
        palette = [
            [int(v) for v in line.split()]
            for line in palette_file.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if len(palette) != len(classes):
            raise QuadratsegError(f"{palette_file} has {len(palette)} colours for {len(classes)} classes")
    return classes, palette


def check_config_classes(config_classes: Any, data_classes: list[str], where: str) -> None:
    """Raise when the classes a config declares differ from the data's ``classes.txt``."""
    if config_classes is None:
        return
    config_classes = list(config_classes)
    if config_classes == data_classes:
        return
    only_data = [c for c in data_classes if c not in config_classes]
    only_config = [c for c in config_classes if c not in data_classes]
    raise QuadratsegError(
        f"{where}: the config's classes differ from the data's classes.txt: in the data but not in the "
        f"config {only_data}, in the config but not in the data {only_config}"
        + ("" if only_data or only_config else " (same names, other order)")
        + "; prepare the data at the config's taxonomy level, or set classes/num_classes in the config"
    )


@DATASETS.register_module()
class CoralSegDataset(BaseSegDataset):
    """Coral quadrats in the ``train|val|test/{data,labels}`` layout (see the module docstring)."""

    METAINFO: ClassVar[dict[str, Any]] = {"classes": None, "palette": None}

    def __init__(
        self,
        data_root: str = "",
        metainfo: dict | None = None,
        img_suffix: str | None = None,
        seg_map_suffix: str = ".png",
        **kwargs: Any,
    ):
        classes, palette = read_class_files(data_root)
        declared = (metainfo or {}).get("classes")
        check_config_classes(declared, classes, f"dataset {data_root}")
        meta = {"classes": tuple(classes), "palette": [list(c) for c in palette] or None}
        prefix = kwargs.get("data_prefix") or {}
        img_dir = Path(data_root) / prefix.get("img_path", "")
        if prefix and not img_dir.is_dir():
            raise QuadratsegError(f"{img_dir} does not exist: this split is absent from {data_root}")
        if img_suffix is None:  # the suffix prepare_data recorded, else .jpg
            info = Path(data_root) / "dataset.json"
            img_suffix = (
                json.loads(info.read_text("utf-8")).get("img_suffix", ".jpg") if info.is_file() else ".jpg"
            )
        super().__init__(
            data_root=data_root,
            metainfo=meta,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=False,
            **kwargs,
        )
