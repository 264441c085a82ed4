"""What an operator can put beside CVAT: ``python -m bridge`` as a process on 127.0.0.1, attacked the way
a peer on CVAT's network could (unsigned or replayed deliveries, a function name that is a URL, huge
bodies, /jobs without credentials)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.app import signed_path
from loopback.harness import BridgeProcess, bridge_environment, free_port, wait_for
from quadratseg.cvat_client import Cvat, connect
from quadratseg.formats.cvat_labels import labels_to_raw_config
from quadratseg.labelsets import coral_labels
from quadratseg.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret"
TOKEN = "jobs-token"


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection made to it (and answers nothing)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                self.connections.append(conn.recv(200))
            except OSError:
                self.connections.append(b"")
            conn.close()

    def close(self):
        self.sock.close()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url, payload, secret=SECRET):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-Signature-256"] = sign(body, secret)
    return httpx.post(url, content=body, headers=headers, timeout=10)


def job_payload(job_id=7, before_state="new", project_id=1):
    return {
        "event": "update:job",
        "job": {
            "id": job_id,
            "task_id": 3,
            "project_id": project_id,
            "state": "in progress",
            "stage": "annotation",
            "status": "annotation",
            "type": "annotation",
            "updated_date": "2026-12-01T10:00:00.000000Z",
        },
        "before_update": {"state": before_state, "updated_date": "x"},
        "webhook_id": 1,
        "sender": {"url": "", "id": 1, "username": "anna", "first_name": "", "last_name": ""},
    }


def task_done_payload(task_id=3):
    return {
        "event": "update:task",
        "task": {"id": task_id, "status": "completed", "name": "batch", "project_id": 1},
        "before_update": {"status": "annotation", "updated_date": "x"},
        "webhook_id": 2,
        "sender": {"url": "", "id": 1, "username": "anna", "first_name": "", "last_name": ""},
    }


def start_bridge(tmp_path, secret=SECRET, args=(), **extra):
    env = bridge_environment(
        "http://127.0.0.1:9", tmp_path / "bridge", {}, secret, BRIDGE_TOKEN=TOKEN, **extra
    )
    return BridgeProcess(env, workers=1, log_path=tmp_path / "bridge.log", args=list(args)).start()


@pytest.fixture
def bridge(tmp_path):
    running = start_bridge(tmp_path)
    yield running
    running.stop()


# ---------------------------------------------------------------- 1. the function allow-list


def test_a_function_name_that_is_not_allowed_gets_400_and_reaches_no_network(tmp_path):
    """N2: ``model_name=x@host/`` turned the function URL's host into ``host``. The 400 needs no CVAT."""
    listener = Listener()
    bridge = start_bridge(
        tmp_path,
        BRIDGE_FUNCTIONS=f"fn=http://127.0.0.1:{listener.port}",  # the one allowed name: the listener
        BRIDGE_FUNCTION_RETRIES="0",
        BRIDGE_FUNCTION_TIMEOUT_S="2",
    )
    try:
        for name in (f"x@127.0.0.1:{listener.port}/", "Pth-Lama", "a/../b", "pth lama", "-x", "2130706433"):
            url = bridge.url + signed_path(SECRET, "/detect-model-webhook", model_name=name, project_id=1)
            answer = post(url, job_payload())
            assert answer.status_code == 400, (name, answer.text)
            assert "model_name" in answer.json()["detail"] and "BRIDGE_FUNCTIONS" in answer.json()["detail"]
        time.sleep(1.5)  # a queued job would have reached the listener by now
        assert listener.connections == []
        assert bridge.jobs() == []
    finally:
        bridge.stop()
        listener.close()


@pytest.mark.shared_data
def test_an_allowed_function_name_reaches_its_function(cvat_server, tmp_path):
    """The control of the test above: the allowed name is queued and its call reaches the listener."""
    from PIL import Image

    listener = Listener()
    project = cvat_server.state.add_project("corals", labels_to_raw_config(coral_labels(level="main_family")))
    photo = tmp_path / "q_000.png"
    Image.new("RGB", (32, 24), (10, 90, 160)).save(photo)
    settings = Settings(cvat_host=cvat_server.url, cvat_username="admin", cvat_password="admin-password")
    with connect(settings) as client:
        cvat = Cvat(client)
        task = cvat.create_task(project["id"], "t", "val", [photo])
        (job,) = cvat.task_jobs(task["id"])
    env = bridge_environment(
        cvat_server.url,
        tmp_path / "bridge",
        {"fn": f"http://127.0.0.1:{listener.port}"},
        SECRET,
        BRIDGE_TOKEN=TOKEN,
        BRIDGE_FUNCTION_RETRIES="0",
        BRIDGE_FUNCTION_TIMEOUT_S="2",
    )
    bridge = BridgeProcess(env, workers=1, log_path=tmp_path / "bridge.log").start()
    payload = {**job_payload(job_id=job["id"], project_id=project["id"])}
    payload["job"] = {**job, "state": "in progress"}
    try:
        url = bridge.url + signed_path(
            SECRET, "/detect-model-webhook", model_name="fn", project_id=project["id"]
        )
        ok = post(url, payload)
        assert ok.status_code == 202, ok.text
        wait_for(lambda: listener.connections, 30, "the allowed function's call")
        assert listener.connections[0].startswith(b"POST / HTTP/1.1")
    finally:
        bridge.stop()
        listener.close()


def test_names_without_a_letter_and_a_template_host_of_the_name_alone_are_refused():
    """``http://{name}:8080`` let ``2130706433``, ``0`` or ``localhost`` reach 127.0.0.1 or 0.0.0.0."""
    from bridge.functions import FunctionClient, FunctionError

    default = FunctionClient()
    for digits in ("2130706433", "0", "10", "0-1"):
        with pytest.raises(FunctionError, match="letter"):
            default.url(digits)
    assert default.url("pth-lama2") == "http://nuclio-nuclio-pth-lama2:8080"
    bare = FunctionClient(url_template="http://{name}:8080")
    for name in ("localhost", "pth-lama", "2130706433"):
        with pytest.raises(FunctionError, match="BRIDGE_FUNCTION_URL"):
            bare.url(name)
    assert FunctionClient(urls={"localhost": "http://127.0.0.1:9"}).url("localhost") == "http://127.0.0.1:9"


def test_the_function_client_refuses_names_outside_the_allow_list():
    """The worker side too: a stored job with a bad name never builds a URL."""
    from bridge.functions import FunctionClient, FunctionError

    client = FunctionClient(urls={"pth-lama": "http://127.0.0.1:9003"})
    assert client.url("pth-lama") == "http://127.0.0.1:9003"
    assert client.url("pth-yolo-gridpose") == "http://nuclio-nuclio-pth-yolo-gridpose:8080"
    for bad in ("x@attacker.example/", "x@attacker.example", "a.b", "A", "", "x" * 70, "x:1"):
        with pytest.raises(FunctionError, match="BRIDGE_FUNCTIONS"):
            client.url(bad)
    # a template whose host does not end up being the name's own host is refused too
    odd = FunctionClient(url_template="http://{name}.svc:8080")
    assert odd.url("pth-lama") == "http://pth-lama.svc:8080"
    with pytest.raises(FunctionError, match="BRIDGE_FUNCTION_URL"):
        FunctionClient(url_template="http://fixed-host:8080/{name}").url("pth-lama")


# ---------------------------------------------------------------- 2. the secret and signed queries


def test_the_bridge_refuses_to_start_without_a_secret(tmp_path):
    env = bridge_environment("http://127.0.0.1:9", tmp_path / "bridge", {}, "", BRIDGE_TOKEN=TOKEN)
    empty = tmp_path / ".env"
    empty.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--port", str(free_port())],
        env={**__import__("os").environ, **env, "QUADRATSEG_ENV_FILE": str(empty)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CVAT_WEBHOOK_SECRET" in done.stderr and "--insecure" in done.stderr


def test_insecure_mode_is_explicit_and_logged_at_every_delivery(tmp_path):
    bridge = start_bridge(tmp_path, secret="", args=["--insecure"])
    try:
        for job_id in (7, 8):
            answer = post(bridge.url + "/detect-model-webhook?model_name=fn", job_payload(job_id), secret="")
            assert answer.status_code == 202, answer.text
        ping = post(bridge.url + "/detect-model-webhook?model_name=fn", {"event": "ping"}, secret="")
        assert ping.json()["status"] == "pong"
    finally:
        bridge.stop()
    log = (tmp_path / "bridge.log").read_text()
    assert len(re.findall(r"WARNING.*unsigned delivery accepted \(--insecure\)", log)) == 3, log


def test_a_replayed_body_with_other_query_parameters_is_refused(bridge):
    """The HMAC covers the body only: the query is signed by the bridge's own URL signature."""
    path = "/crop-quadrat-and-create-new-task-webhook"
    signed = signed_path(SECRET, path, target_proj_id=2, project_id=1)
    body = task_done_payload()
    assert post(bridge.url + signed, body).status_code == 202
    qsig = dict(httpx.URL(signed).params)["qsig"]
    replays = [
        f"{path}?project_id=1&target_proj_id=5&qsig={qsig}",  # another target, the captured URL signature
        f"{path}?project_id=1&target_proj_id=5",  # no URL signature
        f"{path}?qsig={qsig}&target_proj_id=5&project_id=1",
        f"/remove-grid-and-create-new-task-webhook?project_id=1&target_proj_id=2&qsig={qsig}",
    ]
    for replay in replays:
        answer = post(bridge.url + replay, task_done_payload(task_id=4))
        assert answer.status_code == 401 and "python -m bridge.urls" in answer.json()["detail"], replay
    assert [j["params"] for j in bridge.jobs()] == [{"task_id": 3, "target_project_id": 2}]
    # the same parameters in another order are the same URL
    again = post(
        bridge.url + f"{path}?qsig={qsig}&target_proj_id=2&project_id=1", task_done_payload(task_id=4)
    )
    assert again.status_code == 202


def test_the_url_command_prints_signed_urls_cvat_accepts(tmp_path):
    """CVAT's Webhook.target_url is a Django URLField: ``http://bridge:8000`` (one label) is refused, so
    the default address is the compose alias ``bridge.cvat.internal``; the project is signed in."""
    from loopback.cvat_standin.server import url_error

    env_file = tmp_path / ".env"
    env_file.write_text(f"CVAT_WEBHOOK_SECRET={SECRET}\n")
    command = [
        sys.executable,
        "-m",
        "bridge.urls",
        "detect-model-webhook",
        "--model_name",
        "pth-yolo-gridpose",
    ]
    environment = {**__import__("os").environ, "QUADRATSEG_ENV_FILE": str(env_file)}
    missing = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "--project_id" in missing.stderr, missing.stderr
    done = subprocess.run(
        [*command, "--project_id", "4"], env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = "http://bridge.cvat.internal:8000" + signed_path(
        SECRET, "/detect-model-webhook", model_name="pth-yolo-gridpose", project_id=4
    )
    assert done.stdout.strip() == expected
    assert url_error(expected) == "" and url_error("http://bridge:8000/detect-model-webhook") != ""


def test_a_delivery_replayed_to_another_projects_webhook_is_refused(bridge):
    """qsig is one key for every URL and CVAT shows target URLs to anyone who lists webhooks: each URL
    carries its project, and a delivery about a job or task of another project gets 401."""
    detect = bridge.url + signed_path(SECRET, "/detect-model-webhook", model_name="fn", project_id=1)
    other = bridge.url + signed_path(SECRET, "/detect-model-webhook", model_name="fn", project_id=2)
    crop = bridge.url + signed_path(
        SECRET, "/crop-quadrat-and-create-new-task-webhook", target_proj_id=5, project_id=2
    )
    unbound = bridge.url + signed_path(SECRET, "/detect-model-webhook", model_name="fn")
    assert post(other, job_payload(project_id=1)).status_code == 401  # project 1's delivery, project 2's URL
    assert post(crop, task_done_payload()).status_code == 401  # the task is project 1's
    refused = post(unbound, job_payload(project_id=1))
    assert refused.status_code == 401 and "--project_id" in refused.json()["detail"]
    assert bridge.jobs() == []
    assert post(detect, job_payload(project_id=1)).status_code == 202
    assert [j["params"]["job_id"] for j in bridge.jobs()] == [7]


# ---------------------------------------------------------------- 3. /jobs, body size, compose


def test_jobs_need_the_token(bridge):
    job_id = post(
        bridge.url + signed_path(SECRET, "/detect-model-webhook", model_name="fn", project_id=1),
        job_payload(),
    )
    job_id = job_id.json()["job_id"]
    for path in ("/jobs", f"/jobs/{job_id}"):
        assert httpx.get(bridge.url + path, timeout=5).status_code == 401
        wrong = httpx.get(bridge.url + path, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        right = httpx.get(bridge.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert right.status_code == 200
    assert httpx.get(bridge.url + "/health", timeout=5).json()["status"] == "healthy"  # health stays open


def test_an_oversized_body_gets_413_before_it_is_read_whole(tmp_path):
    bridge = start_bridge(tmp_path, BRIDGE_MAX_BODY="4096")
    try:
        url = bridge.url + signed_path(SECRET, "/detect-model-webhook", model_name="fn", project_id=1)
        # announced as 100 MB, only 1 kB sent: the answer comes without the rest of the body
        target = httpx.URL(url)
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as conn:
            head = (
                f"POST {target.raw_path.decode()} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
            )
            conn.sendall(head.encode() + b" " * 1024)
            answer = conn.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 413"), answer
        # chunked, no length announced: refused once 4096 bytes have come
        big = json.dumps({**job_payload(), "pad": "x" * 10_000}).encode()

        def chunks():
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        chunked = httpx.post(url, content=chunks(), headers={"X-Signature-256": sign(big)}, timeout=10)
        assert chunked.status_code == 413
        small = post(url, job_payload())
        assert small.status_code == 202
    finally:
        bridge.stop()


def test_the_documented_compose_file_publishes_no_port():
    text = (REPO / "docs" / "bridge.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    composes = [yaml.safe_load(b) for b in blocks if "services:" in b]
    assert len(composes) == 1
    services = composes[0]["services"]
    assert "bridge" in services and services["bridge"]["networks"] == {
        "cvat": {"aliases": ["bridge.cvat.internal"]}  # a name CVAT's URL validation accepts
    }
    assert [name for name, service in services.items() if "ports" in service] == []
    assert "--insecure" not in services["bridge"]["command"]


def test_the_docs_and_the_install_name_the_bridges_equipment_where_it_is():
    """The stand-in and the function server live in loopback/, the encoder is mask_to_cvat_rle, detection
    runs on new -> in progress only, the manual set-up installs ./loopback and make install's stamp
    changes with loopback/pyproject.toml."""
    bridge_doc = (REPO / "docs" / "bridge.md").read_text(encoding="utf-8")
    assert "encode_mask" not in bridge_doc and "quadratseg.geometry.mask_to_cvat_rle" in bridge_doc
    assert "the old one was `new`" in bridge_doc and "the old one was not," not in bridge_doc
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    assert "stand-in" not in rows["`bridge/`"] and "stand-in" in rows["`loopback/`"]
    assert "loopback" in rows["`bridge` (top floor)"]
    environment = (REPO / "docs" / "environment.md").read_text(encoding="utf-8")
    assert "pip install --no-deps -e ./loopback" in environment
    stamp = next(line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("STAMP :="))
    assert "loopback/pyproject.toml" in stamp
