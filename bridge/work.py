"""The bridge's background work: detection on a job, and the derived tasks of the chain.

Each function takes a job record of :class:`bridge.store.JobStore` and a :class:`Services` bundle
and returns ``(final state, result)``; :func:`run_job` records the outcome. Work is resumable: the
frames a detection already answered are cached under ``BRIDGE_STATE_DIR/cache/job-<id>/`` and
not asked again after a restart; a derived task is created only once every image is ready, found
again by name instead of created twice, and deleted when its upload fails.

- ``detect`` (one per CVAT job at a time: a lease in the job store): every frame of the CVAT job that
  no person worked on (no shape whose source is not ``auto``, and every auto shape the bridge made
  there still as its fingerprint recorded it: CVAT keeps a relabelled or re-attributed shape ``auto``
  and a deleted one leaves no trace; other frames are listed in ``skipped_frames`` and left as they
  are) -> the function (by name, HTTP) -> shapes for CVAT (:mod:`bridge.convert`) -> the frames read
  again, and those a person touched meanwhile dropped -> in batches of ``BRIDGE_UPLOAD_BATCH`` frames
  (uploaded while later frames compute), each batch noted (``pending_create``) then sent as one
  ``create`` request (never sent twice: :meth:`quadratseg.cvat_client.Cvat.add_shapes`; a create
  whose answer never came is resolved from the note when the job runs again, and the batches that
  landed are not computed nor sent again) -> the new shapes' ids and fingerprints recorded -> the auto
  shapes this function made on those frames before are deleted (manual and edited shapes, and other
  functions' shapes, are never touched). A frame whose call fails is recorded and the others go on.
- ``warp``: a completed corner task -> each frame warped by its 4 corners (TL, TR, BR, BL) -> a task
  ``<source>_warped`` in the target project, same subset and file stems -> its jobs set to
  ``in progress`` (which fires the next project's detection webhook).
- ``remove_grid``: a completed grid task -> the grid mask from the 117 points and inpainting (the
  ``pth-lama`` function over HTTP, the frame sent through the same encoder as detection's, or
  ``local:<backend>`` in process) -> ``<source>_clean``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bridge.convert import project_labels, to_cvat_shapes
from bridge.functions import FunctionClient, FunctionError, FunctionUnavailableError, encode_frame
from bridge.store import Heartbeat, JobStore, LeaseLostError, check_lease
from quadratseg.cvat_client import CvatConnectionError, human_frames_of, shape_keys
from quadratseg.errors import QuadratsegError
from quadratseg.keypoints import N_CORNERS, N_GRID, long_side_first
from quadratseg.labelsets import CORNER_LABEL, GRID_LABEL

logger = logging.getLogger(__name__)

SUFFIX = {"warp": "_warped", "remove_grid": "_clean"}
POINTS = {"warp": (CORNER_LABEL, N_CORNERS), "remove_grid": (GRID_LABEL, N_GRID)}


@dataclass
class Services:
    """What the work needs: settings, the job store, function calls and a CVAT connection factory."""

    settings: Any
    store: JobStore
    functions: FunctionClient
    cvat: Callable[[], Any]  # a context manager yielding a quadratseg.cvat_client.Cvat
    upload_batch: int | None = None  # BRIDGE_UPLOAD_BATCH (frames per annotation upload)

    @property
    def cache_dir(self) -> Path:
        """Per-job caches and staged images."""
        return Path(self.settings.bridge_state_dir) / "cache"


def _write_json_atomic(path: Path, payload: Any) -> None:
    """``payload`` as JSON at ``path``, whole or not at all, under a temporary name no other worker
    shares (several huey workers write to one state folder)."""
    from quadratseg.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload))


def previous_shape_ids(store: JobStore, key_prefix: str, job_id: int) -> list[int]:
    """Ids of the shapes earlier detection jobs with the same key prefix (function and CVAT job) made."""
    return [
        i
        for job in store.with_key_prefix(key_prefix)
        if job["id"] != job_id
        for i in job["result"].get("shape_ids", [])
    ]


def created_record(detections: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``{str(shape id): [frame, fingerprint]}`` of the auto shapes the bridge made on a CVAT job and did
    not delete itself since: each detection's ``fingerprints`` less every detection's ``removed_ids``.

    Examples:
        >>> made = [{"result": {"fingerprints": {"4": [0, "a"], "5": [1, "b"]}}}]
        >>> created_record([*made, {"result": {"removed_ids": [4]}}])
        {'5': [1, 'b']}
    """
    record: dict[str, list[Any]] = {}
    for job in detections:
        record.update(job["result"].get("fingerprints") or {})
    for job in detections:
        for removed in job["result"].get("removed_ids") or []:
            record.pop(str(removed), None)
    return record


def resolve_pending_creates(cvat: Any, store: JobStore, detections: list[dict[str, Any]]) -> None:
    """A detection that failed or stopped after sending a create whose answer never came (its result
    holds ``pending_create``: the job's shape ids before, and what was sent) gets the shapes that did
    land counted as its own (``shape_ids``, ``fingerprints``), so nothing sends or keeps them twice."""
    for job in detections:
        pending = job["result"].get("pending_create")
        if not pending:
            continue
        cvat_job = int(job["params"]["job_id"])
        made, complete = cvat.created_shapes(cvat_job, set(pending["before"]), pending["keys"])
        ids = sorted(int(key) for key in made)
        result = {k: v for k, v in job["result"].items() if k != "pending_create"}
        if complete and ids:  # added to the batches that landed before it
            result["shape_ids"] = sorted({*(result.get("shape_ids") or []), *ids})
            result["fingerprints"] = {**(result.get("fingerprints") or {}), **made}
            if "frames" in pending:
                result["uploaded_frames"] = sorted(
                    {*(result.get("uploaded_frames") or []), *pending["frames"]}
                )
            logger.warning("bridge job %d: its unanswered create did land (%d shapes)", job["id"], len(ids))
        store.note(job["id"], result)
        job["result"] = result


def detect(job: dict[str, Any], services: Services) -> tuple[str, dict[str, Any]]:
    """Run a function on every frame of a CVAT job and replace its earlier auto shapes there; one
    detection per CVAT job at a time (a lease in the job store)."""
    with services.store.lease(f"detect-on-cvat-job:{int(job['params']['job_id'])}", job["id"]):
        return _detect(services.store.get(job["id"]) or job, services)


UPLOAD_BATCH_FRAMES = 8  # frames per annotation upload (BRIDGE_UPLOAD_BATCH)


def upload_batch_frames(services: Services) -> int:
    """Frames per annotation upload: ``BRIDGE_UPLOAD_BATCH`` (the services' ``upload_batch``, else the
    settings' field of that name when they have one), else :data:`UPLOAD_BATCH_FRAMES`."""
    settings = services.settings
    given = services.upload_batch or (
        settings.bridge_upload_batch if hasattr(settings, "bridge_upload_batch") else None
    )
    if given in (None, ""):
        return UPLOAD_BATCH_FRAMES
    if not str(given).isdigit() or int(given) < 1:
        raise QuadratsegError(f"BRIDGE_UPLOAD_BATCH must be a whole number of frames >= 1, not {given!r}")
    return int(given)


class _Throttled:
    """Progress written at most every ``every_s`` seconds (and at the end), not once per frame."""

    def __init__(self, store: JobStore, job_id: int, every_s: float = 0.5):
        self.store, self.job_id, self.every_s, self.last = store, job_id, every_s, 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self.last >= self.every_s:
            self.last = now
            self.store.progress(self.job_id, done, total)


def _detect(job: dict[str, Any], services: Services) -> tuple[str, dict[str, Any]]:
    params = job["params"]
    cvat_job, function = int(params["job_id"]), params["function"]
    cache = services.cache_dir / f"job-{job['id']}"
    cache.mkdir(parents=True, exist_ok=True)
    timings = {"frames_s": 0.0, "upload_s": 0.0}
    batch_frames = upload_batch_frames(services)
    progress = _Throttled(services.store, job["id"])
    with services.cvat() as cvat:
        frames = cvat.job_frames(cvat_job)
        detections = services.store.detections_on(cvat_job)
        resolve_pending_creates(cvat, services.store, detections)
        mine = next((j for j in detections if j["id"] == job["id"]), job)
        so_far = mine["result"]
        later = [j for j in detections if j["id"] > job["id"] and j["key"].startswith(f"detect:{function}:")]
        if mine.get("outages") and later:
            # it waited out an outage while the job was sent for detection again: the later detection
            # replaces this one's shapes, and this one must not replace the later one's
            reason = f"superseded by bridge job {later[0]['id']}, a later detection of this CVAT job"
            return "skipped", {"reason": reason}
        # batches an earlier attempt uploaded (its shapes are in CVAT): never computed nor sent again
        uploaded = set(so_far.get("uploaded_frames") or [])
        if so_far.get("fingerprints") and not so_far.get("uploaded_frames"):
            uploaded = set(frames.numbers)  # one whole upload, recorded by an older bridge
        landed_ids: list[int] = list(so_far.get("shape_ids") or [])
        landed_prints: dict[str, list[Any]] = dict(so_far.get("fingerprints") or {})
        record = created_record(detections)
        # a frame a person drew, edited, relabelled or deleted a shape on is theirs: never pre-annotated again
        skipped = set(cvat.human_frames(cvat_job, record) & set(frames.numbers)) - uploaded
        numbers = [n for n in frames.numbers if n not in skipped]
        raw_labels = (
            cvat.labels(project_id=frames.project_id)
            if frames.project_id is not None
            else cvat.labels(task_id=frames.task_id)
        )
        labels = project_labels(raw_labels)
        failed: dict[str, str] = {}
        unknown: set[str] = set()
        start = time.perf_counter()
        todo = [n for n in numbers if n not in uploaded]

        def answer(number: int) -> dict[str, Any]:
            """The frame's shapes: cached, or downloaded, sent to the function and converted."""
            answer_file = cache / f"frame-{number}.json"
            if answer_file.exists():
                return json.loads(answer_file.read_text(encoding="utf-8"))
            data = cvat.job_frame_bytes(cvat_job, number)
            image_b64, scale = encode_frame(data, services.functions.body_limit)
            body = {"image": image_b64}
            if params.get("threshold") is not None:
                body["threshold"] = float(params["threshold"])
            reply = services.functions.call(function, body)
            frame_shapes, frame_unknown = to_cvat_shapes(
                reply, labels, number, scale, bool(params.get("conv_mask_to_poly"))
            )
            out = {"shapes": frame_shapes, "unknown": sorted(frame_unknown)}
            _write_json_atomic(answer_file, out)
            return out

        # frames flow through a pipeline: the next frames download and encode while one is with the
        # function (its in-flight limit holds the calls), and each batch uploads while later ones compute
        pool = ThreadPoolExecutor(max_workers=services.functions.in_flight + 1, thread_name_prefix="frame")
        futures = {n: pool.submit(answer, n) for n in todo}
        upload_s, done = 0.0, len(numbers) - len(todo)
        try:
            for offset in range(0, len(todo), batch_frames):
                batch, shapes = todo[offset : offset + batch_frames], []
                for number in batch:
                    try:
                        cached = futures.pop(number).result()
                    except (CvatConnectionError, FunctionUnavailableError):
                        # CVAT or the function is away: the whole job waits and runs again; the
                        # batches sent and the answers received (cached per frame) are kept
                        raise
                    except (FunctionError, QuadratsegError, ValueError) as exc:
                        failed[str(number)] = str(exc)
                        logger.warning("job %d frame %d: %s", cvat_job, number, exc)
                    else:
                        shapes.extend(cached["shapes"])
                        unknown.update(cached["unknown"])
                    done += 1
                    progress(done, len(numbers))
                sent = [n for n in batch if str(n) not in failed]
                if not sent:
                    continue
                began = time.perf_counter()
                # read again just before the upload: the annotator may have started on a frame meanwhile;
                # the same read gives the job's shape ids before the create
                current = cvat.job_shapes(cvat_job)
                late = (human_frames_of(current, {**record, **landed_prints}) & set(sent)) - uploaded
                if late:
                    logger.info(
                        "job %d: frames %s were worked on during detection, left out", cvat_job, sorted(late)
                    )
                    shapes = [s for s in shapes if s["frame"] not in late]
                    sent = [n for n in sent if n not in late]
                    skipped |= late
                before = sorted(shape["id"] for shape in current)
                ids, prints = _upload_batch(cvat, services, job["id"], cvat_job, shapes, sent, so_far, before)
                landed_ids += ids
                landed_prints.update(prints)
                uploaded.update(sent)
                so_far = {
                    **so_far,
                    "shape_ids": sorted(landed_ids),
                    "fingerprints": landed_prints,
                    "uploaded_frames": sorted(uploaded),
                }
                services.store.note(job["id"], so_far)
                upload_s += time.perf_counter() - began
        finally:
            pool.shutdown(cancel_futures=True)
        progress(len(numbers), len(numbers))
        timings["frames_s"] = round(time.perf_counter() - start - upload_s, 3)
        if unknown:
            logger.warning("job %d: labels unknown to the project, left out: %s", cvat_job, sorted(unknown))
        result: dict[str, Any] = {
            "frames": len([n for n in numbers if n not in skipped]),
            "skipped_frames": sorted(skipped),
            "failed_frames": failed,
            "unknown_labels": sorted(unknown),
            "shapes": len(landed_ids),
        }
        if numbers and len(failed) == len(numbers):
            return "failed", {
                **result,
                "frames": len(numbers),
                "shapes": 0,
                "error": f"every frame failed, e.g. {next(iter(failed.values()))}",
            }
        began = time.perf_counter()
        previous = previous_shape_ids(services.store, f"detect:{function}:{cvat_job}:", job["id"])
        result["shape_ids"] = sorted(landed_ids)
        result["fingerprints"] = landed_prints
        result["uploaded_frames"] = sorted(uploaded)
        services.store.note(job["id"], result)  # the new shapes are ours before the old ones go
        replaced_frames = set(uploaded) - skipped
        removed = cvat.remove_shapes(cvat_job, previous, frames=replaced_frames, created=record)
        result["removed_ids"], result["replaced"] = removed, len(removed)
        timings["upload_s"] = round(upload_s + time.perf_counter() - began, 3)
    shutil.rmtree(cache, ignore_errors=True)
    return "done", {**result, "timings": timings}


def _upload_batch(
    cvat: Any,
    services: Services,
    job_id: int,
    cvat_job: int,
    shapes: list[dict[str, Any]],
    frames: list[int],
    so_far: dict[str, Any],
    before: list[int],
) -> tuple[list[int], dict[str, list[Any]]]:
    """One ``PATCH .../annotations?action=create`` with a batch's shapes, noted as pending first with
    ``before``, the job's shape ids read just before (a crash or a lost answer after this point finds
    the shapes that landed); their ids and fingerprints, from one read after the create."""
    if not shapes:
        return [], {}
    check_lease()  # a worker whose job was taken over sends nothing more
    pending = {"before": before, "keys": shape_keys(shapes), "frames": sorted(frames)}
    services.store.note(job_id, {**so_far, "pending_create": pending})
    made = cvat.add_shapes(
        cvat_job,
        shapes,
        before=set(before),
        settle_s=services.settings.bridge_create_settle_s,
        before_send=check_lease,  # a create sent again after a takeover would land twice
    )
    return sorted(int(key) for key in made), made


def skeleton_points(
    shapes: list[dict[str, Any]], labels: dict[str, Any], label_name: str, n: int
) -> dict[int, np.ndarray | str]:
    """{frame: (n, 2) float array, NaN for a point marked outside} of the skeletons named ``label_name``
    (sublabels "1".."n" in template order). A skeleton an annotator drew or corrected (any ``source``
    but ``auto``) wins over a model's left beside it; a frame with several of the winning kind has,
    instead of points, the reason it is refused (which one to warp by is not ours to guess)."""
    label = labels.get(label_name)
    if label is None:
        raise QuadratsegError(f"the source project has no label {label_name!r}; its labels: {sorted(labels)}")
    order = {sub.id: int(sub.name) - 1 for sub in label.sublabels if sub.name.isdigit()}
    by_frame: dict[int, dict[bool, list[np.ndarray]]] = {}
    for shape in shapes:
        if shape["label_id"] != label.id or shape["type"] != "skeleton":
            continue
        points = np.full((n, 2), np.nan)
        for element in shape.get("elements") or []:
            k = order.get(element["label_id"])
            if k is not None and k < n and not element.get("outside"):
                points[k] = element["points"][:2]
        by_hand = shape.get("source", "manual") != "auto"
        by_frame.setdefault(shape["frame"], {True: [], False: []})[by_hand].append(points)
    out: dict[int, np.ndarray | str] = {}
    for frame, kinds in by_frame.items():
        by_hand = bool(kinds[True])
        found = kinds[by_hand]
        if len(found) == 1:
            out[frame] = found[0]
        else:
            out[frame] = (
                f"{len(found)} {label_name} skeletons drawn by hand on this frame: delete all but one"
                if by_hand
                else f"{len(found)} {label_name} skeletons of the model on this frame and none drawn by "
                "hand: delete all but one"
            )
    return out


def _warp_frame(image: np.ndarray, corners: np.ndarray, settings: Any) -> np.ndarray:
    from quadratseg.warp import quadrat_homography, warp_image, warped_size

    if not np.isfinite(corners).all():
        missing = [("TL", "TR", "BR", "BL")[i] for i in np.flatnonzero(~np.isfinite(corners).all(axis=1))]
        raise QuadratsegError(f"corner(s) {', '.join(missing)} not annotated (marked outside or absent)")
    aspect = settings.bridge_quadrat_aspect  # as pipeline.process --aspect
    size = warped_size(settings.bridge_warp_size, aspect)
    # the skeleton's corners follow the photo's axes; a rectangle's long side goes where the warp's is
    corners = corners[long_side_first(corners, aspect)]
    return warp_image(image, quadrat_homography(corners, size), size)


def _remove_grid_frame(image: np.ndarray, data: bytes, grid: np.ndarray, services: Services) -> np.ndarray:
    """The frame (H, W, 3) without its grid; ``data`` is the frame's bytes as CVAT serves them and
    ``grid`` the (117, 2) points in its pixels (NaN: not annotated).

    A function gets the frame through :func:`bridge.functions.encode_frame`, as detection does: the
    original bytes when they fit ``BRIDGE_FUNCTION_BODY_LIMIT``, else re-encoded, then downscaled; the
    points go at the scale sent and the answer comes back to the frame's size."""
    choice = services.settings.bridge_inpaint
    if choice.startswith("local:"):
        from grid_inpainting.inpaint import remove_grid, select_backend

        backend = select_backend(choice.split(":", 1)[1], services.settings)
        (removal,) = remove_grid([image], [grid], backend)
        return removal.image
    from quadratseg.images import decode_image_b64

    points_room = 40 * len(grid)  # the keypoints' JSON beside the image
    image_b64, scale = encode_frame(data, services.functions.body_limit, overhead_bytes=1024 + points_room)
    body = {
        "image": image_b64,
        "keypoints": [
            None
            if not np.isfinite(p).all()
            else [round(float(p[0]) * scale, 3), round(float(p[1]) * scale, 3)]
            for p in grid
        ],
    }
    answer = services.functions.call(choice, body)
    if not isinstance(answer, dict) or "image" not in answer:
        raise FunctionError(f"{choice} answered without an 'image': {str(answer)[:200]}")
    clean = decode_image_b64(answer["image"])
    if clean.shape[:2] != image.shape[:2]:  # sent downscaled: back to the frame's pixels
        import cv2

        clean = cv2.resize(clean, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    return clean


def derive_task(job: dict[str, Any], services: Services) -> tuple[str, dict[str, Any]]:
    """``warp`` or ``remove_grid``: a completed source task -> a new task in the target project."""
    from PIL import Image

    from quadratseg.images import decode_image_rgb

    kind, params = job["kind"], job["params"]
    task_id, target = int(params["task_id"]), int(params["target_project_id"])
    label_name, n_points = POINTS[kind]
    with services.cvat() as cvat:
        task = cvat.task(task_id)
        annotation_jobs = [j for j in cvat.task_jobs(task_id) if j.get("type", "annotation") == "annotation"]
        if not annotation_jobs or any(j["status"] != "completed" for j in annotation_jobs):
            return "skipped", {"reason": f"task {task_id} is not completed: its jobs are not all completed"}
        if not cvat.project_exists(target):
            return "failed", {"error": f"target project {target} does not exist (check target_proj_id)"}
        name = f"{task['name']}{SUFFIX[kind]}"
        existing = cvat.find_task(target, name)
        if existing is not None and not existing.get("size"):  # left without data by a crash: remake it
            check_lease()  # unless this job was taken over: the new owner's task may be filling now
            cvat.client.tasks.remove_by_ids([existing["id"]])
            existing = None
        if existing is not None:  # made before; its jobs opened in case a crash came in between
            for derived_job in cvat.task_jobs(existing["id"]):
                if derived_job["state"] == "new":
                    cvat.set_job_state(derived_job["id"], "in progress")
            return "done", {"task_id": existing["id"], "name": name, "created": False}
        labels = project_labels(
            cvat.labels(project_id=task["project_id"])
            if task.get("project_id") is not None
            else cvat.labels(task_id=task_id)
        )
        points = skeleton_points(cvat.task_shapes(task_id), labels, label_name, n_points)
        numbers, names = cvat.task_frames(task_id)
        stage = services.cache_dir / f"job-{job['id']}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        failed, files = {}, []
        for i, (number, frame_name) in enumerate(zip(numbers, names, strict=True)):
            try:
                if number not in points:
                    raise QuadratsegError(f"no {label_name} skeleton on this frame")
                if isinstance(points[number], str):  # several skeletons: which to follow is not a guess
                    raise QuadratsegError(points[number])
                data = cvat.task_frame_bytes(task_id, number)
                image = decode_image_rgb(data, frame_name)
                if kind == "warp":
                    out = _warp_frame(image, points[number], services.settings)
                else:
                    out = _remove_grid_frame(image, data, points[number], services)
            except (CvatConnectionError, FunctionError):
                raise  # an outage, not a bad frame: fail the job rather than make a partial task
            except (QuadratsegError, ValueError) as exc:
                failed[frame_name] = str(exc)
                logger.warning("task %d frame %s: %s", task_id, frame_name, exc)
                continue
            finally:
                services.store.progress(job["id"], i + 1, len(numbers))
            path = stage / f"{Path(frame_name).stem}.jpg"
            if path.exists():  # two frames with one stem (a/x.jpg, b/x.png): keep both
                path = stage / f"{Path(frame_name).stem}_{number}.jpg"
            Image.fromarray(out).save(path, "JPEG", quality=95)
            files.append(path)
        if not files:
            shutil.rmtree(stage, ignore_errors=True)
            return "failed", {"error": "no frame could be processed", "failed_frames": failed}
        check_lease()  # a worker whose job was taken over creates nothing
        # a task whose data did not arrive is removed by its own id (Cvat.create_task), never by name
        created = cvat.create_task(target, name, task.get("subset") or "", files)
        for derived_job in cvat.task_jobs(created["id"]):
            cvat.set_job_state(derived_job["id"], "in progress")
    shutil.rmtree(stage, ignore_errors=True)
    return "done", {
        "task_id": created["id"],
        "name": name,
        "created": True,
        "frames": len(files),
        "failed_frames": failed,
    }


WORK = {"detect": detect, "warp": derive_task, "remove_grid": derive_task}
# errors that say a server is away, not that the job is wrong: the job is retried on its own (a
# function that answers an error is not away: that frame, or the derived task, fails)
OUTAGES = (CvatConnectionError, FunctionUnavailableError)


def run_job(job_id: int, services: Services, enqueue: Callable[[int], None] | None = None) -> str:
    """Run one stored job to its end and record it; the final state ("" when there was nothing to do).

    The job runs under a lease renewed by a :class:`bridge.store.Heartbeat` (another worker takes it
    over only once the lease expires: this worker died). A job stopped by an outage (:data:`OUTAGES`)
    goes back to the queue, not due before its back-off, while it has retries left
    (``BRIDGE_JOB_RETRIES``; final state "waiting"). A derived task found not due is released,
    unless a delivery marked it ``again`` meanwhile: then it is queued once more (``enqueue``), so a
    completion event that came during the decision is never lost."""
    store = services.store
    job = store.get(job_id)
    owner = uuid.uuid4().hex
    if job is None or not store.start(job_id, owner):
        return ""
    start = time.perf_counter()
    with Heartbeat(store, job_id, owner) as beat:
        try:
            state, result = WORK[job["kind"]](store.get(job_id), services)
        except LeaseLostError as exc:  # another worker has the job now: leave it to that one
            logger.error("%s; this worker stops it", exc)
            return "lost"
        except OUTAGES as exc:  # CVAT or a function unreachable after their own retries
            beat.stop()
            return _after_outage(job_id, owner, exc, services, start)
        except Exception as exc:  # recorded, not raised: the queue must go on with the next job
            beat.stop()
            logger.exception("bridge job %d (%s) failed", job_id, job["key"])
            so_far = (store.get(job_id) or {}).get("result") or {}  # keep what it changed (shape ids)
            error = f"{type(exc).__name__}: {exc}"
            store.finish(job_id, "failed", so_far, error=error, timings=_took(start), owner=owner)
            return "failed"
    if state == "skipped" and job["kind"] in ("warp", "remove_grid"):
        # not due: a later event may claim the key, or one that came meanwhile runs it again
        if store.release_or_again(job_id, result.get("reason", ""), owner=owner):
            logger.info(
                "bridge job %d: %s; a later delivery came meanwhile: again", job_id, result.get("reason")
            )
            if enqueue is not None:
                enqueue(job_id)
            return "queued"
        logger.info("bridge job %d: %s", job_id, result.get("reason"))
        return "skipped"
    timings = {**result.pop("timings", {}), **_took(start)}
    if not store.finish(job_id, state, result, error=result.get("error", ""), timings=timings, owner=owner):
        logger.error("bridge job %d was taken over before it ended here; its new owner records it", job_id)
        return "lost"
    logger.info("bridge job %d (%s): %s %s", job_id, job["key"], state, result)
    return state


def retry_delay_s(attempt: int, first_s: float) -> float:
    """Seconds before the automatic retry that follows ``attempt`` (1 for the first run): the first
    delay doubled at each attempt.

    Examples:
        >>> [retry_delay_s(n, 30.0) for n in (1, 2, 3, 4, 5)]
        [30.0, 60.0, 120.0, 240.0, 480.0]
    """
    return first_s * 2.0 ** max(attempt - 1, 0)


def _after_outage(job_id: int, owner: str, exc: Exception, services: Services, start: float) -> str:
    """A job stopped by an outage: queued again, not due before its back-off, while it has retries
    left (``BRIDGE_JOB_RETRIES``); failed after the last. What it already changed in CVAT (its shape
    ids, its pending create) stays on the record, so the next run resumes without a second copy."""
    store, settings = services.store, services.settings
    record = store.get(job_id) or {}
    so_far = record.get("result") or {}
    outages = int(record.get("outages") or 0)  # automatic retries already spent on outages
    error = f"{type(exc).__name__}: {exc}"
    if outages < settings.bridge_job_retries:
        delay = retry_delay_s(outages + 1, settings.bridge_job_retry_s)
        if not store.retry_later(job_id, owner, so_far, error, delay):
            return "lost"
        logger.warning(
            "bridge job %d (%s) stopped by an outage (%s); run again in %.0f s (retry %d of %d)",
            job_id, record.get("key"), error, delay, outages + 1, settings.bridge_job_retries,
        )  # fmt: skip
        return "waiting"
    runs = outages + 1
    logger.error(
        "bridge job %d (%s) stopped by an outage %d times: %s", job_id, record.get("key"), runs, error
    )
    error = f"{error} (after {runs} attempts; send the event again once the outage is over)"
    store.finish(job_id, "failed", so_far, error=error, timings=_took(start), owner=owner)
    return "failed"


def _took(start: float) -> dict[str, float]:
    return {"total_s": round(time.perf_counter() - start, 3)}
