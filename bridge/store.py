"""Job records of the bridge: one row per unit of background work, keyed for idempotency, in SQLite
(embedded, the default) or PostgreSQL (``BRIDGE_DATABASE_URL``, for several worker processes or
machines); one interface, two backends (:func:`open_store`).

A webhook delivery becomes at most one job: :meth:`JobStore.claim` inserts the job under its
idempotency key (``detect:<function>:<job id>:<state change>``, ``warp:<target project>:<task>``,
...) or returns the job already there, so a replayed delivery, a CVAT retry or the same state change
seen twice does the work once. The row records what ``GET /jobs`` shows: state (``queued``,
``running``, ``done``, ``failed``, ``skipped``), progress, error, per-step timings and the result.

Leases: a worker starts a job under an owner token (:meth:`JobStore.start`) with a lease of
``lease_s`` seconds on the database's clock, which it renews while the job runs
(:meth:`JobStore.renew`, :class:`Heartbeat`). A running job whose lease has expired belongs to a dead
worker: :meth:`JobStore.take_over_expired` queues it again for another worker. A live job is never
started twice: :meth:`JobStore.start` only starts a queued job, and only an expired lease is taken over.

A delivery that arrives while an earlier job with the same key is still queued or running (a task's
second job completed while the first completion is still deciding) marks that job ``again``
(:meth:`JobStore.claim` with ``again_if_busy``): when the job then ends as not due,
:meth:`JobStore.release_or_again` queues it once more instead of dropping the later event.

Examples:
    >>> import tempfile, pathlib
    >>> store = JobStore(pathlib.Path(tempfile.mkdtemp()) / "jobs.db")
    >>> job, new = store.claim("detect:f:7:t0", "detect", {"job_id": 7})
    >>> again, new_again = store.claim("detect:f:7:t0", "detect", {"job_id": 7})
    >>> (new, new_again, job["id"] == again["id"], job["state"])
    (True, False, True, 'queued')
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FINAL_STATES = ("done", "failed", "skipped")
JSON_COLUMNS = ("params", "result", "timings")
LEASE_S = 15.0  # a running job's lease; renewed every LEASE_S / 3 by its worker
CLAIMS_PER_STATEMENT = 500  # keys per insert of a batch (5 parameters each)
RECONNECT_S = 120.0  # how long a PostgreSQL call waits for the server to come back (a restart)

# column -> type; the same names in both backends ({REAL}, {ID} filled per backend)
COLUMNS = {
    "key": "TEXT UNIQUE NOT NULL",
    "kind": "TEXT NOT NULL",
    "params": "TEXT NOT NULL",
    "state": "TEXT NOT NULL DEFAULT 'queued'",
    "progress": "INTEGER NOT NULL DEFAULT 0",
    "total": "INTEGER NOT NULL DEFAULT 0",
    "error": "TEXT NOT NULL DEFAULT ''",
    "result": "TEXT NOT NULL DEFAULT '{}'",
    "timings": "TEXT NOT NULL DEFAULT '{}'",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "created": "{REAL} NOT NULL",
    "started": "{REAL}",
    "finished": "{REAL}",
    "heartbeat": "{REAL}",
    "owner": "TEXT NOT NULL DEFAULT ''",
    "lease_until": "{REAL}",
    "again": "INTEGER NOT NULL DEFAULT 0",
    "token": "TEXT NOT NULL DEFAULT ''",
    "not_before": "{REAL}",  # a job waiting out an outage (queued) does not start before then
    "outages": "INTEGER NOT NULL DEFAULT 0",  # automatic retries after outages since it was claimed
}
# columns a jobs.db of an older bridge lacks
ADDED_LATER = ("owner", "lease_until", "again", "token", "not_before", "outages")


def _schema(real: str, id_column: str, job_id: str) -> list[str]:
    columns = ",\n".join(f"{name} {kind.replace('{REAL}', real)}" for name, kind in COLUMNS.items())
    return [
        f"CREATE TABLE IF NOT EXISTS jobs (\n{id_column},\n{columns}\n)",
        f"CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, job_id {job_id} NOT NULL,"
        f" since {real} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state)",
    ]


class JobStore:
    """Thread- and process-safe job records; SQLite in one file (WAL mode) unless a subclass says
    otherwise (:class:`PostgresJobStore`). SQL is written once with ``?`` placeholders."""

    backend = "sqlite"
    NOW = "((julianday('now') - 2440587.5) * 86400.0)"  # the database's clock, epoch seconds
    JOB_OF_PARAMS = "CAST(json_extract(params, '$.job_id') AS INTEGER)"
    # rows a deciding transaction reads are locked until it ends (SQLite's writers are serialised by
    # BEGIN IMMEDIATE already; PostgreSQL's READ COMMITTED needs the lock)
    FOR_UPDATE = ""

    def __init__(self, path: str | Path, lease_s: float = LEASE_S):
        self.path = Path(path)
        self.lease_s = float(lease_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            for statement in _schema("REAL", "id INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"):
                db.execute(statement)
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for name in ADDED_LATER:
                if name not in have:
                    db.execute(
                        f"ALTER TABLE jobs ADD COLUMN {name} {COLUMNS[name].replace('{REAL}', 'REAL')}"
                    )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def _do(
        self, work: Callable[[Callable[..., Any]], Any], write: bool = True, pipelined: bool = False
    ) -> Any:
        """Run ``work(q)`` in one transaction; ``q(sql, args)`` executes a statement and returns its
        cursor (rows as dicts through :meth:`_row`). ``pipelined``: ``work`` reads only rows, never a
        ``rowcount``, so a server store may send its statements without waiting for each answer."""
        with self._lock if write else _nothing(), self._connect() as db:
            if write:
                db.execute("BEGIN IMMEDIATE")
            try:
                out = work(lambda sql, args=(): db.execute(sql, tuple(args)))
            except BaseException:
                if write:
                    db.execute("ROLLBACK")
                raise
            if write:
                db.execute("COMMIT")
            return out

    @staticmethod
    def _row(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        out = dict(row)
        for key in JSON_COLUMNS:
            out[key] = json.loads(out[key])
        return out

    # ------------------------------------------------------------------ claims

    def claim(
        self, key: str, kind: str, params: dict[str, Any], again_if_busy: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """(job, True) when ``key`` is new, or its job had failed, and the job is (again) queued;
        (existing job, False) otherwise. With ``again_if_busy`` an existing job still queued or
        running is marked ``again`` (module docstring). Safe to retry: a claim that committed but
        whose answer was lost is still reported new (its token is on the row)."""
        return self.claim_many([(key, kind, params, again_if_busy)])[0]

    def claim_many(
        self, items: list[tuple[str, str, dict[str, Any], bool]]
    ) -> list[tuple[dict[str, Any], bool]]:
        """:meth:`claim` of several deliveries in one transaction (one disk flush for all), answered as
        the same claims made one by one in this order. The new keys are inserted by one statement and
        every key read back by another, whatever the batch's size (a round trip per statement is what
        a PostgreSQL batch costs); keys go in sorted, so two batches sharing keys never deadlock."""
        tokens = [uuid.uuid4().hex for _ in items]
        now = time.time()
        first: dict[str, int] = {}  # key -> its first item in the batch, the one that may insert it
        for index, (key, *_) in enumerate(items):
            first.setdefault(key, index)

        def work(q: Callable[..., Any]) -> list[tuple[dict[str, Any], bool]]:
            rows: dict[str, Any] = {}
            keys = sorted(first)
            for start in range(0, len(keys), CLAIMS_PER_STATEMENT):
                chunk = keys[start : start + CLAIMS_PER_STATEMENT]
                values = [
                    (key, items[first[key]][1], json.dumps(items[first[key]][2]), now, tokens[first[key]])
                    for key in chunk
                ]
                q(
                    "INSERT INTO jobs (key, kind, params, created, token) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
                    + " ON CONFLICT (key) DO NOTHING",
                    [value for row in values for value in row],
                )
                found = q(
                    f"SELECT * FROM jobs WHERE key IN ({', '.join(['?'] * len(chunk))}) ORDER BY key"
                    + self.FOR_UPDATE,
                    chunk,
                )
                rows.update((row["key"], row) for row in found.fetchall())
            out = []
            for (key, kind, params, again_if_busy), token in zip(items, tokens, strict=True):
                row = rows.get(key)
                for _ in range(10):  # released by another transaction meanwhile: claimed anew
                    if row is not None:
                        break
                    q(
                        "INSERT INTO jobs (key, kind, params, created, token) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (key) DO NOTHING",
                        (key, kind, json.dumps(params), now, token),
                    )
                    row = q("SELECT * FROM jobs WHERE key = ?" + self.FOR_UPDATE, (key,)).fetchone()
                job = dict(row)
                new = job["token"] == token
                changed = False
                if not new and job["state"] == "failed":  # work still to do: a retry queues it again
                    q(
                        "UPDATE jobs SET state = 'queued', finished = NULL, token = ?, outages = 0"
                        " WHERE id = ?",
                        (token, job["id"]),
                    )
                    new = changed = True
                elif not new and job["state"] == "queued" and job["not_before"] is not None:
                    # waiting out an outage: the same event sent again (the outage is over) runs it now
                    q(
                        "UPDATE jobs SET not_before = NULL, token = ? WHERE id = ? AND state = 'queued'",
                        (token, job["id"]),
                    )
                    new = changed = True
                elif not new and again_if_busy and job["state"] in ("queued", "running") and not job["again"]:
                    q(
                        "UPDATE jobs SET again = 1 WHERE id = ? AND state IN ('queued', 'running')",
                        (job["id"],),
                    )
                    changed = True
                if changed:  # read back: a later delivery of this key in the batch sees the change
                    row = rows[key] = q("SELECT * FROM jobs WHERE id = ?", (job["id"],)).fetchone()
                out.append((self._row(row), new))
            return out

        return self._do(work, pipelined=True)

    def release(self, job_id: int, reason: str) -> None:
        """End a job as ``skipped`` and free its key (work that was not due yet, so a later event may
        claim it); the record stays, under the key ``<key>#released-<id>``."""
        self._do(
            lambda q: q(
                "UPDATE jobs SET key = key || '#released-' || CAST(id AS TEXT), state = 'skipped',"
                " error = ?, finished = ?, owner = '', lease_until = NULL"
                " WHERE id = ? AND state IN ('queued', 'running')",
                (reason, time.time(), job_id),
            )
        )

    def release_or_again(self, job_id: int, reason: str, owner: str | None = None) -> bool:
        """A job found not due: queued once more (True) when a delivery marked it ``again`` while it
        ran, else released (:meth:`release`, False); with ``owner``, only while it is that worker's."""

        def work(q: Callable[..., Any]) -> bool:
            # the row stays locked until the decision ends: a delivery's claim of its key waits for
            # it, then sees the job queued again or released (and claims the key anew)
            row = q("SELECT owner, state FROM jobs WHERE id = ?" + self.FOR_UPDATE, (job_id,)).fetchone()
            if owner is not None and not (row and row["owner"] == owner and row["state"] == "running"):
                return False  # taken over: its new owner decides
            again = q(
                "UPDATE jobs SET state = 'queued', again = 0, owner = '', lease_until = NULL"
                " WHERE id = ? AND again = 1 AND state IN ('queued', 'running')",
                (job_id,),
            ).rowcount
            if again:
                return True
            q(
                "UPDATE jobs SET key = key || '#released-' || CAST(id AS TEXT), state = 'skipped',"
                " error = ?, finished = ?, owner = '', lease_until = NULL"
                " WHERE id = ? AND state IN ('queued', 'running')",
                (reason, time.time(), job_id),
            )
            return False

        return self._do(work)

    def note(self, job_id: int, result: dict[str, Any]) -> None:
        """Record a running job's result so far (what it already changed in CVAT)."""
        self._do(lambda q: q("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result), job_id)))

    def active_detection(self, cvat_job_id: int) -> dict[str, Any] | None:
        """The oldest detection job on CVAT job ``cvat_job_id`` that is queued or running, or None."""
        return self._do(
            lambda q: self._row(
                q(
                    "SELECT * FROM jobs WHERE kind = 'detect' AND state IN ('queued', 'running')"
                    f" AND {self.JOB_OF_PARAMS} = ? ORDER BY id LIMIT 1",
                    (int(cvat_job_id),),
                ).fetchone()
            ),
            write=False,
        )

    # ------------------------------------------------------------------ named leases

    def try_lease(self, name: str, job_id: int) -> bool:
        """Take ``name`` for job ``job_id`` unless a live job holds it (running, its lease not expired)."""
        return self._take_lease(name, job_id) is not None

    def _take_lease(self, name: str, job_id: int) -> float | None:
        """:meth:`try_lease`, answering the lease's ``since`` (which names this taking of it), or None."""
        sql = (
            f"INSERT INTO leases (name, job_id, since) VALUES (?, ?, {self.NOW})"
            " ON CONFLICT (name) DO UPDATE SET job_id = excluded.job_id, since = excluded.since"
            " WHERE leases.job_id = excluded.job_id OR NOT EXISTS (SELECT 1 FROM jobs j WHERE"
            f" j.id = leases.job_id AND j.state = 'running' AND j.lease_until >= {self.NOW})"
            " RETURNING since"
        )
        row = self._do(lambda q: q(sql, (name, job_id)).fetchone())
        return None if row is None else float(row["since"])

    def take_turn(self, name: str, every_s: float) -> bool:
        """True for one caller per ``every_s`` seconds across every process sharing this store (the
        database's clock): the turn ``name`` is this caller's when nobody took it within the last
        ``every_s`` seconds. Recorded as a row ``turn:<name>`` of the named leases."""
        sql = (
            f"INSERT INTO leases (name, job_id, since) VALUES (?, 0, {self.NOW})"
            " ON CONFLICT (name) DO UPDATE SET since = excluded.since"
            " WHERE leases.since <= excluded.since - ?"
        )
        return bool(self._do(lambda q: q(sql, (f"turn:{name}", float(every_s))).rowcount))

    @contextmanager
    def lease(self, name: str, job_id: int, every_s: float = 0.5) -> Iterator[None]:
        """Hold ``name`` for job ``job_id`` while the block runs (one detection per CVAT job at a time,
        across the worker threads, processes and machines that share this store): waits while another
        live job holds it; a lease left by a job that is no longer running, or whose worker's lease
        expired (a dead worker), is taken over. Leaving frees only this taking of it: after a
        takeover the job's new owner holds it under the same job id, and the old worker's end must
        not free it."""
        while (since := self._take_lease(name, job_id)) is None:
            time.sleep(every_s)
        try:
            yield
        finally:  # this taking of the lease only: the job's new owner (a takeover) may hold it now
            self._do(
                lambda q: q(
                    "DELETE FROM leases WHERE name = ? AND job_id = ? AND since = ?", (name, job_id, since)
                )
            )

    # ------------------------------------------------------------------ reading

    def get(self, job_id: int) -> dict[str, Any] | None:
        """The job with this id, or None."""
        return self._do(
            lambda q: self._row(q("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()), write=False
        )

    def list(self, limit: int = 100, state: str | None = None) -> list[dict[str, Any]]:
        """The newest jobs first, optionally in one state."""
        query, args = "SELECT * FROM jobs", []
        if state:
            query, args = query + " WHERE state = ?", [state]
        return self._do(
            lambda q: [
                self._row(r) for r in q(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
            ],
            write=False,
        )

    def detections_on(self, cvat_job_id: int) -> list[dict[str, Any]]:
        """Every detection job (any function, any state) on CVAT job ``cvat_job_id``, oldest first:
        selected by the database, so a detection reads its own CVAT job's rows, not every detection
        the store ever held."""
        return self._do(
            lambda q: [
                self._row(r)
                for r in q(
                    f"SELECT * FROM jobs WHERE kind = 'detect' AND {self.JOB_OF_PARAMS} = ? ORDER BY id",
                    (int(cvat_job_id),),
                ).fetchall()
            ],
            write=False,
        )

    def with_key_prefix(self, prefix: str) -> list[dict[str, Any]]:
        """Every job whose key starts with ``prefix``, oldest first."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._do(
            lambda q: [
                self._row(r)
                for r in q(
                    "SELECT * FROM jobs WHERE key LIKE ? ESCAPE '\\' ORDER BY id", (pattern,)
                ).fetchall()
            ],
            write=False,
        )

    def unfinished_states(self) -> dict[int, str]:
        """Job id -> state of the jobs queued or running (their ids and states alone); a queued job
        waiting out an outage (:meth:`retry_later`) is ``waiting`` until it is due."""
        rows = self._do(
            lambda q: q(
                "SELECT id, CASE WHEN state = 'queued' AND not_before IS NOT NULL"
                f" AND not_before > {self.NOW} THEN 'waiting' ELSE state END AS state"
                " FROM jobs WHERE state IN ('queued', 'running')"
            ).fetchall(),
            write=False,
        )
        return {int(row["id"]): row["state"] for row in rows}

    def unfinished(self) -> list[dict[str, Any]]:
        """Jobs queued or running, oldest first."""
        return self._do(
            lambda q: [
                self._row(r)
                for r in q("SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY id").fetchall()
            ],
            write=False,
        )

    def warm(self) -> None:
        """Open the calling thread's connection and run one read: the first delivery after a start is
        then not the one that waits for the connection and the first statements' preparation."""
        self._do(lambda q: q("SELECT id FROM jobs WHERE key = ?", ("",)).fetchall(), write=False)

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        rows = self._do(
            lambda q: q("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall(), write=False
        )
        return {r["state"]: int(r["n"]) for r in rows}

    # ------------------------------------------------------------------ running

    def start(self, job_id: int, owner: str = "") -> bool:
        """Mark a queued job running under ``owner`` (one more attempt) with a lease of ``lease_s``;
        False when it is not queued (running elsewhere or ended: a duplicate delivery of the queue
        message does nothing) or not due yet (waiting out an outage, :meth:`retry_later`). Safe to
        retry with the same owner."""
        owner = owner or uuid.uuid4().hex
        now = time.time()

        def work(q: Callable[..., Any]) -> bool:
            started = q(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started = COALESCE(started, ?),"
                f" heartbeat = {self.NOW}, lease_until = {self.NOW} + ?, owner = ?, error = '',"
                " not_before = NULL"
                f" WHERE id = ? AND state = 'queued' AND (not_before IS NULL OR not_before <= {self.NOW})",
                (now, self.lease_s, owner, job_id),
            ).rowcount
            mine = "SELECT 1 FROM jobs WHERE id = ? AND state = 'running' AND owner = ?"
            return bool(started or q(mine, (job_id, owner)).fetchone())  # a retry after a lost answer

        return self._do(work)

    def renew(self, job_id: int, owner: str) -> bool:
        """Extend a running job's lease by ``lease_s`` (its worker is alive); False when the job is no
        longer this owner's (taken over after an expired lease, or ended)."""
        return bool(
            self._do(
                lambda q: (
                    q(
                        f"UPDATE jobs SET heartbeat = {self.NOW}, lease_until = {self.NOW} + ?"
                        " WHERE id = ? AND owner = ? AND state = 'running'",
                        (self.lease_s, job_id, owner),
                    ).rowcount
                )
            )
        )

    def take_over_expired(self) -> list[int]:
        """Queue again every running job whose lease has expired (its worker died); their ids."""

        def work(q: Callable[..., Any]) -> list[int]:
            rows = q(
                "SELECT id FROM jobs WHERE state = 'running'"
                f" AND (lease_until IS NULL OR lease_until < {self.NOW})"
            ).fetchall()
            ids = []
            for row in rows:
                if q(
                    "UPDATE jobs SET state = 'queued', owner = '', lease_until = NULL"
                    " WHERE id = ? AND state = 'running'"
                    f" AND (lease_until IS NULL OR lease_until < {self.NOW})",
                    (row["id"],),
                ).rowcount:
                    ids.append(int(row["id"]))
            return ids

        return self._do(work)

    def progress(self, job_id: int, done: int, total: int) -> None:
        """Record progress (frames done of total)."""
        self._do(lambda q: q("UPDATE jobs SET progress = ?, total = ? WHERE id = ?", (done, total, job_id)))

    def finish(
        self,
        job_id: int,
        state: str,
        result: dict[str, Any] | None = None,
        error: str = "",
        timings: dict[str, float] | None = None,
        owner: str | None = None,
    ) -> bool:
        """End a job in ``done``, ``failed`` or ``skipped`` with its result, error and timings; with
        ``owner``, only while the job is still that worker's (False otherwise: it was taken over)."""
        if state not in FINAL_STATES:
            raise ValueError(f"a job ends in one of {FINAL_STATES}, not {state!r}")
        mine = "" if owner is None else " AND owner = ? AND state = 'running'"
        args = (state, json.dumps(result or {}), error, json.dumps(timings or {}), time.time(), job_id)
        sql = (
            "UPDATE jobs SET state = ?, result = ?, error = ?, timings = ?, finished = ?, again = 0,"
            f" lease_until = NULL WHERE id = ?{mine}"
        )
        return bool(self._do(lambda q: q(sql, args if owner is None else (*args, owner)).rowcount))

    def retry_later(
        self, job_id: int, owner: str, result: dict[str, Any], error: str, delay_s: float
    ) -> bool:
        """Put a running job of ``owner`` that met an outage back in ``queued``, not due for
        ``delay_s`` seconds (the database's clock), with its result so far and the error that stopped
        it, one more outage counted (``outages``; a claim of the job after it failed starts the count
        again); False when the job is no longer that worker's (taken over: its new owner decides).
        An ``again`` mark is spent: the job runs again anyway."""
        return bool(
            self._do(
                lambda q: (
                    q(
                        "UPDATE jobs SET state = 'queued', owner = '', lease_until = NULL, result = ?,"
                        f" error = ?, not_before = {self.NOW} + ?, outages = outages + 1, again = 0"
                        " WHERE id = ? AND owner = ? AND state = 'running'",
                        (json.dumps(result), error, float(delay_s), job_id, owner),
                    ).rowcount
                )
            )
        )

    def requeue(self, job_id: int) -> None:
        """Put an unfinished job back in ``queued`` (before it is enqueued again)."""
        self._do(
            lambda q: q(
                "UPDATE jobs SET state = 'queued', owner = '', lease_until = NULL"
                " WHERE id = ? AND state = 'running'",
                (job_id,),
            )
        )

    def close(self) -> None:
        """Release connections (nothing is held between calls with SQLite)."""


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class PostgresJobStore(JobStore):
    """The same records in PostgreSQL (``BRIDGE_DATABASE_URL``, psycopg 3): one connection per thread,
    each call one transaction, retried on a lost connection (a server restart) for up to
    ``reconnect_s`` seconds. Every call is safe to retry (claims and starts carry tokens)."""

    backend = "postgres"
    NOW = "extract(epoch from clock_timestamp())::float8"
    JOB_OF_PARAMS = "(params::jsonb ->> 'job_id')::bigint"
    FOR_UPDATE = " FOR UPDATE"

    def __init__(self, url: str, lease_s: float = LEASE_S, reconnect_s: float = RECONNECT_S):
        self.url, self.path = url, url
        self.lease_s, self.reconnect_s = float(lease_s), float(reconnect_s)
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()

        def create(q: Callable[..., Any]) -> None:
            q("SELECT pg_advisory_xact_lock(7243001)")  # several workers may start at once
            for statement in _schema("DOUBLE PRECISION", "id BIGSERIAL PRIMARY KEY", "BIGINT"):
                q(statement)
            for name in ADDED_LATER:
                kind = COLUMNS[name].replace("{REAL}", "DOUBLE PRECISION")
                q(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {name} {kind}")

        self._do(create)

    def __repr__(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"PostgresJobStore({parts.hostname}:{parts.port}{parts.path})"  # never the password

    def _connection(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        db = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:
            db = psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=5)
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    def _do(
        self, work: Callable[[Callable[..., Any]], Any], write: bool = True, pipelined: bool = False
    ) -> Any:
        import psycopg

        deadline, delay = time.monotonic() + self.reconnect_s, 0.1
        while True:
            try:
                db = self._connection()

                def q(sql: str, args: Any = (), db: Any = db) -> Any:
                    return db.execute(sql.replace("?", "%s"), tuple(args))

                # pipelined: the statements of a transaction travel without waiting for each answer,
                # up to the first whose rows are read (a claim's BEGIN, INSERT and SELECT: one round trip)
                with db.pipeline() if pipelined else contextlib.nullcontext(), db.transaction():
                    return work(q)
            except psycopg.OperationalError as exc:
                self._local.db = None
                if time.monotonic() > deadline:
                    raise
                logger.warning("PostgreSQL job store unreachable (%s); retrying", str(exc).strip()[:200])
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._connections_lock:
            for db in self._connections:
                with contextlib.suppress(Exception):  # a broken connection is closed anyway
                    db.close()
            self._connections.clear()
        self._local = threading.local()


def open_store(settings: Any, database_url: str | None = None, lease_s: float | None = None) -> JobStore:
    """The job store: PostgreSQL at ``database_url`` (``BRIDGE_DATABASE_URL``), else SQLite at
    ``BRIDGE_STATE_DIR/jobs.db``; leases of ``lease_s`` seconds (``BRIDGE_LEASE_S``, :data:`LEASE_S`).
    Each value not given is the settings' field of that name when they have one."""
    from quadratseg.errors import QuadratsegError

    if database_url is None:
        database_url = settings.bridge_database_url if hasattr(settings, "bridge_database_url") else ""
    if lease_s is None:
        lease_s = settings.bridge_lease_s if hasattr(settings, "bridge_lease_s") else None
    url, given = str(database_url or ""), lease_s
    lease = LEASE_S if given in (None, "") else float(given)
    if lease <= 0:
        raise QuadratsegError(f"BRIDGE_LEASE_S must be a positive number of seconds, not {given!r}")
    if url.strip():
        if not url.strip().startswith(("postgresql://", "postgres://")):
            raise QuadratsegError(
                f"BRIDGE_DATABASE_URL must be a postgresql:// URL (got {url.split(':', 1)[0]}://...); "
                "leave it empty for the SQLite file in BRIDGE_STATE_DIR"
            )
        return PostgresJobStore(url.strip(), lease_s=lease)
    return JobStore(Path(settings.bridge_state_dir) / "jobs.db", lease_s=lease)


class LeaseLostError(RuntimeError):
    """This worker's job was taken over (its lease expired: the store was unreachable for longer than
    the lease); the worker stops the job and leaves it to its new owner."""


_running = threading.local()  # the Heartbeat of the job this thread runs


def check_lease() -> None:
    """Renew the lease of the job this thread runs (a no-op outside a job) right before a change that
    must not be made twice (an upload, a task creation); :class:`LeaseLostError` when it was taken
    over meanwhile."""
    beat = getattr(_running, "beat", None)
    if beat is None:
        return
    if beat.lost.is_set() or not beat.store.renew(beat.job_id, beat.owner):
        beat.lost.set()
        raise LeaseLostError(f"bridge job {beat.job_id} was taken over by another worker (its lease expired)")


class Heartbeat:
    """Renews a running job's lease every ``lease_s / 3`` seconds in a thread while the block runs;
    ``lost`` is set when the lease was taken from it. The job's own thread reaches it through
    :func:`check_lease`."""

    def __init__(self, store: JobStore, job_id: int, owner: str):
        self.store, self.job_id, self.owner = store, job_id, owner
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    def _beat(self) -> None:
        every = max(self.store.lease_s / 3.0, 0.05)
        while not self._stop.wait(every):
            try:
                if not self.store.renew(self.job_id, self.owner):
                    self.lost.set()
                    logger.error("bridge job %d: its lease was lost (taken over or ended)", self.job_id)
                    return
            except Exception:  # the store is unreachable for longer than its retries: try again
                logger.exception("bridge job %d: renewing its lease failed", self.job_id)

    def __enter__(self) -> Heartbeat:
        _running.beat = self
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (before the job's own last write hands the job on: a beat after it would
        find the job no longer this worker's and report a lost lease)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def __exit__(self, *exc: Any) -> None:
        _running.beat = None
        self.stop()
