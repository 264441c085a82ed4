"""The suite runs with the network blocked except loopback (pytest-socket, see pyproject)."""

import socket
import tempfile
import threading

import pytest
from pytest_socket import SocketConnectBlockedError


def test_outside_addresses_are_blocked():
    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("93.184.216.34", 80), timeout=1)


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    thread = threading.Thread(target=lambda: server.accept()[0].sendall(b"ok"), daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(2) == b"ok"
    server.close()


def test_the_suite_uses_a_database_of_its_own():
    import fiftyone as fo

    assert fo.config.database_name.startswith("quadratseg_test_")
    assert fo.config.database_dir.startswith(tempfile.gettempdir())
