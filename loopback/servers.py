"""Real servers on 127.0.0.1 for the bridge's tests and benchmark: Debian's ``redis-server`` with
persistence (``appendonly yes``) and a throwaway PostgreSQL cluster (``initdb`` and ``pg_ctl`` as the
``postgres`` system user, since PostgreSQL refuses to run as root), each on a free port in its own
folder, restartable (the chaos tests restart them mid-run).

A missing binary raises :class:`MissingServerError` naming the install (``scripts/ensure_servers.sh``, or
``apt-get install -y redis-server postgresql``). Nothing here is used by a deployment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

POSTGRES_ROOT = Path("/usr/lib/postgresql")  # Debian's server binaries: <version>/bin/initdb
INSTALL = "scripts/ensure_servers.sh (or: apt-get install -y redis-server postgresql)"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MissingServerError(RuntimeError):
    """A server binary is not installed (the message names the install)."""


def find_binary(name: str) -> str:
    """The path of a server binary (PATH, then Debian's /usr/lib/postgresql/<version>/bin);
    :class:`MissingServerError` naming the install when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(POSTGRES_ROOT.glob(f"*/bin/{name}"))
    if candidates:
        return str(candidates[-1])
    raise MissingServerError(f"{name} is not installed: the bridge's server tests need it; run {INSTALL}")


def _wait_port(port: int, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} does not listen on 127.0.0.1:{port} after {timeout_s} s")


class RedisServer:
    """``redis-server`` on 127.0.0.1 with an append-only file in its own folder."""

    def __init__(self, folder: Path):
        self.binary = find_binary("redis-server")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or start again, on the same port and files) and wait until it answers."""
        command = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"),
        ]
        log = (self.folder / "redis.log").open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, 30, "redis-server", self.process)
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:  # loading the append-only file answers LOADING for a moment
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        return self

    def stop(self, kill: bool = False) -> None:
        """Stop: SIGTERM (writes its files) or SIGKILL (a crash: the last second may be lost)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(30)

    def restart(self, kill: bool = False, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port and files."""
        self.stop(kill=kill)
        time.sleep(down_s)
        self.start()

    def flush(self) -> None:
        """Empty every database (between tests)."""
        import redis

        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()


def _as_postgres(command: list[str]) -> list[str]:
    """``command`` run as the ``postgres`` system user when this process is root (PostgreSQL refuses
    to run as root); created when absent."""
    if os.geteuid() != 0:
        return command
    if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--", *command]


class PostgresCluster:
    """A throwaway PostgreSQL cluster (``initdb``) on 127.0.0.1, controlled by ``pg_ctl``."""

    def __init__(self, folder: Path | None = None):
        """``folder``: where the cluster lives (a new temporary folder when None); as root, every
        folder above it must be open to the ``postgres`` user (``/tmp/...`` made by mkdtemp is not
        when nested: give None or a folder directly in /tmp)."""
        import tempfile

        self.initdb, self.pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="qs-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _as_postgres(["true"])  # creates the user when absent
            shutil.chown(self.folder, "postgres")
        done = subprocess.run(
            _as_postgres([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb in {self.data} failed: {done.stderr.strip()[-1500:]}")

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
        command = [self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "postgres.log"), *args]
        if args[0] in ("start", "restart"):
            command += ["-o", options]
        done = subprocess.run(_as_postgres(command), capture_output=True, text=True)
        if done.returncode != 0:
            log = (self.folder / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr}\n{log}")

    def start(self) -> PostgresCluster:
        """Start and wait until it accepts connections."""
        self._ctl("start", "-w", "-t", "60")
        _wait_port(self.port, 30, "postgres")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop (``fast``: clean; ``immediate``: like a crash, recovered from the WAL at the next start)."""
        self._ctl("stop", "-w", "-m", mode)

    def restart(self, mode: str = "immediate", down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def new_database(self, name: str) -> str:
        """A fresh database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}"')
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"
