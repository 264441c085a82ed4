"""The bridge with several workers: the job store on SQLite and on a real PostgreSQL (the same tests
against both), leases with heartbeats, completion events that come during a decision, batched
uploads, and the acknowledgement of concurrent deliveries.

The PostgreSQL and Redis servers are real (tests/servers.py), started once per session on 127.0.0.1;
a missing server binary fails these tests with the install command, it never skips them.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from servers import postgres_server, redis_server  # noqa: F401 (pytest fixtures)

from bridge.store import JobStore, PostgresJobStore

LEASE_S = 1.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def store(request, tmp_path):
    """A fresh job store on each backend, with a short lease."""
    if request.param == "sqlite":
        yield JobStore(tmp_path / "jobs.db", lease_s=LEASE_S)
        return
    cluster = request.getfixturevalue("postgres_server")
    made = PostgresJobStore(cluster.new_database(f"t{uuid.uuid4().hex[:12]}"), lease_s=LEASE_S)
    yield made
    made.close()


def test_a_delivery_is_claimed_once_and_a_failed_job_again(store):
    job, new = store.claim("warp:2:3", "warp", {"task_id": 3})
    again, new_again = store.claim("warp:2:3", "warp", {"task_id": 3})
    assert new and not new_again and again["id"] == job["id"] and job["state"] == "queued"
    assert store.start(job["id"], "w1")
    store.note(job["id"], {"shape_ids": [5, 6]})
    store.finish(job["id"], "failed", {"shape_ids": [5, 6]}, error="CVAT down")
    retried, new = store.claim("warp:2:3", "warp", {"task_id": 3})
    assert new and retried["id"] == job["id"] and retried["state"] == "queued"
    assert retried["result"] == {"shape_ids": [5, 6]}
    assert store.start(job["id"], "w2") and store.get(job["id"])["attempts"] == 2
    store.finish(job["id"], "done")
    assert store.claim("warp:2:3", "warp", {"task_id": 3})[1] is False
    assert store.counts() == {"done": 1}
    assert [j["id"] for j in store.with_key_prefix("warp:2:")] == [job["id"]]
    detect, _ = store.claim("detect:f:7:a", "detect", {"job_id": 7})
    assert store.active_detection(7)["id"] == detect["id"] and store.active_detection(8) is None


def test_concurrent_claims_of_the_same_keys_make_one_job_each(store):
    """200 deliveries at once, every one sent twice (a replay): 100 jobs, each reported new once."""
    outcomes, lock = [], threading.Lock()

    def deliver(i: int) -> None:
        job, new = store.claim(f"detect:f:{i % 100}:t", "detect", {"job_id": i % 100})
        with lock:
            outcomes.append((job["id"], new))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 200
    assert len({job_id for job_id, _ in outcomes}) == 100
    assert sum(new for _, new in outcomes) == 100  # each job new exactly once
    assert store.counts() == {"queued": 100}
    many = store.claim_many([(f"warp:1:{i}", "warp", {"task_id": i}, False) for i in range(50)])
    assert all(new for _, new in many) and store.counts() == {"queued": 150}


def test_a_live_job_is_never_started_twice_and_an_expired_lease_is_taken_over(store):
    job, _ = store.claim("detect:f:7:t", "detect", {"job_id": 7})
    assert store.start(job["id"], "worker-a")
    assert not store.start(job["id"], "worker-b")  # a second message for the same job does nothing
    assert store.start(job["id"], "worker-a")  # a retried start of the same owner is still its own
    for _ in range(4):  # worker a is alive: its heartbeats keep the job, past several lease lengths
        time.sleep(LEASE_S / 2)
        assert store.renew(job["id"], "worker-a")
        assert store.take_over_expired() == []
    time.sleep(LEASE_S + 0.3)  # worker a died: no heartbeat
    assert store.take_over_expired() == [job["id"]]
    assert store.take_over_expired() == []  # taken over once
    assert store.start(job["id"], "worker-b")
    assert not store.renew(job["id"], "worker-a")  # the dead worker's lease is gone for good
    assert store.get(job["id"])["attempts"] == 2


def test_a_named_lease_waits_for_a_live_holder_and_takes_over_a_dead_one(store):
    first, _ = store.claim("detect:f:7:a", "detect", {"job_id": 7})
    second, _ = store.claim("detect:g:7:b", "detect", {"job_id": 7})
    assert store.start(first["id"], "a") and store.start(second["id"], "b")
    assert store.try_lease("detect-on-cvat-job:7", first["id"])
    assert store.try_lease("detect-on-cvat-job:7", first["id"])  # its own
    assert not store.try_lease("detect-on-cvat-job:7", second["id"])  # held by a live job
    store.renew(first["id"], "a")
    assert not store.try_lease("detect-on-cvat-job:7", second["id"])
    time.sleep(LEASE_S + 0.3)  # the holder's worker died: its job lease expired
    store.renew(second["id"], "b")
    assert store.try_lease("detect-on-cvat-job:7", second["id"])


def test_a_completion_during_a_decision_makes_the_job_decide_again(store):
    """The first job of a task completed: its job decides "not all completed" while the second job
    completes; that delivery must not be lost as a duplicate of the running job."""
    job, new = store.claim("warp:2:3", "warp", {"task_id": 3}, again_if_busy=True)
    assert new and store.start(job["id"], "w")
    later, new_later = store.claim("warp:2:3", "warp", {"task_id": 3}, again_if_busy=True)
    assert not new_later and later["again"] == 1
    assert store.release_or_again(job["id"], "task 3 is not completed") is True
    assert store.get(job["id"])["state"] == "queued"  # decides again, with the second job completed
    assert store.start(job["id"], "w2")
    assert store.release_or_again(job["id"], "task 3 is not completed") is False
    released = store.get(job["id"])
    assert released["state"] == "skipped" and released["key"] == f"warp:2:3#released-{job['id']}"
    fresh, new = store.claim("warp:2:3", "warp", {"task_id": 3}, again_if_busy=True)
    assert new and fresh["id"] != job["id"]


def test_an_older_sqlite_job_file_gains_the_lease_columns(tmp_path):
    import sqlite3

    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as db:
        db.execute(  # the table as the bridge made it before leases
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL,"
            " kind TEXT NOT NULL, params TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',"
            " progress INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,"
            " error TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT '{}',"
            " timings TEXT NOT NULL DEFAULT '{}', attempts INTEGER NOT NULL DEFAULT 0,"
            " created REAL NOT NULL, started REAL, finished REAL, heartbeat REAL)"
        )
        db.execute("INSERT INTO jobs (key, kind, params, created) VALUES ('k', 'detect', '{}', 0)")
    store = JobStore(path)
    (job,) = store.unfinished()
    assert store.start(job["id"], "w") and store.get(job["id"])["owner"] == "w"


def test_open_store_refuses_a_database_url_that_is_not_postgresql(tmp_path, monkeypatch):
    from bridge.store import open_store
    from quadratseg.errors import QuadratsegError
    from quadratseg.settings import Settings

    monkeypatch.setenv("BRIDGE_DATABASE_URL", "mysql://u@h/db")
    with pytest.raises(QuadratsegError, match="postgresql://"):
        open_store(Settings(bridge_state_dir=tmp_path))
    monkeypatch.setenv("BRIDGE_DATABASE_URL", "")
    assert type(open_store(Settings(bridge_state_dir=tmp_path))) is JobStore
