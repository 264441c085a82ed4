"""Serving the bridge's HTTP app: one uvicorn server in the bridge's process, or several serving
processes on one listening socket (``python -m bridge --noconsumer --http-processes N``), each with its
own job-store connection, sharing the queue and the job store through Redis and PostgreSQL."""

from __future__ import annotations

import logging
import socket
from typing import Any

from quadratseg.errors import QuadratsegError

logger = logging.getLogger("bridge")


def build_app(settings: Any, insecure: bool) -> tuple[Any, Any]:
    """The FastAPI app and its :class:`bridge.jobqueue.BridgeQueue` from the settings."""
    from bridge.app import create_app
    from bridge.jobqueue import BridgeQueue

    queue = BridgeQueue(settings)
    app = create_app(
        queue,
        settings.cvat_webhook_secret,
        insecure=insecure,
        token=settings.bridge_token,
        max_body=settings.bridge_max_body,
    )
    return app, queue


def uvicorn_server(app: Any, host: str, port: int) -> Any:
    """uvicorn over ``app``; its compiled HTTP parser and event loop (httptools, uvloop: the ``bridge``
    extra) when installed, else its pure-Python ones."""
    import gc

    import uvicorn

    # what the imports and the app made lives as long as the process: out of the collector's sight, a
    # full collection no longer walks it (70 ms of every answer in flight, once every few hundred)
    gc.collect()
    gc.freeze()
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))


def serving_process(sock: socket.socket, settings: Any, insecure: bool) -> None:
    """One of ``--http-processes``: the app over the listening socket the parent opened (the kernel hands
    each new connection to one of the processes waiting on it), with its own job-store connection."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app, queue = build_app(settings, insecure)
    queue.start_reaper()
    host, port = sock.getsockname()[:2]
    uvicorn_server(app, host, port).run(sockets=[sock])


RESTARTS_PER_MINUTE = 5  # a serving process that ends more often than this is a crash loop: the bridge stops


def serve_processes(host: str, port: int, count: int, settings: Any, insecure: bool) -> None:
    """``count`` serving processes on one listening socket until SIGINT or SIGTERM (passed on to each).

    A process that ends by itself (killed, out of memory) is replaced; the connections it held are lost
    (CVAT retries a delivery that got no answer, and a recorded one is answered ``duplicate``). More than
    ``RESTARTS_PER_MINUTE`` replacements in a minute stop the bridge with an error naming the process and
    its exit code, for the supervisor (systemd, Docker) to see.
    """
    import collections
    import multiprocessing
    import signal
    import time
    from multiprocessing.connection import wait

    sock = socket.create_server((host, port), backlog=4096)
    context = multiprocessing.get_context("spawn")  # nothing of this process's threads or sockets leaks in

    def start(i: int) -> Any:
        child = context.Process(
            target=serving_process, args=(sock, settings, insecure), name=f"bridge-http-{i}"
        )
        child.start()
        return child

    children = [start(i) for i in range(count)]
    asked: list[int] = []  # the signal that asked the processes to stop, if one did
    restarts: collections.deque[float] = collections.deque()

    def stop_children() -> None:
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits

    def on_signal(signum: int, _frame: Any) -> None:
        asked.append(signum)
        stop_children()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    logger.info("bridge listening on http://%s:%d with %d serving processes", host, port, count)
    try:
        while not asked:
            ended = wait([child.sentinel for child in children])
            if asked:
                break
            now = time.monotonic()
            for i, child in enumerate(children):
                if child.sentinel not in ended:
                    continue
                child.join()
                while restarts and now - restarts[0] > 60:
                    restarts.popleft()
                if len(restarts) >= RESTARTS_PER_MINUTE:
                    raise QuadratsegError(
                        f"serving process {child.name} ended with exit code {child.exitcode}, the "
                        f"{len(restarts) + 1}th end within a minute; the bridge stops (see the log above)"
                    )
                restarts.append(now)
                logger.error(
                    "serving process %s ended with exit code %s; starting another", child.name, child.exitcode
                )
                children[i] = start(i)
    finally:
        stop_children()
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
