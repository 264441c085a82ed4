"""Claims on photos: several runs (processes, machines, engines) share one output folder.

A run claims a photo before it reads it by creating ``OUT/.claims/<key>.claim`` with ``O_EXCL``
(one creator wins, on a local disk and on NFS v3+ alike); the file names the run (host, pid and a
random token). While the run lives, a heartbeat thread touches the claims it holds every
``ttl_s / 4`` seconds; a claim whose file was not touched for ``ttl_s`` seconds belongs to a dead run
(a claim naming a process of this machine that is gone, at once) and is taken over (renamed away
first, so two runs taking over one claim cannot both win). A claim is released (its file removed)
once the photo's record is written, or when the photo failed. A claim file that cannot be written
(a read-only or full output folder, a photo name too long for its file system) raises
:class:`ClaimError`: a failure of that photo, with the reason.

The claims are the run's, not a worker's: the Ray engine's actors claim under the driver's run token
and the driver's heartbeat keeps them alive, so an actor that dies mid-photo leaves the claim to the
retry of the same run, and a driver that dies leaves every claim to expire.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from quadratseg.errors import QuadratsegError
from quadratseg.images import output_name

CLAIMS_DIR = ".claims"
DEFAULT_CLAIM_TTL_S = 120.0


class ClaimError(QuadratsegError):
    """A photo's claim file cannot be written (the message says which and why)."""


_CLAIM_HINTS = {
    errno.ENAMETOOLONG: "the photo's name is too long for the output folder's file system: shorten it",
    errno.ENOSPC: "the output folder's disk is full: free space or choose another folder",
    errno.EDQUOT: "the output folder's disk quota is exhausted: free space or choose another folder",
    errno.EACCES: "the output folder cannot be written: choose a folder you can write to",
    errno.EPERM: "the output folder cannot be written: choose a folder you can write to",
    errno.EROFS: "the output folder is on a read-only file system: choose another folder",
}


def claim_failure(path: Path, exc: OSError) -> str:
    """Why the claim file ``path`` could not be written, and what to do.

    Examples:
        >>> claim_failure(Path("out/a.jpg.claim"), OSError(errno.ENOSPC, "No space left on device"))
        "cannot write the claim file out/a.jpg.claim (No space left on device): the output folder's ..."
    """
    hint = _CLAIM_HINTS.get(exc.errno or 0, "")
    return f"cannot write the claim file {path} ({exc.strerror or exc}){': ' + hint if hint else ''}"


def new_run_token() -> str:
    """A token naming one run: host, pid and 8 random hex digits (``host:pid:hex``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def run_alive(token: str) -> bool:
    """False when ``token`` names a process of this machine that no longer runs; True otherwise
    (a run of another machine is judged by its heartbeat alone)."""
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_path(out_dir: str | Path, key: str) -> Path:
    """The claim file of photo ``key`` in ``out_dir``."""
    return Path(out_dir) / CLAIMS_DIR / output_name(key, ".claim")


def claim_owner(path: Path) -> str | None:
    """The run token written in a claim file, or None when it is gone or not yet written."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))["run"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


class PhotoClaims:
    """The claims of one run (``token``) on the photos of one output folder.

    Args:
        out_dir: the run's output folder (claims in ``out_dir/.claims``).
        token: the run's token (:func:`new_run_token`); the Ray engine's actors pass the driver's.
        ttl_s: seconds after its last heartbeat at which another run takes a claim over.
    """

    def __init__(self, out_dir: str | Path, token: str | None = None, ttl_s: float = DEFAULT_CLAIM_TTL_S):
        if ttl_s <= 0:
            raise ValueError(f"the claim time-to-live must be positive, got {ttl_s}")
        self.out = Path(out_dir)
        self.token = token or new_run_token()
        self.ttl_s = float(ttl_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, key: str) -> bool:
        """Claim photo ``key`` for this run: True when it is ours (new, already ours, or taken over
        from a run whose heartbeat stopped ``ttl_s`` ago), False while another live run holds it.

        Raises:
            ClaimError: the claim file cannot be written (nothing is left behind).
        """
        path = claim_path(self.out, key)
        try:
            return self._claim(path)
        except OSError as exc:  # a ClaimError of _claim's own is no OSError: it passes as it is
            raise ClaimError(claim_failure(path, exc)) from None

    def _claim(self, path: Path) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = claim_owner(path)
                if owner == self.token:
                    return True
                if not self._expired(path):
                    return False
                stale = path.with_name(f".{path.name}.stale-{secrets.token_hex(4)}")
                try:  # one rename wins; the others find the file gone and race on O_EXCL again
                    path.rename(stale)
                    stale.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps({"run": self.token, "since": time.time()}))
            except OSError as exc:  # a full disk: the empty file would read as a claim being written
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
                raise ClaimError(claim_failure(path, exc)) from None
            return True
        return False

    def _expired(self, path: Path) -> bool:
        """True when the claim's heartbeat stopped ``ttl_s`` ago, or at once when its run was a
        process of this machine that is gone (a run killed here is taken over without waiting)."""
        try:
            if time.time() - path.stat().st_mtime > self.ttl_s:
                return True
        except FileNotFoundError:
            return True
        owner = claim_owner(path)
        return owner is not None and not run_alive(owner)

    def held_by_other(self, key: str) -> bool:
        """True while another live run holds the claim on ``key``."""
        path = claim_path(self.out, key)
        if not path.exists():
            return False
        owner = claim_owner(path)
        if owner is None:  # being written: look again shortly
            return not self._expired(path)
        return owner != self.token and not self._expired(path)

    def release(self, key: str) -> None:
        """Drop this run's claim on ``key`` (another run's is left alone). A claim that cannot be
        removed (the folder turned read-only) is left to expire: its photo's record decides."""
        path = claim_path(self.out, key)
        if claim_owner(path) == self.token:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def heartbeat(self) -> int:
        """Touch every claim file this run holds; returns how many."""
        folder = self.out / CLAIMS_DIR
        if not folder.is_dir():
            return 0
        touched = 0
        for path in folder.rglob("*.claim"):
            if claim_owner(path) == self.token:
                try:
                    os.utime(path)
                    touched += 1
                except OSError:  # released meanwhile, or the folder turned unwritable: the next beat
                    pass
        return touched

    def __enter__(self) -> PhotoClaims:
        """Start the heartbeat thread (every ``ttl_s / 4`` s)."""

        def beat() -> None:
            while not self._stop.wait(self.ttl_s / 4):
                with contextlib.suppress(OSError):  # the claims folder unreadable a moment: next beat
                    self.heartbeat()

        self._stop.clear()
        self._thread = threading.Thread(target=beat, name="photo-claims-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
