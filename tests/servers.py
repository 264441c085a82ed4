"""Real servers for the bridge's tests (loopback/servers.py): Debian's ``redis-server`` with
persistence and a throwaway PostgreSQL cluster, each on a free port of 127.0.0.1 in a temporary folder,
started once per test session and stopped at its end; both restartable for the chaos tests.

A missing binary FAILS the test that needs it, naming the install (``scripts/ensure_servers.sh``, or
``apt-get install -y redis-server postgresql``): in CI these tests must run, never skip.

tests/conftest.py registers this module (``pytest_plugins``): a test asks for ``redis_server`` or
``postgres_server`` by name.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopback.servers import MissingServerError, PostgresCluster, RedisServer


def _or_fail(make):
    """``make()``, a missing server binary turned into a test failure naming the install."""
    try:
        return make()
    except MissingServerError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` for the session (persistence on)."""
    folder = Path(tempfile.mkdtemp(prefix="qs-redis-"))
    server = _or_fail(lambda: RedisServer(folder)).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session."""
    folder = Path(tempfile.mkdtemp(prefix="qs-postgres-"))
    cluster = _or_fail(lambda: PostgresCluster(folder)).start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
