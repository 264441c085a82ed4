"""Helpers shared by the benchmark scripts: median timing and an isolated, offline work folder."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def median_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls, seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def isolated_workdir(prefix: str) -> Path:
    """A temporary folder with its own FiftyOne database and caches, the frameworks set offline."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(work / "db"))
    # FiftyOne attaches to any running mongod of the user: a database name of our own keeps theirs apart
    os.environ.setdefault("FIFTYONE_DATABASE_NAME", f"quadratseg_bench_{work.name}")
    from quadratseg.offline import apply_offline_environment
    from quadratseg.settings import Settings

    apply_offline_environment(Settings(cache_dir=work / "cache", fiftyone_database_dir=work / "db"))
    return work
