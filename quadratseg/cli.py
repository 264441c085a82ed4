"""Entry-point helper shared by every stage CLI (``python -m <module>.<stage>``).

A stage script is a thin, typed, docstring'd function; :func:`run` loads the settings,
sets the offline switches before any framework import, configures logging once and
hands the function to fire (which turns its docstring into ``--help``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from quadratseg.errors import QuadratsegError
from quadratseg.offline import apply_offline_environment
from quadratseg.settings import Settings, load_settings

logger = logging.getLogger("quadratseg")


def configure_logging(level: str = "INFO") -> None:
    """Configure the root handler once (CLIs only; library code only creates loggers)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level.upper())


def bootstrap() -> Settings:
    """Load settings, set the offline switches and logging; return the settings."""
    settings = load_settings()
    apply_offline_environment(settings)
    configure_logging(settings.log_level)
    return settings


def run(component: Callable[..., Any] | dict[str, Callable[..., Any]], name: str | None = None) -> None:
    """Run ``component`` as a fire CLI; project errors become one clear line and exit code 2."""
    import fire

    bootstrap()
    try:
        fire.Fire(component, name=name)
    except QuadratsegError as exc:  # a batch with failed images (outputs written) exits 3
        if getattr(exc, "summary", None) is not None:
            sys.stdout.write(f"{exc.summary}\n")
        logger.error("%s", exc)
        sys.exit(getattr(exc, "exit_code", 2))
