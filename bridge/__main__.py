"""``python -m bridge [--host H --port P --workers N]``: the HTTP app (uvicorn) and the queue's
workers (huey) in one process. ``python -m bridge.worker`` runs workers alone, beside a serving
process, for a Redis queue shared by several processes."""

from __future__ import annotations

import logging
import threading
from typing import Any

from quadratseg.errors import QuadratsegError

logger = logging.getLogger("bridge")


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = None,
    consumer: bool = True,
    insecure: bool = False,
    http_processes: int = 1,
) -> None:
    """Serve the CVAT webhooks (OpenAPI docs at /docs) and run the background workers.

    Settings come from .env / the environment (CVAT_HOST and credentials, CVAT_WEBHOOK_SECRET,
    BRIDGE_TOKEN, BRIDGE_*; see .env.example). Unfinished jobs of an earlier run are resumed first.

    Args:
        host: address to listen on (0.0.0.0 inside a container on CVAT's network).
        port: port to listen on.
        workers: background worker threads (default BRIDGE_WORKERS).
        consumer: run the workers in this process; --noconsumer serves HTTP only (run
            python -m bridge.worker beside it, with BRIDGE_REDIS_URL).
        insecure: run without CVAT_WEBHOOK_SECRET, accepting unsigned deliveries (each logged as a
            warning); without it the bridge refuses to start when no secret is set.
        http_processes: serving processes sharing the port, each recording deliveries in the job store
            on its own (with --noconsumer, BRIDGE_REDIS_URL and BRIDGE_DATABASE_URL: a burst of
            deliveries is answered by every core instead of one).
    """
    from quadratseg.cli import current_settings

    settings = current_settings()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per function call is noise
    secret = settings.cvat_webhook_secret
    if not secret and not insecure:
        raise QuadratsegError(
            "CVAT_WEBHOOK_SECRET is not set: set it (the secret of the CVAT webhooks) in .env, or pass "
            "--insecure to accept unsigned deliveries (never where others can reach the bridge)"
        )
    if http_processes < 1:
        raise QuadratsegError(f"--http-processes must be 1 or more, not {http_processes}")
    if http_processes > 1 and (consumer or not settings.bridge_redis_url or not settings.bridge_database_url):
        raise QuadratsegError(
            f"--http-processes {http_processes} needs --noconsumer, BRIDGE_REDIS_URL and "
            "BRIDGE_DATABASE_URL: several serving processes share the queue and the job store only "
            "through Redis and PostgreSQL, and the workers run apart (python -m bridge.worker)"
        )
    if not secret:
        logger.warning("--insecure: deliveries are accepted unsigned, and each one is logged")
    if not settings.bridge_token:
        logger.warning("BRIDGE_TOKEN is not set: /jobs answers 401 to everyone")
    if http_processes > 1:
        from bridge.serving import serve_processes

        serve_processes(host, port, http_processes, settings, insecure)
        return
    from bridge.serving import build_app, uvicorn_server

    app, queue = build_app(settings, insecure)
    server = uvicorn_server(app, host, port)
    if not consumer:
        queue.start_reaper()  # queues what a lost message or a dead worker left behind
        server.run()
        return
    queue.recover(all_running_are_dead=not settings.bridge_redis_url)
    queue.start_reaper()
    thread = threading.Thread(target=server.run, name="bridge-http", daemon=True)
    thread.start()
    logger.info(
        "bridge listening on http://%s:%d (docs at /docs), state in %s", host, port, settings.bridge_state_dir
    )
    try:
        queue.consumer(workers).run()  # the main thread: huey handles SIGINT (graceful) and SIGTERM
    finally:
        queue.stop()
        server.should_exit = True
        thread.join(timeout=10)


def main(argv: Any = None) -> None:
    """Console entry ``quadratseg-bridge``."""
    from quadratseg.cli import run

    run(serve, name="python -m bridge", command=argv)


if __name__ == "__main__":
    main()
