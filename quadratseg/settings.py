"""One typed settings object, loaded from ``.env`` with python-dotenv.

Precedence: process environment > ``.env`` file > defaults. Library code never reads the
environment: CLIs call :func:`load_settings` once and pass the values down as arguments.

Example:
    >>> s = load_settings(env_file=None, environ={"CVAT_RETRIES": "5"})
    >>> s.cvat_retries
    5
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from quadratseg.errors import SettingsError

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env(name: str, help_text: str, default: Any = None) -> Any:
    """A dataclass field that remembers its environment variable name and help text."""
    return field(default=default, metadata={"env": name, "help": help_text})


@dataclass(frozen=True)
class Settings:
    """Every setting of the project. ``.env.example`` documents each one (a test keeps them in sync)."""

    # Where things go
    data_dir: Path = _env(
        "QUADRATSEG_DATA_DIR", "Root for datasets, media and training layouts.", Path("data")
    )
    media_dir: Path = _env(
        "QUADRATSEG_MEDIA_DIR", "Where pulled CVAT images are stored for FiftyOne.", Path("data/media")
    )
    outputs_dir: Path = _env("QUADRATSEG_OUTPUTS_DIR", "Runs, reports and zips.", Path("outputs"))
    models_dir: Path = _env(
        "QUADRATSEG_MODELS_DIR", "Local model weights (never downloaded).", Path("models")
    )
    cache_dir: Path = _env(
        "QUADRATSEG_CACHE_DIR", "Framework caches (ultralytics settings, torch hub dir).", Path(".cache")
    )
    log_level: str = _env("QUADRATSEG_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", "INFO")
    num_threads: int = _env("QUADRATSEG_NUM_THREADS", "CPU threads for torch; 0 uses every core.", 0)
    device: str = _env("QUADRATSEG_DEVICE", "auto, cpu, cuda or cuda:N.", "auto")

    # CVAT
    cvat_host: str = _env("CVAT_HOST", "CVAT server URL, with scheme.", "http://localhost:8080")
    cvat_username: str = _env("CVAT_USERNAME", "CVAT user (or use CVAT_ACCESS_TOKEN).", "")
    cvat_password: str = _env("CVAT_PASSWORD", "CVAT password.", "")
    cvat_access_token: str = _env("CVAT_ACCESS_TOKEN", "CVAT personal access token.", "")
    cvat_timeout_s: float = _env("CVAT_TIMEOUT_S", "Seconds before a CVAT request is retried.", 30.0)
    cvat_retries: int = _env("CVAT_RETRIES", "Retries with back-off for CVAT requests.", 3)
    webhook_secret: str = _env(
        "CVAT_WEBHOOK_SECRET", "Secret CVAT signs webhooks with; empty disables checking.", ""
    )

    # FiftyOne
    fiftyone_database_dir: Path | None = _env(
        "FIFTYONE_DATABASE_DIR", "Folder of FiftyOne's bundled MongoDB; empty keeps FiftyOne's default."
    )
    fiftyone_database_uri: str = _env(
        "FIFTYONE_DATABASE_URI", "Your own MongoDB (mongodb://...); empty uses the bundled one.", ""
    )

    # Weights (local files only)
    lama_model: Path | None = _env("LAMA_MODEL", "LaMa TorchScript file (big-lama.pt) for grid removal.")
    allow_opencv_inpaint: bool = _env(
        "QUADRATSEG_ALLOW_OPENCV_INPAINT",
        "Allow the OpenCV inpainting backend when no LaMa weights are present (logged per output).",
        False,
    )
    sam_checkpoint: Path | None = _env("SAM_CHECKPOINT", "SAM ViT-B or CoralSCoP checkpoint file.")
    dinov2_checkpoint: Path | None = _env("DINOV2_CHECKPOINT", "Official DINOv2 backbone checkpoint file.")

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Map environment variable name -> field name."""
        return {f.metadata["env"]: f.name for f in fields(cls)}

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (settings are immutable)."""
        return dataclasses.replace(self, **changes)


def _parse(value: str, type_: Any, env_name: str, source: str) -> Any:
    text = value.strip()
    try:
        if type_ is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError("expected true/false")
        if type_ is int:
            return int(text)
        if type_ is float:
            return float(text)
        if type_ == Path | None:
            return Path(text).expanduser() if text else None
        if type_ is Path:
            if not text:
                raise ValueError("expected a path, got an empty value")
            return Path(text).expanduser()
        return text
    except ValueError as exc:
        raise SettingsError(
            f"{env_name}={value!r} in {source} is not a valid {getattr(type_, '__name__', type_)} ({exc}). "
            f"Fix the value or remove the line to use the default."
        ) from None


def load_settings(env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``env_file`` (if it exists) and ``environ`` (default: ``os.environ``).

    Args:
        env_file: a dotenv file; a missing file is fine (defaults apply), ``None`` skips it.
        environ: the process environment; overrides the file.

    Raises:
        SettingsError: a value has the wrong type; the message names the variable and its source.
    """
    from dotenv import dotenv_values

    environ = os.environ if environ is None else environ
    names = Settings.env_names()
    file_values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        file_values = {k: v or "" for k, v in dotenv_values(env_file).items()}
        for key in file_values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                if close:
                    logger.warning("%s: unknown setting %s (did you mean %s?)", env_file, key, close[0])
    hints = get_type_hints(Settings)
    kwargs: dict[str, Any] = {}
    for env_name, field_name in names.items():
        if env_name in environ:
            raw, source = environ[env_name], "the environment"
        elif env_name in file_values:
            raw, source = file_values[env_name], str(env_file)
        else:
            continue
        kwargs[field_name] = _parse(raw, hints[field_name], env_name, source)
    settings = Settings(**kwargs)
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(
            f"QUADRATSEG_LOG_LEVEL={settings.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR."
        )
    if settings.num_threads < 0:
        raise SettingsError(f"QUADRATSEG_NUM_THREADS={settings.num_threads} must be 0 (all cores) or more.")
    return settings
