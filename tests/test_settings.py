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
