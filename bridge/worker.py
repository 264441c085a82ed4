"""``python -m bridge.worker [--workers N]``: background workers only, beside ``python -m bridge
--noconsumer``, sharing nothing with it but ``BRIDGE_REDIS_URL`` (the queue) and
``BRIDGE_DATABASE_URL`` (the job store); run as many as there are machines or GPUs to feed."""

from __future__ import annotations


def work(workers: int | None = None) -> None:
    """Run background workers only (BRIDGE_REDIS_URL and BRIDGE_DATABASE_URL shared with the serving
    process and the other workers)."""
    from bridge.jobqueue import BridgeQueue
    from quadratseg.cli import current_settings

    settings = current_settings()
    queue = BridgeQueue(
        settings
    )  # BRIDGE_DATABASE_URL, BRIDGE_LEASE_S, BRIDGE_UPLOAD_BATCH from the settings
    queue.recover(all_running_are_dead=not settings.bridge_redis_url)
    queue.start_reaper()  # takes over the jobs of workers whose lease expired (killed, lost)
    try:
        queue.consumer(workers).run()
    finally:
        queue.stop()


if __name__ == "__main__":
    from quadratseg.cli import run

    run(work, name="python -m bridge.worker")
