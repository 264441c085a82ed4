import json
import re

from pipeline.demo import run_demo
from quadratseg.settings import Settings
from quadratseg.taxonomy import load_taxonomy


def test_demo_writes_summary_and_report(tmp_path):
    summary = run_demo(Settings(), tmp_path / "demo", images=6, size=384, seed=1, training_scale=0.01)
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk == summary
    core = summary["quadratseg"]
    assert core["images"] == 6 and core["colonies"] > 6
    # the warp against analytic places (a wrong corner order, a half-pixel shift or OpenCV's
    # pixel-centre convention left unconverted break these: measured 5 px, 0.5 px and 0.5 px mean)
    assert core["warp_lattice_max_error_px"] < 0.01 and core["warp_grid_truth_max_error_px"] < 0.01
    assert core["warp_string_mean_offset_px"] < 0.35 and core["warp_string_max_offset_px"] < 0.85
    assert core["template_matching_selfcheck_rate"] == 1.0
    cover = core["mean_cover_percent"]["finegrained"]
    assert 5 < sum(cover.values()) < 60
    assert core["seconds"] > 0 and summary["demo"]["seconds"] >= core["seconds"]
    data = summary["data_engineering"]
    assert data["images"] == 6 and data["backup_matches_export"] is True
    assert sum(data["samples_per_split"].values()) == 6
    assert sum(data["polygons_per_label"].values()) == core["colonies"]
    n_test = data["samples_per_split"]["test"]
    assert n_test >= 1
    pose = summary["grid_pose_detection"]
    assert pose["gridcorners"]["epochs"] == pose["gridpose"]["epochs"] == 1  # training_scale 0.01
    assert pose["split"] == "test"
    for task in ("gridcorners", "gridpose"):
        m = pose[task]
        assert m["images"] == n_test  # scored on the test images, each of them
        assert m["matching_success_rate"] <= m["complete_rate"]  # a right slot needs a found point
        assert m["pck_1pct"] is not None and m["pck_1pct"] <= m["found_share"]  # a hit needs a found point
    assert pose["matching_success_rate"] == pose["gridpose"]["matching_success_rate"]
    inpaint = summary["grid_inpainting"]
    # grid removal runs on the grid model's keypoints only: a photo where the (one-epoch) model
    # finds no grid is skipped with its reason, never given the annotations instead
    assert inpaint["split"] == "test" and "grid model predictions" in inpaint["keypoints"]
    assert inpaint["images"] + len(inpaint["images_without_grid"]) == n_test
    assert all(reason.startswith("no grid: ") for reason in inpaint["images_without_grid"].values())
    if inpaint["images"]:  # a one-epoch grid model's keypoints are poor: the annotated ones show the backend
        assert inpaint["psnr_masked"] > inpaint["psnr_masked_input"]
        assert inpaint["psnr_masked_with_annotated_keypoints"] > inpaint["psnr_masked_input"] + 5
    assert pose["grid_images_without_grid"] >= len(inpaint["images_without_grid"])
    seg = summary["coral_seg_yolo"]
    # segmentation also scored on the photos cleaned from the predicted grid (the chain)
    assert seg["chain_images"] == inpaint["images"]
    assert (seg["chain_mask_map50"] is None) == (inpaint["images"] == 0)
    assert seg["epochs"] == 2 and seg["train_seconds"] > 0
    assert seg["split"] == "test" and seg["images"] == n_test and seg["instances"] > 0
    assert seg["mask_map50_95"] <= seg["mask_map50"] and seg["box_map50_95"] <= seg["box_map50"]
    # per-class figures of the classes present in the test images, which average to the overall one
    per_class = seg["per_class_mask_map50"]
    assert 1 <= len(per_class) <= seg["instances"]
    assert abs(sum(per_class.values()) / len(per_class) - seg["mask_map50"]) < 1e-3
    mmseg = summary["DINOv2_mmseg"]
    assert mmseg["epochs"] == 3 and mmseg["refinement"] == "none"
    assert mmseg["split"] == "test" and mmseg["images"] == n_test
    # cover compared for every coral class on every test image
    assert mmseg["cover_comparisons"] == n_test * (len(mmseg["per_class_iou"]) - 1)  # background left out
    assert mmseg["cover_mean_abs_error_pp"] < 100 and mmseg["aacc"] > 0
    ious = [v for v in mmseg["per_class_iou"].values() if v is not None and v == v]
    assert ious and abs(sum(ious) / len(ious) - mmseg["miou"]) < 0.05
    assert set(mmseg["per_class_iou"]) == {"background", *load_taxonomy().classes("main_family")}
    chain = summary["process"]  # the chain on the raw test photos with the one-epoch models
    assert {
        "photos",
        "failed",
        "cover_mae_pp",
        "interval_coverage",
        "point_accuracy",
        "seconds_per_photo",
    } <= set(chain)
    assert chain["photos"] == n_test and chain["failed"] == 0 and chain["variant"] == "three-stage"
    assert set(chain["main_family_cover_mae_pp"]) == {"yolo", "mmseg", "weighted", "voting", "nms"}
    assert chain["calibration_pairs"] > 0 and chain["miss_pp"] >= 0 and chain["boundary_px"] >= 0
    # grid removal scored on the real photos too (decoy masks), when ../shared/data is beside us
    real = inpaint["real_photos"]
    assert isinstance(real, str) or all(r["photos"] == 9 and r["psnr_masked"] > 10 for r in real.values())
    assert inpaint["fine_tune"].startswith("skipped: no LaMa weights")
    bridge = summary["bridge"]  # the bridge on loopback with the CVAT stand-in (needs ../shared/data)
    if "skipped" not in bridge:
        assert (
            bridge["tasks_created"] == 2 and bridge["failed_jobs"] == 0 and bridge["schema_violations"] == 0
        )
        assert bridge["frames"] == 3 * n_test and bridge["replayed"] > 0 and bridge["duplicates"] > 0
        assert bridge["ack_p99_ms"] < 1000
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
        stages=["pipeline.demo:core_stage", "not_a_module.demo:stage"],
    )
    assert "No module named 'not_a_module'" in summary["not_a_module"]["skipped"]
