"""``python -m bridge.worker [--workers N]``: background workers only, beside ``python -m bridge
--noconsumer`` with a shared ``BRIDGE_REDIS_URL``."""

from __future__ import annotations


def work(workers: int | None = None) -> None:
    """Run background workers only (BRIDGE_REDIS_URL shared with the serving process)."""
    from bridge.jobqueue import BridgeQueue
    from quadratseg.cli import current_settings

    settings = current_settings()
    queue = BridgeQueue(settings)
    queue.recover(all_running_are_dead=not settings.bridge_redis_url)
    queue.consumer(workers).run()


if __name__ == "__main__":
    from quadratseg.cli import run

    run(work, name="python -m bridge.worker")
