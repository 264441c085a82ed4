"""The CVAT stand-in through the real cvat-sdk: job frames, job annotations, job stages and task status,
webhook deliveries (signature, events, the annotation-write trap, ping, timeouts)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from quadratseg.cvat_client import connect

pytestmark = pytest.mark.shared_data

LABELS = [
    {
        "name": "coral",
        "type": "polygon",
        "attributes": [
            {
                "name": "confidence",
                "input_type": "number",
                "mutable": False,
                "values": ["0", "100", "1"],
                "default_value": "0",
            }
        ],
    },
    {
        "name": "grid",
        "type": "skeleton",
        "svg": "",
        "sublabels": [{"name": "1", "type": "points"}, {"name": "2", "type": "points"}],
    },
]
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, "PNG")
    return buffer.getvalue()


FRAMES = [(f"q{i}.png", png(c)) for i, c in enumerate(COLORS)]


def seed(server, frames: int = 4, segment_size: int = 2, name: str = "reef"):
    """A project with LABELS and one task of ``frames`` frames cut into jobs: (project, task, jobs)."""
    project = server.state.add_project(name, LABELS)
    task = server.state.add_task("t", project["id"], "train", segment_size=segment_size)
    server.state.set_frames(task, FRAMES[:frames])
    return project, task, server.state.task_jobs(task)


def label_ids(server, project_id: int) -> dict[str, int]:
    """Label name -> id (``grid/1`` for sublabels), and ``confidence`` -> its spec id."""
    ids = {}
    for label in server.state.project_labels(project_id):
        if label.get("has_parent"):
            continue
        ids[label["name"]] = label["id"]
        for attr in label["attributes"]:
            ids[attr["name"]] = attr["id"]
        for sub in label["sublabels"]:
            ids[f"{label['name']}/{sub['name']}"] = sub["id"]
    return ids


def polygon(ids, frame, source=None, x=1.0):
    shape = {
        "type": "polygon",
        "frame": frame,
        "label_id": ids["coral"],
        "points": [x, 1.0, 6.0, 1.0, 6.0, 6.0],
        "attributes": [{"spec_id": ids["confidence"], "value": "87"}],
    }
    if source:
        shape["source"] = source
    return shape


def skeleton(ids, frame):
    return {
        "type": "skeleton",
        "frame": frame,
        "label_id": ids["grid"],
        "points": [],
        "source": "auto",
        "elements": [
            {"type": "points", "frame": frame, "label_id": ids["grid/1"], "points": [2.0, 3.0]},
            {
                "type": "points",
                "frame": frame,
                "label_id": ids["grid/2"],
                "points": [0.0, 0.0],
                "outside": True,
            },
        ],
    }


def raw_request(server, method: str, path: str, body=None) -> int:
    """Status of a request made without the SDK (token auth)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method)
    request.add_header("Authorization", "Token test-token")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1: keeps (headers, raw body) of every POST, answers after ``delay_s``."""

    daemon_threads = True

    def __init__(self, delay_s: float = 0.0):
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.delay_s = delay_s
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/cvat-events"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def payloads(self) -> list[dict]:
        return [json.loads(body) for _, body in self.got]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format, *args):
        return

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((dict(self.headers), body))
        time.sleep(self.server.delay_s)
        answer = b'{"ok": true}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:  # the sender gave up (timeout)
            pass


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


def test_job_frames_meta_and_segment_size(cvat_server, cvat_settings, tmp_path):
    from cvat_sdk.api_client import models
    from cvat_sdk.api_client.exceptions import ApiException

    project = cvat_server.state.add_project("reef", LABELS)
    paths = []
    for name, data in FRAMES:
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    with connect(cvat_settings) as client:
        spec = models.TaskWriteRequest(name="t", project_id=project["id"], segment_size=2)
        task = client.tasks.create_from_data(
            spec=spec, resources=paths, data_params={"image_quality": 90, "sorting_method": "predefined"}
        )
        jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
        assert [(j.start_frame, j.stop_frame, j.frame_count) for j in jobs] == [
            (0, 1, 2),
            (2, 3, 2),
            (4, 4, 1),
        ]
        assert {str(j.type) for j in jobs} == {"annotation"} and task.segment_size == 2

        job = client.jobs.retrieve(jobs[1].id)
        meta = job.get_meta()
        assert (meta.size, meta.start_frame, meta.stop_frame, meta.image_quality) == (2, 2, 3, 90)
        assert [f.name for f in meta.frames] == ["q2.png", "q3.png"]
        assert job.get_frame(3, quality="original").read() == FRAMES[3][1]  # absolute task frame
        compressed = Image.open(io.BytesIO(job.get_frame(2, quality="compressed").read()))
        assert compressed.format == "JPEG" and compressed.size == (16, 12)
        with pytest.raises(ApiException) as outside:
            job.get_frame(0, quality="original")  # frame 0 belongs to the first job
        assert outside.value.status == 400

    meta_path = f"/api/jobs/{jobs[1].id}/data/meta"
    cvat_server.fail_next.append(("GET", r"/api/jobs/\d+/data/meta", 503))  # fault injection, new routes too
    assert [raw_request(cvat_server, "GET", meta_path) for _ in range(2)] == [503, 200]
    assert raw_request(cvat_server, "GET", f"/api/jobs/{jobs[2].id}/data?type=chunk&index=0") == 400
    assert cvat_server.violations == []


def test_job_annotations_put_patch_delete(cvat_server, cvat_settings):
    from cvat_sdk.api_client import models
    from cvat_sdk.api_client.exceptions import ApiException
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    project, task, (first, second) = seed(cvat_server)
    ids = label_ids(cvat_server, project["id"])
    with connect(cvat_settings) as client:
        job = client.jobs.retrieve(second["id"])
        job.set_annotations(models.LabeledDataRequest(shapes=[polygon(ids, 2), skeleton(ids, 3)]))
        shapes = job.get_annotations().shapes
        assert [(s.frame, str(s.type), s.source) for s in shapes] == [
            (2, "polygon", "manual"),
            (3, "skeleton", "auto"),
        ]
        assert all(s.id for s in shapes) and all(e.id for e in shapes[1].elements)
        assert shapes[1].points == [] and [e.outside for e in shapes[1].elements] == [False, True]
        assert shapes[0].attributes[0].value == "87"

        job.update_annotations(
            models.PatchedLabeledDataRequest(shapes=[polygon(ids, 3, source="auto")]),
            action=AnnotationUpdateAction.CREATE,
        )
        after = job.get_annotations().shapes
        created = [s for s in after if s.id not in {s.id for s in shapes}]
        assert len(after) == 3 and len(created) == 1 and created[0].source == "auto"

        moved = {**polygon(ids, 2, x=3.0), "id": shapes[0].id}
        job.update_annotations(models.PatchedLabeledDataRequest(shapes=[moved]))  # action=update
        updated = {s.id: s for s in job.get_annotations().shapes}[shapes[0].id]
        assert updated.points[0] == 3.0

        job.remove_annotations(ids=[shapes[0].id])  # PATCH ?action=delete with that shape
        assert {s.id for s in job.get_annotations().shapes} == {shapes[1].id, created[0].id}

        with pytest.raises(ApiException) as outside:  # frame 0 is the first job's
            job.update_annotations(
                models.PatchedLabeledDataRequest(shapes=[polygon(ids, 0)]),
                action=AnnotationUpdateAction.CREATE,
            )
        assert outside.value.status == 400
        assert (
            raw_request(cvat_server, "PATCH", f"/api/jobs/{second['id']}/annotations?action=merge", {}) == 400
        )
        assert raw_request(cvat_server, "GET", f"/api/jobs/{second['id']}/annotations") == 200  # no slash

        # task-level writes are split over the jobs by frame
        data, _ = client.api_client.tasks_api.partial_update_annotations(
            "create",
            task.record["id"],
            patched_labeled_data_request=models.PatchedLabeledDataRequest(
                shapes=[polygon(ids, 0, source="auto"), polygon(ids, 3, source="auto")]
            ),
        )
        assert len(data.shapes) == 2
        assert len(client.jobs.retrieve(first["id"]).get_annotations().shapes) == 1
        assert len(client.tasks.retrieve(task.record["id"]).get_annotations().shapes) == 4

        job.remove_annotations()  # DELETE: the second job only
        assert job.get_annotations().shapes == []
        assert len(client.tasks.retrieve(task.record["id"]).get_annotations().shapes) == 1
    assert cvat_server.violations == []


def test_job_stage_state_and_the_derived_task_status(cvat_server, cvat_settings):
    from cvat_sdk.api_client import models

    _, task, (first, second) = seed(cvat_server)
    with connect(cvat_settings) as client:
        api = client.api_client.jobs_api

        def patch(job, **changes):
            request = models.PatchedJobWriteRequest(**changes)
            found, _ = api.partial_update(job["id"], patched_job_write_request=request)
            status = client.tasks.retrieve(task.record["id"]).status
            return (str(found.stage), str(found.state), str(found.status)), str(status)

        assert patch(first, state="in progress") == (
            ("annotation", "in progress", "annotation"),
            "annotation",
        )
        assert patch(first, stage="validation") == (("validation", "new", "validation"), "annotation")
        assert patch(first, stage="acceptance", state="in progress") == (
            ("acceptance", "in progress", "validation"),
            "annotation",
        )
        assert patch(first, state="completed") == (("acceptance", "completed", "completed"), "annotation")
        assert patch(second, stage="validation") == (("validation", "new", "validation"), "validation")
        assert patch(second, stage="acceptance", state="completed") == (
            ("acceptance", "completed", "completed"),
            "completed",
        )
        assert client.tasks.retrieve(task.record["id"]).jobs.completed == 2
        assert patch(second, stage="annotation") == (("annotation", "new", "annotation"), "annotation")
    assert cvat_server.violations == []


def test_webhook_events_signature_and_the_annotation_trap(cvat_server, cvat_settings, receiver):
    from cvat_sdk.api_client import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    project, task, (first, second) = seed(cvat_server)
    other, _, _ = seed(cvat_server, name="other")
    ids = label_ids(cvat_server, project["id"])
    with connect(cvat_settings) as client:
        hooks = client.api_client.webhooks_api

        def create(project_id, events, **extra):
            request = models.WebhookWriteRequest(
                target_url=receiver.url, type="project", project_id=project_id, events=events, **extra
            )
            return hooks.create(request)[0]

        hook = create(project["id"], ["update:job", "update:task"], secret="s3cret")
        create(project["id"], ["update:job"], is_active=False)  # never fires
        create(other["id"], ["update:job", "update:task"])  # another project's: never fires here
        creations = create(project["id"], ["create:task"])
        listed = hooks.list(project_id=project["id"])[0]
        assert listed.count == 3 and listed.results[0].id == hook.id

        jobs = client.api_client.jobs_api
        jobs.partial_update(
            first["id"], patched_job_write_request=models.PatchedJobWriteRequest(state="in progress")
        )
        assert cvat_server.wait_deliveries(5)
        (started,) = receiver.payloads()
        assert started["event"] == "update:job" and started["webhook_id"] == hook.id
        assert started["job"]["state"] == "in progress" and started["before_update"]["state"] == "new"
        assert set(started["before_update"]) == {"state", "updated_date"}
        assert set(started["sender"]) == {"url", "id", "username", "first_name", "last_name"}

        # the trap: an annotation upload emits update:job and update:task with only updated_date changed
        job_date, task_date = cvat_server.state.jobs[first["id"]]["updated_date"], task.record["updated_date"]
        client.jobs.retrieve(first["id"]).update_annotations(
            models.PatchedLabeledDataRequest(shapes=[polygon(ids, 0, source="auto")]),
            action=AnnotationUpdateAction.CREATE,
        )
        assert cvat_server.wait_deliveries(5)
        upload_job, upload_task = receiver.payloads()[1:]
        assert (upload_job["event"], upload_job["before_update"]) == (
            "update:job",
            {"updated_date": job_date},
        )
        assert upload_job["job"]["state"] == "in progress"  # unchanged: a trigger must look at before_update
        assert (upload_task["event"], upload_task["before_update"]) == (
            "update:task",
            {"updated_date": task_date},
        )

        # the task completes when its last job does (stage acceptance + state completed)
        for job in (first, second):
            request = models.PatchedJobWriteRequest(stage="acceptance", state="completed")
            jobs.partial_update(job["id"], patched_job_write_request=request)
        client.tasks.create(models.TaskWriteRequest(name="next", project_id=project["id"]))
        assert cvat_server.wait_deliveries(5)
        events = [(p["event"], p["webhook_id"]) for p in receiver.payloads()[3:]]
        assert events == [
            ("update:job", hook.id),
            ("update:job", hook.id),
            ("update:task", hook.id),
            ("create:task", creations.id),
        ]
        done = receiver.payloads()[5]
        assert done["task"]["status"] == "completed" and done["before_update"]["status"] == "annotation"
        assert "before_update" not in receiver.payloads()[6]

        for headers, body in receiver.got:  # signed over the raw body, only where a secret is set
            assert headers["Content-Type"] == "application/json"
            if json.loads(body)["webhook_id"] == hook.id:
                expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
                assert hmac.compare_digest(headers["X-Signature-256"], expected)
            else:
                assert "X-Signature-256" not in headers
            assert body == json.dumps(json.loads(body)).encode()  # json.dumps, default separators

        deliveries = hooks.list_deliveries(hook.id)[0]
        assert deliveries.count == 6 and {d.status_code for d in deliveries.results} == {200}
        assert (
            deliveries.results[0].response == '{"ok": true}' and deliveries.results[0].event == "update:task"
        )
        assert hooks.retrieve(hook.id)[0].last_status == 200
    assert len(cvat_server.deliveries) == 7
    assert cvat_server.violations == []


def test_ping_timeout_and_unreachable_receiver(cvat_server, cvat_settings, receiver):
    from cvat_sdk.api_client import models

    project, _, (job, _) = seed(cvat_server)
    slow = Receiver(delay_s=1.0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    try:
        with connect(cvat_settings) as client:
            hooks = client.api_client.webhooks_api

            def create(url, events):
                request = models.WebhookWriteRequest(
                    target_url=url, type="project", project_id=project["id"], events=events
                )
                return hooks.create(request)[0]

            hook = create(receiver.url, ["update:job"])
            delivery, _ = hooks.create_ping(hook.id)
            assert (delivery.event, delivery.status_code, delivery.webhook_id) == ("ping", 200, hook.id)
            ((headers, body),) = receiver.got
            ping = json.loads(body)
            assert set(ping) == {"event", "webhook", "sender"} and ping["event"] == "ping"
            assert ping["webhook"]["id"] == hook.id and ping["sender"]["username"] == "admin"
            assert "X-Signature-256" not in headers

            cvat_server.webhook_timeout_s = 0.3
            hooks.destroy(hook.id)
            create(slow.url, ["update:job"])
            request = models.PatchedJobWriteRequest(state="in progress")
            client.api_client.jobs_api.partial_update(job["id"], patched_job_write_request=request)
            assert cvat_server.wait_deliveries(5)
            assert (
                cvat_server.deliveries[-1]["status_code"] == 504
                and cvat_server.deliveries[-1]["response"] == ""
            )

            unreachable = create(f"http://127.0.0.1:{closed_port}/", ["update:job"])
            assert hooks.create_ping(unreachable.id)[0].status_code == 502
    finally:
        slow.shutdown()
        slow.server_close()
    assert cvat_server.violations == []


def test_an_annotators_edit_of_an_auto_shape_makes_it_semi_auto(cvat_server, cvat_settings):
    """CVAT's client (cvat-core ``computeNewSource``) marks an edited shape: auto and semi-auto ->
    semi-auto, consensus stays, anything else -> manual; the edit is a job-level update."""
    from cvat_sdk.api_client import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    from loopback.cvat_standin.server import compute_new_source

    project, _, (first, _) = seed(cvat_server)
    ids = label_ids(cvat_server, project["id"])
    with connect(cvat_settings) as client:
        job = client.jobs.retrieve(first["id"])
        job.update_annotations(
            models.PatchedLabeledDataRequest(
                shapes=[polygon(ids, 0, source="auto"), polygon(ids, 1, source="file"), polygon(ids, 1)]
            ),
            action=AnnotationUpdateAction.CREATE,
        )
        auto, imported, manual = job.get_annotations().shapes
        edited = cvat_server.state.edit_shape(auto.id, points=[2.0, 2.0, 7.0, 2.0, 7.0, 7.0])
        assert edited["source"] == "semi-auto"
        assert cvat_server.state.edit_shape(auto.id, points=[3.0, 3.0, 7.0, 2.0, 7.0, 7.0])["source"] == (
            "semi-auto"
        )
        assert cvat_server.state.edit_shape(imported.id, occluded=True)["source"] == "manual"
        assert cvat_server.state.edit_shape(manual.id, occluded=True)["source"] == "manual"
        after = {s.id: s for s in job.get_annotations().shapes}
        assert after[auto.id].source == "semi-auto" and after[auto.id].points[0] == 3.0
        assert (after[imported.id].source, after[imported.id].occluded) == ("manual", True)
        assert compute_new_source("consensus") == "consensus" and compute_new_source("file") == "manual"


def test_only_geometry_edits_make_an_auto_shape_semi_auto(cvat_server, cvat_settings):
    """cvat-core's Shape.save calls computeNewSource only when points, rotation, occluded, outside or
    z_order change: a relabel or an attribute edit leaves an auto shape ``auto``."""
    from cvat_sdk.api_client import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    project = cvat_server.state.add_project("reef", [*LABELS, {"name": "rock", "type": "polygon"}])
    task = cvat_server.state.add_task("t", project["id"], "train", segment_size=2)
    cvat_server.state.set_frames(task, FRAMES[:2])
    (first,) = cvat_server.state.task_jobs(task)
    ids = label_ids(cvat_server, project["id"])
    with connect(cvat_settings) as client:
        job = client.jobs.retrieve(first["id"])
        job.update_annotations(
            models.PatchedLabeledDataRequest(
                shapes=[polygon(ids, 0, source="auto"), polygon(ids, 1, "auto")]
            ),
            action=AnnotationUpdateAction.CREATE,
        )
        a, b = sorted(job.get_annotations().shapes, key=lambda s: s.frame)
    relabelled = cvat_server.state.edit_shape(a.id, label_id=ids["rock"], attributes=[])
    assert (relabelled["source"], relabelled["label_id"]) == ("auto", ids["rock"])
    retyped = cvat_server.state.edit_shape(b.id, attributes=[{"spec_id": ids["confidence"], "value": "12"}])
    assert (retyped["source"], retyped["attributes"][0]["value"]) == ("auto", "12")
    for change in ({"z_order": 3}, {"rotation": 10.0}, {"outside": True}, {"points": [2.0, 2, 6, 1, 6, 6]}):
        fresh = cvat_server.state.edit_shape(b.id, **change)
        assert fresh["source"] == "semi-auto", change
        cvat_server.state.tasks[task.record["id"]].shapes[-1]["source"] = "auto"  # back, for the next change


def test_a_create_answered_504_can_be_committed_seconds_later(cvat_server, cvat_settings):
    """A proxy's 504 usually comes while CVAT is still writing: ``commit_late`` answers at once and
    carries the request out ``delay_s`` later."""
    from cvat_sdk.api_client import models
    from cvat_sdk.api_client.exceptions import ApiException

    project, _, (first, _) = seed(cvat_server)
    ids = label_ids(cvat_server, project["id"])
    cvat_server.commit_late = [("PATCH", r"/api/jobs/\d+/annotations", 504, 6.0)]
    with connect(cvat_settings) as client:
        api = client.api_client.jobs_api
        request = models.PatchedLabeledDataRequest(
            shapes=[models.LabeledShapeRequest(**polygon(ids, 0, "auto"))]
        )
        start = time.perf_counter()
        with pytest.raises(ApiException) as raised:
            api.partial_update_annotations("create", first["id"], patched_labeled_data_request=request)
        assert raised.value.status == 504 and time.perf_counter() - start < 3.0
        assert client.jobs.retrieve(first["id"]).get_annotations().shapes == []  # not yet
        deadline = time.monotonic() + 60
        while not cvat_server.late_commits and time.monotonic() < deadline:
            time.sleep(0.1)
        (stored,) = client.jobs.retrieve(first["id"]).get_annotations().shapes
        assert (stored.frame, stored.source) == (0, "auto")
    assert cvat_server.commit_late == [] and len(cvat_server.late_commits) == 1


@pytest.mark.parametrize(
    ("target_url", "status"),
    [
        ("http://bridge:8000/detect-model-webhook", 400),  # a single-label host: Django's URLField refuses
        ("http://nuclio-bridge:8000/x", 400),
        ("http://bridge.cvat.internal:8000/detect-model-webhook?model_name=a", 201),
        ("http://127.0.0.1:8000/x", 201),
        ("http://localhost:8000/x", 201),
        ("ftp2://bridge.cvat.internal/x", 400),
    ],
)
def test_webhook_target_urls_follow_djangos_url_rule(cvat_server, target_url, status):
    project, _, _ = seed(cvat_server)
    body = {
        "target_url": target_url,
        "type": "project",
        "project_id": project["id"],
        "events": ["update:job"],
    }
    assert raw_request(cvat_server, "POST", "/api/webhooks", body) == status
