"""What the bridge asks of CVAT, through cvat-sdk, each call retried on 5xx and connection errors.

Frames are read at ``quality=original`` (``compressed`` is a re-encoded JPEG). Annotation writes use
``PATCH .../annotations?action=create|delete`` so that shapes an annotator drew meanwhile are never
touched (a ``PUT`` would replace them).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quadratseg.cvat_client import with_retries

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobFrames:
    """A job's frames: absolute task frame numbers and file names (deleted frames left out)."""

    job_id: int
    task_id: int
    project_id: int | None
    numbers: list[int]
    names: list[str]


class Cvat:
    """A logged-in cvat-sdk client with the calls the bridge makes."""

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

    def task_shapes(self, task_id: int) -> list[dict[str, Any]]:
        """Every shape of a task (LabeledShape dicts)."""
        task = self.client.tasks.retrieve(task_id)
        data = self._call(f"reading the annotations of task {task_id}", task.get_annotations)
        return [self._plain(s) for s in data.shapes]

    def shape_ids(self, job_id: int) -> set[int]:
        """Ids of every shape in a job."""
        job = self.client.jobs.retrieve(job_id)
        data = self._call(f"reading the annotations of job {job_id}", job.get_annotations)
        return {s.id for s in data.shapes}

    def human_frames(self, job_id: int) -> set[int]:
        """Frames of a job holding a shape whose ``source`` is not ``auto`` (drawn, edited -
        ``semi-auto`` - or imported by a person)."""
        job = self.client.jobs.retrieve(job_id)
        data = self._call(f"reading the annotations of job {job_id}", job.get_annotations)
        return {s.frame for s in data.shapes if str(s.source) != "auto"}

    def add_shapes(self, job_id: int, shapes: list[dict[str, Any]]) -> list[int]:
        """Create shapes in a job (one request: CVAT stores all or none); their new ids, found as the
        ids that were not there before (CVAT documents no answer body for a job's PATCH).

        A create is not idempotent, so it is never sent again blindly: when its answer is lost (time-out,
        5xx, dropped connection) the job is read first, and if the shapes are there (new ``auto`` shapes
        with the frames, labels and types sent) they count as created."""
        import urllib3
        from cvat_sdk import models
        from cvat_sdk.api_client.exceptions import ApiException

        from quadratseg.cvat_client import CvatConnectionError

        if not shapes:
            return []
        before = self.shape_ids(job_id)
        api = self.client.api_client.jobs_api
        request = models.PatchedLabeledDataRequest(shapes=[models.LabeledShapeRequest(**s) for s in shapes])
        what = f"uploading {len(shapes)} shapes to job {job_id}"
        for attempt in range(self.retries + 1):
            try:
                api.partial_update_annotations("create", job_id, patched_labeled_data_request=request)
                return sorted(self.shape_ids(job_id) - before)
            except ApiException as exc:
                if exc.status is not None and exc.status < 500:
                    raise
                last: Exception = exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last = exc
            landed = self._created(job_id, before, shapes)
            if landed is not None:
                logger.warning(
                    "%s: the answer was lost (%s) but the shapes are there", what, type(last).__name__
                )
                return landed
            if attempt < self.retries:
                logger.warning("%s failed (%s), not stored; retrying", what, type(last).__name__)
                time.sleep(0.5 * 2**attempt)
        raise CvatConnectionError(f"{what} failed after {self.retries + 1} attempts: {last}")

    def _created(self, job_id: int, before: set[int], shapes: list[dict[str, Any]]) -> list[int] | None:
        """Ids of new ``auto`` shapes of the job matching ``shapes`` (frame, label, type), or None when
        they are not all there."""
        job = self.client.jobs.retrieve(job_id)
        data = self._call(f"reading the annotations of job {job_id}", job.get_annotations)
        wanted = Counter((s["frame"], s["label_id"], s["type"]) for s in shapes)
        found, ids = Counter(), []
        for shape in data.shapes:
            key = (shape.frame, shape.label_id, str(shape.type))
            if shape.id not in before and str(shape.source) == "auto" and found[key] < wanted[key]:
                found[key] += 1
                ids.append(shape.id)
        return sorted(ids) if found == wanted else None

    def remove_shapes(self, job_id: int, ids: list[int], frames: set[int] | None = None) -> int:
        """Delete the shapes with these ids that are still ``source: auto`` (and on ``frames``, when
        given) from a job (others, manual and edited ones included, untouched); the number deleted
        (ids no longer there are skipped)."""
        from cvat_sdk import models

        if not ids:
            return 0
        job = self.client.jobs.retrieve(job_id)
        wanted = set(ids)
        current = self._call(f"reading the annotations of job {job_id}", job.get_annotations)
        # only shapes still as the function made them: an annotator's edit makes a shape theirs
        doomed = [
            s
            for s in current.shapes
            if s.id in wanted and str(s.source) == "auto" and (frames is None or s.frame in frames)
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
        return len(doomed)

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
        """A task in a project with these images (in this order), data upload awaited."""
        from cvat_sdk import models

        spec = models.TaskWriteRequest(name=name, project_id=project_id, subset=subset or "")
        task = self.client.tasks.create_from_data(
            spec,
            [str(f) for f in files],
            data_params={
                "image_quality": 100,
                "sorting_method": "predefined",
            },
        )
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
