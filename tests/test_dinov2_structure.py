"""One piece of code per idea in DINOv2_mmseg: a colony is the core's Instance (no second box-mask class),
one mask IoU in the core, module names that collide with nothing, docstrings that name where things live."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "DINOv2_mmseg"


@pytest.mark.parametrize(
    ("gone", "now"),
    [
        ("DINOv2_mmseg.refine", "DINOv2_mmseg.sam_refine"),  # quadratseg.refine refines keypoints
        ("DINOv2_mmseg.pipeline", "DINOv2_mmseg.coral_pipeline"),  # beside the pipeline package
        ("DINOv2_mmseg.test", "DINOv2_mmseg.testloop"),  # a module named test
        ("DINOv2_mmseg.inference_with_coralscop", "DINOv2_mmseg.predict"),  # an alias of predict
    ],
)
def test_colliding_or_alias_module_names_are_gone(gone, now):
    assert importlib.util.find_spec(gone) is None
    assert importlib.util.find_spec(now) is not None


def test_seeds_and_refined_masks_are_core_instances_with_one_mask_iou():
    """No Region class and no mask_iou of its own: seeds are quadratseg Instances labelled with their
    class, compared with the core's mask_iou."""
    from DINOv2_mmseg import sam_refine
    from quadratseg.instances import Instance, mask_iou

    assert not hasattr(sam_refine, "Region") and sam_refine.mask_iou is mask_iou
    probs = np.zeros((3, 20, 30), np.float32)
    probs[0] = 1.0
    probs[:, 2:6, 3:9] = np.array([0.1, 0.9, 0.0])[:, None, None]  # class 1: 4 x 6 px at (3, 2)
    probs[:, 10:18, 20:30] = np.array([0.2, 0.0, 0.8])[:, None, None]  # class 2: 8 x 10 px at (20, 10)
    seeds = sam_refine.semantic_seeds(probs, 0.5, 4, classes=["bg", "A", "B"])
    assert [(c, type(s), s.label, s.xyxy, s.area) for c, s in seeds] == [
        (1, Instance, "A", (3, 2, 9, 6), 24),
        (2, Instance, "B", (20, 10, 30, 18), 80),
    ]


def test_the_core_mask_iou_compares_pixels_in_the_image_frame():
    from quadratseg.instances import Instance, mask_iou

    a = Instance("A", 1.0, np.ones((4, 4), bool), (0, 0))  # 16 px
    b = Instance("B", 1.0, np.ones((4, 4), bool), (2, 0))  # 16 px, 8 shared
    far = Instance("C", 1.0, np.ones((2, 2), bool), (10, 10))
    assert mask_iou(a, b) == pytest.approx(8 / 24)
    assert mask_iou(a, a) == 1.0 and mask_iou(a, far) == 0.0


def _dotted_references(text: str) -> list[str]:
    """``DINOv2_mmseg.module.Name`` references in a docstring (roles like :class: included)."""
    return re.findall(r"\bDINOv2_mmseg(?:\.\w+)+", text)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a name below a module that is not a package
        return False


def test_docstrings_name_the_module_where_each_object_lives():
    """Every ``DINOv2_mmseg.x.Name`` in a module docstring is defined in ``x`` (not merely imported there)."""
    wrong = []
    for path in sorted(MODULE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = [
            ast.get_docstring(n) or ""
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)
        ]
        for ref in {r for doc in docs for r in _dotted_references(doc)}:
            parts = ref.split(".")
            for cut in range(len(parts), 1, -1):
                module = ".".join(parts[:cut])
                if _is_module(module):
                    break
            else:
                wrong.append(f"{path.name}: {ref} (no such module)")
                continue
            obj = importlib.import_module(module)
            for name in parts[cut:]:
                obj = getattr(obj, name, None)
            where = getattr(obj, "__module__", module) if obj is not None else None
            if obj is None or (cut < len(parts) and where != module):
                wrong.append(f"{path.name}: {ref} (lives in {where})")
    assert wrong == []


# --- helpers that say what they do ---------------------------------------------------------------


def test_best_checkpoint_is_the_highest_epoch_whatever_the_file_times(tmp_path):
    """mmengine names best checkpoints best_<metric>_epoch_<N>.pth: the highest N wins, even when an older
    epoch's file was written (or copied) later."""
    import os

    from DINOv2_mmseg.train import best_checkpoint

    late, early = tmp_path / "best_mIoU_epoch_2.pth", tmp_path / "best_mIoU_epoch_10.pth"
    for i, path in enumerate((early, late)):
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # epoch 2 written last
    assert best_checkpoint(tmp_path) == early
    (tmp_path / "best_mIoU_iter_300.pth").write_bytes(b"x")  # iteration-based runs: the highest iteration
    assert best_checkpoint(tmp_path) == tmp_path / "best_mIoU_iter_300.pth"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert best_checkpoint(empty) is None


def test_demo_sizes_are_set_on_the_pipeline_steps_by_their_type(tmp_path):
    """The demo's 384 px / 192 px sizes land on RandomResize, RandomCrop and Resize by type: a config whose
    train pipeline gains a step in front still gets them on the right steps."""
    from mmengine.config import Config

    from DINOv2_mmseg import seg_model

    cfg = seg_model.cpu_config(seg_model.CONFIG, tmp_path / "data", epochs=3)
    train = {step["type"]: step for step in cfg.train_dataloader.dataset.pipeline}
    assert train["RandomResize"]["scale"] == (384, 384) and train["RandomCrop"]["crop_size"] == (192, 192)
    for loader in ("val_dataloader", "test_dataloader"):
        resize = next(s for s in cfg[loader].dataset.pipeline if s["type"] == "Resize")
        assert resize["scale"] == (384, 384)
    assert cfg.model.test_cfg.crop_size == (192, 192) and cfg.train_cfg.max_epochs == 3
    shifted = tmp_path / "shifted.py"
    base = Config.fromfile(str(seg_model.CONFIG))
    pipeline = [{"type": "LoadImageFromFile"}, *base.train_dataloader.dataset.pipeline]
    shifted.write_text(
        f"_base_ = [{str(seg_model.CONFIG)!r}]\n"
        f"train_dataloader = dict(dataset=dict(pipeline={pipeline!r}))\n"
    )
    moved = seg_model.cpu_config(shifted, tmp_path / "data", epochs=3)
    steps = moved.train_dataloader.dataset.pipeline
    assert [s.get("scale") for s in steps if s["type"] == "RandomResize"] == [(384, 384)]
    assert "scale" not in steps[2]  # LoadAnnotations, where the index 2 of the old options pointed


def test_demo_cover_error_averages_over_classes_present_in_truth_or_prediction():
    from DINOv2_mmseg.demo import cover_abs_errors

    predicted = {"Acropora": 30.0, "Porites": 0.0, "Pocillopora": 5.0, "Millepora": 0.0}
    true = {"Acropora": 40.0, "Porites": 0.0, "Pocillopora": 0.0, "Millepora": 2.0}
    assert cover_abs_errors(predicted, true) == {"Acropora": 10.0, "Pocillopora": 5.0, "Millepora": 2.0}


def test_unsure_colonies_reach_cvat_as_a_checkbox_attribute():
    """The DINOv2 answer marks each colony's ``unsure`` flag as a checkbox value CVAT accepts ("true" or
    "false", the attribute the deployed label spec declares), beside the confidence."""
    from cvat_sdk.api_client import models

    from DINOv2_mmseg.coral_pipeline import cvat_answer
    from DINOv2_mmseg.deploy_as_zip import dinov2_labels_spec
    from quadratseg.instances import Instance

    sure = Instance("Porites", 0.9, np.ones((3, 3), bool), (1, 1), {"unsure": False})
    doubted = Instance("Acropora", 0.6, np.ones((2, 4), bool), (6, 2), {"unsure": True})
    dropped = Instance("Acropora", 0.2, np.ones((2, 2), bool), (0, 8), {"unsure": True})  # under threshold
    shapes = cvat_answer([sure, doubted, dropped], (12, 12), threshold=0.5)
    assert [(s["label"], {a["name"]: a["value"] for a in s["attributes"]}) for s in shapes] == [
        ("Porites", {"confidence": "90", "unsure": "false"}),
        ("Acropora", {"confidence": "60", "unsure": "true"}),
    ]
    spec = dinov2_labels_spec(["Porites", "Acropora"])
    unsure = models.AttributeRequest(**next(a for a in spec[1]["attributes"] if a["name"] == "unsure"))
    assert (unsure.input_type.value, unsure.default_value, unsure.mutable) == ("checkbox", "false", True)
