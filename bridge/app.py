"""The bridge's HTTP face: FastAPI endpoints CVAT's webhooks call, and job status for people.

Every webhook endpoint answers within milliseconds (CVAT waits 10 s, then records a 504 and, in
newer versions, retries): it checks the signature, decides whether the event is due, records a job
under an idempotency key (:class:`bridge.store.JobStore`) and queues it (:mod:`bridge.jobqueue`).

- A delivery's body is read up to ``BRIDGE_MAX_BODY`` bytes: a bigger one gets 413, refused on its
  announced length before it is read.
- ``X-Signature-256`` (CVAT's HMAC of the raw body with ``CVAT_WEBHOOK_SECRET``) must be valid, and
  so must ``qsig``, the bridge's own HMAC of the URL's path and query (:func:`query_signature`; the
  URLs come from ``python -m bridge.urls``): CVAT signs the body only, so without it a captured
  delivery could be replayed with another ``target_proj_id`` or ``model_name``. Missing or wrong ->
  401 and nothing queued. The signed query names the project whose webhook the URL is
  (``project_id``, required when deliveries are signed): one key signs every URL and CVAT shows
  target URLs to whoever can list webhooks, so a delivery whose job or task belongs to another
  project gets 401 as well. Only ``--insecure`` (no secret) accepts unsigned deliveries, each logged
  as a warning. A ``ping`` gets 200 on every endpoint.
- ``model_name`` must be an allowed function (:func:`bridge.functions.function_name_error`), else 400
  before anything is queued: a name never chooses the host frames are sent to.
- Detection (:func:`detection_due`) only on ``update:job`` whose ``before_update`` holds ``state``,
  whose state went ``new`` -> ``in progress`` and whose type is ``annotation``: every annotation
  upload (ours included) also fires ``update:job``, with ``before_update == {"updated_date": ...}``,
  and must not loop; a rejected or completed job set back to ``in progress`` is a review loop, whose
  corrections must not get a new layer of auto shapes. ``POST /detect?job_id=&model_name=`` (with the
  token) runs detection on request; the worker never pre-annotates a frame a person worked on
  (:func:`bridge.work.detect`). One detection per CVAT job at a time: ``/detect`` answers 409 while
  one is queued or running on that job (the worker also holds a lease per CVAT job).
- Task completion (:func:`completion_due`): ``update:task`` with ``status`` changed to
  ``completed``, or ``update:job`` with ``status`` changed to ``completed`` (CVAT derives the task's
  status from its jobs; the worker checks that every job is completed). One job per source task and
  stage, whichever event comes first.
- ``/jobs`` and ``/jobs/{id}`` need ``Authorization: Bearer <BRIDGE_TOKEN>`` (401 otherwise, and
  always when no token is configured); ``/health`` stays open.
- Answers: 202 ``queued`` (new job), 200 ``duplicate`` (the same work was already queued or done),
  200 ``ignored`` with the reason, 400 for a body that is not JSON or a function that is not allowed.
"""

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import queue as stdqueue
import threading
import time
import types
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

DETECT_KIND, WARP_KIND, GRID_KIND = "detect", "warp", "remove_grid"


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is CVAT's ``sha256=<hex HMAC-SHA256(secret, body)>`` (constant-time compare).

    Examples:
        >>> signature_ok("mykey", b"", "sha256=" + hmac.new(b"mykey", b"", "sha256").hexdigest())
        True
    """
    if not header:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def query_signature(secret: str, path: str, query: Iterable[tuple[str, str]]) -> str:
    """Hex HMAC-SHA256(secret, ``path?sorted query``) of a webhook URL, ``qsig`` itself left out: the
    bridge's own signature of the query parameters, which CVAT's body signature does not cover.

    Examples:
        >>> a = query_signature("k", "/a", [("y", "2"), ("x", "1")])
        >>> a == query_signature("k", "/a", [("x", "1"), ("y", "2"), ("qsig", "ignored")])
        True
    """
    canonical = path + "?" + urlencode(sorted((k, v) for k, v in query if k != "qsig"))
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def _query_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def signed_path(secret: str, path: str, **params: Any) -> str:
    """``path?params&qsig=...``: a webhook URL's path and query as ``python -m bridge.urls`` prints it
    (parameters that are None are left out).

    Examples:
        >>> signed_path("k", "/crop-quadrat-and-create-new-task-webhook", target_proj_id=2)[:58]
        '/crop-quadrat-and-create-new-task-webhook?target_proj_id=2'
    """
    query = [(k, _query_text(v)) for k, v in params.items() if v is not None]
    return f"{path}?{urlencode([*query, ('qsig', query_signature(secret, path, query))])}"


@functools.cache
def webhook_queries() -> dict[str, Any]:
    """The webhooks' query parameters as pydantic models, by kind (``detect``, ``warp``, ``grid``):
    read with pydantic, as FastAPI's ``Query`` reads them (the same values and 422 errors, in the
    same order), but once per webhook URL (:func:`create_app` keeps the answers) instead of through
    FastAPI's per-request parameter machinery, which cost each delivery a sixth of its answer's time."""
    from pydantic import BaseModel, ConfigDict, Field

    def project_field() -> Any:
        return Field(None, description="the project whose webhook this is")

    def qsig_field() -> Any:
        return Field("", description="the URL's signature (python -m bridge.urls)")

    # model_name is CVAT's parameter name, not pydantic's model_ namespace
    config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    class DetectQuery(BaseModel):
        model_config = config
        model_name: str = Field(description="the function to run, e.g. pth-yolo-gridcorners")
        conv_mask_to_poly: bool = Field(False, description="store masks as polygons")
        threshold: float | None = Field(None, ge=0.0, le=1.0, description="the function's threshold")
        project_id: int | None = project_field()
        qsig: str = qsig_field()

    class WarpQuery(BaseModel):
        model_config = config
        target_proj_id: int = Field(description="project of the warped task")
        project_id: int | None = project_field()
        qsig: str = qsig_field()

    class GridQuery(BaseModel):
        model_config = config
        target_proj_id: int = Field(description="project of the grid-free task")
        project_id: int | None = project_field()
        qsig: str = qsig_field()

    return {"detect": DetectQuery, "warp": WarpQuery, "grid": GridQuery}


def read_query(model: Any, query: Any) -> tuple[Any, list[dict[str, Any]]]:
    """(the values, None when invalid; the errors as FastAPI's 422 lists them) of a URL's query (a
    Starlette ``QueryParams``, the last value of a repeated name counting, as with ``Query``) read
    by the pydantic ``model``.

    Examples:
        >>> from starlette.datastructures import QueryParams
        >>> detect = webhook_queries()["detect"]
        >>> read_query(detect, QueryParams("model_name=fn&threshold=0.5"))[0]["threshold"]
        0.5
        >>> [(e["loc"], e["type"]) for e in read_query(detect, QueryParams("threshold=2"))[1]]
        [(('query', 'model_name'), 'missing'), (('query', 'threshold'), 'less_than_equal')]
    """
    from pydantic import ValidationError

    try:
        return types.MappingProxyType(model.model_validate(dict(query)).model_dump()), []
    except ValidationError as exc:
        return None, [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]


def query_openapi(model: Any) -> dict[str, Any]:
    """The OpenAPI ``parameters`` of a route whose query :func:`read_query` reads with ``model``
    (the route's ``openapi_extra``), from the model's own JSON schema."""
    properties = model.model_json_schema()["properties"]
    described = []
    for name, field in model.model_fields.items():
        schema = {
            key: value for key, value in properties[name].items() if key not in ("title", "description")
        }
        described.append(
            {
                "name": name,
                "in": "query",
                "required": field.is_required(),
                "description": field.description,
                "schema": schema,
            }
        )
    return {"parameters": described}


QUERIES_REMEMBERED = 256  # webhook URLs whose parsed query is kept: a bridge has a handful


def detection_due(payload: dict[str, Any]) -> str:
    """ "" when a delivery asks for detection on its job, else why not (module docstring)."""
    if payload.get("event") != "update:job":
        return f"event {payload.get('event')!r} is not update:job"
    job, before = payload.get("job") or {}, payload.get("before_update") or {}
    if "state" not in before:
        return f"the job's state did not change (changed: {sorted(before)})"
    if job.get("state") != "in progress" or before.get("state") == "in progress":
        return f"the job's state went {before.get('state')!r} -> {job.get('state')!r}, not to 'in progress'"
    if before.get("state") != "new":
        return (
            f"the job went {before.get('state')!r} -> 'in progress': detection runs only new -> in progress "
            "(a reviewed or reopened job keeps its annotations; POST /detect runs it on request)"
        )
    if job.get("type", "annotation") != "annotation":
        return f"job type {job.get('type')!r} is not annotation"
    return ""


def payload_project(payload: dict[str, Any]) -> int | None:
    """The project of the job or task a delivery is about (None when it names none)."""
    for key in ("job", "task"):
        found = (payload.get(key) or {}).get("project_id")
        if found is not None:
            return int(found)
    return None


def project_error(payload: dict[str, Any], project_id: int | None, signed: bool) -> str:
    """Why a delivery may not come through a URL made for project ``project_id`` ("" when it may).

    Examples:
        >>> project_error({"job": {"project_id": 2}}, 1, True)[:42]
        'the delivery is about project 2, this webh'
        >>> project_error({"job": {"project_id": 1}}, 1, True)
        ''
    """
    if project_id is None:
        if signed:
            return (
                "the webhook URL names no project: make it with python -m bridge.urls --project_id <the "
                "project of the webhook> and set it as the webhook's target URL in CVAT"
            )
        return ""
    found = payload_project(payload)
    if found != project_id:
        return (
            f"the delivery is about project {found}, this webhook URL is project {project_id}'s "
            "(python -m bridge.urls --project_id): a delivery replayed to another webhook is refused"
        )
    return ""


def completion_due(payload: dict[str, Any]) -> tuple[int | None, str]:
    """(source task id, "") when a delivery says a task (or one of its jobs) became completed, else
    (None, why not)."""
    event, before = payload.get("event"), payload.get("before_update") or {}
    if event == "update:task":
        task = payload.get("task") or {}
        if "status" in before and task.get("status") == "completed" and before["status"] != "completed":
            return int(task["id"]), ""
        return None, f"the task's status did not become completed (changed: {sorted(before)})"
    if event == "update:job":
        job = payload.get("job") or {}
        if job.get("type", "annotation") != "annotation":
            return None, f"job type {job.get('type')!r} is not annotation"
        if "status" in before and job.get("status") == "completed" and before["status"] != "completed":
            return int(job["task_id"]), ""
        return None, f"the job's status did not become completed (changed: {sorted(before)})"
    return None, f"event {event!r} is neither update:task nor update:job"


class ClaimBatcher:
    """Claims of concurrent deliveries committed together: one thread takes every claim waiting and
    records them in one transaction of the job store (one disk flush, one round trip), so 200
    deliveries at once cost a few commits, not 200 in a row. A batch that fails is tried claim by
    claim, so one bad delivery never sinks the others.

    The claims of one event loop travel to the thread and back a batch at a time, not one by one: the
    loop gathers them while its previous batch commits, hands the thread the batch in one message and
    gets every answer in one callback (a thread hop a delivery cost the loop more than the rest of
    its answer). ``on_new`` (the queue's :meth:`bridge.jobqueue.BridgeQueue.enqueue_soon`) gets the
    ids of a transaction's new jobs once it has committed, in one call from the thread."""

    def __init__(self, store: Any, most: int = 500, on_new: Callable[..., None] | None = None):
        self.store, self.most, self.on_new = store, most, on_new
        self._batches: stdqueue.SimpleQueue = stdqueue.SimpleQueue()  # (items, loop, future of answers)
        self._gathering: dict[Any, list] = {}  # event loop -> its claims waiting for the next batch
        self._flushers: set[asyncio.Task] = set()  # each loop's task sending its batches, while it has any
        self._thread = threading.Thread(target=self._loop, name="bridge-claims", daemon=True)
        self._thread.start()

    async def claim(
        self, key: str, kind: str, params: dict[str, Any], again_if_busy: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """:meth:`bridge.store.JobStore.claim`, committed with the other claims waiting now."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        waiting = self._gathering.get(loop)
        if waiting is None:  # no batch of this loop on its way: this claim starts one
            waiting = self._gathering[loop] = []
            flusher = loop.create_task(self._flush(loop, waiting))
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        waiting.append(((key, kind, params, again_if_busy), future))
        return await future

    async def _flush(self, loop: Any, waiting: list) -> None:
        """Send ``loop``'s claims to the thread a batch at a time until none waits; each claim's answer
        (or error) to its delivery."""
        batch: list = []
        try:
            while waiting:
                batch = waiting[: self.most]
                del waiting[: self.most]
                answers = loop.create_future()
                self._batches.put(([item for item, _ in batch], loop, answers))
                for (_, future), answer in zip(batch, await answers, strict=True):
                    if future.done():  # the delivery went away (its connection closed); recorded anyway
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            del self._gathering[loop]
            for _, future in [*batch, *waiting]:  # left only when this task was cancelled (loop closing)
                future.cancel()  # a no-op on a future already answered

    def _loop(self) -> None:
        try:
            self.store.warm()
        except Exception as exc:  # down at start: the first claim reconnects (or answers 503)
            logger.warning("the job store is not reachable yet (%s)", exc)
        while True:
            batches = [self._batches.get()]
            size = len(batches[0][0])
            while size < self.most:  # every loop's batch waiting now: one transaction
                try:
                    batches.append(self._batches.get_nowait())
                except stdqueue.Empty:
                    break
                size += len(batches[-1][0])
            answers = self._commit([item for items, _, _ in batches for item in items])
            self._hand_on([answer[0]["id"] for answer in answers if isinstance(answer, tuple) and answer[1]])
            for items, loop, future in batches:
                mine, answers = answers[: len(items)], answers[len(items) :]
                with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits for these
                    loop.call_soon_threadsafe(_settle, future, mine)

    def _hand_on(self, job_ids: list[int]) -> None:
        """The committed new jobs to ``on_new``; a failure is logged and left to the queue's reaper,
        which queues every stored job whose message is missing."""
        if not job_ids or self.on_new is None:
            return
        try:
            self.on_new(*job_ids)
        except Exception as exc:
            logger.warning("bridge jobs %s not handed to the queue (%s); the reaper will", job_ids, exc)

    def _commit(self, items: list[tuple[str, str, dict[str, Any], bool]]) -> list[Any]:
        """Each claim's ``(job, new)``, or the exception that kept it from being recorded."""
        try:
            results: list[Any] = self.store.claim_many(items)
        except Exception:
            results = []
            for item in items:
                try:
                    ((job, new),) = self.store.claim_many([item])
                except Exception as exc:
                    results.append(exc)
                    continue
                if new:
                    logger.info("queued bridge job %d: %s", job["id"], item[0])
                results.append((job, new))
            return results
        queued = [job["id"] for job, new in results if new]
        if queued:  # one line a batch: a line a delivery costs a burst's answers a tenth of their time
            logger.info("queued %d bridge job(s) from %d deliveries: %s", len(queued), len(items), queued)
        return results


def _settle(future: Any, answers: list[Any]) -> None:
    """In the loop: a batch's answers to the future its flusher awaits (unless it was cancelled)."""
    if not future.done():
        future.set_result(answers)


DEFAULT_MAX_BODY = 1024 * 1024  # BRIDGE_MAX_BODY's default: CVAT's payloads are a few kB


def create_app(
    queue: Any, secret: str = "", *, insecure: bool = False, token: str = "", max_body: int = DEFAULT_MAX_BODY
) -> Any:
    """The FastAPI application over a :class:`bridge.jobqueue.BridgeQueue` (module docstring).

    Args:
        queue: the queue (``store``, ``enqueue`` and ``services.functions``, the allowed functions).
        secret: ``CVAT_WEBHOOK_SECRET``; empty only with ``insecure``.
        insecure: accept unsigned deliveries (logged at each one).
        token: ``BRIDGE_TOKEN`` of ``/jobs``; empty: ``/jobs`` answers 401.
        max_body: largest delivery body read, bytes.
    """
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import QueryParams

    from bridge.functions import function_name_error

    if not secret and not insecure:
        raise QuadratsegError(
            "CVAT_WEBHOOK_SECRET is not set: set it to the secret of the CVAT webhooks, or pass --insecure "
            "to accept unsigned deliveries (never where others can reach the bridge)"
        )
    app = FastAPI(
        title="QUADRATSEG bridge",
        description="CVAT webhooks that pre-annotate jobs and chain the stages (docs/bridge.md).",
    )
    store, functions = queue.store, queue.services.functions
    claims = ClaimBatcher(store, on_new=queue.enqueue_soon)

    async def read_body(request: Request) -> bytes:
        announced = request.headers.get("content-length")
        if announced is not None and (not announced.isdigit() or int(announced) > max_body):
            raise HTTPException(413, f"the body is over {max_body} bytes (BRIDGE_MAX_BODY)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise HTTPException(413, f"the body is over {max_body} bytes (BRIDGE_MAX_BODY)")
            chunks.append(chunk)
        return b"".join(chunks)

    @functools.lru_cache(maxsize=QUERIES_REMEMBERED)
    def parsed_query(kind: str, path: str, raw: bytes) -> tuple[Any, list, str]:
        # a webhook's every delivery comes with the same URL: its query is read and its signature
        # computed once (both depend on the URL alone); each delivery's qsig is still compared
        query = QueryParams(raw)
        values, errors = read_query(webhook_queries()[kind], query)
        expected = query_signature(secret, path, query.multi_items()) if secret else ""
        return values, errors, expected

    def webhook_query(request: Request, kind: str) -> tuple[Any, str]:
        """(the route's query values, their expected ``qsig``); 422 naming each bad parameter."""
        values, errors, expected = parsed_query(kind, request.scope["path"], request.scope["query_string"])
        if errors:
            raise RequestValidationError(errors)
        return values, expected

    async def read_payload(request: Request, query: Any, expected_qsig: str) -> dict[str, Any]:
        body = await read_body(request)
        if secret:
            if not signature_ok(secret, body, request.headers.get("X-Signature-256")):
                raise HTTPException(401, "missing or wrong X-Signature-256 (check CVAT_WEBHOOK_SECRET)")
            given = query["qsig"]
            if not hmac.compare_digest(expected_qsig.encode(), given.encode("utf-8", "replace")):
                raise HTTPException(
                    401,
                    "the webhook URL's query is not signed for these parameters (qsig): make the URL with "
                    "python -m bridge.urls and set it as the webhook's target URL in CVAT",
                )
        else:
            logger.warning("unsigned delivery accepted (--insecure): POST %s", request.url.path)
        try:
            payload = json.loads(body)
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "the body is not a JSON object")
        return payload

    def require_token(request: Request) -> None:
        given = request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not token or not hmac.compare_digest(given, f"Bearer {token}".encode()):
            raise HTTPException(
                401,
                "send Authorization: Bearer <BRIDGE_TOKEN>" + ("" if token else " (BRIDGE_TOKEN is not set)"),
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def submit(
        key: str, kind: str, params: dict[str, Any], again_if_busy: bool = False
    ) -> JSONResponse:
        # recorded durably (committed) before the answer; the claim thread hands the batch's new jobs to
        # the dispatcher thread, and a message that never makes it is sent again by the reaper
        try:
            job, new = await claims.claim(key, kind, params, again_if_busy)
        except Exception as exc:  # the job store is down: nothing recorded, CVAT's retry brings it again
            logger.exception("a delivery could not be recorded (%s)", key)
            raise HTTPException(503, f"the job store is unavailable ({type(exc).__name__}); retry") from None
        if not new:
            return JSONResponse({"status": "duplicate", "job_id": job["id"], "state": job["state"]}, 200)
        return JSONResponse({"status": "queued", "job_id": job["id"]}, 202)

    def check_project(payload: dict[str, Any], project_id: int | None) -> None:
        why = project_error(payload, project_id, signed=bool(secret))
        if why:
            raise HTTPException(401, why)

    def ignored(reason: str) -> JSONResponse:
        return JSONResponse({"status": "ignored", "reason": reason}, 200)

    def allowed_function(model_name: str) -> None:
        why = function_name_error(model_name, functions.urls, functions.url_template)
        if why:
            raise HTTPException(400, why)

    async def health() -> dict[str, Any]:
        """Liveness (also a valid webhook ping target) and the number of jobs per state."""
        return {"status": "healthy", "jobs": await run_in_threadpool(store.counts)}

    for method in ("GET", "POST"):
        app.add_api_route("/health", health, methods=[method], operation_id=f"health_{method.lower()}")

    # the webhooks' queries are read by read_query (pydantic, once per URL), not per request by
    # FastAPI's Query: the same values and 422s
    queries = webhook_queries()

    @app.post("/detect-model-webhook", openapi_extra=query_openapi(queries["detect"]))
    async def detect_model_webhook(request: Request) -> JSONResponse:
        """Pre-annotate a job with a function when an annotator opens it (state -> in progress)."""
        query, expected_qsig = webhook_query(request, "detect")
        payload = await read_payload(request, query, expected_qsig)
        model_name = query["model_name"]
        allowed_function(model_name)
        if payload.get("event") == "ping":
            return JSONResponse({"status": "pong"}, 200)
        check_project(payload, query["project_id"])
        reason = detection_due(payload)
        if reason:
            return ignored(reason)
        job = payload["job"]
        key = f"detect:{model_name}:{job['id']}:{job.get('updated_date', '')}"
        params = {
            "job_id": int(job["id"]),
            "function": model_name,
            "conv_mask_to_poly": query["conv_mask_to_poly"],
            "threshold": query["threshold"],
        }
        return await submit(key, DETECT_KIND, params)

    async def derived(request: Request, kind: str, query_kind: str) -> JSONResponse:
        query, expected_qsig = webhook_query(request, query_kind)
        payload = await read_payload(request, query, expected_qsig)
        if payload.get("event") == "ping":
            return JSONResponse({"status": "pong"}, 200)
        check_project(payload, query["project_id"])
        target_proj_id = query["target_proj_id"]
        task_id, reason = completion_due(payload)
        if task_id is None:
            return ignored(reason)
        key = f"{kind}:{target_proj_id}:{task_id}"
        # a completion that comes while the same key's job is still deciding makes it decide again
        params = {"task_id": task_id, "target_project_id": target_proj_id}
        return await submit(key, kind, params, again_if_busy=True)

    @app.post("/crop-quadrat-and-create-new-task-webhook", openapi_extra=query_openapi(queries["warp"]))
    async def crop_quadrat(request: Request) -> JSONResponse:
        """A completed corner task -> its photos warped to the quadrat, as a task in ``target_proj_id``."""
        return await derived(request, WARP_KIND, "warp")

    @app.post("/remove-grid-and-create-new-task-webhook", openapi_extra=query_openapi(queries["grid"]))
    async def remove_grid(request: Request) -> JSONResponse:
        """A completed grid task -> its quadrats with the grid removed, as a task in ``target_proj_id``."""
        return await derived(request, GRID_KIND, "grid")

    @app.post("/detect", dependencies=[Depends(require_token)], status_code=202)
    async def detect_on_request(
        job_id: int = Query(..., description="the CVAT job"),
        model_name: str = Query(..., description="the function to run, e.g. pth-yolo-gridcorners"),
        conv_mask_to_poly: bool = Query(False, description="store masks as polygons"),
        threshold: float | None = Query(None, ge=0.0, le=1.0, description="the function's threshold"),
    ) -> JSONResponse:
        """Run detection on a job now, whatever its state (needs BRIDGE_TOKEN): frames holding shapes
        a person made or edited are left as they are; 409 while a detection on the job is queued or
        running, but for a detection of the same function and options waiting out an outage: that
        one runs now."""
        allowed_function(model_name)
        busy = await run_in_threadpool(store.active_detection, job_id)
        waiting = busy is not None and busy["state"] == "queued" and busy.get("not_before") is not None
        asked = {"function": model_name, "conv_mask_to_poly": conv_mask_to_poly, "threshold": threshold}
        if waiting and all(busy["params"].get(k) == v for k, v in asked.items()):
            # the same detection, waiting out an outage the operator knows is over: due now
            return await submit(busy["key"], DETECT_KIND, busy["params"])
        if busy is not None:
            doing = "waits out an outage to detect" if waiting else "is already detecting"
            raise HTTPException(
                409,
                f"bridge job {busy['id']} {doing} on CVAT job {job_id} ({busy['state']}); "
                "ask again once it has ended (GET /jobs/{id})",
            )
        key = f"detect:{model_name}:{job_id}:request-{time.time_ns()}"
        params = {
            "job_id": job_id,
            "function": model_name,
            "conv_mask_to_poly": conv_mask_to_poly,
            "threshold": threshold,
        }
        return await submit(key, DETECT_KIND, params)

    @app.get("/jobs", dependencies=[Depends(require_token)])
    async def list_jobs(state: str | None = None, limit: int = Query(100, ge=1, le=10_000)) -> list[dict]:
        """Background jobs, newest first: state, progress, errors, timings, result."""
        return await run_in_threadpool(store.list, limit, state)

    @app.get("/jobs/{job_id}", dependencies=[Depends(require_token)])
    async def get_job(job_id: int) -> dict[str, Any]:
        """One background job."""
        job = await run_in_threadpool(store.get, job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    return app
