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


def peak_rss_mb(fn: Callable[[], object]) -> float:
    """Peak resident memory (MiB) of a forked child process that runs ``fn`` once.

    The child starts as a copy of this process, so the figure includes what is already loaded
    (the model); compare two paths measured the same way in the same run.
    """
    import multiprocessing
    import resource

    def child(queue: multiprocessing.Queue) -> None:
        fn()
        queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    peak = queue.get(timeout=600)
    process.join()
    return float(peak)
