import json
import re

from quadratseg.demo import run_demo
from quadratseg.settings import Settings
from quadratseg.taxonomy import load_taxonomy


def test_demo_writes_summary_and_report(tmp_path):
    summary = run_demo(Settings(), tmp_path / "demo", images=6, size=384, seed=1, training_scale=0.01)
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk == summary
    core = summary["quadratseg"]
    assert core["images"] == 6 and core["colonies"] > 6
    assert core["warp_psnr_db"] > 30
    assert core["template_matching_selfcheck_rate"] == 1.0
    cover = core["mean_cover_percent"]["finegrained"]
    assert 5 < sum(cover.values()) < 60
    assert core["seconds"] > 0 and summary["demo"]["seconds"] >= core["seconds"]
    data = summary["data_engineering"]
    assert data["images"] == 6 and data["backup_matches_export"] is True
    assert sum(data["samples_per_split"].values()) == 6
    assert sum(data["polygons_per_label"].values()) == core["colonies"]
    pose = summary["grid_pose_detection"]
    assert pose["gridcorners"]["epochs"] == 2 and pose["gridpose"]["epochs"] == 1  # training_scale 0.01
    assert 0 <= pose["matching_success_rate"] <= 1 and "corner_mean_px_error" in pose
    inpaint = summary["grid_inpainting"]
    assert inpaint["psnr_masked"] > inpaint["psnr_masked_input"] + 5
    assert "grid model predictions" in inpaint["keypoints"]
    seg = summary["coral_seg_yolo"]
    assert seg["epochs"] == 2 and 0 <= seg["mask_map50"] <= 1 and seg["train_seconds"] > 0
    assert {"mask_map50", "mask_map50_95", "train_seconds"} <= set(seg)
    mmseg = summary["DINOv2_mmseg"]
    assert mmseg["epochs"] == 3 and 0 <= mmseg["miou"] <= 100 and mmseg["refinement"] == "none"
    assert 0 <= mmseg["cover_mean_abs_error_pp"] < 100
    assert set(mmseg["per_class_iou"]) == {"background", *load_taxonomy().classes("main_family")}
    html = (tmp_path / "demo" / "report.html").read_text()
    images = re.findall(r"<img src='([^']+)'", html)
    assert len(images) >= 4
    assert all((tmp_path / "demo" / src).is_file() for src in images)


def test_a_missing_stage_module_is_reported_not_dropped(tmp_path):
    summary = run_demo(
        Settings(),
        tmp_path / "d",
        images=1,
        size=256,
        stages=["quadratseg.demo:core_stage", "not_a_module.demo:stage"],
    )
    assert "No module named 'not_a_module'" in summary["not_a_module"]["skipped"]
