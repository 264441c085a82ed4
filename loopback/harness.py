"""The bridge and its functions as real processes on 127.0.0.1, for the tests, the benchmark and the
demo: Nuclio zips served by :mod:`loopback.function_server`, and ``python -m bridge`` itself.

Nothing here is used by a deployment (there, Nuclio serves the functions and the bridge runs in its
container); it only starts processes and waits for them the way an operator would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; that value. TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s} s")
        time.sleep(every_s)


def unpack_zip(zip_path: str | Path, into: str | Path) -> Path:
    """Unpack a function zip; its ``nuclio/`` folder (what Nuclio builds the function from)."""
    into = Path(into)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    return into / "nuclio"


@dataclass
class FunctionProcess:
    """One Nuclio function folder served over HTTP by :mod:`loopback.function_server`."""

    function_dir: Path
    max_body: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    url: str = ""

    def launch(self) -> FunctionProcess:
        """Start the server process without waiting for it (see :meth:`ready`)."""
        self.function_dir = Path(self.function_dir).resolve()
        command = [sys.executable, "-m", "loopback.function_server", str(self.function_dir), "--port", "0"]
        if self.max_body is not None:
            command += ["--max-body", str(self.max_body)]
        env = {**os.environ, **self.env, "PYTHONPATH": str(self.function_dir)}
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self.function_dir,
        )
        return self

    def ready(self, timeout_s: float = 120.0) -> FunctionProcess:
        """Wait until the model is loaded (the server prints its address then), then keep reading its
        output in a thread (the last lines are kept in ``self.output``) so a chatty function never
        blocks on a full pipe."""
        import collections
        import threading

        self.output: collections.deque[str] = collections.deque(maxlen=200)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"function server for {self.function_dir} did not start:\n" + "".join(self.output)[-3000:]
                )
            self.output.append(line)
            if line.startswith('{"url"'):
                self.url = json.loads(line)["url"]
                break
        else:
            raise TimeoutError(f"function server for {self.function_dir}: no address after {timeout_s} s")

        def drain() -> None:
            for rest in self.process.stdout:
                self.output.append(rest)

        threading.Thread(target=drain, name=f"drain-{self.function_dir.parent.name}", daemon=True).start()
        return self

    def start(self, timeout_s: float = 120.0) -> FunctionProcess:
        """Start the server and wait until it serves."""
        return self.launch().ready(timeout_s)

    @staticmethod
    def start_all(function_dirs: dict[str, Path], **kwargs: Any) -> dict[str, FunctionProcess]:
        """Several servers started side by side (their models load in parallel): {name: process}."""
        launched = {name: FunctionProcess(path, **kwargs).launch() for name, path in function_dirs.items()}
        return {name: process.ready() for name, process in launched.items()}

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _only_these_settings(env: dict[str, str]) -> dict[str, str]:
    """``env`` with an empty ``QUADRATSEG_ENV_FILE`` unless it names one: a process started here gets
    only the settings given, never a .env lying around."""
    env = dict(env)
    if "QUADRATSEG_ENV_FILE" not in env:
        empty = Path(tempfile.mkdtemp(prefix="bridge-env-")) / ".env"
        empty.write_text("")
        env["QUADRATSEG_ENV_FILE"] = str(empty)
    return env


JOBS_TOKEN = "loopback-jobs-token"  # the bridge's BRIDGE_TOKEN in these set-ups


def bridge_environment(
    cvat_url: str, state_dir: str | Path, functions: dict[str, str], secret: str = "", **extra: str
) -> dict[str, str]:
    """The settings (environment variables) of a bridge on the CVAT stand-in: its admin user, the
    webhook secret, a state folder, the functions' addresses and the token of ``/jobs``
    (:data:`JOBS_TOKEN`); ``extra`` adds or overrides."""
    return {
        "CVAT_HOST": cvat_url,
        "CVAT_USERNAME": "admin",
        "CVAT_PASSWORD": "admin-password",
        "CVAT_WEBHOOK_SECRET": secret,
        "BRIDGE_STATE_DIR": str(state_dir),
        "BRIDGE_FUNCTIONS": ",".join(f"{name}={url}" for name, url in functions.items()),
        "BRIDGE_TOKEN": JOBS_TOKEN,
        **extra,
    }


@dataclass
class BridgeProcess:
    """``python -m bridge`` with the given settings (environment variables) on a free port."""

    env: dict[str, str]
    workers: int = 2
    log_path: Path | None = None
    port: int = 0
    process: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)  # more options of python -m bridge (--insecure)

    @property
    def url(self) -> str:
        """The bridge's address."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> BridgeProcess:
        """Start the bridge and wait for ``/health``."""
        import httpx

        self.port = self.port or free_port()
        env = _only_these_settings(self.env)
        log = self.log_path.open("a") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "bridge", "--port", str(self.port), "--workers", str(self.workers)),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bridge exited with {self.process.returncode} (log: {self.log_path})")
            try:
                return httpx.get(self.url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout_s, "the bridge's /health")
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the bridge: SIGTERM (unfinished jobs resume at the next start) or SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill() if kill else self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def headers(self) -> dict[str, str]:
        """The credentials of ``/jobs`` (the environment's ``BRIDGE_TOKEN``)."""
        return {"Authorization": f"Bearer {self.env.get('BRIDGE_TOKEN', '')}"}

    def job(self, job_id: int) -> dict[str, Any]:
        """``GET /jobs/{id}``."""
        import httpx

        return httpx.get(f"{self.url}/jobs/{job_id}", headers=self.headers, timeout=10).json()

    def jobs(self) -> list[dict[str, Any]]:
        """``GET /jobs``."""
        import httpx

        return httpx.get(f"{self.url}/jobs?limit=10000", headers=self.headers, timeout=10).json()

    def wait_job(self, job_id: int, timeout_s: float = 120.0) -> dict[str, Any]:
        """Wait until job ``job_id`` has ended (done, failed or skipped); the job."""

        def ended() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job.get("state") in ("done", "failed", "skipped") else None

        return wait_for(ended, timeout_s, f"bridge job {job_id}", every_s=0.1)

    def wait_back_in_queue(self, job_id: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until job ``job_id`` is back in the queue with an error on its record (stopped by an
        outage, waiting out its back-off); the job."""

        def waiting() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job.get("state") == "queued" and job.get("error") else None

        return wait_for(waiting, timeout_s, f"bridge job {job_id} back in the queue", every_s=0.1)

    def wait_idle(self, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """Wait until no job is queued or running; every job."""

        def idle() -> dict[str, Any] | None:
            jobs = self.jobs()
            return {"jobs": jobs} if all(j["state"] not in ("queued", "running") for j in jobs) else None

        return wait_for(idle, timeout_s, "the bridge's jobs", every_s=0.2)["jobs"]


@dataclass
class WorkerProcess:
    """``python -m bridge.worker``: background workers only, beside a ``python -m bridge --noconsumer``
    that shares ``BRIDGE_REDIS_URL`` and ``BRIDGE_DATABASE_URL`` with it (and nothing else: give each
    its own ``BRIDGE_STATE_DIR``)."""

    env: dict[str, str]
    workers: int = 1
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        """Start the worker process (it has no address to wait for: it takes jobs once it is up)."""
        log = self.log_path.open("a") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge.worker", "--workers", str(self.workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **_only_these_settings(self.env)},
        )
        return self

    def kill(self) -> None:
        """``kill -9``: the worker dies mid-job, its lease left to expire."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (huey stops its workers), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


# ------------------------------------------------------------------ an annotator's three-stage day

FUNCTION_NAMES = {
    "corners": "pth-yolo-gridcorners",
    "grid": "pth-yolo-gridpose",
    "corals": "pth-yolo-coralsegv4",
}


def add_webhooks(
    client: Any,
    bridge_url: str,
    projects: dict[str, int],
    secret: str,
    thresholds: dict[str, float] | None = None,
) -> None:
    """The five webhooks of the three-stage set-up (docs/bridge.md), created through cvat-sdk;
    ``thresholds`` per stage (corners, grid, corals) go into the detection URLs."""
    from cvat_sdk import models

    from bridge.app import signed_path

    given = thresholds or {}
    job, both = ["update:job"], ["update:task", "update:job"]

    def detect(stage: str, **more: Any) -> str:
        return signed_path(
            secret,
            "/detect-model-webhook",
            model_name=FUNCTION_NAMES[stage],
            **more,
            threshold=given.get(stage),
            project_id=projects[stage],
        )

    hooks = [
        ("corners", detect("corners"), job),
        (
            "corners",
            signed_path(
                secret,
                "/crop-quadrat-and-create-new-task-webhook",
                target_proj_id=projects["grid"],
                project_id=projects["corners"],
            ),
            both,
        ),
        ("grid", detect("grid"), job),
        (
            "grid",
            signed_path(
                secret,
                "/remove-grid-and-create-new-task-webhook",
                target_proj_id=projects["corals"],
                project_id=projects["grid"],
            ),
            both,
        ),
        ("corals", detect("corals", conv_mask_to_poly=True), job),
    ]
    for project, path, events in hooks:
        client.api_client.webhooks_api.create(
            models.WebhookWriteRequest(
                target_url=f"{bridge_url}{path}",
                type="project",
                project_id=projects[project],
                events=events,
                secret=secret,
                content_type="application/json",
                is_active=True,
            )
        )


def skeleton_shapes(points_by_frame: dict[int, Any], label: dict[str, Any]) -> list[dict[str, Any]]:
    """Manual skeleton shapes (an annotator's corrections) from {frame: (n, 2) points in template order};
    a frame whose points are None or empty (a quadrat without a grid) gets no skeleton."""
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
        if points is not None and len(points)
    ]


def correct_and_complete(client: Any, job_id: int, shapes: list[dict[str, Any]]) -> None:
    """What an annotator does: replace the job's annotations with corrected ones, then finish the job
    (stage acceptance, state completed: CVAT then derives the task's status)."""
    from cvat_sdk import models

    client.jobs.retrieve(job_id).set_annotations(models.LabeledDataRequest(shapes=shapes, tags=[], tracks=[]))
    client.api_client.jobs_api.partial_update(
        job_id, patched_job_write_request=models.PatchedJobWriteRequest(stage="acceptance", state="completed")
    )


def auto_shapes(client: Any, job_id: int) -> list[Any]:
    """The shapes of a job that a function made (``source: auto``)."""
    return [s for s in client.jobs.retrieve(job_id).get_annotations().shapes if s.source == "auto"]


def three_stage_day(
    server: Any,
    bridge: BridgeProcess,
    client: Any,
    photos: list[Path],
    truth_by_name: dict[str, dict[str, Any]],
    name: str = "moorea_2023_batch_01",
    subset: str = "train",
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Drive the CVAT stand-in like an annotator through the three stages, the bridge doing the rest:
    open the corner job (pre-annotated), correct it with the true corners and complete it; open the
    warped task the bridge made (pre-annotated grid), correct it with the true grid and complete it;
    the bridge makes the grid-free task, whose coral job it pre-annotates.

    ``truth_by_name``: per photo file name, ``corners_raw_xy`` (4, 2) and ``grid_warped_xy`` (117, 2).
    Returns the ids and what was seen on the way (auto shapes per stage, task names, frame names)."""
    from quadratseg.cvat_client import Cvat

    cvat = Cvat(client)
    projects = {p["name"]: p["id"] for p in server.state.projects.values()}
    seen: dict[str, Any] = {}

    def settle(jobs_expected: int) -> list[dict[str, Any]]:
        server.wait_deliveries(30)
        try:
            wait_for(lambda: len(bridge.jobs()) >= jobs_expected, 60, f"{jobs_expected} bridge jobs")
        except TimeoutError as exc:
            recent = [
                (d["event"], d["webhook_id"], d["status_code"], str(d["response"])[:120])
                for d in server.deliveries[-8:]
            ]
            raise TimeoutError(f"{exc}; jobs {bridge.jobs()}; last deliveries {recent}") from None
        return bridge.wait_idle(timeout_s)

    source = cvat.create_task(projects["corners"], name, subset, photos)
    (corner_job,) = cvat.task_jobs(source["id"])
    cvat.set_job_state(corner_job["id"], "in progress")
    seen["after_corners"] = settle(1)
    seen["corner_auto"] = auto_shapes(client, corner_job["id"])
    names = cvat.task_frames(source["id"])[1]

    def correct(job_id: int, project: str, label_name: str, truth_key: str) -> dict[int, Any]:
        """The annotator puts the true points of every frame in and completes the job."""
        label = next(lab for lab in cvat.labels(project_id=projects[project]) if lab["name"] == label_name)
        points = {i: truth_by_name[n][truth_key] for i, n in enumerate(names)}
        correct_and_complete(client, job_id, skeleton_shapes(points, label))
        return points

    corners = correct(corner_job["id"], "corners", "quadrat_corner", "corners_raw_xy")
    seen["after_warp"] = settle(3)
    warped = cvat.find_task(projects["grid"], f"{name}_warped")
    if warped is None:
        raise RuntimeError(f"the bridge made no warped task: {seen['after_warp']}")
    (grid_job,) = cvat.task_jobs(warped["id"])
    seen["grid_auto"] = auto_shapes(client, grid_job["id"])
    correct(grid_job["id"], "grid", "grid", "grid_warped_xy")
    seen["after_clean"] = settle(5)
    clean = cvat.find_task(projects["corals"], f"{name}_warped_clean")
    if clean is None:
        raise RuntimeError(f"the bridge made no grid-free task: {seen['after_clean']}")
    (coral_job,) = cvat.task_jobs(clean["id"])
    seen["coral_auto"] = auto_shapes(client, coral_job["id"])
    return {
        "projects": projects,
        "source": source,
        "warped": warped,
        "clean": clean,
        "jobs": {"corners": corner_job, "grid": grid_job, "corals": coral_job},
        "frame_names": names,
        "warped_names": cvat.task_frames(warped["id"])[1],
        "clean_names": cvat.task_frames(clean["id"])[1],
        "corners": corners,
        "seen": seen,
    }
