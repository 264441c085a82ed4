"""The bridge and its functions as real processes on 127.0.0.1, for the tests, the benchmark and the
demo: Nuclio zips served by :mod:`bridge.function_server`, and ``python -m bridge`` itself.

Nothing here is used by a deployment (there, Nuclio serves the functions and the bridge runs in its
container); it only starts processes and waits for them the way an operator would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUNCTION_SERVER = Path(__file__).resolve().parent / "function_server.py"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; that value. TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s} s")
        time.sleep(every_s)


def unpack_zip(zip_path: str | Path, into: str | Path) -> Path:
    """Unpack a function zip; its ``nuclio/`` folder (what Nuclio builds the function from)."""
    into = Path(into)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    return into / "nuclio"


@dataclass
class FunctionProcess:
    """One Nuclio function folder served over HTTP by :mod:`bridge.function_server`."""

    function_dir: Path
    max_body: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    url: str = ""

    def start(self, timeout_s: float = 120.0) -> FunctionProcess:
        """Start the server and wait until its model is loaded (it prints its address then)."""
        command = [sys.executable, str(FUNCTION_SERVER), str(self.function_dir), "--port", "0"]
        if self.max_body is not None:
            command += ["--max-body", str(self.max_body)]
        env = {**os.environ, **self.env, "PYTHONPATH": str(self.function_dir)}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=self.function_dir
        )
        line = self.process.stdout.readline()  # blocks until init_context ran
        if not line:
            _, err = self.process.communicate(timeout=timeout_s)
            raise RuntimeError(f"function server for {self.function_dir} did not start:\n{err[-3000:]}")
        self.url = json.loads(line)["url"]
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class BridgeProcess:
    """``python -m bridge`` with the given settings (environment variables) on a free port."""

    env: dict[str, str]
    workers: int = 2
    log_path: Path | None = None
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The bridge's address."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> BridgeProcess:
        """Start the bridge and wait for ``/health``."""
        import httpx

        self.port = self.port or free_port()
        env = dict(self.env)
        if "QUADRATSEG_ENV_FILE" not in env:  # only the settings given here, never a .env lying around
            empty = Path(tempfile.mkdtemp(prefix="bridge-env-")) / ".env"
            empty.write_text("")
            env["QUADRATSEG_ENV_FILE"] = str(empty)
        log = self.log_path.open("a") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--port", str(self.port), "--workers", str(self.workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bridge exited with {self.process.returncode} (log: {self.log_path})")
            try:
                return httpx.get(self.url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout_s, "the bridge's /health")
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop the bridge: SIGTERM (unfinished jobs resume at the next start) or SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill() if kill else self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def job(self, job_id: int) -> dict[str, Any]:
        """``GET /jobs/{id}``."""
        import httpx

        return httpx.get(f"{self.url}/jobs/{job_id}", timeout=10).json()

    def jobs(self) -> list[dict[str, Any]]:
        """``GET /jobs``."""
        import httpx

        return httpx.get(f"{self.url}/jobs?limit=10000", timeout=10).json()

    def wait_idle(self, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """Wait until no job is queued or running; every job."""

        def idle() -> dict[str, Any] | None:
            jobs = self.jobs()
            return {"jobs": jobs} if all(j["state"] not in ("queued", "running") for j in jobs) else None

        return wait_for(idle, timeout_s, "the bridge's jobs", every_s=0.2)["jobs"]
