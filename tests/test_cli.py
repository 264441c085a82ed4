"""Every stage CLI answers --help, and bad input exits with a clear one-line error."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIS = [
    "quadratseg.synth",
    "quadratseg.demo",
    "data_engineering.create_fiftyone_dataset",
    "data_engineering.create_cvat_annotation_tasks",
    "grid_inpainting.remove_grid",
    "grid_inpainting.evaluate",
    "grid_inpainting.prepare_data",
    "grid_inpainting.deploy_as_zip",
    "grid_pose_detection.prepare_data",
    "grid_pose_detection.train",
    "grid_pose_detection.evaluate",
    "grid_pose_detection.predict",
    "grid_pose_detection.deploy_as_zip",
    "coral_seg_yolo.prepare_data",
    "coral_seg_yolo.train",
    "coral_seg_yolo.evaluate",
    "coral_seg_yolo.predict",
    "coral_seg_yolo.deploy_as_zip",
    "coral_seg_yolo.export",
    "DINOv2_mmseg.prepare_data",
    "DINOv2_mmseg.train",
    "DINOv2_mmseg.test",
    "DINOv2_mmseg.evaluate",
    "DINOv2_mmseg.predict",
    "DINOv2_mmseg.inference_with_coralscop",
    "DINOv2_mmseg.deploy_as_zip",
]


def run(*args, cwd=REPO, env=None):
    environ = {**os.environ, "PAGER": "cat", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=300
    )


@pytest.mark.parametrize("module", CLIS)
def test_help(module):
    result = run(module, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr  # fire writes help to stderr when not on a terminal
    assert "FLAGS" in text and "DESCRIPTION" in text


def test_synth_cli_refuses_an_existing_folder(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    result = run("quadratseg.synth", str(out), "--images", "1", "--size", "256", cwd=tmp_path)
    assert result.returncode == 2
    assert "already exists; pass --overwrite" in result.stderr
    assert list(out.iterdir()) == []


def test_synth_cli_writes_a_set(tmp_path):
    result = run(
        "quadratseg.synth",
        str(tmp_path / "s"),
        "--images",
        "2",
        "--size",
        "256",
        "--workers",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s" / "cvat_exports" / "grid" / "annotations.xml").is_file()


def test_bad_settings_stop_the_cli_with_the_variable_named(tmp_path):
    result = run("quadratseg.synth", "--help", env={"CVAT_RETRIES": "many"}, cwd=tmp_path)
    assert result.returncode != 0
    assert "CVAT_RETRIES='many'" in result.stderr


def test_pull_cli_reports_an_unsafe_backup_in_one_line(tmp_path):
    import zipfile

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.txt", "x")
    result = run(
        "data_engineering.create_fiftyone_dataset",
        "p",
        "--source",
        "backup",
        "--path",
        str(bad),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "unsafe path '../escape.txt'" in result.stderr and "Traceback" not in result.stderr


def test_mmseg_train_cli_names_a_missing_dataset_root(tmp_path):
    result = run(
        "DINOv2_mmseg.train",
        "dinov2_tiny_segformer_cpu.py",
        "--data-root",
        str(tmp_path / "nowhere"),
        "--work-dir",
        str(tmp_path / "work"),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "does not exist; run `python -m DINOv2_mmseg.prepare_data` first" in result.stderr
    assert not (tmp_path / "work").exists()
