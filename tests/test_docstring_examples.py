"""The examples in docstrings run and give what they say (they are documentation users copy)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "quadratseg",
    "DINOv2_mmseg",
    "coral_seg_yolo",
    "grid_pose_detection",
    "grid_inpainting",
    "data_engineering",
    "pipeline",
    "bridge",
)

# Modules whose examples all write files, so they are shown with ``# doctest: +SKIP`` only.
WRITES_FILES = frozenset({"quadratseg.atomic", "quadratseg.formats.cvat_xml"})


def modules_with_examples() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "nuclio" in path.parts or ">>> " not in path.read_text(encoding="utf-8"):
                continue
            names.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return names


@pytest.mark.parametrize("module_name", modules_with_examples())
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module_name}"
    if module_name not in WRITES_FILES:
        assert result.attempted > 0, f"{module_name}: every example is skipped, so none is checked"
