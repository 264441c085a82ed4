"""``python -m bridge.worker [--workers N]``: background workers only, beside ``python -m bridge
--noconsumer``, sharing nothing with it but ``BRIDGE_REDIS_URL`` (the queue) and
``BRIDGE_DATABASE_URL`` (the job store); run as many as there are machines or GPUs to feed."""

from __future__ import annotations

from typing import Any

OPTIONS = {  # environment variable -> BridgeQueue option, read here when the settings have no such field
    "BRIDGE_DATABASE_URL": "database_url",
    "BRIDGE_LEASE_S": "lease_s",
    "BRIDGE_UPLOAD_BATCH": "upload_batch",
}


def environment_options(settings: Any) -> dict[str, Any]:
    """The bridge's scale options (``BRIDGE_DATABASE_URL``: the PostgreSQL job store;
    ``BRIDGE_LEASE_S``: seconds of a running job's lease; ``BRIDGE_UPLOAD_BATCH``: frames per
    annotation upload) from the environment, for those the settings do not hold."""
    import os

    from quadratseg.errors import QuadratsegError

    out: dict[str, Any] = {}
    for variable, option in OPTIONS.items():
        if hasattr(settings, f"bridge_{option}"):
            continue  # the settings read it (and .env)
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        if option == "lease_s":
            try:
                value = float(value)
            except ValueError:
                raise QuadratsegError(f"{variable} must be a number of seconds, not {value!r}") from None
        out[option] = value
    return out


def work(workers: int | None = None) -> None:
    """Run background workers only (BRIDGE_REDIS_URL and BRIDGE_DATABASE_URL shared with the serving
    process and the other workers)."""
    from bridge.jobqueue import BridgeQueue
    from quadratseg.cli import current_settings

    settings = current_settings()
    queue = BridgeQueue(settings, options=environment_options(settings))
    queue.recover(all_running_are_dead=not settings.bridge_redis_url)
    queue.start_reaper()  # takes over the jobs of workers whose lease expired (killed, lost)
    try:
        queue.consumer(workers).run()
    finally:
        queue.stop()


if __name__ == "__main__":
    from quadratseg.cli import run

    run(work, name="python -m bridge.worker")
