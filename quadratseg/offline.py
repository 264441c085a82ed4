"""The one place that switches the frameworks to offline, local-only behaviour.

Call :func:`apply_offline_environment` before ultralytics, FiftyOne or torch are imported
(every CLI does it through :func:`quadratseg.cli.run`). Nothing in the project downloads
weights or data: models are built from YAML or loaded from local paths.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from quadratseg.settings import Settings

logger = logging.getLogger(__name__)

FRAMEWORKS = ("ultralytics", "fiftyone", "torch", "mmseg", "segment_anything", "simple_lama_inpainting")


def offline_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that keep every framework offline and inside ``settings.cache_dir``."""
    cache = settings.cache_dir.resolve()
    env = {
        # ultralytics: no hub, no pip auto-install, settings file in our cache
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        "YOLO_CONFIG_DIR": str(cache / "ultralytics"),
        # FiftyOne: no usage tracking, accept the bundled mongod 6.0 (see docs/environment.md)
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        # torch hub / Hugging Face: never fetch
        "TORCH_HOME": str(cache / "torch"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    if settings.fiftyone_database_dir is not None:
        env["FIFTYONE_DATABASE_DIR"] = str(settings.fiftyone_database_dir.resolve())
    if settings.fiftyone_database_uri:
        env["FIFTYONE_DATABASE_URI"] = settings.fiftyone_database_uri
    return env


def _install_ultralytics_font(config_dir: Path) -> None:
    """Place a TTF where ultralytics looks for Arial.ttf, so its dataset checks never download it."""
    target = config_dir / "Ultralytics" / "Arial.ttf"
    if target.exists():
        return
    try:
        import matplotlib
    except ImportError:  # matplotlib comes with ultralytics; without it there is nothing to plot
        return
    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def apply_offline_environment(settings: Settings) -> dict[str, str]:
    """Set the offline switches in ``os.environ``; return what was set.

    Warns when a framework was imported before this call, since it may have read its
    configuration already.
    """
    early = [name for name in FRAMEWORKS if name in sys.modules and name != "torch"]
    if early:
        logger.warning("imported before the offline switches were set: %s", ", ".join(early))
    env = offline_environment(settings)
    os.environ.update(env)
    _install_ultralytics_font(Path(env["YOLO_CONFIG_DIR"]))
    return env
