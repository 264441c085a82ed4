"""A CVAT-compatible HTTP server for tests (see server.py); reused by every module that talks to CVAT."""

from .server import CvatServer, CvatState, FakeTask

__all__ = ["CvatServer", "CvatState", "FakeTask"]
