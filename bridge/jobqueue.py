"""The bridge's persistent work queue: huey (SQLite in ``BRIDGE_STATE_DIR`` by default, embedded, no
server; Redis with ``BRIDGE_REDIS_URL`` for several worker processes or machines) carrying job ids of
the job store (:func:`bridge.store.open_store`: SQLite, or PostgreSQL with ``BRIDGE_DATABASE_URL``).

The queue message is only a job id; the job's state lives in the store, which is the truth: a message
lost (a worker killed after taking it, Redis restarted before it was written to disk, the queue down
when a delivery came) costs nothing, because :meth:`BridgeQueue.recover` queues again every queued job
whose message is not in the queue and every running job whose lease expired (its worker died), and a
message delivered twice runs the job once (:meth:`bridge.store.JobStore.start` only starts a queued
job). Every worker process runs :meth:`BridgeQueue.recover` at start; then the processes sharing the
store take turns, one :meth:`BridgeQueue.recover` every ``lease_s / 2`` seconds between them
(:meth:`BridgeQueue.start_reaper`).

A delivery is acknowledged once its job is recorded in the store; the queue message is sent just after,
by a dispatcher thread (:meth:`BridgeQueue.enqueue_soon`), so a delivery never waits on the queue.
"""

from __future__ import annotations

import contextlib
import logging
import queue as stdqueue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bridge.functions import FunctionClient
from bridge.store import JobStore, open_store
from bridge.work import Services, run_job

logger = logging.getLogger(__name__)


DISPATCH_BATCH = 500  # most messages sent in one round trip by the dispatcher thread


def make_huey(settings: Any) -> Any:
    """A huey instance for the settings' backend."""
    if settings.bridge_redis_url:
        from huey import RedisHuey
        from redis import ConnectionPool

        pool = ConnectionPool.from_url(
            settings.bridge_redis_url, health_check_interval=5, socket_timeout=10, socket_connect_timeout=5
        )
        # read_timeout: a worker waits at most 1 s on the queue, so it notices a Redis restart quickly
        return RedisHuey("quadratseg-bridge", connection_pool=pool, results=False, read_timeout=1)
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

    def __init__(
        self,
        settings: Any,
        functions: FunctionClient | None = None,
        cvat: Callable | None = None,
        store: JobStore | None = None,
        options: dict[str, Any] | None = None,
    ):
        """``options``: ``database_url``, ``lease_s``, ``upload_batch`` overriding the settings'
        ``BRIDGE_DATABASE_URL``, ``BRIDGE_LEASE_S`` and ``BRIDGE_UPLOAD_BATCH``."""
        self.settings = settings
        options = options or {}
        self.store = store or open_store(settings, options.get("database_url"), options.get("lease_s"))
        self.huey = make_huey(settings)
        self.services = Services(
            settings,
            self.store,
            functions or FunctionClient.from_settings(settings),
            cvat or cvat_connection(settings),
            upload_batch=options.get("upload_batch"),
        )
        self._task = self.huey.task(name="bridge.run_job")(self._run)
        self._outbox: stdqueue.Queue[tuple[int, ...]] = stdqueue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._dispatcher_lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def _run(self, job_id: int) -> str:
        return run_job(job_id, self.services, enqueue=self.enqueue)

    def enqueue(self, job_id: int) -> None:
        """Queue a stored job (sends the message now)."""
        self.enqueue_many([job_id])

    def enqueue_many(self, job_ids: list[int]) -> None:
        """Queue stored jobs, in this order (sends the messages now). On Redis the messages go in one
        ``LPUSH`` (one round trip whatever their number, as huey's consumer pops them one by one from
        the other end); on SQLite one huey ``enqueue`` each."""
        from huey.storage import RedisStorage

        tasks = [self._task.s(job_id) for job_id in job_ids]
        storage = self.huey.storage
        if isinstance(storage, RedisStorage) and len(tasks) > 1:
            storage.conn.lpush(storage.queue_key, *[self.huey.serialize_task(task) for task in tasks])
            return
        for task in tasks:
            self.huey.enqueue(task)

    def enqueue_soon(self, *job_ids: int) -> None:
        """Queue stored jobs, in this order, from the dispatcher thread (the caller does not wait; one
        hand-over for them all); a message that cannot be sent is left to :meth:`recover` (the job is in
        the store)."""
        with self._dispatcher_lock:
            if self._dispatcher is None or not self._dispatcher.is_alive():
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="bridge-dispatch", daemon=True
                )
                self._dispatcher.start()
        self._outbox.put(job_ids)

    def _dispatch(self) -> None:
        while True:
            job_ids = list(self._outbox.get())
            while len(job_ids) < DISPATCH_BATCH:  # what a burst of deliveries left waiting: one message batch
                try:
                    job_ids.extend(self._outbox.get_nowait())
                except stdqueue.Empty:
                    break
            try:
                self.enqueue_many(job_ids)
            except Exception as exc:  # the queue is down: the reaper queues them once it is back
                logger.warning("bridge jobs %s not queued yet (%s); the reaper will", job_ids, exc)

    def pending_job_ids(self) -> set[int]:
        """Job ids whose message waits in the queue."""
        return {int(task.args[0]) for task in self.huey.pending() if task.args}

    def recover(self, all_running_are_dead: bool = False) -> list[int]:
        """Queue again what no worker is doing (module docstring); the ids queued.

        Running jobs whose lease expired are taken over; with ``all_running_are_dead`` (the SQLite
        queue, whose one process is the only worker) every running job is. Queued jobs whose message
        is not in the queue get one."""
        again = set(self.store.take_over_expired())
        unfinished = self.store.unfinished_states()
        if all_running_are_dead:
            for job_id, state in unfinished.items():
                if state == "running":
                    self.store.requeue(job_id)
                    again.add(job_id)
        queued = {job_id for job_id, state in unfinished.items() if state == "queued"} - again
        if queued:  # the queue's messages are read only when some job waits for one
            again |= queued - self.pending_job_ids()
        if again:
            self.enqueue_many(sorted(again))
        if again:
            logger.info("queued again %d bridge job(s) no worker was doing: %s", len(again), sorted(again))
        return sorted(again)

    def start_reaper(self, every_s: float | None = None) -> threading.Thread:
        """Run :meth:`recover` every ``every_s`` seconds (``lease_s / 2``) in a thread until
        :meth:`stop`, when this process has the turn: the reapers of every process sharing the
        store take one turn per period between them (:meth:`bridge.store.JobStore.take_turn`), so
        the queue and the unfinished jobs are read once per period, not once per process."""
        every = every_s or max(self.store.lease_s / 2.0, 0.2)

        def reap() -> None:
            while not self._stop.wait(every):
                try:
                    if self.store.take_turn("reaper", 0.9 * every):  # 0.9: a lone reaper's every turn
                        self.recover()
                except Exception as exc:  # the store or the queue is down for now: next turn
                    logger.warning("recovering unfinished bridge jobs failed (%s); retrying", exc)

        self._reaper = threading.Thread(target=reap, name="bridge-reaper", daemon=True)
        self._reaper.start()
        return self._reaper

    def stop(self) -> None:
        """Stop the reaper."""
        self._stop.set()

    def consumer(self, workers: int | None = None) -> Any:
        """A huey consumer with worker threads running the queued jobs."""
        return self.huey.create_consumer(
            workers=workers or self.settings.bridge_workers, worker_type="thread", periodic=False
        )
