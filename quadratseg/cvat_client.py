"""The CVAT server through cvat-sdk: connect (with retries), read a project, create tasks, and the
:class:`Cvat` session the bridge works through (jobs, frames, labels, shapes, derived tasks).

Every call that goes to the server is retried with exponential back-off on time-outs,
connection errors and 5xx answers; after the last try the error says what failed, where, and
which setting to check. Wrong credentials fail at once with a clear message.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from quadratseg.cvat_tasks import FrameData, ProjectData, TaskData
from quadratseg.errors import QuadratsegError
from quadratseg.formats.cvat_labels import LabelSpec, label_from_raw
from quadratseg.formats.cvat_rest import shape_from_rest, shape_to_rest
from quadratseg.formats.cvat_xml import Shape
from quadratseg.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


class CvatConnectionError(QuadratsegError):
    """The CVAT server could not be reached or kept failing."""


def with_retries(call: Callable[[], T], what: str, retries: int, base_delay_s: float = 0.5) -> T:
    """Run ``call``; on time-outs, connection errors and 5xx answers retry with back-off.

    Raises:
        CvatConnectionError: after ``retries`` retries, naming ``what`` failed and why.
    """
    import urllib3
    from cvat_sdk.api_client.exceptions import ApiException

    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return call()
        except ApiException as exc:
            if exc.status is not None and exc.status < 500:
                raise
            last = exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            last = exc
        if attempt < retries:
            delay = base_delay_s * 2**attempt
            logger.warning(
                "%s failed (%s); retrying in %.1f s (%d/%d)",
                what,
                type(last).__name__,
                delay,
                attempt + 1,
                retries,
            )
            time.sleep(delay)
    raise CvatConnectionError(
        f"{what} failed after {retries + 1} attempts: {last}. Check that CVAT_HOST is right and the server "
        "is up; raise CVAT_TIMEOUT_S or CVAT_RETRIES for a slow server."
    )


@contextlib.contextmanager
def connect(settings: Settings) -> Iterator[Any]:
    """A logged-in ``cvat_sdk.Client`` for ``settings.cvat_host`` (password or access token)."""
    from cvat_sdk import Client, Config
    from cvat_sdk.api_client.exceptions import ApiException
    from cvat_sdk.core.client import AccessTokenCredentials

    if not settings.cvat_access_token and not (settings.cvat_username and settings.cvat_password):
        raise QuadratsegError(
            "no CVAT credentials: set CVAT_USERNAME and CVAT_PASSWORD, or CVAT_ACCESS_TOKEN, in .env"
        )
    config = Config(allow_unsupported_server=True)
    client = with_retries(
        lambda: Client(settings.cvat_host, config=config, check_server_version=False),
        f"connecting to {settings.cvat_host}",
        settings.cvat_retries,
    )
    client.api_client.configuration.retries = 0
    _set_timeout(client, settings.cvat_timeout_s)
    try:
        with_retries(
            client.check_server_version, f"reading the version of {settings.cvat_host}", settings.cvat_retries
        )
        credentials: Any = (
            AccessTokenCredentials(settings.cvat_access_token)
            if settings.cvat_access_token
            else (settings.cvat_username, settings.cvat_password)
        )
        try:
            with_retries(
                lambda: client.login(credentials),
                f"logging in to {settings.cvat_host}",
                settings.cvat_retries,
            )
        except ApiException as exc:
            raise QuadratsegError(
                f"CVAT at {settings.cvat_host} refused the credentials ({exc.status} {exc.reason}); "
                "check CVAT_USERNAME/CVAT_PASSWORD or CVAT_ACCESS_TOKEN in .env"
            ) from None
        yield client
    finally:
        client.close()


def _set_timeout(client: Any, timeout_s: float) -> None:
    """Apply one request time-out to every call the SDK's REST client makes."""
    rest = client.api_client.rest_client
    original = rest.request

    def request(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = timeout_s
        return original(*args, **kwargs)

    rest.request = request


def _label_specs(raw_labels: list[Any]) -> tuple[list[LabelSpec], dict[int, str], dict[int, str]]:
    """Project labels as specs, plus label-id -> name and attribute-id -> name maps (sublabels included)."""
    specs, label_names, attribute_names = [], {}, {}
    for raw in raw_labels:
        data = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
        specs.append(label_from_raw(data, "CVAT project labels"))
        label_names[data["id"]] = data["name"]
        for attr in data.get("attributes", []) or []:
            attribute_names[attr["id"]] = attr["name"]
        for sub in data.get("sublabels", []) or []:
            label_names[sub["id"]] = sub["name"]
            for attr in sub.get("attributes", []) or []:
                attribute_names[attr["id"]] = attr["name"]
    return specs, label_names, attribute_names


def find_project(client: Any, name: str, retries: int) -> Any:
    """The project called ``name``; a clear error lists the projects there are."""
    projects = with_retries(lambda: client.projects.list(), "listing CVAT projects", retries)
    matches = [p for p in projects if p.name == name]
    if not matches:
        import difflib

        names = sorted(p.name for p in projects)
        close = difflib.get_close_matches(name, names, n=3)
        hint = (
            f" Did you mean {', '.join(map(repr, close))}?"
            if close
            else f" Projects: {', '.join(names) or 'none'}."
        )
        raise QuadratsegError(f"CVAT has no project named {name!r}.{hint}")
    if len(matches) > 1:
        raise QuadratsegError(
            f"CVAT has {len(matches)} projects named {name!r} (ids {[p.id for p in matches]}); rename one"
        )
    return matches[0]


def project_from_server(client: Any, name: str, settings: Settings) -> ProjectData:
    """Describe a live CVAT project: labels, tasks (all statuses: the pull filters), annotations.

    Frames are fetched lazily (original quality) when the pull stores them.
    """
    retries = settings.cvat_retries
    project = find_project(client, name, retries)
    specs, label_names, attribute_names = _label_specs(
        with_retries(lambda: project.get_labels(), f"reading the labels of project {name!r}", retries)
    )
    tasks = []
    for task in with_retries(lambda: project.get_tasks(), f"listing the tasks of project {name!r}", retries):
        if task.status != "completed":  # the pull filters by status; skip fetching what it will not use
            tasks.append(
                TaskData(
                    task.id, task.name, (task.subset or "").lower(), str(task.status), str(task.updated_date)
                )
            )
            continue
        meta = with_retries(task.get_meta, f"reading the frames of task {task.id}", retries)
        annotations = with_retries(
            task.get_annotations, f"reading the annotations of task {task.id}", retries
        )
        by_frame: dict[int, list[Shape]] = {}
        for raw in annotations.shapes:
            data = raw.to_dict()
            by_frame.setdefault(data["frame"], []).append(
                shape_from_rest(data, label_names, attribute_names, f"task {task.id}, frame {data['frame']}")
            )
        frames = []
        deleted = set(meta.deleted_frames or [])  # deleted in CVAT, kept in the task's data
        for i, frame in enumerate(meta.frames):
            if i in deleted:
                continue

            def load(task: Any = task, i: int = i) -> bytes:
                return with_retries(
                    lambda: task.get_frame(i, quality="original").read(),
                    f"downloading frame {i} of task {task.id}",
                    retries,
                )

            frames.append(FrameData(i, frame.name, frame.width, frame.height, by_frame.get(i, []), load))
        tasks.append(
            TaskData(
                task.id,
                task.name,
                (task.subset or "").lower(),
                str(task.status),
                str(task.updated_date),
                frames,
            )
        )
    return ProjectData(name, specs, tasks, f"cvat:{settings.cvat_host}")


def create_task_with_annotations(
    client: Any,
    project_name: str,
    task_name: str,
    subset: str,
    images: list[tuple[str, bytes]],
    shapes_per_image: list[list[Shape]],
    settings: Settings,
) -> int:
    """Create a task in a project from image files and upload their shapes; returns the task id.

    Shapes are checked against the project's labels before anything is created.
    """
    from cvat_sdk import models

    retries = settings.cvat_retries
    project = find_project(client, project_name, retries)
    raw_labels = with_retries(
        lambda: project.get_labels(), f"reading the labels of project {project_name!r}", retries
    )
    label_ids: dict[str, int] = {}
    attribute_ids: dict[tuple[str, str], int] = {}
    for raw in raw_labels:
        data = raw.to_dict()
        label_ids[data["name"]] = data["id"]
        for attr in data.get("attributes", []) or []:
            attribute_ids[(data["name"], attr["name"])] = attr["id"]
        for sub in data.get("sublabels", []) or []:
            label_ids[f"{data['name']}/{sub['name']}"] = sub["id"]
    unknown = sorted({s.label for shapes in shapes_per_image for s in shapes} - set(label_ids))
    if unknown:
        raise QuadratsegError(
            f"label(s) {unknown} are not in CVAT project {project_name!r} "
            f"(labels: {sorted(k for k in label_ids if '/' not in k)}); "
            "map them first or push to a project with these labels"
        )
    names = [n for n, _ in images]
    if len(set(names)) != len(names):
        raise QuadratsegError("two images to push have the same file name; CVAT tasks need unique names")
    with tempfile.TemporaryDirectory(prefix="quadratseg-push-") as tmp:
        paths = []
        for name, data in images:
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(path)
        spec = models.TaskWriteRequest(name=task_name, project_id=project.id, subset=subset)
        task = client.tasks.create_from_data(
            spec=spec, resources=paths, data_params={"sorting_method": "predefined"}
        )
    rest_shapes = [
        shape_to_rest(shape, frame, label_ids, attribute_ids)
        for frame, shapes in enumerate(shapes_per_image)
        for shape in shapes
    ]
    with_retries(
        lambda: task.set_annotations(models.LabeledDataRequest(shapes=rest_shapes)),
        f"uploading annotations to task {task.id}",
        retries,
    )
    return int(task.id)


def shape_keys(shapes: list[dict[str, Any]]) -> list[list[Any]]:
    """``[frame, label_id, type]`` of each shape: what a create is matched by in the job afterwards.

    Examples:
        >>> shape_keys([{"frame": 2, "label_id": 7, "type": "polygon", "points": [1, 2]}])
        [[2, 7, 'polygon']]
    """
    return [[s["frame"], s["label_id"], str(s["type"])] for s in shapes]


def shape_fingerprint(shape: dict[str, Any]) -> str:
    """A short hash of what an annotator can change in a shape (LabeledShape dict): label, type, points
    (to 0.01 px), rotation, occluded, outside, z-order, attributes and, for a skeleton, its elements.
    Ids, ``source`` and ``group`` are left out.

    Examples:
        >>> a = {"label_id": 3, "type": "polygon", "points": [1.0, 2.0, 3.0, 4.0, 5.0, 1.0]}
        >>> shape_fingerprint(a) == shape_fingerprint({**a, "id": 9, "source": "auto"})
        True
        >>> shape_fingerprint(a) == shape_fingerprint({**a, "label_id": 4})
        False
    """
    import hashlib
    import json

    def plain(item: dict[str, Any]) -> dict[str, Any]:
        return {
            "label_id": item.get("label_id"),
            "type": str(item.get("type")),
            "points": [round(float(v), 2) for v in item.get("points") or []],
            "rotation": round(float(item.get("rotation") or 0.0), 2),
            "occluded": bool(item.get("occluded")),
            "outside": bool(item.get("outside")),
            "z_order": int(item.get("z_order") or 0),
            "attributes": sorted((int(a["spec_id"]), str(a["value"])) for a in item.get("attributes") or []),
        }

    elements = sorted(
        (plain(e) for e in shape.get("elements") or []), key=lambda e: json.dumps(e, sort_keys=True)
    )
    text = json.dumps({**plain(shape), "elements": elements}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def human_frames_of(shapes: list[dict[str, Any]], created: dict[str, list[Any]] | None = None) -> set[int]:
    """Frames a person worked on, from a job's shapes (LabeledShape dicts, as read): holding a shape whose
    ``source`` is not ``auto`` (drawn, imported, or edited in its geometry: ``semi-auto``), or where a
    shape of ``created`` (``{str(id): [frame, shape_fingerprint]}`` of the shapes a detection made) is
    gone or no longer as it was made (CVAT keeps a relabelled auto shape, or one whose attributes
    changed, ``auto``).

    Examples:
        >>> made = {"id": 7, "frame": 0, "source": "auto", "label_id": 1, "type": "polygon", "points": [0, 0]}
        >>> record = {"7": [0, shape_fingerprint(made)], "8": [2, "gone"]}
        >>> sorted(human_frames_of([made, {**made, "id": 9, "frame": 1, "source": "manual"}], record))
        [1, 2]
    """
    record = created or {}
    frames, present = set(), set()
    for shape in shapes:
        key = str(shape["id"])
        present.add(key)
        if str(shape["source"]) != "auto" or (key in record and record[key][1] != shape_fingerprint(shape)):
            frames.add(shape["frame"])
    frames.update(frame for key, (frame, _) in record.items() if key not in present)
    return frames


def created_of(
    shapes: list[dict[str, Any]], before: set[int], keys: list[list[Any]]
) -> tuple[dict[str, list[Any]], bool]:
    """(``{str(id): [frame, shape_fingerprint]}``, all found) of the ``auto`` shapes of a job's shapes (as
    read after a create) not in ``before`` that match ``keys`` (:func:`shape_keys` of the shapes sent),
    each key counted as often as it was sent: what the create made, as it was stored."""
    wanted = Counter(tuple(k) for k in keys)
    found: Counter = Counter()
    made = {}
    for shape in sorted(shapes, key=lambda s: s["id"]):
        key = (shape["frame"], shape["label_id"], str(shape["type"]))
        if shape["id"] not in before and str(shape["source"]) == "auto" and found[key] < wanted[key]:
            found[key] += 1
            made[str(shape["id"])] = [shape["frame"], shape_fingerprint(shape)]
    return made, found == wanted


@dataclass(frozen=True)
class JobFrames:
    """A job's frames: absolute task frame numbers and file names (deleted frames left out)."""

    job_id: int
    task_id: int
    project_id: int | None
    numbers: list[int]
    names: list[str]


class Cvat:
    """A logged-in cvat-sdk client with the calls the bridge makes, each retried like every call here
    (:func:`with_retries`); frames at ``quality=original``, deleted frames left out, and annotation
    writes as ``PATCH ...?action=create|delete`` so that shapes an annotator drew meanwhile are never
    touched (a ``PUT`` would replace them)."""

    def __init__(self, client: Any, retries: int = 3):
        self.client, self.retries = client, retries
        self._jobs: dict[int, Any] = {}  # job proxies, fetched once per connection

    def _call(self, what: str, call: Any) -> Any:
        return with_retries(call, what, self.retries)

    def _plain(self, model: Any) -> dict[str, Any]:
        """A model as CVAT's JSON (dates as ISO strings), not as Python objects."""
        return self.client.api_client.sanitize_for_serialization(model)

    def job(self, job_id: int) -> dict[str, Any]:
        """JobRead of a job as a dict."""
        api = self.client.api_client.jobs_api
        return self._plain(self._call(f"reading job {job_id}", lambda: api.retrieve(job_id)[0]))

    def task(self, task_id: int) -> dict[str, Any]:
        """TaskRead of a task as a dict."""
        api = self.client.api_client.tasks_api
        return self._plain(self._call(f"reading task {task_id}", lambda: api.retrieve(task_id)[0]))

    def task_jobs(self, task_id: int) -> list[dict[str, Any]]:
        """JobRead dicts of a task's jobs, by start frame."""
        from cvat_sdk.core.helpers import get_paginated_collection

        api = self.client.api_client.jobs_api
        found = self._call(
            f"listing the jobs of task {task_id}",
            lambda: get_paginated_collection(api.list_endpoint, task_id=task_id),
        )
        return sorted((self._plain(j) for j in found), key=lambda j: j["start_frame"])

    def job_frames(self, job_id: int) -> JobFrames:
        """The frames of a job (its meta lists the job's own frames, start to stop)."""
        job = self._call(f"reading job {job_id}", lambda: self.client.jobs.retrieve(job_id))
        meta = self._call(f"reading the frames of job {job_id}", job.get_meta)
        deleted = set(meta.deleted_frames or [])
        numbers, names = [], []
        for offset, frame in enumerate(meta.frames):
            number = job.start_frame + offset
            if number > job.stop_frame:
                break
            if number not in deleted:
                numbers.append(number)
                names.append(frame.name)
        return JobFrames(job_id, job.task_id, getattr(job, "project_id", None), numbers, names)

    def task_frames(self, task_id: int) -> tuple[list[int], list[str]]:
        """(frame numbers, file names) of a task, deleted frames left out."""
        task = self._call(f"reading task {task_id}", lambda: self.client.tasks.retrieve(task_id))
        meta = self._call(f"reading the frames of task {task_id}", task.get_meta)
        deleted = set(meta.deleted_frames or [])
        pairs = [(i, f.name) for i, f in enumerate(meta.frames) if i not in deleted]
        return [i for i, _ in pairs], [n for _, n in pairs]

    def job_frame_bytes(self, job_id: int, number: int) -> bytes:
        """The original bytes of absolute task frame ``number`` through its job."""
        if job_id not in self._jobs:
            self._jobs[job_id] = self._call(
                f"reading job {job_id}", lambda: self.client.jobs.retrieve(job_id)
            )
        job = self._jobs[job_id]
        return self._call(
            f"downloading frame {number} of job {job_id}",
            lambda: job.get_frame(number, quality="original").read(),
        )

    def task_frame_bytes(self, task_id: int, number: int) -> bytes:
        """The original bytes of frame ``number`` of a task."""
        task = self.client.tasks.retrieve(task_id)
        return self._call(
            f"downloading frame {number} of task {task_id}",
            lambda: task.get_frame(number, quality="original").read(),
        )

    def labels(self, project_id: int | None = None, task_id: int | None = None) -> list[dict[str, Any]]:
        """The labels of a project (or of a task) as dicts, sublabels included."""
        from cvat_sdk.core.helpers import get_paginated_collection

        api = self.client.api_client.labels_api
        query = {"project_id": project_id} if project_id is not None else {"task_id": task_id}
        found = self._call(
            f"listing the labels of {query}", lambda: get_paginated_collection(api.list_endpoint, **query)
        )
        return [self._plain(label) for label in found]

    def _shapes(self, api: Any, kind: str, object_id: int) -> list[dict[str, Any]]:
        """The ``shapes`` of a task's or a job's annotations as CVAT's JSON: one GET, read as JSON rather
        than into cvat-sdk's models and back (the same dicts: 12 ms instead of 98 for a job of 190
        polygons, ``benchmarks/bench_bridge.py``; a job's annotations are the largest answer the bridge
        reads, twice a batch)."""
        import json

        def read() -> list[dict[str, Any]]:
            _, response = api.retrieve_annotations(object_id, _parse_response=False)
            return json.loads(response.data)["shapes"]

        return self._call(f"reading the annotations of {kind} {object_id}", read)

    def task_shapes(self, task_id: int) -> list[dict[str, Any]]:
        """Every shape of a task (LabeledShape dicts)."""
        return self._shapes(self.client.api_client.tasks_api, "task", task_id)

    def job_shapes(self, job_id: int) -> list[dict[str, Any]]:
        """Every shape of a job (LabeledShape dicts)."""
        return self._shapes(self.client.api_client.jobs_api, "job", job_id)

    def human_frames(self, job_id: int, created: dict[str, list[Any]] | None = None) -> set[int]:
        """Frames of a job a person worked on (:func:`human_frames_of` of its shapes as read now)."""
        return human_frames_of(self.job_shapes(job_id), created)

    def add_shapes(
        self,
        job_id: int,
        shapes: list[dict[str, Any]],
        before: set[int] | None = None,
        settle_s: float = 0.0,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, list[Any]]:
        """Create shapes in a job (one request: CVAT stores all or none); the new shapes as
        ``{str(id): [frame, shape_fingerprint]}``: the new ``auto`` shapes matching the ones sent
        (frame, label, type; :func:`created_of`), never another writer's (CVAT documents no answer body
        for a job's PATCH), read once after the create.

        ``before`` is the job's shape ids before the create (read here when not given; a caller notes
        it first so that a crash in between can be resolved). A create is not idempotent, so it is
        never sent again blindly: when its answer is lost (time-out, 5xx, dropped connection) the job is
        read with back-off for up to ``settle_s`` seconds (a proxy's 504 comes while CVAT is still
        writing; a 503, a request not taken in, is looked at once), and if the shapes are there they
        count as created. ``before_send`` is called before every send, the first and each one again (the
        bridge checks there that the job is still its worker's: raising stops the upload)."""
        import urllib3
        from cvat_sdk import models
        from cvat_sdk.api_client.exceptions import ApiException

        if not shapes:
            return {}
        before = {s["id"] for s in self.job_shapes(job_id)} if before is None else set(before)
        keys = shape_keys(shapes)
        api = self.client.api_client.jobs_api
        # built unchecked: cvat-sdk's type check walks every number of a mask's RLE (0.42 s for a job
        # of 183 masks, against 0.01 s); the shapes come from to_cvat_shapes, and the CVAT stand-in
        # checks each request against CVAT's own schema in the tests
        request = models.PatchedLabeledDataRequest(
            shapes=[models.LabeledShapeRequest(**s, _check_type=False) for s in shapes], _check_type=False
        )
        what = f"uploading {len(shapes)} shapes to job {job_id}"
        for attempt in range(self.retries + 1):
            if before_send is not None:
                before_send()
            try:
                api.partial_update_annotations("create", job_id, patched_labeled_data_request=request)
                made, _ = self.created_shapes(job_id, before, keys)
                return made
            except ApiException as exc:
                if exc.status is not None and exc.status < 500:
                    raise
                last: Exception = exc
                refused = exc.status == 503  # not taken in: one look is enough
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last, refused = exc, False
            landed = self._settled(job_id, before, keys, 0.0 if refused else settle_s)
            if landed is not None:
                logger.warning(
                    "%s: the answer was lost (%s) but the shapes are there", what, type(last).__name__
                )
                return landed
            if attempt < self.retries:
                logger.warning(
                    "%s failed (%s), not stored after %.0f s; sending again",
                    what,
                    type(last).__name__,
                    settle_s,
                )
        raise CvatConnectionError(f"{what} failed after {self.retries + 1} attempts: {last}")

    def _settled(
        self, job_id: int, before: set[int], keys: list[list[Any]], settle_s: float
    ) -> dict[str, list[Any]] | None:
        """The shapes of a create whose answer was lost (as :meth:`created_shapes`), read until they are
        all there or ``settle_s`` has passed (at 0.5, 1, 2, 4... s); None when they never all came."""
        deadline, delay = time.monotonic() + settle_s, 0.5
        while True:
            made, complete = self.created_shapes(job_id, before, keys)
            if complete:
                return made
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay, left))
            delay *= 2

    def created_shapes(
        self, job_id: int, before: set[int], keys: list[list[Any]]
    ) -> tuple[dict[str, list[Any]], bool]:
        """:func:`created_of` of the job's shapes as read now."""
        return created_of(self.job_shapes(job_id), before, keys)

    def remove_shapes(
        self,
        job_id: int,
        ids: list[int],
        frames: set[int] | None = None,
        created: dict[str, list[Any]] | None = None,
    ) -> list[int]:
        """Delete the shapes with these ids that are still ``source: auto`` (on ``frames``, when given,
        and still as ``created`` recorded them, when given) from a job; others, manual and edited ones
        included, are untouched, and ids no longer there are skipped. The ids deleted."""
        from cvat_sdk import models

        if not ids:
            return []
        job = self.client.jobs.retrieve(job_id)
        wanted = set(ids)
        current = self._call(f"reading the annotations of job {job_id}", job.get_annotations)
        record = created or {}

        def untouched(shape: Any) -> bool:
            known = record.get(str(shape.id))
            return known is None or known[1] == shape_fingerprint(self._plain(shape))

        # only shapes still as the function made them: an annotator's edit makes a shape theirs
        doomed = [
            s
            for s in current.shapes
            if s.id in wanted
            and str(s.source) == "auto"
            and (frames is None or s.frame in frames)
            and untouched(s)
        ]
        if doomed:
            request = models.PatchedLabeledDataRequest(
                shapes=[models.LabeledShapeRequest(**s.to_dict()) for s in doomed]
            )
            api = self.client.api_client.jobs_api
            self._call(
                f"deleting {len(doomed)} shapes of job {job_id}",
                lambda: api.partial_update_annotations(
                    "delete", job_id, patched_labeled_data_request=request
                ),
            )
        return sorted(s.id for s in doomed)

    def find_task(self, project_id: int, name: str) -> dict[str, Any] | None:
        """The task of that name in a project, or None."""
        from cvat_sdk.core.helpers import get_paginated_collection

        api = self.client.api_client.tasks_api
        found = self._call(
            f"looking for task {name!r} in project {project_id}",
            lambda: get_paginated_collection(api.list_endpoint, project_id=project_id, name=name),
        )
        exact = [self._plain(t) for t in found if t.name == name]
        return exact[0] if exact else None

    def project_exists(self, project_id: int) -> bool:
        """Whether a project with this id exists (404 -> False)."""
        from cvat_sdk.api_client.exceptions import NotFoundException

        try:
            self._call(f"reading project {project_id}", lambda: self.client.projects.retrieve(project_id))
        except NotFoundException:
            return False
        return True

    def create_task(self, project_id: int, name: str, subset: str, files: list[Path]) -> dict[str, Any]:
        """A task in a project with these images (in this order), data upload awaited. A task whose
        data did not arrive is removed, by its id (never a namesake: another worker's or a user's
        task of the same name), and the error raised: nothing half-made is left."""
        from cvat_sdk import models

        spec = models.TaskWriteRequest(name=name, project_id=project_id, subset=subset or "")
        task = self.client.tasks.create(spec=spec)  # the steps of cvat-sdk's create_from_data
        try:
            task.upload_data(
                resources=[str(f) for f in files],
                params={"image_quality": 100, "sorting_method": "predefined"},
                wait_for_completion=True,
            )
        except BaseException:
            try:
                self.client.tasks.remove_by_ids([task.id])
            except Exception as cleanup:  # CVAT unreachable: the next attempt finds it empty by name
                logger.warning("task %d left without data: %s", task.id, cleanup)
            raise
        return self.task(task.id)

    def set_job_state(self, job_id: int, state: str) -> None:
        """PATCH a job's state (``in progress`` fires the project's detection webhook)."""
        from cvat_sdk import models

        api = self.client.api_client.jobs_api
        self._call(
            f"setting job {job_id} to {state!r}",
            lambda: api.partial_update(
                job_id, patched_job_write_request=models.PatchedJobWriteRequest(state=state)
            ),
        )
