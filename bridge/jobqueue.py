"""The bridge's persistent work queue: huey (SQLite in ``BRIDGE_STATE_DIR`` by default, embedded, no
server; Redis with ``BRIDGE_REDIS_URL`` for several workers or machines) carrying job ids of
:class:`bridge.store.JobStore`.

The queue message is only a job id; the job's state lives in the store. A restart loses nothing:
:meth:`BridgeQueue.recover` puts back every job that was running when the process stopped (its
cached frames are reused) and every queued job whose message is no longer in the queue; a message
delivered twice runs the job once (:meth:`bridge.store.JobStore.start` only starts a queued job).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bridge.functions import FunctionClient
from bridge.store import JobStore
from bridge.work import Services, run_job

logger = logging.getLogger(__name__)

STALE_AFTER_S = 600.0  # a running job whose heartbeat is older belongs to a dead worker (Redis setups)


def make_huey(settings: Any) -> Any:
    """A huey instance for the settings' backend."""
    if settings.bridge_redis_url:
        from huey import RedisHuey

        return RedisHuey("quadratseg-bridge", url=settings.bridge_redis_url, results=False)
    from huey import SqliteHuey

    state = Path(settings.bridge_state_dir)
    state.mkdir(parents=True, exist_ok=True)
    # results=False: outcomes live in the job store; huey would keep every return value forever
    return SqliteHuey("quadratseg-bridge", filename=str(state / "queue.db"), results=False)


def cvat_connection(settings: Any) -> Callable[[], Any]:
    """A factory of CVAT connections (a context manager yielding :class:`quadratseg.cvat_client.Cvat`)."""

    @contextlib.contextmanager
    def connection() -> Iterator[Any]:
        from quadratseg.cvat_client import Cvat, connect

        with connect(settings) as client:
            yield Cvat(client, settings.cvat_retries)

    return connection


class BridgeQueue:
    """The job store, the huey queue and the task that runs a job, for one process."""

    def __init__(self, settings: Any, functions: FunctionClient | None = None, cvat: Callable | None = None):
        self.settings = settings
        self.store = JobStore(Path(settings.bridge_state_dir) / "jobs.db")
        self.huey = make_huey(settings)
        self.services = Services(
            settings,
            self.store,
            functions or FunctionClient.from_settings(settings),
            cvat or cvat_connection(settings),
        )
        self._task = self.huey.task(name="bridge.run_job")(self._run)

    def _run(self, job_id: int) -> str:
        return run_job(job_id, self.services)

    def enqueue(self, job_id: int) -> None:
        """Queue a stored job."""
        self._task(job_id)

    def pending_job_ids(self) -> set[int]:
        """Job ids whose message waits in the queue."""
        return {int(task.args[0]) for task in self.huey.pending() if task.args}

    def recover(self, all_running_are_dead: bool = True) -> list[int]:
        """Queue again the jobs a stopped process left unfinished (module docstring); their ids.

        With the SQLite queue the process that recovers is the only worker, so every running job is
        dead; with Redis only those whose heartbeat is older than :data:`STALE_AFTER_S`."""
        pending, now, again = self.pending_job_ids(), time.time(), []
        for job in self.store.unfinished():
            if job["state"] == "running":
                if not all_running_are_dead and now - (job["heartbeat"] or 0) < STALE_AFTER_S:
                    continue
                self.store.requeue(job["id"])
            elif job["id"] in pending:
                continue
            self.enqueue(job["id"])
            again.append(job["id"])
        if again:
            logger.info("resumed %d unfinished bridge job(s): %s", len(again), again)
        return again

    def consumer(self, workers: int | None = None) -> Any:
        """A huey consumer with worker threads running the queued jobs."""
        return self.huey.create_consumer(
            workers=workers or self.settings.bridge_workers, worker_type="thread", periodic=False
        )
