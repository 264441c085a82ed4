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

from bridge.cvat import Cvat
from bridge.loopback import BridgeProcess, FunctionProcess, unpack_zip, wait_for
from quadratseg.cvat_client import connect
from quadratseg.formats.cvat_labels import labels_to_raw_config
from quadratseg.labelsets import coral_labels, corner_labels, grid_labels
from quadratseg.settings import Settings

pytestmark = pytest.mark.shared_data

SECRET = "s3cret"


def bridge_env(cvat_server, tmp_path, functions, **extra):
    return {
        "CVAT_HOST": cvat_server.url,
        "CVAT_USERNAME": "admin",
        "CVAT_PASSWORD": "admin-password",
        "CVAT_RETRIES": "2",
        "CVAT_TIMEOUT_S": "10",
        "CVAT_WEBHOOK_SECRET": SECRET,
        "BRIDGE_STATE_DIR": str(tmp_path / "bridge"),
        "BRIDGE_FUNCTIONS": ",".join(f"{name}={url}" for name, url in functions.items()),
        "BRIDGE_FUNCTION_RETRIES": "2",
        "BRIDGE_FUNCTION_TIMEOUT_S": "60",
        **extra,
    }


def settings_for(cvat_server):
    return Settings(cvat_host=cvat_server.url, cvat_username="admin", cvat_password="admin-password")


def add_webhook(client, project_id, url, events):
    from cvat_sdk import models

    client.api_client.webhooks_api.create(
        models.WebhookWriteRequest(
            target_url=url,
            type="project",
            project_id=project_id,
            events=events,
            secret=SECRET,
            content_type="application/json",
            is_active=True,
        )
    )


def skeleton_shapes(points_by_frame, label):
    """Manual skeleton shapes (an annotator's correction) from {frame: (n, 2)}."""
    sub = {s["name"]: s["id"] for s in label["sublabels"]}
    return [
        {
            "type": "skeleton",
            "frame": frame,
            "label_id": label["id"],
            "source": "manual",
            "points": [],
            "elements": [
                {
                    "type": "points",
                    "frame": frame,
                    "label_id": sub[str(i + 1)],
                    "points": [float(x), float(y)],
                    "outside": False,
                    "source": "manual",
                }
                for i, (x, y) in enumerate(points)
            ],
        }
        for frame, points in points_by_frame.items()
    ]


def correct_and_complete(client, cvat, job_id, shapes):
    """What an annotator does: replace the job's annotations with corrected ones, then finish it."""
    from cvat_sdk import models

    client.jobs.retrieve(job_id).set_annotations(models.LabeledDataRequest(shapes=shapes, tags=[], tracks=[]))
    client.api_client.jobs_api.partial_update(
        job_id, patched_job_write_request=models.PatchedJobWriteRequest(stage="acceptance", state="completed")
    )


@pytest.fixture(scope="module")
def function_dirs(tiny_corner_model, tiny_grid_model, tiny_seg_model, tmp_path_factory):
    """The corner, grid and coral zips the project builds, unpacked as Nuclio would get them."""
    from coral_seg_yolo.deploy_as_zip import deploy_as_zip as seg_zip
    from grid_pose_detection.deploy_as_zip import deploy_as_zip as pose_zip
    from quadratseg.keypoints import corner_template_xy, grid_template_xy, save_template

    root = tmp_path_factory.mktemp("zips")
    corners = save_template(corner_template_xy(), root / "corners.npy")
    grid = save_template(grid_template_xy(), root / "grid.npy")
    zips = {
        "pth-yolo-gridcorners": pose_zip(
            "pth-yolo-gridcorners", str(tiny_corner_model[0]), str(corners), output=str(root / "c")
        ),
        "pth-yolo-gridpose": pose_zip(
            "pth-yolo-gridpose", str(tiny_grid_model[0]), str(grid), output=str(root / "g")
        ),
        "pth-yolo-coralsegv4": seg_zip("pth-yolo-coralsegv4", str(tiny_seg_model[0]), output=str(root / "s")),
    }
    return {name: unpack_zip(path, root / f"{name}-unzipped") for name, path in zips.items()}


@pytest.fixture
def functions(function_dirs):
    running = {name: FunctionProcess(path).start() for name, path in function_dirs.items()}
    yield {name: f.url for name, f in running.items()}
    for f in running.values():
        f.stop()


def test_three_stage_chain_from_a_corner_task_to_pre_annotated_coral_jobs(
    cvat_server, functions, synthetic_set, tmp_path
):
    from quadratseg.synth.dataset import export_image_path, load_truth

    truths = load_truth(synthetic_set)[:3]
    warp_width = truths[0]["warped_size"][0]
    state = cvat_server.state
    p_corners = state.add_project("corners", labels_to_raw_config(corner_labels()))["id"]
    p_grid = state.add_project("grid", labels_to_raw_config(grid_labels()))["id"]
    p_corals = state.add_project("corals", labels_to_raw_config(coral_labels(level="main_family")))["id"]
    bridge = BridgeProcess(
        bridge_env(
            cvat_server,
            tmp_path,
            functions,
            BRIDGE_INPAINT="local:opencv-telea",
            BRIDGE_WARP_SIZE=str(warp_width),
        ),
        log_path=tmp_path / "bridge.log",
    ).start()
    try:
        with connect(settings_for(cvat_server)) as client:
            cvat = Cvat(client)
            hook = bridge.url
            add_webhook(
                client,
                p_corners,
                f"{hook}/detect-model-webhook?model_name=pth-yolo-gridcorners",
                ["update:job"],
            )
            add_webhook(
                client,
                p_corners,
                f"{hook}/crop-quadrat-and-create-new-task-webhook?target_proj_id={p_grid}",
                ["update:task", "update:job"],
            )
            add_webhook(
                client, p_grid, f"{hook}/detect-model-webhook?model_name=pth-yolo-gridpose", ["update:job"]
            )
            add_webhook(
                client,
                p_grid,
                f"{hook}/remove-grid-and-create-new-task-webhook?target_proj_id={p_corals}",
                ["update:task", "update:job"],
            )
            add_webhook(
                client,
                p_corals,
                f"{hook}/detect-model-webhook?model_name=pth-yolo-coralsegv4&conv_mask_to_poly=true&threshold=0.0",
                ["update:job"],
            )
            photos = [
                export_image_path(synthetic_set / "cvat_exports" / "corners", t["subset"], t["name"])
                for t in truths
            ]
            source = cvat.create_task(p_corners, "moorea_2023_batch_01", "train", photos)
            (job,) = cvat.task_jobs(source["id"])

            # 1. the annotator opens the corner job: it is pre-annotated
            cvat.set_job_state(job["id"], "in progress")
            cvat_server.wait_deliveries(30)
            jobs = bridge.wait_idle(120)
            assert [(j["kind"], j["state"]) for j in jobs] == [("detect", "done")], jobs
            auto = [s for s in client.jobs.retrieve(job["id"]).get_annotations().shapes if s.source == "auto"]
            assert len(auto) == 3 and {s.type for s in auto} == {"skeleton"}

            # 2. corrected and completed -> the warped task in the grid project, opened and pre-annotated
            corner_label = next(
                lab for lab in cvat.labels(project_id=p_corners) if lab["name"] == "quadrat_corner"
            )
            names = cvat.task_frames(source["id"])[1]
            by_name = {t["name"]: t for t in truths}
            corrected = {i: np.asarray(by_name[n]["corners_raw_xy"]) for i, n in enumerate(names)}
            correct_and_complete(client, cvat, job["id"], skeleton_shapes(corrected, corner_label))
            cvat_server.wait_deliveries(30)
            wait_for(lambda: len(bridge.jobs()) >= 3, 60, "the warp job and the grid detection")
            jobs = bridge.wait_idle(180)
            warped = cvat.find_task(p_grid, "moorea_2023_batch_01_warped")
            assert warped is not None and warped["subset"] == "train", jobs
            warped_names = cvat.task_frames(warped["id"])[1]
            assert [Path(n).stem for n in warped_names] == [Path(n).stem for n in names]
            (grid_job,) = cvat.task_jobs(warped["id"])
            assert grid_job["state"] == "in progress"
            grid_auto = [
                s for s in client.jobs.retrieve(grid_job["id"]).get_annotations().shapes if s.source == "auto"
            ]
            assert len(grid_auto) == 3 and all(len(s.elements) == 117 for s in grid_auto)
            # the warped frame is the quadrat of the raw photo, as the project's own warp makes it
            from quadratseg.images import decode_image_rgb
            from quadratseg.warp import quadrat_homography, warp_image

            raw = decode_image_rgb(photos[0].read_bytes())
            size = tuple(truths[0]["warped_size"])
            first = names.index(truths[0]["name"])
            expected = warp_image(raw, quadrat_homography(corrected[first], size), size)
            got = decode_image_rgb(cvat.task_frame_bytes(warped["id"], first))
            assert got.shape == expected.shape and np.abs(got.astype(int) - expected).mean() < 4

            # 3. the grid corrected and completed -> the grid-free task in the coral project, pre-annotated
            grid_label = next(lab for lab in cvat.labels(project_id=p_grid) if lab["name"] == "grid")
            grids = {i: np.asarray(by_name[n]["grid_warped_xy"]) for i, n in enumerate(names)}
            correct_and_complete(client, cvat, grid_job["id"], skeleton_shapes(grids, grid_label))
            cvat_server.wait_deliveries(30)
            wait_for(lambda: len(bridge.jobs()) >= 5, 60, "the grid removal job and the coral detection")
            jobs = bridge.wait_idle(180)
            clean = cvat.find_task(p_corals, "moorea_2023_batch_01_warped_clean")
            assert clean is not None, jobs
            (coral_job,) = cvat.task_jobs(clean["id"])
            kinds = sorted((j["kind"], j["state"]) for j in jobs)
            assert kinds == [("detect", "done")] * 3 + [("remove_grid", "done"), ("warp", "done")], jobs
            coral_detect = next(j for j in jobs if j["params"].get("job_id") == coral_job["id"])
            assert coral_detect["result"]["frames"] == 3 and not coral_detect["result"]["failed_frames"]
            shapes = client.jobs.retrieve(coral_job["id"]).get_annotations().shapes
            coral_ids = {lab["id"] for lab in cvat.labels(project_id=p_corals)}
            assert all(s.type == "polygon" and s.label_id in coral_ids and s.source == "auto" for s in shapes)
            assert len(shapes) == coral_detect["result"]["shapes"]

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
    finally:
        bridge.stop()


# ---------------------------------------------------------------- robustness with a function double


class SlowEmptyFunction:
    """A detector that answers ``answer`` (default ``[]``) after ``delay_s``, counting calls, and
    garbage on every ``garbage_every``-th call."""

    def __init__(self, delay_s=0.0, garbage_every=0, answer=b"[]"):
        self.calls, self.delay_s = 0, delay_s
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                double.calls += 1
                time.sleep(double.delay_s)
                body = b"<garbage" if garbage_every and double.calls % garbage_every == 0 else answer
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


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
    url = f"{bridge.url}/detect-model-webhook?model_name=fn"
    answer, seconds = signed_post(url, opened_job_payload(job))
    assert answer.status_code == 202 and seconds < 1.0
    job_id = answer.json()["job_id"]
    wait_for(lambda: bridge.job(job_id)["progress"] >= 100, 120, "100 frames")
    bridge.stop(kill=True)  # a crash in the middle of the job
    calls_before = function.calls
    bridge = BridgeProcess(env, workers=1, log_path=tmp_path / "bridge.log").start()
    try:
        done = wait_for(
            lambda: bridge.job(job_id)["state"] in ("done", "failed") and bridge.job(job_id), 300, "job"
        )
        assert done["state"] == "done" and done["result"]["frames"] == 500 and done["attempts"] == 2
        assert function.calls - calls_before <= 500 - 100 + 2  # the answered frames were not asked again
        again, _ = signed_post(f"{bridge.url}/detect-model-webhook?model_name=fn", opened_job_payload(job))
        assert again.json()["status"] == "duplicate"  # the job store outlived the process
    finally:
        bridge.stop()


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
        bridge_env(cvat_server, tmp_path, {"fn": function.url}), log_path=tmp_path / "b.log"
    ).start()
    try:
        # CVAT answers 503 to every annotation upload for a while: retries, then a recorded failure
        cvat_server.fail_next = [("PATCH", r"/api/jobs/\d+/annotations", 503)] * 10
        answer, _ = signed_post(f"{bridge.url}/detect-model-webhook?model_name=fn", opened_job_payload(job))
        done = wait_for(
            lambda: (
                bridge.job(answer.json()["job_id"])["state"] in ("done", "failed")
                and bridge.job(answer.json()["job_id"])
            ),
            120,
            "job",
        )
        assert done["state"] == "failed" and "uploading" in done["error"]
        assert cvat_server.state.tasks[task["id"]].shapes == []
        # a function answering garbage on some frames: those frames are recorded, the others go on
        cvat_server.fail_next = []
        later = {**job, "updated_date": "2026-12-02T00:00:00.000000Z"}
        answer, _ = signed_post(f"{bridge.url}/detect-model-webhook?model_name=fn", opened_job_payload(later))
        done = wait_for(
            lambda: (
                bridge.job(answer.json()["job_id"])["state"] in ("done", "failed")
                and bridge.job(answer.json()["job_id"])
            ),
            120,
            "job",
        )
        assert done["state"] == "done" and len(done["result"]["failed_frames"]) == 2
        assert all("not JSON" in why for why in done["result"]["failed_frames"].values())
        stored = cvat_server.state.tasks[task["id"]].shapes
        assert len(stored) == 4 and {s["source"] for s in stored} == {"auto"}
    finally:
        bridge.stop()
