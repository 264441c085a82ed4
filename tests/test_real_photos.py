"""Real photo-quadrats (../shared/data/real_quadrats: 1024 px, metal frames, ``###`` in the names)
through every stage and handler with tiny test models: no crash, every photo has an output or a
recorded reason, names kept as they are.

The tiny models are trained for one epoch on synthetic quadrats, so what they find on real photos
is not the point; that every photo is accounted for, under its own name, is. Where an empty answer
would pass, the detectors are made confident first (``tiny_models.confident_copy``), so that the
warps and the handler answers checked here are never empty.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import zipfile
from pathlib import Path

import pytest

from quadratseg.batch import BatchFailedError


@pytest.fixture(scope="module")
def real_photos(shared_data) -> list[Path]:
    photos = sorted((shared_data / "real_quadrats" / "coralscop").glob("*.jpg"))
    assert len(photos) == 7 and all("###" in p.name for p in photos)
    return photos


def run_cli(function, *args, **kwargs) -> tuple[dict, list[dict]]:
    """A batch CLI's summary and its recorded failures (a batch with failures raises after writing)."""
    try:
        summary = json.loads(function(*args, **kwargs))
    except BatchFailedError as exc:
        summary = json.loads(exc.summary)
    out = Path(kwargs.get("out_dir") or args[-1])
    with (out / "failures.csv").open(encoding="utf-8") as f:
        failures = list(csv.DictReader(f))
    return summary, failures


def test_corners_grid_and_grid_removal_account_for_every_real_photo(
    real_photos, tiny_corner_model, tiny_grid_model, tmp_path
):
    from tiny_models import confident_copy

    from grid_inpainting.remove_grid import run_remove_grid
    from grid_pose_detection.predict import predict
    from quadratseg.settings import Settings

    folder = real_photos[0].parent
    names = {p.name for p in real_photos}
    corner_weights = confident_copy(tiny_corner_model[0], tmp_path / "corners.pt")
    corners, failures = run_cli(
        predict,
        "gridcorners",
        str(corner_weights),
        str(folder),
        str(tmp_path / "c"),
        kpt_conf=0.0,
        warp_size=256,
        refine=False,
    )
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert {r["image"] for r in report} == names and not failures
    warps = {r["image"]: r["warp"] for r in report}  # "ok", or why there is no warp
    assert len(warps) == 7 and all(isinstance(w, str) and len(w) > 0 for w in warps.values())
    ok = {name for name, w in warps.items() if w == "ok"}
    warped = sorted((tmp_path / "c" / "warped").rglob("*.jpg"))
    assert len(ok) >= 1 and corners["warped"] == len(warped) == len(ok) and {p.name for p in warped} == ok
    # the grid stage runs on the warped photos, or on the raw ones when no frame was found
    grid_input = tmp_path / "c" / "warped" if warped else folder
    grid, failures = run_cli(
        predict, "gridpose", str(tiny_grid_model[0]), str(grid_input), str(tmp_path / "g")
    )
    grid_report = json.loads((tmp_path / "g" / "report.json").read_text())
    assert {r["image"] for r in grid_report} == {p.name for p in grid_input.glob("*.jpg")}
    assert all("found" in r for r in grid_report) and grid["images"] == len(grid_report)
    # grid removal: a photo without a usable grid is recorded with its reason, the others are cleaned
    with contextlib.suppress(BatchFailedError):  # some photos failed: listed in failures.csv
        run_remove_grid(
            str(tmp_path / "clean"),
            images=str(grid_input),
            coco=str(tmp_path / "g" / "keypoints_coco.json"),
            backend="opencv-telea",
            settings=Settings(),
        )
    cleaned = {p.name for p in (tmp_path / "clean").glob("*.jpg")}
    with (tmp_path / "clean" / "failures.csv").open(encoding="utf-8") as f:
        recorded = {row["key"]: row["reason"] for row in csv.DictReader(f)}
    assert cleaned | set(recorded) == {p.name for p in grid_input.glob("*.jpg")}
    assert all(reason for reason in recorded.values())


def test_segmentation_predicts_every_real_photo_under_its_own_name(
    real_photos, tiny_seg_model, tiny_mmseg_model, tmp_path
):
    from coral_seg_yolo.predict import predict as yolo_predict
    from DINOv2_mmseg.predict import predict as mmseg_predict

    folder = real_photos[0].parent
    names = {p.name for p in real_photos}
    summary, failures = run_cli(
        yolo_predict, str(tiny_seg_model[0]), str(folder), str(tmp_path / "yolo"), conf=0.001, imgsz=64
    )
    doc = json.loads((tmp_path / "yolo" / "predictions_coco.json").read_text())
    assert {i["file_name"] for i in doc["images"]} == names and not failures
    assert {(i["width"], i["height"]) for i in doc["images"]} == {(1024, 1024)}
    assert len(list((tmp_path / "yolo" / "overlays").rglob("*.jpg"))) == 7
    config, checkpoint, _ = tiny_mmseg_model
    summary, failures = run_cli(
        mmseg_predict, str(config), str(checkpoint), str(folder), str(tmp_path / "mm")
    )
    assert summary["images"] == 7 and not failures
    rows = list(csv.DictReader((tmp_path / "mm" / "cover.csv").open(encoding="utf-8")))
    assert {r["photo"] for r in rows} == names


def test_handlers_answer_a_real_photo(
    real_photos, tiny_seg_model, tiny_corner_model, tiny_mmseg_model, tmp_path
):
    from cvat_oracle import cvat_mask
    from nuclio_driver import call_handler
    from tiny_models import confident_copy, tiny_sam_file

    from coral_seg_yolo.deploy_as_zip import deploy_as_zip as seg_zip
    from DINOv2_mmseg.deploy_as_zip import deploy_as_zip as mmseg_zip
    from grid_pose_detection.deploy_as_zip import deploy_as_zip as pose_zip
    from quadratseg.keypoints import corner_template_xy, save_template

    body = json.dumps({"image": base64.b64encode(real_photos[0].read_bytes()).decode(), "threshold": 0.0})
    template = save_template(corner_template_xy(), tmp_path / "corners.npy")
    config, checkpoint, _ = tiny_mmseg_model
    # 1-epoch detectors made confident, so that the answers are not empty
    seg_weights = confident_copy(tiny_seg_model[0], tmp_path / "seg.pt")
    corner_weights = confident_copy(tiny_corner_model[0], tmp_path / "corners.pt")
    zips = {
        "coral_seg_yolo": seg_zip("pth-yolo-coralsegv4", str(seg_weights), output=str(tmp_path / "y")),
        "grid_pose_detection": pose_zip(
            "pth-yolo-gridcorners", str(corner_weights), str(template), output=str(tmp_path / "p")
        ),
        "DINOv2_mmseg": mmseg_zip(
            "pth-mmseg-coralscopsegformer",
            str(checkpoint),
            str(config),
            str(tiny_sam_file(tmp_path / "sam.pth")),
            output=str(tmp_path / "m"),
            min_threshold=0.0,  # every region the 1-epoch model finds is answered
        ),
    }
    answers = {}
    for package, zip_path in zips.items():
        folder = tmp_path / f"unzipped-{package}"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)
        (answer,) = call_handler(folder / "nuclio", [body], package)
        assert answer["status"] == 200 and isinstance(answer["body"], list), (package, answer)
        answers[package] = answer["body"]
    # the corner function answers what its predictor makes of the photo in this process: a skeleton,
    # or nothing when the 1-epoch model's four corners are refused by the frame check (no quadrat is
    # ever answered that the chain would not warp)
    from grid_pose_detection.predictor import PosePredictor
    from grid_pose_detection.tasks import get_task
    from quadratseg.images import read_image_rgb

    (expected,) = PosePredictor(
        corner_weights, get_task("gridcorners"), corner_template_xy(), kpt_conf=0.0
    ).predict([read_image_rgb(real_photos[0])])
    refused = bool(expected.warp_error) and bool(expected.visible.all())
    assert expected.visible.any()
    answered = {package: len(shapes) > 0 for package, shapes in answers.items()}
    assert answered == {**dict.fromkeys(zips, True), "grid_pose_detection": not refused}
    kinds = {package: sorted({shape["type"] for shape in shapes}) for package, shapes in answers.items()}
    assert kinds == {
        "coral_seg_yolo": ["mask"],
        "grid_pose_detection": [] if refused else ["skeleton"],
        "DINOv2_mmseg": ["mask"],
    }
    for package in ("coral_seg_yolo", "DINOv2_mmseg"):
        assert all(cvat_mask(shape, (1024, 1024)).any() for shape in answers[package]), package
    assert [len(shape["elements"]) for shape in answers["grid_pose_detection"]] == [4] * len(
        answers["grid_pose_detection"]
    )
