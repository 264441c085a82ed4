"""Job records of the bridge in SQLite: one row per unit of background work, keyed for idempotency.

A webhook delivery becomes at most one job: :meth:`JobStore.claim` inserts the job under its
idempotency key (``detect:<function>:<job id>:<state change>``, ``warp:<target project>:<task>``,
...) or returns the job already there, so a replayed delivery, a CVAT retry or the same state change
seen twice does the work once. The row records what ``GET /jobs`` shows: state (``queued``,
``running``, ``done``, ``failed``, ``skipped``), progress, error, per-step timings and the result.
A worker that dies leaves its job ``running`` with an old heartbeat; :meth:`JobStore.stale` finds
those for the queue to resume.

Examples:
    >>> import tempfile, pathlib
    >>> store = JobStore(pathlib.Path(tempfile.mkdtemp()) / "jobs.db")
    >>> job, new = store.claim("detect:f:7:t0", "detect", {"job_id": 7})
    >>> again, new_again = store.claim("detect:f:7:t0", "detect", {"job_id": 7})
    >>> (new, new_again, job["id"] == again["id"], job["state"])
    (True, False, True, 'queued')
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    progress INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    job_id INTEGER NOT NULL,
    since REAL NOT NULL
);
"""
FINAL_STATES = ("done", "failed", "skipped")
JSON_COLUMNS = ("params", "result", "timings")


class JobStore:
    """Thread- and process-safe job records in one SQLite file (WAL mode)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
        for key in JSON_COLUMNS:
            out[key] = json.loads(out[key])
        return out

    def claim(self, key: str, kind: str, params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(job, True) when ``key`` is new, or its job had failed, and the job is (again) queued;
        (existing job, False) otherwise."""
        with self._lock, self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (key, kind, params, created) VALUES (?, ?, ?, ?)",
                (key, kind, json.dumps(params), time.time()),
            )
            new = cursor.rowcount == 1
            if not new:  # a failed job is work still to do: a retry or a redelivery queues it again
                again = db.execute(
                    "UPDATE jobs SET state = 'queued', finished = NULL WHERE key = ? AND state = 'failed'",
                    (key,),
                )
                new = again.rowcount == 1
            row = db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        return self._row(row), new

    def release(self, job_id: int, reason: str) -> None:
        """End a job as ``skipped`` and free its key (work that was not due yet, so a later event may
        claim it); the record stays, under the key ``<key>#released-<id>``."""
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE jobs SET key = key || '#released-' || id, state = 'skipped', error = ?, finished = ?"
                " WHERE id = ?",
                (reason, time.time(), job_id),
            )

    def note(self, job_id: int, result: dict[str, Any]) -> None:
        """Record a running job's result so far (what it already changed in CVAT)."""
        with self._lock, self._connect() as db:
            db.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id))

    def active_detection(self, cvat_job_id: int) -> dict[str, Any] | None:
        """The oldest detection job on CVAT job ``cvat_job_id`` that is queued or running, or None."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE kind = 'detect' AND state IN ('queued', 'running')"
                " AND json_extract(params, '$.job_id') = ? ORDER BY id LIMIT 1",
                (int(cvat_job_id),),
            ).fetchone()
        return self._row(row)

    @contextmanager
    def lease(self, name: str, job_id: int, every_s: float = 0.5) -> Iterator[None]:
        """Hold ``name`` for job ``job_id`` while the block runs (one detection per CVAT job at a time,
        across the worker threads and processes that share this file): waits while another running job
        holds it; a lease left by a job that is no longer running (a dead worker) is taken over."""
        while True:
            with self._lock, self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute(
                    "SELECT l.job_id, j.state FROM leases l LEFT JOIN jobs j ON j.id = l.job_id"
                    " WHERE l.name = ?",
                    (name,),
                ).fetchone()
                if row is None or row["job_id"] == job_id or row["state"] != "running":
                    db.execute(
                        "INSERT OR REPLACE INTO leases (name, job_id, since) VALUES (?, ?, ?)",
                        (name, job_id, time.time()),
                    )
                    db.execute("COMMIT")
                    break
                db.execute("COMMIT")
            time.sleep(every_s)
        try:
            yield
        finally:
            with self._lock, self._connect() as db:
                db.execute("DELETE FROM leases WHERE name = ? AND job_id = ?", (name, job_id))

    def get(self, job_id: int) -> dict[str, Any] | None:
        """The job with this id, or None."""
        with self._connect() as db:
            return self._row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def list(self, limit: int = 100, state: str | None = None) -> list[dict[str, Any]]:
        """The newest jobs first, optionally in one state."""
        query, args = "SELECT * FROM jobs", []
        if state:
            query, args = query + " WHERE state = ?", [state]
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [self._row(r) for r in rows]

    def with_key_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """Every job whose key starts with ``prefix``, oldest first."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE key LIKE ? ESCAPE '\\' ORDER BY id", (pattern,)
            ).fetchall()
        return [self._row(r) for r in rows]

    def start(self, job_id: int) -> bool:
        """Mark a queued job running (one more attempt); False when it is not queued (already running
        elsewhere or ended: a duplicate delivery of the queue message does nothing)."""
        now = time.time()
        with self._lock, self._connect() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = COALESCE(started, ?),"
                " heartbeat = ?, error = '' WHERE id = ? AND state = 'queued'",
                (now, now, job_id),
            )
        return cursor.rowcount == 1

    def progress(self, job_id: int, done: int, total: int) -> None:
        """Record progress (frames done of total) and beat the heart."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET progress = ?, total = ?, heartbeat = ? WHERE id = ?",
                (done, total, time.time(), job_id),
            )

    def finish(
        self,
        job_id: int,
        state: str,
        result: dict[str, Any] | None = None,
        error: str = "",
        timings: dict[str, float] | None = None,
    ) -> None:
        """End a job in ``done``, ``failed`` or ``skipped`` with its result, error and timings."""
        if state not in FINAL_STATES:
            raise ValueError(f"a job ends in one of {FINAL_STATES}, not {state!r}")
        with self._lock, self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = ?, result = ?, error = ?, timings = ?, finished = ? WHERE id = ?",
                (state, json.dumps(result or {}), error, json.dumps(timings or {}), time.time(), job_id),
            )

    def requeue(self, job_id: int) -> None:
        """Put an unfinished job back in ``queued`` (before it is enqueued again)."""
        with self._lock, self._connect() as db:
            db.execute("UPDATE jobs SET state = 'queued' WHERE id = ? AND state = 'running'", (job_id,))

    def unfinished(self) -> list[dict[str, Any]]:
        """Jobs queued or running, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
            ).fetchall()
        return [self._row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self._connect() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {r["state"]: r["n"] for r in rows}
