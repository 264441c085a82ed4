"""A CVAT-compatible HTTP server for tests, on 127.0.0.1, driven by the real cvat-sdk client.

It serves the endpoints the project uses: server/about, auth (password login with session
cookies, or an access token), projects, tasks (create, data upload in CVAT's
Upload-Start/Multiple/Finish protocol, data meta, frames), labels, jobs, annotations,
background requests, webhooks and lambda functions. Objects start from CVAT's real REST dumps
(``../shared/data/cvat/rest_dumps``) with their ids and names replaced, and every JSON request
and response is checked against CVAT's OpenAPI schema; violations are collected in
``server.violations`` (tests assert it stays empty).

Fault injection for robustness tests: ``server.delay_s`` (slow answers), ``server.fail_next``
(a list of (method, path regex, status) consumed in order).
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from PIL import Image

from .openapi import OpenApiChecker, load_checker

CVAT_VERSION = "2.80.0"  # what /api/server/about reports: the cvat-sdk pinned here supports 2.80-2.81


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeTask:
    """Server-side state of a task."""

    record: dict[str, Any]
    frames: list[tuple[str, bytes, int, int]] = field(default_factory=list)  # name, bytes, width, height
    shapes: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[tuple[str, bytes]] = field(default_factory=list)


class CvatState:
    """Projects, tasks, labels, jobs, requests, webhooks and lambda functions, built from real dumps."""

    def __init__(self, dumps_dir: Path, base_url: str):
        self.base_url = base_url
        load = lambda name: json.loads((dumps_dir / name).read_text(encoding="utf-8"))  # noqa: E731
        self.project_template = load("projects.json")["results"][0]
        self.task_template = load("tasks.json")["results"][0]
        self.job_template = load("jobs.json")["results"][0]
        self.label_template = load("labels.json")["results"][0]
        self.webhook_template = load("webhooks.json")["results"][0]
        self.lambda_functions = load("lambda_functions.json")["positive"]
        self.users = {"admin": "admin-password"}
        self.tokens = {"test-token"}
        self.sessions: set[str] = set()
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, FakeTask] = {}
        self.labels: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self._next_id = 100
        self.lock = threading.RLock()

    def new_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    # --------------------------------------------------------------------- labels

    def _make_label(
        self, raw: dict[str, Any], owner: dict[str, int], parent_id: int | None = None
    ) -> dict[str, Any]:
        label = copy.deepcopy(self.label_template)
        label_id = self.new_id()
        label.update(
            id=label_id,
            name=raw["name"],
            color=raw.get("color") or "#808080",
            type=raw.get("type", "any"),
            has_parent=parent_id is not None,
            parent_id=parent_id,
            attributes=[
                {
                    "id": self.new_id(),
                    "name": a["name"],
                    "mutable": bool(a.get("mutable", False)),
                    "input_type": a.get("input_type", "text"),
                    "default_value": str(a.get("default_value", "")),
                    "values": [str(v) for v in a.get("values", [])],
                }
                for a in raw.get("attributes", []) or []
            ],
        )
        label.pop("task_id", None)
        label.pop("project_id", None)
        label.update(owner)
        sublabels = [self._make_label(s, owner, label_id) for s in raw.get("sublabels", []) or []]
        label["sublabels"] = [
            {
                k: v
                for k, v in s.items()
                if k not in ("project_id", "task_id", "has_parent", "parent_id", "sublabels", "svg")
            }
            for s in sublabels
        ]
        if label["type"] == "skeleton":
            label["svg"] = raw.get("svg", "")
        self.labels[label_id] = label
        for sub in sublabels:
            self.labels[sub["id"]] = sub
        return label

    def project_labels(self, project_id: int) -> list[dict[str, Any]]:
        return [lab for lab in self.labels.values() if lab.get("project_id") == project_id]

    # --------------------------------------------------------------------- projects and tasks

    def add_project(self, name: str, labels: list[dict[str, Any]]) -> dict[str, Any]:
        project = copy.deepcopy(self.project_template)
        pid = self.new_id()
        project.update(
            id=pid,
            name=name,
            created_date=_now(),
            updated_date=_now(),
            labels={"url": f"{self.base_url}/api/labels?project_id={pid}"},
            tasks={"count": 0, "url": f"{self.base_url}/api/tasks?project_id={pid}"},
            task_subsets=[],
            status="annotation",
        )
        self.projects[pid] = project
        for raw in labels:
            self._make_label(raw, {"project_id": pid})
        return project

    def add_task(
        self, name: str, project_id: int | None, subset: str = "", status: str = "annotation"
    ) -> FakeTask:
        record = copy.deepcopy(self.task_template)
        tid = self.new_id()
        record.update(
            id=tid,
            name=name,
            project_id=project_id,
            subset=subset,
            status=status,
            size=0,
            created_date=_now(),
            updated_date=_now(),
            labels={"url": f"{self.base_url}/api/labels?task_id={tid}"},
            jobs={
                "completed": 0,
                "count": 0,
                "url": f"{self.base_url}/api/jobs?task_id={tid}",
                "validation": 0,
            },
            url=f"{self.base_url}/api/tasks/{tid}",
        )
        task = FakeTask(record)
        self.tasks[tid] = task
        if project_id in self.projects:
            project = self.projects[project_id]
            project["tasks"]["count"] += 1
            if subset and subset not in project["task_subsets"]:
                project["task_subsets"].append(subset)
        return task

    def set_frames(self, task: FakeTask, frames: list[tuple[str, bytes]]) -> None:
        decoded = []
        for name, data in frames:
            with Image.open(io.BytesIO(data)) as image:
                decoded.append((name, data, image.width, image.height))
        task.frames = decoded
        task.record["size"] = len(decoded)
        task.record["data"] = task.record["id"]
        job = copy.deepcopy(self.job_template)
        jid = self.new_id()
        job.update(
            id=jid,
            task_id=task.record["id"],
            project_id=task.record.get("project_id"),
            start_frame=0,
            stop_frame=max(len(decoded) - 1, 0),
            frame_count=len(decoded),
            state="new",
            stage="annotation",
            status="annotation",
            url=f"{self.base_url}/api/jobs/{jid}",
            labels={"url": f"{self.base_url}/api/labels?job_id={jid}"},
            issues={"count": 0, "url": f"{self.base_url}/api/issues?job_id={jid}"},
            updated_date=_now(),
        )
        self.jobs[jid] = job
        task.record["jobs"]["count"] = 1

    def touch(self, task: FakeTask) -> None:
        task.record["updated_date"] = _now()


class CvatServer(ThreadingHTTPServer):
    """The HTTP server; ``url`` is its address, ``state`` its data, ``violations`` schema errors."""

    daemon_threads = True

    def __init__(self, shared_data: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.checker: OpenApiChecker = load_checker(str(shared_data / "cvat" / "schema.yml"))
        self.state = CvatState(shared_data / "cvat" / "rest_dumps", self.url)
        self.violations: list[str] = []
        self.requests_seen: list[tuple[str, str]] = []
        self.delay_s = 0.0
        self.fail_next: list[tuple[str, str, int]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> CvatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: CvatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    # --------------------------------------------------------------------- plumbing

    def _send(
        self,
        status: int,
        body: Any = None,
        content_type: str = "application/vnd.cvat+json",
        headers: list[tuple[str, str]] | None = None,
        check: bool = True,
    ) -> None:
        raw = b""
        if isinstance(body, bytes):
            raw = body
        elif body is not None:
            raw = json.dumps(body).encode()
            if check and status < 400:
                try:
                    self.server.violations.extend(
                        self.server.checker.check_response(self.command, self.path_only, status, body)
                    )
                except KeyError as exc:
                    self.server.violations.append(str(exc))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in headers or []:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, detail: str) -> None:
        self._send(status, {"detail": detail}, check=False)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self) -> Any:
        raw = self._body()
        body = json.loads(raw) if raw else {}
        try:
            self.server.violations.extend(
                self.server.checker.check_request(self.command, self.path_only, body)
            )
        except KeyError as exc:
            self.server.violations.append(str(exc))
        return body

    def _multipart(self) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        raw = self._body()
        header = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        fields, files = {}, []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename is not None:
                files.append((Path(filename).name, payload))
            elif name:
                fields[name] = payload.decode()
        return fields, files

    def _authorized(self) -> bool:
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        if auth.split(" ", 1)[-1] in state.tokens and auth.startswith(("Bearer ", "Token ")):
            return True
        cookies = dict(
            c.strip().split("=", 1) for c in (self.headers.get("Cookie") or "").split(";") if "=" in c
        )
        return cookies.get("sessionid") in state.sessions

    def _paginate(self, items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
        page = int(query.get("page", ["1"])[0])
        size = int(query.get("page_size", ["10"])[0])
        chunk = items[(page - 1) * size : page * size]
        more = page * size < len(items)
        base = self.server.url + self.path_only
        return {
            "count": len(items),
            "next": f"{base}?page={page + 1}&page_size={size}" if more else None,
            "previous": f"{base}?page={page - 1}&page_size={size}" if page > 1 else None,
            "results": chunk,
        }

    def _dispatch(self) -> None:
        parsed = urlparse(self.path)
        self.path_only = unquote(parsed.path)
        query = parse_qs(parsed.query)
        self.server.requests_seen.append((self.command, self.path_only))
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        for i, (method, pattern, status) in enumerate(self.server.fail_next):
            if method == self.command and re.search(pattern, self.path_only):
                self.server.fail_next.pop(i)
                self._error(status, "injected failure")
                return
        path = self.path_only.rstrip("/")
        with self.server.state.lock:
            for method, pattern, handler, public in ROUTES:
                match = re.fullmatch(pattern, path)
                if match and method == self.command:
                    if not public and not self._authorized():
                        self._error(HTTPStatus.UNAUTHORIZED, "Authentication credentials were not provided.")
                        return
                    handler(self, query, *[int(g) if g.isdigit() else g for g in match.groups()])
                    return
        self._error(HTTPStatus.NOT_FOUND, f"no route for {self.command} {path}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815 (http.server names)

    # --------------------------------------------------------------------- endpoints

    def about(self, query):
        self._send(
            200,
            {
                "name": "Computer Vision Annotation Tool",
                "description": "test server",
                "version": CVAT_VERSION,
                "logo_url": "",
                "subtitle": "",
            },
        )

    def login(self, query):
        body = self._json()
        state = self.server.state
        if state.users.get(body.get("username")) != body.get("password"):
            self._error(HTTPStatus.BAD_REQUEST, "Unable to log in with provided credentials.")
            return
        session = uuid.uuid4().hex
        state.sessions.add(session)
        self._send(
            200,
            {"key": session},
            headers=[
                ("Set-Cookie", f"sessionid={session}; Path=/"),
                ("Set-Cookie", f"csrftoken={uuid.uuid4().hex}; Path=/"),
            ],
        )

    def logout(self, query):
        self._send(200, {"detail": "Successfully logged out."}, check=False)

    def list_projects(self, query):
        items = list(self.server.state.projects.values())
        if "name" in query:
            items = [p for p in items if p["name"] == query["name"][0]]
        if "search" in query:
            items = [p for p in items if query["search"][0].lower() in p["name"].lower()]
        self._send(200, self._paginate(items, query))

    def get_project(self, query, pid):
        project = self.server.state.projects.get(pid)
        self._send(200, project) if project else self._error(404, "Not found.")

    def list_tasks(self, query):
        items = [t.record for t in self.server.state.tasks.values()]
        if "project_id" in query:
            items = [t for t in items if t.get("project_id") == int(query["project_id"][0])]
        if "name" in query:
            items = [t for t in items if t["name"] == query["name"][0]]
        self._send(200, self._paginate(items, query))

    def get_task(self, query, tid):
        task = self.server.state.tasks.get(tid)
        self._send(200, task.record) if task else self._error(404, "Not found.")

    def patch_task(self, query, tid):
        task = self.server.state.tasks.get(tid)
        if not task:
            self._error(404, "Not found.")
            return
        body = self._json()
        for key in ("name", "subset", "status"):
            if key in body:
                task.record[key] = body[key]
        self.server.state.touch(task)
        self._send(200, task.record)

    def create_task(self, query):
        body = self._json()
        state = self.server.state
        project_id = body.get("project_id")
        if project_id is not None and project_id not in state.projects:
            self._error(400, f"project {project_id} does not exist")
            return
        task = state.add_task(body["name"], project_id, body.get("subset", ""))
        for raw in body.get("labels", []) or []:
            state._make_label(raw, {"task_id": task.record["id"]})
        self._send(201, task.record)

    def task_data(self, query, tid):
        task = self.server.state.tasks.get(tid)
        if not task:
            self._error(404, "Not found.")
            return
        if "Upload-Start" in self.headers:
            task.uploads = []
            self._body()
            self._send(202, b"", check=False)
        elif "Upload-Multiple" in self.headers:
            _, files = self._multipart()
            task.uploads.extend(files)
            self._send(200, b"", check=False)
        elif "Upload-Finish" in self.headers:
            if "multipart" in (self.headers.get("Content-Type") or ""):
                fields, _ = self._multipart()
                order = json.loads(fields["upload_file_order"]) if "upload_file_order" in fields else None
            else:
                fields = self._json()
                order = fields.get("upload_file_order")
            files = sorted(task.uploads, key=lambda f: order.index(f[0]) if order and f[0] in order else f[0])
            rq_id = f"create:task.id{tid}-{uuid.uuid4().hex[:8]}"
            try:
                self.server.state.set_frames(task, files)
                status, message = "finished", ""
            except Exception as exc:  # corrupt upload: CVAT fails the background request
                status, message = "failed", f"could not read the uploaded images: {exc}"
            self.server.state.requests[rq_id] = {
                "id": rq_id,
                "status": status,
                "message": message,
                "progress": 1.0,
                "operation": {
                    "type": "create:task",
                    "target": "task",
                    "task_id": tid,
                    "project_id": task.record.get("project_id"),
                },
                "created_date": _now(),
                "started_date": _now(),
                "finished_date": _now(),
            }
            self._send(202, {"rq_id": rq_id})
        else:
            number = int(query.get("number", ["0"])[0])
            if query.get("type", [""])[0] != "frame" or not 0 <= number < len(task.frames):
                self._error(400, f"frame {number} does not exist")
                return
            name, data, _, _ = task.frames[number]
            kind = "image/png" if name.lower().endswith(".png") else "image/jpeg"
            self._send(200, data, content_type=kind, check=False)

    def data_meta(self, query, tid):
        task = self.server.state.tasks.get(tid)
        if not task:
            self._error(404, "Not found.")
            return
        self._send(
            200,
            {
                "chunks_updated_date": task.record["updated_date"],
                "chunk_size": 72,
                "size": len(task.frames),
                "image_quality": 70,
                "start_frame": 0,
                "stop_frame": max(len(task.frames) - 1, 0),
                "frame_filter": "",
                "frames": [
                    {"width": w, "height": h, "name": n, "related_files": 0, "has_related_context": False}
                    for n, _, w, h in task.frames
                ],
                "deleted_frames": [],
                "included_frames": None,
                "storage": "local",
                "cloud_storage_id": None,
            },
        )

    def get_annotations(self, query, tid):
        task = self.server.state.tasks.get(tid)
        if not task:
            self._error(404, "Not found.")
            return
        self._send(200, {"version": 0, "tags": [], "shapes": task.shapes, "tracks": []})

    def put_annotations(self, query, tid):
        task = self.server.state.tasks.get(tid)
        if not task:
            self._error(404, "Not found.")
            return
        body = self._json()
        shapes = []
        for raw in body.get("shapes", []):
            shape = {**raw, "id": self.server.state.new_id()}
            shape["elements"] = [{**e, "id": self.server.state.new_id()} for e in raw.get("elements", [])]
            shapes.append(shape)
        task.shapes = shapes
        self.server.state.touch(task)
        self._send(200, {"version": 1, "tags": [], "shapes": shapes, "tracks": []}, check=False)

    def get_request(self, query, rq_id):
        request = self.server.state.requests.get(rq_id)
        self._send(200, request) if request else self._error(404, "Not found.")

    def list_labels(self, query):
        state = self.server.state
        items = [lab for lab in state.labels.values() if not lab.get("has_parent")]
        if "project_id" in query:
            items = [lab for lab in items if lab.get("project_id") == int(query["project_id"][0])]
        if "task_id" in query:
            tid = int(query["task_id"][0])
            pid = state.tasks[tid].record.get("project_id") if tid in state.tasks else None
            items = [
                lab for lab in items if lab.get("task_id") == tid or (pid and lab.get("project_id") == pid)
            ]
        if "job_id" in query:
            job = state.jobs.get(int(query["job_id"][0]), {})
            items = [
                lab
                for lab in items
                if lab.get("project_id") == job.get("project_id") or lab.get("task_id") == job.get("task_id")
            ]
        self._send(200, self._paginate(items, query))

    def list_jobs(self, query):
        items = list(self.server.state.jobs.values())
        if "task_id" in query:
            items = [j for j in items if j["task_id"] == int(query["task_id"][0])]
        self._send(200, self._paginate(items, query))

    def get_job(self, query, jid):
        job = self.server.state.jobs.get(jid)
        self._send(200, job) if job else self._error(404, "Not found.")

    def patch_job(self, query, jid):
        job = self.server.state.jobs.get(jid)
        if not job:
            self._error(404, "Not found.")
            return
        body = self._json()
        for key in ("state", "stage", "assignee"):
            if key in body:
                job[key] = body[key]
        job["updated_date"] = _now()
        self._send(200, job)


ROUTES = [
    ("GET", r"/api/server/about", _Handler.about, True),
    ("POST", r"/api/auth/login", _Handler.login, True),
    ("POST", r"/api/auth/logout", _Handler.logout, False),
    ("GET", r"/api/projects", _Handler.list_projects, False),
    ("GET", r"/api/projects/(\d+)", _Handler.get_project, False),
    ("GET", r"/api/tasks", _Handler.list_tasks, False),
    ("POST", r"/api/tasks", _Handler.create_task, False),
    ("GET", r"/api/tasks/(\d+)", _Handler.get_task, False),
    ("PATCH", r"/api/tasks/(\d+)", _Handler.patch_task, False),
    ("POST", r"/api/tasks/(\d+)/data", _Handler.task_data, False),
    ("GET", r"/api/tasks/(\d+)/data", _Handler.task_data, False),
    ("GET", r"/api/tasks/(\d+)/data/meta", _Handler.data_meta, False),
    ("GET", r"/api/tasks/(\d+)/annotations", _Handler.get_annotations, False),
    ("PUT", r"/api/tasks/(\d+)/annotations", _Handler.put_annotations, False),
    ("GET", r"/api/requests/([^/]+)", _Handler.get_request, False),
    ("GET", r"/api/labels", _Handler.list_labels, False),
    ("GET", r"/api/jobs", _Handler.list_jobs, False),
    ("GET", r"/api/jobs/(\d+)", _Handler.get_job, False),
    ("PATCH", r"/api/jobs/(\d+)", _Handler.patch_job, False),
]
