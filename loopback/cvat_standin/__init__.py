"""A CVAT stand-in for trying the bridge and running the tests without a CVAT (see server.py).

Never used when a real CVAT URL is configured; every module that talks to CVAT is tested against it.
"""

from .server import WEBHOOK_TIMEOUT_S, CvatError, CvatServer, CvatState, FakeTask

__all__ = ["WEBHOOK_TIMEOUT_S", "CvatError", "CvatServer", "CvatState", "FakeTask"]
