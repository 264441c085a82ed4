"""Every stage CLI answers --help, and bad input exits with a clear one-line error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIS = [
    "quadratseg.synth",
    "pipeline.demo",
    "data_engineering.create_fiftyone_dataset",
    "data_engineering.create_cvat_annotation_tasks",
    "data_engineering.app",
    "data_engineering.label_config",
    "quadratseg.list_weights",
    "grid_inpainting.remove_grid",
    "grid_inpainting.evaluate",
    "grid_inpainting.prepare_data",
    "grid_inpainting.deploy_as_zip",
    "grid_inpainting.train",
    "grid_inpainting.predict",
    "grid_pose_detection.prepare_data",
    "grid_pose_detection.train",
    "grid_pose_detection.evaluate",
    "grid_pose_detection.predict",
    "grid_pose_detection.deploy_as_zip",
    "grid_pose_detection.make_template",
    "grid_pose_detection.frame_model",
    "grid_pose_detection.few_shot",
    "grid_pose_detection.evaluate_real",
    "pipeline.process",
    "pipeline.calibrate",
    "pipeline.track",
    "data_engineering.taglab_import",
    "coral_seg_yolo.prepare_data",
    "coral_seg_yolo.train",
    "coral_seg_yolo.evaluate",
    "coral_seg_yolo.predict",
    "coral_seg_yolo.deploy_as_zip",
    "coral_seg_yolo.export",
    "coral_seg_yolo.seg_model",
    "DINOv2_mmseg.prepare_data",
    "DINOv2_mmseg.train",
    "DINOv2_mmseg.testloop",
    "DINOv2_mmseg.evaluate",
    "DINOv2_mmseg.predict",
    "DINOv2_mmseg.deploy_as_zip",
    "DINOv2_mmseg.seg_model",
    "bridge",
    "bridge.worker",
]


def python(*args, cwd=REPO, env=None):
    """This interpreter run with ``args`` (its output captured, no pager)."""
    environ = {**os.environ, "PAGER": "cat", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=environ, timeout=300
    )


def run(*args, cwd=REPO, env=None):
    """``python -m`` with ``args``."""
    return python("-m", *args, cwd=cwd, env=env)


# ``python -m MODULE --help`` (or ``python SCRIPT.py --help``) for each in turn, in one interpreter
# (run as ``__main__``, as python does), so that torch, mmseg and FiftyOne are imported once, not once
# per CLI: module or script -> [exit code, what it wrote].
HELP_ALL = """
import contextlib, io, json, os, runpy, sys

answers = {}
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    text, code = io.StringIO(), 0
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        try:
            if module.endswith(".py"):
                sys.path.insert(0, os.path.dirname(module))
                runpy.run_path(module, run_name="__main__")
            else:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            code, _ = 1, text.write(f"{type(exc).__name__}: {exc}")
    answers[module] = [code, text.getvalue()]
print(json.dumps(answers))
"""


def help_answers(entries: list[str]) -> dict[str, list]:
    """``--help`` of each module or script, all in one interpreter: entry -> [exit code, text]."""
    result = python("-c", HELP_ALL, *entries)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(answers) == sorted(entries)
    return answers


def test_every_cli_answers_help():
    answers = help_answers(CLIS)
    broken = {m: text[-500:] for m, (code, text) in answers.items() if code != 0}
    assert broken == {}
    unhelpful = sorted(
        m for m, (_, text) in answers.items() if "FLAGS" not in text or "DESCRIPTION" not in text
    )
    assert unhelpful == []


def test_every_benchmark_answers_help():
    """The benchmarks run in no test, so their imports and options would rot unseen: each answers
    --help (argparse's usage and its own docstring)."""
    scripts = sorted(str(p.relative_to(REPO)) for p in (REPO / "benchmarks").glob("bench_*.py"))
    assert len(scripts) == 11
    answers = help_answers(scripts)
    assert {s: code for s, (code, _) in answers.items() if code != 0} == {}
    assert sorted(s for s, (_, text) in answers.items() if not text.startswith("usage: ")) == []


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
    assert result.returncode == 2
    assert "CVAT_RETRIES='many'" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_bad_env_file_above_the_current_folder_is_one_line_and_exit_2(tmp_path):
    (tmp_path / ".env").write_text("QUADRATSEG_NUM_THREADS=lots\n")
    below = tmp_path / "project" / "sub"
    below.mkdir(parents=True)
    env = {"QUADRATSEG_NUM_THREADS": "", "QUADRATSEG_ENV_FILE": ""}
    environ = {k: v for k, v in os.environ.items() if k not in env}
    result = subprocess.run(
        [sys.executable, "-m", "grid_inpainting.deploy_as_zip", "--help"],
        cwd=below,
        capture_output=True,
        text=True,
        env={**environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "QUADRATSEG_NUM_THREADS='lots'" in lines[0] and str(tmp_path / ".env") in lines[0]
    named = run(
        "grid_inpainting.deploy_as_zip", "--help", env={"QUADRATSEG_ENV_FILE": str(tmp_path / "no.env")}
    )
    assert named.returncode == 2 and "QUADRATSEG_ENV_FILE=" in named.stderr


def test_names_stay_text_and_outputs_and_weights_follow_the_settings(tmp_path):
    """`deploy_as_zip 2024 ...`: fire alone would make the model name an int (a crash on `in`)."""
    import zipfile

    import numpy as np
    import yaml

    from grid_pose_detection.tasks import get_task

    models, outputs = tmp_path / "models", tmp_path / "outputs"
    models.mkdir()
    (models / "best.pt").write_bytes(b"weights")
    np.save(tmp_path / "corners.npy", get_task("gridcorners").template())
    result = run(
        "grid_pose_detection.deploy_as_zip",
        "2024",
        "best.pt",
        "corners.npy",
        "--task",
        "gridcorners",
        cwd=tmp_path,
        env={"QUADRATSEG_MODELS_DIR": str(models), "QUADRATSEG_OUTPUTS_DIR": str(outputs)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = sorted(outputs.rglob("*.zip"))
    assert [p.relative_to(outputs).parts[0] for p in written] == ["2024"]
    with zipfile.ZipFile(written[0]) as z:
        function = yaml.safe_load(z.read(next(n for n in z.namelist() if n.endswith("function.yaml"))))
        assert function["metadata"]["name"] == "2024"
        assert z.read(next(n for n in z.namelist() if n.endswith("best.pt"))) == b"weights"


def test_dataset_2024_and_tags_1_2_reach_the_command_as_text(monkeypatch):
    """Through fire with the same preparation `quadratseg.cli.run` gives every command."""
    import types

    import fire

    import data_engineering.push
    from data_engineering.create_cvat_annotation_tasks import create_cvat_annotation_tasks
    from quadratseg.cli import prepare

    seen = {}

    class View:
        def match_tags(self, tags):
            seen["tags"] = tags
            return self

    fake = types.ModuleType("fiftyone")
    fake.dataset_exists = lambda name: seen.setdefault("dataset", name) == name
    fake.load_dataset = lambda name: View()
    fake.list_datasets = list
    monkeypatch.setitem(sys.modules, "fiftyone", fake)

    def push_samples(view, project, label_field, kind, subset, task_name, settings, images_per_task):
        seen.update(project=project, task_name=task_name)
        return [7]

    monkeypatch.setattr(data_engineering.push, "push_samples", push_samples)
    out = fire.Fire(
        prepare(create_cvat_annotation_tasks),
        command=["2024", "007", "--tags", "1,2", "--task-name", "1.50"],
    )
    assert seen == {"dataset": "2024", "tags": ["1", "2"], "project": "007", "task_name": "1.50"}
    assert '"task_ids": [7]' in out


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


@pytest.mark.slow  # a process that imports mmseg and mmengine: over 10 s on 2 cores
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


def test_the_start_model_commands_stop_on_bad_input_in_one_line_before_rendering(tmp_path):
    """The two commands that make the shipped start models refuse, as a process, a run that cannot
    train (no epoch; a start that is not a model they made) with exit 2, no traceback, nothing written."""
    result = run("DINOv2_mmseg.seg_model", str(tmp_path / "mm"), "--epochs", "0", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--epochs must be at least 1, got 0" in result.stderr
    (tmp_path / "fake.pt").write_bytes(b"not a model")
    result = run("coral_seg_yolo.seg_model", str(tmp_path / "yolo"), "--start", "fake.pt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--start fake.pt has no model card" in result.stderr
    assert not (tmp_path / "mm").exists() and not (tmp_path / "yolo").exists()


def test_coralnet_cli_has_help_per_command_and_stops_on_bad_input(tmp_path):
    for command in ("score", "export"):
        result = run("pipeline.coralnet", command, "--help")
        assert result.returncode == 0 and "FLAGS" in result.stdout + result.stderr
    result = run("pipeline.coralnet", "score", str(tmp_path / "none"), "a.csv", "m.csv", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "CoralNet export a.csv does not exist" in result.stderr


def test_process_cli_names_missing_weights_in_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    result = run(
        "pipeline.process", str(tmp_path / "photos"), str(tmp_path / "out"), "--yolo", "none.pt", cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "do not exist locally (nothing is downloaded)" in result.stderr


def test_console_entries_of_pyproject_answer_help():
    """Every [project.scripts] entry is installed beside the interpreter and answers --help."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"quadratseg-process", "quadratseg-pull", "quadratseg-bridge"} <= set(scripts)
    for name in scripts:
        script = Path(sys.executable).parent / name
        assert script.is_file(), f"{name} is not installed: reinstall the project (make install)"
        result = subprocess.run(
            [str(script), "--help"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PAGER": "cat"},
        )
        assert result.returncode == 0, (name, result.stderr[-500:])
        assert "FLAGS" in result.stdout + result.stderr or "COMMANDS" in result.stdout + result.stderr, name


def test_calibrate_cli_refuses_a_folder_that_holds_no_run_in_one_line(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("photo,label,percent\nq1.jpg,Porites,2.0\n")
    result = run(
        "pipeline.calibrate", str(tmp_path / "not_a_run"), str(truth), "--out", str(tmp_path / "t.json")
    )
    assert result.returncode == 2, result.stderr
    assert "holds no finished pipeline.process run" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "t.json").exists()
