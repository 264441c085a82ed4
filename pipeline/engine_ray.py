"""The Ray engine (``pipeline.process ... --engine ray``): the chain over Ray Data, on one machine or
a cluster.

- The dataset is the photos' keys and paths (:func:`ray.data.from_items`), never their pixels: each
  photo is read where it is processed, from storage every node sees (the output folder too, see
  ``docs/cluster.md``).
- The models live in a pool of stateful actors (:class:`ChainWorker`, ``ray_workers`` of them), each
  built once from the run's configuration by ``models_factory`` and asking ``ray_gpus_per_model``
  GPUs per model it holds (fractions let small models share a GPU). An actor reads, runs the chain
  and writes the photo's files through the same functions as the local engine
  (:func:`pipeline.run.process_photo`), so the files are the same; the driver builds the tables
  (``status.csv``, the cover tables, the report) as the local engine does.
- Streaming: Ray Data's executor bounds the rows in flight; only small rows (key, outcome, seconds)
  come back to the driver.
- Faults: an actor that dies mid-photo is restarted and the photo retried (Ray Data's actor pools
  default to unbounded ``max_restarts`` and ``max_task_retries``; one photo per block); its files
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
from pipeline.run import EngineOptions, EngineOutcome, PhotoJob, process_photo
from quadratseg.batch import BatchItem
from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

OUTCOMES = ("done", "skipped", "held", "failed")
MAX_BLOCKS = 2000  # blocks of the photos' dataset; beyond, a block holds several photos


def models_held(models: ChainModels) -> int:
    """How many models an actor holds (corners, grid, colony and semantic models; at least 1)."""
    held = [models.corners, models.grid, models.segment, models.semantic]
    return max(1, sum(model is not None for model in held))


class ChainWorker:
    """A Ray Data actor: the chain's models, built once, over batches of ``{key, path}`` rows.

    Args:
        models_factory: a picklable callable returning the run's :class:`ChainModels`.
        job: the run's :class:`PhotoJob`.
        token: the driver's claim token (:class:`pipeline.claims.PhotoClaims`).
        claim_ttl_s: the claims' time-to-live.
    """

    def __init__(self, models_factory: Any, job: PhotoJob, token: str, claim_ttl_s: float):
        self.models = models_factory()
        self.job = job
        self.claims = PhotoClaims(job.out, token=token, ttl_s=claim_ttl_s)

    def one(self, key: str, path: str) -> tuple[str, str, dict[str, float]]:
        """(outcome, reason, seconds) of one photo; outcome one of :data:`OUTCOMES`."""
        from pipeline.engine_local import failure_reason

        if self.job.done(key):
            return "skipped", "", {}
        if not self.claims.claim(key):
            return "held", "", {}
        if self.job.done(key):  # finished by another run between the look and the claim
            self.claims.release(key)
            return "skipped", "", {}
        try:
            seconds = process_photo(self.job, BatchItem(Path(path), key), self.models)
        except Exception as exc:  # the photo's own failure: recorded, not retried
            self.claims.release(key)
            logger.warning("%s failed: %s", key, failure_reason(exc))
            return "failed", failure_reason(exc), {}
        self.claims.release(key)
        return "done", "", seconds

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows: dict[str, list[Any]] = {"key": [], "path": [], "outcome": [], "reason": [], "seconds": []}
        for key, path in zip(batch["key"], batch["path"], strict=True):
            outcome, reason, seconds = self.one(str(key), str(path))
            for name, value in zip(
                rows, (str(key), str(path), outcome, reason, json.dumps(seconds)), strict=True
            ):
                rows[name].append(value)
        return rows


def chain_dataset(
    items: list[BatchItem], job: PhotoJob, options: EngineOptions, models: ChainModels, token: str
) -> Any:
    """The Ray dataset of ``items``' outcomes: keys and paths mapped by a pool of
    ``options.ray_workers`` :class:`ChainWorker` actors, one photo per batch."""
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
        },
        batch_size=1,
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
                        outcome.processed += 1
                        outcome.add_seconds(json.loads(row["seconds"]))
                    elif kind == "skipped":
                        outcome.skipped += 1
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
    if job.done(item.key):
        outcome.skipped += 1
        return True
    return False
