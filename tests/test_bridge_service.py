"""The bridge's HTTP face and its calls to functions, each against a real server on 127.0.0.1.

The bridge app runs under uvicorn with a real huey SQLite queue whose workers are not started, so
what a delivery queued can be read back from the job store; the function client talks to a small
HTTP server that answers what each test needs (errors, slowness, garbage).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from bridge.app import signed_path
from loopback.harness import free_port
from quadratseg.settings import Settings

TOKEN = "jobs-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RunningApp:
    """The bridge app under uvicorn in a thread."""

    def __init__(self, tmp_path, secret="", prepare=None):
        """``prepare(queue)``: called on the queue before the app is made over it."""
        import uvicorn

        from bridge.app import create_app
        from bridge.jobqueue import BridgeQueue

        self.settings = Settings(bridge_state_dir=tmp_path / "bridge", cvat_webhook_secret=secret)
        self.queue = BridgeQueue(self.settings)
        if prepare is not None:
            prepare(self.queue)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(self.queue, secret, insecure=not secret, token=TOKEN)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def app(tmp_path):
    running = RunningApp(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def signed_app(tmp_path):
    running = RunningApp(tmp_path, secret="s3cret")
    yield running
    running.stop()


def job_payload(
    state="in progress", before=None, job_id=7, updated="2026-12-01T10:00:00.000000Z", kind="annotation"
):
    """An update:job delivery as CVAT builds it (the shape of rest_dumps/jobs.json)."""
    return {
        "event": "update:job",
        "job": {
            "id": job_id,
            "task_id": 3,
            "project_id": 1,
            "state": state,
            "stage": "annotation",
            "status": "annotation",
            "type": kind,
            "updated_date": updated,
        },
        "before_update": before if before is not None else {"state": "new", "updated_date": "x"},
        "webhook_id": 1,
        "sender": {
            "url": "http://cvat/api/users/1",
            "id": 1,
            "username": "anna",
            "first_name": "",
            "last_name": "",
        },
    }


def post(url, payload, secret=None, signature=None):
    body = json.dumps(payload).encode()  # what CVAT sends: json.dumps of the payload
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if signature is not None:
        headers["X-Signature-256"] = signature
    return httpx.post(url, content=body, headers=headers, timeout=10)


DETECT = "/detect-model-webhook?model_name=pth-yolo-gridcorners"
ENDPOINTS = (
    DETECT,
    "/crop-quadrat-and-create-new-task-webhook?target_proj_id=2",
    "/remove-grid-and-create-new-task-webhook?target_proj_id=3",
)


def test_ping_and_health_answer_on_every_endpoint(app):
    ping = {"event": "ping", "webhook": {"id": 1}, "sender": {"id": 1}}
    for path in ENDPOINTS:
        answer = post(app.url + path, ping)
        assert answer.status_code == 200 and answer.json()["status"] == "pong"
    assert httpx.get(app.url + "/health").json()["status"] == "healthy"
    assert httpx.post(app.url + "/health").status_code == 200  # CVAT's ping target in upstream's docs
    assert app.queue.store.list() == []
    assert "/detect-model-webhook" in httpx.get(app.url + "/openapi.json").json()["paths"]


def test_signatures_are_checked_over_the_raw_body(signed_app):
    url = signed_app.url + signed_path(
        "s3cret", "/detect-model-webhook", model_name="pth-yolo-gridcorners", project_id=1
    )
    assert post(url, job_payload()).status_code == 401  # no signature
    assert post(url, job_payload(), secret="wrong").status_code == 401
    tampered = job_payload()
    good_signature = "sha256=" + hmac.new(b"s3cret", json.dumps(tampered).encode(), "sha256").hexdigest()
    tampered["job"]["id"] = 8  # the body changed after signing
    assert post(url, tampered, signature=good_signature).status_code == 401
    assert signed_app.queue.store.list() == []  # nothing queued by refused deliveries
    ok = post(url, job_payload(), secret="s3cret")
    assert ok.status_code == 202 and ok.json()["status"] == "queued"


def test_with_insecure_unsigned_deliveries_are_accepted(app):
    assert post(app.url + DETECT, job_payload()).status_code == 202


def test_an_app_without_a_secret_needs_insecure(tmp_path):
    from bridge.app import create_app
    from bridge.jobqueue import BridgeQueue
    from quadratseg.errors import QuadratsegError

    queue = BridgeQueue(Settings(bridge_state_dir=tmp_path / "bridge"))
    with pytest.raises(QuadratsegError, match="--insecure"):
        create_app(queue, "")


def test_a_hundred_replays_of_one_delivery_make_one_job(app):
    payload = job_payload()
    answers = []

    def send():
        answers.append(post(app.url + DETECT, payload))

    threads = [threading.Thread(target=send) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses.count("queued") == 1 and statuses.count("duplicate") == 99
    jobs = app.queue.store.list()
    assert len(jobs) == 1 and jobs[0]["params"] == {
        "job_id": 7,
        "function": "pth-yolo-gridcorners",
        "conv_mask_to_poly": False,
        "threshold": None,
    }
    assert app.queue.pending_job_ids() == {jobs[0]["id"]}  # one message in the persistent queue
    # a new state change of the same job (reopened later) is new work
    assert post(app.url + DETECT, job_payload(updated="2026-12-02T08:00:00.000000Z")).status_code == 202


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (job_payload(before={"updated_date": "2026-12-01T09:00:00Z"}), "state did not change"),  # our upload
        (job_payload(state="completed", before={"state": "in progress"}), "not to 'in progress'"),
        (job_payload(before={"state": "in progress"}), "not to 'in progress'"),
        # a review loop or a reopened job: detection runs on new -> in progress only
        (job_payload(before={"state": "completed", "updated_date": "x"}), "only new -> in progress"),
        (job_payload(before={"state": "rejected", "updated_date": "x"}), "only new -> in progress"),
        (job_payload(kind="ground_truth"), "not annotation"),
        (
            {"event": "update:task", "task": {"id": 3}, "before_update": {"status": "annotation"}},
            "not update:job",
        ),
        ({"event": "create:job", "job": {"id": 9}}, "not update:job"),
    ],
)
def test_events_that_are_not_due_are_acknowledged_and_ignored(app, payload, why):
    answer = post(app.url + DETECT, payload)
    assert (
        answer.status_code == 200 and answer.json()["status"] == "ignored" and why in answer.json()["reason"]
    )
    assert app.queue.store.list() == []


def test_task_completion_from_the_task_or_its_last_job_is_one_job(app):
    url = app.url + "/crop-quadrat-and-create-new-task-webhook?target_proj_id=2"
    task_done = {
        "event": "update:task",
        "task": {"id": 3, "status": "completed", "name": "batch"},
        "before_update": {"status": "annotation", "updated_date": "x"},
    }
    job_done = job_payload(state="completed", before={"status": "annotation", "stage": "annotation"})
    job_done["job"].update(status="completed", stage="acceptance")
    first, second = post(url, job_done), post(url, task_done)
    assert first.status_code == 202 and second.json()["status"] == "duplicate"
    touched = {**task_done, "before_update": {"updated_date": "y"}}  # an annotation write on the task
    assert post(url, touched).json()["status"] == "ignored"
    (job,) = app.queue.store.list()
    assert job["kind"] == "warp" and job["params"] == {"task_id": 3, "target_project_id": 2}
    assert post(url + "x", task_done).status_code == 422  # a bad query parameter: 4xx, not retried
    assert httpx.post(url, content=b"{not json", timeout=5).status_code == 400


def test_webhook_queries_are_read_and_checked_as_fastapi_did_and_documented(app):
    """The webhooks' query parameters (read by pydantic once per URL, not by FastAPI's per-request
    machinery): the same values, the same 422s naming the parameter, the same parameters in the
    OpenAPI schema."""
    url = app.url + "/detect-model-webhook"

    def problems(query):
        answer = post(url + query, job_payload())
        assert answer.status_code == 422, answer.text
        return [(tuple(e["loc"]), e["type"]) for e in answer.json()["detail"]]

    assert problems("?model_name=fn&threshold=2") == [(("query", "threshold"), "less_than_equal")]
    assert problems("?model_name=fn&threshold=nan") == [(("query", "threshold"), "less_than_equal")]
    assert problems("?model_name=fn&threshold=-1") == [(("query", "threshold"), "greater_than_equal")]
    assert problems("?model_name=fn&threshold=high") == [(("query", "threshold"), "float_parsing")]
    assert problems("?threshold=0.5&project_id=7.5") == [
        (("query", "model_name"), "missing"),
        (("query", "project_id"), "int_parsing"),
    ]
    assert problems("?model_name=fn&conv_mask_to_poly=maybe") == [
        (("query", "conv_mask_to_poly"), "bool_parsing")
    ]
    answer = post(url + "?model_name=pth-yolo-gridcorners&conv_mask_to_poly=Yes&threshold=0.3", job_payload())
    assert answer.status_code == 202, answer.text
    (job,) = app.queue.store.list()
    assert job["params"] == {
        "job_id": 7,
        "function": "pth-yolo-gridcorners",
        "conv_mask_to_poly": True,
        "threshold": 0.3,
    }
    paths = httpx.get(app.url + "/openapi.json").json()["paths"]

    def kind(schema):  # an optional parameter's type is one of anyOf's, beside null (FastAPI's schema)
        return schema.get("type") or next(s["type"] for s in schema["anyOf"] if s["type"] != "null")

    described = {
        path: {p["name"]: (p["required"], kind(p["schema"])) for p in paths[path]["post"]["parameters"]}
        for path in ("/detect-model-webhook", "/crop-quadrat-and-create-new-task-webhook")
    }
    assert described == {
        "/detect-model-webhook": {
            "model_name": (True, "string"),
            "conv_mask_to_poly": (False, "boolean"),
            "threshold": (False, "number"),
            "project_id": (False, "integer"),
            "qsig": (False, "string"),
        },
        "/crop-quadrat-and-create-new-task-webhook": {
            "target_proj_id": (True, "integer"),
            "project_id": (False, "integer"),
            "qsig": (False, "string"),
        },
    }


def test_a_burst_of_deliveries_reaches_the_queue_a_batch_at_a_time(tmp_path):
    """Deliveries that come together are recorded together and their new jobs handed to the queue's
    dispatcher in one call a committed batch (once each, every one recorded before its 202), not one
    call a delivery from the event loop."""
    import asyncio

    handed, held = [], threading.Event()

    def prepare(queue):
        enqueue_soon, claim_many = queue.enqueue_soon, queue.store.claim_many

        def recorded(*job_ids):
            handed.append(job_ids)
            enqueue_soon(*job_ids)

        def slow_first(items):  # the first commit takes a while: the burst gathers behind it
            if not held.is_set():
                held.set()
                time.sleep(0.5)
            return claim_many(items)

        queue.enqueue_soon, queue.store.claim_many = recorded, slow_first

    running = RunningApp(tmp_path, prepare=prepare)
    try:

        async def burst():
            async with httpx.AsyncClient(timeout=20) as client:
                return await asyncio.gather(
                    *(client.post(running.url + DETECT, json=job_payload(job_id=100 + i)) for i in range(40))
                )

        answers = asyncio.run(burst())
        assert [a.status_code for a in answers] == [202] * 40
        answered = sorted(a.json()["job_id"] for a in answers)
        assert sorted(j["id"] for j in running.queue.store.list()) == answered
        assert sorted(i for call in handed for i in call) == answered  # each new job handed on once
        assert len(handed) <= 4, handed  # a call a batch of claims, not one a delivery
        deadline = time.monotonic() + 10
        while sorted(running.queue.pending_job_ids()) != answered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(running.queue.pending_job_ids()) == answered
    finally:
        running.stop()


def test_jobs_are_listed_and_shown(app):
    job_id = post(app.url + DETECT, job_payload()).json()["job_id"]
    assert [j["id"] for j in httpx.get(app.url + "/jobs", headers=AUTH).json()] == [job_id]
    shown = httpx.get(f"{app.url}/jobs/{job_id}", headers=AUTH).json()
    assert shown["state"] == "queued" and shown["kind"] == "detect"
    assert httpx.get(f"{app.url}/jobs/999", headers=AUTH).status_code == 404


def test_acknowledgement_is_fast_under_concurrent_deliveries(app):
    latencies = []

    def send(i):
        start = time.perf_counter()
        answer = post(app.url + DETECT, job_payload(job_id=1000 + i))
        latencies.append(time.perf_counter() - start)
        assert answer.status_code == 202

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(app.queue.store.list(limit=100)) == 50
    assert max(latencies) < 5.0  # CVAT gives up after 10 s; benchmarks/bench_bridge.py measures p50/p99


# ------------------------------------------------------------------ function calls


class FunctionDouble:
    """A function endpoint answering from a script: a list of (status, body bytes, delay s)."""

    def __init__(self, script):
        self.script, self.calls, self.bodies = list(script), 0, []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                double.bodies.append(body)
                status, answer, delay = double.script[min(double.calls, len(double.script) - 1)]
                double.calls += 1
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the caller may have given up (time limit)
                    self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def client_for(double, **kwargs):
    from bridge.functions import FunctionClient

    return FunctionClient(urls={"fn": double.url}, backoff_s=0.01, **kwargs)


def test_function_calls_retry_busy_answers_then_succeed():
    double = FunctionDouble([(503, b"busy", 0), (429, b"slow down", 0), (200, b"[]", 0)])
    assert client_for(double).call("fn", {"image": "x"}) == []
    assert double.calls == 3
    double.close()


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ([(400, b'{"error": "bad image"}', 0)], "HTTP 400"),  # not retried
        ([(200, b"<html>oops", 0)], "not JSON"),
        ([(500, b"boom", 0)], "after 3 attempts"),
        ([(200, b"[]", 1.0)], "no answer within"),
    ],
)
def test_function_failures_are_clear_errors(script, message):
    from bridge.functions import FunctionError

    double = FunctionDouble(script)
    with pytest.raises(FunctionError, match=message):
        # a short deadline for the answer that never comes, a long one where an answer is instant
        timeout_s = 0.3 if message == "no answer within" else 10.0
        client_for(double, retries=2, timeout_s=timeout_s).call("fn", {"image": "x"})
    assert double.calls == (1 if message in ("HTTP 400", "not JSON") else 3)
    double.close()


def test_an_unreachable_function_is_named_with_its_address():
    from bridge.functions import FunctionClient, FunctionError

    client = FunctionClient(urls={"pth-lama": "http://127.0.0.1:9/pth-lama"}, retries=1, backoff_s=0.01)
    with pytest.raises(FunctionError, match=r"cannot reach http://127.0.0.1:9/pth-lama"):
        client.call("pth-lama", {})
    assert FunctionClient().url("pth-yolo-gridpose") == "http://nuclio-nuclio-pth-yolo-gridpose:8080"


def test_calls_in_flight_are_limited_per_function():
    double = FunctionDouble([(200, b"[]", 0.2)])
    client = client_for(double, in_flight=1)
    threads = [threading.Thread(target=client.call, args=("fn", {})) for _ in range(4)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - start >= 0.75  # four 0.2 s calls one after the other
    double.close()


def test_frames_over_the_body_limit_are_reencoded_then_downscaled():
    from PIL import Image

    from bridge.functions import encode_frame
    from quadratseg.images import decode_image_b64

    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)  # noise: JPEG cannot shrink it much
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "PNG")
    png = buffer.getvalue()
    same, scale = encode_frame(png, limit_bytes=4 * len(png))
    assert scale == 1.0 and decode_image_b64(same).shape == (600, 800, 3)  # fits: sent as it is
    small, scale = encode_frame(png, limit_bytes=200_000)
    assert len(json.dumps({"image": small})) <= 200_000 and scale < 1.0
    decoded = decode_image_b64(small)
    assert decoded.shape[1] == round(800 * scale) and decoded.shape[0] == round(600 * scale)


def test_a_failed_job_is_queued_again_by_the_next_delivery(tmp_path):
    from bridge.store import JobStore

    store = JobStore(tmp_path / "jobs.db")
    job, new = store.claim("warp:2:3", "warp", {"task_id": 3})
    assert new and store.start(job["id"])
    store.note(job["id"], {"shape_ids": [5, 6]})
    store.finish(job["id"], "failed", {"shape_ids": [5, 6]}, error="CVAT down")
    again, new = store.claim("warp:2:3", "warp", {"task_id": 3})
    assert new and again["id"] == job["id"] and again["state"] == "queued"
    assert again["result"] == {"shape_ids": [5, 6]}  # what the failed attempt changed is remembered
    assert store.start(job["id"]) and store.get(job["id"])["attempts"] == 2
    store.finish(job["id"], "done")
    assert store.claim("warp:2:3", "warp", {"task_id": 3})[1] is False  # done work is not redone


def test_a_signature_with_odd_bytes_is_refused_not_crashed(signed_app):
    body = json.dumps(job_payload()).encode()
    answer = httpx.post(
        signed_app.url + signed_path("s3cret", "/detect-model-webhook", model_name="fn", project_id=1),
        content=body,
        headers=[(b"X-Signature-256", b"sha256=\xe9\xff")],
        timeout=10,
    )
    assert answer.status_code == 401


def test_detection_on_request_needs_the_token_and_an_allowed_function(app):
    url = app.url + "/detect"
    query = {"job_id": 7, "model_name": "pth-yolo-gridcorners"}
    assert httpx.post(url, params=query, timeout=10).status_code == 401
    assert httpx.post(url, params=query, headers={"Authorization": "Bearer x"}, timeout=10).status_code == 401
    bad = httpx.post(url, params={**query, "model_name": "x@evil.example/"}, headers=AUTH, timeout=10)
    assert bad.status_code == 400 and app.queue.store.list() == []
    first = httpx.post(url, params=query, headers=AUTH, timeout=10)
    other = httpx.post(url, params={**query, "job_id": 8, "threshold": 0.3}, headers=AUTH, timeout=10)
    assert first.status_code == other.status_code == 202  # each request is new work
    jobs = sorted(app.queue.store.list(), key=lambda j: j["id"])
    assert [j["params"] for j in jobs] == [
        {"job_id": 7, "function": "pth-yolo-gridcorners", "conv_mask_to_poly": False, "threshold": None},
        {"job_id": 8, "function": "pth-yolo-gridcorners", "conv_mask_to_poly": False, "threshold": 0.3},
    ]
    assert [j["key"].rsplit(":", 1)[0] for j in jobs] == [
        "detect:pth-yolo-gridcorners:7",
        "detect:pth-yolo-gridcorners:8",
    ]
    assert all(j["key"].split(":")[-1].startswith("request-") for j in jobs)


def test_one_detection_per_cvat_job_at_a_time(app):
    """A request for a job whose detection (a webhook's, or another request's) is queued or running
    gets 409: two detections on one job would each claim the other's shapes."""
    url = app.url + "/detect"
    opened = post(app.url + DETECT, job_payload(job_id=7))
    assert opened.status_code == 202
    busy = httpx.post(url, params={"job_id": 7, "model_name": "fn"}, headers=AUTH, timeout=10)
    assert busy.status_code == 409 and str(opened.json()["job_id"]) in busy.json()["detail"]
    assert (
        httpx.post(url, params={"job_id": 9, "model_name": "fn"}, headers=AUTH, timeout=10).status_code == 202
    )
    again = httpx.post(url, params={"job_id": 9, "model_name": "fn"}, headers=AUTH, timeout=10)
    assert again.status_code == 409
    assert sorted(j["params"]["job_id"] for j in app.queue.store.list()) == [7, 9]


def test_two_detections_on_one_cvat_job_run_one_after_the_other(tmp_path):
    """Two workers (BRIDGE_WORKERS=2) with detections on one CVAT job: the second waits for the first's
    lease; a lease left by a job that is no longer running is taken over."""
    from bridge.store import JobStore
    from bridge.work import Services, detect

    store = JobStore(tmp_path / "jobs.db")
    inside, overlaps, lock = [], [], threading.Lock()

    class Probe:
        """A CVAT connection whose first read records who is inside detection on the job."""

        def __enter__(self):
            with lock:
                if inside:
                    overlaps.append(tuple(inside))
                inside.append(threading.get_ident())
            time.sleep(0.5)
            with lock:
                inside.remove(threading.get_ident())
            raise RuntimeError("probe: stop here")

        def __exit__(self, *exc):
            return False

    services = Services(Settings(bridge_state_dir=tmp_path / "b"), store, None, Probe)
    jobs = []
    for key in ("detect:fn:7:a", "detect:other:7:b"):
        job, _ = store.claim(key, "detect", {"job_id": 7, "function": key.split(":")[1]})
        assert store.start(job["id"])
        jobs.append(store.get(job["id"]))
    errors = []

    def run(job):
        try:
            detect(job, services)
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert overlaps == [] and time.perf_counter() - start > 0.9
    assert errors == ["probe: stop here"] * 2
    with store.lease("detect-on-cvat-job:7", 99):  # job 99 is not running: held at once
        pass
    store.finish(jobs[0]["id"], "failed")
    with store._connect() as db:  # a dead worker's lease, left behind
        db.execute(
            "INSERT INTO leases (name, job_id, since) VALUES ('detect-on-cvat-job:7', ?, 0)", (jobs[0]["id"],)
        )
    start = time.perf_counter()
    with store.lease("detect-on-cvat-job:7", jobs[1]["id"], every_s=30):
        assert time.perf_counter() - start < 10  # taken at once, not after a wait of 30 s


def test_the_annotator_leaves_a_frame_without_a_grid_empty():
    """A varied-world quadrat without a grid has no grid truth (None, or an empty list): the
    annotator's corrections give it no skeleton, and the other frames keep theirs."""
    from loopback.harness import skeleton_shapes

    label = {"id": 7, "sublabels": [{"name": "1", "id": 71}, {"name": "2", "id": 72}]}
    shapes = skeleton_shapes({0: [[1.0, 2.0], [3.0, 4.0]], 1: None, 2: []}, label)
    assert [s["frame"] for s in shapes] == [0]
    assert [e["label_id"] for e in shapes[0]["elements"]] == [71, 72]


def test_a_request_for_a_job_whose_detection_waits_out_an_outage_runs_that_detection_now(app):
    """An operator who knows the outage is over asks for the job's detection: the waiting one (the
    same function) is due at once, not a 409 for the rest of its back-off."""
    store = app.queue.store
    opened = post(app.url + DETECT, job_payload(job_id=7)).json()["job_id"]
    function = store.get(opened)["params"]["function"]
    assert store.start(opened, "w") and store.retry_later(opened, "w", {}, "CvatConnectionError: down", 600)
    url = app.url + "/detect"
    other = httpx.post(url, params={"job_id": 7, "model_name": "other-fn"}, headers=AUTH, timeout=10)
    assert other.status_code == 409 and "waits out an outage" in other.json()["detail"]
    options = {"job_id": 7, "model_name": function, "threshold": 0.9}  # the same function, another threshold
    assert httpx.post(url, params=options, headers=AUTH, timeout=10).status_code == 409
    now = httpx.post(url, params={"job_id": 7, "model_name": function}, headers=AUTH, timeout=10)
    assert now.status_code == 202 and now.json()["job_id"] == opened
    assert store.get(opened)["not_before"] is None and store.unfinished_states() == {opened: "queued"}
