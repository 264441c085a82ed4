"""The local engine: the chain in this process, with reading and writing overlapped.

Three steps per photo, each on its own thread, joined by bounded queues (``prefetch`` photos each):

- a reader claims the next photo (:mod:`pipeline.claims`), skips it when its record is already
  there with this run's fingerprint, and decodes it;
- this thread runs the chain (:func:`pipeline.run.chain_photo`) photo after photo, in the photos'
  order: the models are called from one thread, as without the overlap;
- ``writers`` writer threads each write a photo's outputs and then its record
  (:func:`pipeline.run.write_photo`) and release its claim; photos are written several at a time, for
  encoding a 1920 px PNG takes longer than a GPU's chain on it (OpenCV's encoders release the GIL).

Memory holds at most ``2 * prefetch + 2 + writers`` photos. The outputs are those of the photos processed one
after the other (the same functions write them). A photo another live run holds is left for last:
once the queues are empty the engine waits for it, and takes it over if that run's claim expires
(its heartbeat stopped). A photo that fails (read, chain or write) is recorded with its reason and
the run goes on; a photo whose claim file cannot be written is one of them. An error of the reader
or a writer that is no photo's reaches this thread and stops the run: this thread never waits for a
helper thread that is gone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from pipeline.chain import ChainModels
from pipeline.claims import PhotoClaims
from pipeline.run import (
    EngineOptions,
    EngineOutcome,
    PhotoJob,
    chain_photo,
    claim_photo,
    read_photo,
    write_photo,
)
from quadratseg.batch import BatchItem
from quadratseg.errors import QuadratsegError

logger = logging.getLogger(__name__)

_END = object()


def failure_reason(exc: BaseException) -> str:
    """The reason a photo failed, as :func:`quadratseg.batch.run_batch` words it."""
    return str(exc) if isinstance(exc, QuadratsegError) else f"{type(exc).__name__}: {exc}"


class _StoppedError(Exception):
    """The run stopped (an interrupt on the main thread, or a helper thread's error): the helper
    threads leave."""


class _HelperError(Exception):
    """A helper thread (reader or writer) died of an error that is no photo's: it is raised on the
    main thread, which never waits for a thread that is gone."""


def _put(target: queue.Queue, value: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _StoppedError
        try:
            target.put(value, timeout=0.2)
            return
        except queue.Full:
            continue


def _get(source: queue.Queue, producer: threading.Thread, errors: list[BaseException]) -> Any:
    """The next entry of ``source``; raises the helper threads' first error as soon as there is one,
    or when ``producer`` is gone and ``source`` is empty (it can put nothing more): the main thread
    never waits for ever on a thread that died."""
    while True:
        if errors:
            raise _HelperError from errors[0]
        try:
            return source.get(timeout=0.2)
        except queue.Empty:
            if not producer.is_alive() and source.empty():
                if errors:
                    raise _HelperError from errors[0]
                raise _HelperError(f"the {producer.name} thread ended without its end marker") from None


def _end_writers(results: queue.Queue, writers: list[threading.Thread]) -> None:
    """Put one end marker per writer, giving up once no writer is left to take them."""
    for _ in writers:
        while any(thread.is_alive() for thread in writers):
            try:
                results.put(_END, timeout=0.2)
                break
            except queue.Full:
                continue


def _helper(body: Any, errors: list[BaseException], stop: threading.Event) -> Any:
    """``body`` for a helper thread: an error that escapes it is kept for the main thread (and stops
    the other helpers) instead of dying with the thread."""

    def run() -> None:
        try:
            body()
        except _StoppedError:
            return
        except BaseException as exc:  # handed to the main thread, which raises it
            logger.debug("%s died", threading.current_thread().name, exc_info=exc)
            errors.append(exc)
            stop.set()

    return run


def run_pass(
    items: list[BatchItem],
    job: PhotoJob,
    models: ChainModels,
    claims: PhotoClaims,
    outcome: EngineOutcome,
    prefetch: int,
    writers: int,
) -> list[BatchItem]:
    """One pass over ``items``; returns the items another live run holds (left for later).

    A photo that cannot be claimed (its claim file cannot be written), read, chained or written is a
    failure of that photo. An error of a helper thread that is no photo's is raised here, after the
    threads stopped and the claims of the photos not written were released.
    """
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []  # what killed a helper thread, for the main thread to raise
    decoded: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    results: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    deferred: list[BatchItem] = []
    held: set[str] = set()  # claimed by this pass, record not yet written nor failure recorded

    def fail(item: BatchItem, exc: BaseException) -> None:
        reason = failure_reason(exc)
        logger.warning("%s failed: %s", item.key, reason)
        logger.debug("%s failed", item.key, exc_info=exc)
        with lock:
            outcome.failures.append((item.key, str(item.path), reason))
            held.discard(item.key)
        claims.release(item.key)

    def take(item: BatchItem) -> tuple[Any, ...] | None:
        """Claim and read one photo: its decoded entry, or None (done, deferred or failed)."""
        state = claim_photo(job, claims, item)
        if state == "held":
            deferred.append(item)
            return None
        with lock:
            if state == "done":
                outcome.skipped += 1
                return None
            held.add(item.key)
        image, read_s, source = read_photo(item)
        return item, image, read_s, source

    def reader() -> None:
        for item in items:
            try:
                entry = take(item)
            except Exception as exc:  # this photo's: not claimable, unreadable
                fail(item, exc)
                continue
            if entry is not None:
                _put(decoded, entry, stop)
        _put(decoded, _END, stop)

    def writer() -> None:
        while True:
            entry = results.get()
            if entry is _END:
                return
            item, shape, result, seconds, source = entry
            try:
                seconds = write_photo(job, item.key, shape, result, seconds, source)
            except Exception as exc:
                fail(item, exc)
                continue
            claims.release(item.key)
            with lock:
                outcome.add_done(item.key, seconds)
                held.discard(item.key)

    reading = threading.Thread(target=_helper(reader, errors, stop), name="photo-reader", daemon=True)
    writing = [
        threading.Thread(target=_helper(writer, errors, stop), name=f"photo-writer-{i}", daemon=True)
        for i in range(writers)
    ]
    for thread in (reading, *writing):
        thread.start()
    try:
        while True:
            entry = _get(decoded, reading, errors)
            if entry is _END:
                break
            item, image, read_s, source = entry
            start = time.perf_counter()
            try:
                result = chain_photo(image, models, job.warp_size)
            except Exception as exc:
                fail(item, exc)
                continue
            seconds = {"read": read_s, "chain": time.perf_counter() - start}
            _put(results, (item, image.shape, result, seconds, source), stop)
            del image, result
        _end_writers(results, writing)
        for thread in writing:
            thread.join()
        if errors:
            raise _HelperError from errors[0]
    except BaseException as exc:
        stop.set()  # an interrupt or a helper's error: the reader leaves; the writers finish what they hold
        _end_writers(results, writing)
        for thread in (reading, *writing):
            thread.join()
        for key in list(held):  # photos claimed but not written: another run may take them at once
            claims.release(key)
        if isinstance(exc, _StoppedError | _HelperError) and errors:
            raise errors[0] from None  # the helper's own error, on the main thread
        raise
    reading.join()
    return deferred


def run_local(
    items: list[BatchItem], job: PhotoJob, models: ChainModels, options: EngineOptions
) -> EngineOutcome:
    """Process ``items`` into ``job.out`` in this process (see the module docstring)."""
    from tqdm import tqdm

    outcome = EngineOutcome()
    with PhotoClaims(job.out, ttl_s=options.claim_ttl_s) as claims:
        pending = items
        with tqdm(total=len(items), desc="processing photos", unit="image", disable=None) as bar:
            while pending:
                before = outcome.processed + outcome.skipped + len(outcome.failures)
                pending = run_pass(pending, job, models, claims, outcome, options.prefetch, options.writers)
                bar.update(outcome.processed + outcome.skipped + len(outcome.failures) - before)
                if pending:  # held by another live run: wait for it to finish them or to die
                    logger.info("%d photos are being processed by another run; waiting", len(pending))
                    time.sleep(min(1.0, claims.ttl_s / 4))
    return outcome
