"""The bridge for real: ``python -m bridge`` as a process, the CVAT stand-in delivering signed webhooks
like CVAT, the project's own Nuclio zips served over HTTP, everything driven with cvat-sdk.

An annotator's day, three stages: a corner task is opened (pre-annotated), corrected and completed;
the bridge creates the warped task in the grid project and opens it (pre-annotated), the grid is
corrected and completed; the bridge creates the grid-free task in the coral project and opens it,
which pre-annotates the corals.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from tiny_models import confident_copy, tiny_lama_file

from bridge.app import signed_path
from loopback.harness import (
    BridgeProcess,
    FunctionProcess,
    add_webhooks,
    bridge_environment,
    correct_and_complete,
    skeleton_shapes,
    three_stage_day,
    unpack_zip,
    wait_for,
)
from quadratseg.cvat_client import Cvat, connect
from quadratseg.formats.cvat_labels import labels_to_raw_config
from quadratseg.labelsets import CORNER_LABEL, coral_labels, corner_labels, grid_labels
from quadratseg.settings import Settings

pytestmark = pytest.mark.shared_data

SECRET = "s3cret"


def bridge_env(cvat_server, tmp_path, functions, **extra):
    quick = {
        "CVAT_RETRIES": "2",
        "CVAT_TIMEOUT_S": "10",
        "BRIDGE_FUNCTION_RETRIES": "2",
        "BRIDGE_FUNCTION_TIMEOUT_S": "60",
        "BRIDGE_CREATE_SETTLE_S": "5",
    }
    return bridge_environment(cvat_server.url, tmp_path / "bridge", functions, SECRET, **{**quick, **extra})


def settings_for(cvat_server):
    return Settings(cvat_host=cvat_server.url, cvat_username="admin", cvat_password="admin-password")


@pytest.fixture(scope="module")
def function_dirs(tiny_corner_model, tiny_grid_model, tiny_seg_model, tmp_path_factory):
    """The corner, grid, coral and grid-removal zips the project builds, unpacked as Nuclio would get
    them (the LaMa zip around a TorchScript stand-in with big-lama's signature)."""
    from coral_seg_yolo.deploy_as_zip import deploy_as_zip as seg_zip
    from grid_inpainting.deploy_as_zip import deploy_as_zip as lama_zip
    from grid_pose_detection.deploy_as_zip import deploy_as_zip as pose_zip
    from quadratseg.keypoints import corner_template_xy, grid_template_xy, save_template

    root = tmp_path_factory.mktemp("zips")
    corners = save_template(corner_template_xy(), root / "corners.npy")
    grid = save_template(grid_template_xy(), root / "grid.npy")
    # 1-epoch models made confident, so the answers are not empty (tests/tiny_models.py)
    corner_weights = confident_copy(tiny_corner_model[0], root / "corners.pt")
    grid_weights = confident_copy(tiny_grid_model[0], root / "grid.pt")
    zips = {
        "pth-yolo-gridcorners": pose_zip(
            "pth-yolo-gridcorners", str(corner_weights), str(corners), output=str(root / "c")
        ),
        "pth-yolo-gridpose": pose_zip(
            "pth-yolo-gridpose", str(grid_weights), str(grid), output=str(root / "g")
        ),
        "pth-yolo-coralsegv4": seg_zip("pth-yolo-coralsegv4", str(tiny_seg_model[0]), output=str(root / "s")),
        "pth-lama": lama_zip("pth-lama", str(tiny_lama_file(root / "big-lama.pt")), str(root / "l")),
    }
    return {name: unpack_zip(path, root / f"{name}-unzipped") for name, path in zips.items()}


@pytest.fixture
def functions(function_dirs):
    running = FunctionProcess.start_all(function_dirs)
    yield {name: f.url for name, f in running.items()}
    for f in running.values():
        f.stop()


def test_three_stage_chain_from_a_corner_task_to_pre_annotated_coral_jobs(
    cvat_server, functions, synthetic_set, tmp_path
):
    from quadratseg.images import decode_image_rgb
    from quadratseg.synth.dataset import export_image_path, load_truth
    from quadratseg.warp import quadrat_homography, warp_image

    truths = load_truth(synthetic_set)[:3]
    state = cvat_server.state
    state.add_project("corners", labels_to_raw_config(corner_labels()))
    state.add_project("grid", labels_to_raw_config(grid_labels()))
    state.add_project("corals", labels_to_raw_config(coral_labels(level="main_family")))
    bridge = BridgeProcess(
        bridge_env(
            cvat_server,
            tmp_path,
            functions,
            BRIDGE_INPAINT="pth-lama",  # over HTTP, the zip's own mask and inpainting code
            BRIDGE_WARP_SIZE=str(truths[0]["warped_size"][0]),
        ),
        log_path=tmp_path / "bridge.log",
    ).start()
    photos = [
        export_image_path(synthetic_set / "cvat_exports" / "corners", t["subset"], t["name"]) for t in truths
    ]
    try:
        with connect(settings_for(cvat_server)) as client:
            projects = {p["name"]: p["id"] for p in state.projects.values()}
            add_webhooks(client, bridge.url, projects, SECRET, thresholds={"corals": 0.0})
            day = three_stage_day(cvat_server, bridge, client, photos, {t["name"]: t for t in truths})
            cvat = Cvat(client)
            seen = day["seen"]
            # 1. opening the corner job pre-annotated it (the detection job's shapes are in CVAT)
            (detect,) = seen["after_corners"]
            assert (
                detect["kind"] == "detect" and detect["state"] == "done" and detect["result"]["frames"] == 3
            )
            assert len(seen["corner_auto"]) == detect["result"]["shapes"]
            assert all(s.type.value == "skeleton" and len(s.elements) == 4 for s in seen["corner_auto"])
            # 2. the warped task: same subset and file stems, opened, its grid pre-annotated
            warped = day["warped"]
            assert warped["subset"] == "train" and warped["project_id"] == projects["grid"]
            stems = [Path(n).stem for n in day["frame_names"]]
            assert [Path(n).stem for n in day["warped_names"]] == stems
            assert day["jobs"]["grid"]["state"] == "in progress"
            (grid_detect,) = [
                j for j in seen["after_warp"] if j["kind"] == "detect" and j["id"] != detect["id"]
            ]
            assert grid_detect["state"] == "done" and grid_detect["result"]["frames"] == 3
            assert len(seen["grid_auto"]) == grid_detect["result"]["shapes"]  # a 1-epoch model: maybe none
            assert all(len(s.elements) == 117 for s in seen["grid_auto"])
            # the warped frame is the quadrat of the raw photo, as the project's own warp makes it
            first = day["frame_names"].index(truths[0]["name"])
            size = tuple(truths[0]["warped_size"])
            expected = warp_image(
                decode_image_rgb(photos[0].read_bytes()),
                quadrat_homography(day["corners"][first], size),
                size,
            )
            got = decode_image_rgb(cvat.task_frame_bytes(warped["id"], first))
            assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() < 4
            # 3. the grid-free task in the coral project, its job pre-annotated with polygons
            assert [Path(n).stem for n in day["clean_names"]] == stems
            jobs = seen["after_clean"]
            kinds = sorted((j["kind"], j["state"]) for j in jobs)
            assert kinds == [("detect", "done")] * 3 + [("remove_grid", "done"), ("warp", "done")], jobs
            coral_job = day["jobs"]["corals"]
            coral_detect = next(j for j in jobs if j["params"].get("job_id") == coral_job["id"])
            assert coral_detect["result"]["frames"] == 3 and not coral_detect["result"]["failed_frames"]
            coral_ids = {lab["id"] for lab in cvat.labels(project_id=projects["corals"])}
            assert len(seen["coral_auto"]) == coral_detect["result"]["shapes"] > 0
            assert sorted(s.id for s in seen["coral_auto"]) == coral_detect["result"]["shape_ids"]
            assert all(s.type.value == "polygon" and s.label_id in coral_ids for s in seen["coral_auto"])
            # the grid-free frames differ from the warped ones under the grid only
            clean = decode_image_rgb(cvat.task_frame_bytes(day["clean"]["id"], first)).astype(int)
            assert 0 < np.abs(clean - got).mean() < 40

        # our own uploads fired update:job deliveries (only updated_date changed): none looped
        touches = [
            d
            for d in cvat_server.deliveries
            if d["event"] == "update:job" and set(d["payload"].get("before_update", {})) == {"updated_date"}
        ]
        assert touches, "the stand-in should deliver the update:job an annotation upload causes"
        assert len([j for j in bridge.jobs() if j["kind"] == "detect"]) == 3
        assert all(d["status_code"] in (200, 202) for d in cvat_server.deliveries), [
            (d["event"], d["status_code"]) for d in cvat_server.deliveries
        ]
        # a task completed twice (its task and its last job both say so) made one warped task
        answers = [json.loads(d["response"] or "{}").get("status") for d in cvat_server.deliveries]
        assert answers.count("duplicate") >= 2
    finally:
        bridge.stop()


# ---------------------------------------------------------------- robustness with a function double


class SlowEmptyFunction:
    """A detector that answers ``answer`` (default ``[]``) after ``delay_s``, counting calls, and
    garbage on every ``garbage_every``-th call."""

    def __init__(self, delay_s=0.0, garbage_every=0, answer=b"[]", on_call=None):
        self.calls, self.delay_s = 0, delay_s
        self.status = 200  # or a callable of the call's number; not 200: the call is answered with it
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                double.calls += 1
                if on_call is not None:
                    on_call(double.calls)  # what happens in CVAT while the frame is answered
                time.sleep(double.delay_s)
                body = b"<garbage" if garbage_every and double.calls % garbage_every == 0 else answer
                status = double.status(double.calls) if callable(double.status) else double.status
                if status != 200:
                    body = b"unavailable"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def detect_url(bridge, model_name, project_id, **more):
    """The signed URL of a project's detection webhook (as python -m bridge.urls makes it)."""
    return bridge.url + signed_path(
        SECRET, "/detect-model-webhook", model_name=model_name, project_id=project_id, **more
    )


def signed_post(url, payload):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    start = time.perf_counter()
    answer = httpx.post(url, content=body, headers={"X-Signature-256": signature}, timeout=30)
    return answer, time.perf_counter() - start


def opened_job_payload(job):
    return {
        "event": "update:job",
        "job": {**job, "state": "in progress"},
        "before_update": {"state": "new", "updated_date": job["updated_date"]},
        "webhook_id": 1,
        "sender": {"url": "", "id": 1, "username": "admin", "first_name": "", "last_name": ""},
    }


def tiny_photos(folder, n):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"q_{i:03d}.png"
        Image.new("RGB", (32, 24), (i % 255, 90, 160)).save(path)
        paths.append(path)
    return paths


def test_a_500_frame_job_is_acknowledged_at_once_and_survives_a_restart(cvat_server, tmp_path):
    function = SlowEmptyFunction(delay_s=0.01)
    project = cvat_server.state.add_project(
        "corals", labels_to_raw_config(coral_labels(level="main_family"))
    )["id"]
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project, "big", "train", tiny_photos(tmp_path / "photos", 500))
        (job,) = cvat.task_jobs(task["id"])
    env = bridge_env(cvat_server, tmp_path, {"fn": function.url}, BRIDGE_FUNCTION_IN_FLIGHT="1")
    bridge = BridgeProcess(env, workers=1, log_path=tmp_path / "bridge.log").start()
    url = detect_url(bridge, "fn", project_id=project)
    answer, seconds = signed_post(url, opened_job_payload(job))
    assert answer.status_code == 202 and seconds < 5.0  # within CVAT's 10 s, not after the 500 frames
    job_id = answer.json()["job_id"]
    wait_for(lambda: bridge.job(job_id)["progress"] >= 100, 120, "100 frames")
    bridge.stop(kill=True)  # a crash in the middle of the job
    calls_before = function.calls
    bridge = BridgeProcess(env, workers=1, log_path=tmp_path / "bridge.log").start()
    try:
        done = bridge.wait_job(job_id, 300)
        assert done["state"] == "done" and done["result"]["frames"] == 500 and done["attempts"] == 2
        assert function.calls - calls_before <= 500 - 100 + 2  # the answered frames were not asked again
        again, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        assert again.json()["status"] == "duplicate"  # the job store outlived the process
    finally:
        bridge.stop()


def test_a_task_whose_data_upload_failed_is_removed_by_id_and_a_namesake_is_left_alone(cvat_server, tmp_path):
    """A derived task's data upload failed: the cleanup deleted whatever task of the project had its
    name (another worker's finished one after a takeover, or someone's own). Only the task this
    attempt created goes, and nothing half-made is left."""
    project = cvat_server.state.add_project("warped", labels_to_raw_config(grid_labels()))["id"]
    photos = tiny_photos(tmp_path / "photos", 2)
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        namesake = cvat.create_task(project, "batch_01_warped", "train", photos)
        cvat_server.fail_next = [("POST", r"/api/tasks/\d+/data", 503)]
        with pytest.raises(Exception, match="503"):
            cvat.create_task(project, "batch_01_warped", "train", photos)
        left = {i: t for i, t in cvat_server.state.tasks.items() if t.record["name"] == "batch_01_warped"}
    assert list(left) == [namesake["id"]] and left[namesake["id"]].frames


def test_cvat_down_during_the_upload_leaves_no_half_written_annotations(cvat_server, tmp_path):
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(garbage_every=3, answer=json.dumps(polygon).encode())  # 1 in 3: garbage
    project = cvat_server.state.add_project(
        "corals", labels_to_raw_config(coral_labels(level="main_family"))
    )["id"]
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project, "t", "val", tiny_photos(tmp_path / "photos", 6))
        (job,) = cvat.task_jobs(task["id"])
    bridge = BridgeProcess(
        bridge_env(cvat_server, tmp_path, {"fn": function.url}, BRIDGE_JOB_RETRIES="0"),
        log_path=tmp_path / "b.log",
    ).start()
    try:
        # CVAT answers 503 to every annotation upload for a while: retries, then a recorded failure
        cvat_server.fail_next = [("PATCH", r"/api/jobs/\d+/annotations", 503)] * 10
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        done = bridge.wait_job(answer.json()["job_id"])
        assert done["state"] == "failed" and "uploading" in done["error"]
        assert cvat_server.state.tasks[task["id"]].shapes == []
        # a function answering garbage on some frames: those frames are recorded, the others go on
        cvat_server.fail_next = []
        later = {**job, "updated_date": "2026-12-02T00:00:00.000000Z"}
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(later))
        done = bridge.wait_job(answer.json()["job_id"])
        assert done["state"] == "done" and len(done["result"]["failed_frames"]) == 2
        assert all("not JSON" in why for why in done["result"]["failed_frames"].values())
        stored = cvat_server.state.tasks[task["id"]].shapes
        assert len(stored) == 4 and {s["source"] for s in stored} == {"auto"}
    finally:
        bridge.stop()


def test_a_detection_stopped_by_an_outage_runs_again_on_its_own_once_cvat_is_back(cvat_server, tmp_path):
    """CVAT refuses the annotation uploads for a while: the job waits out its back-off in the queue
    (its error on the record) and runs again by itself, with no delivery from CVAT, which does not
    resend an answered one; the frames land once. After its last retry a job fails, saying so."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 3)
    # a back-off long enough to see the job wait and end the outage before its retry
    env = bridge_env(
        cvat_server, tmp_path, {"fn": function.url},
        BRIDGE_JOB_RETRIES="2", BRIDGE_JOB_RETRY_S="4", BRIDGE_LEASE_S="5",
    )  # fmt: skip
    bridge = BridgeProcess(env, log_path=tmp_path / "b.log").start()
    try:
        cvat_server.fail_next = [("PATCH", r"/api/jobs/\d+/annotations", 503)] * 1000
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        job_id = answer.json()["job_id"]
        waiting = bridge.wait_back_in_queue(job_id, 60)
        assert "uploading" in waiting["error"] and waiting["attempts"] == 1 and waiting["not_before"]
        cvat_server.fail_next = []  # CVAT is back
        done = bridge.wait_job(job_id, timeout_s=60)
        assert done["state"] == "done" and done["attempts"] == 2 and done["outages"] == 1
        stored = cvat_server.state.tasks[job["task_id"]].shapes
        assert sorted(s["frame"] for s in stored) == [0, 1, 2]  # one copy per frame
        # an outage that outlasts the retries: failed after 3 attempts, the error says what to do
        cvat_server.fail_next = [("PATCH", r"/api/jobs/\d+/annotations", 503)] * 10_000
        other = {**job, "updated_date": "2026-12-02T00:00:00.000000Z"}
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(other))
        failed = bridge.wait_job(answer.json()["job_id"], timeout_s=90)
        assert failed["state"] == "failed" and failed["attempts"] == 3
        assert "after 3 attempts" in failed["error"] and "uploading" in failed["error"]
        # the function away (503 to every call, through its own retries): the job waits, not the frames
        cvat_server.fail_next = []
        function.status = 503
        third = {**job, "updated_date": "2026-12-03T00:00:00.000000Z"}
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(third))
        job_id = answer.json()["job_id"]
        waiting = bridge.wait_back_in_queue(job_id, 60)
        assert "FunctionUnavailableError" in waiting["error"] and "HTTP 503" in waiting["error"]
        function.status = 200
        done = bridge.wait_job(job_id, timeout_s=60)
        assert done["state"] == "done" and done["outages"] == 1 and done["result"]["failed_frames"] == {}
        # a 500 is the handler failing on the request (Nuclio's answer to an exception), not the
        # function away: the frames fail one by one and the job with them, no outage, no wait
        function.status = 500
        fourth = {**job, "updated_date": "2026-12-04T00:00:00.000000Z"}
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(fourth))
        failed = bridge.wait_job(answer.json()["job_id"], timeout_s=60)
        assert failed["state"] == "failed" and failed["outages"] == 0 and failed["attempts"] == 1
        assert "every frame failed" in failed["error"] and "HTTP 500" in failed["error"]
    finally:
        cvat_server.fail_next = []
        bridge.stop()


def test_a_detection_waiting_out_an_outage_never_replaces_a_later_ones_shapes(cvat_server, tmp_path):
    """Detection A stops on an outage and waits; meanwhile the job is sent for detection again (B),
    which runs once CVAT is back and replaces A's shapes. When A's turn comes it is superseded: it
    does not upload again nor remove B's shapes."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 2)
    env = bridge_env(cvat_server, tmp_path, {"fn": function.url}, BRIDGE_JOB_RETRY_S="4", BRIDGE_LEASE_S="5")
    bridge = BridgeProcess(env, log_path=tmp_path / "b.log").start()
    try:
        cvat_server.fail_next = [("PATCH", r"/api/jobs/\d+/annotations", 503)] * 1000
        url = detect_url(bridge, "fn", project_id=project)
        first = signed_post(url, opened_job_payload(job))[0].json()["job_id"]
        bridge.wait_back_in_queue(first, 60)
        cvat_server.fail_next = []
        later = {**job, "updated_date": "2026-12-02T00:00:00.000000Z"}
        second = signed_post(url, opened_job_payload(later))[0].json()["job_id"]
        assert second != first and bridge.wait_job(second, timeout_s=60)["state"] == "done"
        shapes_of_b = sorted(s["id"] for s in cvat_server.state.tasks[job["task_id"]].shapes)
        a = bridge.wait_job(first, timeout_s=60)
        assert a["state"] == "skipped" and f"superseded by bridge job {second}" in a["result"]["reason"]
        assert sorted(s["id"] for s in cvat_server.state.tasks[job["task_id"]].shapes) == shapes_of_b
        assert len(shapes_of_b) == 2  # one per frame, B's
    finally:
        cvat_server.fail_next = []
        bridge.stop()


def test_detection_again_replaces_its_own_shapes_and_never_manual_ones(cvat_server, tmp_path):
    from cvat_sdk import models

    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project = cvat_server.state.add_project(
        "corals", labels_to_raw_config(coral_labels(level="main_family"))
    )["id"]
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project, "t", "val", tiny_photos(tmp_path / "photos", 2))
        (job,) = cvat.task_jobs(task["id"])
        label_id = cvat.labels(project_id=project)[0]["id"]
        manual = {"type": "polygon", "frame": 0, "label_id": label_id, "points": [2, 2, 5, 2, 5, 5]}
        client.jobs.retrieve(job["id"]).set_annotations(models.LabeledDataRequest(shapes=[manual]))
        bridge = BridgeProcess(bridge_env(cvat_server, tmp_path, {"fn": function.url})).start()
        try:
            url = detect_url(bridge, "fn", project_id=project)
            results = []
            for updated in ("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"):  # opened, later reopened
                answer, _ = signed_post(url, opened_job_payload({**job, "updated_date": updated}))
                job_id = answer.json()["job_id"]
                results.append(bridge.wait_job(job_id, 60))
                assert results[-1]["state"] == "done", results[-1]
                shapes = client.jobs.retrieve(job["id"]).get_annotations().shapes
                # frame 0 holds a person's shape: never pre-annotated; frame 1 gets the function's
                assert sorted((s.frame, s.source) for s in shapes) == [(0, "manual"), (1, "auto")]
                assert [s.points for s in shapes if s.source == "manual"] == [[2, 2, 5, 2, 5, 5]]
                assert results[-1]["result"]["skipped_frames"] == [0]
        finally:
            bridge.stop()
    first, second = results
    assert second["result"]["replaced"] == 1 and not set(first["result"]["shape_ids"]) & set(
        second["result"]["shape_ids"]
    )


def test_frames_over_the_functions_body_limit_are_downscaled_and_mapped_back(
    cvat_server, function_dirs, synthetic_set, tmp_path
):
    import base64

    from PIL import Image

    from quadratseg.synth.dataset import export_image_path, load_truth

    limit = 150_000
    function = FunctionProcess(function_dirs["pth-yolo-coralsegv4"], max_body=limit).start()
    t = load_truth(synthetic_set)[0]
    photo = Image.open(
        export_image_path(synthetic_set / "cvat_exports" / "segmentation", t["subset"], t["name"])
    )
    (tmp_path / "big").mkdir()
    big = tmp_path / "big" / "big_2024_001.png"
    photo.convert("RGB").resize((1024, 1024), Image.Resampling.BICUBIC).save(big)
    too_big = json.dumps({"image": base64.b64encode(big.read_bytes()).decode()})
    assert len(too_big) > limit
    assert httpx.post(function.url, content=too_big, timeout=30).status_code == 413  # as Nuclio answers
    project = cvat_server.state.add_project(
        "corals", labels_to_raw_config(coral_labels(level="main_family"))
    )["id"]
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project, "big", "test", [big])
        (job,) = cvat.task_jobs(task["id"])
    env = bridge_env(
        cvat_server, tmp_path, {"pth-yolo-coralsegv4": function.url}, BRIDGE_FUNCTION_BODY_LIMIT=str(limit)
    )
    bridge = BridgeProcess(env, log_path=tmp_path / "bridge.log").start()
    try:
        url = detect_url(bridge, "pth-yolo-coralsegv4", project_id=project, threshold=0.0)
        answer, _ = signed_post(url, opened_job_payload(job))
        job_id = answer.json()["job_id"]
        done = bridge.wait_job(job_id, 120)
        assert done["state"] == "done" and not done["result"]["failed_frames"], done
        shapes = cvat_server.state.tasks[task["id"]].shapes
        assert shapes and len(shapes) == done["result"]["shapes"]
        assert {s["type"] for s in shapes} == {"mask"}
        boxes = [s["points"][-4:] for s in shapes]  # a mask's points: run lengths, then its box
        assert (
            max(b[2] for b in boxes) <= 1023 and max(b[2] for b in boxes) > 600
        )  # frame pixels, not sent ones
    finally:
        bridge.stop()
        function.stop()


@pytest.mark.parametrize(
    "function_limit",
    [None, 4 * 1024 * 1024],  # the limit the project's functions declare; Nuclio's stock default
    ids=["declared-limit", "nuclio-default-4MiB"],
)
def test_grid_removal_of_a_1920_px_quadrat_works_with_default_settings(
    cvat_server, shared_data, tmp_path, function_limit
):
    """N3: the grid-removal frame went as a PNG outside the frame encoder (about 8 MB of JSON at 1920 px)
    and failed the job against a 4 MiB limit. The pth-lama zip with its OpenCV backend stands in for
    LaMa; the bridge runs with default settings (the function's address aside) unless the function has
    Nuclio's stock 4 MiB limit, which the bridge is then told (BRIDGE_FUNCTION_BODY_LIMIT)."""
    from PIL import Image

    from grid_inpainting.deploy_as_zip import deploy_as_zip as lama_zip
    from grid_inpainting.inpaint import OpenCVBackend, remove_grid
    from quadratseg.images import decode_image_rgb
    from quadratseg.keypoints import grid_template_xy
    from quadratseg.settings import FUNCTION_BODY_LIMIT

    zip_path = lama_zip("pth-lama", None, str(tmp_path / "lama"), backend="opencv-telea")
    function_dir = unpack_zip(zip_path, tmp_path / "lama-unzipped")
    name = "AUSTRALES_AUS_RAI1###20M###20190504_UTP_QUADRAT_AUSRAI1_20M_5.jpg"  # 1024 px, 6.2 MB as a PNG
    photo = Image.open(shared_data / "real_quadrats" / "coralscop" / name).convert("RGB")
    quadrat = tmp_path / "quadrat" / "moorea_2023_001.jpg"
    quadrat.parent.mkdir()
    photo.resize((1920, 1920), Image.Resampling.BICUBIC).save(quadrat, "JPEG", quality=95)
    project = cvat_server.state.add_project("grid", labels_to_raw_config(grid_labels()))["id"]
    target = cvat_server.state.add_project("corals", labels_to_raw_config(coral_labels(level="main_family")))
    points = grid_template_xy() * 1920
    function = FunctionProcess(function_dir, max_body=function_limit).start()
    extra = {} if function_limit is None else {"BRIDGE_FUNCTION_BODY_LIMIT": str(function_limit)}
    bridge = BridgeProcess(
        bridge_env(cvat_server, tmp_path, {"pth-lama": function.url}, **extra), log_path=tmp_path / "b.log"
    ).start()
    try:
        with connect(settings_for(cvat_server)) as client:
            cvat = Cvat(client)
            task = cvat.create_task(project, "moorea_2023_batch_01_warped", "train", [quadrat])
            (job,) = cvat.task_jobs(task["id"])
            label = next(lab for lab in cvat.labels(project_id=project) if lab["name"] == "grid")
            correct_and_complete(client, job["id"], skeleton_shapes({0: points}, label))
            url = bridge.url + signed_path(
                SECRET,
                "/remove-grid-and-create-new-task-webhook",
                target_proj_id=target["id"],
                project_id=project,
            )
            completed = {
                "event": "update:task",
                "task": {**cvat.task(task["id"]), "status": "completed"},
                "before_update": {"status": "annotation"},
                "webhook_id": 1,
                "sender": {"url": "", "id": 1, "username": "admin", "first_name": "", "last_name": ""},
            }
            answer, _ = signed_post(url, completed)
            assert answer.status_code == 202, answer.text
            done = bridge.wait_job(answer.json()["job_id"], 300)
            assert done["state"] == "done" and done["result"]["created"], done
            assert done["result"]["frames"] == 1 and done["result"]["failed_frames"] == {}
            clean = decode_image_rgb(cvat.task_frame_bytes(done["result"]["task_id"], 0)).astype(int)
        original = decode_image_rgb(quadrat.read_bytes())
        assert clean.shape == original.shape == (1920, 1920, 3)
        # what the function's own code makes of the full-size frame, in process (the zip runs the same)
        (expected,) = remove_grid([original], [points], OpenCVBackend("telea"))
        changed = np.abs(expected.image.astype(int) - original).max(axis=2) > 0
        assert 0.05 < changed.mean() < 0.5  # the strings were inpainted, the rest kept
        error = np.abs(clean - expected.image.astype(int)).mean(axis=2)
        assert error[changed].mean() < 4 and error[~changed].mean() < 2  # JPEG's loss, no resampling
    finally:
        bridge.stop()
        function.stop()
    assert FUNCTION_BODY_LIMIT == 128 * 1024 * 1024


def coral_job(cvat_server, tmp_path, frames):
    """A coral project with one task of ``frames`` tiny photos: (project id, JobRead dict)."""
    project = cvat_server.state.add_project(
        "corals", labels_to_raw_config(coral_labels(level="main_family"))
    )["id"]
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project, "t", "val", tiny_photos(tmp_path / "photos", frames))
        (job,) = cvat.task_jobs(task["id"])
    return project, job


def test_a_review_loop_never_puts_auto_shapes_on_an_annotators_corrections(cvat_server, tmp_path):
    """N4: reject -> in progress and completed -> in progress re-ran detection, and the new auto shapes
    landed beside the ones the annotator had corrected (semi-auto). Now only new -> in progress or an
    explicit request runs it, and a frame a person worked on is never pre-annotated again."""
    from cvat_sdk import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 3)
    bridge = BridgeProcess(bridge_env(cvat_server, tmp_path, {"fn": function.url})).start()
    try:
        with connect(settings_for(cvat_server)) as client:
            first, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
            assert bridge.wait_job(first.json()["job_id"])["state"] == "done"
            shapes = sorted(client.jobs.retrieve(job["id"]).get_annotations().shapes, key=lambda s: s.frame)
            assert [(s.frame, s.source) for s in shapes] == [(0, "auto"), (1, "auto"), (2, "auto")]
            # the annotator corrects frame 0's colony (CVAT's UI makes it semi-auto) and draws one on 1
            corrected = cvat_server.state.edit_shape(shapes[0].id, points=[2.0, 2.0, 8.0, 2.0, 8.0, 8.0])
            assert corrected["source"] == "semi-auto"
            label_id = shapes[0].label_id
            drawn = {"type": "polygon", "frame": 1, "label_id": label_id, "points": [3, 3, 6, 3, 6, 6]}
            client.jobs.retrieve(job["id"]).update_annotations(
                models.PatchedLabeledDataRequest(shapes=[drawn]), action=AnnotationUpdateAction.CREATE
            )
            # a reviewer rejects the job, the annotator reopens it; later it is completed and reopened
            calls = function.calls
            for before in ("rejected", "completed"):
                reopened = opened_job_payload({**job, "updated_date": f"2026-12-0{len(before)}T00:00:00Z"})
                reopened["before_update"]["state"] = before
                answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), reopened)
                assert answer.status_code == 200 and answer.json()["status"] == "ignored", answer.text
            assert function.calls == calls and len(bridge.jobs()) == 1
            # detection asked for explicitly (ops, with the token): frame 2 only is pre-annotated again
            asked = httpx.post(
                f"{bridge.url}/detect",
                params={"job_id": job["id"], "model_name": "fn"},
                headers=bridge.headers,
                timeout=10,
            )
            assert asked.status_code == 202, asked.text
            done = bridge.wait_job(asked.json()["job_id"])
            assert done["state"] == "done" and done["result"]["skipped_frames"] == [0, 1], done
            assert function.calls == calls + 1 and done["result"]["replaced"] == 1
            after = client.jobs.retrieve(job["id"]).get_annotations().shapes
            by_frame = sorted((s.frame, s.source, s.id) for s in after)
            assert [(f, src) for f, src, _ in by_frame] == [
                (0, "semi-auto"),
                (1, "auto"),
                (1, "manual"),
                (2, "auto"),
            ]
            assert by_frame[0][2] == shapes[0].id and by_frame[1][2] == shapes[1].id  # kept as they were
            assert by_frame[3][2] not in {s.id for s in shapes}  # frame 2's auto shape is the new one
            assert [s.points for s in after if s.source == "semi-auto"] == [[2.0, 2.0, 8.0, 2.0, 8.0, 8.0]]
    finally:
        bridge.stop()


def test_a_create_committed_but_answered_late_leaves_one_copy(cvat_server, tmp_path):
    """N13: CVAT stores the shapes, then its answer is lost (a proxy's 504): the bridge looks before it
    tries again, and the job ends with one copy. A plain retry would have stored two."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 2)
    bridge = BridgeProcess(bridge_env(cvat_server, tmp_path, {"fn": function.url})).start()
    try:
        cvat_server.fail_after_commit = [("PATCH", r"/api/jobs/\d+/annotations", 504)]
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        done = bridge.wait_job(answer.json()["job_id"])
        assert cvat_server.fail_after_commit == []  # the stand-in did store, then answered 504
        stored = cvat_server.state.tasks[job["task_id"]].shapes
        assert done["state"] == "done" and done["result"]["shapes"] == 2, done
        assert sorted(s["frame"] for s in stored) == [0, 1]  # one copy per frame
        assert sorted(s["id"] for s in stored) == done["result"]["shape_ids"]
        creates = [r for r in cvat_server.requests_seen if r[0] == "PATCH" and "annotations" in r[1]]
        assert len(creates) == 1  # looked, found them, did not send them again
    finally:
        bridge.stop()


def detect_on_request(bridge, job_id, model_name="fn"):
    asked = httpx.post(
        f"{bridge.url}/detect",
        params={"job_id": job_id, "model_name": model_name},
        headers=bridge.headers,
        timeout=10,
    )
    assert asked.status_code == 202, asked.text
    return bridge.wait_job(asked.json()["job_id"])


def test_a_relabelled_or_deleted_auto_shape_keeps_its_frame_the_annotators(cvat_server, tmp_path):
    """CVAT keeps a relabelled auto shape ``auto`` (cvat-core calls computeNewSource for geometry only) and
    a deleted one leaves no trace: the bridge compares the job with what it created (label, points,
    attributes per shape id) and leaves a frame whose auto shapes differ, or are gone, as it is."""
    from cvat_sdk import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction

    labels = coral_labels(level="main_family")
    genus, other = labels[0].name, labels[1].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 3)
    bridge = BridgeProcess(bridge_env(cvat_server, tmp_path, {"fn": function.url})).start()
    try:
        with connect(settings_for(cvat_server)) as client:
            first, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
            assert bridge.wait_job(first.json()["job_id"])["state"] == "done"
            shapes = sorted(client.jobs.retrieve(job["id"]).get_annotations().shapes, key=lambda s: s.frame)
            other_id = next(
                lab["id"] for lab in Cvat(client).labels(project_id=project) if lab["name"] == other
            )
            # the annotator fixes frame 0's genus (CVAT keeps it auto) and deletes frame 1's false positive
            relabelled = cvat_server.state.edit_shape(shapes[0].id, label_id=other_id, attributes=[])
            assert relabelled["source"] == "auto"
            client.jobs.retrieve(job["id"]).update_annotations(
                models.PatchedLabeledDataRequest(shapes=[models.LabeledShapeRequest(**shapes[1].to_dict())]),
                action=AnnotationUpdateAction.DELETE,
            )
            calls = function.calls
            done = detect_on_request(bridge, job["id"])
            assert done["state"] == "done" and done["result"]["skipped_frames"] == [0, 1], done
            assert function.calls == calls + 1 and done["result"]["replaced"] == 1
            # the job reset to new and opened again: the same
            reopened = opened_job_payload({**job, "updated_date": "2026-12-05T00:00:00Z"})
            again, _ = signed_post(detect_url(bridge, "fn", project_id=project), reopened)
            assert bridge.wait_job(again.json()["job_id"])["result"]["skipped_frames"] == [0, 1]
            after = sorted(client.jobs.retrieve(job["id"]).get_annotations().shapes, key=lambda s: s.frame)
            assert [(s.frame, s.label_id, s.source) for s in after] == [
                (0, other_id, "auto"),
                (2, shapes[2].label_id, "auto"),
            ]
            assert after[0].id == shapes[0].id and after[1].id not in {s.id for s in shapes}
    finally:
        bridge.stop()


def test_a_frame_the_annotator_works_on_during_inference_is_left_out_of_the_upload(cvat_server, tmp_path):
    """The webhook fires as the annotator opens the job: the frames a person touched are read again just
    before the upload, and their new auto shapes are dropped (listed as skipped)."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    project, job = coral_job(cvat_server, tmp_path, 3)
    label_id = cvat_server.state.project_labels(project)[0]["id"]
    drawn = {"type": "polygon", "frame": 0, "label_id": label_id, "points": [3, 3, 6, 3, 6, 6]}

    def annotator_draws_on_frame_0(call):
        if call == 3:  # frames 0 and 1 are answered, frame 2 is being answered
            with cvat_server.state.lock:
                cvat_server.state.write_job_annotations(
                    cvat_server.state.jobs[job["id"]], "create", {"shapes": [drawn]}
                )

    function = SlowEmptyFunction(answer=json.dumps(polygon).encode(), on_call=annotator_draws_on_frame_0)
    bridge = BridgeProcess(bridge_env(cvat_server, tmp_path, {"fn": function.url})).start()
    try:
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        done = bridge.wait_job(answer.json()["job_id"])
        assert done["state"] == "done" and done["result"]["skipped_frames"] == [0], done
        assert done["result"]["shapes"] == 2 and function.calls == 3
        stored = cvat_server.state.tasks[job["task_id"]].shapes
        assert sorted((s["frame"], s["source"]) for s in stored) == [(0, "manual"), (1, "auto"), (2, "auto")]
    finally:
        bridge.stop()


def test_each_upload_batch_reads_the_jobs_annotations_twice(cvat_server, tmp_path):
    """A 6-frame job uploaded 2 frames at a time: each batch reads the job's annotations once before its
    create (the annotator's frames and the shape ids before) and once after (the new shapes' ids and
    fingerprints), 2 reads a batch instead of 4 (a job's annotations are CVAT's slowest read); the
    fingerprints recorded are those of the shapes as stored."""
    from quadratseg.cvat_client import shape_fingerprint

    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    project, job = coral_job(cvat_server, tmp_path, 6)
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    env = bridge_env(cvat_server, tmp_path, {"fn": function.url}, BRIDGE_UPLOAD_BATCH="2")
    bridge = BridgeProcess(env).start()
    try:
        seen = len(cvat_server.requests_seen)
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        done = bridge.wait_job(answer.json()["job_id"])
        assert done["state"] == "done" and done["result"]["shapes"] == 6, done
        reads = [
            path
            for method, path in cvat_server.requests_seen[seen:]
            if method == "GET" and path.rstrip("/") == f"/api/jobs/{job['id']}/annotations"
        ]
        # 1 at the start (frames a person worked on), 2 for each of the 3 batches
        assert len(reads) == 1 + 2 * 3, reads
        stored = {
            str(s["id"]): [s["frame"], shape_fingerprint(s)]
            for s in cvat_server.state.tasks[job["task_id"]].shapes
        }
        assert done["result"]["fingerprints"] == stored
    finally:
        bridge.stop()


def test_a_create_answered_504_and_committed_seconds_later_leaves_one_copy(cvat_server, tmp_path):
    """A proxy's 504 arrives while CVAT is still writing: the bridge keeps looking (with back-off, up to
    BRIDGE_CREATE_SETTLE_S) before it sends the shapes again."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 2)
    env = bridge_env(cvat_server, tmp_path, {"fn": function.url}, BRIDGE_CREATE_SETTLE_S="20")
    bridge = BridgeProcess(env).start()
    try:
        cvat_server.commit_late = [("PATCH", r"/api/jobs/\d+/annotations", 504, 3.0)]
        start = time.perf_counter()
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        done = bridge.wait_job(answer.json()["job_id"])
        wait_for(lambda: cvat_server.late_commits, 15, "the create carried out late")
        assert cvat_server.commit_late == [] and time.perf_counter() - start > 3.0
        stored = cvat_server.state.tasks[job["task_id"]].shapes
        assert sorted(s["frame"] for s in stored) == [0, 1]  # one copy per frame
        assert done["state"] == "done" and sorted(s["id"] for s in stored) == done["result"]["shape_ids"]
    finally:
        bridge.stop()


def test_a_job_failed_after_an_unclear_create_resumes_without_a_second_copy(cvat_server, tmp_path):
    """The create is stored, its answer lost and CVAT unreadable afterwards: the job fails without shape
    ids. The redelivery re-queues it; the shapes noted as a pending create are found, not sent again."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 2)
    env = bridge_env(
        cvat_server, tmp_path, {"fn": function.url}, BRIDGE_CREATE_SETTLE_S="1", BRIDGE_JOB_RETRIES="0"
    )
    bridge = BridgeProcess(env).start()

    def cvat_unreadable_after_the_create():
        cvat_server.fail_next = [("GET", r"/api/jobs/\d+/annotations", 503)] * 1000

    try:
        cvat_server.on_request = [("PATCH", r"/api/jobs/\d+/annotations", cvat_unreadable_after_the_create)]
        cvat_server.fail_after_commit = [("PATCH", r"/api/jobs/\d+/annotations", 504)]
        url, payload = detect_url(bridge, "fn", project_id=project), opened_job_payload(job)
        answer, _ = signed_post(url, payload)
        failed = bridge.wait_job(answer.json()["job_id"])
        assert failed["state"] == "failed" and len(cvat_server.state.tasks[job["task_id"]].shapes) == 2
        cvat_server.fail_next = []
        again, _ = signed_post(url, payload)  # CVAT's redelivery of the same event
        assert again.status_code == 202 and again.json()["job_id"] == failed["id"]
        done = bridge.wait_job(failed["id"])
        stored = cvat_server.state.tasks[job["task_id"]].shapes
        assert sorted(s["frame"] for s in stored) == [0, 1]
        assert done["state"] == "done" and sorted(s["id"] for s in stored) == done["result"]["shape_ids"]
    finally:
        bridge.stop()


def test_a_job_waiting_after_an_unclear_create_resumes_by_itself_without_a_second_copy(cvat_server, tmp_path):
    """The same unclear create with the automatic retries on: no delivery comes again, the job waits
    out CVAT's outage, runs again by itself, and finds its pending create instead of sending it twice."""
    genus = coral_labels(level="main_family")[0].name
    polygon = [{"label": genus, "type": "polygon", "points": [1, 1, 9, 1, 9, 9], "confidence": "80"}]
    function = SlowEmptyFunction(answer=json.dumps(polygon).encode())
    project, job = coral_job(cvat_server, tmp_path, 2)
    env = bridge_env(
        cvat_server, tmp_path, {"fn": function.url},
        BRIDGE_CREATE_SETTLE_S="1", BRIDGE_JOB_RETRIES="3", BRIDGE_JOB_RETRY_S="2", BRIDGE_LEASE_S="5",
    )  # fmt: skip
    bridge = BridgeProcess(env, log_path=tmp_path / "b.log").start()

    def cvat_unreadable_after_the_create():
        cvat_server.fail_next = [("GET", r"/api/jobs/\d+/annotations", 503)] * 1000

    try:
        cvat_server.on_request = [("PATCH", r"/api/jobs/\d+/annotations", cvat_unreadable_after_the_create)]
        cvat_server.fail_after_commit = [("PATCH", r"/api/jobs/\d+/annotations", 504)]
        answer, _ = signed_post(detect_url(bridge, "fn", project_id=project), opened_job_payload(job))
        job_id = answer.json()["job_id"]
        waiting = bridge.wait_back_in_queue(job_id, 60)
        assert (
            waiting["result"].get("pending_create")
            and len(cvat_server.state.tasks[job["task_id"]].shapes) == 2
        )
        cvat_server.fail_next = []  # CVAT readable again; nobody sends the event again
        done = bridge.wait_job(job_id, timeout_s=60)
        stored = cvat_server.state.tasks[job["task_id"]].shapes
        assert sorted(s["frame"] for s in stored) == [0, 1]  # the create was found, not sent again
        assert done["state"] == "done" and sorted(s["id"] for s in stored) == done["result"]["shape_ids"]
        assert done["outages"] >= 1
    finally:
        cvat_server.fail_next = []
        bridge.stop()


def test_add_shapes_claims_only_the_shapes_it_sent(cvat_server, tmp_path):
    """Another detection's auto shape stored at the same moment is not counted as this create's."""
    labels = coral_labels(level="main_family")
    project, job = coral_job(cvat_server, tmp_path, 2)
    ids = {lab["name"]: lab["id"] for lab in cvat_server.state.project_labels(project)}
    ours = {"type": "polygon", "frame": 0, "label_id": ids[labels[0].name], "points": [1, 1, 9, 1, 9, 9]}
    theirs = {**ours, "label_id": ids[labels[1].name], "source": "auto", "frame": 1}

    def another_detection_stores_a_shape():
        with cvat_server.state.lock:
            cvat_server.state.write_job_annotations(
                cvat_server.state.jobs[job["id"]], "create", {"shapes": [theirs]}
            )

    cvat_server.on_request = [("PATCH", r"/api/jobs/\d+/annotations", another_detection_stores_a_shape)]
    with connect(settings_for(cvat_server)) as client:
        created = Cvat(client).add_shapes(job["id"], [{**ours, "source": "auto"}])
    stored = {s["label_id"]: s["id"] for s in cvat_server.state.tasks[job["task_id"]].shapes}
    assert sorted(map(int, created)) == [stored[ours["label_id"]]] and len(stored) == 2


def test_a_create_is_not_sent_again_once_the_job_is_no_longer_this_workers(cvat_server, tmp_path):
    """The lease was checked once before an upload; a create sent again after a refusal (up to four
    times, with a settle wait each) went out even when the job had been taken over meanwhile, and
    the new owner's copy of the same shapes landed beside it. Every send asks first."""
    from bridge.store import LeaseLostError

    labels = coral_labels(level="main_family")
    project, job = coral_job(cvat_server, tmp_path, 1)
    ids = {lab["name"]: lab["id"] for lab in cvat_server.state.project_labels(project)}
    shape = {"type": "polygon", "frame": 0, "label_id": ids[labels[0].name], "points": [1, 1, 9, 1, 9, 9]}
    asked = []

    def still_mine():
        asked.append(1)
        if len(asked) > 1:  # taken over while the first send was refused
            raise LeaseLostError("job taken over")

    cvat_server.fail_next = [("PATCH", r"/api/jobs/\d+/annotations", 503)]
    with connect(settings_for(cvat_server)) as client, pytest.raises(LeaseLostError):
        Cvat(client).add_shapes(job["id"], [{**shape, "source": "auto"}], before_send=still_mine)
    assert len(asked) == 2 and cvat_server.state.tasks[job["task_id"]].shapes == []


def test_the_warp_takes_the_annotators_corners_not_the_models_left_beside_them(cvat_server, tmp_path):
    """An annotator who drew the right corners without deleting the model's (``source: auto``) had
    the photo warped with whichever skeleton CVAT listed first. The corners drawn by hand win; a frame
    with two hand-drawn corner skeletons is refused with the reason (no guess between them)."""
    from cvat_sdk import models

    from bridge.convert import project_labels
    from bridge.work import skeleton_points

    project = cvat_server.state.add_project("corners", labels_to_raw_config(corner_labels()))["id"]
    right = np.array([[10.0, 10.0], [50.0, 12.0], [52.0, 55.0], [8.0, 50.0]])
    with connect(settings_for(cvat_server)) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project, "t", "train", tiny_photos(tmp_path / "photos", 2))
        (job,) = cvat.task_jobs(task["id"])
        raw_labels = cvat.labels(project_id=project)
        label = next(lab for lab in raw_labels if lab["name"] == CORNER_LABEL)
        model = skeleton_shapes({0: right + 7.0}, label)
        for shape in model:  # the model's answer, listed first
            shape["source"] = "auto"
            for element in shape["elements"]:
                element["source"] = "auto"
        hand = skeleton_shapes({0: right, 1: right}, label) + skeleton_shapes({1: right + 3.0}, label)
        client.jobs.retrieve(job["id"]).set_annotations(
            models.LabeledDataRequest(shapes=model + hand, tags=[], tracks=[])
        )
        points = skeleton_points(cvat.task_shapes(task["id"]), project_labels(raw_labels), CORNER_LABEL, 4)
    assert np.allclose(points[0], right)
    assert isinstance(points[1], str) and "2 quadrat_corner skeletons drawn by hand" in points[1]
