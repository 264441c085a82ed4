"""One typed settings object, loaded from ``.env`` with python-dotenv.

Precedence: process environment > ``.env`` file > defaults. The file is ``QUADRATSEG_ENV_FILE``
when set, else the first ``.env`` found from the current folder upwards (:func:`find_env_file`).
Library code never reads the environment: CLIs load the settings once (``quadratseg.cli``) and
pass the values down as arguments.

Examples:
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

# The largest request body of the project's Nuclio functions (their HTTP trigger's maxRequestBodySize,
# quadratseg/nuclio.py) and the bridge's default for it: a 1920 px frame in base64 fits with room.
FUNCTION_BODY_LIMIT = 128 * 1024 * 1024

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
        "QUADRATSEG_DATA_DIR",
        "Default root of pulled media and of the layouts prepare_data writes when OUT_DIR is not given.",
        Path("data"),
    )
    media_dir: Path | None = _env(
        "QUADRATSEG_MEDIA_DIR",
        "Where pulled CVAT images are stored for FiftyOne; empty: QUADRATSEG_DATA_DIR/media.",
        None,
    )
    outputs_dir: Path = _env(
        "QUADRATSEG_OUTPUTS_DIR",
        "Default root of runs, evaluations, predictions and zips when a command is given no output path.",
        Path("outputs"),
    )
    models_dir: Path = _env(
        "QUADRATSEG_MODELS_DIR",
        "Relative weight paths not found from the current folder are looked up here (never downloaded).",
        Path("models"),
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

    # FiftyOne
    fiftyone_database_dir: Path | None = _env(
        "FIFTYONE_DATABASE_DIR", "Folder of FiftyOne's bundled MongoDB; empty keeps FiftyOne's default."
    )
    fiftyone_database_uri: str = _env(
        "FIFTYONE_DATABASE_URI", "Your own MongoDB (mongodb://...); empty uses the bundled one.", ""
    )

    # Weights (local files only)
    lama_model: Path | None = _env(
        "LAMA_MODEL",
        "LaMa TorchScript file for grid removal; empty: big-lama.pt in QUADRATSEG_MODELS_DIR if present.",
    )
    allow_opencv_inpaint: bool = _env(
        "QUADRATSEG_ALLOW_OPENCV_INPAINT",
        "Allow the OpenCV inpainting backend when no LaMa weights are present (logged per output).",
        False,
    )
    sam_checkpoint: Path | None = _env("SAM_CHECKPOINT", "SAM ViT-B or CoralSCoP checkpoint file.")
    dinov2_checkpoint: Path | None = _env("DINOV2_CHECKPOINT", "Official DINOv2 backbone checkpoint file.")
    shared_data_dir: Path | None = _env(
        "QUADRATSEG_SHARED_DATA",
        "Real third-party files for the demo's real-photo and CVAT stand-in stages; "
        "empty: ../shared/data beside the checkout.",
    )
    # Bridge (CVAT webhooks)
    cvat_webhook_secret: str = _env(
        "CVAT_WEBHOOK_SECRET",
        "Secret of the CVAT webhooks: deliveries without a valid X-Signature-256 are refused; the bridge "
        "needs it (or --insecure).",
        "",
    )
    bridge_state_dir: Path = _env(
        "BRIDGE_STATE_DIR",
        "The bridge's queue, job records and frame cache.",
        Path("outputs/bridge"),
    )
    bridge_redis_url: str = _env(
        "BRIDGE_REDIS_URL",
        "redis://host:port/db for a queue shared by several workers; empty: SQLite in BRIDGE_STATE_DIR.",
        "",
    )
    bridge_database_url: str = _env(
        "BRIDGE_DATABASE_URL",
        "postgresql://user:password@host:port/db for the job store shared by several workers; empty: "
        "SQLite in BRIDGE_STATE_DIR.",
        "",
    )
    bridge_lease_s: float = _env(
        "BRIDGE_LEASE_S",
        "Seconds a running job's lease lasts; its worker renews it every third of that, and another worker "
        "takes the job over once it lapses.",
        15.0,
    )
    bridge_job_retries: int = _env(
        "BRIDGE_JOB_RETRIES",
        "Times a job stopped by an outage (CVAT or a function unreachable after their own retries) is "
        "run again on its own, after BRIDGE_JOB_RETRY_S, doubling each time; 0: it fails at once.",
        5,
    )
    bridge_job_retry_s: float = _env(
        "BRIDGE_JOB_RETRY_S",
        "Seconds before the first automatic retry of a job stopped by an outage (then 2x, 4x, ...).",
        30.0,
    )
    bridge_upload_batch: int = _env(
        "BRIDGE_UPLOAD_BATCH",
        "Frames per annotation upload to CVAT.",
        8,
    )
    bridge_workers: int = _env(
        "BRIDGE_WORKERS",
        "Background worker threads of the bridge.",
        2,
    )
    bridge_token: str = _env(
        "BRIDGE_TOKEN",
        "Bearer token of the bridge's /jobs and /detect endpoints; empty: they answer 401.",
        "",
    )
    bridge_max_body: int = _env(
        "BRIDGE_MAX_BODY",
        "Largest webhook delivery the bridge reads, bytes; a bigger one gets 413.",
        1048576,
    )
    bridge_functions: str = _env(
        "BRIDGE_FUNCTIONS",
        "The functions webhooks may name, name=url pairs separated by commas; other names must be Nuclio "
        "names (a-z, 0-9, inner dashes, a letter at least) and go to BRIDGE_FUNCTION_URL.",
        "",
    )
    bridge_function_url: str = _env(
        "BRIDGE_FUNCTION_URL",
        "Address of a function by name ({name} is replaced), Nuclio's container convention by default; "
        "its host needs a fixed part beside {name}.",
        "http://nuclio-nuclio-{name}:8080",
    )
    bridge_function_timeout_s: float = _env(
        "BRIDGE_FUNCTION_TIMEOUT_S",
        "Seconds one function call may take before it is retried.",
        900.0,
    )
    bridge_function_retries: int = _env(
        "BRIDGE_FUNCTION_RETRIES",
        "Retries with back-off of a function call answered 408, 429 or 5xx, or not answered.",
        4,
    )
    bridge_function_body_limit: int = _env(
        "BRIDGE_FUNCTION_BODY_LIMIT",
        "Largest request body a function accepts, bytes (Nuclio's maxRequestBodySize, as the project's "
        "functions declare it); bigger frames are re-encoded or downscaled.",
        FUNCTION_BODY_LIMIT,
    )
    bridge_function_in_flight: int = _env(
        "BRIDGE_FUNCTION_IN_FLIGHT",
        "Calls in flight per function at most (1 suits a GPU function with one worker).",
        1,
    )
    bridge_create_settle_s: float = _env(
        "BRIDGE_CREATE_SETTLE_S",
        "Seconds the bridge keeps reading a job whose shape upload went unanswered before it sends the "
        "shapes again (longer than a proxy's time-out).",
        120.0,
    )
    bridge_inpaint: str = _env(
        "BRIDGE_INPAINT",
        "Grid removal: a function name (pth-lama) or local:BACKEND to run lama, "
        "opencv-telea or opencv-ns in process.",
        "pth-lama",
    )
    bridge_warp_size: int = _env(
        "BRIDGE_WARP_SIZE",
        "Width in px of the warped quadrats the bridge uploads.",
        1920,
    )
    bridge_quadrat_aspect: float = _env(
        "BRIDGE_QUADRAT_ASPECT",
        "The quadrats' width / height (1: square; 2: a 1 x 0.5 m quadrat): the warped quadrats the "
        "bridge uploads are BRIDGE_WARP_SIZE wide and this much less tall.",
        1.0,
    )

    def __post_init__(self) -> None:
        if self.media_dir is None:  # follows the data folder unless set on its own
            object.__setattr__(self, "media_dir", Path(self.data_dir) / "media")

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Map environment variable name -> field name."""
        return {f.metadata["env"]: f.name for f in fields(cls)}

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (settings are immutable).

        A media folder that followed the data folder keeps following it.
        """
        followed = self.media_dir == Path(self.data_dir) / "media"
        if "data_dir" in changes and "media_dir" not in changes and followed:
            changes["media_dir"] = None
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


ENV_FILE_VARIABLE = "QUADRATSEG_ENV_FILE"
FIND = "find"  # load_settings(env_file=FIND): QUADRATSEG_ENV_FILE, else the nearest .env upwards


def find_env_file(environ: Mapping[str, str] | None = None, start: str | Path | None = None) -> Path | None:
    """The settings file: ``QUADRATSEG_ENV_FILE`` if set, else the first ``.env`` from ``start``
    (default: the current folder) upwards; ``None`` when there is none.

    Raises:
        SettingsError: ``QUADRATSEG_ENV_FILE`` names a file that does not exist.
    """
    environ = os.environ if environ is None else environ
    named = environ.get(ENV_FILE_VARIABLE, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SettingsError(f"{ENV_FILE_VARIABLE}={named!r}: no such file")
        return path
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".env").is_file():
            return candidate / ".env"
    return None


def load_settings(env_file: str | Path | None = FIND, environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``env_file`` (if it exists) and ``environ`` (default: ``os.environ``).

    Args:
        env_file: a dotenv file; a missing file is fine (defaults apply), ``None`` skips it,
            ``"find"`` (the default) uses :func:`find_env_file`.
        environ: the process environment; overrides the file.

    Raises:
        SettingsError: a value has the wrong type; the message names the variable and its source.
    """
    from dotenv import dotenv_values

    environ = os.environ if environ is None else environ
    if isinstance(env_file, str) and env_file == FIND:
        env_file = find_env_file(environ)
    names = Settings.env_names()
    file_values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        file_values = {k: v or "" for k, v in dotenv_values(env_file).items()}
        for key in file_values:
            if key not in names and key != ENV_FILE_VARIABLE:
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
