import logging
import os
from dataclasses import fields
from pathlib import Path

import pytest

from quadratseg.errors import SettingsError
from quadratseg.offline import apply_offline_environment, offline_environment
from quadratseg.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_defaults_without_any_file():
    s = load_settings(env_file=None, environ={})
    assert s == Settings()
    assert s.cvat_host == "http://localhost:8080" and s.lama_model is None and s.allow_opencv_inpaint is False


def test_environment_overrides_file(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "CVAT_HOST=http://file:8080\nCVAT_RETRIES=7\nLAMA_MODEL=~/w/big-lama.pt\nQUADRATSEG_ALLOW_OPENCV_INPAINT=yes\n"
    )
    s = load_settings(env, environ={"CVAT_HOST": "http://env:9000"})
    assert s.cvat_host == "http://env:9000"
    assert s.cvat_retries == 7
    assert s.lama_model == Path("~/w/big-lama.pt").expanduser()
    assert s.allow_opencv_inpaint is True


@pytest.mark.parametrize(
    "line, message",
    [
        ("CVAT_RETRIES=three", "CVAT_RETRIES='three'"),
        ("CVAT_TIMEOUT_S=soon", "CVAT_TIMEOUT_S"),
        ("QUADRATSEG_ALLOW_OPENCV_INPAINT=maybe", "true/false"),
        ("QUADRATSEG_LOG_LEVEL=LOUD", "QUADRATSEG_LOG_LEVEL"),
        ("QUADRATSEG_NUM_THREADS=-1", "QUADRATSEG_NUM_THREADS"),
        ("QUADRATSEG_DATA_DIR=", "empty value"),
    ],
)
def test_bad_values_name_the_variable_and_the_file(tmp_path, line, message):
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    with pytest.raises(SettingsError, match=message):
        load_settings(env, environ={})


def test_unknown_keys_are_reported_with_a_suggestion(tmp_path, caplog):
    env = tmp_path / ".env"
    env.write_text("CVAT_USRNAME=me\n")
    with caplog.at_level(logging.WARNING):
        load_settings(env, environ={})
    assert "did you mean CVAT_USERNAME" in caplog.text


def test_env_example_documents_every_setting():
    text = (REPO / ".env.example").read_text()
    lines = text.splitlines()
    keys = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert sorted(keys) == sorted(Settings.env_names())
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"{line} has no comment above it"
    # the example, copied as it is, loads to the defaults
    assert load_settings(REPO / ".env.example", environ={}) == Settings()
    assert all(f.metadata.get("help") for f in fields(Settings))


def test_offline_switches_and_font(tmp_path, monkeypatch):
    s = Settings(cache_dir=tmp_path / "cache", fiftyone_database_dir=tmp_path / "db")
    env = offline_environment(s)
    assert env["YOLO_OFFLINE"] == "1" and env["YOLO_AUTOINSTALL"] == "0" and env["HF_HUB_OFFLINE"] == "1"
    assert env["FIFTYONE_DATABASE_VALIDATION"] == "false" and env["FIFTYONE_DATABASE_DIR"] == str(
        tmp_path / "db"
    )
    for key in env:
        monkeypatch.setenv(key, os.environ.get(key, ""))  # restored after the test
    apply_offline_environment(s)
    assert os.environ["YOLO_CONFIG_DIR"] == str((tmp_path / "cache" / "ultralytics").resolve())
    assert (tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.ttf").stat().st_size > 10000


def test_env_example_comments_are_the_settings_help():
    lines = (REPO / ".env.example").read_text().splitlines()
    helps = {f.metadata["env"]: f.metadata["help"] for f in fields(Settings)}
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            key = line.split("=", 1)[0]
            assert lines[i - 1] == f"# {helps[key]}", key


def test_env_file_is_found_upwards_or_named(tmp_path, monkeypatch):
    from quadratseg.settings import find_env_file

    (tmp_path / ".env").write_text("CVAT_RETRIES=9\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_env_file({}) == tmp_path / ".env"
    assert load_settings(environ={}).cvat_retries == 9
    other = tmp_path / "other.env"
    other.write_text("CVAT_RETRIES=4\n")
    assert load_settings(environ={"QUADRATSEG_ENV_FILE": str(other)}).cvat_retries == 4
    with pytest.raises(SettingsError, match="QUADRATSEG_ENV_FILE"):
        load_settings(environ={"QUADRATSEG_ENV_FILE": str(tmp_path / "missing.env")})


def test_media_dir_follows_the_data_dir_unless_set():
    assert Settings().media_dir == Path("data/media")
    assert load_settings(env_file=None, environ={"QUADRATSEG_DATA_DIR": "/d"}).media_dir == Path("/d/media")
    s = load_settings(env_file=None, environ={"QUADRATSEG_DATA_DIR": "/d", "QUADRATSEG_MEDIA_DIR": "/m"})
    assert s.media_dir == Path("/m")
    assert Settings().replace(data_dir=Path("/e")).media_dir == Path("/e/media")
    assert s.replace(data_dir=Path("/e")).media_dir == Path("/m")


def test_cli_paths_and_device_come_from_the_settings(tmp_path, monkeypatch):
    from quadratseg.cli import data_path, device, output_path, weights_path, with_model_paths

    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models_here"
    (models / "sub").mkdir(parents=True)
    (models / "sub" / "best.pt").write_bytes(b"x")
    (tmp_path / "local.pt").write_bytes(b"x")
    s = Settings(data_dir=Path("D"), outputs_dir=Path("O"), models_dir=models, device="cuda:1")
    assert output_path(None, "runs/pose", s) == Path("O/runs/pose")
    assert output_path("mine", "runs/pose", s) == Path("mine")
    assert data_path(None, Path("mmseg") / "2024", s) == Path("D/mmseg/2024")
    assert weights_path("sub/best.pt", s) == str(models / "sub" / "best.pt")
    assert weights_path("local.pt", s) == "local.pt"  # found from the current folder first
    assert weights_path("yolo11n-pose.yaml", s) == "yolo11n-pose.yaml"  # neither: left as given
    assert weights_path(None, s) is None
    assert device("auto", s) == "cuda:1" and device(None, s) == "cuda:1" and device("cpu", s) == "cpu"
    resolved = with_model_paths(s.replace(sam_checkpoint=Path("sub/best.pt"), lama_model=Path("nope.pt")))
    assert resolved.sam_checkpoint == models / "sub" / "best.pt" and resolved.lama_model == Path("nope.pt")
    assert with_model_paths(s).lama_model is None and with_model_paths(s).sam_checkpoint is None
    (models / "big-lama.pt").write_bytes(b"x")  # the standard names, as quadratseg.weights lists them
    (models / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    (models / "vit_b_coralscop.pth").write_bytes(b"x")
    defaults = with_model_paths(s)
    assert defaults.lama_model == models / "big-lama.pt"
    assert defaults.sam_checkpoint is None  # no SAM_CHECKPOINT is a choice: no refinement
    assert with_model_paths(s.replace(lama_model=Path("local.pt"))).lama_model == Path("local.pt")


# --- the code keeps the settings' word -------------------------------------------------------

PACKAGES = (
    "quadratseg",
    "data_engineering",
    "grid_pose_detection",
    "grid_inpainting",
    "coral_seg_yolo",
    "DINOv2_mmseg",
    "pipeline",
    "bridge",
)


def _project_modules():
    """(dotted name, path, parsed tree) of every project module (no tests, benchmarks or handlers)."""
    import ast

    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            if "nuclio" in rel.parts[:-1]:  # Nuclio handlers: their init_context is the process entry
                continue
            name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            yield name, rel, ast.parse(path.read_text(encoding="utf-8"))


def _is_entry_point(name, tree):
    """A `python -m` stage (fire CLI through quadratseg.cli.run) or a demo stage run by pipeline.demo."""
    import ast

    if name.endswith(".demo") or name == "quadratseg.cli":
        return True
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def test_every_setting_has_a_reader():
    """A reader is an attribute access ``<...>settings.<field>`` in project code other than settings.py."""
    import ast

    read = set()
    for name, _, tree in _project_modules():
        if name == "quadratseg.settings":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                owner = ast.unparse(node.value)
                if owner == "settings" or owner.endswith(".settings"):
                    read.add(node.attr)
    unread = sorted(f.metadata["env"] for f in fields(Settings) if f.name not in read)
    assert unread == [], f"settings no code reads: {unread}"


def test_library_modules_read_no_environment_variables():
    """Only entry points read the environment; the settings loader and LaMa's switch are the exceptions."""
    import ast

    allowed = {
        "quadratseg.settings",  # load_settings/find_env_file: called by the entry points
        "quadratseg.offline",  # process set-up called by the entry points (writes only)
        "grid_inpainting.inpaint",  # sets simple-lama's LAMA_MODEL for its loader and restores it
        "loopback.harness",  # starts the bridge and function servers as processes with this environment
        "quadratseg.yolo_train",  # --mlflow: sets MLFLOW_TRACKING_URI for ultralytics' MLflow callback
    }
    readers = []
    for name, rel, tree in _project_modules():
        if name in allowed or _is_entry_point(name, tree):
            continue
        for node in ast.walk(tree):
            text = ast.unparse(node) if isinstance(node, ast.Attribute | ast.Call) else ""
            if text in ("os.environ", "os.getenv") or text.startswith("os.getenv("):
                readers.append(f"{rel}:{node.lineno}")
    assert sorted(set(readers)) == []


def test_library_modules_import_no_cli_modules():
    import ast

    modules = {name: tree for name, _, tree in _project_modules()}
    entry_points = {name for name, tree in modules.items() if _is_entry_point(name, tree)}
    offenders = []
    for name, tree in modules.items():
        if name in entry_points:
            continue
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            offenders += [f"{name} imports {t}" for t in targets if t in entry_points]
    assert offenders == []
