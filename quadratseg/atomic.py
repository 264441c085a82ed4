"""Outputs that appear whole or not at all.

Examples:
    >>> with atomic_output_dir("outputs/clean", overwrite=True) as tmp:  # doctest: +SKIP
    ...     (tmp / "a.jpg").write_bytes(data)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from quadratseg.errors import QuadratsegError

# ``.NAME.tmp-PID-HEX``: the temporaries of atomic_output_dir and atomic_write_bytes
TEMPORARY_NAME = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}$")


def _new_sibling_dir(out: Path) -> Path:
    """A new empty hidden sibling of ``out``, created with the umask's permissions.

    (``tempfile.mkdtemp`` would make it 0700, and the renamed output would be unreadable to others.)
    """
    for _ in range(100):
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder next to {out}")


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; it replaces ``out_dir`` only on success.

    The folder gets the permissions of any new folder (the umask's), like the files written in it.

    Raises:
        QuadratsegError: ``out_dir`` exists and ``overwrite`` is False (nothing is touched).
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise QuadratsegError(
            f"{out} already exists; pass --overwrite to replace it, or choose another folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling_dir(out)
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a uniquely named hidden sibling first (two writers never share a temporary
    name), which then replaces ``path`` in one rename.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: object) -> Path:
    """:func:`atomic_write_text` of ``value`` as indented JSON (keys in the order given)."""
    import json

    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def sweep_stale_temporaries(root: str | Path, older_than_s: float, now: float | None = None) -> list[Path]:
    """Remove the temporaries a killed writer left under ``root`` (files and folders named
    ``.NAME.tmp-PID-HEX``) that were not modified for ``older_than_s`` seconds; return them.

    A live writer renames its temporary within seconds, so one older than a run's claim time-out
    belongs to no one (on a shared disk too, where its pid may be another machine's). Other files,
    hidden or not, are never touched.

    Examples:
        >>> [bool(TEMPORARY_NAME.match(n)) for n in (".cover.csv.tmp-4242-deadbeef", "a.tmp-1-2")]
        [True, False]
    """
    if older_than_s <= 0:
        raise QuadratsegError(f"older_than_s must be positive, got {older_than_s}")
    limit = (time.time() if now is None else now) - older_than_s
    removed = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not TEMPORARY_NAME.match(name):
                continue
            try:
                if path.lstat().st_mtime > limit:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:  # renamed or removed by its writer meanwhile
                continue
            removed.append(path)
        dirs[:] = [d for d in dirs if not TEMPORARY_NAME.match(d)]
    return removed
