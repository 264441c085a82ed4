"""The CVAT server through cvat-sdk: connect (with retries), read a project, create tasks.

Every call that goes to the server is retried with exponential back-off on time-outs,
connection errors and 5xx answers; after the last try the error says what failed, where, and
which setting to check. Wrong credentials fail at once with a clear message.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
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
        for i, frame in enumerate(meta.frames):

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
