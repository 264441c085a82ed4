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

import numpy as np
import pytest
from servers import _or_fail

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


def _statements_counted(store) -> list[str]:
    """The statements ``store`` sends from now on (each a round trip to PostgreSQL), listed."""
    sent: list[str] = []
    real_do = store._do

    def counting_do(work, write=True, **options):
        def counted(q):
            def q_counted(sql, args=()):
                sent.append(sql)
                return q(sql, args)

            return work(q_counted)

        return real_do(counted, write, **options)

    store._do = counting_do
    return sent


def _claim_mix(store) -> list:
    """A queued, a running, a done and a failed job, as deliveries have left them."""
    store.claim("detect:f:1:t", "detect", {"job_id": 1})
    running, _ = store.claim("derive:2", "derive", {"task_id": 2})
    assert store.start(running["id"], "w")
    done, _ = store.claim("warp:3:t", "warp", {"task_id": 3})
    assert store.start(done["id"], "w") and store.finish(done["id"], "done")
    failed, _ = store.claim("warp:4:t", "warp", {"task_id": 4})
    assert store.start(failed["id"], "w") and store.finish(failed["id"], "failed", error="CVAT down")
    return [
        ("warp:4:t", "warp", {"task_id": 4}, False),  # failed: queued again, new
        ("detect:f:9:t", "detect", {"job_id": 9}, False),  # new
        ("derive:2", "derive", {"task_id": 2}, True),  # running: marked again
        ("detect:f:9:t", "detect", {"job_id": 9}, False),  # the same delivery twice in one batch
        ("warp:4:t", "warp", {"task_id": 4}, False),  # queued by its first claim above: not new
        ("warp:3:t", "warp", {"task_id": 3}, True),  # done: left as it is
        ("detect:f:1:t", "detect", {"job_id": 1}, True),  # queued: marked again
        ("a:0", "detect", {"job_id": 0}, False),  # new, sorts first
    ]


def test_a_batch_of_claims_answers_as_the_same_claims_one_by_one(store, tmp_path):
    twin = JobStore(tmp_path / "twin.db", lease_s=LEASE_S)
    batch, one_by_one = _claim_mix(store), _claim_mix(twin)
    together = store.claim_many(batch)
    alone = [twin.claim(key, kind, params, again) for key, kind, params, again in one_by_one]

    def seen(job: dict, new: bool) -> tuple:
        return job["key"], job["state"], job["again"], job["params"], new

    assert [seen(*answer) for answer in together] == [seen(*answer) for answer in alone]
    assert [new for _, new in together] == [True, True, False, False, False, False, False, True]
    assert together[1][0]["id"] == together[3][0]["id"]  # one job for the delivery sent twice
    assert store.counts() == twin.counts() == {"queued": 4, "running": 1, "done": 1}


def test_a_batch_of_claims_costs_the_same_few_statements_whatever_its_size(store):
    """200 deliveries acknowledged together: one insert and one read for the lot, not three round
    trips each (on PostgreSQL, 200 claims took 120-210 ms that way, the whole acknowledgement budget)."""
    sent = _statements_counted(store)
    answers = store.claim_many([(f"detect:f:{i}:t", "detect", {"job_id": i}, False) for i in range(200)])
    assert all(new for _, new in answers) and len({job["id"] for job, _ in answers}) == 200
    assert len(sent) <= 2, f"{len(sent)} statements for one batch of 200 claims"
    del sent[:]
    again = store.claim_many([(f"detect:f:{i}:t", "detect", {"job_id": i}, False) for i in range(200)])
    assert not any(new for _, new in again) and len(sent) <= 2
    assert [job["id"] for job, _ in again] == [job["id"] for job, _ in answers]


def _same_store(store):
    """Another process's connection to ``store``'s database."""
    if isinstance(store, PostgresJobStore):
        return PostgresJobStore(store.url, lease_s=LEASE_S)
    return JobStore(store.path, lease_s=LEASE_S)


def test_one_reaping_turn_per_period_whatever_the_number_of_processes(store):
    """Every serving and worker process has a reaper; each asks for the turn, and one of them gets it
    per period (each reaping reads every unfinished job and every queued message)."""
    processes = [store, _same_store(store), _same_store(store)]
    assert sum(p.take_turn("reaper", 3.0) for p in processes) == 1
    assert not any(p.take_turn("reaper", 3.0) for p in processes)  # within the period: nobody
    assert processes[1].take_turn("another", 3.0)  # turns of other names are their own
    time.sleep(3.1)
    assert sum(p.take_turn("reaper", 3.0) for p in processes) == 1


def test_the_reapers_of_several_processes_reap_once_per_period_between_them(tmp_path):
    from bridge.jobqueue import BridgeQueue
    from quadratseg.settings import Settings

    settings = Settings(bridge_state_dir=tmp_path / "bridge")
    queues = [BridgeQueue(settings) for _ in range(3)]
    reaped = []
    for i, queue in enumerate(queues):
        queue.recover = lambda i=i: reaped.append(i) or []
    for queue in queues:
        queue.start_reaper(every_s=0.1)
    time.sleep(2.0)
    for queue in queues:
        queue.stop()
    # three reapers alone would reap about 60 times in 2 s; one turn per 0.1 s period, about 20
    assert 5 <= len(reaped) <= 26, reaped


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


def test_a_worker_whose_job_was_taken_over_changes_nothing_more(store):
    """A live worker cut off from the store for longer than its lease (a PostgreSQL restart): once
    another worker took the job over, the first one neither uploads nor records an end."""
    import bridge.store
    from bridge.store import Heartbeat, LeaseLostError, check_lease

    job, _ = store.claim("detect:f:7:t", "detect", {"job_id": 7})
    assert store.start(job["id"], "worker-a")
    beat = Heartbeat(store, job["id"], "worker-a")  # its thread is not started: no renewal came through
    bridge.store._running.beat = beat
    try:
        check_lease()  # still its own: renewed
        time.sleep(LEASE_S + 0.3)
        assert store.take_over_expired() == [job["id"]] and store.start(job["id"], "worker-b")
        with pytest.raises(LeaseLostError, match="taken over"):
            check_lease()  # before its next upload
    finally:
        bridge.store._running.beat = None
    assert not store.finish(job["id"], "done", {"shapes": 1}, owner="worker-a")
    assert not store.release_or_again(job["id"], "not due", owner="worker-a")
    now = store.get(job["id"])
    assert (now["state"], now["owner"], now["result"]) == ("running", "worker-b", {})
    assert store.finish(job["id"], "done", {"shapes": 1}, owner="worker-b")


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


def test_a_worker_whose_job_was_taken_over_does_not_free_its_new_owners_lease(store):
    """The old worker's lease on the CVAT job ended after a takeover (its ``finally``) and deleted
    the lease the job's new owner had taken under the same job id: another detection on that CVAT
    job then ran beside the new owner's."""
    first, _ = store.claim("detect:f:7:a", "detect", {"job_id": 7})
    second, _ = store.claim("detect:g:7:b", "detect", {"job_id": 7})
    assert store.start(first["id"], "old")
    old_worker = store.lease("detect-on-cvat-job:7", first["id"])
    old_worker.__enter__()
    time.sleep(LEASE_S + 0.3)  # the old worker's heartbeats stopped: its job is taken over
    assert store.take_over_expired() == [first["id"]] and store.start(first["id"], "new")
    with store.lease("detect-on-cvat-job:7", first["id"]):  # the new owner's detection
        old_worker.__exit__(None, None, None)  # the old worker ends (its lease lost)
        assert store.start(second["id"], "other")
        assert not store.try_lease("detect-on-cvat-job:7", second["id"])  # still the new owner's
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


def _meanwhile(store, prefix: str, action, after: bool = False) -> list:
    """From now on, when ``store`` sends a statement starting with ``prefix`` (inside its
    transaction; ``after``: once it ran), ``action`` starts in another thread (another worker or
    serving process on the same database) and is given 0.5 s to act, or to wait for this
    transaction, before the statement goes on. Returns [thread, its answer] once started."""
    started: list = []
    real_do = store._do

    def hooked_do(work, write=True, **options):
        def hooked(q):
            def q_hooked(sql, args=()):
                fire = sql.startswith(prefix) and not started
                if fire and not after:
                    _start(started, action)
                cursor = q(sql, args)
                if fire and after:
                    _start(started, action)
                return cursor

            return work(q_hooked)

        return real_do(hooked, write, **options)

    store._do = hooked_do
    return started


def _start(started: list, action) -> None:
    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(action()))
    thread.start()
    started.extend([thread, answer])
    time.sleep(0.5)


def _unfinished_for(store, key: str) -> list[dict]:
    rows = [store.get(i) for i in range(1, 50)]
    return [r for r in rows if r and r["key"] == key and r["state"] in ("queued", "running")]


def test_a_completion_that_lands_while_a_worker_releases_the_job_is_never_lost(store):
    """Two interleavings on one database (PostgreSQL's READ COMMITTED let both lose the event): a
    delivery's claim reads the job running, the worker then releases it, the claim marks the
    released row ``again``; and a delivery lands between the worker's 'queue again?' and its
    release. Either way no job was left to do the work the delivery asked for."""
    params = {"task_id": 5, "target_project_id": 2}
    worker = _same_store(store)
    # 1. the worker decides while the delivery's claim is between its read and its 'again'
    job, _ = store.claim("warp:2:5", "warp", params)
    assert worker.start(job["id"], "W")
    started = _meanwhile(
        store, "UPDATE jobs SET again = 1", lambda: worker.release_or_again(job["id"], "not yet", owner="W")
    )
    store.claim("warp:2:5", "warp", params, again_if_busy=True)
    thread, answer = started
    thread.join(10)
    assert answer, "the worker's decision never ended"
    assert len(_unfinished_for(store, "warp:2:5")) == 1  # queued again, or claimed anew
    # 2. the delivery lands between the worker's two statements
    del store._do  # the store's own transactions again
    job, _ = store.claim("warp:2:6", "warp", {**params, "task_id": 6})
    assert worker.start(job["id"], "W")
    started = _meanwhile(
        worker,
        "UPDATE jobs SET state = 'queued', again = 0",
        lambda: store.claim("warp:2:6", "warp", {**params, "task_id": 6}, again_if_busy=True),
        after=True,
    )
    worker.release_or_again(job["id"], "not yet", owner="W")
    thread, answer = started
    thread.join(10)
    assert answer, "the delivery's claim never ended"
    assert len(_unfinished_for(store, "warp:2:6")) == 1


def test_a_detection_reads_the_rows_of_its_own_cvat_job_only(store):
    """Every detection read every detection row the store ever held (parsing each one's shape
    fingerprints) to find those of its CVAT job: the cost grew with the archive. The database now
    selects them: 300 detections on other CVAT jobs are not read."""
    store.claim_many([(f"detect:f:{i}:t", "detect", {"job_id": i}, False) for i in range(300)])
    ours = [store.claim(f"detect:{f}:7000:t", "detect", {"job_id": 7000})[0] for f in ("f", "g")]
    store.claim("warp:2:7000", "warp", {"task_id": 7000, "target_project_id": 2})  # not a detection
    read = []
    parse = store._row
    store._row = lambda row: read.append(1) or parse(row)
    found = store.detections_on(7000)
    assert [j["id"] for j in found] == [j["id"] for j in ours] and len(read) == 2


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


def test_the_scale_options_come_from_the_environment_and_are_checked(tmp_path):
    """BRIDGE_DATABASE_URL, BRIDGE_LEASE_S and BRIDGE_UPLOAD_BATCH are settings (read from the
    environment or .env, typed); the store refuses a URL that is not PostgreSQL's and a lease that is
    not positive, naming the variable."""
    from bridge.store import open_store
    from bridge.work import Services, upload_batch_frames
    from quadratseg.errors import QuadratsegError
    from quadratseg.settings import SettingsError, load_settings

    environ = {
        "BRIDGE_STATE_DIR": str(tmp_path),
        "BRIDGE_DATABASE_URL": "mysql://u@h/db",
        "BRIDGE_LEASE_S": "4",
        "BRIDGE_UPLOAD_BATCH": "3",
    }
    settings = load_settings(None, environ=environ)
    assert (settings.bridge_database_url, settings.bridge_lease_s, settings.bridge_upload_batch) == (
        "mysql://u@h/db",
        4.0,
        3,
    )
    with pytest.raises(QuadratsegError, match="postgresql://"):
        open_store(settings)
    sqlite = open_store(settings.replace(bridge_database_url=""))
    assert type(sqlite) is JobStore and sqlite.lease_s == 4.0
    with pytest.raises(QuadratsegError, match="BRIDGE_LEASE_S"):
        open_store(settings.replace(bridge_database_url="", bridge_lease_s=-1.0))
    assert upload_batch_frames(Services(settings, sqlite, None, None)) == 3
    with pytest.raises(SettingsError, match="BRIDGE_LEASE_S"):
        load_settings(None, environ={**environ, "BRIDGE_LEASE_S": "soon"})


@pytest.mark.shared_data
def test_a_task_completion_during_a_slow_decision_is_not_lost(cvat_server, tmp_path):
    """A corner task of two jobs: the first job's completion starts a warp job whose decision reads
    the task's jobs (the second still open) and is slow; the second job completes meanwhile, and its
    deliveries (update:job, update:task) come while that decision runs. The warped task must still be
    made, once."""
    import contextlib
    import io

    import uvicorn
    from PIL import Image

    from bridge.app import create_app, signed_path
    from bridge.jobqueue import BridgeQueue, cvat_connection
    from loopback.harness import correct_and_complete, free_port, skeleton_shapes, wait_for
    from quadratseg.cvat_client import Cvat, connect
    from quadratseg.formats.cvat_labels import labels_to_raw_config
    from quadratseg.labelsets import corner_labels, grid_labels
    from quadratseg.settings import Settings

    secret, state = "s3cret", cvat_server.state
    corners = state.add_project("corners", labels_to_raw_config(corner_labels()))["id"]
    grid = state.add_project("grid", labels_to_raw_config(grid_labels()))["id"]
    task = state.add_task("site_2024", corners, subset="train", segment_size=1)
    frames = []
    for i in range(2):
        buffer = io.BytesIO()
        Image.fromarray(np.full((160, 200, 3), 40 * (i + 1), np.uint8)).save(buffer, "JPEG")
        frames.append((f"site_2024_q{i}.jpg", buffer.getvalue()))
    state.set_frames(task, frames, segment_size=1)
    settings = Settings(
        cvat_host=cvat_server.url,
        cvat_username="admin",
        cvat_password="admin-password",
        bridge_state_dir=tmp_path / "bridge",
        cvat_webhook_secret=secret,
    )
    deciding, go_on, reads = threading.Event(), threading.Event(), []
    connection = cvat_connection(settings)

    @contextlib.contextmanager
    def slow_deciding_cvat():
        """CVAT as it is, but the first read of a task's jobs answers only once the test says so
        (with what it read before: the decision is made on the state of that moment)."""
        with connection() as cvat:
            real = cvat.task_jobs

            def task_jobs(task_id):
                jobs = real(task_id)
                reads.append(sorted(j["status"] for j in jobs))
                if len(reads) == 1:
                    deciding.set()
                    go_on.wait(30)
                return jobs

            cvat.task_jobs = task_jobs
            yield cvat

    queue = BridgeQueue(settings, cvat=slow_deciding_cvat)
    queue.huey.immediate = True  # jobs run in the dispatcher thread as soon as they are queued
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(queue, secret, token="t"), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "the bridge app")
    path = signed_path(
        secret, "/crop-quadrat-and-create-new-task-webhook", target_proj_id=grid, project_id=corners
    )
    state.add_webhook(
        f"http://127.0.0.1:{port}{path}", ["update:job", "update:task"], project_id=corners, secret=secret
    )
    try:
        with connect(settings) as client:
            cvat = Cvat(client)
            label = next(lab for lab in cvat.labels(project_id=corners) if lab["name"] == "quadrat_corner")
            square = np.array([[20.0, 20.0], [180.0, 20.0], [180.0, 140.0], [20.0, 140.0]])
            first, second = cvat.task_jobs(task.record["id"])
            correct_and_complete(client, first["id"], skeleton_shapes({0: square}, label))
            assert deciding.wait(30), "the first completion started no decision"
            correct_and_complete(client, second["id"], skeleton_shapes({1: square}, label))
            cvat_server.wait_deliveries(30)  # the second job's deliveries came during the decision
            go_on.set()

            def ended():
                jobs = queue.store.list()
                return (
                    jobs if jobs and all(j["state"] in ("done", "failed", "skipped") for j in jobs) else None
                )

            jobs = wait_for(ended, 60, "the warp job")
            warped = cvat.find_task(grid, "site_2024_warped")
    finally:
        go_on.set()
        server.should_exit = True
        thread.join(10)
    assert reads[0] == ["annotation", "completed"]  # decided while the second job was open
    assert reads[1] == ["completed", "completed"]  # and decided again once it was not
    assert [(j["kind"], j["state"]) for j in jobs] == [("warp", "done")], jobs
    assert warped is not None and warped["size"] == 2
    assert [t.record["name"] for t in state.tasks.values()].count("site_2024_warped") == 1


def test_a_missing_server_binary_fails_with_the_install_command(monkeypatch, tmp_path):
    """Never a skip: CI must run the server tests, so a missing binary is a failure that says what to
    install."""
    import loopback.servers
    from loopback.servers import RedisServer

    monkeypatch.setattr(loopback.servers.shutil, "which", lambda name: None)
    monkeypatch.setattr(loopback.servers, "POSTGRES_ROOT", tmp_path / "none")
    with pytest.raises(pytest.fail.Exception, match=r"redis-server is not installed.*ensure_servers\.sh"):
        _or_fail(lambda: RedisServer(tmp_path / "redis"))


@pytest.mark.parametrize(
    "args, environ",
    [
        (
            ["--http-processes", "2"],
            {"BRIDGE_REDIS_URL": "redis://127.0.0.1:1/0", "BRIDGE_DATABASE_URL": "postgresql://u@h/d"},
        ),
        (["--http-processes", "2", "--noconsumer"], {"BRIDGE_DATABASE_URL": "postgresql://u@h/d"}),
        (["--http-processes", "2", "--noconsumer"], {"BRIDGE_REDIS_URL": "redis://127.0.0.1:1/0"}),
    ],
    ids=["workers-in-process", "no-redis", "no-postgresql"],
)
def test_several_serving_processes_need_the_shared_queue_and_store(args, environ, tmp_path):
    """``python -m bridge --http-processes 2`` with its workers in the same process, or without Redis or
    PostgreSQL to share, stops before serving (exit 2) and says what it needs."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "CVAT_"))} | {
        "CVAT_WEBHOOK_SECRET": "s",
        "BRIDGE_STATE_DIR": str(tmp_path),
        **environ,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--port", "0", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "needs --noconsumer, BRIDGE_REDIS_URL and BRIDGE_DATABASE_URL" in done.stderr


def test_a_job_that_met_an_outage_waits_then_runs_again_and_a_delivery_cuts_the_wait(store):
    """An outage (CVAT or a function unreachable after their own retries) puts the job back in the
    queue, not due before its back-off: a queue message that comes early does not start it, the
    reaper leaves it alone until then, and the same event delivered again makes it due at once."""
    job, _ = store.claim("detect:f:9:t", "detect", {"job_id": 9})
    assert store.start(job["id"], "w1")
    store.note(job["id"], {"shape_ids": [5]})
    assert store.retry_later(job["id"], "w1", {"shape_ids": [5]}, "CvatConnectionError: down", 3.0)
    waiting = store.get(job["id"])
    assert (waiting["state"], waiting["error"], waiting["result"]) == (
        "queued",
        "CvatConnectionError: down",
        {"shape_ids": [5]},
    )
    assert waiting["not_before"] is not None and waiting["owner"] == ""
    assert store.unfinished_states() == {job["id"]: "waiting"}  # the reaper queues nothing yet
    assert not store.start(job["id"], "w2")  # an early message
    assert not store.retry_later(job["id"], "w1", {}, "late", 1.0)  # no longer w1's
    time.sleep(3.1)
    assert store.unfinished_states() == {job["id"]: "queued"}
    assert store.start(job["id"], "w2") and store.get(job["id"])["attempts"] == 2
    assert store.get(job["id"])["outages"] == 1
    store.claim("detect:f:9:t", "detect", {"job_id": 9}, again_if_busy=True)  # marked again meanwhile
    assert store.retry_later(job["id"], "w2", {"shape_ids": [5]}, "CvatConnectionError: down", 60.0)
    assert store.get(job["id"])["again"] == 0 and store.get(job["id"])["outages"] == 2  # it runs again anyway
    again, new = store.claim("detect:f:9:t", "detect", {"job_id": 9})  # the annotator sends it again
    assert new and again["id"] == job["id"] and again["not_before"] is None
    assert store.start(job["id"], "w3")
    # failed for good after its retries, then claimed again by a new delivery: a fresh set of retries
    store.finish(job["id"], "failed", error="CvatConnectionError: down (after 3 attempts)", owner="w3")
    assert store.claim("detect:f:9:t", "detect", {"job_id": 9})[0]["outages"] == 0


def test_a_burst_of_deliveries_reaches_redis_in_a_few_round_trips_in_order(redis_server, tmp_path):
    """The dispatcher thread sends what a burst left waiting as one message batch: 200 jobs queued at
    once cost a few ``LPUSH`` commands by Redis's own count, not 200, and huey's queue holds each job
    once, oldest first (the order its consumer takes them)."""
    import redis

    from bridge.jobqueue import BridgeQueue
    from quadratseg.settings import load_settings

    settings = load_settings(
        None, environ={"BRIDGE_STATE_DIR": str(tmp_path), "BRIDGE_REDIS_URL": redis_server.url}
    )
    queue = BridgeQueue(settings)
    redis_server.flush()
    server = redis.Redis.from_url(redis_server.url)
    server.config_resetstat()
    for job_id in range(1, 201):
        queue.enqueue_soon(job_id)
    deadline = time.monotonic() + 20
    while len(queue.huey.pending()) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [int(task.args[0]) for task in queue.huey.pending()] == list(range(1, 201))  # oldest first
    calls = server.info("commandstats")["cmdstat_lpush"]["calls"]
    assert calls <= 20, f"{calls} LPUSH for 200 jobs"
    queue.enqueue_many([7, 8])  # a batch sent at once keeps its order too
    assert [int(task.args[0]) for task in queue.huey.pending()][-2:] == [7, 8]
    queue.huey.flush()
