"""The Ray engine (``pipeline.process ... --engine ray``): the chain over Ray Data, on one machine or
a cluster, each model in a pool of its own.

- The dataset starts as the photos' keys and paths (:func:`ray.data.from_items`, one photo a block
  up to :data:`MAX_BLOCKS` photos), never their pixels: each photo is read by a task where it is
  processed, from storage every node sees (the output folder too, see ``docs/cluster.md``).
- One Ray Data operator per stage of the chain (:data:`pipeline.chain.CHAIN_STAGES`), run by the
  same stage functions as the local engine's: a stage that calls a model (corners and the warp,
  grid, LaMa removal, segmentation and the cover) is a pool of ``ray_workers`` stateful actors
  (:class:`ChainWorker`, ``ActorPoolStrategy``), each loading only its stage's models, once,
  through ``models_factory``, and asking ``ray_gpus_per_model`` GPUs per model (fractions let
  small models share a GPU) and ``ray_cpus_per_model`` CPUs; the other CPU work (claiming and
  decoding, a stage without a model, OpenCV removal, writing the outputs) runs in tasks of
  :data:`TASK_CPUS` CPUs. Ray Data fuses the tasks before the first model's pool into its actors
  when their resources are the same (a CPU run with the defaults), so the photo is then read in
  that actor. Between stages a photo travels as one pickled :class:`PhotoInFlight` (its arrays:
  the raw photo until it is warped, then the warped, clean and mask images), which each stage
  needs. A run whose pools and a task do not fit the cluster is refused (:func:`check_resources`).
- Streaming: Ray Data's executor bounds the photos in flight between operators; only small rows
  (key, outcome, seconds) come back to the driver, which builds the tables (``status.csv``, the
  cover tables, the report) as the local engine does.
- Faults: an actor that dies mid-photo is restarted and its task run again, as is a task whose
  worker died, up to :data:`RETRIES` times, and a block lost with its node is rebuilt from its
  lineage. A photo's files are written atomically and its record last, so a retry leaves no
  half-written or duplicated output; a photo whose record was written before the loss is not
  written again (counted as this run's). A photo on which the workers keep dying (a crash or out of
  memory on that photo) fails alone with :data:`NO_ANSWER`. A photo that fails for its own reasons
  is caught in the stage and recorded as the local engine records it, not retried. Claims
  (:mod:`pipeline.claims`) are the driver's: the read task claims under its token, the write task
  checks the claim is still the run's before it writes and releases it after, and the driver's
  heartbeat keeps them alive, so a retried photo is still this run's, and another run on the same
  folder leaves it alone; a run that stops (an interrupt, an error) releases its claims at once.

Ray is imported only here (the ``ray`` extra); the local engine never imports it.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.chain import CHAIN_STAGES, ChainModels, ChainStage, PhotoResult, run_stage, segmentation_mode
from pipeline.claims import PhotoClaims
from pipeline.run import (
    EngineOptions,
    EngineOutcome,
    PhotoJob,
    claim_photo,
    read_photo,
    start_photo,
    write_photo,
)
from quadratseg.batch import BatchItem
from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

OUTCOMES = ("done", "skipped", "held", "failed")
MAX_BLOCKS = 2000  # blocks of the photos' dataset; beyond, a block holds several photos
# CPUs of a task (read, a stage without a model, OpenCV removal, write): half a CPU, so that a node of
# one CPU runs a model's actor and the tasks that feed it
TASK_CPUS = 0.5
COLUMNS = ("key", "path", "outcome", "reason", "state", "seconds")
RETRIES = 3  # runs again of a task whose worker died (an actor lost, a node removed) before a photo fails
NO_ANSWER = (
    f"no answer from the Ray workers: a worker processing it died {RETRIES + 1} times (a crash or "
    "out of memory on this photo), or an error outside the photo's own processing; see Ray's logs"
)


@dataclass
class PhotoInFlight:
    """A photo between two stages: its raw shape (H, W, ...), the file it was read from
    (:func:`pipeline.run.photo_source`), the chain's result so far and the seconds spent."""

    raw_shape: tuple[int, ...]
    source: dict[str, Any]
    result: PhotoResult
    seconds: dict[str, float] = field(default_factory=dict)


def stage_models(stage: ChainStage, models: ChainModels) -> list[Any]:
    """The models ``stage`` calls in a run of ``models``: none for a stage left out, or whose work
    is CPU code (OpenCV removal), which then runs in a task."""
    from grid_inpainting.inpaint import OpenCVBackend

    held = [getattr(models, name) for name in stage.models]
    return [model for model in held if model is not None and not isinstance(model, OpenCVBackend)]


def cpu_models(models: ChainModels) -> ChainModels:
    """``models`` without the models of any stage that has them in its actors: what a task needs
    (the options, the OpenCV backend), small enough to travel with every task."""
    from grid_inpainting.inpaint import OpenCVBackend

    keep = models.inpaint if isinstance(models.inpaint, OpenCVBackend) else None
    return replace(models, corners=None, grid=None, segment=None, semantic=None, inpaint=keep)


def _rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        dict(zip(COLUMNS, values, strict=True)) for values in zip(*(batch[c] for c in COLUMNS), strict=True)
    ]


def _batch(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {column: [row[column] for row in rows] for column in COLUMNS}


def _failed(row: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    from pipeline.engine_local import failure_reason

    reason = failure_reason(exc)
    logger.warning("%s failed: %s", row["key"], reason)
    return {**row, "outcome": "failed", "reason": reason, "state": b""}


def read_rows(
    batch: dict[str, Any], job: PhotoJob, token: str, claim_ttl_s: float, single_stage: bool
) -> dict[str, list[Any]]:
    """The read task: claim each photo under the driver's ``token``, read it and start its chain
    (:func:`pipeline.run.start_photo`; ``single_stage``: the run has no corner model). A photo done
    meanwhile is ``skipped``, one another live run holds ``held``, one that cannot be claimed or
    read ``failed``."""
    claims = PhotoClaims(job.out, token=token, ttl_s=claim_ttl_s)
    rows = []
    for key, path in zip(batch["key"], batch["path"], strict=True):
        row = {"key": str(key), "path": str(path), "outcome": "", "reason": "", "state": b"", "seconds": "{}"}
        item = BatchItem(Path(row["path"]), row["key"])
        try:
            state = claim_photo(job, claims, item)
            if state != "claimed":
                row["outcome"] = "skipped" if state == "done" else "held"
            else:
                image, read_s, source = read_photo(item)
                start = time.perf_counter()
                result = start_photo(image, single_stage, job.warp_size)
                flight = PhotoInFlight(image.shape, source, result, {"read": read_s})
                flight.seconds["chain"] = time.perf_counter() - start
                row["state"] = pickle.dumps(flight, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # this photo's: not claimable, unreadable
            row = _failed(row, exc)
        rows.append(row)
    return _batch(rows)


def advance_rows(batch: dict[str, Any], stage: ChainStage, models: ChainModels) -> dict[str, list[Any]]:
    """``stage`` on each photo of ``batch`` still in flight (the others pass through); the time it
    took is added to the photo's ``chain`` seconds, an error fails the photo alone."""
    rows = []
    for row in _rows(batch):
        if not row["outcome"]:
            try:
                flight: PhotoInFlight = pickle.loads(row["state"])
                start = time.perf_counter()
                run_stage(stage, flight.result, models)
                flight.seconds["chain"] += time.perf_counter() - start
                row = {**row, "state": pickle.dumps(flight, protocol=pickle.HIGHEST_PROTOCOL)}
            except Exception as exc:
                row = _failed(row, exc)
        rows.append(row)
    return _batch(rows)


def write_rows(batch: dict[str, Any], job: PhotoJob, token: str, claim_ttl_s: float) -> dict[str, list[Any]]:
    """The write task: each photo's outputs and then its record (:func:`pipeline.run.write_photo`),
    its claim released (a failed photo's too); rows ``done`` with the photo's seconds. A photo whose
    record is there already (this task run again after it wrote, its answer lost with its node) is
    ``skipped`` and not written again; one whose claim is no longer this run's (it expired and
    another run took the photo over) is ``held`` and left to that run."""
    claims = PhotoClaims(job.out, token=token, ttl_s=claim_ttl_s)
    rows = []
    for row in _rows(batch):
        if not row["outcome"]:
            row = _write_row(row, job, claims)
        if row["outcome"] in ("done", "failed"):
            claims.release(row["key"])
        rows.append({**row, "state": b""})
    return _batch(rows)


def _write_row(row: dict[str, Any], job: PhotoJob, claims: PhotoClaims) -> dict[str, Any]:
    try:
        if job.done(row["key"], Path(row["path"])):
            return {**row, "outcome": "skipped"}
        if not claims.claim(row["key"]):
            return {**row, "outcome": "held"}
        flight: PhotoInFlight = pickle.loads(row["state"])
        seconds = write_photo(job, row["key"], flight.raw_shape, flight.result, flight.seconds, flight.source)
        return {**row, "outcome": "done", "seconds": json.dumps(seconds)}
    except Exception as exc:
        return _failed(row, exc)


class ChainWorker:
    """A Ray Data actor of one stage: the stage's models, built once (``models_factory(only=...)``
    builds the models of the :class:`ChainModels` fields named), over batches of photos in flight
    (:func:`advance_rows`).

    Args:
        stage: the stage's name (:data:`pipeline.chain.CHAIN_STAGES`).
        models_factory: a picklable callable ``(only: tuple[str, ...]) -> ChainModels``.
    """

    def __init__(self, stage: str, models_factory: Any):
        self.stage = next(s for s in CHAIN_STAGES if s.name == stage)
        self.models = models_factory(only=self.stage.models)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return advance_rows(batch, self.stage, self.models)


def check_resources(models: ChainModels, options: EngineOptions, cluster: dict[str, float]) -> None:
    """Refuse a run whose actor pools and one task cannot all be placed on ``cluster`` (Ray's
    ``cluster_resources()``): Ray Data would wait for them for ever.

    Raises:
        QuadratsegError: the CPUs or GPUs needed, what asks them and what to change.
    """
    pools = [len(held) for held in (stage_models(stage, models) for stage in CHAIN_STAGES) if held]
    workers = max(1, options.ray_workers)
    cpus = len(pools) * workers * options.ray_cpus_per_model + TASK_CPUS
    gpus = sum(pools) * workers * options.ray_gpus_per_model
    have_cpus, have_gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    if cpus > have_cpus + 1e-9 or gpus > have_gpus + 1e-9:
        raise QuadratsegError(
            f"--engine ray needs {cpus:g} CPUs and {gpus:g} GPUs, the Ray cluster has {have_cpus:g} and "
            f"{have_gpus:g}: {len(pools)} model pools ({sum(pools)} models) of {workers} actors asking "
            f"{options.ray_cpus_per_model:g} CPU and {options.ray_gpus_per_model:g} GPU per model, and "
            f"{TASK_CPUS:g} CPU for the tasks; lower --ray-workers, --ray-cpus-per-model or "
            "--ray-gpus-per-model, or add nodes"
        )


def chain_dataset(
    items: list[BatchItem], job: PhotoJob, options: EngineOptions, models: ChainModels, token: str
) -> Any:
    """The Ray dataset of ``items``' outcomes: read tasks, one operator per stage (a pool of
    ``options.ray_workers`` :class:`ChainWorker` actors for a stage with models, tasks for the
    others), write tasks; one photo a batch. A task or an actor's task whose worker dies is retried
    :data:`RETRIES` times; a photo still without an answer then is dropped from the dataset (its
    block errored), which the driver records as a failure (:func:`run_ray`)."""
    import ray

    segmentation_mode(models)  # refused here, before Ray starts anything
    rows = [{"key": item.key, "path": str(item.path)} for item in items]
    # max_retries / max_task_retries: Ray's task options, which map_batches takes as remote args
    tasks = {"batch_size": 1, "num_cpus": TASK_CPUS, "max_retries": RETRIES}
    claiming = {"job": job, "token": token, "claim_ttl_s": options.claim_ttl_s}
    with warnings.catch_warnings():
        # Ray 2.60 names remote args it has no parameter for (the retries) deprecated
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
        reading = {**claiming, "single_stage": models.corners is None}
        dataset = dataset.map_batches(read_rows, fn_kwargs=reading, **tasks)
        light = cpu_models(models)
        for stage in CHAIN_STAGES:
            held = stage_models(stage, models)
            if not held:
                dataset = dataset.map_batches(
                    advance_rows, fn_kwargs={"stage": stage, "models": light}, **tasks
                )
                continue
            dataset = dataset.map_batches(
                ChainWorker,
                fn_constructor_kwargs={"stage": stage.name, "models_factory": options.models_factory},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=max(1, options.ray_workers)),
                num_cpus=options.ray_cpus_per_model,
                num_gpus=options.ray_gpus_per_model * len(held),
                # a dead actor is restarted without bound (Ray Data's max_restarts=-1), its task
                # retried RETRIES times
                max_task_retries=RETRIES,
            )
        dataset = dataset.map_batches(write_rows, fn_kwargs=claiming, **tasks)
    dataset.context.max_errored_blocks = -1  # a photo whose workers keep dying is dropped, not the run
    return dataset


def run_ray(
    items: list[BatchItem], job: PhotoJob, models: ChainModels, options: EngineOptions
) -> EngineOutcome:
    """Process ``items`` into ``job.out`` on Ray (see the module docstring). Joins the Ray
    instance this process already started, else the cluster ``options.ray_address`` names
    (``auto``: Ray's ``RAY_ADDRESS``, else the cluster ``ray start`` made on this machine;
    ``ray://HOST:10001``), else starts one of its own for the run and stops it at the end.

    Raises:
        QuadratsegError: Ray is not installed, there is no models factory, or the cluster cannot
            place the run's actors (:func:`check_resources`).
    """
    try:
        import ray
    except ImportError as error:
        raise QuadratsegError(
            "--engine ray needs Ray: pip install 'quadratseg[ray]' (or pixi run -e ray ...); "
            "--engine local needs nothing more"
        ) from error
    if options.models_factory is None:
        raise QuadratsegError(
            "--engine ray builds the models in each actor: give EngineOptions(models_factory=...) "
            "(pipeline.process builds it from the run's options)"
        )
    started = not ray.is_initialized()
    if started:
        ray.init(
            # without an address, a Ray of the run's own ("local"): never Ray's default of joining the
            # last cluster `ray start` recorded in /tmp/ray, which waits for minutes on a record a
            # crashed or killed cluster left behind
            address=options.ray_address or "local",
            include_dashboard=False,
            log_to_driver=False,
        )
    outcome = EngineOutcome()
    try:
        check_resources(models, options, ray.cluster_resources())
        with PhotoClaims(job.out, ttl_s=options.claim_ttl_s) as claims:
            try:
                _run_passes(items, job, models, options, claims, outcome)
            except BaseException:  # an interrupt, a pool that cannot start: let the photos go at once
                for item in items:
                    claims.release(item.key)
                raise
    finally:
        if started:
            ray.shutdown()
    return outcome


def _run_passes(
    items: list[BatchItem],
    job: PhotoJob,
    models: ChainModels,
    options: EngineOptions,
    claims: PhotoClaims,
    outcome: EngineOutcome,
) -> None:
    """Datasets over the photos not done until none is left: the photos another live run holds
    are sent again once one of them is free (done, or its claim expired)."""
    pending = [item for item in items if not _skip_done(job, item, outcome)]
    while pending:
        answered: set[str] = set()
        held = []
        for row in chain_dataset(pending, job, options, models, claims.token).iter_rows():
            answered.add(row["key"])
            kind = row["outcome"]
            if kind == "done":
                outcome.add_done(row["key"], json.loads(row["seconds"]))
            elif kind == "skipped":
                # sent because it was not done: this run's own task run again after its write (its
                # answer lost), or, rarely, another run that finished it meanwhile; counted as this
                # run's, with its record's seconds
                record = json.loads(job.record_path(row["key"]).read_text(encoding="utf-8"))
                outcome.add_done(row["key"], record.get("seconds", {}))
            elif kind == "failed":
                outcome.failures.append((row["key"], row["path"], row["reason"]))
            else:
                held.append(BatchItem(Path(row["path"]), row["key"]))
        for item in pending:
            if item.key not in answered:  # its block errored: its workers died on it RETRIES + 1 times
                claims.release(item.key)
                outcome.failures.append((item.key, str(item.path), NO_ANSWER))
        pending = [item for item in held if not _skip_done(job, item, outcome)]
        while pending and all(claims.held_by_other(item.key) for item in pending):
            # another live run holds them: wait for it to finish them or to die
            logger.info("%d photos are being processed by another run; waiting", len(pending))
            time.sleep(min(1.0, claims.ttl_s / 4))
            pending = [item for item in pending if not _skip_done(job, item, outcome)]


def _skip_done(job: PhotoJob, item: BatchItem, outcome: EngineOutcome) -> bool:
    if job.done(item.key, item.path):
        outcome.skipped += 1
        return True
    return False
