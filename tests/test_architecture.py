"""The floors of the house: core <- modules <- top floor (pipeline, bridge), never an arrow up.

Read from the source itself: every import statement, ``importlib.import_module``/``__import__``
call and every string that names a module by import path (``"pkg.mod"`` or ``"pkg.mod:func"``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = ("data_engineering", "grid_pose_detection", "grid_inpainting", "coral_seg_yolo", "DINOv2_mmseg")
TOP = ("pipeline", "bridge")


def packages_named(path: Path) -> set[str]:
    """Top-level project packages a file imports or names by import path (docstrings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            head = node.value.split(":")[0].split(".")[0]
            if head in MODULES + TOP and ("." in node.value or ":" in node.value):
                found.add(head)
    return found & set(MODULES + TOP + ("quadratseg",))


def files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_the_core_names_no_module_nor_the_top_floor():
    offenders = {
        str(p.relative_to(REPO)): sorted(packages_named(p) - {"quadratseg"}) for p in files("quadratseg")
    }
    assert not {k: v for k, v in offenders.items() if v}


@pytest.mark.parametrize("module", MODULES)
def test_a_module_uses_the_core_only(module):
    offenders = {
        str(p.relative_to(REPO)): sorted(packages_named(p) - {"quadratseg", module}) for p in files(module)
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_check_sees_import_strings(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Mentions pipeline.process in prose."""\nSTAGES = ["grid_pose_detection.demo:stage"]\n'
    )
    assert packages_named(probe) == {"grid_pose_detection"}
