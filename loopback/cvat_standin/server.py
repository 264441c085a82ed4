"""A CVAT stand-in: a CVAT-compatible HTTP server on 127.0.0.1 that the real cvat-sdk client talks to.

It is there to try the bridge and to run the tests without a CVAT. It is never used when a real CVAT
URL is configured: nothing starts it but the code that asks for it (the test fixtures, a demo).

Covered (CVAT 2.x REST semantics, schema v2.51.0 in ``../shared/data/cvat/schema.yml``):

- ``/api/server/about``; auth by password login (session cookie) or access token;
- projects, labels (sublabels, attributes), tasks: create (``segment_size`` honoured), data upload in
  CVAT's Upload-Start/Multiple/Finish protocol, background requests, data meta, frames;
- jobs: a task's frames are cut into jobs of ``segment_size`` frames (one job when it is 0), each with
  ``start_frame``/``stop_frame``/``frame_count`` and type ``annotation``; ``GET /api/jobs/{id}/data``
  (``type=frame``; ``number`` is the absolute task frame and must lie in the job) and ``/data/meta``
  (the job's own frames); ``PATCH /api/jobs/{id}`` with ``stage``/``state``/``assignee``: the status is
  ``annotation`` at stage annotation, ``completed`` at stage acceptance with state completed, else
  ``validation``; a new stage without a state resets the state to ``new``; after every job change the
  task's status is derived from its jobs (any annotation -> annotation, else any validation ->
  validation, else completed);
- annotations (shapes) of jobs and tasks: GET, PUT (replace), PATCH ``?action=create|update|delete``,
  DELETE; shapes keep ``source`` (``manual`` unless given); new shapes and their skeleton elements get
  new ids; a task-level write is split over the task's jobs as CVAT does; every job-level write is
  counted in ``annotation_writes`` (job, action, shapes) and ``duplicate_shapes(job)`` counts shapes
  stored twice, for the tests of uploads in batches;
- webhooks: create, list, read, update, delete, ping, deliveries (list, read, redelivery).

Events go to the active *project* webhooks of the resource's project whose events list holds the event
(organization webhooks are stored but never fire: the stand-in has no organizations):

- ``create:task`` when a task is created, ``create:job`` when its jobs are, ``update:task`` when a
  task is patched;
- ``update:job`` when a job changes (``before_update`` holds every changed key with its old value,
  ``updated_date`` included), then ``update:task`` when the task's status changes;
- every annotation write that changes something (PUT/PATCH/DELETE, job or task) touches
  ``updated_date`` of the job, its task and its project and emits ``update:job``, ``update:task`` and
  ``update:project`` with ``before_update == {"updated_date": old}``, as CVAT does: a webhook handler
  that reacts to ``update:job`` without looking at ``before_update`` sees its own uploads.

Deliveries are sent as CVAT's webhook worker sends them: ``POST`` of ``json.dumps(payload)`` (default
separators) with ``Content-Type: application/json``, ``X-Signature-256: sha256=<HMAC-SHA256(secret,
body)>`` when the webhook has a secret, a timeout of ``server.webhook_timeout_s`` (CVAT: 10 s); a
connection error is recorded as status 502 and a timeout as 504; the response body is kept as text
("" when it is over 1 MiB); each delivery is sent once (no retries, as in CVAT releases before 2026).
They leave from one background thread in the order the changes were made; ``server.deliveries`` lists
them and ``server.wait_deliveries(timeout_s)`` waits until none is pending. A ping is sent at once and
answered with its delivery, as CVAT does.

Stricter than CVAT, so that mistakes show: a job-level annotation write with a frame outside the job,
or a task-level one outside the task, is refused with 400 (CVAT stores or drops it silently); an
``update`` of a shape id the job does not hold is refused with 400; tags and tracks are refused with 400
(only shapes are kept); frames are served for ``type=frame`` only.

Objects start from CVAT's real REST dumps (``../shared/data/cvat/rest_dumps``) with their ids and names
replaced, and every JSON request and response is checked against CVAT's OpenAPI schema; violations are
collected in ``server.violations`` (tests assert it stays empty).

Fault injection for robustness tests, on every route: ``server.delay_s`` (slow answers),
``server.fail_next`` (a list of (method, path regex, status) consumed in order: refused, nothing done),
``server.fail_after_commit`` (the same, but the request is carried out and its answer replaced by that
status: a proxy's 504 after the server committed), ``server.commit_late`` (a list of (method, path
regex, status, delay_s): answered with that status at once, carried out ``delay_s`` later: a proxy's 504
while the server is still writing), ``server.on_request`` (a list of (method, path regex, callable):
the callable runs, once, as the request arrives: something else changing CVAT at that moment).

Webhook target URLs are checked with Django's URLValidator, as CVAT's ``URLField`` does
(:func:`url_error`): ``http://bridge:8000`` (a single-label host) is refused with 400.

An annotator's edit in CVAT's UI is :meth:`CvatState.edit_shape`: the UI, not the server, marks an
edited ``auto`` shape ``semi-auto`` (:func:`compute_new_source`).
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import hashlib
import hmac
import http.client
import io
import json
import queue
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
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
WEBHOOK_TIMEOUT_S = 10.0  # CVAT's fixed WEBHOOK_TIMEOUT
RESPONSE_SIZE_LIMIT = 1024 * 1024  # CVAT keeps a receiver's answer up to 1 MiB
ANNOTATION_ACTIONS = ("create", "update", "delete")


# the shape fields whose change makes cvat-core's Shape.save call computeNewSource (savePoints,
# saveRotation, saveOccluded, saveOutside, saveZOrder); saveLabel and saveAttributes leave the source
SOURCE_CHANGING_FIELDS = frozenset({"points", "rotation", "occluded", "outside", "z_order"})

# Django's URLValidator (CVAT's Webhook.target_url is a URLField): a host is an IPv4 or IPv6 address,
# ``localhost`` or a dotted name whose last label is a TLD; a single-label name such as ``bridge`` is refused
_UL = "\u00a1-\uffff"
_OCTET = r"(?:0|25[0-5]|2[0-4][0-9]|1[0-9]?[0-9]?|[1-9][0-9]?)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV6 = r"\[[0-9a-f:.]+\]"
_HOSTNAME = rf"[a-z{_UL}0-9](?:[a-z{_UL}0-9-]{{0,61}}[a-z{_UL}0-9])?"
_DOMAIN = rf"(?:\.(?!-)[a-z{_UL}0-9-]{{1,63}}(?<!-))*"
_TLD = rf"\.(?!-)(?:[a-z{_UL}-]{{2,63}}|xn--[a-z0-9]{{1,59}})(?<!-)\.?"
DJANGO_URL = re.compile(
    r"^(?:[a-z0-9.+-]*)://(?:[^\s:@/]+(?::[^\s:@/]*)?@)?"
    rf"(?:{_IPV4}|{_IPV6}|(?:{_HOSTNAME}{_DOMAIN}{_TLD}|localhost))"
    r"(?::[0-9]{1,5})?(?:[/?#][^\s]*)?\Z",
    re.IGNORECASE,
)
URL_SCHEMES = ("http", "https", "ftp", "ftps")


def url_error(url: str) -> str:
    """Why Django's URLValidator (CVAT's check of a webhook's ``target_url``) refuses ``url``, or "".

    Examples:
        >>> url_error("http://bridge.cvat.internal:8000/health")
        ''
        >>> url_error("http://bridge:8000/health")
        'Enter a valid URL.'
    """
    if not isinstance(url, str) or len(url) > 2048 or url.split("://")[0].lower() not in URL_SCHEMES:
        return "Enter a valid URL."
    return "" if DJANGO_URL.match(url) else "Enter a valid URL."


def compute_new_source(source: str) -> str:
    """The ``source`` CVAT's client (cvat-core's ``computeNewSource``) gives a shape an annotator edits:
    ``auto`` and ``semi-auto`` become ``semi-auto``, ``consensus`` stays, anything else is ``manual``."""
    if source in ("auto", "semi-auto"):
        return "semi-auto"
    return "consensus" if source == "consensus" else "manual"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Old values of the keys that changed (labels ignored), as CVAT's ``before_update``."""
    keys = [*new, *(k for k in old if k not in new)]
    return {k: old.get(k) for k in keys if k != "labels" and old.get(k) != new.get(k)}


class CvatError(Exception):
    """A request CVAT would refuse: ``status`` and ``detail`` go back to the client."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class FakeTask:
    """Server-side state of a task; ``shapes`` holds every shape of its jobs (task frame numbers)."""

    record: dict[str, Any]
    frames: list[tuple[str, bytes, int, int]] = field(default_factory=list)  # name, bytes, width, height
    shapes: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[tuple[str, bytes]] = field(default_factory=list)
    deleted_frames: list[int] = field(default_factory=list)  # PATCH /api/tasks/{id}/data/meta


class CvatState:
    """Projects, tasks, labels, jobs, requests, webhooks and lambda functions, built from real dumps.

    ``on_event(webhook_id, payload)`` receives each webhook payload as it is emitted (the server
    queues it for delivery).
    """

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
        self.user = {
            "url": f"{base_url}/api/users/1",
            "id": 1,
            "username": "admin",
            "first_name": "Admin",
            "last_name": "",
        }
        self.tokens = {"test-token"}
        self.sessions: set[str] = set()
        self.projects: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, FakeTask] = {}
        self.labels: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}  # WebhookRead records
        self.webhook_secrets: dict[int, str] = {}
        self.on_event: Any = lambda webhook_id, payload: None
        # every annotation write as (job id or None for a task-level write, action, shapes): what the
        # tests count (uploads in batches, nothing sent twice)
        self.annotation_writes: list[tuple[int | None, str, int]] = []
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

    def _label_specs(self, task: FakeTask) -> dict[int, set[int]]:
        """Label id -> attribute spec ids of the labels a task's shapes may use (sublabels included)."""
        project_id, task_id = task.record.get("project_id"), task.record["id"]
        return {
            lab["id"]: {a["id"] for a in lab.get("attributes", [])}
            for lab in self.labels.values()
            if (project_id is not None and lab.get("project_id") == project_id)
            or lab.get("task_id") == task_id
        }

    # --------------------------------------------------------------------- webhook events

    def emit(
        self, event: str, resource: str, obj: dict[str, Any], before_update: dict[str, Any] | None = None
    ) -> None:
        """Hand the payload of ``event`` to every active project webhook that listens to it."""
        project_id = obj.get("id") if resource == "project" else obj.get("project_id")
        if project_id is None:
            return
        hooks = [
            hook
            for hook in self.webhooks.values()
            if hook["type"] == "project"
            and hook.get("project_id") == project_id
            and hook["is_active"]
            and event in hook["events"]
        ]
        snapshot = copy.deepcopy(obj)
        for hook in hooks:
            payload: dict[str, Any] = {"event": event, resource: snapshot}
            if before_update is not None:
                payload["before_update"] = copy.deepcopy(before_update)
            payload["webhook_id"] = hook["id"]
            payload["sender"] = dict(self.user)
            self.on_event(hook["id"], payload)

    def add_webhook(
        self,
        target_url: str,
        events: list[str],
        project_id: int | None = None,
        kind: str = "project",
        secret: str = "",
        is_active: bool = True,
        description: str = "",
        enable_ssl: bool = True,
    ) -> dict[str, Any]:
        hook = copy.deepcopy(self.webhook_template)
        wid = self.new_id()
        hook.update(
            id=wid,
            url=f"{self.base_url}/api/webhooks/{wid}",
            target_url=target_url,
            description=description,
            type=kind,
            content_type="application/json",
            is_active=is_active,
            enable_ssl=enable_ssl,
            created_date=_now(),
            updated_date=_now(),
            owner=dict(self.user),
            project_id=project_id,
            organization=None,
            events=list(dict.fromkeys(events)),
        )
        hook.pop("last_status", None)  # CVAT leaves both out until the first delivery
        hook.pop("last_delivery_date", None)
        self.webhooks[wid] = hook
        self.webhook_secrets[wid] = secret
        return hook

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
        self,
        name: str,
        project_id: int | None,
        subset: str = "",
        status: str = "annotation",
        segment_size: int = 0,
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
            segment_size=int(segment_size or 0),
            overlap=0,
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
        self.emit("create:task", "task", record)
        return task

    def set_frames(
        self, task: FakeTask, frames: list[tuple[str, bytes]], segment_size: int | None = None
    ) -> None:
        """Attach images to a task and cut them into jobs of ``segment_size`` frames (default: the
        task's ``segment_size``; 0 means one job for all frames)."""
        decoded = []
        for name, data in frames:
            with Image.open(io.BytesIO(data)) as image:
                decoded.append((name, data, image.width, image.height))
        tid = task.record["id"]
        for jid in [j["id"] for j in self.task_jobs(task)]:
            del self.jobs[jid]
        task.frames = decoded
        size = len(decoded)
        step = int(segment_size if segment_size is not None else task.record.get("segment_size") or 0)
        step = step if step > 0 else max(size, 1)
        task.record["size"] = size
        task.record["segment_size"] = step
        task.record["data"] = tid
        for start in range(0, max(size, 1), step):
            stop = min(start + step, max(size, 1)) - 1
            job = copy.deepcopy(self.job_template)
            jid = self.new_id()
            job.update(
                id=jid,
                task_id=tid,
                project_id=task.record.get("project_id"),
                start_frame=start,
                stop_frame=stop,
                frame_count=min(stop + 1, size) - start if size else 0,
                state="new",
                stage="annotation",
                status="annotation",
                type="annotation",
                assignee=None,
                assignee_updated_date=None,
                parent_job_id=None,
                url=f"{self.base_url}/api/jobs/{jid}",
                labels={"url": f"{self.base_url}/api/labels?job_id={jid}"},
                issues={"count": 0, "url": f"{self.base_url}/api/issues?job_id={jid}"},
                created_date=_now(),
                updated_date=_now(),
            )
            self.jobs[jid] = job
            self.emit("create:job", "job", job)
        self._count_jobs(task)

    def touch(self, task: FakeTask) -> None:
        task.record["updated_date"] = _now()

    # --------------------------------------------------------------------- jobs

    def task_jobs(self, task: FakeTask) -> list[dict[str, Any]]:
        return sorted(
            (j for j in self.jobs.values() if j["task_id"] == task.record["id"]),
            key=lambda j: j["start_frame"],
        )

    @staticmethod
    def job_frames(job: dict[str, Any]) -> range:
        """The absolute task frame numbers of a job."""
        return range(job["start_frame"], job["start_frame"] + job["frame_count"])

    def _count_jobs(self, task: FakeTask) -> list[dict[str, Any]]:
        jobs = self.task_jobs(task)
        task.record["jobs"].update(
            count=len(jobs),
            completed=sum(j["status"] == "completed" for j in jobs),
            validation=sum(j["status"] == "validation" for j in jobs),
        )
        return jobs

    def update_job(self, job: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a PatchedJobWriteRequest as CVAT does, emit ``update:job``, then refresh the task."""
        assignee = changes.get("assignee")
        if assignee not in (None, self.user["id"]):
            raise CvatError(HTTPStatus.BAD_REQUEST, f'Invalid pk "{assignee}" - object does not exist.')
        before = copy.deepcopy(job)
        stage = changes.get("stage", job["stage"])
        state = changes.get("state", "new" if stage != job["stage"] else job["state"])
        if "stage" in changes or "state" in changes:
            if stage == "annotation":
                job["status"] = "annotation"
            elif stage == "acceptance" and state == "completed":
                job["status"] = "completed"
            else:
                job["status"] = "validation"
        job["stage"], job["state"] = stage, state
        if "assignee" in changes:
            new = dict(self.user) if assignee is not None else None
            if new != job.get("assignee"):
                job["assignee"], job["assignee_updated_date"] = new, _now()
        job["updated_date"] = _now()
        self.emit("update:job", "job", job, _diff(before, job))
        self.refresh_task_status(self.tasks[job["task_id"]])
        return job

    def refresh_task_status(self, task: FakeTask) -> None:
        """Derive a task's status from its jobs, as CVAT's post-save handler of jobs does."""
        jobs = self._count_jobs(task)
        if not jobs:
            return
        statuses = {j["status"] for j in jobs}
        status = next((s for s in ("annotation", "validation") if s in statuses), "completed")
        if status != task.record["status"]:
            before = copy.deepcopy(task.record)
            task.record["status"] = status
            task.record["updated_date"] = _now()
            self.emit("update:task", "task", task.record, _diff(before, task.record))

    # --------------------------------------------------------------------- annotations

    def _touch_after_annotations(self, job: dict[str, Any]) -> None:
        """CVAT's ``_set_updated_date``: job, task and project touched, each save an update event."""
        task = self.tasks[job["task_id"]]
        project = self.projects.get(task.record.get("project_id"))
        for resource, obj in (("job", job), ("task", task.record), ("project", project)):
            if obj is not None:
                old = obj["updated_date"]
                obj["updated_date"] = _now()
                self.emit(f"update:{resource}", resource, obj, {"updated_date": old})

    def _stored_shape(self, raw: dict[str, Any], keep_id: bool, parent: bool = True) -> dict[str, Any]:
        """A LabeledShapeRequest as CVAT stores and returns it (defaults filled, ids assigned)."""
        given = raw.get("id")
        shape = {
            "type": raw["type"],
            "occluded": bool(raw.get("occluded", False)),
            "outside": bool(raw.get("outside", False)),
            "z_order": raw.get("z_order", 0),
            "rotation": raw.get("rotation", 0.0),
            "points": [] if raw["type"] == "skeleton" else list(raw.get("points") or []),
            "id": given if keep_id and given is not None else self.new_id(),
            "frame": raw["frame"],
            "label_id": raw["label_id"],
            "group": raw.get("group", 0),
            "source": raw.get("source", "manual"),
            "attributes": [
                {"spec_id": a["spec_id"], "value": str(a["value"])} for a in raw.get("attributes") or []
            ],
        }
        if parent:
            shape["elements"] = [
                self._stored_shape(e, keep_id, parent=False) for e in raw.get("elements") or []
            ]
        return shape

    def _check_shapes(self, task: FakeTask, shapes: list[dict[str, Any]], frames: range, where: str) -> None:
        specs = self._label_specs(task)
        for shape in shapes:
            for item in [shape, *(shape.get("elements") or [])]:
                if item["frame"] not in frames:
                    span = f"frames {frames.start}-{frames.stop - 1}" if frames else "no frames"
                    raise CvatError(
                        HTTPStatus.BAD_REQUEST,
                        f"shape frame {item['frame']} is outside {where} ({span}); "
                        "frame numbers are absolute task frames",
                    )
                if item["label_id"] not in specs:
                    raise CvatError(HTTPStatus.BAD_REQUEST, f"label_id `{item['label_id']}` is invalid")
                for attr in item.get("attributes") or []:
                    if attr["spec_id"] not in specs[item["label_id"]]:
                        raise CvatError(HTTPStatus.BAD_REQUEST, f"spec_id `{attr['spec_id']}` is invalid")

    @staticmethod
    def _only_shapes(data: dict[str, Any]) -> list[dict[str, Any]]:
        if data.get("tags") or data.get("tracks"):
            raise CvatError(
                HTTPStatus.BAD_REQUEST, "the CVAT stand-in keeps shapes only (no tags, no tracks)"
            )
        return list(data.get("shapes") or [])

    def job_shapes(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        frames = self.job_frames(job)
        task = self.tasks[job["task_id"]]
        return sorted((s for s in task.shapes if s["frame"] in frames), key=lambda s: s["frame"])

    def write_job_annotations(
        self, job: dict[str, Any], action: str, data: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """``put`` (replace), ``create``, ``update``, ``delete`` (by id) or ``clear`` a job's shapes;
        returns the shapes as stored (``delete``: as sent). Nothing changes when the request is refused."""
        task = self.tasks[job["task_id"]]
        shapes = self._only_shapes(data or {})
        frames = self.job_frames(job)
        if action in ("put", "create", "update"):
            self._check_shapes(task, shapes, frames, f"job {job['id']}")
        self.annotation_writes.append((job["id"], action, len(shapes)))
        if action == "put":
            removed = [s for s in task.shapes if s["frame"] in frames]
            result = [self._stored_shape(s, keep_id=False) for s in shapes]
            task.shapes = [s for s in task.shapes if s["frame"] not in frames] + result
            changed = bool(removed or result)
        elif action == "create":
            result = [self._stored_shape(s, keep_id=False) for s in shapes]
            task.shapes.extend(result)
            changed = bool(result)
        elif action == "update":
            index = {s["id"]: i for i, s in enumerate(task.shapes) if s["frame"] in frames}
            missing = [s.get("id") for s in shapes if s.get("id") not in index]
            if missing:
                raise CvatError(HTTPStatus.BAD_REQUEST, f"shape id(s) {missing} are not in job {job['id']}")
            result = [self._stored_shape(s, keep_id=True) for s in shapes]
            for shape in result:
                task.shapes[index[shape["id"]]] = shape
            changed = bool(result)
        elif action == "delete":
            ids = {s.get("id") for s in shapes}
            task.shapes = [s for s in task.shapes if not (s["frame"] in frames and s["id"] in ids)]
            result, changed = shapes, bool(shapes)
        elif action == "clear":
            removed = [s for s in task.shapes if s["frame"] in frames]
            task.shapes = [s for s in task.shapes if s["frame"] not in frames]
            result, changed = [], bool(removed)
        else:
            raise CvatError(HTTPStatus.BAD_REQUEST, "Please specify a correct 'action' for the request")
        if changed:
            self._touch_after_annotations(job)
        return result

    def duplicate_shapes(self, job: dict[str, Any]) -> int:
        """How many shapes of a job repeat another one of it (same frame, label, type, points, source
        and attributes): 0 when nothing was created twice."""
        seen: set[str] = set()
        repeated = 0
        for shape in self.job_shapes(job):
            plain = {k: shape.get(k) for k in ("frame", "label_id", "type", "points", "source", "attributes")}
            key = json.dumps(plain, sort_keys=True)
            repeated += key in seen
            seen.add(key)
        return repeated

    def edit_shape(self, shape_id: int, **changes: Any) -> dict[str, Any]:
        """What CVAT's UI saves when an annotator edits a shape (moves its points, relabels it...): the
        shape with ``changes``, as a job-level ``update`` (so the job is touched and its events go out);
        the shape as stored. As in cvat-core, only a change of :data:`SOURCE_CHANGING_FIELDS` gives it
        the source :func:`compute_new_source` makes: a relabel or an attribute edit keeps ``auto``."""
        with self.lock:
            for task in self.tasks.values():
                shape = next((s for s in task.shapes if s["id"] == shape_id), None)
                if shape is None:
                    continue
                job = next(j for j in self.task_jobs(task) if shape["frame"] in self.job_frames(j))
                edited = {**copy.deepcopy(shape), **changes}
                if SOURCE_CHANGING_FIELDS & set(changes):
                    edited["source"] = compute_new_source(shape["source"])
                (stored,) = self.write_job_annotations(job, "update", {"shapes": [edited]})
                return stored
        raise CvatError(HTTPStatus.NOT_FOUND, f"no shape {shape_id}")

    def write_task_annotations(
        self, task: FakeTask, action: str, data: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The same operations on a task: the shapes are split over its jobs by frame."""
        shapes = self._only_shapes(data or {})
        jobs = self.task_jobs(task)
        if action in ("put", "create", "update"):
            self._check_shapes(task, shapes, range(len(task.frames)), f"task {task.record['id']}")
        if action == "update":
            known = {s["id"] for s in task.shapes}
            missing = [s.get("id") for s in shapes if s.get("id") not in known]
            if missing:
                raise CvatError(
                    HTTPStatus.BAD_REQUEST, f"shape id(s) {missing} are not in task {task.record['id']}"
                )
        result = []
        for job in jobs:
            part = [s for s in shapes if s["frame"] in self.job_frames(job)]
            if part or action in ("put", "clear"):
                result += self.write_job_annotations(job, action, {"shapes": part})
        return result


def _labeled_data(shapes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": 0, "tags": [], "shapes": shapes, "tracks": []}


class CvatServer(ThreadingHTTPServer):
    """The HTTP server; ``url`` is its address, ``state`` its data, ``violations`` schema errors.

    ``deliveries`` lists the webhook deliveries made, oldest first: WebhookDeliveryRead fields
    (``request`` is the payload, ``response`` the receiver's answer as text) plus ``payload`` (the same
    as ``request``) and the ``headers`` and raw ``body`` that were sent. ``webhook_timeout_s`` is the
    delivery timeout (CVAT: 10 s). ``check_schema`` (on by default) checks every JSON request and answer
    against CVAT's schema (``violations``); a benchmark that shares the bridge's cores turns it off, for
    the stand-in's own checking is not a cost CVAT puts on the bridge (100-160 ms for a job's
    annotations of 190 polygons, which the stand-in answers in about 10 ms).
    """

    daemon_threads = True

    def __init__(self, shared_data: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.checker: OpenApiChecker = load_checker(str(shared_data / "cvat" / "schema.yml"))
        self.state = CvatState(shared_data / "cvat" / "rest_dumps", self.url)
        self.violations: list[str] = []
        self.check_schema = True
        self.requests_seen: list[tuple[str, str]] = []
        self.delay_s = 0.0
        self.fail_next: list[tuple[str, str, int]] = []
        self.fail_after_commit: list[tuple[str, str, int]] = []
        self.commit_late: list[tuple[str, str, int, float]] = []
        self.late_commits: list[tuple[str, str]] = []  # the commit_late requests carried out so far
        self.on_request: list[tuple[str, str, Any]] = []
        self.webhook_timeout_s = WEBHOOK_TIMEOUT_S
        self.deliveries: list[dict[str, Any]] = []
        self._outbox: queue.Queue[tuple[int, dict[str, Any], bool] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self.state.on_event = self._enqueue
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._sender = threading.Thread(target=self._deliver_forever, daemon=True)

    def start(self) -> CvatServer:
        self._thread.start()
        self._sender.start()
        return self

    def stop(self) -> None:
        self._outbox.put(None)
        self.shutdown()
        self.server_close()

    # --------------------------------------------------------------------- webhook deliveries

    def _enqueue(self, webhook_id: int, payload: dict[str, Any], redelivery: bool = False) -> None:
        with self._idle:
            self._pending += 1
        self._outbox.put((webhook_id, payload, redelivery))

    def _deliver_forever(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                self.deliver(*item)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_deliveries(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued delivery has been sent and recorded; False on time-out."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def deliver(
        self, webhook_id: int, payload: dict[str, Any], redelivery: bool = False, only_active: bool = True
    ) -> dict[str, Any] | None:
        """POST one payload to a webhook's target now and record the delivery (None: webhook gone or
        inactive, nothing sent)."""
        with self.state.lock:
            hook = self.state.webhooks.get(webhook_id)
            if hook is None or (only_active and not hook["is_active"]):
                return None
            target, verify = hook["target_url"], hook["enable_ssl"]
            secret = self.state.webhook_secrets.get(webhook_id, "")
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if secret:
            digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            headers["X-Signature-256"] = "sha256=" + digest
        sent = time.perf_counter()
        status, response = self._post(target, body, headers, verify)
        duration_ms = 1000 * (time.perf_counter() - sent)
        with self.state.lock:
            now = _now()
            record = {
                "id": self.state.new_id(),
                "webhook_id": webhook_id,
                "event": payload["event"],
                "status_code": status,
                "redelivery": redelivery,
                "created_date": now,
                "updated_date": now,
                "changed_fields": ",".join(payload.get("before_update", {})),
                "request": payload,
                "response": response,
                "payload": payload,
                "headers": headers,
                "body": body,
                "duration_ms": round(duration_ms, 2),  # until the receiver's answer (CVAT waits 10 s)
            }
            self.deliveries.append(record)
            hook.update(last_status=status, last_delivery_date=now)
        return record

    def _post(self, url: str, body: bytes, headers: dict[str, str], verify: bool) -> tuple[int, str]:
        handlers: list[Any] = [urllib.request.ProxyHandler({})]
        if not verify:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        raw = None
        try:
            with opener.open(request, timeout=self.webhook_timeout_s) as answer:
                status = answer.status
                raw = answer.read(RESPONSE_SIZE_LIMIT + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read(RESPONSE_SIZE_LIMIT + 1)
            except (OSError, http.client.HTTPException):
                raw = None
        except TimeoutError:
            status = HTTPStatus.GATEWAY_TIMEOUT
        except urllib.error.URLError as exc:
            timed_out = isinstance(exc.reason, TimeoutError)
            status = HTTPStatus.GATEWAY_TIMEOUT if timed_out else HTTPStatus.BAD_GATEWAY
        except (OSError, http.client.HTTPException):
            status = HTTPStatus.BAD_GATEWAY
        text = raw.decode("utf-8", "replace") if raw is not None and len(raw) <= RESPONSE_SIZE_LIMIT else ""
        return int(status), text


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
        if getattr(self, "_reply_instead", 0):  # fail_after_commit: done, but answered with an error
            status, body, content_type, headers, self._reply_instead = (
                self._reply_instead,
                {"detail": "injected failure after the change was made"},
                "application/json",
                [],
                0,
            )
            check = False
        raw = b""
        if isinstance(body, bytes):
            raw = body
        elif body is not None:
            raw = json.dumps(body).encode()
            if check and status < 400 and self.server.check_schema:
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
        if not self.server.check_schema:
            return body
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
                self._body()  # read the request out, or keep-alive would take it for the next one
                self._error(status, "injected failure")
                return
        for i, (method, pattern, hook) in enumerate(self.server.on_request):
            if method == self.command and re.search(pattern, self.path_only):
                self.server.on_request.pop(i)
                hook()
                break
        for i, (method, pattern, status, delay_s) in enumerate(self.server.commit_late):
            if method == self.command and re.search(pattern, self.path_only):
                self.server.commit_late.pop(i)
                body = self._body()
                detail = {"detail": "injected failure; the request is carried out later"}
                # this thread is busy until then: the client's next request must take another connection
                self._send(status, detail, "application/json", headers=[("Connection", "close")], check=False)
                self.wfile.flush()
                time.sleep(delay_s)
                self.rfile, self.wfile = io.BytesIO(body), io.BytesIO()  # the late answer goes nowhere
                self._reply_instead = 0
                self._route(query)
                self.server.late_commits.append((self.command, self.path_only))
                return
        self._reply_instead = 0
        for i, (method, pattern, status) in enumerate(self.server.fail_after_commit):
            if method == self.command and re.search(pattern, self.path_only):
                self.server.fail_after_commit.pop(i)
                self._reply_instead = status  # the request is carried out, its answer is lost
                break
        self._route(query)

    def _route(self, query: dict[str, list[str]]) -> None:
        path = self.path_only.rstrip("/")
        for method, pattern, handler, public in ROUTES:
            match = re.fullmatch(pattern, path)
            if match and method == self.command:
                if not public and not self._authorized():
                    self._error(HTTPStatus.UNAUTHORIZED, "Authentication credentials were not provided.")
                    return
                args = [int(g) if g.isdigit() else g for g in match.groups()]
                try:
                    if handler in UNLOCKED:  # sends requests out: holds the lock only for its own reads
                        handler(self, query, *args)
                    else:
                        with self.server.state.lock:
                            handler(self, query, *args)
                except CvatError as exc:
                    self._error(exc.status, exc.detail)
                except (KeyError, TypeError, ValueError) as exc:  # a body CVAT's serializers would refuse
                    self._error(HTTPStatus.BAD_REQUEST, f"malformed request: {exc!r}")
                return
        self._error(HTTPStatus.NOT_FOUND, f"no route for {self.command} {path}")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815 (http.server names)

    def _task(self, tid: int) -> FakeTask:
        task = self.server.state.tasks.get(tid)
        if task is None:
            raise CvatError(HTTPStatus.NOT_FOUND, "Not found.")
        return task

    def _job(self, jid: int) -> dict[str, Any]:
        job = self.server.state.jobs.get(jid)
        if job is None:
            raise CvatError(HTTPStatus.NOT_FOUND, "Not found.")
        return job

    def _webhook(self, wid: int) -> dict[str, Any]:
        hook = self.server.state.webhooks.get(wid)
        if hook is None:
            raise CvatError(HTTPStatus.NOT_FOUND, "Not found.")
        return hook

    # --------------------------------------------------------------------- endpoints

    def about(self, query):
        self._send(
            200,
            {
                "name": "Computer Vision Annotation Tool",
                "description": "CVAT stand-in",
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
        self._send(200, self._task(tid).record)

    def patch_task(self, query, tid):
        task = self._task(tid)
        body = self._json()
        before = copy.deepcopy(task.record)
        for key in ("name", "subset", "status"):
            if key in body:
                task.record[key] = body[key]
        self.server.state.touch(task)
        self.server.state.emit("update:task", "task", task.record, _diff(before, task.record))
        self._send(200, task.record)

    def delete_task(self, query, tid):
        """CVAT's ``DELETE /api/tasks/{id}``: the task and its jobs go (204)."""
        state = self.server.state
        task = self._task(tid)
        for jid in [j["id"] for j in state.task_jobs(task)]:
            del state.jobs[jid]
        del state.tasks[tid]
        state.emit("delete:task", "task", task.record)
        self._send(204)

    def create_task(self, query):
        body = self._json()
        state = self.server.state
        project_id = body.get("project_id")
        if project_id is not None and project_id not in state.projects:
            self._error(400, f"project {project_id} does not exist")
            return
        task = state.add_task(
            body["name"], project_id, body.get("subset", ""), segment_size=body.get("segment_size") or 0
        )
        for raw in body.get("labels", []) or []:
            state._make_label(raw, {"task_id": task.record["id"]})
        self._send(201, task.record)

    def _send_frame(self, task: FakeTask, number: int, query: dict[str, list[str]]) -> None:
        quality = query.get("quality", ["compressed"])[0]
        if quality not in ("compressed", "original"):
            raise CvatError(HTTPStatus.BAD_REQUEST, f"quality {quality!r}: use compressed or original")
        name, data, _, _ = task.frames[number]
        if quality == "original":
            kind = "image/png" if name.lower().endswith(".png") else "image/jpeg"
            self._send(200, data, content_type=kind, check=False)
            return
        buffer = io.BytesIO()  # CVAT's compressed frames: JPEG at the task's image quality
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").save(buffer, "JPEG", quality=int(task.record.get("image_quality") or 70))
        self._send(200, buffer.getvalue(), content_type="image/jpeg", check=False)

    @staticmethod
    def _frame_number(query: dict[str, list[str]]) -> int:
        kind = query.get("type", [""])[0]
        if kind != "frame":
            raise CvatError(
                HTTPStatus.BAD_REQUEST, f"type={kind!r}: the CVAT stand-in serves type=frame only"
            )
        try:
            return int(query["number"][0])
        except (KeyError, ValueError):
            raise CvatError(HTTPStatus.BAD_REQUEST, "type=frame needs an integer number") from None

    def task_data(self, query, tid):
        task = self._task(tid)
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
            if fields.get("image_quality") not in (None, ""):
                task.record["image_quality"] = int(fields["image_quality"])
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
            number = self._frame_number(query)
            if not 0 <= number < len(task.frames):
                raise CvatError(HTTPStatus.BAD_REQUEST, f"frame {number} does not exist")
            self._send_frame(task, number, query)

    def _meta(self, task: FakeTask, frames: range) -> dict[str, Any]:
        return {
            "chunks_updated_date": task.record["updated_date"],
            "chunk_size": 72,
            "size": len(frames),
            "image_quality": int(task.record.get("image_quality") or 70),
            "start_frame": frames.start,
            "stop_frame": max(frames.stop - 1, frames.start),
            "frame_filter": "",
            "frames": [
                {"width": w, "height": h, "name": n, "related_files": 0, "has_related_context": False}
                for n, _, w, h in task.frames[frames.start : frames.stop]
            ],
            "deleted_frames": [n for n in task.deleted_frames if n in frames],
            "included_frames": None,
            "storage": "local",
            "cloud_storage_id": None,
        }

    def data_meta(self, query, tid):
        task = self._task(tid)
        self._send(200, self._meta(task, range(len(task.frames))))

    def patch_data_meta(self, query, tid):
        """CVAT's frame deletion: ``{"deleted_frames": [...]}`` replaces the task's deleted frames."""
        task = self._task(tid)
        body = self._json()
        if "deleted_frames" in body:
            numbers = sorted({int(n) for n in body["deleted_frames"]})
            if any(not 0 <= n < len(task.frames) for n in numbers):
                raise CvatError(HTTPStatus.BAD_REQUEST, f"deleted_frames {numbers} outside the task's frames")
            task.deleted_frames = numbers
            self.server.state.touch(task)
        self._send(200, self._meta(task, range(len(task.frames))))

    def job_data(self, query, jid):
        job = self._job(jid)
        number = self._frame_number(query)
        frames = self.server.state.job_frames(job)
        if number not in frames:
            raise CvatError(
                HTTPStatus.BAD_REQUEST,
                f"frame {number} does not belong to job {jid} "
                f"(frames {job['start_frame']}-{job['stop_frame']})",
            )
        self._send_frame(self.server.state.tasks[job["task_id"]], number, query)

    def job_meta(self, query, jid):
        job = self._job(jid)
        task = self.server.state.tasks[job["task_id"]]
        self._send(200, self._meta(task, self.server.state.job_frames(job)))

    @staticmethod
    def _action(query: dict[str, list[str]]) -> str:
        action = query.get("action", [""])[0]
        if action not in ANNOTATION_ACTIONS:
            raise CvatError(HTTPStatus.BAD_REQUEST, "Please specify a correct 'action' for the request")
        return action

    def get_annotations(self, query, tid):
        task = self._task(tid)
        self._send(200, _labeled_data(sorted(task.shapes, key=lambda s: s["frame"])))

    def put_annotations(self, query, tid):
        task = self._task(tid)
        body = self._json()
        self._send(200, _labeled_data(self.server.state.write_task_annotations(task, "put", body)))

    def patch_annotations(self, query, tid):
        task = self._task(tid)
        action = self._action(query)
        body = self._json()
        self._send(200, _labeled_data(self.server.state.write_task_annotations(task, action, body)))

    def delete_annotations(self, query, tid):
        self.server.state.write_task_annotations(self._task(tid), "clear")
        self._send(204)

    def get_job_annotations(self, query, jid):
        self._send(200, _labeled_data(self.server.state.job_shapes(self._job(jid))))

    def put_job_annotations(self, query, jid):
        job = self._job(jid)
        body = self._json()
        self._send(200, _labeled_data(self.server.state.write_job_annotations(job, "put", body)))

    def patch_job_annotations(self, query, jid):
        job = self._job(jid)
        action = self._action(query)
        body = self._json()
        self._send(200, _labeled_data(self.server.state.write_job_annotations(job, action, body)))

    def delete_job_annotations(self, query, jid):
        self.server.state.write_job_annotations(self._job(jid), "clear")
        self._send(204)

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
        items = sorted(self.server.state.jobs.values(), key=lambda j: j["id"])
        for key in ("task_id", "project_id"):
            if key in query:
                items = [j for j in items if j.get(key) == int(query[key][0])]
        for key in ("stage", "state", "type"):
            if key in query:
                items = [j for j in items if j.get(key) == query[key][0]]
        self._send(200, self._paginate(items, query))

    def get_job(self, query, jid):
        self._send(200, self._job(jid))

    def patch_job(self, query, jid):
        job = self._job(jid)
        body = self._json()
        self._send(200, self.server.state.update_job(job, body))

    # --------------------------------------------------------------------- webhooks

    def list_webhooks(self, query):
        items = sorted(self.server.state.webhooks.values(), key=lambda w: w["id"])
        if "project_id" in query:
            items = [w for w in items if w.get("project_id") == int(query["project_id"][0])]
        for key in ("type", "target_url"):
            if key in query:
                items = [w for w in items if w.get(key) == query[key][0]]
        self._send(200, self._paginate(items, query))

    def create_webhook(self, query):
        body = self._json()
        state = self.server.state
        if url_error(body.get("target_url", "")):
            raise CvatError(HTTPStatus.BAD_REQUEST, f"target_url: {url_error(body.get('target_url', ''))}")
        project_id = body.get("project_id")
        if body.get("type") == "project" and project_id not in state.projects:
            raise CvatError(HTTPStatus.BAD_REQUEST, f"project_id: project {project_id} does not exist")
        hook = state.add_webhook(
            body["target_url"],
            body["events"],
            project_id=project_id if body.get("type") == "project" else None,
            kind=body["type"],
            secret=body.get("secret", ""),
            is_active=body.get("is_active", True),
            description=body.get("description", ""),
            enable_ssl=body.get("enable_ssl", True),
        )
        self._send(201, hook)

    def get_webhook(self, query, wid):
        self._send(200, self._webhook(wid))

    def update_webhook(self, query, wid):
        hook = self._webhook(wid)
        body = self._json()
        if "target_url" in body and url_error(body["target_url"]):
            raise CvatError(HTTPStatus.BAD_REQUEST, f"target_url: {url_error(body['target_url'])}")
        for key in ("target_url", "description", "is_active", "enable_ssl", "content_type"):
            if key in body:
                hook[key] = body[key]
        if "events" in body:
            hook["events"] = list(dict.fromkeys(body["events"]))
        if "secret" in body:
            self.server.state.webhook_secrets[wid] = body["secret"]
        hook["updated_date"] = _now()
        self._send(200, hook)

    def delete_webhook(self, query, wid):
        self._webhook(wid)
        del self.server.state.webhooks[wid]
        self.server.state.webhook_secrets.pop(wid, None)
        self._send(204)

    @staticmethod
    def _delivery_read(record: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "webhook_id", "event", "status_code", "redelivery", "created_date", "updated_date")
        return {k: record[k] for k in (*keys, "changed_fields", "request", "response")}

    def ping_webhook(self, query, wid):
        with self.server.state.lock:
            hook = self._webhook(wid)
            payload = {
                "event": "ping",
                "webhook": copy.deepcopy(hook),
                "sender": dict(self.server.state.user),
            }
        record = self.server.deliver(wid, payload, only_active=False)
        if record is None:  # deleted meanwhile
            raise CvatError(HTTPStatus.NOT_FOUND, "Not found.")
        self._send(200, self._delivery_read(record))

    def list_deliveries(self, query, wid):
        self._webhook(wid)
        items = [self._delivery_read(d) for d in reversed(self.server.deliveries) if d["webhook_id"] == wid]
        self._send(200, self._paginate(items, query))

    def get_delivery(self, query, wid, did):
        self._webhook(wid)
        found = [d for d in self.server.deliveries if d["webhook_id"] == wid and d["id"] == did]
        if not found:
            raise CvatError(HTTPStatus.NOT_FOUND, "Not found.")
        self._send(200, self._delivery_read(found[0]))

    def redeliver(self, query, wid, did):
        self._webhook(wid)
        found = [d for d in self.server.deliveries if d["webhook_id"] == wid and d["id"] == did]
        if not found:
            raise CvatError(HTTPStatus.NOT_FOUND, "Not found.")
        self.server._enqueue(wid, found[0]["request"], redelivery=True)
        self._send(200)


UNLOCKED = {_Handler.ping_webhook}

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
    ("DELETE", r"/api/tasks/(\d+)", _Handler.delete_task, False),
    ("POST", r"/api/tasks/(\d+)/data", _Handler.task_data, False),
    ("GET", r"/api/tasks/(\d+)/data", _Handler.task_data, False),
    ("GET", r"/api/tasks/(\d+)/data/meta", _Handler.data_meta, False),
    ("PATCH", r"/api/tasks/(\d+)/data/meta", _Handler.patch_data_meta, False),
    ("GET", r"/api/tasks/(\d+)/annotations", _Handler.get_annotations, False),
    ("PUT", r"/api/tasks/(\d+)/annotations", _Handler.put_annotations, False),
    ("PATCH", r"/api/tasks/(\d+)/annotations", _Handler.patch_annotations, False),
    ("DELETE", r"/api/tasks/(\d+)/annotations", _Handler.delete_annotations, False),
    ("GET", r"/api/requests/([^/]+)", _Handler.get_request, False),
    ("GET", r"/api/labels", _Handler.list_labels, False),
    ("GET", r"/api/jobs", _Handler.list_jobs, False),
    ("GET", r"/api/jobs/(\d+)", _Handler.get_job, False),
    ("PATCH", r"/api/jobs/(\d+)", _Handler.patch_job, False),
    ("GET", r"/api/jobs/(\d+)/data", _Handler.job_data, False),
    ("GET", r"/api/jobs/(\d+)/data/meta", _Handler.job_meta, False),
    ("GET", r"/api/jobs/(\d+)/annotations", _Handler.get_job_annotations, False),
    ("PUT", r"/api/jobs/(\d+)/annotations", _Handler.put_job_annotations, False),
    ("PATCH", r"/api/jobs/(\d+)/annotations", _Handler.patch_job_annotations, False),
    ("DELETE", r"/api/jobs/(\d+)/annotations", _Handler.delete_job_annotations, False),
    ("GET", r"/api/webhooks", _Handler.list_webhooks, False),
    ("POST", r"/api/webhooks", _Handler.create_webhook, False),
    ("GET", r"/api/webhooks/(\d+)", _Handler.get_webhook, False),
    ("PATCH", r"/api/webhooks/(\d+)", _Handler.update_webhook, False),
    ("PUT", r"/api/webhooks/(\d+)", _Handler.update_webhook, False),
    ("DELETE", r"/api/webhooks/(\d+)", _Handler.delete_webhook, False),
    ("POST", r"/api/webhooks/(\d+)/ping", _Handler.ping_webhook, False),
    ("GET", r"/api/webhooks/(\d+)/deliveries", _Handler.list_deliveries, False),
    ("GET", r"/api/webhooks/(\d+)/deliveries/(\d+)", _Handler.get_delivery, False),
    ("POST", r"/api/webhooks/(\d+)/deliveries/(\d+)/redelivery", _Handler.redeliver, False),
]
