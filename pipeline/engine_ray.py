"""The Ray engine (``pipeline.process ... --engine ray``): the chain over Ray Data, on one machine or
a cluster.

- The dataset is the photos' keys and paths (:func:`ray.data.from_items`), never their pixels: each
  photo is read where it is processed, from storage every node sees (the output folder too, see
  ``docs/cluster.md``).
- The models live in a pool of stateful actors (:class:`ChainWorker`, ``ray_workers`` of them), each
  built once from the run's configuration by ``models_factory`` and asking ``ray_gpus_per_model``
  GPUs per model it holds (fractions let small models share a GPU). An actor takes
  :data:`PHOTOS_PER_TASK` photos at a time through the local engine's pass
  (:func:`pipeline.engine_local.run_pass`: reading the next photo and writing the last one while the
  models work), so the files are the same and one actor keeps the local engine's pace; the driver
  builds the tables (``status.csv``, the cover tables, the report) as the local engine does.
- Streaming: Ray Data's executor bounds the rows in flight; only small rows (key, outcome, seconds)
  come back to the driver.
- Faults: an actor that dies mid-task is restarted and the task retried (Ray Data's actor pools
  default to unbounded ``max_restarts`` and ``max_task_retries``): the retry skips the task's photos
  whose records were written (counted as this run's: the driver sent them because they were not
  done) and redoes the others; a photo's files
  are written atomically and its record last, so the retry leaves no half-written or duplicated
  output, and a photo whose record was written before the loss is skipped by the retry. A photo
  that fails for its own reasons is caught in the actor and recorded as the local engine records
  it, not retried. Claims
  (:mod:`pipeline.claims`) are the driver's: the actors claim under its token and its heartbeat
  keeps them alive, so a retried photo is still this run's, and another run on the same folder
  leaves it alone.

Ray is imported only here (the ``ray`` extra); the local engine never imports it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from pipeline.chain import ChainModels
from pipeline.claims import PhotoClaims
from pipeline.run import EngineOptions, EngineOutcome, PhotoJob
from quadratseg.batch import BatchItem
from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

OUTCOMES = ("done", "skipped", "held", "failed")
MAX_BLOCKS = 2000  # blocks of the photos' dataset; beyond, a block holds several photos
# photos per actor task: the overlap of reading and writing with the models lasts a task, and an actor
# lost mid-task costs the retry of its photos not yet written
PHOTOS_PER_TASK = 8


def models_held(models: ChainModels) -> int:
    """How many models an actor holds (corners, grid, colony and semantic models; at least 1)."""
    held = [models.corners, models.grid, models.segment, models.semantic]
    return max(1, sum(model is not None for model in held))


class ChainWorker:
    """A Ray Data actor: the chain's models, built once, over batches of ``{key, path}`` rows; a
    batch goes through the local engine's overlapped pass (:func:`pipeline.engine_local.run_pass`:
    the next photo read and the last one written while the models work on this one).

    Args:
        models_factory: a picklable callable returning the run's :class:`ChainModels`.
        job: the run's :class:`PhotoJob`.
        token: the driver's claim token (:class:`pipeline.claims.PhotoClaims`).
        claim_ttl_s: the claims' time-to-live.
        prefetch: the pass's photos read ahead.
        writers: the pass's writer threads.
    """

    def __init__(
        self,
        models_factory: Any,
        job: PhotoJob,
        token: str,
        claim_ttl_s: float,
        prefetch: int = 2,
        writers: int = 2,
    ):
        self.models = models_factory()
        self.job = job
        self.claims = PhotoClaims(job.out, token=token, ttl_s=claim_ttl_s)
        self.prefetch, self.writers = prefetch, writers

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from pipeline.engine_local import run_pass

        items = [
            BatchItem(Path(str(path)), str(key))
            for key, path in zip(batch["key"], batch["path"], strict=True)
        ]
        outcome = EngineOutcome(by_key={})
        held = {
            item.key
            for item in run_pass(
                items, self.job, self.models, self.claims, outcome, self.prefetch, self.writers
            )
        }
        failed = {key: reason for key, _path, reason in outcome.failures}
        rows: dict[str, list[Any]] = {"key": [], "path": [], "outcome": [], "reason": [], "seconds": []}
        for item in items:
            done = outcome.by_key.get(item.key)
            kind = "failed" if item.key in failed else "held" if item.key in held else "done"
            kind = "skipped" if kind == "done" and done is None else kind
            row = (item.key, str(item.path), kind, failed.get(item.key, ""), json.dumps(done or {}))
            for name, value in zip(rows, row, strict=True):
                rows[name].append(value)
        return rows


def chain_dataset(
    items: list[BatchItem], job: PhotoJob, options: EngineOptions, models: ChainModels, token: str
) -> Any:
    """The Ray dataset of ``items``' outcomes: keys and paths mapped by a pool of
    ``options.ray_workers`` :class:`ChainWorker` actors, :data:`PHOTOS_PER_TASK` photos per batch."""
    import ray

    rows = [{"key": item.key, "path": str(item.path)} for item in items]
    # one photo per block (up to MAX_BLOCKS blocks): an actor lost mid-task costs the retry of its photo
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), MAX_BLOCKS)))
    return dataset.map_batches(
        ChainWorker,
        fn_constructor_kwargs={
            "models_factory": options.models_factory,
            "job": job,
            "token": token,
            "claim_ttl_s": options.claim_ttl_s,
            "prefetch": options.prefetch,
            "writers": options.writers,
        },
        batch_size=PHOTOS_PER_TASK,
        compute=ray.data.ActorPoolStrategy(size=max(1, options.ray_workers)),
        num_cpus=options.ray_cpus_per_worker,
        num_gpus=options.ray_gpus_per_model * models_held(models),
        # Ray Data's actor pools restart a dead actor and retry its tasks without bound
        # (max_restarts=-1, max_task_retries=-1 are its defaults): the actor-kill test holds it to that
    )


def run_ray(
    items: list[BatchItem], job: PhotoJob, models: ChainModels, options: EngineOptions
) -> EngineOutcome:
    """Process ``items`` into ``job.out`` on Ray (see the module docstring). Joins
    ``options.ray_address`` (``auto``, ``ray://HOST:10001``), or the Ray instance this process
    already started, else starts one of its own for the run.

    Raises:
        QuadratsegError: Ray is not installed, or there is no models factory.
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
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False)
    outcome = EngineOutcome()
    try:
        with PhotoClaims(job.out, ttl_s=options.claim_ttl_s) as claims:
            pending = [item for item in items if not _skip_done(job, item, outcome)]
            while pending:
                held = []
                for row in chain_dataset(pending, job, options, models, claims.token).iter_rows():
                    kind = row["outcome"]
                    if kind == "done":
                        outcome.add_done(row["key"], json.loads(row["seconds"]))
                    elif kind == "skipped":
                        # sent because it was not done: a task Ray retried (its actor lost) did it
                        # before the loss; counted as this run's, with its record's seconds
                        record = json.loads(job.record_path(row["key"]).read_text(encoding="utf-8"))
                        outcome.add_done(row["key"], record.get("seconds", {}))
                    elif kind == "failed":
                        outcome.failures.append((row["key"], row["path"], row["reason"]))
                    else:
                        held.append(BatchItem(Path(row["path"]), row["key"]))
                pending = [item for item in held if not _skip_done(job, item, outcome)]
                if pending:  # another live run holds them: wait for it to finish them or to die
                    logger.info("%d photos are being processed by another run; waiting", len(pending))
                    time.sleep(min(1.0, claims.ttl_s / 4))
    finally:
        if started:
            ray.shutdown()
    return outcome


def _skip_done(job: PhotoJob, item: BatchItem, outcome: EngineOutcome) -> bool:
    if job.done(item.key, item.path):
        outcome.skipped += 1
        return True
    return False
