"""Serve one unpacked Nuclio function zip over HTTP on 127.0.0.1, the way Nuclio's HTTP trigger does.

``python -m loopback.function_server FUNCTION_DIR --port P``, run from the function folder with
``PYTHONPATH`` set to it, so the function's own modules come first, as in its container. The function's
``init_context`` runs once through nuclio-sdk's platform, then every ``POST /`` becomes a
``nuclio_sdk.Event`` for its ``handler``. From ``function.yaml``, like Nuclio:

- ``maxRequestBodySize`` of the HTTP trigger: a bigger body gets 413 and never reaches the handler
  (``--max-body`` overrides it, to try the bridge against Nuclio's 4 MiB default);
- ``numWorkers``: that many requests at once; a request that waits longer than
  ``workerAvailabilityTimeoutMilliseconds`` for a worker gets 503;
- ``eventTimeout``: not enforced (the caller's time limit is what the bridge tests);
- ``env``: set in the process environment before the function is imported.

Only the standard library, nuclio-sdk and PyYAML are imported here. For trying the bridge and for
tests; a real deployment runs the zip in Nuclio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def read_spec(function_dir: Path) -> dict[str, Any]:
    """The ``spec`` of the function's ``function.yaml``."""
    import yaml

    document = yaml.safe_load((function_dir / "function.yaml").read_text(encoding="utf-8"))
    return document.get("spec") or {}


def trigger_limits(function_dir: Path) -> dict[str, Any]:
    """maxRequestBodySize, numWorkers and the worker wait (s) of the function's HTTP trigger."""
    triggers = read_spec(function_dir).get("triggers") or {}
    http = next((t for t in triggers.values() if t.get("kind") == "http"), {})
    return {
        "max_body": int((http.get("attributes") or {}).get("maxRequestBodySize", 4 * 1024 * 1024)),
        "workers": int(http.get("numWorkers", 1)),
        "wait_s": float(http.get("workerAvailabilityTimeoutMilliseconds", 10000)) / 1000,
    }


def _encode(result: Any) -> tuple[int, str, bytes]:
    """(status, content type, body) of whatever a Nuclio handler returned."""
    if hasattr(result, "status_code") and hasattr(result, "body"):
        body = result.body
        content_type = getattr(result, "content_type", None) or "text/plain"
        if isinstance(body, dict | list):
            body, content_type = json.dumps(body), "application/json"
        raw = body if isinstance(body, bytes) else str(body).encode()
        return int(result.status_code or 200), content_type, raw
    if isinstance(result, dict | list):
        return 200, "application/json", json.dumps(result).encode()
    if isinstance(result, bytes):
        return 200, "application/octet-stream", result
    return 200, "text/plain", str(result).encode()


def make_server(function_dir: Path, port: int, max_body: int | None = None) -> ThreadingHTTPServer:
    """An HTTP server (not started) serving the handler of ``function_dir/main.py``."""
    import nuclio_sdk
    import nuclio_sdk.test

    for item in read_spec(function_dir).get("env") or []:  # the environment Nuclio gives the function
        os.environ.setdefault(item["name"], str(item["value"]))
    sys.path.insert(0, str(function_dir))
    import main  # the function's own module

    limits = trigger_limits(function_dir)
    if max_body is not None:
        limits["max_body"] = max_body
    context = nuclio_sdk.test.Platform().context  # a Context with the platform's logger
    if hasattr(main, "init_context"):
        main.init_context(context)
    workers = threading.BoundedSemaphore(limits["workers"])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, content_type: str, raw: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._answer(405, "text/plain", b"method not allowed")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limits["max_body"]:
                self.rfile.read(length)
                self._answer(413, "text/plain", b"body size exceeds the given limit")
                return
            body = self.rfile.read(length)
            if not workers.acquire(timeout=limits["wait_s"]):
                self._answer(503, "text/plain", b"no worker available")
                return
            try:
                event = nuclio_sdk.Event(
                    body=body,
                    headers=dict(self.headers),
                    content_type=self.headers.get("Content-Type", ""),
                    method="POST",
                    path=self.path,
                )
                status, content_type, raw = _encode(main.handler(context, event))
            except Exception as exc:  # Nuclio answers a handler exception with 500
                status, content_type, raw = 500, "text/plain", f"handler error: {exc}".encode()
            finally:
                workers.release()
            self._answer(status, content_type, raw)

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main_cli(argv: list[str] | None = None) -> None:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "function_dir", type=Path, help="the unpacked zip's nuclio/ folder (holds function.yaml)"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--max-body", type=int, default=None, help="override maxRequestBodySize (bytes)")
    args = parser.parse_args(argv)
    server = make_server(args.function_dir.resolve(), args.port, args.max_body)
    sys.stdout.write(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}) + "\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main_cli()
